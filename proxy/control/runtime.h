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
  std::vector<net::SocketAddress> sources;        // source_addresses, port 0; empty: not bound
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
  // The config as the file says it, before discovered backends were added (config is this
  // plus them, discovered_backends.h): what a change of a DNS answer builds the next
  // snapshot from without reading the file. The same object as `config` without discovery.
  std::shared_ptr<const conf::Config> source;
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
      engines_ = std::make_shared<std::vector<EngineSlot>>(kMaxScriptWorkers);
    }
  }
  const PoolEntry* findPool(const std::string& name) const;
  const ListenerEntry* findListener(const std::string& key) const;

  // Worker `worker`'s Lua state for this snapshot's script, made on its first use by that
  // worker (and only ever touched by it: Lua is not thread-safe). Sessions hold the snapshot,
  // so a state lives as long as a session started under it. nullptr without a script, or
  // when the state cannot be made (`error` then says why).
  scripting::Engine* engine(int worker, std::string& error) const;
  // Takes over `previous`'s Lua states: a snapshot that changes only discovered backends
  // runs the same script, so its states (and their wsgate.shared) carry on.
  void shareScriptStates(const Runtime& previous) { engines_ = previous.engines_; }

private:
  struct EngineSlot {
    scripting::EnginePtr engine;
    std::string error;  // why it could not be made: said once, not retried per request
  };
  // kMaxScriptWorkers slots; shared with the snapshots a discovery change derives from it.
  std::shared_ptr<std::vector<EngineSlot>> engines_;
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
// `source`: the file's config that `config` was derived from by adding discovered backends
// (null: `config` itself).
RuntimePtr buildRuntime(std::shared_ptr<const conf::Config> config, const Runtime* previous,
                        std::string& error, std::vector<std::string>& warnings,
                        std::shared_ptr<const conf::Config> source = nullptr);

// The snapshot after a change of discovered backends only: `config` is `previous->source`
// with the new sets (withDiscovered). Listeners, TLS contexts, the script and its Lua states
// are `previous`'s, nothing is read from disk and no name is resolved; pools are rebuilt,
// with kept backends (and their addresses) carried over. A backend that joins starts its
// slow start. nullptr with `error` set when an address does not parse.
RuntimePtr withNewBackends(const Runtime& previous, std::shared_ptr<const conf::Config> config,
                           std::string& error);

// Gives every backend of `runtime` its configured weight and max_connections (kept Backend
// objects carry the values of the snapshot they came from). Returns how many changed.
std::size_t applyTunables(const Runtime& runtime);

}  // namespace wsgate::proxy
