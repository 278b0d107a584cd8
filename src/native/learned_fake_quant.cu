// Per-tensor INT8 fake quantization with a learned range (LSQ, Esser et al., ICLR 2020),
// forward and backward each one pass over the activation. The composite it replaces
// (quant/learned_amax.rs `fake_quant_learned`) runs in fp32: t = x / s (s = amax / 127),
// q = clamp(t + (round(t) − t).detach(), −128, 127), y = q · s, cast to x's type; its
// backward is another string of elementwise ops plus two sums for the amax gradient.
//
// The arithmetic follows the composite's autograd, so the values and the input gradient
// are bit-identical:
// * s: ATen divides by a host scalar as a product with its reciprocal: amax · (1 / 127);
// * forward: round(t) is exact through the straight-through form (Sterbenz), rint = round
//   half to even as torch.round; y = q · s in fp32, rounded once to the tensor's type;
// * dx = ((dy · s) · inside) / s, inside = −128 ≤ round(t) ≤ 127 (clamp's gradient);
// * d amax = (Σ dy · q + Σ −((dy · s) · inside) · x / (s · s)) / 127, the two sums of the
//   Mul and Div backward, accumulated per block in double and added atomically (the order
//   of a sum differs from ATen's reduction, so this one agrees to rounding, not bits).
// The range is read from device memory: nothing waits for the host (CUDA-graph safe).
// Pure CUDA C++: no torch headers. Launchers return cudaError_t as int.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "half_float.cuh"

namespace {

using yq::from_f;
using yq::to_f;

constexpr int kThreads = 256;

template <typename T, int V> struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// V elements per thread step (16-byte packs where n and the pointers allow, else 1).
template <typename T, int V>
__global__ void lfq_forward(const T* __restrict__ x, T* __restrict__ y, int64_t n, const float* __restrict__ amax) {
  const float s = *amax * (1.0f / 127.0f);
  for (int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * V; i < n; i += (int64_t)gridDim.x * blockDim.x * V) {
    const Pack<T, V> in = *reinterpret_cast<const Pack<T, V>*>(x + i);
    Pack<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float t = to_f<T>(in.v[k]) / s;
      const float q = fminf(fmaxf(rintf(t), -128.0f), 127.0f);
      out.v[k] = from_f<T>(q * s);
    }
    *reinterpret_cast<Pack<T, V>*>(y + i) = out;
  }
}

template <typename T, int V>
__global__ void lfq_backward(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx, int64_t n, const float* __restrict__ amax,
                             double* __restrict__ damax_sum) {
  __shared__ double partial[kThreads];
  const float s = *amax * (1.0f / 127.0f);
  double acc = 0.0;
  for (int64_t i = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) * V; i < n; i += (int64_t)gridDim.x * blockDim.x * V) {
    const Pack<T, V> xs = *reinterpret_cast<const Pack<T, V>*>(x + i);
    const Pack<T, V> gs = *reinterpret_cast<const Pack<T, V>*>(dy + i);
    Pack<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float xf = to_f<T>(xs.v[k]);
      const float g = to_f<T>(gs.v[k]);
      const float r = rintf(xf / s);
      const bool inside = r >= -128.0f && r <= 127.0f;
      const float q = fminf(fmaxf(r, -128.0f), 127.0f);
      const float gt = inside ? g * s : 0.0f;  // the gradient reaching t
      out.v[k] = from_f<T>(gt / s);
      acc += (double)(g * q) + (double)(-gt * xf / (s * s));
    }
    *reinterpret_cast<Pack<T, V>*>(dx + i) = out;
  }
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) atomicAdd(damax_sum, partial[0]);
}

// At most 2048 blocks, walking the tensor by stride: each backward block adds its share of the
// range gradient atomically to one address, and one atomic per 256 elements serialized there.
unsigned blocks_for(int64_t n, int v) {
  const int64_t b = (n / v + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b < 2048 ? b : 2048));
}

bool aligned(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <typename T> void forward(const void* x, void* y, int64_t n, const float* amax, cudaStream_t s) {
  constexpr int W = 16 / sizeof(T);
  auto xt = static_cast<const T*>(x);
  auto yt = static_cast<T*>(y);
  if (n % W == 0 && aligned(x) && aligned(y)) lfq_forward<T, W><<<blocks_for(n, W), kThreads, 0, s>>>(xt, yt, n, amax);
  else lfq_forward<T, 1><<<blocks_for(n, 1), kThreads, 0, s>>>(xt, yt, n, amax);
}

template <typename T> void backward(const void* dy, const void* x, void* dx, int64_t n, const float* amax, double* sum, cudaStream_t s) {
  constexpr int W = 16 / sizeof(T);
  auto gt = static_cast<const T*>(dy);
  auto xt = static_cast<const T*>(x);
  auto dt = static_cast<T*>(dx);
  if (n % W == 0 && aligned(dy) && aligned(x) && aligned(dx)) lfq_backward<T, W><<<blocks_for(n, W), kThreads, 0, s>>>(gt, xt, dt, n, amax, sum);
  else lfq_backward<T, 1><<<blocks_for(n, 1), kThreads, 0, s>>>(gt, xt, dt, n, amax, sum);
}

}  // namespace

extern "C" {

// dtype: 0 = float, 1 = half. x, y: n contiguous elements; amax: one float, on the device.
int yq_lfq_forward(int dtype, const void* x, void* y, int64_t n, const float* amax, void* stream) {
  if (n == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == 1) forward<__half>(x, y, n, amax, s);
  else forward<float>(x, y, n, amax, s);
  return static_cast<int>(cudaGetLastError());
}

// damax_sum: one double on the device, zeroed by the caller; receives the amax gradient × 127.
int yq_lfq_backward(int dtype, const void* dy, const void* x, void* dx, int64_t n, const float* amax, double* damax_sum, void* stream) {
  if (n == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == 1) backward<__half>(dy, x, dx, n, amax, damax_sum, s);
  else backward<float>(dy, x, dx, n, amax, damax_sum, s);
  return static_cast<int>(cudaGetLastError());
}

}  // extern "C"
