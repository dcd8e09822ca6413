// The backend half of a request: picking a backend of the decided pool (sticky cookie,
// sticky key or policy), waiting in the queue when every backend is full, connecting with
// retries on other backends, and what a failed socket or connect means.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "proxy/control/worker.h"
#include "proxy/log.h"
#include "proxy/net/address.h"
#include "proxy/net/errors.h"
#include "proxy/session/session.h"

namespace wsgate::proxy {
namespace {

using Clock = std::chrono::steady_clock;

void setNoDelay(evutil_socket_t fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::string socketError() { return evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()); }

// pools.NAME.source_addresses: binds `fd` to the next source address of `to`'s family, in
// turn per worker thread, leaving the port to connect() (IP_BIND_ADDRESS_NO_PORT), so
// that each source address has its own range of local ports per backend address. No
// source of that family: the socket stays unbound. false with errno set.
bool bindSource(evutil_socket_t fd, const std::vector<net::SocketAddress>& sources,
                const net::SocketAddress& to) {
  thread_local uint32_t turn = 0;
  const std::size_t n = sources.size();
  for (std::size_t i = 0; i < n; ++i) {
    const net::SocketAddress& source = sources[(turn + i) % n];
    if (source.storage.ss_family != to.storage.ss_family) continue;
    turn = static_cast<uint32_t>((turn + i + 1) % n);
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    return bind(fd, source.get(), source.length) == 0;
  }
  return true;
}

}  // namespace

std::optional<std::size_t> Session::pickBackend() {
  balancer::Pool& pool = *backendPool_->pool;
  balancer::PickRequest req{ex_.tried, ex_.stickyKey, Clock::now(), worker_.random()};
  std::optional<std::size_t> idx;
  if (ex_.preferredBackend && ex_.attempts == 0) {
    idx = pool.pickPreferring(*ex_.preferredBackend, req);
  } else if (ex_.stickyKey && backendPool_->config->policy != conf::Policy::Hash) {
    idx = pool.pickSticky(*ex_.stickyKey, req);  // `hash` reads req.stickyKey itself
  } else {
    idx = pool.pick(req);
  }
  const auto& st = backendPool_->config->sticky;
  if (idx && st && st->source == conf::StickySource::Cookie && st->cookie.insert &&
      ex_.preferredBackend != idx) {
    // A new or re-pinned client learns which backend it is on (by an opaque name).
    ex_.setCookie = "Set-Cookie: " + st->cookie.name + "=" + pool.cookie(*idx) +
                    "; Path=" + st->cookie.path + "; HttpOnly";
    if (st->cookie.maxAge.count() > 0) {
      ex_.setCookie += "; Max-Age=" + std::to_string(st->cookie.maxAge.count() / 1000);
    }
    ex_.setCookie += "\r\n";
  } else if (idx) {
    ex_.setCookie.clear();
  }
  return idx;
}

bool Session::poolFull() const {
  const auto& backends = backendPool_->pool->backends();
  for (std::size_t i = 0; i < backends.size(); ++i) {
    if (i < ex_.tried.size() && ex_.tried[i]) continue;
    const uint32_t limit = backends[i]->maxConnections();
    if (limit == 0 || backends[i]->active() < limit) return false;
  }
  return !backends.empty();
}

void Session::connectBackend() {
  const PoolEntry& entry = *backendPool_;
  auto idx = pickBackend();
  if (!idx) {
    if (ex_.attempts == 0 && poolFull()) {
      // Every backend is at max_connections: wait for a place, up to timeouts.queue.
      if (waitInQueue()) return;
      // Clients see no pool or backend name; the access line has the pool.
      answer(503, "every backend is at max_connections", "backends full", false);
      return;
    }
    leaveQueue();
    if (ex_.attempts == 0) {
      answer(503, "no backend available", "no backend available", false);
    } else {
      answer(502, "every backend tried failed", "backends failed", false);
    }
    return;
  }
  ex_.tried[*idx] = true;
  // A connect after another backend failed this request: a retry, counted where it goes.
  if (ex_.attempts > 0) {
    balancer::BackendCounters::add(entry.pool->backends()[*idx]->counters().retries);
  }
  ++ex_.attempts;
  ex_.connectAtUs = sinceStartUs();
  ex_.sentAtUs = kNoTime;
  ex_.usedBackend = true;
  backendIndex_ = *idx;
  const auto& backend = entry.pool->backends()[*idx];
  backendName_ = backend->spec().pool + "/" + backend->spec().name;
  lease_ = balancer::BackendLease(backend);
  backendEof_ = false;
  state_ = State::Connecting;
  arm(Timer::Connect, entry.config->connectTimeout);
  const net::SocketAddress& addr = entry.addresses[*idx];
  const evutil_socket_t fd =
      socket(addr.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    onSocketError("backend socket", errno);
    return;
  }
  if (!entry.sources.empty() && !bindSource(fd, entry.sources, addr)) {
    const int error = errno;
    evutil_closesocket(fd);
    onSocketError("backend source address", error);
    return;
  }
  if (connect(fd, addr.get(), addr.length) != 0 && errno != EINPROGRESS) {
    const int error = errno;
    evutil_closesocket(fd);
    onSocketError("backend connect", error);
    return;
  }
  leaveQueue();  // a request that waited for a place or a descriptor has one now
  setNoDelay(fd);
  openConn(kBackend, fd);
  conn_[kBackend].connecting = true;
  if (entry.tls) {
    // Every WebSocket opens a new backend connection: resume the worker's last session
    // with this backend instead of a full handshake each time.
    conn_[kBackend].startTls(
        entry.tls->newSsl(backend->spec().host, worker_.backendTlsSession(backend.get())));
  }
  // Ahead of everything, the ClientHello included: the backend reads it in the clear.
  if (entry.config->proxyProtocol) queueBackendProxyHeader();
  // The request head goes out as soon as the socket takes it (on loopback, often at once):
  // no round trip through the loop to learn that the connect went through.
  evbuffer_add(output(kBackend), ex_.forwardedHead.data(), ex_.forwardedHead.size());
  tryConnected();
}

void Session::tryConnected() {
  const int r = conn_[kBackend].tryConnected(scratch(kBackend));  // the head is never empty
  if (r == 0) return;  // still connecting: its event will say
  if (r < 0) {
    onConnectFailed(socketError());
    return;
  }
  onBackendConnected();
}

bool Session::waitInQueue() {
  const auto queue = runtime_->config->timeouts.queue;
  if (ex_.queueDeadline == Clock::time_point{} && queue.count() > 0 && worker_.enterQueue()) {
    ex_.queueDeadline = Clock::now() + queue;
    worker_.stats().queueWaits.add();
  }
  if (ex_.queueDeadline != Clock::time_point{} && Clock::now() < ex_.queueDeadline) {
    state_ = State::Connecting;
    arm(Timer::Queue, std::chrono::milliseconds(20));  // polled: places free up on any worker
    return true;
  }
  if (ex_.queueDeadline != Clock::time_point{}) worker_.stats().queueTimeouts.add();
  leaveQueue();
  return false;
}

void Session::onSocketError(std::string_view what, int error) {
  if (!net::isLocalShortage(error)) {
    onConnectFailed(std::strerror(error));
    return;
  }
  // wsgate's own shortage, not the backend's fault: the backend is not marked down (that
  // would turn a descriptor shortage into "no backend available" for every request), the
  // attempt does not count, and the request waits as for a full pool (a closing connection
  // frees a descriptor), then gets 503.
  ex_.tried[backendIndex_] = false;
  --ex_.attempts;
  releaseBackend();
  const bool first = ex_.queueDeadline == Clock::time_point{};  // not yet waiting
  const bool waits = waitInQueue();
  if (first) {  // once per request, not per retry
    worker_.noteShortage(what, error);
    log().info("[s{} {} connect b={}] {} failed: {}{}", id_, clientAddr_, backendName_, what,
               std::strerror(error), waits ? "; waiting for one to free up" : "");
  }
  if (waits) return;
  std::string_view lack = "file descriptor left";
  if (error == EADDRNOTAVAIL || error == EAGAIN) lack = "free local port";
  if (error == ENOBUFS || error == ENOMEM) lack = "memory left";
  answer(503, "wsgate has no " + std::string(lack) + " for a backend connection",
         "out of resources", false);
}

void Session::onConnectFailed(std::string_view why) {
  leaveQueue();
  log().info("[s{} {} connect b={}] failed: {}", id_, clientAddr_, backendName_, why);
  const uint32_t maxAttempts = 1 + backendPool_->config->retries;
  if (lease_) {
    balancer::BackendCounters& c = lease_->counters();
    balancer::BackendCounters::add(c.connectFailures);
    if (lease_->markDown(Clock::now(), backendPool_->pool->options().backoff)) {
      balancer::BackendCounters::add(c.ejections);
    }
  }
  releaseBackend();
  if (ex_.attempts < maxAttempts) {
    connectBackend();
    return;
  }
  answer(502, "backend connect failed: " + std::string(why), "backend connect failed", false);
}

void Session::onBackendConnected() {
  ex_.sentAtUs = sinceStartUs();
  if (ex_.reusedBackend) {
    evbuffer_add(output(kBackend), ex_.forwardedHead.data(), ex_.forwardedHead.size());
  } else {
    lease_->markUp(Clock::now());  // its head is on its way already (connectBackend)
    worker_.stats().backendConnect.observe(ex_.sentAtUs - ex_.connectAtUs);
  }
  state_ = State::AwaitingResponse;
  arm(Timer::BackendResponse, runtime_->config->timeouts.backendResponse);
  if (!ex_.requestDone) pumpRequestBody();
}

void Session::leaveQueue() {
  if (ex_.queueDeadline == Clock::time_point{}) return;
  ex_.queueDeadline = {};
  worker_.leaveQueue();
}

}  // namespace wsgate::proxy
