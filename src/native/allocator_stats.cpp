// The CUDA caching allocator's own byte counters (what torch.cuda.max_memory_allocated
// reads): memory the program's tensors hold at their peak, and the allocator's reserve,
// unaffected by other processes on the card (cudaMemGetInfo is not).
#include <c10/cuda/CUDACachingAllocator.h>

#include <cstdint>
#include <cstring>
#include <exception>

extern "C" {

// Peak bytes allocated and reserved since the last reset; 0, or 1 with *err set.
int yq_allocator_peak(int device, uint64_t* allocated, uint64_t* reserved, char** err) {
  try {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *allocated = static_cast<uint64_t>(stats.allocated_bytes[all].peak);
    *reserved = static_cast<uint64_t>(stats.reserved_bytes[all].peak);
    return 0;
  } catch (const std::exception& e) {
    *err = strdup(e.what());
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return 1;
}

int yq_allocator_reset_peak(int device, char** err) {
  try {
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
    return 0;
  } catch (const std::exception& e) {
    *err = strdup(e.what());
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return 1;
}
}
