#include "proxy/control/discovered_backends.h"

#include <algorithm>
#include <set>

namespace wsgate::proxy {
namespace {

// An SRV weight (0..65535) as a backend weight: the loader's range for `weight`.
constexpr uint32_t kMaxWeight = 256;

}  // namespace

std::string discoverKey(const conf::PoolConfig& pool, const conf::DiscoverConfig& d) {
  static constexpr const char* kFamilies[] = {"any", "ipv4", "ipv6"};
  std::string key = pool.name + "/" + d.dns + ":" + std::to_string(d.port) + "/" +
                    kFamilies[static_cast<int>(d.family)];
  for (const auto& r : d.resolvers) key += "@" + r.str();
  return key;
}

conf::Config withDiscovered(const conf::Config& source, const DiscoveredSets& sets) {
  conf::Config out = source;
  for (auto& pool : out.pools) {
    std::set<std::string> names;
    for (const auto& b : pool.backends) names.insert(b.name);
    for (std::size_t i = 0; i < pool.discover.size(); ++i) {
      const conf::DiscoverConfig& d = pool.discover[i];
      const auto set = sets.find(discoverKey(pool, d));
      if (set == sets.end()) continue;
      for (const Endpoint& e : set->second) {
        conf::BackendConfig b;
        b.name = endpointName(e);
        if (!names.insert(b.name).second) continue;
        b.address = {e.host, e.port};
        b.weight = d.weight != 0 ? d.weight : std::clamp<uint32_t>(e.weight, 1, kMaxWeight);
        b.maxConnections = d.maxConnections;
        b.mark = d.mark;
        b.discover = static_cast<int>(i);
        pool.backends.push_back(std::move(b));
      }
    }
  }
  return out;
}

}  // namespace wsgate::proxy
