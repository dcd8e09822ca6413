#pragma once
// A pool: named backends, the policy that chooses among them, and what every policy shares:
// eligibility (health, drain, limits, retries), slow start, the half-open retry gate, the
// consistent-hash table for sticky keys, and the sticky cookie's values.

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "balancer/backend.h"
#include "balancer/maglev.h"
#include "balancer/policy.h"
#include "balancer/time.h"

namespace wsgate::balancer {

// Per-pool tuning; plain data. The defaults are what a pool gets when its config is silent.
struct PoolOptions {
  Duration slowStart = Duration::zero();  // ramp after a backend comes back; zero = off
  PassiveBackoff backoff;                 // passive ejection: 1s doubling up to 30s
};

// One request for a backend. Everything that varies comes in here: no clock, no generator.
struct PickRequest {
  // `tried[i]`: backends()[i] already failed this request (retries). Short: rest untried.
  const std::vector<bool>& tried;
  // stickyKeyHash of the request's sticky value, if the pool has one and the request
  // carries it. Used by the `hash` policy; see pickSticky for the other policies.
  std::optional<uint64_t> stickyKey = std::nullopt;
  TimePoint now = {};
  uint64_t random = 0;  // fresh uniform bits for every pick
};

class Pool {
public:
  // `backends` in config order; `policy` from makePolicy over the same backends' weights.
  // Builds the hash table: 128 KiB, 1.4 ms for 4 backends, 13 ms for 100 (maglev.cpp; off
  // the event loops, as reloads are).
  // `weights`: the table's, parallel to backends (a reload builds the pool before it gives
  // kept backends their new weight); empty: each backend's weight().
  Pool(std::string name, std::vector<BackendPtr> backends, PolicyPtr policy,
       PoolOptions options = {}, const std::vector<uint32_t>& weights = {});

  const std::string& name() const noexcept { return name_; }
  const std::vector<BackendPtr>& backends() const noexcept { return backends_; }
  const PoolOptions& options() const noexcept { return options_; }
  const MaglevTable& hashTable() const noexcept { return table_; }

  // The policy's choice among the backends that are available at request.now (not draining,
  // not down by active checks, not passively ejected, under max_connections) and not tried,
  // with slow-start weights. A half-open backend goes to one request at a time (the retry).
  //
  // If that leaves nothing, the policy chooses among the untried backends that are out only
  // by passive ejection (not draining, not actively down, not full), without the half-open
  // gate: passive health is a guess from a few failures, and a try costs less than a
  // certain 503 (Envoy's panic mode, limited to passive health). Active checks and drain
  // are not second-guessed. nullopt when nothing is left.
  std::optional<std::size_t> pick(const PickRequest& request);

  // Consistent placement of `key` whatever the pool's policy: the owner of key's slot in the
  // Maglev table, or its stable substitute when that backend is not eligible. Same rules and
  // fallback as pick(); request.stickyKey is ignored. For a pool with a sticky header, query
  // parameter or source_ip and a policy other than `hash`.
  std::optional<std::size_t> pickSticky(uint64_t key, const PickRequest& request);

  // `index` itself when it may take this request (as pick() would judge it; for a sticky
  // cookie or a Lua `backend =`), otherwise pick(request).
  std::optional<std::size_t> pickPreferring(std::size_t index, const PickRequest& request);

  // Index of the backend named `name`, or nullopt.
  std::optional<std::size_t> find(std::string_view name) const;

  // The sticky cookie value naming backends()[index] (see cookie.h), and back: the index a
  // cookie value names, nullopt for a value that names no backend of this pool.
  const std::string& cookie(std::size_t index) const { return cookies_[index]; }
  std::optional<std::size_t> findByCookie(std::string_view value) const noexcept;

  // ---- impure convenience -------------------------------------------------------------
  // The one place in balancer/ that reads a clock and a random generator: for callers that
  // have neither at hand (proxy/session/session.cpp until it passes its loop's time and a worker's
  // generator). Everything else takes them as parameters.
  std::optional<std::size_t> pick(const std::vector<bool>& tried) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    return pick(PickRequest{tried, std::nullopt, std::chrono::steady_clock::now(), rng()});
  }

private:
  template <class Choose>
  std::optional<std::size_t> pickWith(const PickRequest& request, Choose choose);

  std::string name_;
  std::vector<BackendPtr> backends_;
  PolicyPtr policy_;
  PoolOptions options_;
  std::vector<uint64_t> cookieHashes_;  // parallel to backends_; also the table's names
  MaglevTable table_;
  std::vector<std::string> cookies_;  // parallel to backends_
};

// A policy of `kind` over backends with these configured weights (`hash` ignores them: the
// Pool's table carries them). Never nullptr.
PolicyPtr makePolicy(PolicyKind kind, const std::vector<uint32_t>& weights);

}  // namespace wsgate::balancer
