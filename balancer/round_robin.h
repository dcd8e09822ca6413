#pragma once
// Smooth weighted round robin (nginx's sequence: weights 5,1,1 give a a b a c a a, not
// a a a a a b c), precomputed once, walked with one atomic cursor shared by all workers.

#include <atomic>
#include <cstdint>
#include <vector>

#include "balancer/policy.h"

namespace wsgate::balancer {

class RoundRobin final : public Policy {
public:
  // `weights[i]` >= 1 is backend i's weight.
  explicit RoundRobin(const std::vector<uint32_t>& weights);

  // The next eligible slot of the schedule. Slow start thins it: a backend whose effective
  // weight is a fraction f of its configured one keeps its slot with probability f (from
  // in.random), and otherwise gives it to a random other slot, so its share follows its
  // ramp approximately while the schedule itself stays fixed.
  std::optional<std::size_t> pick(const PickInput& in) override;

  // The precomputed sequence of backend indexes (one cycle), for tests.
  const std::vector<uint32_t>& schedule() const noexcept { return schedule_; }

  // Longest schedule kept; larger weight sums are scaled down proportionally (each
  // weight stays >= 1).
  static constexpr std::size_t kMaxSchedule = 4096;

private:
  std::vector<uint32_t> schedule_;
  std::vector<uint64_t> fullWeights_;  // configured weights in kWeightUnit, for slow start
  std::atomic<uint64_t> cursor_{0};    // relaxed: any interleaving of pickers is fair enough
};

}  // namespace wsgate::balancer
