// SiLU + per-tensor INT8 fake quantization as one autograd op, on the fused kernels of
// silu_fake_quant.cu (one pass forward, one backward; see there for the arithmetic,
// which is ATen's). Only SiLU's input is kept for the backward, not its output.
// CUDA tensors of float or half whose memory is dense (any dimension order, e.g.
// channels-last): the kernels run over the raw buffer, the output takes x's strides.
#include <torch/csrc/autograd/custom_function.h>

#include "next_above.h"
#include "op_shim.h"

extern "C" int yq_silu_fq_forward(int dtype, const void* x, void* y, int64_t n, float scale, void* stream);
extern "C" int yq_silu_fq_backward(int dtype, const void* dy, const void* x, void* dx, int64_t n, float lo, float hi, void* stream);

namespace {

using yq::check;
using yq::stream_of;

int dtype_code(const at::Tensor& t) { return yq::dtype_code(t, "silu fake-quant"); }

struct SiluFakeQuant : public torch::autograd::Function<SiluFakeQuant> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in, double amax) {
    if (!x_in.is_cuda()) throw std::invalid_argument("silu fake-quant: CUDA tensors only");
    const at::Tensor x = x_in.is_non_overlapping_and_dense() ? x_in : x_in.contiguous();
    at::Tensor y = at::empty_like(x);
    const float scale = static_cast<float>(amax / 127.0);
    check(yq_silu_fq_forward(dtype_code(x), x.data_ptr(), y.data_ptr(), x.numel(), scale, stream_of(x)), "silu fake-quant forward");
    ctx->save_for_backward({x});
    ctx->saved_data["hi"] = yq::next_above(amax, x.scalar_type());
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    const float hi = static_cast<float>(ctx->saved_data["hi"].toDouble());
    // The gradient laid out as x is, so both buffers are walked in the same order.
    at::Tensor dy = grads[0].to(x.scalar_type());
    if (dy.strides() != x.strides()) dy = at::empty_like(x).copy_(dy);
    at::Tensor dx = at::empty_like(x);
    check(yq_silu_fq_backward(dtype_code(x), dy.data_ptr(), x.data_ptr(), dx.data_ptr(), x.numel(), -hi, hi, stream_of(x)),
          "silu fake-quant backward");
    return {dx, at::Tensor()};
  }
};

}  // namespace

extern "C" {

// x: a tch tensor (at::Tensor*) holding SiLU's input; returns fake-quant(SiLU(x)) as a new
// tensor, or null with *err set to a strdup'ed message that the caller frees.
void* yq_silu_fake_quant(void* x, double amax, char** err) {
  return yq::new_tensor_or_error(err, [&] { return SiluFakeQuant::apply(*static_cast<at::Tensor*>(x), amax); });
}
}
