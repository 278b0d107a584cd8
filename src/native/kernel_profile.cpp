// GPU kernel times through libtorch's Kineto profiler (CUPTI), which tch does not wrap:
// start, run the work, stop; the kernels come back as "duration_ns<TAB>name" lines.
// For `bench qat`'s share of GPU time per kernel family.
#include <torch/csrc/autograd/profiler_kineto.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <set>
#include <string>

namespace {

namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

const std::set<ActivityType> kActivities{ActivityType::CPU, ActivityType::CUDA};

ProfilerConfig config() { return ProfilerConfig(ProfilerState::KINETO); }

}  // namespace

extern "C" {

int yq_profile_start(char** err) {
  try {
    prof::prepareProfiler(config(), kActivities);
    prof::enableProfiler(config(), kActivities);
    return 0;
  } catch (const std::exception& e) {
    *err = strdup(e.what());
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return 1;
}

// The CUDA kernels recorded since yq_profile_start, one per line; malloc'ed (free with
// yq_profile_free), or null with *err set.
char* yq_profile_stop(char** err) {
  try {
    auto result = prof::disableProfiler();
    std::string out;
    for (const auto& e : result->events()) {
      if (e.deviceType() != c10::DeviceType::CUDA) continue;
      std::string name = e.name();
      for (char& c : name)
        if (c == '\n' || c == '\t') c = ' ';
      out += std::to_string(e.durationNs()) + "\t" + name + "\n";
    }
    return strdup(out.c_str());
  } catch (const std::exception& e) {
    *err = strdup(e.what());
  } catch (...) {
    *err = strdup("unknown C++ exception");
  }
  return nullptr;
}

void yq_profile_free(char* p) { std::free(p); }
}
