#include "proxy/control/worker.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "proxy/log.h"
#include "proxy/session/session.h"
#include "proxy/session/session_proxy.h"

namespace wsgate::proxy {
namespace {

// Sessions register each socket once, edge-triggered (EV_ET), and delete it once. No
// changelist: it would defer the delete past the close (EBADF), or merge it with the add of
// the next socket given the same number into a MOD that fails (ENOENT) and is retried.
event_base* newEdgeTriggeredBase() {
  event_config* cfg = event_config_new();
  event_config_require_features(cfg, EV_FEATURE_ET | EV_FEATURE_O1);
  event_base* base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  if (base == nullptr) throw std::runtime_error("no edge-triggered event backend (epoll)");
  return base;
}

}  // namespace

Worker::Worker(int index, int workerCount, RuntimePtr runtime,
               std::vector<ListenerSocket> listeners)
    : index_(index),
      workerCount_(workerCount),
      base_(newEdgeTriggeredBase()),
      runtime_(std::move(runtime)) {
  setMaxSessions();
  for (ListenerSocket& l : listeners) openListener(std::move(l));
  mailEvent_.reset(event_new(base_.get(), -1, 0, &Worker::onMailCb, this));
  reaper_.reset(event_new(base_.get(), -1, 0, &Worker::onReapCb, this));
  log().info("worker {} tunnel I/O: {}", index_,
             io_.ringEnabled() ? "batched through io_uring"
                               : "one system call per read and write (io_uring unavailable or "
                                 "WSGATE_IO_URING=off)");
  for (auto& slot : scratch_) {
    for (net::Scratch& side : slot) {
      for (evbuffer** b : {&side.in, &side.out, &side.rawIn, &side.rawOut}) {
        scratchBuffers_.emplace_back(evbuffer_new());
        *b = scratchBuffers_.back().get();
      }
    }
  }
}

Worker::~Worker() {
  listeners_.clear();
  mailEvent_.reset();
  for (Session* s : openSessions()) {
    unlink(s);
    delete s;
  }
  retired_.clear();
  reaper_.reset();
}

void Worker::prepareScript() {
  if (!runtime_->script) return;
  std::string error;
  if (runtime_->engine(index_, error) == nullptr) {
    log().error("worker {}: no Lua state for {}: {} (requests on its routes get 500)", index_,
                runtime_->script->file, error);
  }
}

void Worker::run() {
  prepareScript();
  // event_base_dispatch, with the batch of tunnel I/O flushed and the resumed readers
  // served after every loop turn; the loop does not block while either has work.
  for (;;) {
    ++turn_;
    const int flags = batch_.empty() && resume_.empty() ? EVLOOP_ONCE : EVLOOP_NONBLOCK;
    if (event_base_loop(base_.get(), flags) != 0) break;
    flushBatch();
    runResumes();
    if (event_base_got_exit(base_.get()) || event_base_got_break(base_.get())) break;
  }
  // A hard stop (startup failure, a second SIGTERM, the end of timeouts.drain): whatever is
  // still open is cut here.
  listeners_.clear();
  for (Session* s : openSessions()) s->abort("shutdown");
  reap();
}

void Worker::post(std::function<void(Worker&)> fn) {
  {
    std::lock_guard<std::mutex> lock(mailLock_);
    mail_.push_back(std::move(fn));
  }
  // Thread-safe with evthread_use_pthreads: wakes the loop, which runs readMail.
  event_active(mailEvent_.get(), EV_TIMEOUT, 0);
}

void Worker::onMailCb(evutil_socket_t, short, void* self) noexcept {
  static_cast<Worker*>(self)->readMail();
}

void Worker::readMail() {
  std::vector<std::function<void(Worker&)>> mail;
  {
    std::lock_guard<std::mutex> lock(mailLock_);
    mail.swap(mail_);
  }
  for (auto& fn : mail) fn(*this);
}

void Worker::openListener(ListenerSocket socket) {
  auto l = std::make_unique<Listener>();
  l->worker = this;
  l->entry = runtime_->findListener(socket.key);
  l->acceptor = std::make_unique<net::Acceptor>(base_.get(), socket.fd, &Worker::onAcceptCb,
                                                &Worker::onAcceptShortageCb, l.get(), &turn_);
  if (!accepting_ || shuttingDown_) l->acceptor->setEnabled(false);
  listeners_[socket.key] = std::move(l);
}

void Worker::adopt(Adoption a) {
  runtime_ = std::move(a.runtime);
  setMaxSessions();
  prepareScript();
  std::unordered_set<std::string> closed(a.closed.begin(), a.closed.end());
  for (const std::string& key : a.closed) listeners_.erase(key);  // closes this worker's socket
  for (auto& [key, l] : listeners_) l->entry = runtime_->findListener(key);
  for (ListenerSocket& l : a.opened) openListener(std::move(l));
  if (shuttingDown_) {
    for (auto& [key, l] : listeners_) l->acceptor->setEnabled(false);
  }
  const auto removed = backendSet(a.removed);
  for (Session* s : openSessions()) {
    if (closed.contains(s->listenerKey())) {
      s->drain(drainDelay(*runtime_), Session::Leave::ListenerClosed);
    } else if (!removed.empty()) {
      s->drainIfOn(removed, drainDelay(*runtime_));
    }
  }
  updateAccepting();
}

void Worker::drainBackends(const std::vector<balancer::BackendPtr>& backends) {
  const auto set = backendSet(backends);
  for (Session* s : openSessions()) s->drainIfOn(set, drainDelay(*runtime_));
}

std::unordered_set<const balancer::Backend*> Worker::backendSet(
    const std::vector<balancer::BackendPtr>& backends) {
  std::unordered_set<const balancer::Backend*> set;
  for (const auto& b : backends) set.insert(b.get());
  return set;
}

void Worker::setMaxSessions() {
  // The process-wide limit is shared evenly; the kernel spreads accepts evenly too.
  const uint64_t limit = runtime_->maxConnections;
  maxSessions_ = static_cast<std::size_t>((limit + workerCount_ - 1) / workerCount_);
}

void Worker::beginShutdown() {
  if (shuttingDown_) return;
  shuttingDown_ = true;
  listeners_.clear();
  for (Session* s : openSessions()) s->drain(drainDelay(*runtime_), Session::Leave::Shutdown);
}

std::chrono::milliseconds Worker::drainDelay(const Runtime& runtime) {
  const auto spread = runtime.config->timeouts.drainSpread;
  return spread.count() > 0 ? std::chrono::milliseconds(rng_() % spread.count())
                            : std::chrono::milliseconds(0);
}

bool Worker::enterQueue() {
  if (queued_ >= runtime_->config->limits.maxQueue) return false;
  ++queued_;
  return true;
}

void Worker::stop() { event_base_loopexit(base_.get(), nullptr); }

void Worker::onAcceptCb(void* listener, int fd, const sockaddr* peer, socklen_t len) noexcept {
  auto* l = static_cast<Listener*>(listener);
  l->worker->onAccept(l->entry, fd, peer, len);
}

void Worker::onAcceptShortageCb(void* listener, int error) noexcept {
  auto* w = static_cast<Listener*>(listener)->worker;
  w->acceptShortage_ = true;
  w->stats_.acceptFailures.add();
  w->noteShortage("accept", error);
}

void Worker::noteShortage(std::string_view what, int error) {
  ++shortages_;
  const auto now = std::chrono::steady_clock::now();
  if (now - lastShortageLog_ < std::chrono::seconds(1)) return;
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  log().warn(
      "worker {} out of resources: {} failed: {} ({} failure(s) since the last report; "
      "open files limit {})",
      index_, what, std::strerror(error), shortages_, static_cast<uint64_t>(nofile.rlim_cur));
  shortages_ = 0;
  lastShortageLog_ = now;
}

void Worker::onAccept(const ListenerEntry* listener, int fd, const sockaddr* peer, socklen_t len) {
  if (listener == nullptr) {  // not in the snapshot (cannot happen: adopt keeps them paired)
    ::close(fd);
    return;
  }
  if (acceptShortage_) {
    acceptShortage_ = false;
    log().info("worker {} accepting again", index_);
  }
  if (listener->config->proxyProtocol && !trustedProxyPeer(*listener->config, peer)) {
    // Closed before a byte is read: nothing an untrusted peer sends is ever parsed.
    net::SocketAddress from;
    std::memcpy(&from.storage, peer, std::min<std::size_t>(len, sizeof from.storage));
    from.length = len;
    noteProxyRefused(*listener, ProxyReject::Untrusted, from.str(), "not in proxy_protocol_from");
    ::close(fd);
    return;
  }
  stats_.accepted.add();
  ListenerCounters::add(listener->counters->accepted);
  const uint64_t id = nextId_++ * static_cast<uint64_t>(workerCount_) + index_ + 1;
  auto* session = new Session(*this, runtime_, *listener, id, fd, peer, static_cast<int>(len));
  link(session);
  session->start();
  updateAccepting();
}

void Worker::enqueue(Session* s) {
  if (s->batched_) return;
  s->batched_ = true;
  batch_.push_back(s);
}

void Worker::resumeLater(Session* s, int side) {
  for (const Resume& r : resume_) {
    if (r.session == s && r.side == side) return;
  }
  resume_.push_back({s, side});
}

void Worker::runResumes() {
  // Resumes asked for while these run wait for the next loop turn.
  resuming_.swap(resume_);
  for (const Resume& r : resuming_) {
    // A session closed meanwhile is still alive (deleted by the reaper, in a loop turn).
    if (r.session != nullptr && r.session->state_ != Session::State::Closed) {
      r.session->onEvent(r.side == 0 ? Session::kClient : Session::kBackend, EV_TIMEOUT);
    }
  }
  resuming_.clear();
}

void Worker::flushBatch() {
  for (std::size_t first = 0; first < batch_.size(); first += kSlots) {
    const std::size_t end = std::min(batch_.size(), first + kSlots);
    for (std::size_t i = first; i < end; ++i) {
      if (Session* s = batch_[i]) {
        s->batched_ = false;
        s->slot_ = static_cast<uint8_t>(i - first);
      }
    }
    // Reads: one recv per readable side, all in one call; then the relaying. Writes: one
    // send per side with output, all in one call.
    runBatchPhase(first, end, &Session::prepareBatchReads, &Session::completeBatchRead);
    for (std::size_t i = first; i < end; ++i) {
      if (Session* s = batch_[i]) s->readStreaming();
    }
    runBatchPhase(first, end, &Session::prepareBatchWrites, &Session::completeBatchWrite);
    // The rest of each turn (FINs, closes, resumed readers, leftovers) as usual.
    for (std::size_t i = first; i < end; ++i) {
      if (Session* s = batch_[i]) {
        s->endTurn();
        s->slot_ = 0;
      }
    }
  }
  batch_.clear();
}

void Worker::runBatchPhase(std::size_t first, std::size_t end, BatchPrepare prepare,
                           BatchComplete complete) {
  ops_.clear();
  owners_.clear();
  for (std::size_t i = first; i < end; ++i) {
    if (batch_[i] != nullptr) (batch_[i]->*prepare)(ops_, owners_);
  }
  io_.run(ops_);
  for (std::size_t k = 0; k < ops_.size(); ++k) {
    (owners_[k].session->*complete)(owners_[k], ops_[k].result);
  }
}

SSL_SESSION* Worker::backendTlsSession(const balancer::Backend* backend) const {
  auto it = backendTlsSessions_.find(backend);
  if (it == backendTlsSessions_.end()) return nullptr;
  // OpenSSL marks a session unusable when a connection that used it ended badly.
  SSL_SESSION* session = it->second.session.get();
  return SSL_SESSION_is_resumable(session) ? session : nullptr;
}

void Worker::keepBackendTlsSession(const balancer::BackendPtr& backend, SSL* ssl) {
  SSL_SESSION* session = SSL_get1_session(ssl);
  if (session == nullptr) return;
  if (!SSL_SESSION_is_resumable(session)) {
    SSL_SESSION_free(session);
    return;
  }
  BackendTlsSession& slot = backendTlsSessions_[backend.get()];
  slot.backend = backend;
  slot.session.reset(session);
}

void Worker::retire(Session* s) {
  if (s->batched_) {  // closed while queued: it may be deleted before the batch runs
    s->batched_ = false;
    std::replace(batch_.begin(), batch_.end(), s, static_cast<Session*>(nullptr));
  }
  for (Resume& r : resume_) {
    if (r.session == s) r.session = nullptr;
  }
  if (!s->hook_.linked) return;
  unlink(s);
  retired_.emplace_back(s);
  event_active(reaper_.get(), EV_TIMEOUT, 0);
  updateAccepting();
}

void Worker::link(Session* s) {
  Session::Hook& h = s->hook_;
  h.prev = nullptr;
  h.next = head_;
  if (head_ != nullptr) head_->hook_.prev = s;
  head_ = s;
  h.linked = true;
  sessionCount_.store(++open_, std::memory_order_relaxed);
}

void Worker::unlink(Session* s) {
  Session::Hook& h = s->hook_;
  if (h.prev != nullptr) {
    h.prev->hook_.next = h.next;
  } else {
    head_ = h.next;
  }
  if (h.next != nullptr) h.next->hook_.prev = h.prev;
  h = {};
  sessionCount_.store(--open_, std::memory_order_relaxed);
}

std::vector<Session*> Worker::openSessions() const {
  std::vector<Session*> out;
  out.reserve(open_);
  for (Session* s = head_; s != nullptr; s = s->hook_.next) out.push_back(s);
  return out;
}

void Worker::onReapCb(evutil_socket_t, short, void* self) noexcept {
  static_cast<Worker*>(self)->reap();
}

void Worker::reap() { retired_.clear(); }

void Worker::updateAccepting() {
  // Over the limit, new connections wait in the kernel's accept queue (not refused).
  const bool want = open_ < maxSessions_;
  if (want == accepting_) return;
  accepting_ = want;
  for (auto& [key, l] : listeners_) l->acceptor->setEnabled(want);
  if (!want) {
    log().warn("worker {} at max_connections ({} sessions): accepting paused", index_, open_);
  }
}

}  // namespace wsgate::proxy
