#pragma once
// GET /metrics: the Prometheus text exposition of the workers' counters (stats.h), the
// backends' shared counters and the control plane's state, read from the current snapshot.

#include <string>

#include "proxy/control/runtime.h"

namespace wsgate::proxy {

class Server;

std::string renderMetrics(const Runtime& runtime, const Server& server);

}  // namespace wsgate::proxy
