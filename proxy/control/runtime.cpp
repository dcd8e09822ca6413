#include "proxy/control/runtime.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "proxy/control/snapshot_diff.h"
#include "proxy/log.h"

namespace wsgate::proxy {
namespace {

balancer::PolicyKind toKind(conf::Policy p) {
  switch (p) {
    case conf::Policy::RoundRobin:
      return balancer::PolicyKind::RoundRobin;
    case conf::Policy::LeastConn:
      return balancer::PolicyKind::LeastConn;
    case conf::Policy::RandomTwo:
      return balancer::PolicyKind::RandomTwo;
    case conf::Policy::Hash:
      return balancer::PolicyKind::Hash;
  }
  return balancer::PolicyKind::RoundRobin;
}

balancer::BackendPtr reuseOrCreate(const Runtime* previous, balancer::BackendSpec spec) {
  if (previous != nullptr) {
    if (const PoolEntry* old = previous->findPool(spec.pool)) {
      const std::string id = spec.identity();
      for (const auto& b : old->pool->backends()) {
        if (b->spec().identity() == id) return b;
      }
    }
  }
  return std::make_shared<balancer::Backend>(std::move(spec));
}

void logFromLua(scripting::LogLevel level, std::string_view text) {
  switch (level) {
    case scripting::LogLevel::Debug:
      log().debug("lua: {}", text);
      break;
    case scripting::LogLevel::Info:
      log().info("lua: {}", text);
      break;
    case scripting::LogLevel::Warn:
      log().warn("lua: {}", text);
      break;
    case scripting::LogLevel::Error:
      log().error("lua: {}", text);
      break;
  }
}

// Loads `scripting.file` and checks that every route's `lua:` names a function it defines.
bool loadScript(Runtime& rt, std::string& error) {
  const conf::Config& config = *rt.config;
  if (!config.scripting) return true;
  const conf::ScriptingConfig& sc = *config.scripting;
  rt.script = scripting::loadScript(
      sc.file, {.instructions = sc.instructionLimit, .memoryBytes = sc.memoryLimit}, error);
  if (!rt.script) return false;
  for (const auto& route : config.routes) {
    if (route.lua.empty() || rt.script->defines(route.lua)) continue;
    error = route.luaMark.str() + ": route's lua '" + route.lua + "' is not a function " + sc.file +
            " defines";
    return false;
  }
  return true;
}

}  // namespace

const PoolEntry* Runtime::findPool(const std::string& name) const {
  auto it = pools.find(name);
  return it == pools.end() ? nullptr : &it->second;
}

scripting::Engine* Runtime::engine(int worker, std::string& error) const {
  if (!script || !engines_ || worker < 0 || worker >= kMaxScriptWorkers) return nullptr;
  EngineSlot& slot = engines_[worker];
  if (!slot.engine && slot.error.empty()) {
    slot.engine = scripting::Engine::create(script, &logFromLua, slot.error);
    if (slot.engine) {
      log().info("worker {}: Lua state for {} ready ({} KiB)", worker, script->file,
                 slot.engine->memoryUsed() / 1024);
    } else if (slot.error.empty()) {
      slot.error = script->file + ": the Lua state could not be made";
    }
  }
  error = slot.error;
  return slot.engine.get();
}

const ListenerEntry* Runtime::findListener(const std::string& key) const {
  for (const auto& l : listeners) {
    if (l.key == key) return &l;
  }
  return nullptr;
}

uint64_t openFilesCapacity(uint64_t openFiles) {
  if (openFiles == UINT64_MAX) return UINT64_MAX;
  return std::max<uint64_t>(1, (openFiles - std::min(kReservedFds, openFiles / 4)) / 2);
}

namespace {

uint64_t defaultMaxConnections(const conf::Limits& limits) {
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) != 0 || nofile.rlim_cur == RLIM_INFINITY) {
    return limits.maxConnections;
  }
  return std::min(limits.maxConnections, openFilesCapacity(nofile.rlim_cur));
}

}  // namespace

std::size_t applyTunables(const Runtime& runtime) {
  std::size_t changed = 0;
  for (const auto& [name, entry] : runtime.pools) {
    const auto& backends = entry.pool->backends();
    for (std::size_t i = 0; i < backends.size(); ++i) {
      const conf::BackendConfig& bc = entry.config->backends[i];
      changed += backends[i]->update(bc.weight, bc.maxConnections) ? 1 : 0;
    }
  }
  return changed;
}

RuntimePtr buildRuntime(std::shared_ptr<const conf::Config> config, const Runtime* previous,
                        std::string& error, std::vector<std::string>& warnings) {
  auto rt = std::make_shared<Runtime>(config);
  std::vector<tls::Problem> tlsErrors, tlsWarnings;
  std::vector<std::string> routeHosts;
  for (const auto& r : config->routes) {
    if (r.match.host) routeHosts.push_back(*r.match.host);
  }
  for (const auto& l : config->listeners) {
    ListenerEntry entry{&l, nullptr, listenerKey(l), {}, nullptr};
    const ListenerEntry* kept = previous != nullptr ? previous->findListener(entry.key) : nullptr;
    entry.counters = kept != nullptr ? kept->counters : std::make_shared<ListenerCounters>();
    auto address = net::resolve(l.listen, error);
    if (!address) {
      error = l.mark.str() + ": listener " + l.name + ": " + error;
      return nullptr;
    }
    entry.address = *address;
    if (l.tls) entry.tls = tls::ServerContext::build(*l.tls, routeHosts, tlsErrors, tlsWarnings);
    rt->listeners.push_back(std::move(entry));
  }
  for (const auto& pc : config->pools) {
    PoolEntry entry;
    entry.config = &pc;
    std::vector<balancer::BackendPtr> backends;
    std::vector<uint32_t> weights;
    for (const auto& bc : pc.backends) {
      auto addr = net::resolve(bc.address, error);
      if (!addr) {
        error = bc.mark.str() + ": pool " + pc.name + " backend " + bc.name + ": " + error;
        return nullptr;
      }
      entry.addresses.push_back(*addr);
      balancer::BackendSpec spec{pc.name,         bc.name,   bc.address.host,
                                 bc.address.port, bc.weight, bc.maxConnections};
      backends.push_back(reuseOrCreate(previous, std::move(spec)));
      weights.push_back(bc.weight);
    }
    auto policy = balancer::makePolicy(toKind(pc.policy), weights);
    if (!policy) {
      error = "pool " + pc.name + ": policy not supported by this build";
      return nullptr;
    }
    for (std::size_t i = 0; i < pc.sourceAddresses.size(); ++i) {
      const std::string& source = pc.sourceAddresses[i];
      const std::string where = pc.sourceAddressMarks[i].str() + ": pool " + pc.name + ": ";
      auto addr = net::resolve(conf::HostPort{source, 0}, error);
      if (!addr) {
        error = where + "source address " + source + ": " + error;
        return nullptr;
      }
      // A source this host does not have would fail every connection: say so now.
      const int fd = socket(addr->storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      const bool bound = fd >= 0 && bind(fd, addr->get(), addr->length) == 0;
      const int bindError = errno;
      if (fd >= 0) close(fd);
      if (!bound) {
        error = where + "source address " + source + " cannot be used: " +
                std::strerror(bindError) +
                (bindError == EADDRNOTAVAIL ? " (not an address of this host)" : "");
        return nullptr;
      }
      entry.sources.push_back(*addr);
    }
    if (pc.tls) entry.tls = tls::ClientContext::build(*pc.tls, tlsErrors, tlsWarnings);
    balancer::PoolOptions options;
    options.slowStart = pc.slowStart;
    entry.pool = std::make_shared<balancer::Pool>(pc.name, std::move(backends), std::move(policy),
                                                  options, weights);
    rt->pools.emplace(pc.name, std::move(entry));
  }
  if (!loadScript(*rt, error)) return nullptr;
  rt->maxConnections = config->limits.maxConnectionsSet ? config->limits.maxConnections
                                                        : defaultMaxConnections(config->limits);
  for (const auto& w : tlsWarnings) warnings.push_back(w.mark.str() + ": warning: " + w.message);
  if (!tlsErrors.empty()) {
    error.clear();
    for (const auto& e : tlsErrors) {
      error += (error.empty() ? "" : "\n") + e.mark.str() + ": " + e.message;
    }
    return nullptr;
  }
  return rt;
}

}  // namespace wsgate::proxy
