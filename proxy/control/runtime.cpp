#include "proxy/control/runtime.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>

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

// `previous`'s backend of the same identity and its index there, if any.
std::optional<std::size_t> findKept(const PoolEntry* old, const balancer::BackendSpec& spec) {
  if (old == nullptr) return std::nullopt;
  const std::string id = spec.identity();
  const auto& backends = old->pool->backends();
  for (std::size_t i = 0; i < backends.size(); ++i) {
    if (backends[i]->spec().identity() == id) return i;
  }
  return std::nullopt;
}

// pools.NAME.source_addresses, resolved (port 0) and checked to be this host's.
bool resolveSources(const conf::PoolConfig& pc, PoolEntry& entry, std::string& error) {
  for (std::size_t i = 0; i < pc.sourceAddresses.size(); ++i) {
    const std::string& source = pc.sourceAddresses[i];
    const std::string where = pc.sourceAddressMarks[i].str() + ": pool " + pc.name + ": ";
    auto addr = net::resolve(conf::HostPort{source, 0}, error);
    if (!addr) {
      error = where + "source address " + source + ": " + error;
      return false;
    }
    // A source this host does not have would fail every connection: say so now.
    const int fd = socket(addr->storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool bound = fd >= 0 && bind(fd, addr->get(), addr->length) == 0;
    const int bindError = errno;
    if (fd >= 0) close(fd);
    if (!bound) {
      error = where + "source address " + source + " cannot be used: " + std::strerror(bindError) +
              (bindError == EADDRNOTAVAIL ? " (not an address of this host)" : "");
      return false;
    }
    entry.sources.push_back(*addr);
  }
  return true;
}

// The pool `pc` over `previous`'s backends where their identity is unchanged, new ones
// otherwise. `keepAddresses`: a kept backend keeps its resolved address (a change of
// discovered backends resolves no name); else every address is resolved again (a reload).
// A discovered backend that joins a running pool (previous set) starts its slow start.
bool buildPool(const conf::PoolConfig& pc, const Runtime* previous, bool keepAddresses,
               PoolEntry& entry, std::string& error) {
  const PoolEntry* old = previous != nullptr ? previous->findPool(pc.name) : nullptr;
  entry.config = &pc;
  std::vector<balancer::BackendPtr> backends;
  std::vector<uint32_t> weights;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& bc : pc.backends) {
    balancer::BackendSpec spec{pc.name,         bc.name,   bc.address.host,
                               bc.address.port, bc.weight, bc.maxConnections};
    const auto kept = findKept(old, spec);
    if (kept && keepAddresses) {
      entry.addresses.push_back(old->addresses[*kept]);
    } else {
      auto addr = net::resolve(bc.address, error);
      if (!addr) {
        error = bc.mark.str() + ": pool " + pc.name + " backend " + bc.name + ": " + error;
        return false;
      }
      entry.addresses.push_back(*addr);
    }
    if (kept) {
      backends.push_back(old->pool->backends()[*kept]);
    } else {
      backends.push_back(std::make_shared<balancer::Backend>(std::move(spec)));
      if (bc.discover >= 0 && previous != nullptr) backends.back()->joined(now);
    }
    weights.push_back(bc.weight);
  }
  auto policy = balancer::makePolicy(toKind(pc.policy), weights);
  if (!policy) {
    error = "pool " + pc.name + ": policy not supported by this build";
    return false;
  }
  if (!resolveSources(pc, entry, error)) return false;
  balancer::PoolOptions options;
  options.slowStart = pc.slowStart;
  entry.pool = std::make_shared<balancer::Pool>(pc.name, std::move(backends), std::move(policy),
                                                options, weights);
  return true;
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
  EngineSlot& slot = (*engines_)[worker];
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
                        std::string& error, std::vector<std::string>& warnings,
                        std::shared_ptr<const conf::Config> source) {
  auto rt = std::make_shared<Runtime>(config);
  rt->source = source != nullptr ? std::move(source) : config;
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
    if (!buildPool(pc, previous, /*keepAddresses=*/false, entry, error)) return nullptr;
    if (pc.tls) entry.tls = tls::ClientContext::build(*pc.tls, tlsErrors, tlsWarnings);
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

RuntimePtr withNewBackends(const Runtime& previous, std::shared_ptr<const conf::Config> config,
                           std::string& error) {
  auto rt = std::make_shared<Runtime>(config);
  rt->source = previous.source;
  rt->script = previous.script;
  rt->shareScriptStates(previous);
  rt->maxConnections = previous.maxConnections;
  // The same file, so the same listeners in the same order: their entries point into the
  // new config object.
  rt->listeners = previous.listeners;
  for (std::size_t i = 0; i < rt->listeners.size() && i < config->listeners.size(); ++i) {
    rt->listeners[i].config = &config->listeners[i];
  }
  for (const auto& pc : config->pools) {
    PoolEntry entry;
    if (!buildPool(pc, &previous, /*keepAddresses=*/true, entry, error)) return nullptr;
    if (const PoolEntry* old = previous.findPool(pc.name)) entry.tls = old->tls;
    rt->pools.emplace(pc.name, std::move(entry));
  }
  return rt;
}

}  // namespace wsgate::proxy
