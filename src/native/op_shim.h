// What every autograd-op shim of src/native shares: the kernels' dtype code, their
// cudaError_t turned into an exception, the current stream, and the C entry point that
// turns an exception into a strdup'ed message for Rust (freed by util::take_c_message).
#pragma once
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>

namespace yq {

// The launchers' dtype argument: 0 = float, 1 = half.
inline int dtype_code(const at::Tensor& t, const char* op) {
  if (t.scalar_type() == at::kHalf) return 1;
  if (t.scalar_type() == at::kFloat) return 0;
  throw std::invalid_argument(std::string(op) + ": float or half tensors only");
}

inline void check(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string(what) + ": CUDA error " + std::to_string(rc));
}

inline void* stream_of(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

// Runs `make` (returning an at::Tensor) for a C caller: a new at::Tensor*, or null with
// *err set to the exception's message.
template <typename F> void* new_tensor_or_error(char** err, F make) {
  try {
    return new at::Tensor(make());
  } catch (const std::exception& e) {
    *err = strdup(e.what());
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

}  // namespace yq
