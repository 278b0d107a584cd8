// Host bytes to the GPU without a synchronizing copy. A copy from pageable memory waits for
// the stream's earlier work (the previous QAT step) and then crawls through the driver's
// staging buffer while the loader's threads hold every core: on the 16-core H200 machine a
// 12 MB batch took ~14 ms of main-thread time during which the GPU sat idle. Staged in
// pinned memory (the caching host allocator's, reused once its copy has run) the copy is
// queued on the current stream and the call returns at once.
#include <ATen/ATen.h>

#include "op_shim.h"

extern "C" {

// data: n bytes; returns a new CUDA uint8 tensor of n elements on `device`, or null with
// *err set to a strdup'ed message that the caller frees.
void* yq_upload_bytes(const uint8_t* data, int64_t n, int device, char** err) {
  return yq::new_tensor_or_error(err, [&] {
    at::Tensor host = at::empty({n}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
    if (n > 0) std::memcpy(host.data_ptr(), data, static_cast<size_t>(n));
    return host.to(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device)), /*non_blocking=*/true);
  });
}
}
