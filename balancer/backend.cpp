// Backend identity, and the health state machines behind the atomics: passive ejection with
// exponential backoff and a single half-open retry, active rise/fall, drain, slow start.

#include "balancer/backend.h"

#include <algorithm>

namespace wsgate::balancer {

namespace {

// Passive health in one word, so that a CAS moves all of it at once:
//   bits 0..5   strikes: consecutive failures, each of which started an ejection (0 = up)
//   bit  6      retry:   the half-open retry has been handed out (tryAdmit)
//   bits 7..63  until:   end of the ejection, microseconds since TimePoint's epoch
// 57 bits of microseconds last 4,500 years of uptime; 63 strikes are far past any cap.
struct Passive {
  uint32_t strikes = 0;
  bool retry = false;
  uint64_t untilUs = 0;
};

constexpr uint32_t kMaxStrikes = 63;
constexpr uint64_t kMaxUs = (uint64_t{1} << 57) - 1;

uint64_t pack(const Passive& p) noexcept {
  return (p.untilUs << 7) | (uint64_t{p.retry} << 6) | p.strikes;
}

Passive unpack(uint64_t word) noexcept {
  return {static_cast<uint32_t>(word & 63), ((word >> 6) & 1) != 0, word >> 7};
}

uint64_t toUs(TimePoint t) noexcept {
  const int64_t us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  return std::clamp<int64_t>(us, 0, static_cast<int64_t>(kMaxUs));
}

uint64_t laterUs(uint64_t nowUs, Duration d) noexcept {
  const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return std::min(nowUs + static_cast<uint64_t>(std::max<int64_t>(us, 0)), kMaxUs);
}

constexpr uint64_t kProbeDown = uint64_t{1} << 32;

int64_t toNs(TimePoint t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

TimePoint fromNs(int64_t ns) noexcept {
  return TimePoint(std::chrono::duration_cast<Duration>(std::chrono::nanoseconds(ns)));
}

}  // namespace

std::string BackendSpec::identity() const {
  // An IPv6 literal is bracketed so the port separator stays unambiguous (as in a URI,
  // RFC 3986 3.2.2): "app/a@[::1]:80", not "app/a@::1:80".
  const bool ipv6 = host.find(':') != std::string::npos;
  std::string id;
  id.reserve(pool.size() + name.size() + host.size() + 10);
  id.append(pool).append("/").append(name).append("@");
  if (ipv6) id.append("[");
  id.append(host);
  if (ipv6) id.append("]");
  id.append(":").append(std::to_string(port));
  return id;
}

Duration PassiveBackoff::after(uint32_t strikes) const noexcept {
  if (strikes == 0 || first <= Duration::zero()) return Duration::zero();
  const Duration cap = std::max(max, first);
  Duration d = first;
  for (uint32_t k = 1; k < strikes && d < cap; ++k) d = d > cap / 2 ? cap : d * 2;
  return std::min(d, cap);
}

std::optional<Duration> Backend::markDown(TimePoint now, const PassiveBackoff& backoff) noexcept {
  lastFailureNs_.store(toNs(now), std::memory_order_relaxed);
  const uint64_t nowUs = toUs(now);
  uint64_t word = passive_.load(std::memory_order_relaxed);
  for (;;) {
    const Passive p = unpack(word);
    if (p.strikes > 0 && !p.retry && nowUs < p.untilUs) return std::nullopt;  // same outage
    const uint32_t strikes = std::min(p.strikes + 1, kMaxStrikes);
    const Duration ejection = backoff.after(strikes);
    const uint64_t next = pack({strikes, false, laterUs(nowUs, ejection)});
    if (passive_.compare_exchange_weak(word, next, std::memory_order_relaxed)) return ejection;
  }
}

bool Backend::markUp(TimePoint now) noexcept {
  // Every successful connect lands here: read first, so the common case writes nothing and
  // leaves the cache line shared between workers.
  if (passive_.load(std::memory_order_relaxed) == 0) return false;
  if (passive_.exchange(0, std::memory_order_relaxed) == 0) return false;
  cameUp(now);
  return true;
}

PassiveState Backend::passiveState(TimePoint now) const noexcept {
  const Passive p = unpack(passive_.load(std::memory_order_relaxed));
  if (p.strikes == 0) return PassiveState::Up;
  return toUs(now) < p.untilUs ? PassiveState::Ejected : PassiveState::HalfOpen;
}

std::optional<TimePoint> Backend::lastFailure() const noexcept {
  const int64_t ns = lastFailureNs_.load(std::memory_order_relaxed);
  if (ns == kNever) return std::nullopt;
  return fromNs(ns);
}

std::optional<TimePoint> Backend::ejectedUntil(TimePoint now) const noexcept {
  const Passive p = unpack(passive_.load(std::memory_order_relaxed));
  if (p.strikes == 0 || toUs(now) >= p.untilUs) return std::nullopt;
  return TimePoint(std::chrono::duration_cast<Duration>(std::chrono::microseconds(p.untilUs)));
}

bool Backend::tryAdmit(TimePoint now, const PassiveBackoff& backoff) noexcept {
  const uint64_t nowUs = toUs(now);
  uint64_t word = passive_.load(std::memory_order_relaxed);
  for (;;) {
    const Passive p = unpack(word);
    if (p.strikes == 0) return true;
    if (nowUs < p.untilUs) return false;  // ejected, or another session holds the retry
    // Taking the retry re-arms the current step: if its session never reports (the client
    // left mid-connect), the next retry is handed out when that step has passed again.
    const uint64_t next = pack({p.strikes, true, laterUs(nowUs, backoff.after(p.strikes))});
    if (passive_.compare_exchange_weak(word, next, std::memory_order_relaxed)) return true;
  }
}

ProbeTransition Backend::reportProbe(bool ok, uint32_t rise, uint32_t fall,
                                     TimePoint now) noexcept {
  rise = std::max<uint32_t>(rise, 1);
  fall = std::max<uint32_t>(fall, 1);
  uint64_t word = probe_.load(std::memory_order_relaxed);
  for (;;) {
    const bool up = (word & kProbeDown) == 0;
    const uint32_t contrary = static_cast<uint32_t>(word);  // results against the state
    uint64_t next;
    ProbeTransition transition = ProbeTransition::None;
    if (ok == up) {
      next = word & kProbeDown;  // a result that agrees resets the streak
    } else if (contrary + 1 >= (up ? fall : rise)) {
      next = up ? kProbeDown : 0;
      transition = up ? ProbeTransition::WentDown : ProbeTransition::WentUp;
    } else {
      next = (word & kProbeDown) | (contrary + 1);
    }
    if (next == word) return ProbeTransition::None;  // steady state: no write
    if (probe_.compare_exchange_weak(word, next, std::memory_order_relaxed)) {
      if (transition == ProbeTransition::WentUp) {
        passive_.store(0, std::memory_order_relaxed);
        cameUp(now);
      }
      return transition;
    }
  }
}

bool Backend::activeUp() const noexcept {
  return (probe_.load(std::memory_order_relaxed) & kProbeDown) == 0;
}

bool Backend::enable(TimePoint now) noexcept {
  if (!draining_.exchange(false, std::memory_order_relaxed)) return false;
  cameUp(now);
  return true;
}

std::optional<TimePoint> Backend::upSince() const noexcept {
  const int64_t ns = upSinceNs_.load(std::memory_order_relaxed);
  if (ns == kNever) return std::nullopt;
  return fromNs(ns);
}

void Backend::cameUp(TimePoint now) noexcept {
  upSinceNs_.store(toNs(now), std::memory_order_relaxed);
}

}  // namespace wsgate::balancer
