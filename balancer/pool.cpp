// Pool: eligibility, slow start and the half-open gate around a policy's (or the Maglev
// table's) choice; sticky cookie values.

#include "balancer/pool.h"

#include "balancer/consistent_hash.h"
#include "balancer/cookie.h"
#include "balancer/hash.h"
#include "balancer/least_conn.h"
#include "balancer/random_two.h"
#include "balancer/round_robin.h"
#include "balancer/slow_start.h"

namespace wsgate::balancer {

namespace {

bool isTried(const std::vector<bool>& tried, std::size_t i) noexcept {
  return i < tried.size() && tried[i];
}

// fnv1a64("pool/name"): the cookie's value and the Maglev table's name for each backend.
std::vector<uint64_t> placementNames(const std::vector<BackendPtr>& backends) {
  std::vector<uint64_t> names;
  names.reserve(backends.size());
  for (const auto& b : backends) names.push_back(backendCookieHash(b->spec().pool, b->spec().name));
  return names;
}

std::vector<uint32_t> configuredWeights(const std::vector<BackendPtr>& backends) {
  std::vector<uint32_t> weights;
  weights.reserve(backends.size());
  for (const auto& b : backends) weights.push_back(b->weight());
  return weights;
}

}  // namespace

Pool::Pool(std::string name, std::vector<BackendPtr> backends, PolicyPtr policy,
           PoolOptions options, const std::vector<uint32_t>& weights)
    : name_(std::move(name)),
      backends_(std::move(backends)),
      policy_(std::move(policy)),
      options_(options),
      cookieHashes_(placementNames(backends_)),
      table_(cookieHashes_, weights.empty() ? configuredWeights(backends_) : weights) {
  cookies_.reserve(backends_.size());
  for (const auto& b : backends_) cookies_.push_back(backendCookie(b->spec().pool, b->spec().name));
}

template <class Choose>
std::optional<std::size_t> Pool::pickWith(const PickRequest& request, Choose choose) {
  const std::size_t n = backends_.size();
  if (n == 0) return std::nullopt;

  // The counters are read once per pick and may move under us; a backend that fills up
  // between this check and the connect just gets one session over its limit, which is
  // cheaper than a lock every worker would contend on.
  std::vector<bool> excluded(n);
  std::vector<uint64_t> weights(n);
  for (std::size_t i = 0; i < n; ++i) {
    const Backend& b = *backends_[i];
    excluded[i] = isTried(request.tried, i) || !b.available(request.now);
    weights[i] = slowStartWeight(b.weight(), b.upSince(), request.now, options_.slowStart);
  }
  PickInput in{backends_, excluded, weights, request.stickyKey, request.random, &table_};

  // A half-open backend admits one session: a policy that chose it while another worker took
  // the retry chooses again without it. Each round excludes one more backend.
  for (std::size_t round = 0; round < n; ++round) {
    const auto i = choose(in);
    if (!i || *i >= n) break;
    if (backends_[*i]->tryAdmit(request.now, options_.backoff)) return i;
    excluded[*i] = true;
  }

  // Nothing qualifies: the panic pass over passively ejected backends (see pick()).
  for (std::size_t i = 0; i < n; ++i) {
    const Backend& b = *backends_[i];
    excluded[i] = isTried(request.tried, i) || b.draining() || !b.activeUp() || b.full();
  }
  if (const auto i = choose(in); i && *i < n) return i;
  return std::nullopt;
}

std::optional<std::size_t> Pool::pick(const PickRequest& request) {
  // No policy: a pool built by hand without one (makePolicy never returns nullptr).
  if (!policy_) return std::nullopt;
  return pickWith(request, [this](const PickInput& in) { return policy_->pick(in); });
}

std::optional<std::size_t> Pool::pickSticky(uint64_t key, const PickRequest& request) {
  return pickWith(request,
                  [key](const PickInput& in) { return in.table->lookup(key, in.excluded); });
}

std::optional<std::size_t> Pool::pickPreferring(std::size_t index, const PickRequest& request) {
  if (index < backends_.size() && !isTried(request.tried, index)) {
    Backend& b = *backends_[index];
    if (b.available(request.now) && b.tryAdmit(request.now, options_.backoff)) return index;
  }
  return pick(request);
}

std::optional<std::size_t> Pool::find(std::string_view name) const {
  for (std::size_t i = 0; i < backends_.size(); ++i) {
    if (backends_[i]->spec().name == name) return i;
  }
  return std::nullopt;
}

std::optional<std::size_t> Pool::findByCookie(std::string_view value) const noexcept {
  const auto hash = parseBackendCookie(value);
  if (!hash) return std::nullopt;
  // A linear scan: pools are short, and a 64-bit collision between two names of one pool is
  // not a case to design for (the first would win).
  for (std::size_t i = 0; i < cookieHashes_.size(); ++i) {
    if (cookieHashes_[i] == *hash) return i;
  }
  return std::nullopt;
}

PolicyPtr makePolicy(PolicyKind kind, const std::vector<uint32_t>& weights) {
  switch (kind) {
    case PolicyKind::RoundRobin:
      return std::make_unique<RoundRobin>(weights);
    case PolicyKind::LeastConn:
      return std::make_unique<LeastConn>();
    case PolicyKind::RandomTwo:
      return std::make_unique<RandomTwo>();
    case PolicyKind::Hash:
      return std::make_unique<ConsistentHash>();
  }
  return std::make_unique<RoundRobin>(weights);
}

}  // namespace wsgate::balancer
