// 2x2 / stride 1 average pooling (ADown) as one autograd op on the kernels of
// avg_pool_2x2.cu: contiguous NCHW or channels-last CUDA tensors of float or half, H and
// W >= 2; the output and the input gradient keep the input's layout.
#include <torch/csrc/autograd/custom_function.h>

#include "op_shim.h"

extern "C" int yq_avg_pool_2x2_forward(int dtype, const void* x, void* y, int64_t planes, int h, int w, void* stream);
extern "C" int yq_avg_pool_2x2_backward(int dtype, const void* dy, void* dx, int64_t planes, int h, int w, void* stream);
extern "C" int yq_avg_pool_2x2_nhwc(int dtype, int backward, const void* in, void* out, int64_t images, int h, int w, int channels, void* stream);

namespace {

using yq::check;
using yq::stream_of;

int dtype_code(const at::Tensor& t) { return yq::dtype_code(t, "avg pool 2x2"); }

struct AvgPool2x2 : public torch::autograd::Function<AvgPool2x2> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    if (!x.is_cuda() || x.dim() != 4 || x.size(2) < 2 || x.size(3) < 2) throw std::invalid_argument("avg pool 2x2: 4-d CUDA tensors of at least 2x2");
    const bool nhwc = !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
    if (!nhwc && !x.is_contiguous()) throw std::invalid_argument("avg pool 2x2: contiguous NCHW or channels-last tensors only");
    if (x.size(1) * x.size(2) * x.size(3) > INT32_MAX) throw std::invalid_argument("avg pool 2x2: images of at most 2^31 elements");
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    ctx->saved_data["shape"] = x.sizes();
    ctx->saved_data["nhwc"] = nhwc;
    if (nhwc) {
      at::Tensor y = at::empty({n, c, h - 1, w - 1}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
      check(yq_avg_pool_2x2_nhwc(dtype_code(x), 0, x.data_ptr(), y.data_ptr(), n, (int)h, (int)w, (int)c, stream_of(x)), "avg pool 2x2 forward");
      return y;
    }
    at::Tensor y = at::empty({n, c, h - 1, w - 1}, x.options());
    check(yq_avg_pool_2x2_forward(dtype_code(x), x.data_ptr(), y.data_ptr(), n * c, (int)h, (int)w, stream_of(x)), "avg pool 2x2 forward");
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto shape = ctx->saved_data["shape"].toIntVector();
    if (ctx->saved_data["nhwc"].toBool()) {
      const at::Tensor dy = grads[0].contiguous(at::MemoryFormat::ChannelsLast);
      at::Tensor dx = at::empty(shape, dy.options().memory_format(at::MemoryFormat::ChannelsLast));
      check(yq_avg_pool_2x2_nhwc(dtype_code(dy), 1, dy.data_ptr(), dx.data_ptr(), shape[0], (int)shape[2], (int)shape[3], (int)shape[1], stream_of(dy)),
            "avg pool 2x2 backward");
      return {dx};
    }
    const at::Tensor dy = grads[0].contiguous();
    at::Tensor dx = at::empty(shape, dy.options());
    check(yq_avg_pool_2x2_backward(dtype_code(dy), dy.data_ptr(), dx.data_ptr(), shape[0] * shape[1], (int)shape[2], (int)shape[3], stream_of(dy)),
          "avg pool 2x2 backward");
    return {dx};
  }
};

}  // namespace

extern "C" {

// x: a tch tensor (at::Tensor*); returns the pooled tensor, or null with *err set to a
// strdup'ed message that the caller frees.
void* yq_avg_pool_2x2(void* x, char** err) {
  return yq::new_tensor_or_error(err, [&] { return AvgPool2x2::apply(*static_cast<at::Tensor*>(x)); });
}
}
