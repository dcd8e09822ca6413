#pragma once
// Power of two choices: two backends drawn at random in proportion to their effective
// weights, the one with fewer active sessions per unit of weight wins. Nearly as even as
// least_conn, and pickers that see the same stale counts rarely agree on the same backend.

#include "balancer/policy.h"

namespace wsgate::balancer {

class RandomTwo final : public Policy {
public:
  // Both draws come from in.random (with replacement: the same backend drawn twice is simply
  // chosen). On equal ratios the first draw wins, so an idle pool is shared by weight.
  std::optional<std::size_t> pick(const PickInput& in) override;
};

}  // namespace wsgate::balancer
