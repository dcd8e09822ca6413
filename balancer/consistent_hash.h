#pragma once
// The `hash` policy: a request goes where its sticky key's slot in the pool's Maglev table
// points, so every wsgate instance sends the same key to the same backend.

#include "balancer/policy.h"

namespace wsgate::balancer {

class ConsistentHash final : public Policy {
public:
  // MaglevTable::lookup of in.key over in.table. A request without a key is placed by
  // in.random instead: weighted random, as good as any spread for a client nothing ties to
  // a backend. Slow start does not apply (moving keys as weights ramp would defeat the
  // point); a backend that is down or draining is excluded and its keys go to substitutes.
  // nullopt without a table.
  std::optional<std::size_t> pick(const PickInput& in) override;
};

}  // namespace wsgate::balancer
