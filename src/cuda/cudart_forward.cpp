// The CUDA runtime functions that libtorch's inline header code in graph.cpp calls,
// forwarded to the libcudart that libtorch_cuda already loaded. Linking libcudart
// directly would make the binary need it on its own library path (it sits in the
// wheel's nvidia/ folder, not in torch/lib, where users point LD_LIBRARY_PATH).
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#define YQ_FORWARD(ret, name, params, args)                               \
  extern "C" ret name params {                                            \
    using Fn = ret(*) params;                                             \
    static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, #name));      \
    return real args;                                                     \
  }

YQ_FORWARD(cudaError_t, cudaDeviceSynchronize, (void), ())
YQ_FORWARD(cudaError_t, cudaEventCreateWithFlags, (cudaEvent_t* e, unsigned int f), (e, f))
YQ_FORWARD(cudaError_t, cudaEventDestroy, (cudaEvent_t e), (e))
YQ_FORWARD(cudaError_t, cudaEventElapsedTime, (float* ms, cudaEvent_t a, cudaEvent_t b), (ms, a, b))
YQ_FORWARD(cudaError_t, cudaEventQuery, (cudaEvent_t e), (e))
YQ_FORWARD(cudaError_t, cudaEventRecord, (cudaEvent_t e, cudaStream_t s), (e, s))
YQ_FORWARD(cudaError_t, cudaEventSynchronize, (cudaEvent_t e), (e))
YQ_FORWARD(const char*, cudaGetErrorString, (cudaError_t e), (e))
YQ_FORWARD(cudaError_t, cudaGetLastError, (void), ())
YQ_FORWARD(cudaError_t, cudaStreamWaitEvent, (cudaStream_t s, cudaEvent_t e, unsigned int f), (s, e, f))
