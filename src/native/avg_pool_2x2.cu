// 2x2 average pooling with stride 1 and no padding (YOLOv9's ADown, upstream
// models/common.py: `avg_pool2d(x, 2, 1, 0, False, True)`) for contiguous NCHW and
// channels-last tensors, forward and backward. ATen's generic kernels take ~20x the memory-bound time for this
// shape; these do the same arithmetic (ATen AveragePool2d.cu, count_include_pad):
// * forward: the four inputs summed in float in row order, divided by 4, rounded once;
// * backward: each input sums, in float and in (output row, output column) order, the
//   gradients of the outputs whose window holds it, each divided by 4; rounded once.
// ATen's channels-last kernels (avg_pool2d_out_cuda_frame_nhwc and its backward) add in the
// same orders; they ran at about a tenth of the memory bandwidth in the QAT step.
// Measured on an H200 (tests/gpu_kernels.rs): forward identical in fp16 and fp32;
// backward identical in fp32, and in fp16 all but 16 of 33 M gradients identical (those
// one half-precision step away).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "half_float.cuh"

namespace {

using yq::from_f;
using yq::to_f;

// Threads of a block: 32 consecutive columns (coalesced) by 8 strips of kRows rows. Each
// thread walks its column down a strip, so every input row is loaded once per strip, and all
// index arithmetic is 32-bit within a plane (grid.z walks the planes). The previous kernels,
// one element per thread with 64-bit divisions, ran at a fifth of the memory bandwidth.
constexpr int kRows = 4;

dim3 pool_block() { return dim3(32, 8); }

dim3 pool_grid(int64_t planes, int rows, int cols) {
  const unsigned gx = (unsigned)((cols + 31) / 32), gy = (unsigned)((rows + 8 * kRows - 1) / (8 * kRows));
  return dim3(gx > 0 ? gx : 1, gy > 0 ? gy : 1, (unsigned)(planes < 65535 ? planes : 65535));
}

// x: planes of h x w; y: planes of (h-1) x (w-1).
template <typename T>
__global__ void avg_pool_2x2_forward(const T* __restrict__ x, T* __restrict__ y, int64_t planes, int h, int w) {
  const int oh = h - 1, ow = w - 1;
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int r0 = (blockIdx.y * 8 + threadIdx.y) * kRows;
  if (c >= ow || r0 >= oh) return;
  for (int64_t p = blockIdx.z; p < planes; p += gridDim.z) {
    const T* xp = x + p * h * w;
    T* yp = y + p * oh * ow;
    float a = to_f<T>(xp[r0 * w + c]), b = to_f<T>(xp[r0 * w + c + 1]);
    for (int r = r0; r < r0 + kRows && r < oh; ++r) {
      const float a1 = to_f<T>(xp[(r + 1) * w + c]), b1 = to_f<T>(xp[(r + 1) * w + c + 1]);
      float s = 0.0f;
      s += a;
      s += b;
      s += a1;
      s += b1;
      yp[r * ow + c] = from_f<T>(s / 4.0f);
      a = a1;
      b = b1;
    }
  }
}

// dx[r][c] sums dy[pr][pc] / 4 over the windows holding (r, c): pr in {r-1, r}, pc in
// {c-1, c}, inside the output, in that order (ATen's).
template <typename T>
__global__ void avg_pool_2x2_backward(const T* __restrict__ dy, T* __restrict__ dx, int64_t planes, int h, int w) {
  const int oh = h - 1, ow = w - 1;
  const int c = blockIdx.x * 32 + threadIdx.x;
  const int r0 = (blockIdx.y * 8 + threadIdx.y) * kRows;
  if (c >= w || r0 >= h) return;
  const bool left = c >= 1, right = c < ow;
  for (int64_t p = blockIdx.z; p < planes; p += gridDim.z) {
    const T* g = dy + p * oh * ow;
    T* dp = dx + p * h * w;
    // The window row above r (pr = r - 1): its two terms, each already divided by 4.
    float up_l = 0.0f, up_r = 0.0f;
    bool up = r0 >= 1;
    if (up) {
      if (left) up_l = to_f<T>(g[(r0 - 1) * ow + c - 1]) / 4.0f;
      if (right) up_r = to_f<T>(g[(r0 - 1) * ow + c]) / 4.0f;
    }
    for (int r = r0; r < r0 + kRows && r < h; ++r) {
      const bool here = r < oh;
      float cur_l = 0.0f, cur_r = 0.0f;
      if (here) {
        if (left) cur_l = to_f<T>(g[r * ow + c - 1]) / 4.0f;
        if (right) cur_r = to_f<T>(g[r * ow + c]) / 4.0f;
      }
      float s = 0.0f;
      if (up && left) s += up_l;
      if (up && right) s += up_r;
      if (here && left) s += cur_l;
      if (here && right) s += cur_r;
      dp[r * w + c] = from_f<T>(s);
      up = here;
      up_l = cur_l;
      up_r = cur_r;
    }
  }
}

// Channels-last (images x h x w x channels): a thread owns one pack of V channels of one
// column (x: column * packs + pack, so a warp reads consecutive memory) and walks a strip of
// kRows rows, as above.
template <typename T, int V> struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, int V> __device__ __forceinline__ Pack<T, V> load(const T* p) { return *reinterpret_cast<const Pack<T, V>*>(p); }

template <typename T, int V>
__global__ void avg_pool_2x2_forward_nhwc(const T* __restrict__ x, T* __restrict__ y, int64_t images, int h, int w, int channels) {
  const int oh = h - 1, ow = w - 1, packs = channels / V;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  const int r0 = (blockIdx.y * blockDim.y + threadIdx.y) * kRows;
  if (j >= ow * packs || r0 >= oh) return;
  const int64_t col = j / packs, ch = (j % packs) * V, rs = (int64_t)w * channels;
  for (int64_t n = blockIdx.z; n < images; n += gridDim.z) {
    const T* xp = x + n * h * rs + col * channels + ch;
    T* yp = y + n * oh * (int64_t)ow * channels + col * channels + ch;
    Pack<T, V> a = load<T, V>(xp + r0 * rs), b = load<T, V>(xp + r0 * rs + channels);
    for (int r = r0; r < r0 + kRows && r < oh; ++r) {
      const Pack<T, V> a1 = load<T, V>(xp + (r + 1) * rs), b1 = load<T, V>(xp + (r + 1) * rs + channels);
      Pack<T, V> out;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        float s = 0.0f;
        s += to_f<T>(a.v[k]);
        s += to_f<T>(b.v[k]);
        s += to_f<T>(a1.v[k]);
        s += to_f<T>(b1.v[k]);
        out.v[k] = from_f<T>(s / 4.0f);
      }
      *reinterpret_cast<Pack<T, V>*>(yp + (int64_t)r * ow * channels) = out;
      a = a1;
      b = b1;
    }
  }
}

template <typename T, int V>
__global__ void avg_pool_2x2_backward_nhwc(const T* __restrict__ dy, T* __restrict__ dx, int64_t images, int h, int w, int channels) {
  const int oh = h - 1, ow = w - 1, packs = channels / V;
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  const int r0 = (blockIdx.y * blockDim.y + threadIdx.y) * kRows;
  if (j >= w * packs || r0 >= h) return;
  const int c = j / packs;
  const int64_t ch = (j % packs) * V, rs = (int64_t)ow * channels;
  const bool left = c >= 1, right = c < ow;
  for (int64_t n = blockIdx.z; n < images; n += gridDim.z) {
    const T* g = dy + n * oh * rs + ch;
    T* dp = dx + n * h * (int64_t)w * channels + (int64_t)c * channels + ch;
    float up_l[V], up_r[V], cur_l[V], cur_r[V];
#pragma unroll
    for (int k = 0; k < V; ++k) up_l[k] = up_r[k] = 0.0f;
    bool up = r0 >= 1;
    if (up) {
      if (left) {
        const Pack<T, V> v = load<T, V>(g + (r0 - 1) * rs + (int64_t)(c - 1) * channels);
#pragma unroll
        for (int k = 0; k < V; ++k) up_l[k] = to_f<T>(v.v[k]) / 4.0f;
      }
      if (right) {
        const Pack<T, V> v = load<T, V>(g + (r0 - 1) * rs + (int64_t)c * channels);
#pragma unroll
        for (int k = 0; k < V; ++k) up_r[k] = to_f<T>(v.v[k]) / 4.0f;
      }
    }
    for (int r = r0; r < r0 + kRows && r < h; ++r) {
      const bool here = r < oh;
#pragma unroll
      for (int k = 0; k < V; ++k) cur_l[k] = cur_r[k] = 0.0f;
      if (here && left) {
        const Pack<T, V> v = load<T, V>(g + r * rs + (int64_t)(c - 1) * channels);
#pragma unroll
        for (int k = 0; k < V; ++k) cur_l[k] = to_f<T>(v.v[k]) / 4.0f;
      }
      if (here && right) {
        const Pack<T, V> v = load<T, V>(g + r * rs + (int64_t)c * channels);
#pragma unroll
        for (int k = 0; k < V; ++k) cur_r[k] = to_f<T>(v.v[k]) / 4.0f;
      }
      Pack<T, V> out;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        float s = 0.0f;
        if (up && left) s += up_l[k];
        if (up && right) s += up_r[k];
        if (here && left) s += cur_l[k];
        if (here && right) s += cur_r[k];
        out.v[k] = from_f<T>(s);
        up_l[k] = cur_l[k];
        up_r[k] = cur_r[k];
      }
      *reinterpret_cast<Pack<T, V>*>(dp + (int64_t)r * w * channels) = out;
      up = here;
    }
  }
}

dim3 nhwc_block() { return dim3(64, 4); }

dim3 nhwc_grid(int64_t images, int rows, int cols, int packs) {
  const int64_t gx = ((int64_t)cols * packs + 63) / 64, gy = (rows + 4 * kRows - 1) / (4 * kRows);
  return dim3((unsigned)(gx > 0 ? gx : 1), (unsigned)(gy > 0 ? gy : 1), (unsigned)(images < 65535 ? images : 65535));
}

bool aligned(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

template <typename T> void launch_nhwc(bool backward, const void* in, void* out, int64_t images, int h, int w, int channels, cudaStream_t s) {
  constexpr int W = 16 / sizeof(T);
  const bool wide = channels % W == 0 && aligned(in) && aligned(out);
  const T* i = static_cast<const T*>(in);
  T* o = static_cast<T*>(out);
  const int rows = backward ? h : h - 1, cols = backward ? w : w - 1;
  if (wide) {
    const dim3 grid = nhwc_grid(images, rows, cols, channels / W);
    if (backward) avg_pool_2x2_backward_nhwc<T, W><<<grid, nhwc_block(), 0, s>>>(i, o, images, h, w, channels);
    else avg_pool_2x2_forward_nhwc<T, W><<<grid, nhwc_block(), 0, s>>>(i, o, images, h, w, channels);
  } else {
    const dim3 grid = nhwc_grid(images, rows, cols, channels);
    if (backward) avg_pool_2x2_backward_nhwc<T, 1><<<grid, nhwc_block(), 0, s>>>(i, o, images, h, w, channels);
    else avg_pool_2x2_forward_nhwc<T, 1><<<grid, nhwc_block(), 0, s>>>(i, o, images, h, w, channels);
  }
}

}  // namespace

extern "C" {

// dtype: 0 = float, 1 = half; x and dx hold planes x h x w, y and dy planes x (h-1) x (w-1).
int yq_avg_pool_2x2_forward(int dtype, const void* x, void* y, int64_t planes, int h, int w, void* stream) {
  const int64_t n = planes * (h - 1) * (w - 1);
  if (n <= 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == 1)
    avg_pool_2x2_forward<__half><<<pool_grid(planes, h - 1, w - 1), pool_block(), 0, s>>>(static_cast<const __half*>(x), static_cast<__half*>(y), planes, h, w);
  else
    avg_pool_2x2_forward<float><<<pool_grid(planes, h - 1, w - 1), pool_block(), 0, s>>>(static_cast<const float*>(x), static_cast<float*>(y), planes, h, w);
  return static_cast<int>(cudaGetLastError());
}

int yq_avg_pool_2x2_backward(int dtype, const void* dy, void* dx, int64_t planes, int h, int w, void* stream) {
  const int64_t n = planes * h * w;
  if (n <= 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == 1)
    avg_pool_2x2_backward<__half><<<pool_grid(planes, h, w), pool_block(), 0, s>>>(static_cast<const __half*>(dy), static_cast<__half*>(dx), planes, h, w);
  else
    avg_pool_2x2_backward<float><<<pool_grid(planes, h, w), pool_block(), 0, s>>>(static_cast<const float*>(dy), static_cast<float*>(dx), planes, h, w);
  return static_cast<int>(cudaGetLastError());
}

// Channels-last: x and dx hold images x h x w x channels, y and dy images x (h-1) x (w-1) x
// channels. backward: 0 = forward (in = x, out = y), 1 = backward (in = dy, out = dx).
int yq_avg_pool_2x2_nhwc(int dtype, int backward, const void* in, void* out, int64_t images, int h, int w, int channels, void* stream) {
  if (images * (int64_t)h * w * channels == 0 || h < 2 || w < 2) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == 1) launch_nhwc<__half>(backward != 0, in, out, images, h, w, channels, s);
  else launch_nhwc<float>(backward != 0, in, out, images, h, w, channels, s);
  return static_cast<int>(cudaGetLastError());
}

}  // extern "C"
