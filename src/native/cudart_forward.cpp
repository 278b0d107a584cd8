// The CUDA runtime functions that our C++/CUDA code calls (libtorch's inline headers in
// cuda_graph.cpp; nvcc's kernel registration and launch code in silu_fake_quant.cu),
// forwarded to the libcudart that libtorch_cuda already loaded. Linking libcudart
// directly would make the binary need it on its own library path (it sits in the
// wheel's nvidia/ folder, not in torch/lib, where users point LD_LIBRARY_PATH).
// Every symbol is checked: a missing one reports cudaErrorSymbolNotFound (or aborts
// with its name where the function cannot return an error) instead of calling null.
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

namespace {

void* next_symbol(const char* name, bool required) {
  void* f = dlsym(RTLD_NEXT, name);
  if (f == nullptr && required) {
    std::fprintf(stderr, "yolo-qat: the CUDA runtime loaded by libtorch has no %s\n", name);
    std::abort();
  }
  return f;
}

}  // namespace

// Functions returning cudaError_t: a missing symbol is an error code.
#define YQ_FORWARD(name, params, args)                                              \
  extern "C" cudaError_t name params {                                              \
    using Fn = cudaError_t(*) params;                                               \
    static Fn real = reinterpret_cast<Fn>(next_symbol(#name, false));               \
    return real != nullptr ? real args : cudaErrorSymbolNotFound;                   \
  }
// Functions that cannot report an error: a missing symbol stops the program, naming it.
#define YQ_FORWARD_REQUIRED(ret, name, params, args)                                \
  extern "C" ret name params {                                                      \
    using Fn = ret(*) params;                                                       \
    static Fn real = reinterpret_cast<Fn>(next_symbol(#name, true));                \
    return real args;                                                               \
  }

YQ_FORWARD(cudaDeviceSynchronize, (void), ())
YQ_FORWARD(cudaEventCreateWithFlags, (cudaEvent_t* e, unsigned int f), (e, f))
YQ_FORWARD(cudaEventDestroy, (cudaEvent_t e), (e))
YQ_FORWARD(cudaEventElapsedTime, (float* ms, cudaEvent_t a, cudaEvent_t b), (ms, a, b))
YQ_FORWARD(cudaEventQuery, (cudaEvent_t e), (e))
YQ_FORWARD(cudaEventRecord, (cudaEvent_t e, cudaStream_t s), (e, s))
YQ_FORWARD(cudaEventSynchronize, (cudaEvent_t e), (e))
YQ_FORWARD(cudaGetLastError, (void), ())
YQ_FORWARD(cudaStreamWaitEvent, (cudaStream_t s, cudaEvent_t e, unsigned int f), (s, e, f))
YQ_FORWARD(cudaLaunchKernel, (const void* f, dim3 g, dim3 b, void** args, size_t shm, cudaStream_t s), (f, g, b, args, shm, s))
YQ_FORWARD_REQUIRED(const char*, cudaGetErrorString, (cudaError_t e), (e))

#ifdef YQ_KERNELS
// What nvcc's generated host code calls to register the embedded kernels at start-up and
// to pass a launch's configuration (the CUDA runtime's private entry points; their
// signatures are those of crt/host_runtime.h).
YQ_FORWARD_REQUIRED(void**, __cudaRegisterFatBinary, (void* fat), (fat))
YQ_FORWARD_REQUIRED(void, __cudaRegisterFatBinaryEnd, (void** h), (h))
YQ_FORWARD_REQUIRED(void, __cudaUnregisterFatBinary, (void** h), (h))
YQ_FORWARD_REQUIRED(void, __cudaRegisterFunction,
                    (void** h, const char* host, char* dev, const char* name, int limit, uint3* tid, uint3* bid, dim3* bdim, dim3* gdim,
                     int* wsize),
                    (h, host, dev, name, limit, tid, bid, bdim, gdim, wsize))
YQ_FORWARD_REQUIRED(unsigned, __cudaPushCallConfiguration, (dim3 g, dim3 b, size_t shm, struct CUstream_st* s), (g, b, shm, s))
YQ_FORWARD(__cudaPopCallConfiguration, (dim3 * g, dim3* b, size_t* shm, void* s), (g, b, shm, s))
// CUDA 13's launch path (crt/device_functions.h: `__cudaLaunchKernel_helper`).
YQ_FORWARD(__cudaGetKernel, (cudaKernel_t * k, const void* f), (k, f))
YQ_FORWARD(__cudaLaunchKernel, (cudaKernel_t k, dim3 g, dim3 b, void** args, size_t shm, cudaStream_t s), (k, g, b, args, shm, s))
#endif
