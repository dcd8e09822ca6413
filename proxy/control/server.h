#pragma once
// The control plane: one Server per process owns the current snapshot, the listening
// sockets keyed by address, the workers (each reached through its mailbox), health checks
// and the admin endpoint. It turns signals, POST /reload and file changes into reloads that
// are prepared on a thread of their own (parse, validate, resolve, TLS, sockets) and
// published between events; and it drains: sessions on removed backends, on closed
// listeners, or all of them at shutdown and at a binary upgrade.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proxy/control/runtime.h"
#include "proxy/control/sd_notify.h"
#include "proxy/control/worker.h"
#include "proxy/net/address.h"
#include "proxy/net/handles.h"

namespace wsgate::proxy {

class AdminServer;
class ConfigWatch;
class Discovery;
class HealthChecker;

// What a reload did, for the log, the admin reply and the counters.
struct ReloadOutcome {
  bool ok = false;
  uint64_t generation = 0;            // of the snapshot now running
  std::vector<std::string> errors;    // "FILE:LINE:COL: message", when !ok
  std::vector<std::string> warnings;  // the same form
  std::vector<std::string> needsRestart;
  std::string summary;  // SnapshotDiff::summary()
};

// Counters the admin endpoint reports (main thread only).
struct ReloadStats {
  uint64_t generation = 1;  // 1: the snapshot the process started with
  uint64_t succeeded = 0;
  uint64_t failed = 0;
  std::string lastError;  // first line of the last failed reload's errors
};

class Server {
public:
  using ReloadDone = std::function<void(const ReloadOutcome&)>;

  explicit Server(std::string configPath);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts, serves until a stop, drains, returns the exit code. Main thread.
  int run();

  // Main thread: reloads the config file (coalesced: a request made while a reload is being
  // prepared gets the next one). `done` runs when it is published or refused.
  void requestReload(std::string_view origin, ReloadDone done = {});
  const ReloadStats& reloadStats() const { return stats_; }
  const std::vector<std::unique_ptr<Worker>>& workers() const { return workers_; }
  // The address the listener `key` (ListenerEntry::key) is bound to, as the kernel says (the
  // port chosen for port 0); nullptr when this process holds no such listener.
  const net::SocketAddress* boundAddress(const std::string& key) const {
    const auto it = listeners_.find(key);
    return it == listeners_.end() ? nullptr : &it->second.address;
  }
  // The DNS discovery of the pools' `discover` entries (status and counters).
  const Discovery& discovery() const { return *discovery_; }

private:
  struct Prepared;
  struct Listener {
    net::SocketAddress address;
    std::vector<int> fds;  // duplicates of the workers' sockets, for a binary upgrade
  };

  bool start();
  // Takes the inherited sockets that match a listener and opens the others, one per worker
  // (perWorker's size). False, with the reason on stderr, when one cannot be opened.
  bool openListeners(std::vector<std::vector<Worker::ListenerSocket>>& perWorker);
  void installSignals();
  // Records a listener the workers now serve through `fds` (one per worker): a duplicate of
  // each for a binary upgrade, the bound address; logs the "listening" line.
  void keepListener(const ListenerEntry& entry, const std::vector<int>& fds, bool inherited);
  // The work of the reload thread: everything that may block or fail, no shared state.
  std::unique_ptr<Prepared> prepare(RuntimePtr previous) const;
  // The same for a change of discovered backends: `previous`'s file config with the new sets.
  std::unique_ptr<Prepared> prepareRepublish(RuntimePtr previous) const;
  // Starts preparing on the reload thread (reloading_ set by the caller).
  void startPreparing(bool republish);
  // A discover entry's set changed (main thread): publishes it as soon as no reload is
  // being prepared.
  void onDiscoveryChanged();
  void onReloadPrepared();
  ReloadOutcome publish(Prepared& p);
  // Opens `count` sockets (SO_REUSEPORT) for a listener, after checking no other process
  // holds its address. False with `error` set ("FILE:LINE:COL: listener NAME: ...").
  bool openSockets(const conf::ListenerConfig& l, const net::SocketAddress& address,
                   std::size_t count, std::vector<int>& fds, std::string& error) const;
  void beginShutdown(std::string_view why);
  void checkDrained();
  void exitNow();
  // Admin, health checks and the watch go; the workers stop (cutting what is left) and join.
  void stopAll();
  void upgradeBinary();
  void onSuccessorReady();
  void reapChildren();
  void onSignal(int sig);
  void updateWatch();

  static void onSignalCb(evutil_socket_t sig, short, void* self) noexcept;
  static void onReloadPreparedCb(evutil_socket_t, short, void* self) noexcept;
  static void onDiscoveryChangedCb(evutil_socket_t, short, void* self) noexcept;
  static void onDrainTickCb(evutil_socket_t, short, void* self) noexcept;
  static void onSuccessorCb(evutil_socket_t, short, void* self) noexcept;

  const std::string configPath_;
  std::string executable_;  // this binary's path at start, for a binary upgrade
  net::EventBasePtr base_;
  RuntimePtr current_;
  ReloadStats stats_;
  std::map<std::string, Listener> listeners_;  // by ListenerEntry::key
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::unique_ptr<HealthChecker> health_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<ConfigWatch> watch_;
  std::unique_ptr<Discovery> discovery_;
  net::EventPtr discoveryChanged_;  // made active by the discovery thread
  bool republishAgain_ = false;     // a set changed while a reload was being prepared
  std::vector<net::EventPtr> signals_;

  // Reloads: one prepared at a time, on reloadThread_; requests that come meanwhile wait
  // for the next one.
  std::thread reloadThread_;
  bool reloading_ = false;
  std::vector<ReloadDone> waiting_;  // answered by the reload being prepared
  std::vector<ReloadDone> queued_;   // answered by the next one
  bool reloadAgain_ = false;
  net::EventPtr reloadPrepared_;
  std::mutex preparedLock_;
  std::unique_ptr<Prepared> prepared_;  // guarded by preparedLock_

  SystemdNotifier notifier_ = SystemdNotifier::fromEnvironment();  // Type=notify units

  // Shutdown and binary upgrade.
  bool shuttingDown_ = false;
  std::chrono::steady_clock::time_point drainDeadline_{};
  net::EventPtr drainTick_;
  pid_t successor_ = -1;
  int successorReady_ = -1;  // read end of the successor's readiness pipe
  net::EventPtr successorEvent_;
  std::string successorSaid_;
};

// `wsgate --check`: the validation a reload runs (parse, schema, addresses, certificates).
// Prints "ok" on stdout or one "FILE:LINE:COL: message" line per error on stderr.
int checkConfig(const std::string& configPath);

// Runs wsgate on `configPath` (Server::run).
int runServer(const std::string& configPath);

}  // namespace wsgate::proxy
