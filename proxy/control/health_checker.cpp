#include "proxy/control/health_checker.h"

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "proxy/http/response_parser.h"
#include "proxy/log.h"
#include "proxy/net/errors.h"
#include "proxy/net/proxy_protocol.h"
#include "proxy/ws/handshake.h"

namespace wsgate::proxy {
namespace {

// A fresh Sec-WebSocket-Key: base64 of 16 random bytes (RFC 6455 4.1).
std::string newWebSocketKey() {
  unsigned char raw[16];
  RAND_bytes(raw, sizeof raw);
  unsigned char encoded[25];  // 4 * ceil(16 / 3) characters + NUL
  const int n = EVP_EncodeBlock(encoded, raw, sizeof raw);
  return {reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(n)};
}

}  // namespace

struct HealthChecker::Probe {
  HealthChecker* owner = nullptr;
  const PoolEntry* pool = nullptr;
  std::size_t index = 0;
  net::EventPtr timer;
  net::BufferEventPtr conn;
  ws::Offer offer;   // the key of a WebSocket probe
  std::string name;  // pool/backend, for logs
};

HealthChecker::HealthChecker(event_base* base, RuntimePtr runtime) : base_(base) {
  update(std::move(runtime));
  dropTick_.reset(event_new(base_, -1, EV_PERSIST, &HealthChecker::onDropTickCb, this));
  const timeval second = net::toTimeval(std::chrono::seconds(1));
  event_add(dropTick_.get(), &second);
}

void HealthChecker::onDropTickCb(evutil_socket_t, short, void* self) noexcept {
  static_cast<HealthChecker*>(self)->warnDroppedSessions();
}

void HealthChecker::warnDroppedSessions() {
  const auto now = std::chrono::steady_clock::now();
  std::unordered_map<const balancer::Backend*, std::chrono::steady_clock::time_point> kept;
  for (const auto& [name, entry] : runtime_->pools) {
    for (const auto& b : entry.pool->backends()) {
      balancer::BackendCounters& c = b->counters();
      auto last = lastDropWarning_.find(b.get());
      if (last != lastDropWarning_.end()) kept.insert(*last);
      const uint64_t dropped = c.droppedSessions.load(std::memory_order_relaxed);
      const uint64_t warned = c.droppedWarned.load(std::memory_order_relaxed);
      if (dropped == warned) continue;
      if (last != lastDropWarning_.end() && now - last->second < kDropWarnEvery) continue;
      c.droppedWarned.store(dropped, std::memory_order_relaxed);
      kept[b.get()] = now;
      log().warn(
          "backend {}/{} dropped {} live WebSocket session(s) without a close (clients "
          "got 1014); {} in all",
          name, b->spec().name, dropped - warned, dropped);
    }
  }
  lastDropWarning_ = std::move(kept);  // backends a reload removed are forgotten
}

void HealthChecker::update(RuntimePtr runtime) {
  const bool first = runtime_ == nullptr;
  runtime_ = std::move(runtime);
  std::unordered_map<const balancer::Backend*, std::unique_ptr<Probe>> probes;
  for (const auto& [name, entry] : runtime_->pools) {
    const auto& backends = entry.pool->backends();
    for (std::size_t i = 0; i < backends.size(); ++i) {
      const balancer::Backend* key = backends[i].get();
      if (!entry.config->health) {
        // Checks removed from the pool: what the last probes said no longer holds.
        if (!first) backends[i]->clearProbes();
        continue;
      }
      std::unique_ptr<Probe>& p = probes[key];
      if (auto it = probes_.find(key); it != probes_.end()) {
        p = std::move(it->second);  // kept: same timer, a probe in flight goes on
      } else {
        p = std::make_unique<Probe>();
        p->owner = this;
        p->timer.reset(evtimer_new(base_, &HealthChecker::onTimerCb, p.get()));
        // At start every backend is probed at once; a backend a reload adds is probed at a
        // random moment of its first interval, so a reload of many backends does not send
        // every probe in the same millisecond.
        const auto interval = entry.config->health->interval.count();
        const std::chrono::milliseconds delay(first || interval <= 0 ? 0 : rng_() % interval);
        const timeval tv = net::toTimeval(delay);
        evtimer_add(p->timer.get(), &tv);
      }
      p->pool = &entry;
      p->index = i;
      p->name = name + "/" + backends[i]->spec().name;
    }
  }
  probes_ = std::move(probes);  // removed backends' probes close here
}

HealthChecker::~HealthChecker() = default;

void HealthChecker::onTimerCb(evutil_socket_t, short, void* probe) noexcept {
  auto* p = static_cast<Probe*>(probe);
  p->owner->start(*p);
}

void HealthChecker::onReadCb(bufferevent*, void* probe) noexcept {
  auto* p = static_cast<Probe*>(probe);
  p->owner->onReadable(*p);
}

void HealthChecker::onEventCb(bufferevent* bev, short what, void* probe) noexcept {
  auto* p = static_cast<Probe*>(probe);
  if (what & BEV_EVENT_CONNECTED) return;
  std::string why = what & BEV_EVENT_TIMEOUT ? "timeout"
                    : what & BEV_EVENT_EOF   ? "closed before a response"
                                             : "connect failed";
  if (p->pool->tls && (what & BEV_EVENT_ERROR)) {
    // A TLS failure (a certificate that does not verify, a name that does not match).
    if (const unsigned long e = bufferevent_get_openssl_error(bev); e != 0) {
      const char* reason = ERR_reason_error_string(e);
      why = std::string("TLS: ") + (reason != nullptr ? reason : "handshake failed");
    }
  }
  p->owner->finish(*p, false, why);
}

void HealthChecker::start(Probe& p) {
  const conf::HealthConfig& hc = *p.pool->config->health;
  const auto& backend = *p.pool->pool->backends()[p.index];
  const net::SocketAddress& addr = p.pool->addresses[p.index];
  // The socket's own bufferevent; with TLS over PROXY, the filter's underlying one.
  bufferevent* socket = nullptr;
  if (p.pool->config->proxyProtocol) {
    // A v2 LOCAL header first (the backend uses the connection's own addresses), in the
    // clear ahead of the ClientHello: TLS then runs as a filter over the socket's buffers.
    socket = bufferevent_socket_new(base_, -1, BEV_OPT_CLOSE_ON_FREE);
    const net::EncodedProxyHeader local = net::encodeProxyV2Local();
    bufferevent_write(socket, local.bytes.data(), local.size);
  }
  if (p.pool->tls) {
    // Probes speak TLS as the sessions do: the same CA, name and client certificate. With
    // BEV_OPT_CLOSE_ON_FREE libevent frees the SSL with the bufferevent.
    tls::SslPtr ssl = p.pool->tls->newSsl(backend.spec().host, nullptr);
    if (socket != nullptr) {
      p.conn.reset(bufferevent_openssl_filter_new(
          base_, socket, ssl.release(), BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE));
    } else {
      p.conn.reset(bufferevent_openssl_socket_new(
          base_, -1, ssl.release(), BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE));
      socket = p.conn.get();
    }
  } else {
    if (socket == nullptr) socket = bufferevent_socket_new(base_, -1, BEV_OPT_CLOSE_ON_FREE);
    p.conn.reset(socket);
  }
  bufferevent_setcb(p.conn.get(), &HealthChecker::onReadCb, nullptr, &HealthChecker::onEventCb, &p);
  const timeval timeout = net::toTimeval(hc.timeout);
  bufferevent_set_timeouts(p.conn.get(), &timeout, &timeout);
  std::string request = "GET " + hc.path + " HTTP/1.1\r\nHost: " + backend.spec().host + ":" +
                        std::to_string(backend.spec().port) + "\r\nUser-Agent: wsgate-health\r\n";
  if (hc.websocket) {
    p.offer = ws::Offer{newWebSocketKey(), {}, {}};
    request +=
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: " +
        p.offer.key + "\r\n\r\n";
  } else {
    request += "Connection: close\r\n\r\n";
  }
  bufferevent_write(p.conn.get(), request.data(), request.size());
  bufferevent_enable(p.conn.get(), EV_READ);
  if (bufferevent_socket_connect(socket, addr.get(), addr.length) != 0) {
    const int error = EVUTIL_SOCKET_ERROR();
    if (net::isLocalShortage(error)) {
      // wsgate is out of descriptors (or memory, or local ports): says nothing about the
      // backend, so the probe does not count; the next one runs at the usual interval.
      p.conn.reset();
      log().warn("[health b={}] probe skipped: {}", p.name, std::strerror(error));
      const timeval next = net::toTimeval(hc.interval);
      evtimer_add(p.timer.get(), &next);
      return;
    }
    finish(p, false, "connect failed");
  }
}

void HealthChecker::onReadable(Probe& p) {
  const conf::HealthConfig& hc = *p.pool->config->health;
  evbuffer* input = bufferevent_get_input(p.conn.get());
  const std::size_t n = std::min<std::size_t>(evbuffer_get_length(input), 16 * 1024);
  const char* data = reinterpret_cast<const char*>(evbuffer_pullup(input, n));
  http::ResponseHead head;
  const auto r = http::parseResponseHead({data, n}, {}, {}, head);
  if (r.status == http::ParseStatus::Incomplete) {
    if (n >= 16 * 1024) finish(p, false, "response head too large");
    return;
  }
  if (r.status == http::ParseStatus::Error) {
    finish(p, false, r.errorReason);
    return;
  }
  if (hc.websocket) {
    if (head.status != 101) {
      finish(p, false, "no 101 to the upgrade probe");
      return;
    }
    const ws::Verdict v = ws::checkUpgradeResponse(head, p.offer);
    finish(p, v.ok, v.ok ? "ok" : v.reason);
    return;
  }
  const bool ok = head.status >= 200 && head.status < 300;
  finish(p, ok, ok ? "ok" : "status not 2xx");
}

void HealthChecker::finish(Probe& p, bool ok, std::string_view why) {
  p.conn.reset();  // libevent defers the free when called from the connection's callback
  const conf::HealthConfig& hc = *p.pool->config->health;
  auto& backend = *p.pool->pool->backends()[p.index];
  switch (backend.reportProbe(ok, hc.rise, hc.fall, std::chrono::steady_clock::now())) {
    case balancer::ProbeTransition::WentDown:
      log().warn("[health b={}] down after {} failed probes: {}", p.name, hc.fall, why);
      break;
    case balancer::ProbeTransition::WentUp:
      log().info("[health b={}] up after {} good probes", p.name, hc.rise);
      break;
    case balancer::ProbeTransition::None:
      log().debug("[health b={}] probe {}: {}", p.name, ok ? "ok" : "failed", why);
      break;
  }
  const timeval next = net::toTimeval(hc.interval);
  evtimer_add(p.timer.get(), &next);
}

}  // namespace wsgate::proxy
