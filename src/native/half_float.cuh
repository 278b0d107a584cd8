// fp16/fp32 loads and stores for the kernels, which compute in float: a value of the
// tensor's type to float, and float back rounded to nearest even (ATen's conversions).
#pragma once
#include <cuda_fp16.h>

namespace yq {

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }

}  // namespace yq
