// Smooth weighted round robin: one cycle of nginx's sequence, computed once per config.

#include "balancer/round_robin.h"

#include <algorithm>
#include <numeric>

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

std::optional<std::size_t> RoundRobin::pick(std::span<const BackendPtr> backends,
                                            const std::vector<bool>& excluded) {
  const std::size_t cycle = schedule_.size();
  if (cycle == 0) return std::nullopt;
  // Each pick claims one slot; an excluded slot hands its turn to the next eligible one in
  // the cycle. That favours the backend right after an excluded one while the exclusion
  // lasts, which is the price of a lock-free cursor shared by every worker.
  const uint64_t start = cursor_.fetch_add(1, std::memory_order_relaxed);
  for (std::size_t k = 0; k < cycle; ++k) {
    const std::size_t i = schedule_[(start + k) % cycle];
    // An index outside `backends` (weights and backends out of step) is never returned;
    // one outside `excluded` is simply not excluded.
    if (i >= backends.size()) continue;
    if (i < excluded.size() && excluded[i]) continue;
    return i;
  }
  return std::nullopt;
}

}  // namespace wsgate::balancer
