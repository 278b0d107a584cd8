// Training-time per-tensor fake quantization as one autograd op (tch cannot define
// autograd functions). Forward: ATen's native fake-quant kernel on x, which is the
// reference's value exactly. Backward: the recipe's straight-through mask, gradient
// where |x| <= amax, in a single hardtanh_backward kernel. It replaces
// clamp + fake-quant, whose backward is five kernels (clamp's alone is four).
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstring>
#include <exception>

#include "next_above.h"

namespace {

struct TrainFakeQuant : public torch::autograd::Function<TrainFakeQuant> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double amax) {
    ctx->save_for_backward({x});
    ctx->saved_data["hi"] = yq::next_above(amax, x.scalar_type());
    return at::fake_quantize_per_tensor_affine(x, amax / 127.0, 0, -128, 127);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    const double hi = ctx->saved_data["hi"].toDouble();
    return {at::hardtanh_backward(grads[0], x, -hi, hi), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// x: a tch tensor (at::Tensor*); returns a new one, or null with *err set to a
// strdup'ed message that the caller frees.
void* yq_train_fake_quant(void* x, double amax, char** err) {
  try {
    return new at::Tensor(TrainFakeQuant::apply(*static_cast<at::Tensor*>(x), amax));
  } catch (const std::exception& e) {
    *err = strdup(e.what());
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}
}
