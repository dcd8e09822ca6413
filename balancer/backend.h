#pragma once
// A backend server: its identity from the config plus the live state every worker thread
// shares: sessions in use, passive and active health, admin drain, and when it last came
// back into rotation (for slow start). A Backend outlives config snapshots while its
// identity is unchanged. Time is always a parameter.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "balancer/time.h"

namespace wsgate::balancer {

struct BackendSpec {
  std::string pool;
  std::string name;
  std::string host;  // numeric address or name, as configured
  uint16_t port = 0;
  uint32_t weight = 1;          // as first configured; Backend::weight() is the live value
  uint32_t maxConnections = 0;  // 0 = unlimited; likewise Backend::maxConnections()

  // pool/name@host:port: two specs with the same identity share one Backend across reloads.
  std::string identity() const;
};

// How long passive health keeps a failed backend out: `first` after a failure, doubled by
// each failed retry, never more than `max`; a success starts over.
struct PassiveBackoff {
  Duration first = std::chrono::seconds(1);
  Duration max = std::chrono::seconds(30);

  // The ejection after `strikes` consecutive failures: first * 2^(strikes - 1), capped at
  // max; zero for zero strikes.
  Duration after(uint32_t strikes) const noexcept;
};

enum class PassiveState {
  Up,        // no failure since the last success
  Ejected,   // failed and backing off (also while the half-open retry is out)
  HalfOpen,  // the backoff is over: one new session may retry it (see Backend::tryAdmit)
};

// What a probe result did to the active-check state, for the prober to log.
enum class ProbeTransition { None, WentUp, WentDown };

// What the sessions that used a backend did there, for /metrics and the control plane's
// warnings. Workers add with relaxed fetch_add (no other memory is published through these
// words) once per event: a connect, a response, a session's end; never per message.
struct BackendCounters {
  std::atomic<uint64_t> connectFailures{0};    // connects refused, timed out or reset
  std::atomic<uint64_t> retries{0};            // connects that retried a request another
                                               // backend of the pool had failed
  std::atomic<uint64_t> ejections{0};          // passive ejections started (markDown's)
  std::atomic<uint64_t> responses[6]{};        // response heads by class: [1..5] 1xx..5xx
  std::atomic<uint64_t> websocketSessions{0};  // tunnels opened (a valid 101 relayed)
  std::atomic<uint64_t> droppedSessions{0};    // tunnels the backend left without a close
  // The control plane's own: droppedSessions when it last warned (main thread only).
  std::atomic<uint64_t> droppedWarned{0};

  static void add(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
    c.fetch_add(n, std::memory_order_relaxed);
  }
};

class Backend {
public:
  explicit Backend(BackendSpec spec)
      : spec_(std::move(spec)), weight_(spec_.weight), maxConnections_(spec_.maxConnections) {}
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const BackendSpec& spec() const noexcept { return spec_; }

  // The tunables a reload may change without replacing the backend (its identity, active
  // count, health and leases stay). Relaxed: each is read on its own to steer a choice.
  uint32_t weight() const noexcept { return weight_.load(std::memory_order_relaxed); }
  uint32_t maxConnections() const noexcept {
    return maxConnections_.load(std::memory_order_relaxed);
  }
  // True when something changed.
  bool update(uint32_t weight, uint32_t maxConnections) noexcept {
    const bool changed = weight_.exchange(weight, std::memory_order_relaxed) != weight;
    return (maxConnections_.exchange(maxConnections, std::memory_order_relaxed) !=
            maxConnections) ||
           changed;
  }

  // ---- sessions ----------------------------------------------------------------------

  // Sessions (and in-flight HTTP exchanges) currently using this backend, all workers.
  // Relaxed: the count steers choices, it orders no other memory.
  uint32_t active() const noexcept { return active_.load(std::memory_order_relaxed); }
  void acquire() noexcept { active_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept { active_.fetch_sub(1, std::memory_order_relaxed); }
  // At max_connections (never, when unlimited).
  bool full() const noexcept {
    const uint32_t limit = maxConnections();
    return limit != 0 && active() >= limit;
  }

  // May get a new session at `now`: not draining, not down by active checks, not ejected by
  // passive health, under its connection limit. A half-open backend is available, but only
  // the caller whose tryAdmit succeeds may use it (Pool does both).
  bool available(TimePoint now) const noexcept {
    return !draining() && activeUp() && passiveState(now) != PassiveState::Ejected && !full();
  }

  // ---- passive health: what sessions observe -----------------------------------------

  // A connect failure or a reset. An up backend is ejected for backoff.after(1); a failure of
  // the half-open retry, or any failure once the backoff is over, ejects it for the next
  // step. A failure during an ejection (a session that picked the backend just before) is
  // part of the same outage and changes nothing. Returns the ejection this call started.
  std::optional<Duration> markDown(TimePoint now, const PassiveBackoff& backoff = {}) noexcept;

  // A connect success: ends any ejection and resets the backoff. True when this call brought
  // the backend back (slow start then counts from `now`).
  bool markUp(TimePoint now) noexcept;

  PassiveState passiveState(TimePoint now) const noexcept;

  // For the admin's status: when the last failure was reported (markDown, whether or not it
  // started an ejection), and, while passive health keeps the backend out at `now`, when
  // that ejection ends (the half-open retry being out counts as ejected, as passiveState).
  std::optional<TimePoint> lastFailure() const noexcept;
  std::optional<TimePoint> ejectedUntil(TimePoint now) const noexcept;

  // The last gate before a new session goes here. Up: true. Ejected: false. Half-open: true
  // for the one caller that takes the retry; the backend then stays out for another
  // backoff.after(strikes), unless that session reports markUp or markDown first.
  bool tryAdmit(TimePoint now, const PassiveBackoff& backoff = {}) noexcept;

  // ---- active health: the state of the prober's checks -------------------------------

  // One probe result. While up, `fall` consecutive failures take it down; while down, `rise`
  // consecutive successes bring it up (0 counts as 1). Starts up. Coming up also ends any
  // passive ejection (the probe reached it) and starts slow start. One prober per backend
  // is expected; concurrent reports are safe but interleave into one streak.
  ProbeTransition reportProbe(bool ok, uint32_t rise, uint32_t fall, TimePoint now) noexcept;
  bool activeUp() const noexcept;
  // Active checks were removed from its pool (a reload): back to up, streaks forgotten.
  void clearProbes() noexcept { probe_.store(0, std::memory_order_relaxed); }

  // ---- admin ------------------------------------------------------------------------

  // A draining backend gets no new session (the proxy closes the existing ones). Both return
  // true when they changed something; enable starts slow start at `now`.
  bool drain() noexcept { return !draining_.exchange(true, std::memory_order_relaxed); }
  bool enable(TimePoint now) noexcept;
  bool draining() const noexcept { return draining_.load(std::memory_order_relaxed); }

  // ---- slow start -------------------------------------------------------------------

  // When the backend last came back into rotation (passive or active recovery, enable), or
  // nullopt if it has been in rotation since it was created: a backend present at startup,
  // or added by a reload, gets its full weight at once (a discovered one that joins a
  // running pool: joined()).
  std::optional<TimePoint> upSince() const noexcept;

  // A backend added to a pool already in service (found by DNS discovery): its slow start
  // counts from `now`, as for one back from an outage.
  void joined(TimePoint now) noexcept { cameUp(now); }

  // ---- counters ---------------------------------------------------------------------

  BackendCounters& counters() noexcept { return counters_; }
  const BackendCounters& counters() const noexcept { return counters_; }

private:
  void cameUp(TimePoint now) noexcept;

  const BackendSpec spec_;
  // All relaxed: each word is self-contained state that steers choices; no other memory is
  // published through it. Words that change together are packed so one CAS moves them.
  std::atomic<uint32_t> active_{0};
  std::atomic<uint32_t> weight_;
  std::atomic<uint32_t> maxConnections_;
  std::atomic<uint64_t> passive_{0};  // see backend.cpp; 0 = up
  std::atomic<uint64_t> probe_{0};    // bit 32 down, low 32 bits the contrary streak; 0 = up
  std::atomic<bool> draining_{false};
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::min();  // no such instant
  std::atomic<int64_t> upSinceNs_{kNever};  // TimePoint's nanoseconds since its epoch
  // Kept apart from passive_, which a success clears: the status still says when it failed.
  std::atomic<int64_t> lastFailureNs_{kNever};
  // Apart from the state words the balancer reads on every pick: counting does not make
  // their cache line bounce.
  alignas(64) BackendCounters counters_;
};

using BackendPtr = std::shared_ptr<Backend>;

// RAII share of a backend's active count: acquired on construction, given back when the
// lease is destroyed or reset. Move-only.
class BackendLease {
public:
  BackendLease() = default;
  explicit BackendLease(BackendPtr b) : backend_(std::move(b)) {
    if (backend_) backend_->acquire();
  }
  BackendLease(BackendLease&& o) noexcept : backend_(std::move(o.backend_)) {}
  BackendLease& operator=(BackendLease&& o) noexcept {
    if (this != &o) {
      reset();
      backend_ = std::move(o.backend_);
    }
    return *this;
  }
  BackendLease(const BackendLease&) = delete;
  BackendLease& operator=(const BackendLease&) = delete;
  ~BackendLease() { reset(); }

  void reset() noexcept {
    if (backend_) backend_->release();
    backend_.reset();
  }
  Backend* get() const noexcept { return backend_.get(); }
  Backend* operator->() const noexcept { return backend_.get(); }
  explicit operator bool() const noexcept { return backend_ != nullptr; }

private:
  BackendPtr backend_;
};

}  // namespace wsgate::balancer
