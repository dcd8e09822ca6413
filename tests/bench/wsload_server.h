#pragma once
// `wsload serve`: the WebSocket echo backend benchmarks put behind the proxy. Echoes data
// frames frame by frame, answers ping and close, and answers plain GETs 200 "ok" for health
// checks. One event loop per thread, all accepting from one listening socket.

#include <string>

#include "tests/bench/wsload_net.h"

namespace wsgate::bench {

struct ServeOptions {
  HostPort listen;
  unsigned threads = 1;
  std::string name;  // --name: sent back in every 101 as `X-Backend: NAME` (soak attribution)
};

// Binds, prints "listening HOST:PORT", serves until SIGTERM or SIGINT. Returns the exit code.
int runServe(const ServeOptions& options);

}  // namespace wsgate::bench
