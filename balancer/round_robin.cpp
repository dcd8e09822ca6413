// Smooth weighted round robin: one cycle of nginx's sequence, computed once per config.

#include "balancer/round_robin.h"

#include <algorithm>
#include <numeric>

#include "balancer/hash.h"
#include "balancer/random.h"
#include "balancer/slow_start.h"

namespace wsgate::balancer {

namespace {

// Weights reduced to the shortest schedule that keeps their proportions. Dividing by the
// common divisor changes nothing: the smooth sequence for k*w is the one for w repeated k
// times. Past kMaxSchedule, the part of each weight above 1 is scaled into the room left
// once every backend has its 1, so the cycle never exceeds the limit (unless there are more
// backends than that) and no backend drops out.
std::vector<uint64_t> scheduleWeights(const std::vector<uint32_t>& weights,
                                      std::size_t maxSchedule) {
  std::vector<uint64_t> w(weights.begin(), weights.end());
  for (uint64_t& x : w) x = std::max<uint64_t>(x, 1);  // the contract says >= 1; 0 would starve

  uint64_t divisor = 0;
  for (uint64_t x : w) divisor = std::gcd(divisor, x);
  uint64_t sum = 0;
  for (uint64_t& x : w) {
    x /= divisor;
    sum += x;
  }
  if (sum <= maxSchedule) return w;

  const uint64_t n = w.size();
  const uint64_t room = maxSchedule > n ? maxSchedule - n : 0;
  // sum > maxSchedule >= room + n, so sum - n > 0; (x - 1) * room < 2^32 * 2^13, no overflow.
  for (uint64_t& x : w) x = 1 + (x - 1) * room / (sum - n);
  return w;
}

}  // namespace

RoundRobin::RoundRobin(const std::vector<uint32_t>& weights) {
  const std::vector<uint64_t> w = scheduleWeights(weights, kMaxSchedule);
  const uint64_t total = std::accumulate(w.begin(), w.end(), uint64_t{0});
  schedule_.reserve(total);

  // nginx ngx_http_upstream_get_peer: every step, each current weight grows by its weight;
  // the largest (first on ties) is chosen and pays back the total. After `total` steps every
  // current weight is back to 0, so this is exactly one cycle. O(total * backends), once.
  fullWeights_.reserve(weights.size());
  for (uint32_t x : weights)
    fullWeights_.push_back(uint64_t{std::max<uint32_t>(x, 1)} * kWeightUnit);

  std::vector<int64_t> current(w.size(), 0);
  for (uint64_t step = 0; step < total; ++step) {
    std::size_t best = 0;
    for (std::size_t i = 0; i < w.size(); ++i) {
      current[i] += static_cast<int64_t>(w[i]);
      if (current[i] > current[best]) best = i;
    }
    current[best] -= static_cast<int64_t>(total);
    schedule_.push_back(static_cast<uint32_t>(best));
  }
}

std::optional<std::size_t> RoundRobin::pick(const PickInput& in) {
  const std::size_t cycle = schedule_.size();
  if (cycle == 0) return std::nullopt;
  // An index outside `backends` (weights and backends out of step) is never returned.
  auto eligible = [&](std::size_t i) { return i < in.backends.size() && !isExcluded(in, i); };

  // Each pick claims one slot; an excluded slot hands its turn to the next eligible one in
  // the cycle. That favours the backend right after an excluded one while the exclusion
  // lasts, which is the price of a lock-free cursor shared by every worker.
  const uint64_t start = cursor_.fetch_add(1, std::memory_order_relaxed);
  for (std::size_t k = 0; k < cycle; ++k) {
    const std::size_t i = schedule_[(start + k) % cycle];
    if (!eligible(i)) continue;
    if (i >= in.weights.size() || i >= fullWeights_.size()) return i;
    const uint64_t full = fullWeights_[i];
    if (in.weights[i] >= full || uniformBelow(in.random, full) < in.weights[i]) return i;
    // Ramping and not kept this time: the turn goes to the backend of a random other slot,
    // so the share it gives up is spread over the others by their own shares. Redrawing on
    // a slot of its own or an excluded one keeps that even; after a few draws, a walk from
    // the last one settles it.
    std::size_t slot = 0;
    for (uint64_t draw = 1; draw <= 8; ++draw) {
      slot = uniformBelow(mix64(in.random + draw), cycle);
      const std::size_t other = schedule_[slot];
      if (other != i && eligible(other)) return other;
    }
    for (std::size_t j = 1; j < cycle; ++j) {
      const std::size_t other = schedule_[(slot + j) % cycle];
      if (other != i && eligible(other)) return other;
    }
    return i;  // the only eligible backend
  }
  return std::nullopt;
}

}  // namespace wsgate::balancer
