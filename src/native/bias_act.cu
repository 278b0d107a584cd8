// A convolution's epilogue in one pass each way: the per-channel bias, the activation
// (SiLU or none) and, optionally, the per-tensor INT8 fake quantization that reads it.
// ATen adds a convolution's bias after cuDNN returns, as a broadcast `add_` that cannot use
// its vectorized path (the bias operand has zero strides): on an H200 the QAT step of
// gelan-c spent more time there than in any other kernel, and again in the backward summing
// the bias gradient. Here the bias rides along with the pass that follows anyway.
//
// The arithmetic is ATen's, so values and the input gradient are bit-identical to
// `conv + bias`, SiLU, fake-quant run one after another:
// * bias: float(z) + float(b) rounded to the tensor's type (add_ stores its result);
// * SiLU (ActivationSiluKernel.cu): x / (1 + exp(-x)) in float, stored in the type;
// * fake-quant (FakeQuantizeCore.cu, zero point 0): min(max(nearbyint(s / scale), -128),
//   127), times the scale in double, rounded once;
// * backward: the gradient passes where lo < s < hi (QAT's |s| <= amax mask, see
//   train_fake_quant.cpp), then SiLU's derivative dy * sig * (1 + x * (1 - sig)); the
//   bias gradient sums the rounded input gradients in float per (image, channel) plane and
//   block (a sum in another order than ATen's: equal to rounding).
// Layouts: contiguous NCHW (blocks walk one plane, so the channel is fixed per block) and
// channels-last (threads keep one pack of channels; the bias gradient's per-block sums are
// written by the same pass as in NCHW). Packs of 16 bytes where sizes allow.
// Pure CUDA C++: no torch headers. Launchers return cudaError_t as int.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "half_float.cuh"

namespace {

using yq::from_f;
using yq::level_value;
using yq::to_f;

constexpr int kThreads = 256;
constexpr int kMaxBlocksPerPlane = 64;

template <typename T, int V> struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

struct Quant {
  float scale, inv_scale, lo, hi;
};

// The epilogue's output for one element of the conv output z, with channel bias b.
template <typename T, int ACT, bool FQ> __device__ __forceinline__ T forward_one(float z, float b, const Quant& q) {
  const float x = to_f<T>(from_f<T>(z + b));
  const float s = ACT == 1 ? to_f<T>(from_f<T>(x / (1.0f + expf(-x)))) : x;
  if (!FQ) return from_f<T>(s);
  const float level = fminf(fmaxf(nearbyintf(s * q.inv_scale), -128.0f), 127.0f);
  return level_value<T>(level, q.scale);
}

// The gradient reaching z (before rounding to the type) for output gradient dy.
template <typename T, int ACT, bool FQ> __device__ __forceinline__ float backward_one(float dy, float z, float b, const Quant& q) {
  const float x = to_f<T>(from_f<T>(z + b));
  float g = dy;
  if (FQ) {
    const float s = ACT == 1 ? to_f<T>(from_f<T>(x / (1.0f + expf(-x)))) : x;
    if (!(s > q.lo && s < q.hi)) g = 0.0f;
  }
  if (ACT == 1) {
    const float sig = 1.0f / (1.0f + expf(-x));
    g = g * sig * (1.0f + x * (1.0f - sig));
  }
  return g;
}

// NCHW: grid.y walks the (image, channel) planes, grid.x the elements of one plane.
template <typename T, int V, int ACT, bool FQ>
__global__ void bias_act_forward_nchw(const T* __restrict__ z, const T* __restrict__ bias, T* __restrict__ y, int64_t planes, int channels, int hw, Quant q) {
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const float b = to_f<T>(bias[p % channels]);
    const int64_t base = p * hw;
    for (int j = (blockIdx.x * kThreads + threadIdx.x) * V; j < hw; j += gridDim.x * kThreads * V) {
      const Pack<T, V> in = *reinterpret_cast<const Pack<T, V>*>(z + base + j);
      Pack<T, V> out;
#pragma unroll
      for (int k = 0; k < V; ++k) out.v[k] = forward_one<T, ACT, FQ>(to_f<T>(in.v[k]), b, q);
      *reinterpret_cast<Pack<T, V>*>(y + base + j) = out;
    }
  }
}

__device__ __forceinline__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? shared[threadIdx.x] : 0.0f;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  __syncthreads();
  return v;
}

// partial[c][n][blockIdx.x]: this block's sum of the (rounded) input gradients of plane (n, c).
template <typename T, int V, int ACT, bool FQ>
__global__ void bias_act_backward_nchw(const T* __restrict__ dy, const T* __restrict__ z, const T* __restrict__ bias, T* __restrict__ dz, float* __restrict__ partial,
                              int64_t planes, int channels, int hw, Quant q) {
  __shared__ float shared[kThreads / 32];
  const int64_t images = planes / channels;
  for (int64_t p = blockIdx.y; p < planes; p += gridDim.y) {
    const int c = (int)(p % channels);
    const float b = to_f<T>(bias[c]);
    const int64_t base = p * hw;
    float acc = 0.0f;
    for (int j = (blockIdx.x * kThreads + threadIdx.x) * V; j < hw; j += gridDim.x * kThreads * V) {
      const Pack<T, V> g = *reinterpret_cast<const Pack<T, V>*>(dy + base + j);
      const Pack<T, V> in = *reinterpret_cast<const Pack<T, V>*>(z + base + j);
      Pack<T, V> out;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        out.v[k] = from_f<T>(backward_one<T, ACT, FQ>(to_f<T>(g.v[k]), to_f<T>(in.v[k]), b, q));
        acc += to_f<T>(out.v[k]);
      }
      *reinterpret_cast<Pack<T, V>*>(dz + base + j) = out;
    }
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) partial[((int64_t)c * images + p / channels) * gridDim.x + blockIdx.x] = acc;
  }
}

// Channels-last, channel packs of one pixel side by side (`packs` = channels / V <= kThreads):
// thread l owns pack l % packs for the whole launch and walks the pixels l / packs,
// + rows, + 2 rows, ... (rows = kThreads / packs pixels per block and step), so its bias
// stays in registers and, backward, so does its share of the bias gradient.
template <typename T, int V, int ACT, bool FQ>
__global__ void bias_act_forward_nhwc(const T* __restrict__ z, const T* __restrict__ bias, T* __restrict__ y, int64_t pixels, int channels, Quant q) {
  const int packs = channels / V, rows = kThreads / packs, p = threadIdx.x % packs, rr = threadIdx.x / packs;
  if (rr >= rows) return;
  float b[V];
#pragma unroll
  for (int k = 0; k < V; ++k) b[k] = to_f<T>(bias[p * V + k]);
  for (int64_t r = (int64_t)blockIdx.x * rows + rr; r < pixels; r += (int64_t)gridDim.x * rows) {
    const int64_t i = r * channels + p * V;
    const Pack<T, V> in = *reinterpret_cast<const Pack<T, V>*>(z + i);
    Pack<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = forward_one<T, ACT, FQ>(to_f<T>(in.v[k]), b[k], q);
    *reinterpret_cast<Pack<T, V>*>(y + i) = out;
  }
}

// partial[blockIdx.x][c]: this block's sum of the (rounded) input gradients of channel c,
// its rows added in row order.
template <typename T, int V, int ACT, bool FQ>
__global__ void bias_act_backward_nhwc(const T* __restrict__ dy, const T* __restrict__ z, const T* __restrict__ bias, T* __restrict__ dz, float* __restrict__ partial,
                                       int64_t pixels, int channels, Quant q) {
  __shared__ float shared[kThreads * V];
  const int packs = channels / V, rows = kThreads / packs, p = threadIdx.x % packs, rr = threadIdx.x / packs;
  float acc[V];
#pragma unroll
  for (int k = 0; k < V; ++k) acc[k] = 0.0f;
  if (rr < rows) {
    float b[V];
#pragma unroll
    for (int k = 0; k < V; ++k) b[k] = to_f<T>(bias[p * V + k]);
    for (int64_t r = (int64_t)blockIdx.x * rows + rr; r < pixels; r += (int64_t)gridDim.x * rows) {
      const int64_t i = r * channels + p * V;
      const Pack<T, V> g = *reinterpret_cast<const Pack<T, V>*>(dy + i);
      const Pack<T, V> in = *reinterpret_cast<const Pack<T, V>*>(z + i);
      Pack<T, V> out;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        out.v[k] = from_f<T>(backward_one<T, ACT, FQ>(to_f<T>(g.v[k]), to_f<T>(in.v[k]), b[k], q));
        acc[k] += to_f<T>(out.v[k]);
      }
      *reinterpret_cast<Pack<T, V>*>(dz + i) = out;
    }
  }
#pragma unroll
  for (int k = 0; k < V; ++k) shared[threadIdx.x * V + k] = acc[k];
  __syncthreads();
  if (threadIdx.x < packs) {
#pragma unroll
    for (int k = 0; k < V; ++k) {
      float sum = 0.0f;
      for (int j = 0; j < rows; ++j) sum += shared[(j * packs + threadIdx.x) * V + k];
      partial[(int64_t)blockIdx.x * channels + threadIdx.x * V + k] = sum;
    }
  }
}

// Channels-last with more packs than threads: element i has channel i % channels (the
// caller sums the bias gradient).
template <typename T, int V, int ACT, bool FQ>
__global__ void bias_act_forward_flat(const T* __restrict__ z, const T* __restrict__ bias, T* __restrict__ y, int64_t n, int channels, Quant q) {
  for (int64_t i = (blockIdx.x * (int64_t)kThreads + threadIdx.x) * V; i < n; i += (int64_t)gridDim.x * kThreads * V) {
    const int c = (int)(i % channels);
    const Pack<T, V> in = *reinterpret_cast<const Pack<T, V>*>(z + i);
    Pack<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = forward_one<T, ACT, FQ>(to_f<T>(in.v[k]), to_f<T>(bias[c + k]), q);
    *reinterpret_cast<Pack<T, V>*>(y + i) = out;
  }
}

template <typename T, int V, int ACT, bool FQ>
__global__ void bias_act_backward_flat(const T* __restrict__ dy, const T* __restrict__ z, const T* __restrict__ bias, T* __restrict__ dz, int64_t n, int channels, Quant q) {
  for (int64_t i = (blockIdx.x * (int64_t)kThreads + threadIdx.x) * V; i < n; i += (int64_t)gridDim.x * kThreads * V) {
    const int c = (int)(i % channels);
    const Pack<T, V> g = *reinterpret_cast<const Pack<T, V>*>(dy + i);
    const Pack<T, V> in = *reinterpret_cast<const Pack<T, V>*>(z + i);
    Pack<T, V> out;
#pragma unroll
    for (int k = 0; k < V; ++k) out.v[k] = from_f<T>(backward_one<T, ACT, FQ>(to_f<T>(g.v[k]), to_f<T>(in.v[k]), to_f<T>(bias[c + k]), q));
    *reinterpret_cast<Pack<T, V>*>(dz + i) = out;
  }
}

struct Shape {
  int layout;  // 0 = NCHW, 1 = channels-last
  int64_t images;
  int channels;
  int hw;
};

// Blocks per NCHW plane: the same for every pack width, so the partial sums' count is known
// before the width is picked.
int blocks_per_plane(int hw, int dtype_bytes) {
  const int v = 16 / dtype_bytes;
  const int b = (hw + kThreads * v - 1) / (kThreads * v);
  return b < kMaxBlocksPerPlane ? b : kMaxBlocksPerPlane;
}

// Blocks of the channels-last backward: fixed by the element count alone (not the pack
// width), so the partial sums' count is known before the width is picked.
constexpr int64_t kMaxNhwcBlocks = 1024;
unsigned nhwc_blocks(int64_t n) {
  const int64_t b = (n + kThreads * 32 - 1) / (kThreads * 32);
  return static_cast<unsigned>(b < 1 ? 1 : (b < kMaxNhwcBlocks ? b : kMaxNhwcBlocks));
}

unsigned flat_blocks(int64_t n, int v) {
  const int64_t b = (n / v + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

bool aligned(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// 16-byte packs when the run of elements sharing the pack layout divides evenly.
template <typename T> int pack_width(const Shape& s, const void* a, const void* b, const void* c, const void* d) {
  const int v = 16 / sizeof(T);
  const int run = s.layout == 0 ? s.hw : s.channels;
  return (run % v == 0 && aligned(a) && aligned(b) && aligned(c) && (d == nullptr || aligned(d))) ? v : 1;
}

template <typename T, int V, int ACT, bool FQ> void launch_forward(const Shape& s, const T* z, const T* bias, T* y, Quant q, cudaStream_t st) {
  const int64_t planes = s.images * s.channels;
  if (s.layout == 0) {
    const dim3 grid(blocks_per_plane(s.hw, sizeof(T)), (unsigned)(planes < 65535 ? planes : 65535));
    bias_act_forward_nchw<T, V, ACT, FQ><<<grid, kThreads, 0, st>>>(z, bias, y, planes, s.channels, s.hw, q);
  } else if (s.channels / V <= kThreads) {
    const int rows = kThreads / (s.channels / V);
    const int64_t b = (planes * s.hw / s.channels + rows - 1) / rows;
    bias_act_forward_nhwc<T, V, ACT, FQ><<<(unsigned)(b < 65535 * 8 ? b : 65535 * 8), kThreads, 0, st>>>(z, bias, y, planes * s.hw / s.channels, s.channels, q);
  } else {
    const int64_t n = planes * s.hw;
    bias_act_forward_flat<T, V, ACT, FQ><<<flat_blocks(n, V), kThreads, 0, st>>>(z, bias, y, n, s.channels, q);
  }
}

template <typename T, int V, int ACT, bool FQ>
void launch_backward(const Shape& s, const T* dy, const T* z, const T* bias, T* dz, float* partial, Quant q, cudaStream_t st) {
  const int64_t planes = s.images * s.channels;
  if (s.layout == 0) {
    const dim3 grid(blocks_per_plane(s.hw, sizeof(T)), (unsigned)(planes < 65535 ? planes : 65535));
    bias_act_backward_nchw<T, V, ACT, FQ><<<grid, kThreads, 0, st>>>(dy, z, bias, dz, partial, planes, s.channels, s.hw, q);
  } else if (partial != nullptr) {
    const int64_t n = planes * s.hw;
    bias_act_backward_nhwc<T, V, ACT, FQ><<<nhwc_blocks(n), kThreads, 0, st>>>(dy, z, bias, dz, partial, n / s.channels, s.channels, q);
  } else {
    const int64_t n = planes * s.hw;
    bias_act_backward_flat<T, V, ACT, FQ><<<flat_blocks(n, V), kThreads, 0, st>>>(dy, z, bias, dz, n, s.channels, q);
  }
}

// Picks the kernel instance for (activation, fake-quant on/off, pack width).
template <typename T, int ACT, bool FQ>
void dispatch(bool backward, const Shape& s, const void* dy, const void* z, const void* bias, void* out, float* partial, Quant q, cudaStream_t st) {
  const int v = pack_width<T>(s, z, bias, out, dy);
  const T* zt = static_cast<const T*>(z);
  const T* bt = static_cast<const T*>(bias);
  T* ot = static_cast<T*>(out);
  const T* gt = static_cast<const T*>(dy);
  constexpr int W = 16 / sizeof(T);
  if (backward) {
    if (v == W) launch_backward<T, W, ACT, FQ>(s, gt, zt, bt, ot, partial, q, st);
    else launch_backward<T, 1, ACT, FQ>(s, gt, zt, bt, ot, partial, q, st);
  } else {
    if (v == W) launch_forward<T, W, ACT, FQ>(s, zt, bt, ot, q, st);
    else launch_forward<T, 1, ACT, FQ>(s, zt, bt, ot, q, st);
  }
}

template <typename T>
void dispatch_act(bool backward, int act, bool fq, const Shape& s, const void* dy, const void* z, const void* bias, void* out, float* partial, Quant q,
                  cudaStream_t st) {
  if (act == 1) {
    if (fq) dispatch<T, 1, true>(backward, s, dy, z, bias, out, partial, q, st);
    else dispatch<T, 1, false>(backward, s, dy, z, bias, out, partial, q, st);
  } else {
    if (fq) dispatch<T, 0, true>(backward, s, dy, z, bias, out, partial, q, st);
    else dispatch<T, 0, false>(backward, s, dy, z, bias, out, partial, q, st);
  }
}

}  // namespace

extern "C" {

// How many floats the backward's bias partial sums take: NCHW channels x images x blocks per
// plane, channels-last blocks x channels (in those orders); 0 where the caller sums the bias
// gradient itself (channels-last with more channel packs than a block has threads). The
// pointers are the backward's (dy, z, bias, dz), which decide the pack width.
int64_t yq_bias_act_partials(int dtype, int layout, int64_t images, int channels, int hw, const void* dy, const void* z, const void* bias, const void* dz) {
  if (layout == 0) return (int64_t)channels * images * blocks_per_plane(hw, dtype == 1 ? 2 : 4);
  const Shape s{layout, images, channels, hw};
  const int v = dtype == 1 ? pack_width<__half>(s, z, bias, dz, dy) : pack_width<float>(s, z, bias, dz, dy);
  if (channels / v > kThreads) return 0;
  return (int64_t)nhwc_blocks(images * channels * (int64_t)hw) * channels;
}

// dtype: 0 = float, 1 = half; layout: 0 = contiguous NCHW, 1 = channels-last; act: 0 = none,
// 1 = SiLU; scale <= 0: no fake quantization. z, y: images x channels x hw elements.
int yq_bias_act_forward(int dtype, int layout, int act, const void* z, const void* bias, void* y, int64_t images, int channels, int hw, float scale,
                        void* stream) {
  if (images * channels * (int64_t)hw == 0) return 0;
  const Shape s{layout, images, channels, hw};
  const Quant q{scale, scale > 0 ? 1.0f / scale : 0.0f, 0.0f, 0.0f};
  auto st = static_cast<cudaStream_t>(stream);
  if (dtype == 1) dispatch_act<__half>(false, act, scale > 0, s, nullptr, z, bias, y, nullptr, q, st);
  else dispatch_act<float>(false, act, scale > 0, s, nullptr, z, bias, y, nullptr, q, st);
  return static_cast<int>(cudaGetLastError());
}

// dz gets the gradient for z (dy laid out as z); partial gets the bias gradient's partial
// sums (yq_bias_act_partials floats; null when that is 0). Fake quantization when lo < hi.
int yq_bias_act_backward(int dtype, int layout, int act, const void* dy, const void* z, const void* bias, void* dz, float* partial, int64_t images,
                         int channels, int hw, float lo, float hi, void* stream) {
  if (images * channels * (int64_t)hw == 0) return 0;
  const Shape s{layout, images, channels, hw};
  const Quant q{0.0f, 0.0f, lo, hi};
  auto st = static_cast<cudaStream_t>(stream);
  if (dtype == 1) dispatch_act<__half>(true, act, lo < hi, s, dy, z, bias, dz, partial, q, st);
  else dispatch_act<float>(true, act, lo < hi, s, dy, z, bias, dz, partial, q, st);
  return static_cast<int>(cudaGetLastError());
}

}  // extern "C"
