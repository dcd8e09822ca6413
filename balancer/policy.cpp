// Helpers every policy shares.

#include "balancer/policy.h"

#include <algorithm>

#include "balancer/slow_start.h"

namespace wsgate::balancer {

uint64_t effectiveWeight(const PickInput& in, std::size_t i) noexcept {
  if (i < in.weights.size()) return std::max<uint64_t>(in.weights[i], 1);
  return uint64_t{std::max<uint32_t>(in.backends[i]->weight(), 1)} * kWeightUnit;
}

}  // namespace wsgate::balancer
