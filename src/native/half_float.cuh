// fp16/fp32 loads and stores for the kernels, which compute in float: a value of the
// tensor's type to float, and float back rounded to nearest even (ATen's conversions);
// and the value of an INT8 level as ATen's fake-quant kernel stores it.
#pragma once
#include <cuda_fp16.h>

namespace yq {

template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }

// ATen's fake-quant (FakeQuantizeCore.cu) multiplies the integer level by the scale in
// double, then rounds once to the tensor's type.
template <typename T> __device__ __forceinline__ T level_value(float q, float scale);
template <> __device__ __forceinline__ float level_value<float>(float q, float scale) { return (float)((double)q * (double)scale); }
template <> __device__ __forceinline__ __half level_value<__half>(float q, float scale) { return __double2half((double)q * (double)scale); }

}  // namespace yq
