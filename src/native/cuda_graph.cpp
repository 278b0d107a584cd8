// CUDA graph capture and replay through libtorch's at::cuda::CUDAGraph, which tch
// does not wrap. A Graph owns a side stream: warm-up and capture run on it (as
// PyTorch requires), replays run on the caller's current stream. Errors come back
// as strdup'ed strings that the caller frees (util::take_c_message).
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>

namespace {

struct Graph {
  at::cuda::CUDAGraph graph;
  c10::cuda::CUDAStream original;
  c10::cuda::CUDAStream side;
  std::optional<c10::cuda::CUDAStreamGuard> on_side;

  explicit Graph(int device)
      : original(c10::cuda::getCurrentCUDAStream(device)),
        side(c10::cuda::getStreamFromPool(false, device)) {}
};

template <typename F>
int guarded(char** err, F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    *err = strdup(e.what());
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return 1;
}

}  // namespace

extern "C" {

// A new graph whose side stream becomes current (after the work already queued).
void* yq_graph_new(int device, char** err) {
  Graph* g = nullptr;
  guarded(err, [&] {
    g = new Graph(device);
    g->original.synchronize();  // once per graph: simpler than an event, and cheap
    g->on_side.emplace(g->side);
  });
  return g;
}

int yq_graph_capture_begin(void* p, char** err) {
  return guarded(err, [&] { static_cast<Graph*>(p)->graph.capture_begin(); });
}

// Ends the capture and makes the original stream current again, after the side
// stream's warm-up work.
int yq_graph_capture_end(void* p, char** err) {
  auto* g = static_cast<Graph*>(p);
  int rc = guarded(err, [&] { g->graph.capture_end(); });
  guarded(err, [&] {
    g->side.synchronize();
    g->on_side.reset();
  });
  return rc;
}

int yq_graph_replay(void* p, char** err) {
  return guarded(err, [&] { static_cast<Graph*>(p)->graph.replay(); });
}

void yq_graph_free(void* p) { delete static_cast<Graph*>(p); }

// Returns the caching allocator's unused blocks to the driver (e.g. a warm-up's,
// before a capture builds its own pool).
int yq_empty_cache(char** err) {
  return guarded(err, [&] { c10::cuda::CUDACachingAllocator::emptyCache(); });
}

}  // extern "C"
