#pragma once
// A load-balancing policy is a pure selector: it sees the pool's backends and which of
// them are excluded (already tried, down or full) and returns the index to use.

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "balancer/backend.h"

namespace wsgate::balancer {

enum class PolicyKind { RoundRobin, LeastConn, RandomTwo, Hash };

class Policy {
public:
  virtual ~Policy() = default;
  // `excluded[i]` true: backends[i] must not be picked. nullopt when none is eligible.
  // Called concurrently from every worker: implementations keep state in atomics.
  virtual std::optional<std::size_t> pick(std::span<const BackendPtr> backends,
                                          const std::vector<bool>& excluded) = 0;
};

using PolicyPtr = std::unique_ptr<Policy>;

}  // namespace wsgate::balancer
