#pragma once
// Active health checks: for every backend of a pool with `health`, a probe every
// `interval` (HTTP GET expecting 2xx, or a WebSocket upgrade expecting a valid 101) with
// `timeout`. Results go to balancer::Backend::reportProbe, whose rise/fall state every
// worker reads. Runs on the main thread's event loop, so probing never delays a session.
// A reload hands it the new snapshot: probes are kept by backend (a kept backend keeps its
// schedule and its probe in flight), new backends' first probes are spread over their
// interval, removed backends' probes stop.
// It also watches what sessions see: a backend that drops live WebSocket sessions (no close
// frame: a crash, a deploy without a drain) is named at warning with the count, at most once
// per kDropWarnEvery per backend, instead of only at the next connect that fails.

#include <chrono>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/control/runtime.h"
#include "proxy/net/handles.h"

namespace wsgate::proxy {

class HealthChecker {
public:
  HealthChecker(event_base* base, RuntimePtr runtime);
  // Probes what `runtime` asks for from now on.
  void update(RuntimePtr runtime);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  static constexpr std::chrono::seconds kDropWarnEvery{10};

private:
  struct Probe;
  static void onTimerCb(evutil_socket_t, short, void* probe) noexcept;
  static void onReadCb(bufferevent*, void* probe) noexcept;
  static void onEventCb(bufferevent*, short what, void* probe) noexcept;
  void start(Probe& p);
  void onReadable(Probe& p);
  void finish(Probe& p, bool ok, std::string_view why);
  static void onDropTickCb(evutil_socket_t, short, void* self) noexcept;
  // Warns about the backends whose droppedSessions grew since their last warning.
  void warnDroppedSessions();

  event_base* base_;
  RuntimePtr runtime_;
  std::unordered_map<const balancer::Backend*, std::unique_ptr<Probe>> probes_;
  std::mt19937_64 rng_{std::random_device{}()};
  net::EventPtr dropTick_;  // every second
  std::unordered_map<const balancer::Backend*, std::chrono::steady_clock::time_point>
      lastDropWarning_;
};

}  // namespace wsgate::proxy
