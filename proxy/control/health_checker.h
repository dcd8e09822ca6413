#pragma once
// Active health checks: for every backend of a pool with `health`, a probe every
// `interval` (HTTP GET expecting 2xx, or a WebSocket upgrade expecting a valid 101) with
// `timeout`. Results go to balancer::Backend::reportProbe, whose rise/fall state every
// worker reads. Runs on the main thread's event loop, so probing never delays a session.

#include <memory>
#include <string>
#include <vector>

#include "proxy/net/handles.h"
#include "proxy/control/runtime.h"

namespace wsgate::proxy {

class HealthChecker {
public:
  HealthChecker(event_base* base, RuntimePtr runtime);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

private:
  struct Probe;
  static void onTimerCb(evutil_socket_t, short, void* probe) noexcept;
  static void onReadCb(bufferevent*, void* probe) noexcept;
  static void onEventCb(bufferevent*, short what, void* probe) noexcept;
  void start(Probe& p);
  void onReadable(Probe& p);
  void finish(Probe& p, bool ok, std::string_view why);

  event_base* base_;
  RuntimePtr runtime_;
  std::vector<std::unique_ptr<Probe>> probes_;
};

}  // namespace wsgate::proxy
