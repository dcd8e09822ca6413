#pragma once
// A pool: named backends plus the policy that chooses among them.

#include <optional>
#include <string>
#include <vector>

#include "balancer/backend.h"
#include "balancer/policy.h"

namespace wsgate::balancer {

class Pool {
public:
  Pool(std::string name, std::vector<BackendPtr> backends, PolicyPtr policy);

  const std::string& name() const noexcept { return name_; }
  const std::vector<BackendPtr>& backends() const noexcept { return backends_; }

  // Picks a backend that is available (up, under max_connections) and not in `tried`
  // (indexes into backends()). When every untried backend is down but some is not full,
  // one of those is returned anyway (a pool whose backends all failed once must still be
  // tried rather than answer 502 forever). nullopt when nothing is left.
  std::optional<std::size_t> pick(const std::vector<bool>& tried);

  // Index of the backend named `name`, or nullopt.
  std::optional<std::size_t> find(std::string_view name) const;

private:
  std::string name_;
  std::vector<BackendPtr> backends_;
  PolicyPtr policy_;
};

// Builds a policy for `kind` over backends with these weights.
PolicyPtr makePolicy(PolicyKind kind, const std::vector<uint32_t>& weights);

}  // namespace wsgate::balancer
