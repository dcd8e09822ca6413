#pragma once
// Slow start: a backend that comes back into rotation takes load gradually, so a cold process
// (empty caches, a JIT not yet warm) is not handed a least-connection pool's whole backlog.

#include <cstdint>
#include <optional>

#include "balancer/time.h"

namespace wsgate::balancer {

// Effective weights are counted in thousandths of a configured weight, so that a backend of
// weight 1 (the usual case) can ramp too.
inline constexpr uint64_t kWeightUnit = 1000;

// The effective weight at `now` of a backend of configured `weight` (0 counts as 1) that came
// back at `upSince` (nullopt: never went away): weight * kWeightUnit, except within `window`
// after upSince, where it rises linearly from a tenth of that (never less than 1) to all of
// it. A zero or negative window turns slow start off; a `now` before upSince is the start.
uint64_t slowStartWeight(uint32_t weight, std::optional<TimePoint> upSince, TimePoint now,
                         Duration window) noexcept;

}  // namespace wsgate::balancer
