#pragma once
// One event-loop thread: its own event_base, its own SO_REUSEPORT listening socket per
// listener, and the sessions it accepted (a session never changes worker).

#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "proxy/control/runtime.h"
#include "proxy/net/acceptor.h"
#include "proxy/net/conn.h"
#include "proxy/net/handles.h"
#include "proxy/net/io_batch.h"
#include "proxy/stats.h"

namespace wsgate::proxy {

class Session;
struct BatchOwner;

class Worker {
public:
  // One of this worker's listening sockets: which listener (ListenerEntry::key), and the
  // socket, which the worker then owns.
  struct ListenerSocket {
    std::string key;
    int fd;
  };
  // What a reload hands each worker, in one message: the snapshot to adopt, its sockets of
  // the listeners the reload opened, the keys of those it closed, and the backends it
  // removed (their sessions drain).
  struct Adoption {
    RuntimePtr runtime;
    std::vector<ListenerSocket> opened;
    std::vector<std::string> closed;
    std::vector<balancer::BackendPtr> removed;
  };

  Worker(int index, int workerCount, RuntimePtr runtime, std::vector<ListenerSocket> listeners);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  int index() const { return index_; }
  // This worker's counters: written by its thread only, read by the scrape (stats.h).
  WorkerStats& stats() { return stats_; }
  const WorkerStats& stats() const { return stats_; }
  // Runs the loop until stop(); call on the worker's own thread.
  void run();
  // Thread-safe: makes run() return soon; open sessions are cut when it does.
  void stop();
  // Thread-safe: runs `fn` on the worker's thread, between two events, in the order posted.
  // The worker's mailbox: the control plane talks to a worker through it only.
  void post(std::function<void(Worker&)> fn);

  // ---- on the worker's thread (through post) -------------------------------------------

  // Takes a reload's new snapshot: new sessions and kept-alive connections' next requests
  // use it (tunnels keep theirs); listeners open and close; sessions on removed backends or
  // closed listeners drain.
  void adopt(Adoption a);
  // Sessions on these backends drain: each tunnel gets close 1012 at a random moment within
  // timeouts.drain_spread and is cut at timeouts.drain; an idle kept-alive connection to
  // one is closed. One pass over the sessions, whatever the number of backends.
  void drainBackends(const std::vector<balancer::BackendPtr>& backends);
  // Graceful stop: listeners close, and every session goes (an idle kept-alive connection
  // at once; an exchange in flight after its response, with Connection: close; a tunnel
  // with close 1012 within drain_spread). sessionCount() reaches 0 when all are gone.
  void beginShutdown();
  bool shuttingDown() const { return shuttingDown_; }
  // The snapshot new sessions get.
  const RuntimePtr& runtime() const { return runtime_; }
  // A moment within timeouts.drain_spread of `runtime`, at random.
  std::chrono::milliseconds drainDelay(const Runtime& runtime);

  event_base* base() const { return base_.get(); }
  // Hands a closed session over for deletion at the start of the next loop turn, so it is
  // never freed inside one of its own callbacks.
  void retire(Session* s);
  std::size_t sessionCount() const { return sessionCount_.load(std::memory_order_relaxed); }

  // Fresh random bits for balancer picks (per worker: no locking, no sharing).
  uint64_t random() { return rng_(); }

  // Requests waiting because every backend of their pool is at max_connections: bounded
  // by limits.max_queue per worker.
  bool enterQueue();
  void leaveQueue() {
    --queued_;
    stats_.queueLeft.add();
  }

  // Scratch buffers for the sessions of this worker, one input and one output per side
  // (Session::Side), in kSlots slots: a session in a callback uses slot 0; the sessions of
  // one batch (flushBatch) use one slot each. A session reads and relays through them and
  // keeps only what is left over (a partial head or frame, unwritten output) in buffers of
  // its own, so an idle connection holds no buffer at all. Empty between two turns.
  static constexpr std::size_t kSlots = 64;
  const net::Scratch& scratch(std::size_t slot, int side) const { return scratch_[slot][side]; }

  // Tunnels' socket I/O is batched: an event only queues its session (enqueue), and after
  // each loop turn flushBatch() reads every queued socket in one system call, relays, and
  // writes every output in one more (net::IoBatch). Only with io_uring: without it a batch
  // would make as many calls as the sessions make on their own.
  bool batching() const { return io_.ringEnabled(); }
  void enqueue(Session* s);
  // A session's side to serve again after this loop turn, with no new edge to come (a
  // reader stopped by its budget or a full buffer, a pipelined request). Not event_active:
  // libevent would run it again within the same pass, before polling other sockets.
  void resumeLater(Session* s, int side);

  // TLS towards backends: the last resumable session of this worker with `backend` (null:
  // none yet), kept so that the next connection skips the full handshake. One per backend.
  SSL_SESSION* backendTlsSession(const balancer::Backend* backend) const;
  void keepBackendTlsSession(const balancer::BackendPtr& backend, SSL* ssl);

  // The process ran out of file descriptors, memory or local ports for `what` (an accept,
  // a backend socket): one warning per second at most, with the count of failures since
  // the last.
  void noteShortage(std::string_view what, int error);

private:
  // Makes this worker's Lua state of the current snapshot now, rather than at the first
  // request that needs it (a script's top level runs once per worker and reload).
  void prepareScript();
  static void onAcceptCb(void* self, int fd, const sockaddr* peer, socklen_t len) noexcept;
  static void onAcceptShortageCb(void* self, int error) noexcept;
  static void onReapCb(evutil_socket_t, short, void* self) noexcept;
  static void onMailCb(evutil_socket_t, short, void* self) noexcept;
  void readMail();
  void onAccept(const ListenerEntry* listener, int fd, const sockaddr* peer, socklen_t len);
  void openListener(ListenerSocket socket);
  // maxSessions_ from the snapshot's limits.max_connections.
  void setMaxSessions();
  static std::unordered_set<const balancer::Backend*> backendSet(
      const std::vector<balancer::BackendPtr>& backends);
  void reap();
  void updateAccepting();
  void flushBatch();
  void runResumes();
  using BatchPrepare = void (Session::*)(std::vector<net::IoBatch::Op>&, std::vector<BatchOwner>&);
  using BatchComplete = void (Session::*)(const BatchOwner&, ssize_t);
  // One batch of operations for the sessions batch_[first, end): collected, run, reported.
  void runBatchPhase(std::size_t first, std::size_t end, BatchPrepare prepare,
                     BatchComplete complete);

  const int index_;
  WorkerStats stats_;
  const int workerCount_;
  net::EventBasePtr base_;
  RuntimePtr runtime_;
  // The accepting side of each listener, by key: its socket and its entry in runtime_.
  struct Listener {
    Worker* worker;
    const ListenerEntry* entry;
    std::unique_ptr<net::Acceptor> acceptor;
  };
  std::unordered_map<std::string, std::unique_ptr<Listener>> listeners_;
  net::EventPtr mailEvent_;
  std::mutex mailLock_;
  std::vector<std::function<void(Worker&)>> mail_;  // guarded by mailLock_
  bool shuttingDown_ = false;
  // Open sessions, owned, linked through Session::hook_ (no allocation per session).
  void link(Session* s);
  void unlink(Session* s);
  std::vector<Session*> openSessions() const;
  Session* head_ = nullptr;
  std::size_t open_ = 0;
  std::vector<std::unique_ptr<Session>> retired_;
  net::EventPtr reaper_;
  net::Scratch scratch_[kSlots][2];  // the buffers below, as sessions take them
  std::vector<net::EvBufferPtr> scratchBuffers_;
  net::IoBatch io_;
  std::vector<Session*> batch_;  // queued sessions (null: retired since)
  struct Resume {
    Session* session;  // null: retired since
    int side;
  };
  std::vector<Resume> resume_, resuming_;
  std::vector<net::IoBatch::Op> ops_;
  std::vector<BatchOwner> owners_;  // owners_[i] made ops_[i]
  uint64_t nextId_ = 0;
  uint64_t turn_ = 0;  // loop turns run (the acceptors size their bursts by it)
  std::mt19937_64 rng_{std::random_device{}()};
  std::size_t queued_ = 0;
  std::size_t maxSessions_;
  bool accepting_ = true;
  bool acceptShortage_ = false;  // an accept failed for want of descriptors; none since
  uint64_t shortages_ = 0;       // failures not yet reported
  std::chrono::steady_clock::time_point lastShortageLog_{};
  std::atomic<std::size_t> sessionCount_{0};  // read by other threads for status only
  struct BackendTlsSession {
    balancer::BackendPtr backend;  // keeps the key's object alive
    std::unique_ptr<SSL_SESSION, net::Deleter<SSL_SESSION_free>> session;
  };
  std::unordered_map<const balancer::Backend*, BackendTlsSession> backendTlsSessions_;
};

}  // namespace wsgate::proxy
