// The smallest value of a tensor type strictly above a > 0, for straight-through masks
// computed with hardtanh_backward (which passes the gradient where -hi < x < hi): for
// x of that type, x < next_above(a) is exactly |x| <= a.
#pragma once
#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace yq {

inline double next_above(double a, at::ScalarType kind) {
  const float inf = std::numeric_limits<float>::infinity();
  switch (kind) {
    case at::kHalf: {
      c10::Half h(static_cast<float>(a));
      if (static_cast<float>(h) > a) return static_cast<float>(h);
      return static_cast<float>(c10::Half(static_cast<uint16_t>(h.x + 1), c10::Half::from_bits()));
    }
    case at::kBFloat16: {
      c10::BFloat16 h(static_cast<float>(a));
      if (static_cast<float>(h) > a) return static_cast<float>(h);
      return static_cast<float>(c10::BFloat16(static_cast<uint16_t>(h.x + 1), c10::BFloat16::from_bits()));
    }
    case at::kFloat: {
      float f = static_cast<float>(a);
      return f > a ? f : std::nextafter(f, inf);
    }
    default:
      return std::nextafter(a, std::numeric_limits<double>::infinity());
  }
}

}  // namespace yq
