// A convolution's bias + activation (+ per-tensor INT8 fake quantization) as one autograd op
// on the kernels of bias_act.cu (see there for the arithmetic, which is ATen's). z: the
// convolution's output without its bias, a 4-D CUDA tensor of float or half, contiguous
// NCHW or channels-last (anything else is made contiguous); bias: one value per channel, of
// z's type. Gradients flow to z and to the bias.
#include <torch/csrc/autograd/custom_function.h>

#include <limits>

#include "next_above.h"
#include "op_shim.h"

extern "C" int64_t yq_bias_act_partials(int dtype, int layout, int64_t images, int channels, int hw, const void* dy, const void* z, const void* bias,
                                        const void* dz);
extern "C" int yq_bias_act_forward(int dtype, int layout, int act, const void* z, const void* bias, void* y, int64_t images, int channels, int hw,
                                   float scale, void* stream);
extern "C" int yq_bias_act_backward(int dtype, int layout, int act, const void* dy, const void* z, const void* bias, void* dz, float* partial,
                                    int64_t images, int channels, int hw, float lo, float hi, void* stream);

namespace {

using yq::check;
using yq::stream_of;

struct Geometry {
  int layout;  // 0 = NCHW, 1 = channels-last
  int64_t images;
  int channels;
  int hw;
};

Geometry geometry(const at::Tensor& z) {
  const int64_t hw = z.size(2) * z.size(3);
  if (hw > std::numeric_limits<int>::max() || z.size(1) > std::numeric_limits<int>::max()) throw std::invalid_argument("bias-act: tensor too large");
  const int layout = z.is_contiguous() ? 0 : 1;
  return {layout, z.size(0), static_cast<int>(z.size(1)), static_cast<int>(hw)};
}

struct BiasAct : public torch::autograd::Function<BiasAct> {
  // act: 0 = none, 1 = SiLU; amax <= 0: no fake quantization.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& z_in, const at::Tensor& bias_in, int64_t act, double amax) {
    if (!z_in.is_cuda() || !bias_in.is_cuda()) throw std::invalid_argument("bias-act: CUDA tensors only");
    if (z_in.dim() != 4 || bias_in.dim() != 1 || bias_in.size(0) != z_in.size(1)) throw std::invalid_argument("bias-act: z must be 4-D with one bias per channel");
    if (bias_in.scalar_type() != z_in.scalar_type()) throw std::invalid_argument("bias-act: bias and z must have one type");
    const bool known = z_in.is_contiguous() || z_in.is_contiguous(at::MemoryFormat::ChannelsLast);
    const at::Tensor z = known ? z_in : z_in.contiguous();
    const at::Tensor bias = bias_in.contiguous();
    const Geometry g = geometry(z);
    at::Tensor y = at::empty_like(z);
    const float scale = amax > 0 ? static_cast<float>(amax / 127.0) : 0.0f;
    check(yq_bias_act_forward(yq::dtype_code(z, "bias-act"), g.layout, static_cast<int>(act), z.data_ptr(), bias.data_ptr(), y.data_ptr(), g.images, g.channels,
                              g.hw, scale, stream_of(z)),
          "bias-act forward");
    ctx->save_for_backward({z, bias});
    ctx->saved_data["act"] = act;
    ctx->saved_data["hi"] = amax > 0 ? yq::next_above(amax, z.scalar_type()) : 0.0;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& z = saved[0];
    const at::Tensor& bias = saved[1];
    const int act = static_cast<int>(ctx->saved_data["act"].toInt());
    const float hi = static_cast<float>(ctx->saved_data["hi"].toDouble());
    const Geometry g = geometry(z);
    const int dtype = yq::dtype_code(z, "bias-act");
    // The gradient laid out as z is, so both buffers are walked in the same order.
    at::Tensor dy = grads[0].to(z.scalar_type());
    if (dy.strides() != z.strides()) dy = at::empty_like(z).copy_(dy);
    at::Tensor dz = at::empty_like(z);
    const int64_t n_partial = yq_bias_act_partials(dtype, g.layout, g.images, g.channels, g.hw, dy.data_ptr(), z.data_ptr(), bias.data_ptr(), dz.data_ptr());
    at::Tensor partial = at::empty({n_partial}, z.options().dtype(at::kFloat));
    check(yq_bias_act_backward(dtype, g.layout, act, dy.data_ptr(), z.data_ptr(), bias.data_ptr(), dz.data_ptr(), n_partial > 0 ? partial.data_ptr<float>() : nullptr,
                               g.images, g.channels, g.hw, hi > 0 ? -hi : 0.0f, hi, stream_of(z)),
          "bias-act backward");
    // ATen sums a bias gradient in float and rounds it once to the bias type.
    at::Tensor dbias = n_partial == 0 ? dz.sum({0, 2, 3}, false, at::kFloat) : g.layout == 0 ? partial.view({g.channels, -1}).sum(1) : partial.view({-1, g.channels}).sum(0);
    return {dz, dbias.to(bias.scalar_type()), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// z, bias: tch tensors (at::Tensor*); act 0 = none, 1 = SiLU; amax <= 0 = no fake
// quantization. Returns the epilogue's output as a new tensor, or null with *err set to a
// strdup'ed message that the caller frees.
void* yq_bias_act(void* z, void* bias, int act, double amax, char** err) {
  return yq::new_tensor_or_error(err, [&] { return BiasAct::apply(*static_cast<at::Tensor*>(z), *static_cast<at::Tensor*>(bias), static_cast<int64_t>(act), amax); });
}
}
