// SiLU followed by per-tensor INT8 fake quantization, forward and straight-through
// backward, each one pass over the activation (issue: the unfused chain is SiLU, then
// fake-quant, then in the backward the fake-quant mask and SiLU's derivative: four
// passes, and SiLU's output kept alive only for the mask).
//
// The arithmetic is ATen's, so results are bit-identical to the unfused ops:
// * SiLU (ATen ActivationSiluKernel.cu): in float, x / (1 + exp(-x)), rounded to the
//   tensor's type before quantization (the unfused chain stores it in that type).
// * fake-quant (ATen FakeQuantizeCore.cu, per-tensor affine, zero point 0):
//   min(max(nearbyint(s * inv_scale), -128), 127) * scale, inv_scale = 1.0f / scale,
//   the product taken in double and rounded once to the tensor's type.
// * backward: the gradient passes where |s| <= amax (QAT's straight-through mask,
//   train_fake_quant.cpp's hardtanh_backward bounds), rounded to the tensor's type,
//   then SiLU's derivative in float: dy * sig * (1 + x * (1 - sig)).
//
// Pure CUDA C++: no torch headers, so nvcc compiles it in seconds. Launchers return
// cudaError_t as int.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "half_float.cuh"

namespace {

using yq::from_f;
using yq::level_value;
using yq::to_f;

// SiLU in the tensor's type, as the unfused chain stores it.
template <typename T> __device__ __forceinline__ float silu_stored(float x) {
  return to_f<T>(from_f<T>(x / (1.0f + expf(-x))));
}

template <typename T>
__global__ void silu_fq_forward(const T* __restrict__ x, T* __restrict__ y, int64_t n, float scale, float inv_scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float s = silu_stored<T>(to_f<T>(x[i]));
    const float q = fminf(fmaxf(nearbyintf(s * inv_scale), -128.0f), 127.0f);
    y[i] = level_value<T>(q, scale);
  }
}

template <typename T>
__global__ void silu_fq_backward(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx, int64_t n, float lo, float hi) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float xf = to_f<T>(x[i]);
    const float s = silu_stored<T>(xf);
    // hardtanh_backward: gradient where lo < s < hi (hi is the first value above amax).
    const float g = (s > lo && s < hi) ? to_f<T>(dy[i]) : 0.0f;
    const float sig = 1.0f / (1.0f + expf(-xf));
    dx[i] = from_f<T>(g * sig * (1.0f + xf * (1.0f - sig)));
  }
}

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < 65535 * 8 ? b : 65535 * 8);
}

}  // namespace

extern "C" {

// dtype: 0 = float, 1 = half. Pointers are device memory of n contiguous elements.
int yq_silu_fq_forward(int dtype, const void* x, void* y, int64_t n, float scale, void* stream) {
  if (n == 0) return 0;
  const float inv_scale = 1.0f / scale;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == 1)
    silu_fq_forward<__half><<<blocks_for(n), 256, 0, s>>>(static_cast<const __half*>(x), static_cast<__half*>(y), n, scale, inv_scale);
  else
    silu_fq_forward<float><<<blocks_for(n), 256, 0, s>>>(static_cast<const float*>(x), static_cast<float*>(y), n, scale, inv_scale);
  return static_cast<int>(cudaGetLastError());
}

int yq_silu_fq_backward(int dtype, const void* dy, const void* x, void* dx, int64_t n, float lo, float hi, void* stream) {
  if (n == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == 1)
    silu_fq_backward<__half><<<blocks_for(n), 256, 0, s>>>(static_cast<const __half*>(dy), static_cast<const __half*>(x), static_cast<__half*>(dx), n, lo, hi);
  else
    silu_fq_backward<float><<<blocks_for(n), 256, 0, s>>>(static_cast<const float*>(dy), static_cast<const float*>(x), static_cast<float*>(dx), n, lo, hi);
  return static_cast<int>(cudaGetLastError());
}

}  // extern "C"
