// Learned-range INT8 fake quantization as one autograd op on the kernels of
// learned_fake_quant.cu (one pass forward, one backward that also sums the range's
// gradient; see there for the arithmetic, which is the composite's). CUDA tensors of float
// or half whose memory is dense (the kernels walk the raw buffer; the output takes x's
// strides); amax a one-element float CUDA tensor (the gradient flows to it).
#include <torch/csrc/autograd/custom_function.h>

#include "op_shim.h"

extern "C" int yq_lfq_forward(int dtype, const void* x, void* y, int64_t n, const float* amax, void* stream);
extern "C" int yq_lfq_backward(int dtype, const void* dy, const void* x, void* dx, int64_t n, const float* amax, double* damax_sum, void* stream);

namespace {

using yq::check;
using yq::stream_of;

int dtype_code(const at::Tensor& t) { return yq::dtype_code(t, "learned fake-quant"); }

struct LearnedFakeQuant : public torch::autograd::Function<LearnedFakeQuant> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& amax_in) {
    if (!x_in.is_cuda() || !amax_in.is_cuda()) throw std::invalid_argument("learned fake-quant: CUDA tensors only");
    if (amax_in.numel() != 1 || amax_in.scalar_type() != at::kFloat) throw std::invalid_argument("learned fake-quant: amax must be one float");
    const at::Tensor x = x_in.is_non_overlapping_and_dense() ? x_in : x_in.contiguous();
    const at::Tensor amax = amax_in.contiguous();
    at::Tensor y = at::empty_like(x);
    check(yq_lfq_forward(dtype_code(x), x.data_ptr(), y.data_ptr(), x.numel(), amax.data_ptr<float>(), stream_of(x)), "learned fake-quant forward");
    ctx->save_for_backward({x, amax});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& amax = saved[1];
    // The gradient laid out as x is, so both buffers are walked in the same order.
    at::Tensor dy = grads[0].to(x.scalar_type());
    if (dy.strides() != x.strides()) dy = at::empty_like(x).copy_(dy);
    at::Tensor dx = at::empty_like(x);
    at::Tensor sum = at::zeros({}, amax.options().dtype(at::kDouble));
    check(yq_lfq_backward(dtype_code(x), dy.data_ptr(), x.data_ptr(), dx.data_ptr(), x.numel(), amax.data_ptr<float>(), sum.data_ptr<double>(), stream_of(x)),
          "learned fake-quant backward");
    // s = amax / 127: the range's gradient is the scale's over 127.
    at::Tensor damax = (sum / 127.0).to(at::kFloat).reshape(amax.sizes());
    return {dx, damax};
  }
};

}  // namespace

extern "C" {

// x, amax: tch tensors (at::Tensor*); returns fake-quant(x) with the learned range amax as
// a new tensor, or null with *err set to a strdup'ed message that the caller frees.
void* yq_learned_fake_quant(void* x, void* amax, char** err) {
  return yq::new_tensor_or_error(err, [&] { return LearnedFakeQuant::apply(*static_cast<at::Tensor*>(x), *static_cast<at::Tensor*>(amax)); });
}
}
