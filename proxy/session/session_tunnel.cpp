// The tunnel half of the Session state machine: after a valid 101, frames are relayed
// both ways by two FrameRelays; wsgate enforces RFC 6455 at the edge, pings clients,
// and runs (or completes) the closing handshake itself when a side fails or goes idle.

#include "proxy/session/session_tunnel.h"

#include <event2/buffer.h>
#include <openssl/rand.h>

#include <algorithm>
#include <string>

#include "proxy/control/worker.h"
#include "proxy/log.h"
#include "proxy/session/session.h"
#include "proxy/session/session_script.h"
#include "proxy/ws/close_code.h"

namespace wsgate::proxy {
namespace {

using Clock = std::chrono::steady_clock;
namespace cc = ws::close_code;
constexpr std::string_view kPingPrefix = "wsgate:";
// An idle TLS tunnel gives OpenSSL's record buffers back after this long without traffic
// (~33 KB per side): not after every record, which would cost a malloc and free each.
constexpr std::chrono::milliseconds kTlsIdleRelease{1000};

using net::len;

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
  lastActivity_ = Clock::now();
  if (cfg.timeouts.pingInterval.count() > 0) {
    t.nextPing = lastActivity_ + cfg.timeouts.pingInterval;
  }
  armTunnelTimer();
  if (script_) openScriptConn();
  // A drain that came while the upgrade was on its way (shutdown, its listener closed).
  if (leaving() != Leave::No) drainTunnel(worker_.drainDelay(*runtime_));
  // The sockets keep their events and buffered bytes: frames the client pipelined behind
  // its request (held until now) and frames the backend sent right behind its 101.
  if (len(input(kClient)) > 0) pumpTunnel(kClient);
  if (state_ == State::Tunnel && len(input(kBackend)) > 0) pumpTunnel(kBackend);
  if (state_ == State::Tunnel && clientEof_) onTunnelEof(kClient, false);
}

void Session::pumpTunnel(Side from) {
  TunnelState& t = *tunnel_;
  const Side to = other(from);
  evbuffer* src = input(from);
  evbuffer* dst = output(to);
  if (t.closeFrom[from]) {
    // Nothing is relayed after a Close (RFC 6455 5.5.1): what follows is dropped.
    evbuffer_drain(src, len(src));
    return;
  }
  FrameRelay& relay = t.relay[from];
  const uint64_t framesBefore = relay.frames();
  const std::size_t outBefore = len(dst);
  FrameRelay::Collected* collect = script_ ? script_->collect[from].get() : nullptr;
  bool stop = false;
  while (!stop) {
    switch (relay.pump(src, dst, t.closeTo[to], collect)) {
      case FrameRelay::Status::NeedMore:
        stop = true;
        break;
      case FrameRelay::Status::Message:
        if (!onScriptMessage(from)) stop = true;
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
          if (from == kClient) t.clientSentClose = true;
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
  if (relay.frames() != framesBefore || len(dst) != outBefore) {
    lastActivity_ = Clock::now();
    if (!t.tlsBuffersHeld && (conn_[kClient].isTls() || conn_[kBackend].isTls())) {
      t.tlsBuffersHeld = true;
      armTunnelTimer();  // once per burst after an idle spell: to give them back again
    }
  }
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
  evbuffer_drain(input(from), len(input(from)));
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
    evbuffer_drain(output(from), len(output(from)));
  }
  if (!hadClose) {
    // The side vanished without a Close: the other side gets one from wsgate.
    const bool first = t.closeCode == 0;  // nothing had ended the session before
    if (first) {
      t.closeCode = cc::kAbnormal;
      t.closeBy = sideName(from);
    }
    if (from == kBackend) {
      // A backend that vanished from a live session (a crash, a deploy without a drain),
      // not one that hangs up after a close already under way: counted on it (the health
      // checker's loop warns with the count) and said in the access line.
      if (first && lease_) balancer::BackendCounters::add(lease_->counters().droppedSessions);
      if (first) closeReason_ = reset ? "backend reset" : "backend vanished";
      sendClose(kClient, cc::kBadGateway, reset ? "backend reset" : "backend closed");
    } else {
      if (first && reset) closeReason_ = "client reset";
      sendClose(kBackend, cc::kGoingAway, "client went away");
    }
  }
  // A clean FIN is passed on after the Close (half-close): the other side can still send
  // its last frames, which are relayed to the half-closed side until its Close comes.
  // endTunnelTurn sends it once the output toward that side is written. After a reset the
  // Close alone tells the other side, but when the side reset in the middle of a frame no
  // Close can follow the part of it already relayed (sendClose): then the FIN is the only
  // word the other side gets, rather than silence until timeouts.close.
  const bool collecting = script_ && script_->collect[from];
  const bool closeBlocked = !hadClose && !collecting && !t.relay[from].atFrameBoundary();
  if (!reset || closeBlocked) t.finPending[other(from)] = true;
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
  // (A collecting relay holds a message's frames until it ends: its output is always whole.)
  const bool collecting = script_ && script_->collect[other(side)];
  if (!collecting && !t.relay[other(side)].atFrameBoundary()) return;
  std::string frame;
  if (side == kBackend) {
    uint8_t mask[4];  // RFC 6455 5.3: a fresh unpredictable key for each frame
    RAND_bytes(mask, sizeof mask);
    frame = ws::closeFrame(code, reason, mask);
  } else {
    frame = ws::closeFrame(code, reason);
  }
  evbuffer_add(output(side), frame.data(), frame.size());
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
  evbuffer_add(output(kClient), frame.data(), frame.size());
  t.pingOutstanding = true;
}

void Session::checkTunnelDone() {
  if (state_ != State::Tunnel) return;
  TunnelState& t = *tunnel_;
  if (!t.bothDone()) return;
  // Both closes are through: once the last frames are written, wsgate (the server toward
  // the client, RFC 6455 7.1.1) closes the TCP connections.
  if (len(output(kClient)) != 0 || len(output(kBackend)) != 0) return;
  const std::string reason = closeReason_.empty() ? "closed" : closeReason_;
  if (t.eof[kClient]) {
    close(reason);
    return;
  }
  if (t.lingering) return;
  // The client sent its Close: after it only its FIN may come (RFC 6455 5.5.1), so with
  // everything read, closing now sends no RST; the FIN goes out with the last frame.
  if (t.clientSentClose && !conn_[kClient].readable && len(input(kClient)) == 0) {
    close(reason);
    return;
  }
  // Otherwise a lingering close toward the client: a FIN now, then what it still sends (the rest of
  // a frame, its Close echo) is read and dropped until its own FIN, or until the close deadline.
  // Closing with unread bytes would send an RST, which can destroy the Close frame before the
  // client reads it. The backend connection is done with: closed now.
  t.lingering = true;
  shutdownWrite(kClient);
  closeConn(kBackend);
  lease_.reset();  // the backend's active count drops now, not after the linger
  if (!t.closing()) t.closeDeadline = Clock::now() + runtime_->config->timeouts.close;
  armTunnelTimer();
}

void Session::drainTunnel(std::chrono::milliseconds delay) {
  TunnelState& t = *tunnel_;
  if (t.closing() || t.drainAt != Clock::time_point{}) return;
  t.drainAt = Clock::now() + delay;
  worker_.stats().drainsStarted.add();
  // timeouts.drain counts from the drain (the reload, the SIGTERM), not from the 1012: what
  // is left of it when the 1012 goes (drain_spread <= drain, so never negative).
  const auto left = std::max(runtime_->config->timeouts.drain - delay, conf::Duration(0));
  t.drainCutMs = static_cast<uint32_t>(std::min<int64_t>(left.count(), UINT32_MAX));
  armTunnelTimer();
}

void Session::armTunnelTimer() {
  TunnelState& t = *tunnel_;
  const auto& to = runtime_->config->timeouts;
  auto next = t.closing() ? t.closeDeadline : lastActivity_ + to.idle;
  if (!t.closing() && to.pingInterval.count() > 0) next = std::min(next, t.nextPing);
  if (!t.closing() && t.drainAt != Clock::time_point{}) next = std::min(next, t.drainAt);
  if (t.tlsBuffersHeld && (conn_[kClient].isTls() || conn_[kBackend].isTls())) {
    next = std::min(next, lastActivity_ + kTlsIdleRelease);
  }
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
  arm(Timer::Idle, std::max(wait, std::chrono::milliseconds(0)) + std::chrono::milliseconds(1));
}

void Session::onTunnelTimeout() {
  TunnelState& t = *tunnel_;
  const auto& to = runtime_->config->timeouts;
  const auto now = Clock::now();
  if (t.tlsBuffersHeld && now - lastActivity_ >= kTlsIdleRelease) {
    t.tlsBuffersHeld = false;
    conn_[kClient].releaseIdleBuffers();
    conn_[kBackend].releaseIdleBuffers();
  }
  if (t.closing()) {
    if (now >= t.closeDeadline) {
      close(closeReason_.empty() ? "close timeout" : closeReason_);
      return;
    }
  } else if (t.drainAt != Clock::time_point{} && now >= t.drainAt) {
    // 1012 tells the client to reconnect (to a backend still in service).
    originateClose(cc::kServiceRestart, cc::kGoingAway,
                   leaving() == Leave::No ? "backend drained" : leaveReason(leaving()));
    // Cut timeouts.close after the 1012 or at timeouts.drain from the drain, if sooner.
    const auto cut = t.drainAt + std::chrono::milliseconds(t.drainCutMs);
    t.closeDeadline = std::min(t.closeDeadline, cut);
    armTunnelTimer();
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
