#pragma once
// What a reload changes, as a pure function of two configs: listeners kept, opened and
// closed by address; backends kept, added and removed by identity (pool + name + address),
// the kept ones whose tunables changed; and what only a restart can change. The Server acts
// on it; nothing here touches a socket.

#include <cstddef>
#include <string>
#include <vector>

#include "conf/config.h"

namespace wsgate::proxy {

// A backend of a config: config.pools[pool].backends[backend].
struct BackendAt {
  std::size_t pool = 0;
  std::size_t backend = 0;
  bool operator==(const BackendAt&) const = default;
};

struct SnapshotDiff {
  struct KeptListener {
    std::size_t before, after;  // indices in old.listeners / next.listeners
    bool operator==(const KeptListener&) const = default;
  };
  struct KeptBackend {
    BackendAt before, after;
    bool tunablesChanged = false;  // weight or max_connections (updated in place)
    bool operator==(const KeptBackend&) const = default;
  };
  std::vector<KeptListener> listenersKept;
  std::vector<std::size_t> listenersOpened;  // in next.listeners
  std::vector<std::size_t> listenersClosed;  // in old.listeners
  std::vector<KeptBackend> backendsKept;
  std::vector<BackendAt> backendsAdded;    // in next
  std::vector<BackendAt> backendsRemoved;  // in old
  // Changes the running process cannot take ("workers: 2 -> 4"): logged and reported as
  // "needs a restart"; the rest of the reload goes on.
  std::vector<std::string> needsRestart;

  std::size_t backendsUpdated() const;
  // "listeners kept=1 opened=0 closed=0 backends kept=3 added=1 removed=0 updated=1"
  std::string summary() const;
};

// A listener's key: its address as configured (host:port). Two spellings of one address
// ("localhost:80", "127.0.0.1:80") are two listeners, which the second one's bind refuses.
// On port 0 (any free port) the name is part of the key: "127.0.0.1:0#public".
std::string listenerKey(const conf::ListenerConfig& l);
// A backend's identity: pool/name@host:port, as balancer::BackendSpec::identity().
std::string backendIdentity(const conf::PoolConfig& pool, const conf::BackendConfig& b);

SnapshotDiff diff(const conf::Config& old, const conf::Config& next);

}  // namespace wsgate::proxy
