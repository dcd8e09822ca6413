// The `hash` policy over the pool's Maglev table.

#include "balancer/consistent_hash.h"

#include "balancer/maglev.h"

namespace wsgate::balancer {

std::optional<std::size_t> ConsistentHash::pick(const PickInput& in) {
  if (in.table == nullptr) return std::nullopt;
  const auto i = in.table->lookup(in.key.value_or(in.random), in.excluded);
  if (i && *i >= in.backends.size()) return std::nullopt;  // table and backends out of step
  return i;
}

}  // namespace wsgate::balancer
