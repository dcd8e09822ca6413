#include "proxy/server.h"

#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>
#include <vector>

#include "conf/loader.h"
#include "proxy/admin.h"
#include "proxy/health_checker.h"
#include "proxy/log.h"
#include "proxy/net/address.h"
#include "proxy/net/buffer_pool.h"
#include "proxy/net/handles.h"
#include "proxy/runtime.h"
#include "proxy/worker.h"
#include "wsgate/version.h"

namespace wsgate::proxy {
namespace {

struct Loaded {
  std::shared_ptr<const conf::Config> config;
  RuntimePtr runtime;
};

// Loads, validates and resolves; prints errors to stderr. nullopt on any error.
std::optional<Loaded> load(const std::string& path) {
  conf::LoadResult r = conf::loadFile(path);
  if (!r.ok()) {
    for (const auto& e : r.errors) std::cerr << e.str() << "\n";
    return std::nullopt;
  }
  auto config = std::make_shared<const conf::Config>(std::move(*r.config));
  std::string error;
  RuntimePtr rt = buildRuntime(config, nullptr, error);
  if (!rt) {
    std::cerr << (error.starts_with(path) ? "" : path + ": ") << error << "\n";
    return std::nullopt;
  }
  return Loaded{config, rt};
}

int workerCount(const conf::Config& c) {
  if (c.workers > 0) return c.workers;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void onStopSignal(evutil_socket_t sig, short, void* arg) noexcept {
  log().info("signal {}: shutting down", sig);
  event_base_loopexit(static_cast<event_base*>(arg), nullptr);
}

void onHangup(evutil_socket_t, short, void*) noexcept {
  log().warn("SIGHUP: configuration reload is not available in this version; ignored");
}

}  // namespace

int checkConfig(const std::string& configPath) {
  if (!load(configPath)) return 1;
  std::cout << "ok" << std::endl;
  return 0;
}

int runServer(const std::string& configPath) {
  // Before libevent allocates anything: its buffer chains come from per-worker pools.
  net::installBufferPool();
  auto loaded = load(configPath);
  if (!loaded) return 1;
  const conf::Config& cfg = *loaded->config;
  std::string error;
  if (!initLogging(cfg.log, error)) {
    std::cerr << error << "\n";
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  evthread_use_pthreads();  // workers are stopped from the main thread

  const int workers = workerCount(cfg);
  // One listening socket per listener per worker (SO_REUSEPORT: the kernel spreads
  // connections). With port 0 the first socket's port is reused by the others.
  std::vector<std::vector<int>> fds(workers);
  for (const auto& l : cfg.listeners) {
    auto addr = net::resolve(l.listen, error);
    if (!addr) {
      std::cerr << l.mark.str() << ": listener " << l.name << ": " << error << "\n";
      return 1;
    }
    for (int w = 0; w < workers; ++w) {
      int fd = net::openListener(*addr, error);
      if (fd < 0) {
        std::cerr << l.mark.str() << ": listener " << l.name << ": " << error << "\n";
        return 1;
      }
      if (w == 0) {
        if (auto bound = net::localAddress(fd)) addr = bound;
      }
      // Accepted sockets inherit TCP_NODELAY from their listener: no setsockopt per client.
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      fds[w].push_back(fd);
    }
    log().info("listening listener={} address={}", l.name, addr->str());
  }

  std::vector<std::unique_ptr<Worker>> pool;
  for (int w = 0; w < workers; ++w) {
    pool.push_back(std::make_unique<Worker>(w, workers, std::move(fds[w]), loaded->runtime));
  }
  std::vector<std::thread> threads;
  for (auto& w : pool) threads.emplace_back([&w] { w->run(); });

  net::EventBasePtr base(event_base_new());
  net::EventPtr term(evsignal_new(base.get(), SIGTERM, onStopSignal, base.get()));
  net::EventPtr intr(evsignal_new(base.get(), SIGINT, onStopSignal, base.get()));
  net::EventPtr hup(evsignal_new(base.get(), SIGHUP, onHangup, nullptr));
  evsignal_add(term.get(), nullptr);
  evsignal_add(intr.get(), nullptr);
  evsignal_add(hup.get(), nullptr);
  // Active health checks and the admin endpoint run on this (the main) thread's loop,
  // beside the signals: management work never delays a worker.
  auto health = std::make_unique<HealthChecker>(base.get(), loaded->runtime);
  std::unique_ptr<AdminServer> admin;
  if (cfg.admin) {
    std::vector<Worker*> raw;
    for (auto& w : pool) raw.push_back(w.get());
    admin = AdminServer::start(base.get(), *cfg.admin, loaded->runtime, raw, error);
    if (!admin) {
      std::cerr << error << "\n";
      for (auto& w : pool) w->stop();
      for (auto& t : threads) t.join();
      return 1;
    }
    log().info("admin listening address={}", admin->address());
  }
  log().info("wsgate {} ready workers={} config={}", WSGATE_VERSION, workers, configPath);
  event_base_dispatch(base.get());
  admin.reset();
  health.reset();

  for (auto& w : pool) w->stop();
  for (auto& t : threads) t.join();
  pool.clear();
  log().info("stopped");
  return 0;
}

}  // namespace wsgate::proxy
