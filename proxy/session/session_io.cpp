// A Session's turn over its two transports (net::Conn), shared by its HTTP and tunnel
// phases: which side to read and when to stop (budget, backpressure), what to do at the end
// of the stream, one write per side per turn, FINs passed on, and the batched turn.

#include <event2/buffer.h>
#include <event2/event.h>

#include <algorithm>
#include <cerrno>

#include "proxy/control/worker.h"
#include "proxy/log.h"
#include "proxy/net/errors.h"
#include "proxy/net/proxy_protocol.h"
#include "proxy/session/session.h"
#include "proxy/session/session_tunnel.h"

namespace wsgate::proxy {
namespace {

using net::len;
using net::retriable;

// Bytes one side may read in one callback before the loop serves other connections.
constexpr std::size_t kReadBudget = 256 * 1024;

void dropAll(evbuffer* b) { evbuffer_drain(b, len(b)); }

void dropScratch(const net::Scratch& s) {
  dropAll(s.in);
  dropAll(s.out);
  dropAll(s.rawIn);
  dropAll(s.rawOut);
}

}  // namespace

void Session::onIoCb(evutil_socket_t fd, short what, void* self) noexcept {
  auto* s = static_cast<Session*>(self);
  s->onEvent(fd == s->conn_[kClient].fd() ? kClient : kBackend, what);
}

void Session::onEvent(Side side, short what) {
  if (state_ == State::Tunnel && worker_.batching()) {
    noteEvent(side, what);
    worker_.enqueue(this);  // its reads and writes go with the loop turn's batch
    return;
  }
  onIo(side, what);
  endTurn();
}

void Session::openConn(Side side, evutil_socket_t fd) {
  conn_[side].open(worker_.base(), fd, &Session::onIoCb, this);
}

void Session::closeConn(Side side) {
  net::Conn& c = conn_[side];
  if (!c.isOpen()) return;  // closed already (or never opened)
  const net::Scratch& s = scratch(side);
  c.close(&s);
  // This side's bytes in the worker's scratch buffers (this session's turn) go with it.
  dropScratch(s);
  if (tunnel_) tunnel_->eof[side] = true;
}

const net::Scratch& Session::scratch(Side s) const { return worker_.scratch(slot_, s); }

evbuffer* Session::input(Side s) const { return conn_[s].input(scratch(s)); }

evbuffer* Session::output(Side s) const { return conn_[s].output(scratch(s)); }

std::size_t Session::pendingOutput(Side s) const { return conn_[s].pendingOutput(scratch(s)); }

void Session::noteEvent(Side side, short what) { conn_[side].noteEvent(what); }

void Session::onIo(Side side, short what) {
  net::Conn& c = conn_[side];
  if (!c.isOpen() || state_ == State::Closed) return;
  noteEvent(side, what);
  if (c.connecting) {
    // A failed connect may open the next backend's socket in `c`, with no edge seen yet.
    tryConnected();
    if (c.connecting) return;
  }
  // A resume with bytes already here (a pipelined request, a body held back): act on them
  // first. A tunnel relays everything it reads at once, so it keeps nothing to act on.
  if ((what & EV_TIMEOUT) && state_ != State::Tunnel && len(input(side)) > 0) onInput(side);
  // EV_WRITE alone: the socket takes bytes again; the end of the turn writes what waits.
  readSide(side);
}

void Session::readSide(Side side) {
  net::Conn& c = conn_[side];
  std::size_t budget = kReadBudget;
  // Whatever ends the loop, a side left readable has more than a batch read would take.
  struct MarkStreaming {
    net::Conn& c;
    ~MarkStreaming() { c.streaming = c.readable && c.isOpen(); }
  } mark{c};
  // Over the budget the rest waits for the next loop turn (endTurn resumes it), after
  // other connections.
  while (budget > 0 && c.isOpen() && c.readable && mayRead(side)) {
    const ssize_t n = c.read(scratch(side));
    if (n > 0) {
      budget -= std::min(budget, static_cast<std::size_t>(n));
      onInput(side);
      continue;
    }
    if (n < 0 && retriable(errno)) return;
    onEof(side, n < 0);
    return;
  }
}

bool Session::mayRead(Side side) const {
  if (conn_[side].connecting) return false;
  const auto& limits = runtime_->config->limits;
  switch (state_) {
    case State::Tunnel:
      // Backpressure: stop while the other side is not taking its bytes.
      return !tunnel_->eof[side] && pendingOutput(other(side)) < limits.maxBufferBytes;
    case State::Closed:
      return false;
    case State::Lingering:
      return side == kClient && !clientEof_;  // read and drop until the client's FIN
    case State::ReadingProxyHeader:
      // Room for a whole v2 header, whatever the limits say; the parser needs no more.
      return side == kClient && !clientEof_ && len(input(kClient)) < net::kProxyV2MaxBytes;
    default:
      break;
  }
  if (side == kClient ? clientEof_ : backendEof_) return false;
  // What waits unread is capped: pipelined requests, a body the backend is not taking yet.
  const std::size_t cap = std::max(limits.maxBufferBytes, limits.maxHeaderBytes + 1);
  if (len(input(side)) >= cap) return false;
  if (side == kClient) {
    return !(inExchange_ && !ex_.requestDone && conn_[kBackend].isOpen() &&
             pendingOutput(kBackend) >= limits.maxBufferBytes);
  }
  return !(state_ == State::RelayingResponse && pendingOutput(kClient) >= limits.maxBufferBytes);
}

void Session::onEof(Side side, bool reset) {
  if (side == kClient && conn_[kClient].isTls() && !conn_[kClient].tlsError().empty() &&
      state_ != State::Tunnel) {
    // A failed handshake or a bad record: the client's doing, one debug line at most.
    log().debug("[s{} {}] client TLS failed: {}", id_, clientAddr_, conn_[kClient].tlsError());
    // close() sends OpenSSL's alert (protocol_version, unknown_ca, ...) before the FIN.
    close("client TLS error");
    return;
  }
  if (state_ == State::Tunnel) {
    (side == kClient ? clientEof_ : backendEof_) = true;
    onTunnelEof(side, reset);
  } else if (side == kClient) {
    onClientEof(reset);
  } else {
    onBackendEof(reset);
  }
}

void Session::shutdownWrite(Side side) { conn_[side].shutdownWrite(); }

bool Session::finFollows(Side side) const {
  if (state_ == State::Lingering) return side == kClient;
  if (state_ != State::Tunnel) return false;
  // Both closes through: checkTunnelDone closes or shuts down both sockets once both
  // outputs are written; if the other side's output still waits, the FIN would not follow
  // this write at once, and corked bytes would wait for it.
  if (tunnel_->finPending[side]) return true;
  return tunnel_->bothDone() && pendingOutput(other(side)) == 0;
}

void Session::endTurn() {
  // A failed write can queue a Close toward the other side: go round again for it.
  for (int round = 0; round < 2 && state_ != State::Closed; ++round) {
    bool failed = false;
    for (Side s : {kClient, kBackend}) {
      if (state_ == State::Closed) break;
      net::Conn& c = conn_[s];
      const net::Scratch& sc = scratch(s);
      if (!c.isOpen()) {  // closed already: nothing reaches it
        dropAll(c.output(sc));
        continue;
      }
      if (c.connecting) continue;  // tryConnected writes the first bytes
      if (c.pendingOutput(sc) > 0 && !c.blocked && c.write(sc, finFollows(s)) < 0 &&
          !retriable(errno)) {
        c.dropOutput(sc);  // the peer is gone: nothing more reaches it
        if (state_ != State::Tunnel || !tunnel_->eof[s]) {
          failed = true;
          onEof(s, true);
        }
        continue;
      }
      if (c.pendingOutput(sc) != 0) continue;
      if (state_ == State::Tunnel && tunnel_->finPending[s] && !tunnel_->bothDone()) {
        // (Both closes through: checkTunnelDone closes the socket, which sends the FIN.)
        tunnel_->finPending[s] = false;
        shutdownWrite(s);
      } else if (state_ == State::Lingering && s == kClient) {
        shutdownWrite(kClient);  // the answer is out: a FIN, then read until the client's
      }
    }
    if (!failed) break;
  }
  if (state_ == State::Tunnel) checkTunnelDone();
  if (state_ == State::Lingering && clientEof_ && pendingOutput(kClient) == 0) {
    close(closeReason_);
  }
  for (Side s : {kClient, kBackend}) {
    net::Conn& c = conn_[s];
    const net::Scratch& sc = scratch(s);
    if (state_ == State::Closed || !c.isOpen()) {
      dropScratch(sc);
      continue;
    }
    // A reader stopped by a full buffer or the budget gets no new edge: resume it after
    // this loop turn (not within it: the loop polls for other sockets first).
    if (c.readable && mayRead(s)) worker_.resumeLater(this, s);
    c.keepLeftovers(sc);
  }
}

void Session::prepareBatchReads(std::vector<net::IoBatch::Op>& ops,
                                std::vector<BatchOwner>& owners) {
  if (state_ != State::Tunnel) return;
  for (Side s : {kClient, kBackend}) {
    net::Conn& c = conn_[s];
    if (!c.isOpen() || !c.readable || !mayRead(s)) continue;
    // A bulk transfer reads synchronously (readStreaming): its reads are big and few.
    if (c.streaming) continue;
    net::IoBatch::Op op;
    evbuffer_iovec space;
    if (!c.prepareRead(scratch(s), op, space)) continue;
    ops.push_back(op);
    owners.push_back({this, s, space});
  }
}

void Session::completeBatchRead(const BatchOwner& op, ssize_t result) {
  const Side s = op.side;
  net::Conn& c = conn_[s];
  // Closed by what an earlier read of this batch brought: the reserved space goes unused.
  if (!c.isOpen() || state_ != State::Tunnel) return;
  const ssize_t n = c.completeRead(scratch(s), op.space, result);
  if (n > 0) {
    onInput(s);
    return;
  }
  if (n < 0 && retriable(errno)) return;
  onEof(s, n < 0);
}

void Session::prepareBatchWrites(std::vector<net::IoBatch::Op>& ops,
                                 std::vector<BatchOwner>& owners) {
  if (state_ != State::Tunnel) return;
  for (Side s : {kClient, kBackend}) {
    net::Conn& c = conn_[s];
    if (!c.isOpen() || c.connecting || c.blocked) continue;
    net::IoBatch::Op op;
    if (!c.prepareWrite(scratch(s), finFollows(s), op)) continue;
    ops.push_back(op);
    owners.push_back({this, s, {}});
  }
}

void Session::readStreaming() {
  for (Side s : {kClient, kBackend}) {
    if (state_ == State::Tunnel && conn_[s].streaming && conn_[s].readable) readSide(s);
  }
}

void Session::completeBatchWrite(const BatchOwner& op, ssize_t result) {
  net::Conn& c = conn_[op.side];
  if (!c.isOpen() || state_ == State::Closed) return;
  c.completeWrite(scratch(op.side), result);
}

}  // namespace wsgate::proxy
