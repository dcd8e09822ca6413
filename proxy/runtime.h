#pragma once
// A Runtime is one immutable snapshot of everything a session needs from the config:
// the config itself, compiled routes, pools with resolved backend addresses. Workers
// share it as std::shared_ptr<const Runtime>; a reload builds a new one.

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "balancer/pool.h"
#include "conf/config.h"
#include "proxy/net/address.h"
#include "proxy/router.h"

namespace wsgate::proxy {

struct PoolEntry {
  const conf::PoolConfig* config = nullptr;
  std::shared_ptr<balancer::Pool> pool;       // pick() mutates only atomics
  std::vector<net::SocketAddress> addresses;  // parallel to pool->backends()
};

struct Runtime {
  std::shared_ptr<const conf::Config> config;
  std::unordered_map<std::string, PoolEntry> pools;
  Router router;

  explicit Runtime(std::shared_ptr<const conf::Config> c)
      : config(std::move(c)), router(config->routes) {}
  const PoolEntry* findPool(const std::string& name) const;
};

using RuntimePtr = std::shared_ptr<const Runtime>;

// Resolves backend addresses and builds pools. Backends whose identity is unchanged from
// `previous` keep their Backend object (and live counters). nullptr with `error` set when
// an address cannot be resolved.
RuntimePtr buildRuntime(std::shared_ptr<const conf::Config> config, const Runtime* previous,
                        std::string& error);

}  // namespace wsgate::proxy
