// Pool: applies availability and retry exclusions around a policy's pick.

#include "balancer/pool.h"

#include "balancer/round_robin.h"

namespace wsgate::balancer {

namespace {

bool full(const Backend& b) noexcept {
  const uint32_t limit = b.spec().maxConnections;
  return limit != 0 && b.active() >= limit;
}

bool isTried(const std::vector<bool>& tried, std::size_t i) noexcept {
  return i < tried.size() && tried[i];
}

}  // namespace

Pool::Pool(std::string name, std::vector<BackendPtr> backends, PolicyPtr policy)
    : name_(std::move(name)), backends_(std::move(backends)), policy_(std::move(policy)) {}

std::optional<std::size_t> Pool::pick(const std::vector<bool>& tried) {
  // No policy: its kind is not implemented (see makePolicy); conf/ refuses such a config,
  // so this only guards against a pool built by hand.
  if (!policy_ || backends_.empty()) return std::nullopt;
  const std::size_t n = backends_.size();

  // The counters are read once per pick and may move under us; a backend that fills up
  // between this check and the connect just gets one session over its limit, which is
  // cheaper than a lock every worker would contend on.
  std::vector<bool> excluded(n);
  for (std::size_t i = 0; i < n; ++i) excluded[i] = isTried(tried, i) || !backends_[i]->available();
  if (auto i = policy_->pick(backends_, excluded); i && *i < n) return i;

  // Nothing up: passive health marks a backend down after one failed connect and only a
  // success marks it up again, so a pool whose backends all failed once must still try
  // them, or it would answer 502 forever. Full and already-tried ones stay out.
  for (std::size_t i = 0; i < n; ++i) excluded[i] = isTried(tried, i) || full(*backends_[i]);
  if (auto i = policy_->pick(backends_, excluded); i && *i < n) return i;
  return std::nullopt;
}

std::optional<std::size_t> Pool::find(std::string_view name) const {
  for (std::size_t i = 0; i < backends_.size(); ++i) {
    if (backends_[i]->spec().name == name) return i;
  }
  return std::nullopt;
}

PolicyPtr makePolicy(PolicyKind kind, const std::vector<uint32_t>& weights) {
  switch (kind) {
    case PolicyKind::RoundRobin:
      return std::make_unique<RoundRobin>(weights);
    case PolicyKind::LeastConn:
    case PolicyKind::RandomTwo:
    case PolicyKind::Hash:
      // Not implemented yet (tracked by the balancer issue). Returning nullptr rather than
      // silently substituting round robin keeps a config from getting a policy it did not
      // ask for; conf/ refuses these kinds until they land, and a Pool without a policy
      // picks nothing.
      return nullptr;
  }
  return nullptr;
}

}  // namespace wsgate::balancer
