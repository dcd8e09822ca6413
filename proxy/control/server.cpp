#include "proxy/control/server.h"

#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "conf/loader.h"
#include "proxy/control/admin.h"
#include "proxy/control/health_checker.h"
#include "proxy/log.h"
#include "proxy/net/address.h"
#include "proxy/net/buffer_pool.h"
#include "proxy/net/handles.h"
#include "proxy/control/runtime.h"
#include "proxy/control/worker.h"
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
  std::vector<std::string> warnings;
  RuntimePtr rt = buildRuntime(config, nullptr, error, warnings);
  for (const auto& w : warnings) std::cerr << w << "\n";
  if (!rt) {
    std::cerr << (error.starts_with(path) ? "" : path + ": ") << error << "\n";
    return std::nullopt;
  }
  return Loaded{config, rt};
}

// Descriptors wsgate keeps for itself besides its sessions: listeners, event loops,
// io_uring, health checks, admin connections, logs.
constexpr uint64_t kReservedFds = 100;

// Raises the soft open-files limit to the hard one (as nginx's worker_rlimit_nofile or Go
// do: epoll has no FD_SETSIZE), and warns when max_connections cannot be reached under it.
// Past the limit nothing breaks: accepts pause and backend connections are answered 503.
void raiseOpenFilesLimit(const conf::Config& cfg) {
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) != 0) return;
  if (nofile.rlim_cur < nofile.rlim_max) {
    rlimit raised = nofile;
    raised.rlim_cur = nofile.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) nofile = raised;
  }
  const uint64_t limit = nofile.rlim_cur == RLIM_INFINITY ? UINT64_MAX : nofile.rlim_cur;
  const uint64_t want = cfg.limits.maxConnections;  // each session: client + backend socket
  if (limit != UINT64_MAX && want * 2 + kReservedFds > limit) {
    log().warn(
        "limits.max_connections {} needs {} open files, the limit is {}: beyond about {} "
        "connections, accepts pause and backend connections get 503 (raise LimitNOFILE= or "
        "ulimit -n, or lower max_connections)",
        want, want * 2 + kReservedFds, limit, (limit - std::min(kReservedFds, limit / 4)) / 2);
  } else {
    log().info("open files limit {}",
               limit == UINT64_MAX ? std::string("unlimited") : std::to_string(limit));
  }
}

// Whether the kernel has the TLS upper-layer protocol (kTLS) loaded or built in.
bool kernelOffersTls() {
  std::FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
  if (f == nullptr) return false;
  char line[256] = {};
  const bool read = std::fgets(line, sizeof line, f) != nullptr;
  std::fclose(f);
  if (!read) return false;
  const std::string ulps = std::string(" ") + line;
  return ulps.find(" tls") != std::string::npos;
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
  raiseOpenFilesLimit(cfg);
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
      // Accepted sockets inherit both from their listener, so neither costs a call per
      // client: TCP_NODELAY, and delayed ACKs from the first segment (TCP_QUICKACK off, as
      // HAProxy's tcp-smart-accept): the ACK of a request rides on its response instead of
      // going alone, one segment less per connection.
      int one = 1;
      int zero = 0;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof zero);
      fds[w].push_back(fd);
    }
    log().info("listening listener={} address={}{}", l.name, addr->str(), l.tls ? " tls" : "");
    if (l.tls && l.tls->ktls) {
      // Said once at start, not per connection: the fallback is quiet.
      log().info(
          "listener {}: ktls requested; {}: TLS runs in user space over wsgate's own buffers",
          l.name,
          kernelOffersTls() ? "the kernel offers the tls module, which this version does not use"
                            : "the kernel offers no tls module");
    }
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
