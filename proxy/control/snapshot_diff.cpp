#include "proxy/control/snapshot_diff.h"

#include <unordered_map>

namespace wsgate::proxy {

std::string listenerKey(const conf::ListenerConfig& l) {
  // Port 0 asks for any free port, so several listeners may say "127.0.0.1:0": their names
  // tell them apart.
  return l.listen.port == 0 ? l.listen.str() + "#" + l.name : l.listen.str();
}

std::string backendIdentity(const conf::PoolConfig& pool, const conf::BackendConfig& b) {
  return pool.name + "/" + b.name + "@" + b.address.str();
}

std::size_t SnapshotDiff::backendsUpdated() const {
  std::size_t n = 0;
  for (const auto& k : backendsKept) n += k.tunablesChanged ? 1 : 0;
  return n;
}

std::string SnapshotDiff::summary() const {
  return "listeners kept=" + std::to_string(listenersKept.size()) +
         " opened=" + std::to_string(listenersOpened.size()) +
         " closed=" + std::to_string(listenersClosed.size()) +
         " backends kept=" + std::to_string(backendsKept.size()) +
         " added=" + std::to_string(backendsAdded.size()) +
         " removed=" + std::to_string(backendsRemoved.size()) +
         " updated=" + std::to_string(backendsUpdated());
}

SnapshotDiff diff(const conf::Config& old, const conf::Config& next) {
  SnapshotDiff d;
  std::unordered_map<std::string, std::size_t> oldListeners;
  for (std::size_t i = 0; i < old.listeners.size(); ++i) {
    oldListeners.emplace(listenerKey(old.listeners[i]), i);
  }
  std::vector<bool> listenerKept(old.listeners.size(), false);
  for (std::size_t i = 0; i < next.listeners.size(); ++i) {
    auto it = oldListeners.find(listenerKey(next.listeners[i]));
    if (it == oldListeners.end() || listenerKept[it->second]) {
      d.listenersOpened.push_back(i);
    } else {
      listenerKept[it->second] = true;
      d.listenersKept.push_back({it->second, i});
    }
  }
  for (std::size_t i = 0; i < old.listeners.size(); ++i) {
    if (!listenerKept[i]) d.listenersClosed.push_back(i);
  }

  std::unordered_map<std::string, BackendAt> oldBackends;
  for (std::size_t p = 0; p < old.pools.size(); ++p) {
    for (std::size_t b = 0; b < old.pools[p].backends.size(); ++b) {
      oldBackends.emplace(backendIdentity(old.pools[p], old.pools[p].backends[b]), BackendAt{p, b});
    }
  }
  std::unordered_map<std::string, bool> seen;
  for (std::size_t p = 0; p < next.pools.size(); ++p) {
    for (std::size_t b = 0; b < next.pools[p].backends.size(); ++b) {
      const conf::BackendConfig& now = next.pools[p].backends[b];
      const std::string id = backendIdentity(next.pools[p], now);
      auto it = oldBackends.find(id);
      if (it == oldBackends.end() || seen[id]) {
        d.backendsAdded.push_back({p, b});
        continue;
      }
      seen[id] = true;
      const conf::BackendConfig& was = old.pools[it->second.pool].backends[it->second.backend];
      const bool changed = was.weight != now.weight || was.maxConnections != now.maxConnections;
      d.backendsKept.push_back({it->second, {p, b}, changed});
    }
  }
  for (std::size_t p = 0; p < old.pools.size(); ++p) {
    for (std::size_t b = 0; b < old.pools[p].backends.size(); ++b) {
      if (!seen.contains(backendIdentity(old.pools[p], old.pools[p].backends[b]))) {
        d.backendsRemoved.push_back({p, b});
      }
    }
  }
  if (old.workers != next.workers) {
    auto show = [](int w) { return w == 0 ? std::string("auto") : std::to_string(w); };
    d.needsRestart.push_back("workers: " + show(old.workers) + " -> " + show(next.workers));
  }
  return d;
}

}  // namespace wsgate::proxy
