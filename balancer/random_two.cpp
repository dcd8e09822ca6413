// Power of two choices over the eligible backends, weighted draws.

#include "balancer/random_two.h"

#include "balancer/hash.h"
#include "balancer/random.h"

namespace wsgate::balancer {

std::optional<std::size_t> RandomTwo::pick(const PickInput& in) {
  const std::size_t n = in.backends.size();
  uint64_t total = 0;  // below 2^42 per backend: no overflow short of 2^22 backends
  for (std::size_t i = 0; i < n; ++i) {
    if (!isExcluded(in, i)) total += effectiveWeight(in, i);
  }
  if (total == 0) return std::nullopt;

  // Two points on the line of eligible weights; one walk finds the backends under both.
  const uint64_t targets[2] = {uniformBelow(in.random, total),
                               uniformBelow(mix64(in.random), total)};
  std::size_t drawn[2] = {n, n};
  uint64_t below = 0;
  for (std::size_t i = 0; i < n && (drawn[0] == n || drawn[1] == n); ++i) {
    if (isExcluded(in, i)) continue;
    below += effectiveWeight(in, i);
    for (int d = 0; d < 2; ++d) {
      if (drawn[d] == n && targets[d] < below) drawn[d] = i;
    }
  }
  const std::size_t a = drawn[0], b = drawn[1];
  // active / weight of b below a's, cross-multiplied as in least_conn.
  const auto ratioB =
      static_cast<unsigned __int128>(in.backends[b]->active()) * effectiveWeight(in, a);
  const auto ratioA =
      static_cast<unsigned __int128>(in.backends[a]->active()) * effectiveWeight(in, b);
  return ratioB < ratioA ? b : a;
}

}  // namespace wsgate::balancer
