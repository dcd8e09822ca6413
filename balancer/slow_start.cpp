// Slow start's linear ramp, in integers so that every instance computes the same weights.

#include "balancer/slow_start.h"

#include <algorithm>

namespace wsgate::balancer {

uint64_t slowStartWeight(uint32_t weight, std::optional<TimePoint> upSince, TimePoint now,
                         Duration window) noexcept {
  const uint64_t full = uint64_t{std::max<uint32_t>(weight, 1)} * kWeightUnit;
  if (!upSince || window <= Duration::zero()) return full;
  const Duration elapsed = now - *upSince;
  if (elapsed >= window) return full;
  const uint64_t start = std::max<uint64_t>(full / 10, 1);
  if (elapsed <= Duration::zero()) return start;
  // (full - start) < 2^42 and elapsed < window < 2^63 ticks: the product fits in 128 bits.
  const auto ramp = static_cast<unsigned __int128>(full - start) *
                    static_cast<uint64_t>(elapsed.count()) / static_cast<uint64_t>(window.count());
  return start + static_cast<uint64_t>(ramp);
}

}  // namespace wsgate::balancer
