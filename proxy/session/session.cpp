#include "proxy/session/session.h"

#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "balancer/hash.h"
#include "proxy/control/worker.h"
#include "proxy/http/forward.h"
#include "proxy/http/request_parser.h"
#include "proxy/http/response_parser.h"
#include "proxy/http/response_writer.h"
#include "proxy/log.h"
#include "proxy/net/address.h"
#include "proxy/net/errors.h"
#include "proxy/session/session_script.h"
#include "proxy/session/session_tunnel.h"

namespace wsgate::proxy {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kLingerTime{5000};

using net::len;

using net::retriable;

// Feeds the front of `src` to a chunked decoder without copying it. Returns the number of
// bytes that belong to the body; `status` says whether the body ended or is invalid.
std::size_t scanChunked(http::ChunkedDecoder& dec, evbuffer* src,
                        http::ChunkedDecoder::Status& status, std::string_view& why) {
  constexpr int kVecs = 16;
  std::size_t consumed = 0;
  evbuffer_ptr pos;
  evbuffer_ptr_set(src, &pos, 0, EVBUFFER_PTR_SET);
  status = http::ChunkedDecoder::Status::NeedMore;
  while (consumed < len(src)) {
    evbuffer_iovec vec[kVecs];
    int n = evbuffer_peek(src, -1, &pos, vec, kVecs);
    if (n <= 0) break;
    int used = std::min(n, kVecs);
    for (int i = 0; i < used; ++i) {
      auto r = dec.feed({static_cast<const char*>(vec[i].iov_base), vec[i].iov_len});
      consumed += r.consumed;
      if (r.status != http::ChunkedDecoder::Status::NeedMore) {
        status = r.status;
        why = r.errorReason;
        return consumed;
      }
    }
    if (evbuffer_ptr_set(src, &pos, consumed, EVBUFFER_PTR_SET) != 0) break;
  }
  return consumed;
}

// The cookie to strip from what the backend sees: wsgate's own, under sticky.cookie.indirect.
std::string_view indirectCookie(const conf::PoolConfig& pool) noexcept {
  const auto& sticky = pool.sticky;
  if (!sticky || sticky->source != conf::StickySource::Cookie || !sticky->cookie.indirect) {
    return {};
  }
  return sticky->cookie.name;
}

}  // namespace

Session::Session(Worker& worker, RuntimePtr runtime, const ListenerEntry& listener, uint64_t id,
                 evutil_socket_t fd, const sockaddr* peer, int peerLen)
    : worker_(worker), runtime_(std::move(runtime)), listener_(&listener), id_(id) {
  net::SocketAddress addr;
  std::memcpy(&addr.storage, peer, std::min<std::size_t>(peerLen, sizeof addr.storage));
  addr.length = peerLen;
  clientAddr_ = addr.str();
  clientIp_ = addr.ip();
  evtimer_assign(&timer_, worker_.base(), &Session::onTimerCb, this);
  openConn(kClient, fd);  // its first event runs in a later loop turn, after start()
  // The TLS handshake runs through the same reads as the request head, and counts against
  // timeouts.handshake with it. A PROXY header comes before both (session_proxy.cpp).
  if (listener_->config->proxyProtocol) {
    state_ = State::ReadingProxyHeader;
  } else if (listener_->tls) {
    conn_[kClient].startTls(listener_->tls->newSsl());
  }
  ex_.started = Clock::now();
}

Session::~Session() {
  evtimer_del(&timer_);
  closeConn(kClient);
  closeConn(kBackend);
}

void Session::start() {
  // TCP_NODELAY came with the socket: accepted sockets inherit it from their listener.
  arm(Timer::Handshake, runtime_->config->timeouts.handshake);
}

// ---- trampolines -------------------------------------------------------------------

void Session::onTimerCb(evutil_socket_t, short, void* self) noexcept {
  auto* s = static_cast<Session*>(self);
  s->onTimeout();
  s->endTurn();
}

// ---- client side ---------------------------------------------------------------------

void Session::onClientEof(bool reset) {
  if (state_ == State::ReadingProxyHeader && len(input(kClient)) > 0) {
    refuseProxyHeader(ProxyReject::Truncated, reset ? "reset mid-header" : "closed mid-header");
    return;
  }
  if (reset) {
    close("client reset");
    return;
  }
  clientEof_ = true;
  const std::string_view why = len(input(kClient)) > 0 ? "client closed mid-head" : "client closed";
  switch (state_) {
    case State::ReadingProxyHeader:  // nothing sent: a balancer's TCP check, say
      close(why);
      break;
    case State::ReadingHead:
      if (len(output(kClient)) > 0) {
        // An answer to its last request is still to go (a request and its FIN came
        // together): it is written first, then the session closes (endTurn).
        finishAndLinger(why);
      } else {
        close(why);
      }
      break;
    case State::Connecting:
      // The body waits in the input until the backend is connected (or a queued request
      // gets a place). All of it came before the FIN: the request goes on, and the session
      // ends after the answer. Some is missing: no backend should see it.
      if (!ex_.requestDone && !requestBodyBuffered()) {
        close("client closed mid-request");
      } else {
        ex_.clientKeepAlive = false;
      }
      break;
    case State::AwaitingResponse:
    case State::RelayingResponse:
      if (!ex_.requestDone) {
        close("client closed mid-request");
      } else {
        ex_.clientKeepAlive = false;  // answer, then close
      }
      break;
    case State::Lingering:
      break;             // endTurn closes once the answer is out
    case State::Tunnel:  // the tunnel's own (session_io.cpp)
    case State::Closed:
      break;
  }
}

void Session::onInput(Side side) {
  if (state_ == State::Tunnel) {
    pumpTunnel(side);
    return;
  }
  if (side == kClient) {
    switch (state_) {
      case State::ReadingProxyHeader:
        readProxyHeader();
        break;
      case State::ReadingHead:
        readHead();
        break;
      case State::AwaitingResponse:
      case State::RelayingResponse:
        // Otherwise pipelined requests wait (their input is capped, see mayRead).
        if (inExchange_ && !ex_.requestDone) pumpRequestBody();
        break;
      case State::Lingering:
        evbuffer_drain(input(kClient), len(input(kClient)));
        break;
      default:
        break;  // Connecting: the body waits until the backend is connected
    }
    return;
  }
  switch (state_) {
    case State::AwaitingResponse:
      readResponseHead();
      break;
    case State::RelayingResponse:
      pumpResponseBody();
      break;
    default:
      // Bytes from an idle kept-alive backend answer nothing: the connection is unusable.
      releaseBackend();
      break;
  }
}

void Session::readHead() {
  evbuffer* input = this->input(kClient);
  const std::size_t available = len(input);
  if (available == 0) return;
  const auto& cfg = *runtime_->config;
  if (timerKind_ == Timer::KeepAlive) {
    // The first byte of the next request: from now the whole head has `handshake` to arrive.
    ex_ = Exchange{};
    ex_.started = Clock::now();
    arm(Timer::Handshake, cfg.timeouts.handshake);
  }
  http::ParseLimits limits{cfg.limits.maxHeaderBytes, cfg.limits.maxHeaders,
                           cfg.limits.maxUriBytes};
  if (headScanned_ > 0 && available <= limits.maxHeaderBytes) {
    // The parser keeps no state, so a head trickled byte by byte is parsed again only when a
    // new line end arrives: one parse per line, not per byte (slowloris costs stay linear).
    evbuffer_ptr from;
    evbuffer_ptr_set(input, &from, headScanned_, EVBUFFER_PTR_SET);
    if (evbuffer_search(input, "\n", 1, &from).pos < 0) {
      headScanned_ = available;
      return;
    }
  }
  const std::size_t n = std::min<std::size_t>(available, limits.maxHeaderBytes + 1);
  const char* data = reinterpret_cast<const char*>(evbuffer_pullup(input, n));
  if (!head_) head_ = std::make_unique<http::RequestHead>();
  auto r = http::parseRequestHead({data, n}, limits, *head_);
  headScanned_ = r.status == http::ParseStatus::Incomplete ? n : 0;
  switch (r.status) {
    case http::ParseStatus::Incomplete:
      if (n > limits.maxHeaderBytes) {
        answer(431, "request header fields too large", "header too large", false);
      }
      return;
    case http::ParseStatus::Error:
      ex_.bytesFromClient = available;
      answer(r.errorStatus, r.errorReason, r.errorReason, false);
      return;
    case http::ParseStatus::Complete:
      onHeadComplete(*head_, r.headBytes);
      return;
  }
}

void Session::onHeadComplete(const http::RequestHead& head, std::size_t headBytes) {
  const auto started = ex_.started;
  ex_ = Exchange{};
  ex_.started = started;
  inExchange_ = true;
  worker_.stats().handshake.observe(sinceStartUs());
  if (!tlsCounted_ && conn_[kClient].isTls()) countTlsHandshake({});
  // A reload since the last request (or since the accept) applies from this request on.
  adoptCurrentSnapshot();
  ex_.method = head.method;
  ex_.path = head.path;
  ex_.host = head.host;
  ex_.isHead = head.method == "HEAD";
  ex_.clientKeepAlive =
      head.keepAlive && leaving() == Leave::No;  // a drained session takes no more
  ex_.bytesFromClient = headBytes;
  ex_.requestBody = head.body;
  ex_.requestRemaining = head.contentLength;
  ex_.requestDone = head.body == http::BodyKind::None;
  disarm();
  RouteDecision d = decideRoute(*runtime_, head, clientIp_);
  if (d.route != nullptr)
    ex_.route = static_cast<int16_t>(d.route - runtime_->config->routes.data());
  script_.reset();  // the previous request's (a kept-alive connection)
  if (d.kind == RouteDecision::Kind::Forward && !d.route->lua.empty()) runOnRequest(d, head);
  execute(std::move(d), head, headBytes);
}

void Session::execute(RouteDecision d, const http::RequestHead& head, std::size_t headBytes) {
  evbuffer* input = this->input(kClient);
  // A local answer to a request with a body would have to discard that body first;
  // closing after the answer is simpler and loses nothing the client relies on.
  const bool canContinue = ex_.clientKeepAlive && ex_.requestDone;
  if (d.kind == RouteDecision::Kind::Refuse) {
    evbuffer_drain(input, headBytes);
    answer(d.status, d.detail, d.reason, d.keepAliveAllowed && canContinue, d.extraHeaders);
    return;
  }
  if (d.kind == RouteDecision::Kind::Respond) {
    evbuffer_drain(input, headBytes);
    std::string outText;
    http::LocalResponse r{.status = d.status,
                          .body = d.answerBody(),
                          .extraHeaders = d.answerHeaders(),
                          .keepAlive = canContinue,
                          .headOnly = ex_.isHead};
    if (!d.scriptContentType.empty()) r.contentType = d.scriptContentType;
    http::appendLocalResponse(r, outText);
    ex_.status = d.status;
    ex_.bytesToClient += outText.size();
    evbuffer_add(output(kClient), outText.data(), outText.size());
    logExchange(d.reason);
    inExchange_ = false;
    if (canContinue) {
      awaitNextRequest();
    } else {
      finishAndLinger(d.reason);
    }
    return;
  }
  const PoolEntry* pool = d.pool;
  if (d.websocket) {
    ex_.websocket = true;
    ex_.offer = std::make_unique<ws::Offer>(std::move(d.offer));
  }
  ex_.pool = d.poolName;
  ex_.stickyKey = d.stickyKey;
  ex_.preferredBackend = d.preferredBackend;
  // A key or a preferred backend (the pool's stickiness, or Lua's sticky_key/backend) decides
  // which backend this request belongs on, whatever served the previous one.
  const bool sticky =
      pool->config->sticky.has_value() || d.stickyKey.has_value() || d.preferredBackend.has_value();
  // A listener that asks for client certificates passes the verified subject on.
  std::string subject;
  if (listener_->config->tls && listener_->config->tls->clientCert != conf::ClientCertMode::Off &&
      conn_[kClient].tls() != nullptr) {
    subject = tls::ServerContext::peerSubject(conn_[kClient].tls()->ssl());
  }
  http::appendForwardedRequest(head,
                               {clientIp_,
                                conn_[kClient].isTls() ? "https" : "http",
                                ex_.websocket,
                                subject,
                                {d.setHeaders, d.removeHeaders},
                                indirectCookie(*pool->config)},
                               ex_.forwardedHead);
  evbuffer_drain(input, headBytes);  // `head` is invalid from here on
  ex_.tried.assign(pool->pool->backends().size(), false);

  // A kept-alive backend connection serves the next request of the same pool, unless the
  // request belongs on another backend.
  const bool idleBackend = conn_[kBackend].isOpen() && backendIdle_;
  if (idleBackend && backendPool_ == pool && sticky) {
    const auto idx = pickBackend();
    if (!idx || *idx != backendIndex_) releaseBackend();
  }
  if (conn_[kBackend].isOpen() && backendIdle_ && backendPool_ == pool) {
    backendIdle_ = false;
    ex_.reusedBackend = true;
    ex_.usedBackend = true;
    lease_ = balancer::BackendLease(pool->pool->backends()[backendIndex_]);
    onBackendConnected();
    return;
  }
  releaseBackend();
  backendPool_ = pool;
  connectBackend();
}

bool Session::requestBodyBuffered() {
  evbuffer* src = input(kClient);
  switch (ex_.requestBody) {
    case http::BodyKind::ContentLength:
      return len(src) >= ex_.requestRemaining;
    case http::BodyKind::Chunked: {
      // A copy of the decoder reads ahead; the real one consumes when the body is pumped.
      http::ChunkedDecoder probe =
          ex_.requestChunked ? *ex_.requestChunked : http::ChunkedDecoder{};
      http::ChunkedDecoder::Status st;
      std::string_view why;
      scanChunked(probe, src, st, why);
      return st == http::ChunkedDecoder::Status::Done;
    }
    default:
      return true;
  }
}

void Session::pumpRequestBody() {
  evbuffer* src = input(kClient);
  evbuffer* dst = output(kBackend);
  std::size_t moved = 0;
  if (ex_.requestBody == http::BodyKind::ContentLength) {
    moved = std::min<uint64_t>(len(src), ex_.requestRemaining);
    ex_.requestRemaining -= moved;
    if (ex_.requestRemaining == 0) ex_.requestDone = true;
  } else if (ex_.requestBody == http::BodyKind::Chunked) {
    http::ChunkedDecoder::Status st;
    std::string_view why;
    if (!ex_.requestChunked) ex_.requestChunked = std::make_unique<http::ChunkedDecoder>();
    moved = scanChunked(*ex_.requestChunked, src, st, why);
    if (st == http::ChunkedDecoder::Status::Error) {
      releaseBackend();
      if (state_ == State::RelayingResponse) {
        close("invalid chunked request body");
      } else {
        answer(400, why, "invalid chunked request body", false);
      }
      return;
    }
    if (st == http::ChunkedDecoder::Status::Done) ex_.requestDone = true;
  } else {
    ex_.requestDone = true;
  }
  if (moved > 0) {
    evbuffer_remove_buffer(src, dst, moved);
    ex_.bytesFromClient += moved;
  }
  if (!ex_.requestDone && clientEof_) {  // everything the client sent is pumped: no more comes
    close("client closed mid-request");
    return;
  }
  // Not done: reading the client stops while the backend has a full buffer (mayRead).
  if (ex_.requestDone && state_ == State::AwaitingResponse) {
    arm(Timer::BackendResponse, runtime_->config->timeouts.backendResponse);
  }
}

// ---- backend side (picking and connecting: session_backend.cpp) ---------------------

void Session::onBackendEof(bool reset) {
  switch (state_) {
    case State::AwaitingResponse:
      // A copy: releaseBackend() frees the connection that holds it.
      if (const std::string why = conn_[kBackend].tlsError(); !why.empty()) {
        // Not the backend's health, nor the client's doing: the TLS settings of the pool
        // and the backend disagree (a CA, a name). Every request says so until fixed.
        log().info("[s{} {} connect b={}] backend TLS failed: {}", id_, clientAddr_, backendName_,
                   why);
        releaseBackend();
        answer(502, "backend TLS handshake failed: " + why, "backend TLS failed", false);
        return;
      }
      if (ex_.reusedBackend && ex_.requestBody == http::BodyKind::None &&
          len(input(kBackend)) == 0) {
        // A kept-alive connection the backend closed as we reused it: the request never
        // reached the application, so a fresh connection may carry it (RFC 9112 9.3.1).
        ex_.reusedBackend = false;
        releaseBackend();
        connectBackend();
        return;
      }
      releaseBackend();
      answer(502, reset ? "backend reset before responding" : "backend closed before responding",
             "backend closed", false);
      break;
    case State::RelayingResponse:
      if (!reset && ex_.responseBody == http::BodyKind::UntilClose) {
        backendEof_ = true;
        pumpResponseBody();
      } else {
        close(reset ? "backend reset mid-response" : "backend closed mid-response");
      }
      break;
    default:
      releaseBackend();  // an idle kept-alive connection went away
      break;
  }
}

void Session::readResponseHead() {
  const auto& cfg = *runtime_->config;
  http::ParseLimits limits{cfg.limits.maxHeaderBytes, cfg.limits.maxHeaders,
                           cfg.limits.maxUriBytes};
  while (state_ == State::AwaitingResponse) {
    evbuffer* input = this->input(kBackend);
    const std::size_t available = len(input);
    if (available == 0) return;
    const std::size_t n = std::min<std::size_t>(available, limits.maxHeaderBytes + 1);
    const char* data = reinterpret_cast<const char*>(evbuffer_pullup(input, n));
    if (!resp_) resp_ = std::make_unique<http::ResponseHead>();
    auto r = http::parseResponseHead({data, n}, limits, {ex_.isHead}, *resp_);
    if (r.status == http::ParseStatus::Incomplete) {
      if (n > limits.maxHeaderBytes) {
        releaseBackend();
        answer(502, "backend response head too large", "backend head too large", false);
      }
      return;
    }
    if (r.status == http::ParseStatus::Error) {
      log().info("[s{} {} response b={}] invalid response head: {}", id_, clientAddr_, backendName_,
                 r.errorReason);
      releaseBackend();
      answer(502, "invalid response from backend: " + std::string(r.errorReason),
             "invalid backend response", false);
      return;
    }
    onResponseHead(*resp_, r.headBytes);
  }
}

void Session::onResponseHead(const http::ResponseHead& resp, std::size_t headBytes) {
  evbuffer* input = this->input(kBackend);
  // The backend's TLS session (a TLS 1.3 ticket has come by now, ahead of the response)
  // for the next connection of this worker to it.
  if (conn_[kBackend].isTls() && backendPool_ != nullptr) {
    worker_.keepBackendTlsSession(backendPool_->pool->backends()[backendIndex_],
                                  conn_[kBackend].tls()->ssl());
  }
  std::string head;
  if (resp.status == 101) {
    ws::Verdict v = ex_.websocket
                        ? ws::checkUpgradeResponse(resp, *ex_.offer)
                        : ws::Verdict::reject(502, "101 to a request that asked for no upgrade");
    if (!v.ok) {
      log().info("[s{} {} response b={}] bad 101: {}", id_, clientAddr_, backendName_, v.reason);
      releaseBackend();
      answer(502, "invalid upgrade response from backend: " + std::string(v.reason), "invalid 101",
             false);
      return;
    }
    noteResponseHead(101);
    const bool deflate = ws::negotiatesDeflate(resp);  // RFC 7692: RSV1 marks compression
    http::appendForwardedResponse(resp, true, ex_.setCookie, head);
    evbuffer_drain(input, headBytes);  // `resp` is invalid from here on
    ex_.status = 101;
    ex_.bytesToClient += head.size();
    evbuffer_add(output(kClient), head.data(), head.size());
    startTunnel(deflate);
    return;
  }
  if (resp.status < 200) {  // interim (100 Continue, 103 Early Hints): pass on, keep waiting
    http::appendForwardedResponse(resp, true, {}, head);
    evbuffer_drain(input, headBytes);
    ex_.bytesToClient += head.size();
    evbuffer_add(output(kClient), head.data(), head.size());
    return;
  }
  noteResponseHead(resp.status);
  ex_.status = resp.status;
  ex_.responseBody = resp.body;
  ex_.responseRemaining = resp.contentLength;
  // An unread request body, or a body delimited by close, leaves no way to find where the
  // next request starts or ends: the client connection closes after this response.
  if (!ex_.requestDone || resp.body == http::BodyKind::UntilClose || clientEof_) {
    ex_.clientKeepAlive = false;
  }
  backendIdle_ = false;
  http::appendForwardedResponse(resp, ex_.clientKeepAlive, ex_.setCookie, head);
  evbuffer_drain(input, headBytes);
  ex_.forwardedHead.clear();
  ex_.forwardedHead.shrink_to_fit();
  ex_.bytesToClient += head.size();
  evbuffer_add(output(kClient), head.data(), head.size());
  ex_.backendKeepAlive = resp.keepAlive;
  state_ = State::RelayingResponse;
  lastActivity_ = Clock::now();
  arm(Timer::BackendResponse, runtime_->config->timeouts.backendResponse);
  pumpResponseBody();
}

void Session::pumpResponseBody() {
  evbuffer* src = input(kBackend);
  evbuffer* dst = output(kClient);
  std::size_t moved = 0;
  bool done = false;
  switch (ex_.responseBody) {
    case http::BodyKind::None:
      done = true;
      break;
    case http::BodyKind::ContentLength:
      moved = std::min<uint64_t>(len(src), ex_.responseRemaining);
      ex_.responseRemaining -= moved;
      done = ex_.responseRemaining == 0;
      break;
    case http::BodyKind::Chunked: {
      http::ChunkedDecoder::Status st;
      std::string_view why;
      if (!ex_.responseChunked) ex_.responseChunked = std::make_unique<http::ChunkedDecoder>();
      moved = scanChunked(*ex_.responseChunked, src, st, why);
      if (st == http::ChunkedDecoder::Status::Error) {
        log().info("[s{} {} response b={}] invalid chunked body: {}", id_, clientAddr_,
                   backendName_, why);
        close("invalid chunked response body");
        return;
      }
      done = st == http::ChunkedDecoder::Status::Done;
      break;
    }
    case http::BodyKind::UntilClose:
      moved = len(src);
      done = backendEof_;
      break;
  }
  if (moved > 0) {
    evbuffer_remove_buffer(src, dst, moved);
    ex_.bytesToClient += moved;
    lastActivity_ = Clock::now();
  }
  // Not done: reading the backend stops while the client has a full buffer (mayRead).
  if (done) onExchangeDone();
}

void Session::onExchangeDone() {
  logExchange("ok");
  inExchange_ = false;
  const bool backendReusable = ex_.backendKeepAlive && ex_.requestDone && !backendEof_ &&
                               conn_[kBackend].isOpen() && len(input(kBackend)) == 0;
  if (backendReusable) {
    backendIdle_ = true;
    lease_.reset();  // an idle kept-alive connection is not an active session
  } else {
    releaseBackend();
  }
  if (!ex_.clientKeepAlive) {
    finishAndLinger("ok");
    return;
  }
  awaitNextRequest();
}

void Session::awaitNextRequest() {
  if (leaving() != Leave::No) {  // drained meanwhile; its answer said Connection: close
    finishAndLinger(leaveReason(leaving()));
    return;
  }
  state_ = State::ReadingHead;
  inExchange_ = false;
  ex_ = Exchange{};
  ex_.started = Clock::now();
  headScanned_ = 0;
  arm(Timer::KeepAlive, runtime_->config->timeouts.httpKeepalive);
  // Between requests a kept-alive TLS connection gives OpenSSL's record buffers back.
  conn_[kClient].releaseIdleBuffers();
  if (len(input(kClient)) > 0) {
    // A pipelined request is already here. It is read from the loop, not from this call
    // stack: thousands of tiny pipelined requests must not nest thousands of frames.
    worker_.resumeLater(this, kClient);
  }
}

void Session::releaseBackend() {
  closeConn(kBackend);
  lease_.reset();
  backendIdle_ = false;
  backendEof_ = false;
}

// ---- answers, timers, teardown ------------------------------------------------------

void Session::answer(int status, std::string_view detail, std::string_view reason, bool keepAlive,
                     std::string_view extraHeaders) {
  keepAlive = keepAlive && leaving() == Leave::No;
  std::string body = http::errorBody(status, detail);
  std::string text;
  http::appendLocalResponse({.status = status,
                             .body = body,
                             .extraHeaders = extraHeaders,
                             .keepAlive = keepAlive,
                             .headOnly = ex_.isHead},
                            text);
  ex_.status = status;
  ex_.bytesToClient += text.size();
  evbuffer_add(output(kClient), text.data(), text.size());
  inExchange_ = true;
  logExchange(reason);
  inExchange_ = false;
  if (keepAlive) {
    awaitNextRequest();
  } else {
    finishAndLinger(reason);
  }
}

void Session::finishAndLinger(std::string_view reason) {
  closeReason_ = reason;
  releaseBackend();
  state_ = State::Lingering;
  // The end of the turn writes the answer, then sends a FIN; what the client still sends is
  // read and dropped until its own FIN (closing with unread bytes would send an RST, which
  // can destroy the answer), or until the timer gives up. A client that closed already is
  // closed as soon as the answer is out.
  evbuffer_drain(input(kClient), len(input(kClient)));
  arm(Timer::Linger, kLingerTime);
}

void Session::drainIfOn(const std::unordered_set<const balancer::Backend*>& backends,
                        std::chrono::milliseconds delay) {
  if (state_ == State::Tunnel && backends.contains(lease_.get())) {
    drainTunnel(delay);
  } else if (backendIdle_ && backendPool_ != nullptr &&
             backends.contains(backendPool_->pool->backends()[backendIndex_].get())) {
    releaseBackend();  // kept alive for reuse: the next request picks again
  }
}

void Session::drain(std::chrono::milliseconds delay, Leave why) {
  if (leaving() != Leave::No || state_ == State::Closed || state_ == State::Lingering) return;
  leaving_ = static_cast<uint8_t>(why);
  switch (state_) {
    case State::Tunnel:
      drainTunnel(delay);
      break;
    case State::ReadingHead:
      // Idle between two requests: nothing is lost by closing (clients retry a request
      // that meets a closed kept-alive connection). A first request, or one half read,
      // is answered, with Connection: close.
      if (timerKind_ == Timer::KeepAlive && len(input(kClient)) == 0) close(leaveReason(why));
      break;
    case State::Connecting:
    case State::AwaitingResponse:
      ex_.clientKeepAlive = false;  // the response head is still to come: it says close
      break;
    default:  // the response head went out already: the connection closes after it
      break;
  }
}

void Session::adoptCurrentSnapshot() {
  const RuntimePtr& current = worker_.runtime();
  if (current == runtime_ || leaving() != Leave::No) return;
  const ListenerEntry* listener = current->findListener(listener_->key);
  if (listener == nullptr) return;  // closed by the reload: the worker drains this session
  if (backendIdle_ && backendPool_ != nullptr) {
    // The kept-alive backend connection goes on serving if its backend is in the new
    // snapshot's pool of the same name (a kept backend is the same object).
    const balancer::Backend* backend = backendPool_->pool->backends()[backendIndex_].get();
    const PoolEntry* pool = current->findPool(backendPool_->config->name);
    const auto index = pool != nullptr ? pool->pool->find(backend->spec().name) : std::nullopt;
    if (index && pool->pool->backends()[*index].get() == backend) {
      backendPool_ = pool;
      backendIndex_ = *index;
    } else {
      releaseBackend();
    }
  }
  runtime_ = current;
  listener_ = listener;
}

void Session::close(std::string_view reason) {
  if (state_ == State::Closed) return;
  leaveQueue();
  if (inExchange_) {
    logExchange(reason);
    inExchange_ = false;
  }
  state_ = State::Closed;
  disarm();
  if (!tlsCounted_ && conn_[kClient].isTls()) countTlsHandshake(reason);
  ListenerCounters::add(listener_->counters->closed);
  closeScriptConn();
  closeConn(kClient);  // the tunnel's stats stay for the log
  closeConn(kBackend);
  lease_.reset();
  worker_.retire(this);
}

void Session::countTlsHandshake(std::string_view closeReason) {
  tlsCounted_ = true;
  ListenerCounters& c = *listener_->counters;
  const tls::Stream* tls = conn_[kClient].tls();
  if (tls != nullptr && tls->handshakeDone()) {
    ListenerCounters::add(c.tlsHandshakes);
    return;
  }
  if (closeReason.empty()) return;  // still going
  const bool timedOut = closeReason.starts_with("handshake timeout");
  ListenerCounters::add(
      c.tlsFailures[static_cast<std::size_t>(tlsFailureOf(conn_[kClient].tlsError(), timedOut))]);
}

uint32_t Session::sinceStartUs() const {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - ex_.started).count();
  return static_cast<uint32_t>(std::clamp<int64_t>(us, 0, kNoTime - 1));
}

void Session::noteResponseHead(int status) {
  if (ex_.responseUs != kNoTime || ex_.sentAtUs == kNoTime) return;  // one per request
  ex_.responseUs = sinceStartUs() - ex_.sentAtUs;
  worker_.stats().backendResponse.observe(ex_.responseUs);
  // Counted whatever holds the lease: logExchange counts every tunnel's end.
  if (status == 101) worker_.stats().websocketOpened.add();
  if (!lease_) return;
  balancer::BackendCounters& c = lease_->counters();
  balancer::BackendCounters::add(c.responses[status >= 100 && status < 600 ? status / 100 : 0]);
  if (status == 101) balancer::BackendCounters::add(c.websocketSessions);
}

void Session::logExchange(std::string_view reason) {
  const bool tunnel = ex_.websocket && ex_.status == 101;
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - ex_.started).count();
  auto msOf = [](uint32_t us) { return us == kNoTime ? -1.0 : us / 1000.0; };
  TunnelStats stats;
  WorkerStats& counters = worker_.stats();
  counters.httpResponses[ex_.status >= 100 && ex_.status < 600 ? ex_.status / 100 : 0].add();
  if (tunnel_) {
    const TunnelState& t = *tunnel_;
    stats = {t.relay[kClient].frames(),
             t.relay[kBackend].frames(),
             t.relay[kClient].messages(),
             t.relay[kBackend].messages(),
             t.closeCode,
             t.closeBy};
    counters.websocketSessions.add();
    counters.messagesFromClient.add(stats.messagesFromClient);
    counters.messagesToClient.add(stats.messagesToClient);
    counters.tunnelBytesFromClient.add(t.relay[kClient].payloadBytes());
    counters.tunnelBytesToClient.add(t.relay[kBackend].payloadBytes());
    counters.closes[closeCodeSlot(t.closeCode)][static_cast<std::size_t>(closeSideOf(t.closeBy))]
        .add();
    if (t.drainAt != Clock::time_point{}) counters.drainsEnded.add();
  }
  writeAccess({.session = id_,
               .client = clientAddr_,
               .kind = tunnel || ex_.websocket ? "websocket" : "http",
               .listener = listener_->config->name,
               .route = ex_.route,
               .method = ex_.method,
               .path = ex_.path,
               .host = ex_.host,
               .status = ex_.status,
               .pool = ex_.pool,
               .backend = ex_.usedBackend ? backendName_ : "",
               .reason = reason,
               .durationMs = ms,
               .connectMs = ex_.reusedBackend || ex_.connectAtUs == kNoTime ||
                                    ex_.sentAtUs == kNoTime || ex_.sentAtUs < ex_.connectAtUs
                                ? -1.0
                                : msOf(ex_.sentAtUs - ex_.connectAtUs),
               .responseMs = msOf(ex_.responseUs),
               .bytesFromClient = ex_.bytesFromClient,
               .bytesToClient = ex_.bytesToClient,
               .tunnel = tunnel_ ? &stats : nullptr});
}

void Session::arm(Timer kind, std::chrono::milliseconds after) {
  timerKind_ = kind;
  const timeval tv = net::toTimeval(after);
  evtimer_add(&timer_, &tv);
}

void Session::disarm() {
  timerKind_ = Timer::None;
  evtimer_del(&timer_);
}

void Session::onTimeout() {
  const auto& t = runtime_->config->timeouts;
  const Timer kind = timerKind_;
  timerKind_ = Timer::None;
  switch (kind) {
    case Timer::Handshake:
      if (state_ == State::ReadingProxyHeader) {
        const bool partial = len(input(kClient)) > 0;
        refuseProxyHeader(partial ? ProxyReject::Truncated : ProxyReject::Timeout,
                          partial ? "timeouts.handshake ran out mid-header"
                                  : "nothing came within timeouts.handshake");
      } else if (len(input(kClient)) > 0) {
        answer(408, "request head not received in time", "handshake timeout", false);
      } else {
        close("handshake timeout, no request");
      }
      break;
    case Timer::KeepAlive:
      close("keepalive timeout");
      break;
    case Timer::Connect:
      onConnectFailed("connect timeout");
      break;
    case Timer::BackendResponse:
      if (state_ == State::AwaitingResponse) {
        log().info("[s{} {} response b={}] no response head in {}ms", id_, clientAddr_,
                   backendName_, t.backendResponse.count());
        releaseBackend();
        answer(504, "backend did not respond in time", "backend response timeout", false);
      } else if (state_ == State::RelayingResponse) {
        auto idle = Clock::now() - lastActivity_;
        if (idle >= t.backendResponse) {
          close("backend read timeout");
        } else {
          arm(Timer::BackendResponse,
              std::chrono::duration_cast<std::chrono::milliseconds>(t.backendResponse - idle));
        }
      }
      break;
    case Timer::Idle:
      // Lazy: activity only stores a time; the tunnel timer re-arms when it fires early.
      if (state_ == State::Tunnel) onTunnelTimeout();
      break;
    case Timer::Linger:
      close(closeReason_);
      break;
    case Timer::Queue:
      connectBackend();  // a place may have come free (polled: leases end on any worker)
      break;
    case Timer::None:
      break;
  }
}

}  // namespace wsgate::proxy
