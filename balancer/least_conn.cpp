// Weighted least connections with a weighted random tie break.

#include "balancer/least_conn.h"

#include "balancer/hash.h"
#include "balancer/random.h"

namespace wsgate::balancer {

std::optional<std::size_t> LeastConn::pick(const PickInput& in) {
  std::optional<std::size_t> best;
  uint64_t bestActive = 0, bestWeight = 1;
  uint64_t tiedWeight = 0;  // total weight of the backends tied at the best ratio so far
  for (std::size_t i = 0; i < in.backends.size(); ++i) {
    if (isExcluded(in, i)) continue;
    const uint64_t active = in.backends[i]->active();
    const uint64_t weight = effectiveWeight(in, i);
    // active / weight against bestActive / bestWeight, cross-multiplied: counts are 32-bit
    // and weights below 2^42, so 128 bits hold the products exactly.
    const auto lhs = static_cast<unsigned __int128>(active) * bestWeight;
    const auto rhs = static_cast<unsigned __int128>(bestActive) * weight;
    if (!best || lhs < rhs) {
      best = i;
      bestActive = active;
      bestWeight = weight;
      tiedWeight = weight;
    } else if (lhs == rhs) {
      // Weighted reservoir sampling over the ties (Chao): keep the newcomer with probability
      // weight / tiedWeight; each tie draws its own bits from the one random number.
      tiedWeight += weight;
      if (uniformBelow(mix64(in.random + i), tiedWeight) < weight) {
        best = i;
        bestActive = active;
        bestWeight = weight;
      }
    }
  }
  return best;
}

}  // namespace wsgate::balancer
