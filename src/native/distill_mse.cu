// The reference recipe's per-layer distillation loss, Σ_images mean_(C,H,W) (s − t)², and
// its gradient for the student s, each one pass (the teacher t has none). The composite
// it replaces takes about a dozen passes per supervised layer in the two directions
// (difference, square, mean; then the mean's fp32 broadcast, a cast, the square's backward).
//
// The composite's arithmetic (QAT computes it in the student's type, the mean in float):
// * d = s − t and d² are each rounded to the tensor's type; the squares are summed in
//   float (per block here, then over blocks: a sum in another order, equal to rounding),
//   divided by C·H·W;
// * ds = (g · (1 / (C·H·W)) rounded to the type) · (2·d), rounded to the type — the mean's
//   backward in float (ATen divides by a scalar as a product with its reciprocal) then
//   cast, and pow's `grad · (2 · d)`; g, the loss's gradient, is read
//   from device memory (nothing waits for the host: CUDA-graph safe).
// Pure CUDA C++: no torch headers. Launchers return cudaError_t as int.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "half_float.cuh"

namespace {

using yq::from_f;
using yq::to_f;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 2048;

template <typename T, int V> struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T> __device__ __forceinline__ float diff(T s, T t) { return to_f<T>(from_f<T>(to_f<T>(s) - to_f<T>(t))); }

template <typename T, int V>
__global__ void distill_mse_forward(const T* __restrict__ s, const T* __restrict__ t, int64_t n, float* __restrict__ partial) {
  __shared__ float shared[kThreads / 32];
  float acc = 0.0f;
  for (int64_t i = (blockIdx.x * (int64_t)kThreads + threadIdx.x) * V; i < n; i += (int64_t)gridDim.x * kThreads * V) {
    const Pack<T, V> a = *reinterpret_cast<const Pack<T, V>*>(s + i);
    const Pack<T, V> b = *reinterpret_cast<const Pack<T, V>*>(t + i);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float d = diff<T>(a.v[k], b.v[k]);
      acc += to_f<T>(from_f<T>(d * d));
    }
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
  if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x < 32) {
    acc = threadIdx.x < kThreads / 32 ? shared[threadIdx.x] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
  }
}

template <typename T, int V>
__global__ void distill_mse_backward(const T* __restrict__ s, const T* __restrict__ t, const float* __restrict__ grad, float inv_per, T* __restrict__ ds, int64_t n) {
  const float gh = to_f<T>(from_f<T>(*grad * inv_per));
  for (int64_t i = (blockIdx.x * (int64_t)kThreads + threadIdx.x) * V; i < n; i += (int64_t)gridDim.x * kThreads * V) {
    const Pack<T, V> a = *reinterpret_cast<const Pack<T, V>*>(s + i);
    const Pack<T, V> b = *reinterpret_cast<const Pack<T, V>*>(t + i);
    Pack<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = from_f<T>(gh * (2.0f * diff<T>(a.v[k], b.v[k])));
    *reinterpret_cast<Pack<T, V>*>(ds + i) = out;
  }
}

bool aligned(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

unsigned blocks(int64_t n, int v) {
  const int64_t b = (n / v + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b < kMaxBlocks ? b : kMaxBlocks));
}

template <typename T> void forward(const void* s, const void* t, int64_t n, float* partial, cudaStream_t st) {
  constexpr int W = 16 / sizeof(T);
  auto a = static_cast<const T*>(s);
  auto b = static_cast<const T*>(t);
  if (n % W == 0 && aligned(s) && aligned(t)) distill_mse_forward<T, W><<<blocks(n, W), kThreads, 0, st>>>(a, b, n, partial);
  else distill_mse_forward<T, 1><<<blocks(n, W), kThreads, 0, st>>>(a, b, n, partial);
}

template <typename T> void backward(const void* s, const void* t, const float* grad, float inv_per, void* ds, int64_t n, cudaStream_t st) {
  constexpr int W = 16 / sizeof(T);
  auto a = static_cast<const T*>(s);
  auto b = static_cast<const T*>(t);
  auto o = static_cast<T*>(ds);
  if (n % W == 0 && aligned(s) && aligned(t) && aligned(ds)) distill_mse_backward<T, W><<<blocks(n, W), kThreads, 0, st>>>(a, b, grad, inv_per, o, n);
  else distill_mse_backward<T, 1><<<blocks(n, W), kThreads, 0, st>>>(a, b, grad, inv_per, o, n);
}

}  // namespace

extern "C" {

// How many per-block partial sums the forward writes for n elements.
int64_t yq_mse_partials(int dtype, int64_t n) { return blocks(n, dtype == 1 ? 8 : 4); }

// dtype: 0 = float, 1 = half; s and t: n elements laid out alike. partial: yq_mse_partials floats
// of Σ round(round(s − t)²).
int yq_mse_forward(int dtype, const void* s, const void* t, int64_t n, float* partial, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if (dtype == 1) forward<__half>(s, t, n, partial, st);
  else forward<float>(s, t, n, partial, st);
  return static_cast<int>(cudaGetLastError());
}

// ds = d(loss)/ds for loss gradient *grad (device memory), inv_per = 1 / (C·H·W) in float.
int yq_mse_backward(int dtype, const void* s, const void* t, const float* grad, float inv_per, void* ds, int64_t n, void* stream) {
  if (n == 0) return 0;
  auto st = static_cast<cudaStream_t>(stream);
  if (dtype == 1) backward<__half>(s, t, grad, inv_per, ds, n, st);
  else backward<float>(s, t, grad, inv_per, ds, n, st);
  return static_cast<int>(cudaGetLastError());
}

}  // extern "C"
