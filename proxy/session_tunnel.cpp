// The tunnel half of the Session state machine: after a valid 101, frames are relayed
// both ways by two FrameRelays; wsgate enforces RFC 6455 at the edge, pings clients,
// and runs (or completes) the closing handshake itself when a side fails or goes idle.

#include "proxy/session_tunnel.h"

#include <event2/buffer.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "proxy/log.h"
#include "proxy/session.h"
#include "proxy/worker.h"
#include "proxy/ws/close_code.h"

namespace wsgate::proxy {
namespace {

using Clock = std::chrono::steady_clock;
namespace cc = ws::close_code;
constexpr std::string_view kPingPrefix = "wsgate:";

using net::in;
using net::len;
using net::out;

bool retriable(int error) { return error == EAGAIN || error == EWOULDBLOCK || error == EINTR; }

// One read per call; a read shorter than this means the socket had no more for now.
constexpr std::size_t kReadSize = 16 * 1024;
// Bytes one side may read in one callback before the loop serves other connections.
constexpr std::size_t kReadBudget = 256 * 1024;

// Reads up to kReadSize bytes from `fd` straight into `buf` (no FIONREAD first, unlike
// evbuffer_read). Returns what read(2) returns. recv(2) when the space is one block, as it
// nearly always is: cheaper in the kernel than readv(2).
ssize_t readInto(evbuffer* buf, evutil_socket_t fd) {
  evbuffer_iovec space[2];
  const int n = evbuffer_reserve_space(buf, kReadSize, space, 2);
  if (n <= 0) {
    errno = ENOMEM;
    return -1;
  }
  ssize_t got;
  if (n == 1) {
    got = recv(fd, space[0].iov_base, space[0].iov_len, 0);
  } else {
    iovec iov[2];
    for (int i = 0; i < n; ++i) iov[i] = {space[i].iov_base, space[i].iov_len};
    got = readv(fd, iov, n);
  }
  if (got <= 0) return got;
  std::size_t left = static_cast<std::size_t>(got);
  int used = 0;
  for (; used < n && left > 0; ++used) {
    space[used].iov_len = std::min(left, space[used].iov_len);
    left -= space[used].iov_len;
  }
  evbuffer_commit_space(buf, space, used);
  return got;
}

// Writes as much of `buf` as the socket takes in one call and drains it: send(2) for one
// chain (the usual case: one message), sendmsg(2) over up to 64 chains otherwise.
ssize_t writeFrom(evbuffer* buf, evutil_socket_t fd) {
  constexpr int kMaxChains = 64;
  evbuffer_iovec chains[kMaxChains];
  const int n = std::min(evbuffer_peek(buf, -1, nullptr, chains, kMaxChains), kMaxChains);
  if (n <= 0) return 0;
  ssize_t put;
  if (n == 1) {
    put = send(fd, chains[0].iov_base, chains[0].iov_len, MSG_NOSIGNAL);
  } else {
    iovec iov[kMaxChains];
    for (int i = 0; i < n; ++i) iov[i] = {chains[i].iov_base, chains[i].iov_len};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<std::size_t>(n);
    put = sendmsg(fd, &msg, MSG_NOSIGNAL);
  }
  if (put > 0) evbuffer_drain(buf, static_cast<std::size_t>(put));
  return put;
}

// Keeps what `scratch` still holds in the tunnel's own buffer `own` (allocated on demand),
// and frees `own` once it is empty: between callbacks an idle tunnel holds no buffer.
void keepLeftovers(evbuffer* scratch, evbuffer*& own) {
  if (own == nullptr && len(scratch) > 0) {
    own = evbuffer_new();
    evbuffer_add_buffer(own, scratch);
  }
  if (own != nullptr && len(own) == 0) {
    evbuffer_free(own);
    own = nullptr;
  }
}

Session::Side other(Session::Side s) {
  return s == Session::kClient ? Session::kBackend : Session::kClient;
}
std::string_view sideName(Session::Side s) { return s == Session::kClient ? "client" : "backend"; }

// wsgate's own pings carry "wsgate:<n>"; only a pong with the payload of the latest one is
// wsgate's to swallow (RFC 6455 5.5.3), any other pong belongs to the backend.
std::string pingPayload(uint64_t seq) { return std::string(kPingPrefix) + std::to_string(seq); }

uint16_t closeCodeOf(std::string_view payload) {
  if (payload.size() < 2) return cc::kNoStatus;
  return static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                               static_cast<uint8_t>(payload[1]));
}

}  // namespace

Session::Footprint Session::footprint() { return {sizeof(Session), sizeof(TunnelState)}; }

void Session::TunnelState::closeConn(int side) {
  Conn& c = conn[side];
  if (c.fd < 0) return;  // closed already (or never opened)
  event_del(&c.ev);
  evutil_closesocket(c.fd);
  c.fd = -1;
  c.readable = false;
  eof[side] = true;
  if (c.in != nullptr) evbuffer_free(c.in);
  if (c.out != nullptr) evbuffer_free(c.out);
  c.in = c.out = nullptr;
}

void Session::TunnelState::release() {
  closeConn(kClient);
  closeConn(kBackend);
}

void Session::onTunnelIoCb(evutil_socket_t fd, short what, void* self) noexcept {
  auto* s = static_cast<Session*>(self);
  s->onTunnelIo(fd == s->tunnel_->conn[kClient].fd ? kClient : kBackend, what);
}

evbuffer* Session::tunnelIn(Side s) const {
  evbuffer* own = tunnel_->conn[s].in;
  return own != nullptr ? own : worker_.tunnelInput(s);
}

evbuffer* Session::tunnelOut(Side s) const {
  evbuffer* own = tunnel_->conn[s].out;
  return own != nullptr ? own : worker_.tunnelOutput(s);
}

void Session::startTunnel(bool permessageDeflate) {
  const auto& cfg = *runtime_->config;
  FrameRelay::Options up{{true, permessageDeflate, cfg.limits.maxMessageBytes},
                         cfg.websocket.validateUtf8};
  FrameRelay::Options down{{false, permessageDeflate, cfg.limits.maxMessageBytes},
                           cfg.websocket.validateUtf8};
  tunnel_ = std::make_unique<TunnelState>(up, down);
  TunnelState& t = *tunnel_;
  state_ = State::Tunnel;
  inExchange_ = true;  // the access line is written when the tunnel ends
  // The HTTP state is done with: give back its heap memory for the tunnel's lifetime.
  ex_.forwardedHead = std::string();
  ex_.setCookie = std::string();
  ex_.tried = std::vector<bool>();
  ex_.offer.reset();
  head_.reset();
  resp_.reset();  // the caller's `resp` is not used after this call
  // Each socket leaves its bufferevent for one edge-triggered event; bytes still buffered
  // (frames the client pipelined behind its request, the 101 not written yet, frames the
  // backend sent right behind its 101) move over without a copy.
  for (Side s : {kClient, kBackend}) {
    bufferevent* b = sideBev(s);
    TunnelState::Conn& c = t.conn[s];
    c.fd = bufferevent_getfd(b);
    bufferevent_setcb(b, nullptr, nullptr, nullptr, nullptr);
    bufferevent_disable(b, EV_READ | EV_WRITE);
    bufferevent_setfd(b, -1);  // the socket is the tunnel's now: freeing b must not close it
    evbuffer_add_buffer(tunnelIn(s), in(b));
    evbuffer_add_buffer(tunnelOut(s), out(b));
    event_assign(&c.ev, worker_.base(), c.fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST,
                 &Session::onTunnelIoCb, this);
    event_add(&c.ev, nullptr);
  }
  client_.reset();
  backend_.reset();
  lastActivity_ = Clock::now();
  if (cfg.timeouts.pingInterval.count() > 0) {
    t.nextPing = lastActivity_ + cfg.timeouts.pingInterval;
  }
  armTunnelTimer();
  // Frames the client pipelined behind its request were held until now.
  if (len(tunnelIn(kClient)) > 0) pumpTunnel(kClient);
  if (state_ == State::Tunnel && len(tunnelIn(kBackend)) > 0) pumpTunnel(kBackend);
  if (state_ == State::Tunnel && clientEof_) {
    t.conn[kClient].readable = false;
    onTunnelEof(kClient, false);
  }
  endTunnelTurn();
}

void Session::onTunnelIo(Side side, short what) {
  // EV_CLOSED (EPOLLRDHUP): the peer's FIN is queued. A short read no longer proves the
  // socket empty then (the FIN may sit behind the data just read): read on to the end.
  if (what & EV_CLOSED) tunnel_->conn[side].finQueued = true;
  if (what & (EV_READ | EV_CLOSED)) {
    tunnel_->conn[side].readable = true;
    readTunnel(side);
  }
  // EV_WRITE: the socket takes bytes again; the end of the turn writes what waits.
  endTunnelTurn();
}

void Session::readTunnel(Side from) {
  TunnelState& t = *tunnel_;
  TunnelState::Conn& c = t.conn[from];
  const Side to = other(from);
  const std::size_t maxBuffer = runtime_->config->limits.maxBufferBytes;
  std::size_t budget = kReadBudget;
  while (state_ == State::Tunnel && c.readable && !t.eof[from]) {
    // Backpressure: the other side is not taking its bytes; endTunnelTurn resumes this.
    if (len(tunnelOut(to)) >= maxBuffer) return;
    if (budget == 0) {
      event_active(&c.ev, EV_READ, 0);  // the rest next turn, after other connections
      return;
    }
    const ssize_t n = readInto(tunnelIn(from), c.fd);
    if (n > 0) {
      // A short read emptied the socket: the next bytes bring a new edge. Not so when the
      // FIN is already queued: its edge came with these bytes, so read on to the end.
      if (static_cast<std::size_t>(n) < kReadSize && !c.finQueued) c.readable = false;
      budget -= std::min(budget, static_cast<std::size_t>(n));
      pumpTunnel(from);
      continue;
    }
    if (n < 0 && retriable(errno)) {
      c.readable = false;
      return;
    }
    const bool reset = n < 0;
    c.readable = false;
    (from == kClient ? clientEof_ : backendEof_) = true;
    onTunnelEof(from, reset);
    return;
  }
}

void Session::endTunnelTurn() {
  const std::size_t maxBuffer = runtime_->config->limits.maxBufferBytes;
  // A failed write can queue a Close toward the other side: go round again for it.
  for (int round = 0; round < 2 && state_ == State::Tunnel; ++round) {
    bool failed = false;
    for (Side s : {kClient, kBackend}) {
      if (state_ != State::Tunnel) break;
      TunnelState& t = *tunnel_;
      evbuffer* o = tunnelOut(s);
      if (t.conn[s].fd < 0) {  // closed already (lingering close): nothing reaches it
        evbuffer_drain(o, len(o));
        continue;
      }
      if (len(o) > 0 && writeFrom(o, t.conn[s].fd) < 0 && !retriable(errno)) {
        evbuffer_drain(o, len(o));  // the peer is gone: nothing more reaches it
        if (!t.eof[s]) {
          failed = true;
          (s == kClient ? clientEof_ : backendEof_) = true;
          onTunnelEof(s, true);
          continue;
        }
      }
      if (len(o) == 0 && t.finPending[s]) {
        t.finPending[s] = false;
        if (t.conn[s].fd >= 0) shutdown(t.conn[s].fd, SHUT_WR);
      }
      // The side feeding s stopped reading on a full buffer: it may go on.
      const Side from = other(s);
      if (len(o) < maxBuffer && t.conn[from].readable && !t.eof[from]) {
        event_active(&t.conn[from].ev, EV_READ, 0);
      }
    }
    if (!failed) break;
  }
  checkTunnelDone();
  for (Side s : {kClient, kBackend}) {
    if (state_ == State::Tunnel) {
      keepLeftovers(worker_.tunnelInput(s), tunnel_->conn[s].in);
      keepLeftovers(worker_.tunnelOutput(s), tunnel_->conn[s].out);
    } else {
      evbuffer_drain(worker_.tunnelInput(s), len(worker_.tunnelInput(s)));
      evbuffer_drain(worker_.tunnelOutput(s), len(worker_.tunnelOutput(s)));
    }
  }
}

void Session::pumpTunnel(Side from) {
  TunnelState& t = *tunnel_;
  const Side to = other(from);
  evbuffer* src = tunnelIn(from);
  evbuffer* dst = tunnelOut(to);
  if (t.closeFrom[from]) {
    // Nothing is relayed after a Close (RFC 6455 5.5.1): what follows is dropped.
    evbuffer_drain(src, len(src));
    return;
  }
  FrameRelay& relay = t.relay[from];
  const uint64_t framesBefore = relay.frames();
  const std::size_t outBefore = len(dst);
  bool stop = false;
  while (!stop) {
    switch (relay.pump(src, dst, t.closeTo[to])) {
      case FrameRelay::Status::NeedMore:
        stop = true;
        break;
      case FrameRelay::Status::Violation:
        onTunnelViolation(from, relay.violation());
        return;
      case FrameRelay::Status::Control: {
        const auto op = static_cast<ws::Opcode>(relay.controlHeader().opcode);
        const std::string_view payload = relay.controlPayload();
        if (op == ws::Opcode::Close) {
          if (ws::Violation v = ws::checkClosePayload(payload)) {
            relay.dropControl(src);
            onTunnelViolation(from, v);
            return;
          }
          t.closeFrom[from] = true;
          if (t.closeCode == 0) {
            t.closeCode = closeCodeOf(payload);
            t.closeBy = sideName(from);
          }
          if (t.closeTo[to]) {
            relay.dropControl(src);  // the echo of a close wsgate sent: ends here
          } else {
            relay.forwardControl(src, dst);
            t.closeTo[to] = true;
          }
          evbuffer_drain(src, len(src));
          if (!t.closing()) {
            t.closeDeadline = Clock::now() + runtime_->config->timeouts.close;
            armTunnelTimer();  // the echo has `timeouts.close` to come back
          }
          stop = true;
          break;
        }
        if (op == ws::Opcode::Pong && from == kClient && t.pingSeq > 0 &&
            payload == pingPayload(t.pingSeq)) {
          relay.dropControl(src);  // answers wsgate's own ping: never reaches the backend
          t.pingOutstanding = false;
          t.missedPongs = 0;
          break;
        }
        if (t.closeTo[to]) {
          relay.dropControl(src);
        } else {
          relay.forwardControl(src, dst);
        }
        break;
      }
    }
  }
  if (relay.frames() != framesBefore || len(dst) != outBefore) lastActivity_ = Clock::now();
  if (from == kClient) {
    ex_.bytesFromClient += len(dst) - std::min(len(dst), outBefore);
  } else {
    ex_.bytesToClient += len(dst) - std::min(len(dst), outBefore);
  }
  checkTunnelDone();
}

void Session::onTunnelViolation(Side from, const ws::Violation& v) {
  TunnelState& t = *tunnel_;
  log().info("[s{} {} tunnel b={}] {} broke the protocol: {} (close {})", id_, clientAddr_,
             backendName_, sideName(from), v.reason, v.code);
  t.closeFrom[from] = true;  // whatever else it sends is dropped
  evbuffer_drain(tunnelIn(from), len(tunnelIn(from)));
  // The violator gets the code; the other side learns the peer went away (or, for a
  // broken backend, that the gateway failed: 1014).
  const uint16_t otherCode = from == kClient ? cc::kGoingAway : cc::kBadGateway;
  if (t.closeCode == 0) {
    t.closeCode = v.code;
    t.closeBy = "wsgate";
  }
  sendClose(from, v.code, v.reason);
  sendClose(other(from), otherCode, from == kClient ? "client failed" : "backend failed");
  if (!t.closing()) t.closeDeadline = Clock::now() + runtime_->config->timeouts.close;
  armTunnelTimer();
  checkTunnelDone();
}

void Session::onTunnelEof(Side from, bool reset) {
  TunnelState& t = *tunnel_;
  t.eof[from] = true;
  const bool hadClose = t.closeFrom[from];
  t.closeFrom[from] = true;
  if (reset) {
    t.closeTo[from] = true;  // nothing can be written to a reset connection
    evbuffer_drain(tunnelOut(from), len(tunnelOut(from)));
  }
  if (!hadClose) {
    // The side vanished without a Close: the other side gets one from wsgate.
    if (t.closeCode == 0) {
      t.closeCode = cc::kAbnormal;
      t.closeBy = sideName(from);
    }
    if (from == kBackend) {
      sendClose(kClient, cc::kBadGateway, reset ? "backend reset" : "backend closed");
    } else {
      sendClose(kBackend, cc::kGoingAway, "client went away");
    }
  }
  // A clean FIN is passed on after the Close (half-close): the other side can still send
  // its last frames, which are relayed to the half-closed side until its Close comes.
  // endTunnelTurn sends it once the output toward that side is written.
  if (!reset) t.finPending[other(from)] = true;
  if (!t.closing()) t.closeDeadline = Clock::now() + runtime_->config->timeouts.close;
  armTunnelTimer();
  checkTunnelDone();
}

void Session::sendClose(Side side, uint16_t code, std::string_view reason) {
  TunnelState& t = *tunnel_;
  if (t.closeTo[side]) return;
  t.closeTo[side] = true;
  // The frames toward `side` come from the other side's relay; a Close cannot be slipped
  // into the middle of a frame, so then the TCP close alone has to tell.
  if (!t.relay[other(side)].atFrameBoundary()) return;
  std::string frame;
  if (side == kBackend) {
    uint8_t mask[4];  // RFC 6455 5.3: a fresh unpredictable key for each frame
    RAND_bytes(mask, sizeof mask);
    frame = ws::closeFrame(code, reason, mask);
  } else {
    frame = ws::closeFrame(code, reason);
  }
  evbuffer_add(tunnelOut(side), frame.data(), frame.size());
}

void Session::originateClose(uint16_t toClient, uint16_t toBackend, std::string_view reason) {
  TunnelState& t = *tunnel_;
  if (t.closeCode == 0) {
    t.closeCode = toClient;
    t.closeBy = "wsgate";
  }
  log().debug("[s{} {} tunnel b={}] closing: {}", id_, clientAddr_, backendName_, reason);
  sendClose(kClient, toClient, reason);
  sendClose(kBackend, toBackend, reason);
  if (!t.closing()) t.closeDeadline = Clock::now() + runtime_->config->timeouts.close;
  closeReason_ = reason;
  armTunnelTimer();
  checkTunnelDone();
}

void Session::sendPing() {
  TunnelState& t = *tunnel_;
  if (t.closeTo[kClient] || !t.relay[kBackend].atFrameBoundary()) return;  // next round
  const std::string payload = pingPayload(++t.pingSeq);
  std::string frame;
  ws::appendFrameHeader(frame, true, ws::Opcode::Ping, payload.size());
  frame += payload;
  evbuffer_add(tunnelOut(kClient), frame.data(), frame.size());
  t.pingOutstanding = true;
}

void Session::checkTunnelDone() {
  if (state_ != State::Tunnel) return;
  TunnelState& t = *tunnel_;
  if (!t.sideDone(kClient) || !t.sideDone(kBackend)) return;
  // Both closes are through: once the last frames are written, wsgate (the server toward
  // the client, RFC 6455 7.1.1) closes the TCP connections.
  if (len(tunnelOut(kClient)) != 0 || len(tunnelOut(kBackend)) != 0) return;
  const std::string reason = closeReason_.empty() ? "closed" : closeReason_;
  if (t.eof[kClient]) {
    close(reason);
    return;
  }
  if (t.lingering) return;
  // Lingering close toward the client: a FIN now, then what it still sends (the rest of a
  // frame, its Close echo) is read and dropped until its own FIN, or until the close
  // deadline. Closing with unread bytes would send an RST, which can destroy the Close
  // frame before the client reads it. The backend connection is done with: closed now.
  t.lingering = true;
  shutdown(t.conn[kClient].fd, SHUT_WR);
  t.closeConn(kBackend);
  lease_.reset();  // the backend's active count drops now, not after the linger
  if (!t.closing()) t.closeDeadline = Clock::now() + runtime_->config->timeouts.close;
  armTunnelTimer();
}

void Session::drainTunnel(std::chrono::milliseconds delay) {
  TunnelState& t = *tunnel_;
  if (t.closing() || t.drainAt != Clock::time_point{}) return;
  t.drainAt = Clock::now() + delay;
  armTunnelTimer();
}

void Session::armTunnelTimer() {
  TunnelState& t = *tunnel_;
  const auto& to = runtime_->config->timeouts;
  auto next = t.closing() ? t.closeDeadline : lastActivity_ + to.idle;
  if (!t.closing() && to.pingInterval.count() > 0) next = std::min(next, t.nextPing);
  if (!t.closing() && t.drainAt != Clock::time_point{}) next = std::min(next, t.drainAt);
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
  arm(Timer::Idle, std::max(wait, std::chrono::milliseconds(0)) + std::chrono::milliseconds(1));
}

void Session::onTunnelTimeout() {
  TunnelState& t = *tunnel_;
  const auto& to = runtime_->config->timeouts;
  const auto now = Clock::now();
  if (t.closing()) {
    if (now >= t.closeDeadline) {
      close(closeReason_.empty() ? "close timeout" : closeReason_);
      return;
    }
  } else if (t.drainAt != Clock::time_point{} && now >= t.drainAt) {
    // 1012 tells the client to reconnect (to a backend still in service).
    originateClose(cc::kServiceRestart, cc::kGoingAway, "backend drained");
    // Cut at timeouts.drain at the latest, counted from the drain.
    t.closeDeadline = std::min(t.closeDeadline, now + to.drain);
    return;
  } else if (now - lastActivity_ >= to.idle) {
    originateClose(cc::kGoingAway, cc::kGoingAway, "idle timeout");
    return;
  } else if (to.pingInterval.count() > 0 && now >= t.nextPing) {
    if (t.pingOutstanding && ++t.missedPongs >= 2) {
      originateClose(cc::kGoingAway, cc::kGoingAway, "ping timeout");
      return;
    }
    sendPing();
    t.nextPing = now + to.pingInterval;
  }
  armTunnelTimer();
}

}  // namespace wsgate::proxy
