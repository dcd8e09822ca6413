#pragma once
// A load-balancing policy is a pure selector: it sees the pool's backends, which of them are
// excluded (already tried, down, draining, full), their effective weights, the sticky key and
// a random number, and returns the index to use. Clocks and randomness come in as values.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "balancer/backend.h"

namespace wsgate::balancer {

class MaglevTable;

enum class PolicyKind { RoundRobin, LeastConn, RandomTwo, Hash };

struct PickInput {
  std::span<const BackendPtr> backends;
  // `excluded[i]` true: backends[i] must not be picked. Shorter than backends: the rest are
  // not excluded.
  const std::vector<bool>& excluded;
  // Effective weights (slow start applied), kWeightUnit per configured unit; parallel to
  // backends. Empty or short: the configured weight of the backends left out.
  std::span<const uint64_t> weights = {};
  // The request's sticky key (stickyKeyHash of its value), for `hash`; the others ignore it.
  std::optional<uint64_t> key = std::nullopt;
  // Uniform random bits, fresh for every pick: tie breaks and random choices.
  uint64_t random = 0;
  // The pool's consistent-hash table over these backends (Pool builds it), for `hash`.
  const MaglevTable* table = nullptr;
};

class Policy {
public:
  virtual ~Policy() = default;
  // The index of a backend that is not excluded, or nullopt when none is. Called
  // concurrently from every worker: implementations keep state in atomics.
  virtual std::optional<std::size_t> pick(const PickInput& in) = 0;
};

using PolicyPtr = std::unique_ptr<Policy>;

// Shared by the policies: whether backends[i] may be picked, and its effective weight.
inline bool isExcluded(const PickInput& in, std::size_t i) noexcept {
  return i < in.excluded.size() && in.excluded[i];
}
uint64_t effectiveWeight(const PickInput& in, std::size_t i) noexcept;

}  // namespace wsgate::balancer
