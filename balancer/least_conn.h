#pragma once
// Weighted least connections: the eligible backend with the fewest active sessions per unit
// of effective weight, counting every worker's sessions (Backend::active is shared).

#include "balancer/policy.h"

namespace wsgate::balancer {

class LeastConn final : public Policy {
public:
  // A backend whose active/weight is lowest; ties go to one of the tied backends at random,
  // in proportion to their weights (from in.random). The random tie break is what keeps
  // workers that pick at the same instant, and see the same counts, from all landing on the
  // first backend of the list. Stateless: the counts are the state.
  std::optional<std::size_t> pick(const PickInput& in) override;
};

}  // namespace wsgate::balancer
