// 2x2 average pooling with stride 1 and no padding (YOLOv9's ADown, upstream
// models/common.py: `avg_pool2d(x, 2, 1, 0, False, True)`) for contiguous NCHW tensors,
// forward and backward. ATen's generic kernels take ~20x the memory-bound time for this
// shape; these do the same arithmetic (ATen AveragePool2d.cu, count_include_pad):
// * forward: the four inputs summed in float in row order, divided by 4, rounded once;
// * backward: each input sums, in float and in (output row, output column) order, the
//   gradients of the outputs whose window holds it, each divided by 4; rounded once.
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

// x: planes of h x w; y: planes of (h-1) x (w-1).
template <typename T>
__global__ void pool_forward(const T* __restrict__ x, T* __restrict__ y, int64_t planes, int h, int w) {
  const int oh = h - 1, ow = w - 1;
  const int64_t n = planes * oh * ow;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int c = (int)(i % ow);
    const int r = (int)((i / ow) % oh);
    const T* p = x + (i / ((int64_t)oh * ow)) * h * w + (int64_t)r * w + c;
    float s = 0.0f;
    s += to_f<T>(p[0]);
    s += to_f<T>(p[1]);
    s += to_f<T>(p[w]);
    s += to_f<T>(p[w + 1]);
    y[i] = from_f<T>(s / 4.0f);
  }
}

template <typename T>
__global__ void pool_backward(const T* __restrict__ dy, T* __restrict__ dx, int64_t planes, int h, int w) {
  const int oh = h - 1, ow = w - 1;
  const int64_t n = planes * h * w;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int c = (int)(i % w);
    const int r = (int)((i / w) % h);
    const T* g = dy + (i / ((int64_t)h * w)) * oh * ow;
    const int r0 = r < 2 ? 0 : r - 1, r1 = min(r + 1, oh);
    const int c0 = c < 2 ? 0 : c - 1, c1 = min(c + 1, ow);
    float s = 0.0f;
    for (int pr = r0; pr < r1; ++pr)
      for (int pc = c0; pc < c1; ++pc) s += to_f<T>(g[(int64_t)pr * ow + pc]) / 4.0f;
    dx[i] = from_f<T>(s);
  }
}

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < 65535 * 8 ? b : 65535 * 8);
}

}  // namespace

extern "C" {

// dtype: 0 = float, 1 = half; x and dx hold planes x h x w, y and dy planes x (h-1) x (w-1).
int yq_avg_pool_2x2_forward(int dtype, const void* x, void* y, int64_t planes, int h, int w, void* stream) {
  const int64_t n = planes * (h - 1) * (w - 1);
  if (n <= 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == 1)
    pool_forward<__half><<<blocks_for(n), 256, 0, s>>>(static_cast<const __half*>(x), static_cast<__half*>(y), planes, h, w);
  else
    pool_forward<float><<<blocks_for(n), 256, 0, s>>>(static_cast<const float*>(x), static_cast<float*>(y), planes, h, w);
  return static_cast<int>(cudaGetLastError());
}

int yq_avg_pool_2x2_backward(int dtype, const void* dy, void* dx, int64_t planes, int h, int w, void* stream) {
  const int64_t n = planes * h * w;
  if (n <= 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  if (dtype == 1)
    pool_backward<__half><<<blocks_for(n), 256, 0, s>>>(static_cast<const __half*>(dy), static_cast<__half*>(dx), planes, h, w);
  else
    pool_backward<float><<<blocks_for(n), 256, 0, s>>>(static_cast<const float*>(dy), static_cast<float*>(dx), planes, h, w);
  return static_cast<int>(cudaGetLastError());
}

}  // extern "C"
