// The distillation loss of one supervised layer, Σ_images mean_(C,H,W) (s − t)², as one
// autograd op on the kernels of distill_mse.cu (see there for the arithmetic, which is the
// composite's). s: the student's value (gets a gradient); t: the teacher's (none); CUDA
// tensors of float or half, same shape; t is laid out as s before the kernels walk both
// buffers. Returns a 0-dim float tensor.
#include <torch/csrc/autograd/custom_function.h>

#include "op_shim.h"

extern "C" int64_t yq_mse_partials(int dtype, int64_t n);
extern "C" int yq_mse_forward(int dtype, const void* s, const void* t, int64_t n, float* partial, void* stream);
extern "C" int yq_mse_backward(int dtype, const void* s, const void* t, const float* grad, float inv_per, void* ds, int64_t n, void* stream);

namespace {

using yq::check;
using yq::stream_of;

struct DistillMse : public torch::autograd::Function<DistillMse> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& s_in, const at::Tensor& t_in) {
    if (!s_in.is_cuda() || !t_in.is_cuda()) throw std::invalid_argument("distill mse: CUDA tensors only");
    if (s_in.sizes() != t_in.sizes() || s_in.scalar_type() != t_in.scalar_type() || s_in.dim() < 2)
      throw std::invalid_argument("distill mse: student and teacher must have one shape and type");
    const at::Tensor s = s_in.is_non_overlapping_and_dense() ? s_in : s_in.contiguous();
    const at::Tensor t = t_in.strides() == s.strides() ? t_in : at::empty_like(s).copy_(t_in);
    const int dtype = yq::dtype_code(s, "distill mse");
    at::Tensor partial = at::empty({yq_mse_partials(dtype, s.numel())}, s.options().dtype(at::kFloat));
    check(yq_mse_forward(dtype, s.data_ptr(), t.data_ptr(), s.numel(), partial.data_ptr<float>(), stream_of(s)), "distill mse forward");
    const int64_t per = s.numel() / s.size(0);
    ctx->save_for_backward({s, t});
    return partial.sum() * (1.0 / static_cast<double>(per));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& s = saved[0];
    const at::Tensor& t = saved[1];
    const at::Tensor g = grads[0].to(at::kFloat).contiguous();
    const int64_t per = s.numel() / s.size(0);
    at::Tensor ds = at::empty_like(s);
    check(yq_mse_backward(yq::dtype_code(s, "distill mse"), s.data_ptr(), t.data_ptr(), g.data_ptr<float>(), 1.0f / static_cast<float>(per), ds.data_ptr(),
                          s.numel(), stream_of(s)),
          "distill mse backward");
    return {ds, at::Tensor()};
  }
};

}  // namespace

extern "C" {

// s, t: tch tensors (at::Tensor*); returns the loss as a new 0-dim tensor, or null with
// *err set to a strdup'ed message that the caller frees.
void* yq_distill_mse(void* s, void* t, char** err) {
  return yq::new_tensor_or_error(err, [&] { return DistillMse::apply(*static_cast<at::Tensor*>(s), *static_cast<at::Tensor*>(t)); });
}
}
