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
#include "proxy/session/router.h"
#include "proxy/stats.h"
#include "proxy/tls/context.h"
#include "scripting/engine.h"

namespace wsgate::proxy {

struct PoolEntry {
  const conf::PoolConfig* config = nullptr;
  std::shared_ptr<balancer::Pool> pool;           // pick() mutates only atomics
  std::vector<net::SocketAddress> addresses;      // parallel to pool->backends()
  std::shared_ptr<const tls::ClientContext> tls;  // null: plain TCP to the backends
  std::vector<net::SocketAddress> sources;  // source_addresses, port 0; empty: not bound
};

struct ListenerEntry {
  const conf::ListenerConfig* config = nullptr;
  std::shared_ptr<const tls::ServerContext> tls;  // null: plain TCP
  std::string key;             // listenerKey(): what a reload keeps the listener's sockets by
  net::SocketAddress address;  // resolved when the snapshot was built
  std::shared_ptr<ListenerCounters> counters;  // the previous snapshot's, for the same key
};

struct Runtime {
  // Lua states by worker index: at most this many workers run scripts.
  static constexpr int kMaxScriptWorkers = 256;

  std::shared_ptr<const conf::Config> config;
  std::unordered_map<std::string, PoolEntry> pools;
  std::vector<ListenerEntry> listeners;  // parallel to config->listeners
  Router router;
  scripting::ScriptPtr script;  // `scripting:`, checked; null without one
  // limits.max_connections as written, or, left out, what the open-files limit carries
  // (openFilesCapacity), at most the documented default.
  uint64_t maxConnections = 0;

  explicit Runtime(std::shared_ptr<const conf::Config> c)
      : config(std::move(c)), router(config->routes) {
    if (config->scripting) {
      engines_ = std::make_unique<EngineSlot[]>(kMaxScriptWorkers);
    }
  }
  const PoolEntry* findPool(const std::string& name) const;
  const ListenerEntry* findListener(const std::string& key) const;

  // Worker `worker`'s Lua state for this snapshot's script, made on its first use by that
  // worker (and only ever touched by it: Lua is not thread-safe). Sessions hold the snapshot,
  // so a state lives as long as a session started under it. nullptr without a script, or
  // when the state cannot be made (`error` then says why).
  scripting::Engine* engine(int worker, std::string& error) const;

private:
  struct EngineSlot {
    scripting::EnginePtr engine;
    std::string error;  // why it could not be made: said once, not retried per request
  };
  mutable std::unique_ptr<EngineSlot[]> engines_;  // kMaxScriptWorkers slots
};

using RuntimePtr = std::shared_ptr<const Runtime>;

// Descriptors wsgate keeps for itself besides its sessions: listeners, event loops,
// io_uring, health checks, admin connections, logs (at most a quarter of a small limit).
inline constexpr uint64_t kReservedFds = 100;
// The sessions `openFiles` descriptors carry: two each (client and backend sockets), after
// the reserve. At least 1.
uint64_t openFilesCapacity(uint64_t openFiles);

// Resolves listener and backend addresses, builds pools and TLS contexts. Backends whose identity
// is unchanged from `previous` keep their Backend object (active count, leases, health); their new
// weight and max_connections are applied by applyTunables when the snapshot is published, so a
// reload that fails leaves the running one untouched. nullptr with `error` set (one "FILE:LINE:COL:
// message" per line) when an address cannot be resolved or a certificate or key cannot be used;
// `warnings` get the same form (an expired certificate, one without a route's host name).
RuntimePtr buildRuntime(std::shared_ptr<const conf::Config> config, const Runtime* previous,
                        std::string& error, std::vector<std::string>& warnings);

// Gives every backend of `runtime` its configured weight and max_connections (kept Backend
// objects carry the values of the snapshot they came from). Returns how many changed.
std::size_t applyTunables(const Runtime& runtime);

}  // namespace wsgate::proxy
