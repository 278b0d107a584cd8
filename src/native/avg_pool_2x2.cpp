// 2x2 / stride 1 average pooling (ADown) as one autograd op on the kernels of
// avg_pool_2x2.cu: contiguous NCHW CUDA tensors of float or half, H and W >= 2.
#include <torch/csrc/autograd/custom_function.h>

#include "op_shim.h"

extern "C" int yq_avg_pool_2x2_forward(int dtype, const void* x, void* y, int64_t planes, int h, int w, void* stream);
extern "C" int yq_avg_pool_2x2_backward(int dtype, const void* dy, void* dx, int64_t planes, int h, int w, void* stream);

namespace {

using yq::check;
using yq::stream_of;

int dtype_code(const at::Tensor& t) { return yq::dtype_code(t, "avg pool 2x2"); }

struct AvgPool2x2 : public torch::autograd::Function<AvgPool2x2> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    if (!x.is_cuda() || x.dim() != 4 || !x.is_contiguous() || x.size(2) < 2 || x.size(3) < 2)
      throw std::invalid_argument("avg pool 2x2: contiguous 4-d CUDA tensors of at least 2x2");
    if (x.size(2) * x.size(3) > INT32_MAX) throw std::invalid_argument("avg pool 2x2: planes of at most 2^31 elements");
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    at::Tensor y = at::empty({n, c, h - 1, w - 1}, x.options());
    check(yq_avg_pool_2x2_forward(dtype_code(x), x.data_ptr(), y.data_ptr(), n * c, (int)h, (int)w, stream_of(x)), "avg pool 2x2 forward");
    ctx->saved_data["shape"] = x.sizes();
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto shape = ctx->saved_data["shape"].toIntVector();
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
