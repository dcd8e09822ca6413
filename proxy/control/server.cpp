#include "proxy/control/server.h"

#include <event2/thread.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
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
#include "proxy/control/config_watch.h"
#include "proxy/control/discovery.h"
#include "proxy/control/health_checker.h"
#include "proxy/control/listen_fds.h"
#include "proxy/control/snapshot_diff.h"
#include "proxy/control/worker.h"
#include "proxy/log.h"
#include "proxy/net/buffer_pool.h"
#include "wsgate/version.h"

namespace wsgate::proxy {
namespace {

// How often a draining process counts its sessions.
constexpr std::chrono::milliseconds kDrainTick{50};

// Raises the soft open-files limit to the hard one (as nginx's worker_rlimit_nofile or Go
// do: epoll has no FD_SETSIZE). Before the config is loaded: a max_connections left out
// follows the raised limit.
void raiseOpenFilesLimit() {
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) != 0 || nofile.rlim_cur >= nofile.rlim_max) return;
  rlimit raised = nofile;
  raised.rlim_cur = nofile.rlim_max;
  setrlimit(RLIMIT_NOFILE, &raised);
}

// Says what max_connections is and where it came from; warns when a value the file wrote
// cannot be reached under the open-files limit. Past the limit nothing breaks: accepts pause
// and backend connections are answered 503.
void reportOpenFiles(const Runtime& rt) {
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) != 0) return;
  const uint64_t limit = nofile.rlim_cur == RLIM_INFINITY ? UINT64_MAX : nofile.rlim_cur;
  const std::string limitText = limit == UINT64_MAX ? "unlimited" : std::to_string(limit);
  const uint64_t want = rt.maxConnections;  // each session: client + backend socket
  if (!rt.config->limits.maxConnectionsSet) {
    log().info(
        "limits.max_connections {} (not set: what the open files limit {} carries, at "
        "most {})",
        want, limitText, rt.config->limits.maxConnections);
  } else if (limit != UINT64_MAX && want * 2 + kReservedFds > limit) {
    log().warn(
        "limits.max_connections {} needs {} open files, the limit is {}: beyond about {} "
        "connections, accepts pause and backend connections get 503 (raise LimitNOFILE= or "
        "ulimit -n, or lower max_connections)",
        want, want * 2 + kReservedFds, limit, openFilesCapacity(limit));
  } else {
    log().info("limits.max_connections {}, open files limit {}", want, limitText);
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

// Accepted sockets inherit both from their listener, so neither costs a call per client:
// TCP_NODELAY, and delayed ACKs from the first segment (TCP_QUICKACK off, as HAProxy's
// tcp-smart-accept): the ACK of a request rides on its response instead of going alone.
void tuneListener(int fd) {
  int one = 1;
  int zero = 0;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof zero);
}

void closeAll(std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
  fds.clear();
}

// The path of this binary, read at start: after a package upgrade replaced the file, the
// same path names the new binary (which is what SIGUSR2 starts).
std::string ownExecutable() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string path(buf, static_cast<std::size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.ends_with(kDeleted)) path.resize(path.size() - kDeleted.size());
  return path;
}

// The signals wsgate acts on; every other one that would end the process is ignored with a
// log line (an operator's stray `kill -USR1` must not drop every session).
constexpr int kHandled[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD};
constexpr int kIgnored[] = {SIGALRM, SIGVTALRM, SIGPROF, SIGIO,
                            SIGPWR,  SIGSTKFLT, SIGXCPU, SIGXFSZ};

}  // namespace

// ---- a reload, as the reload thread prepares it ------------------------------------------

struct Server::Prepared {
  std::vector<std::string> errors, warnings;
  RuntimePtr runtime;
  SnapshotDiff diff;
  // A change of discovered backends rather than a reload of the file; `unchanged`: the sets
  // give the backends the running snapshot has (nothing to publish).
  bool republish = false;
  bool unchanged = false;
  // First resolutions of the discover entries the file added (the rest keep their sets).
  std::map<std::string, Resolution> fresh;
  // Sockets of the listeners the reload opens: one per worker, by key.
  std::map<std::string, std::vector<int>> opened;

  ~Prepared() {
    for (auto& [key, fds] : opened) closeAll(fds);
  }
};

// The sets a config's discover entries get: empty for --check (it validates only).
using DiscoveredFor = std::function<DiscoveredSets(const conf::Config& source)>;

// Loads, validates and resolves `path`: what --check and every reload run. nullptr with
// `errors` ("FILE:LINE:COL: message") set on any problem.
static RuntimePtr loadRuntime(const std::string& path, const Runtime* previous,
                              const DiscoveredFor& discovered, std::vector<std::string>& errors,
                              std::vector<std::string>& warnings) {
  conf::LoadResult r = conf::loadFile(path);
  for (const auto& w : r.warnings) warnings.push_back(w.mark.str() + ": warning: " + w.message);
  if (!r.ok()) {
    for (const auto& e : r.errors) errors.push_back(e.str());
    return nullptr;
  }
  auto source = std::make_shared<const conf::Config>(std::move(*r.config));
  auto config = std::make_shared<const conf::Config>(
      withDiscovered(*source, discovered ? discovered(*source) : DiscoveredSets{}));
  std::string error;
  RuntimePtr rt = buildRuntime(config, previous, error, warnings, source);
  if (!rt) {
    std::size_t start = 0;
    while (start <= error.size()) {
      const std::size_t end = std::min(error.find('\n', start), error.size());
      std::string line = error.substr(start, end - start);
      if (!line.empty()) errors.push_back(line.starts_with(path) ? line : path + ": " + line);
      start = end + 1;
    }
  }
  return rt;
}

int checkConfig(const std::string& configPath) {
  std::vector<std::string> errors, warnings;
  RuntimePtr rt = loadRuntime(configPath, nullptr, {}, errors, warnings);
  for (const auto& w : warnings) std::cerr << w << "\n";
  for (const auto& e : errors) std::cerr << e << "\n";
  if (!rt) return 1;
  std::cout << "ok" << std::endl;
  return 0;
}

int runServer(const std::string& configPath) {
  Server server(configPath);
  return server.run();
}

Server::Server(std::string configPath) : configPath_(std::move(configPath)) {}

Server::~Server() {
  if (reloadThread_.joinable()) reloadThread_.join();
  stopAll();
  for (auto& [key, l] : listeners_) closeAll(l.fds);
  if (successorReady_ >= 0) ::close(successorReady_);
}

bool Server::openSockets(const conf::ListenerConfig& l, const net::SocketAddress& address,
                         std::size_t count, std::vector<int>& fds, std::string& error) const {
  const std::string where = l.mark.str() + ": listener " + l.name + ": ";
  // SO_REUSEPORT would let a second wsgate of the same user join this address and take part
  // of its traffic without a word: only this process's workers and a deliberate handover
  // (inherited sockets) may share it.
  if (auto holder = addressHolder(address)) {
    error = where + *holder;
    return false;
  }
  net::SocketAddress bound = address;
  for (std::size_t w = 0; w < count; ++w) {
    std::string why;
    const int fd = net::openListener(bound, why);
    if (fd < 0) {
      closeAll(fds);
      error = where + why;
      return false;
    }
    // With port 0 the first socket's port is reused by the others.
    if (w == 0) {
      if (auto local = net::localAddress(fd)) bound = *local;
    }
    tuneListener(fd);
    fds.push_back(fd);
  }
  return true;
}

bool Server::start() {
  raiseOpenFilesLimit();
  std::vector<std::string> errors, warnings;
  // Discovered backends are resolved before the listeners open (bounded by each entry's
  // timeout): a pool starts with the backends DNS has, or, when its resolver fails, none
  // from that entry until the discovery thread gets an answer.
  discovery_ = std::make_unique<Discovery>([this] {
    // The discovery thread's only way into the main loop (evthread_use_pthreads).
    event_active(discoveryChanged_.get(), EV_TIMEOUT, 0);
  });
  std::map<std::string, Resolution> fresh;
  current_ = loadRuntime(
      configPath_, nullptr,
      [&](const conf::Config& source) {
        fresh = discovery_->resolveNew(source);
        DiscoveredSets sets;
        for (const auto& [key, r] : fresh) sets[key] = r.endpoints;
        return sets;
      },
      errors, warnings);
  for (const auto& w : warnings) std::cerr << w << "\n";
  for (const auto& e : errors) std::cerr << e << "\n";
  if (!current_) return false;
  const conf::Config& cfg = *current_->config;
  std::string error;
  if (!initLogging(cfg.log, error)) {
    std::cerr << error << "\n";
    return false;
  }
  reportOpenFiles(*current_);
  executable_ = ownExecutable();
  base_.reset(event_base_new());
  const std::size_t workers = static_cast<std::size_t>(workerCount(cfg));
  std::vector<std::vector<Worker::ListenerSocket>> perWorker(workers);
  if (!openListeners(perWorker)) return false;
  for (std::size_t w = 0; w < workers; ++w) {
    workers_.push_back(std::make_unique<Worker>(static_cast<int>(w), static_cast<int>(workers),
                                                current_, std::move(perWorker[w])));
  }
  for (auto& w : workers_) threads_.emplace_back([&w] { w->run(); });
  installSignals();
  reloadPrepared_.reset(event_new(base_.get(), -1, 0, &Server::onReloadPreparedCb, this));
  discoveryChanged_.reset(event_new(base_.get(), -1, 0, &Server::onDiscoveryChangedCb, this));
  discovery_->update(*current_->source, fresh);
  discovery_->start();
  drainTick_.reset(evtimer_new(base_.get(), &Server::onDrainTickCb, this));

  // Active health checks and the admin endpoint run on this (the main) thread's loop,
  // beside the signals: management work never delays a worker.
  health_ = std::make_unique<HealthChecker>(base_.get(), current_);
  if (cfg.admin) {
    admin_ = AdminServer::start(base_.get(), *cfg.admin, current_, *this, error);
    if (!admin_) {
      std::cerr << error << "\n";
      return false;
    }
    log().info("admin listening address={}", admin_->address());
  }
  updateWatch();
  log().info("wsgate {} ready workers={} config={}", WSGATE_VERSION, workers, configPath_);
  notifier_.ready(fmt::format("serving, config generation {}", stats_.generation));
  if (signalReady()) log().info("told the process that started this one: ready");
  return true;
}

bool Server::openListeners(std::vector<std::vector<Worker::ListenerSocket>>& perWorker) {
  const std::size_t workers = perWorker.size();
  // Sockets handed over by systemd or by the process this one replaces (SIGUSR2), by
  // address; the rest are opened here.
  std::vector<std::string> problems;
  std::vector<InheritedSocket> inherited = takeInheritedSockets(problems);
  for (const auto& p : problems) log().warn("inherited sockets: {}", p);
  bool failed = false;
  std::string error;
  for (const ListenerEntry& entry : current_->listeners) {
    const conf::ListenerConfig& l = *entry.config;
    const net::SocketAddress& address = entry.address;
    std::vector<int> fds;
    for (auto it = inherited.begin(); it != inherited.end();) {
      // By address; a listener on port 0 (any free port) by its name, which a handover
      // passes in LISTEN_FDNAMES.
      const bool byName =
          l.listen.port == 0 && it->name == l.name && it->address.ip() == address.ip();
      if (it->address.str() == address.str() || byName) {
        fds.push_back(it->fd);
        it = inherited.erase(it);
      } else {
        ++it;
      }
    }
    const bool handedOver = !fds.empty();
    if (handedOver) {
      // Every inherited socket is served (closing one would reset the connections queued in
      // it); a worker short of one shares another's.
      for (std::size_t i = fds.size(); i < workers; ++i) {
        fds.push_back(fcntl(fds[i % fds.size()], F_DUPFD_CLOEXEC, 3));
      }
    } else if (!openSockets(l, address, workers, fds, error)) {
      std::cerr << error << "\n";
      failed = true;
      break;
    }
    for (std::size_t i = 0; i < fds.size(); ++i)
      perWorker[i % workers].push_back({entry.key, fds[i]});
    keepListener(entry, fds, handedOver);
    if (l.tls && l.tls->ktls) {
      // Said once at start, not per connection: the fallback is quiet.
      log().info(
          "listener {}: ktls requested; {}: TLS runs in user space over wsgate's own buffers",
          l.name,
          kernelOffersTls() ? "the kernel offers the tls module, which this version does not use"
                            : "the kernel offers no tls module");
    }
  }
  for (const InheritedSocket& s : inherited) {
    log().warn("inherited socket {} ({}) matches no listener: closed", s.fd, s.address.str());
    ::close(s.fd);
  }
  if (failed) {
    for (auto& list : perWorker) {
      for (auto& s : list) ::close(s.fd);
    }
  }
  return !failed;
}

void Server::keepListener(const ListenerEntry& entry, const std::vector<int>& fds, bool inherited) {
  Listener& kept = listeners_[entry.key];
  kept.address = net::localAddress(fds.front()).value_or(entry.address);
  for (int fd : fds) kept.fds.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 3));
  log().info("listening listener={} address={}{}{}", entry.config->name, kept.address.str(),
             entry.tls ? " tls" : "", inherited ? " (inherited)" : "");
}

void Server::installSignals() {
  auto add = [this](int sig) {
    signals_.emplace_back(evsignal_new(base_.get(), sig, &Server::onSignalCb, this));
    evsignal_add(signals_.back().get(), nullptr);
  };
  for (int sig : kHandled) add(sig);
  for (int sig : kIgnored) add(sig);
  for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig) add(sig);
}

int Server::run() {
  // Before libevent allocates anything: its buffer chains come from per-worker pools.
  net::installBufferPool();
  signal(SIGPIPE, SIG_IGN);
  evthread_use_pthreads();  // workers get mail and stops from this thread
  if (!start()) return 1;
  event_base_dispatch(base_.get());
  stopAll();
  log().info("stopped");
  return 0;
}

void Server::stopAll() {
  discovery_.reset();  // before the loop its thread posts to
  admin_.reset();
  health_.reset();
  watch_.reset();
  for (auto& w : workers_) w->stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  workers_.clear();
}

// ---- reload -------------------------------------------------------------------------------

void Server::requestReload(std::string_view origin, ReloadDone done) {
  if (shuttingDown_) {
    if (done) {
      ReloadOutcome refused;
      refused.generation = stats_.generation;
      refused.errors.push_back("wsgate is shutting down");
      done(refused);
    }
    return;
  }
  log().info("reload requested by {}", origin);
  if (reloading_) {
    reloadAgain_ = true;
    if (done) queued_.push_back(std::move(done));
    return;
  }
  if (done) waiting_.push_back(std::move(done));
  reloading_ = true;
  notifier_.reloading(fmt::format("reloading ({})", origin));
  startPreparing(/*republish=*/false);
}

void Server::startPreparing(bool republish) {
  if (reloadThread_.joinable()) reloadThread_.join();
  reloadThread_ = std::thread([this, republish, previous = current_] {
    std::unique_ptr<Prepared> p = republish ? prepareRepublish(previous) : prepare(previous);
    {
      std::lock_guard<std::mutex> lock(preparedLock_);
      prepared_ = std::move(p);
    }
    event_active(reloadPrepared_.get(), EV_TIMEOUT, 0);
  });
}

void Server::onDiscoveryChangedCb(evutil_socket_t, short, void* self) noexcept {
  static_cast<Server*>(self)->onDiscoveryChanged();
}

void Server::onDiscoveryChanged() {
  if (shuttingDown_) return;
  if (reloading_) {
    // The reload being prepared may have read the sets before this change: once it is
    // published, the sets are applied again (nothing is published if they were current).
    republishAgain_ = true;
    return;
  }
  reloading_ = true;
  startPreparing(/*republish=*/true);
}

std::unique_ptr<Server::Prepared> Server::prepareRepublish(RuntimePtr previous) const {
  auto p = std::make_unique<Prepared>();
  p->republish = true;
  auto config =
      std::make_shared<const conf::Config>(withDiscovered(*previous->source, discovery_->sets()));
  p->diff = diff(*previous->config, *config);
  if (p->diff.backendsAdded.empty() && p->diff.backendsRemoved.empty() &&
      p->diff.backendsUpdated() == 0) {
    p->unchanged = true;
    return p;
  }
  std::string error;
  p->runtime = withNewBackends(*previous, config, error);
  if (!p->runtime) p->errors.push_back(error);
  return p;
}

std::unique_ptr<Server::Prepared> Server::prepare(RuntimePtr previous) const {
  auto p = std::make_unique<Prepared>();
  // Discover entries the running config has keep their sets (a reload drains no discovered
  // backend); new ones are resolved here, on the reload thread.
  p->runtime = loadRuntime(
      configPath_, previous.get(),
      [&](const conf::Config& source) {
        p->fresh = discovery_->resolveNew(source);
        DiscoveredSets sets = discovery_->sets();
        for (const auto& [key, r] : p->fresh) sets[key] = r.endpoints;
        return sets;
      },
      p->errors, p->warnings);
  if (!p->runtime) return p;
  p->diff = diff(*previous->config, *p->runtime->config);
  for (std::size_t i : p->diff.listenersOpened) {
    const ListenerEntry& entry = p->runtime->listeners[i];
    std::string error;
    std::vector<int> fds;
    if (!openSockets(*entry.config, entry.address, workers_.size(), fds, error)) {
      p->errors.push_back(error);
    } else {
      p->opened[entry.key] = std::move(fds);
    }
  }
  if (!p->errors.empty()) p->runtime.reset();
  return p;
}

void Server::onReloadPreparedCb(evutil_socket_t, short, void* self) noexcept {
  static_cast<Server*>(self)->onReloadPrepared();
}

void Server::onReloadPrepared() {
  std::unique_ptr<Prepared> p;
  {
    std::lock_guard<std::mutex> lock(preparedLock_);
    p = std::move(prepared_);
  }
  if (!p) return;
  reloadThread_.join();
  ReloadOutcome outcome;
  const bool republish = p->republish;
  if (shuttingDown_) {
    outcome.generation = stats_.generation;
    outcome.errors.push_back("wsgate is shutting down");
  } else {
    outcome = publish(*p);
  }
  std::vector<ReloadDone> answered;
  answered.swap(waiting_);
  reloading_ = false;
  if (!republish) {
    notifier_.ready(outcome.ok ? fmt::format("serving, config generation {}", stats_.generation)
                               : fmt::format("reload failed, still serving config generation {}",
                                             stats_.generation));
  }
  for (auto& done : answered) done(outcome);
  if (reloadAgain_ && !shuttingDown_) {
    reloadAgain_ = false;
    std::vector<ReloadDone> next;
    next.swap(queued_);
    requestReload("a request made during the last reload");
    for (auto& done : next) waiting_.push_back(std::move(done));
  } else if (republishAgain_ && !shuttingDown_) {
    republishAgain_ = false;
    onDiscoveryChanged();
  }
}

// How the reload changed the Lua script, for the summary (sessions started before it keep
// the script of their snapshot).
static std::string scriptChange(const Runtime& was, const Runtime& now) {
  if (!was.script && !now.script) return "";
  if (!was.script) return " script=loaded";
  if (!now.script) return " script=removed";
  const bool same = was.script->file == now.script->file &&
                    was.script->source == now.script->source &&
                    was.script->limits.instructions == now.script->limits.instructions &&
                    was.script->limits.memoryBytes == now.script->limits.memoryBytes;
  return same ? " script=same" : " script=changed";
}

ReloadOutcome Server::publish(Prepared& p) {
  ReloadOutcome outcome;
  if (p.republish && (p.unchanged || !p.runtime)) {
    // A set changed and changed back, or a reload already published it: nothing to do.
    for (const auto& e : p.errors) log().error("discovery: the new backends stay out: {}", e);
    outcome.ok = p.unchanged;
    outcome.generation = stats_.generation;
    return outcome;
  }
  outcome.warnings = p.warnings;
  for (const auto& w : p.warnings) log().warn("reload: {}", w);
  if (!p.runtime) {
    ++stats_.failed;
    outcome.generation = stats_.generation;
    outcome.errors = p.errors;
    stats_.lastError = p.errors.empty() ? "" : p.errors.front();
    for (const auto& e : p.errors) log().error("reload failed, the running config stays: {}", e);
    return outcome;
  }
  RuntimePtr next = p.runtime;
  const SnapshotDiff& d = p.diff;
  const conf::Config& was = *current_->config;
  const conf::Config& now = *next->config;
  outcome.needsRestart = d.needsRestart;
  if (was.admin.has_value() != now.admin.has_value() ||
      (was.admin && was.admin->listen.str() != now.admin->listen.str())) {
    outcome.needsRestart.push_back("admin.listen");
  }
  for (const auto& what : outcome.needsRestart) {
    log().warn("reload: {} needs a restart; the rest of the reload applies", what);
  }
  applyTunables(*next);

  // The backends the reload removed, as the old snapshot holds them: one set per worker.
  std::vector<balancer::BackendPtr> removed;
  for (const BackendAt& at : d.backendsRemoved) {
    const PoolEntry* pool = current_->findPool(was.pools[at.pool].name);
    if (pool != nullptr) removed.push_back(pool->pool->backends()[at.backend]);
  }
  std::vector<std::string> closed;
  for (std::size_t i : d.listenersClosed) closed.push_back(current_->listeners[i].key);
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    Worker::Adoption a;
    a.runtime = next;
    a.closed = closed;
    a.removed = removed;
    for (auto& [key, fds] : p.opened) a.opened.push_back({key, fds[w]});
    workers_[w]->post([a = std::move(a)](Worker& worker) mutable { worker.adopt(std::move(a)); });
  }
  for (auto& [key, fds] : p.opened) {
    keepListener(*next->findListener(key), fds, false);
    fds.clear();  // the workers own them now
  }
  for (const std::string& key : closed) {
    auto it = listeners_.find(key);
    if (it == listeners_.end()) continue;
    closeAll(it->second.fds);
    log().info("listener closed address={}; its sessions drain", it->second.address.str());
    listeners_.erase(it);
  }
  std::string error;
  if (!p.republish && !initLogging(now.log, error)) {
    log().error("reload: {}; the access log is unchanged", error);
  }
  const RuntimePtr previous = current_;
  current_ = next;
  health_->update(current_);
  if (admin_) admin_->setRuntime(current_);
  updateWatch();
  ++stats_.generation;
  outcome.ok = true;
  outcome.generation = stats_.generation;
  if (p.republish) {
    // A new snapshot, not a reload: the reload counters and systemd are not told.
    outcome.summary = d.summary();
    log().info("discovery: published generation={} {}", stats_.generation, outcome.summary);
    return outcome;
  }
  discovery_->update(*current_->source, p.fresh);
  ++stats_.succeeded;
  outcome.summary = d.summary() + scriptChange(*previous, *current_);
  log().info("reload ok generation={} {}", stats_.generation, outcome.summary);
  return outcome;
}

void Server::updateWatch() {
  const bool want = current_->config->watch && !shuttingDown_;
  std::vector<std::string> paths{configPath_};
  if (current_->config->scripting) paths.push_back(current_->config->scripting->file);
  if (watch_ && watch_->paths() != paths) watch_.reset();  // the script is another file now
  if (want && !watch_) {
    std::string error;
    watch_ = ConfigWatch::start(
        base_.get(), paths, [this] { requestReload("a change of the config file or script"); },
        error);
    if (!watch_) log().error("watch: {}; reload with SIGHUP or POST /reload", error);
  } else if (!want && watch_) {
    watch_.reset();
  }
}

// ---- signals ------------------------------------------------------------------------------

void Server::onSignalCb(evutil_socket_t sig, short, void* self) noexcept {
  static_cast<Server*>(self)->onSignal(static_cast<int>(sig));
}

void Server::onSignal(int sig) {
  switch (sig) {
    case SIGTERM:
    case SIGINT:
    case SIGQUIT:
      beginShutdown(sigabbrev_np(sig));
      return;
    case SIGHUP:
      requestReload("SIGHUP");
      return;
    case SIGUSR1: {
      std::string error;
      if (initLogging(current_->config->log, error)) {
        log().info("SIGUSR1: access log reopened");
      } else {
        log().error("SIGUSR1: {}", error);
      }
      return;
    }
    case SIGUSR2:
      upgradeBinary();
      return;
    case SIGCHLD:
      reapChildren();
      return;
    default: {
      const std::string name =
          sig >= SIGRTMIN && sig <= SIGRTMAX
              ? "RTMIN+" + std::to_string(sig - SIGRTMIN)
              : std::string(sigabbrev_np(sig) != nullptr ? sigabbrev_np(sig) : "?");
      log().warn("signal {} (SIG{}) ignored: wsgate acts on TERM, INT, QUIT, HUP, USR1, USR2", sig,
                 name);
    }
  }
}

// ---- shutdown -----------------------------------------------------------------------------

void Server::beginShutdown(std::string_view why) {
  if (shuttingDown_) {
    log().warn("SIG{} again: exiting now, cutting every open session", why);
    exitNow();
    return;
  }
  shuttingDown_ = true;
  const auto drain = current_->config->timeouts.drain;
  drainDeadline_ = std::chrono::steady_clock::now() + drain;
  std::size_t sessions = 0;
  for (auto& w : workers_) sessions += w->sessionCount();
  // After a binary upgrade the new process is the service (MAINPID went to it): the old one
  // draining is no stop of the service.
  if (why != "USR2") notifier_.stopping(fmt::format("draining {} session(s)", sessions));
  log().info(
      "SIG{}: shutting down: listeners closed, {} session(s) draining (close 1012 within "
      "drain_spread {}ms), exit when all are gone or after drain {}ms",
      why, sessions, current_->config->timeouts.drainSpread.count(), drain.count());
  for (auto& w : workers_) w->post([](Worker& worker) { worker.beginShutdown(); });
  for (auto& [key, l] : listeners_) closeAll(l.fds);
  watch_.reset();
  const timeval tick = net::toTimeval(kDrainTick);
  evtimer_add(drainTick_.get(), &tick);
}

void Server::onDrainTickCb(evutil_socket_t, short, void* self) noexcept {
  static_cast<Server*>(self)->checkDrained();
}

void Server::checkDrained() {
  std::size_t sessions = 0;
  for (auto& w : workers_) sessions += w->sessionCount();
  if (sessions == 0) {
    log().info("every session is gone: exiting");
    exitNow();
    return;
  }
  if (std::chrono::steady_clock::now() >= drainDeadline_) {
    log().warn("timeouts.drain reached with {} session(s) open: cutting them, exiting", sessions);
    exitNow();
    return;
  }
  const timeval tick = net::toTimeval(kDrainTick);
  evtimer_add(drainTick_.get(), &tick);
}

void Server::exitNow() { event_base_loopexit(base_.get(), nullptr); }

// ---- binary upgrade -----------------------------------------------------------------------

void Server::upgradeBinary() {
  if (shuttingDown_) {
    log().warn("SIGUSR2 ignored: already shutting down");
    return;
  }
  if (successor_ > 0) {
    log().warn("SIGUSR2 ignored: the new binary (pid {}) is still starting", successor_);
    return;
  }
  std::vector<InheritedSocket> handed;
  for (auto& [key, l] : listeners_) {
    // Named as the listener (LISTEN_FDNAMES): the new process matches them by address.
    const ListenerEntry* entry = current_->findListener(key);
    const std::string name = entry != nullptr ? entry->config->name : "";
    for (int fd : l.fds) handed.push_back({fd, l.address, name});
  }
  std::vector<std::string> argv{executable_, "-c", configPath_};
  std::string error;
  int readyFd = -1;
  const pid_t pid = spawnSuccessor(argv, handed, readyFd, error);
  if (pid < 0) {
    log().error("SIGUSR2: cannot start {}: {}; still serving", executable_, error);
    return;
  }
  successor_ = pid;
  successorReady_ = readyFd;
  successorSaid_.clear();
  successorEvent_.reset(
      event_new(base_.get(), readyFd, EV_READ | EV_PERSIST, &Server::onSuccessorCb, this));
  event_add(successorEvent_.get(), nullptr);
  log().info(
      "SIGUSR2: started {} as pid {} with {} listening socket(s); this process drains once it "
      "is ready",
      executable_, pid, handed.size());
}

void Server::onSuccessorCb(evutil_socket_t, short, void* self) noexcept {
  static_cast<Server*>(self)->onSuccessorReady();
}

void Server::onSuccessorReady() {
  char buf[64];
  ssize_t n;
  while ((n = ::read(successorReady_, buf, sizeof buf)) > 0) successorSaid_.append(buf, n);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  // The end of the pipe: the new process said "ready" and closed it, or it exited.
  successorEvent_.reset();
  ::close(successorReady_);
  successorReady_ = -1;
  if (successorSaid_.starts_with("ready")) {
    log().info("new binary pid {} is ready: this process stops accepting and drains", successor_);
    notifier_.mainPid(successor_, fmt::format("new binary pid {} took over", successor_));
    successor_ = -1;
    beginShutdown("USR2");
  } else {
    log().error("new binary pid {} exited before it was ready; this process goes on serving",
                successor_);
  }
}

void Server::reapChildren() {
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == successor_) {
      log().error("new binary pid {} exited (status {}) before it was ready; still serving", pid,
                  WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      successor_ = -1;
    }
  }
}

}  // namespace wsgate::proxy
