// A Session's socket I/O, shared by its HTTP and tunnel phases: one edge-triggered event
// per socket added once, reads until a short read into the worker's scratch buffers, one
// write per side per turn, and only leftovers kept in buffers of the session's own.

#include <event2/buffer.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>

#include "proxy/net/errors.h"
#include "proxy/session.h"
#include "proxy/session_tunnel.h"
#include "proxy/worker.h"

namespace wsgate::proxy {
namespace {

using net::len;

using net::retriable;

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
// `finFollows`: the caller sends a FIN (shutdown or close) once this is all written;
// MSG_MORE holds the last segment back so that the FIN rides on it (one segment, one
// wake-up of the peer, instead of two).
ssize_t writeFrom(evbuffer* buf, evutil_socket_t fd, bool finFollows) {
  const int flags = MSG_NOSIGNAL | (finFollows ? MSG_MORE : 0);
  constexpr int kMaxChains = 64;
  evbuffer_iovec chains[kMaxChains];
  const int n = std::min(evbuffer_peek(buf, -1, nullptr, chains, kMaxChains), kMaxChains);
  if (n <= 0) return 0;
  ssize_t put;
  if (n == 1) {
    put = send(fd, chains[0].iov_base, chains[0].iov_len, flags);
  } else {
    iovec iov[kMaxChains];
    for (int i = 0; i < n; ++i) iov[i] = {chains[i].iov_base, chains[i].iov_len};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<std::size_t>(n);
    put = sendmsg(fd, &msg, flags);
  }
  if (put > 0) evbuffer_drain(buf, static_cast<std::size_t>(put));
  return put;
}

// Keeps what `scratch` still holds in the session's own buffer `own` (allocated on
// demand), and frees `own` once it is empty: between callbacks an idle connection holds no
// buffer.
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

void dropAll(evbuffer* b) { evbuffer_drain(b, len(b)); }

}  // namespace

void Session::onIoCb(evutil_socket_t fd, short what, void* self) noexcept {
  auto* s = static_cast<Session*>(self);
  s->onEvent(fd == s->conn_[kClient].fd ? kClient : kBackend, what);
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
  Conn& c = conn_[side];
  c = Conn{};
  c.fd = fd;
  // epoll reports the socket's current state when it is added: no read is tried before
  // the first edge.
  event_assign(&c.ev, worker_.base(), fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST,
               &Session::onIoCb, this);
  event_add(&c.ev, nullptr);
}

void Session::closeConn(Side side) {
  Conn& c = conn_[side];
  if (c.fd < 0) return;  // closed already (or never opened)
  event_del(&c.ev);
  evutil_closesocket(c.fd);
  c.fd = -1;
  c.readable = false;
  c.connecting = false;
  if (c.in != nullptr) evbuffer_free(c.in);
  if (c.out != nullptr) evbuffer_free(c.out);
  c.in = c.out = nullptr;
  // This side's bytes in the worker's scratch buffers (this session's turn) go with it.
  dropAll(worker_.scratchIn(slot_, side));
  dropAll(worker_.scratchOut(slot_, side));
  if (tunnel_) tunnel_->eof[side] = true;
}

evbuffer* Session::input(Side s) const {
  evbuffer* own = conn_[s].in;
  return own != nullptr ? own : worker_.scratchIn(slot_, s);
}

evbuffer* Session::output(Side s) const {
  evbuffer* own = conn_[s].out;
  return own != nullptr ? own : worker_.scratchOut(slot_, s);
}

void Session::noteEvent(Side side, short what) {
  Conn& c = conn_[side];
  // EV_CLOSED (EPOLLRDHUP): the peer's FIN is queued. A short read no longer proves the
  // socket empty then (the FIN may sit behind the data just read): read on to the end.
  if (what & EV_CLOSED) c.finQueued = true;
  if (what & (EV_READ | EV_CLOSED)) c.readable = true;
  if (what & EV_WRITE) c.blocked = false;
}

void Session::onIo(Side side, short what) {
  Conn& c = conn_[side];
  if (c.fd < 0 || state_ == State::Closed) return;
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
  Conn& c = conn_[side];
  std::size_t budget = kReadBudget;
  // Whatever ends the loop, a side left readable has more than a batch read would take.
  struct MarkStreaming {
    Conn& c;
    ~MarkStreaming() { c.streaming = c.readable && c.fd >= 0; }
  } mark{c};
  // Over the budget the rest waits for the next loop turn (endTurn resumes it), after
  // other connections.
  while (budget > 0 && c.fd >= 0 && c.readable && mayRead(side)) {
    const ssize_t n = readInto(input(side), c.fd);
    if (n > 0) {
      // A short read emptied the socket: the next bytes bring a new edge. Not so when the
      // FIN is already queued: its edge came with these bytes, so read on to the end.
      if (static_cast<std::size_t>(n) < kReadSize && !c.finQueued) c.readable = false;
      budget -= std::min(budget, static_cast<std::size_t>(n));
      onInput(side);
      continue;
    }
    c.readable = false;
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
      return !tunnel_->eof[side] && len(output(other(side))) < limits.maxBufferBytes;
    case State::Closed:
      return false;
    case State::Lingering:
      return side == kClient && !clientEof_;  // read and drop until the client's FIN
    default:
      break;
  }
  if (side == kClient ? clientEof_ : backendEof_) return false;
  // What waits unread is capped: pipelined requests, a body the backend is not taking yet.
  const std::size_t cap = std::max(limits.maxBufferBytes, limits.maxHeaderBytes + 1);
  if (len(input(side)) >= cap) return false;
  if (side == kClient) {
    return !(inExchange_ && !ex_.requestDone && conn_[kBackend].fd >= 0 &&
             len(output(kBackend)) >= limits.maxBufferBytes);
  }
  return !(state_ == State::RelayingResponse && len(output(kClient)) >= limits.maxBufferBytes);
}

void Session::onEof(Side side, bool reset) {
  if (state_ == State::Tunnel) {
    (side == kClient ? clientEof_ : backendEof_) = true;
    onTunnelEof(side, reset);
  } else if (side == kClient) {
    onClientEof(reset);
  } else {
    onBackendEof(reset);
  }
}

void Session::shutdownWrite(Side side) {
  Conn& c = conn_[side];
  if (c.fd < 0 || c.shutWr) return;
  c.shutWr = true;
  shutdown(c.fd, SHUT_WR);
}

bool Session::finFollows(Side side) const {
  if (state_ == State::Lingering) return side == kClient;
  if (state_ != State::Tunnel) return false;
  // Both closes through: checkTunnelDone closes or shuts down both sockets once both
  // outputs are written; if the other side's output still waits, the FIN would not follow
  // this write at once, and corked bytes would wait for it.
  if (tunnel_->finPending[side]) return true;
  return tunnel_->bothDone() && len(output(other(side))) == 0;
}

void Session::endTurn() {
  // A failed write can queue a Close toward the other side: go round again for it.
  for (int round = 0; round < 2 && state_ != State::Closed; ++round) {
    bool failed = false;
    for (Side s : {kClient, kBackend}) {
      if (state_ == State::Closed) break;
      Conn& c = conn_[s];
      evbuffer* o = output(s);
      if (c.fd < 0) {  // closed already: nothing reaches it
        dropAll(o);
        continue;
      }
      if (c.connecting) continue;  // tryConnected writes the first bytes
      if (len(o) > 0 && !c.blocked && writeFrom(o, c.fd, finFollows(s)) < 0) {
        if (retriable(errno)) {
          c.blocked = true;  // the EV_WRITE edge says when it takes bytes again
        } else {
          dropAll(o);  // the peer is gone: nothing more reaches it
          if (state_ != State::Tunnel || !tunnel_->eof[s]) {
            failed = true;
            onEof(s, true);
          }
          continue;
        }
      }
      if (len(o) != 0) continue;
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
  if (state_ == State::Lingering && clientEof_ && len(output(kClient)) == 0) close(closeReason_);
  for (Side s : {kClient, kBackend}) {
    Conn& c = conn_[s];
    if (state_ == State::Closed || c.fd < 0) {
      dropAll(worker_.scratchIn(slot_, s));
      dropAll(worker_.scratchOut(slot_, s));
      continue;
    }
    // A reader stopped by a full buffer or the budget gets no new edge: resume it after
    // this loop turn (not within it: the loop polls for other sockets first).
    if (c.readable && mayRead(s)) worker_.resumeLater(this, s);
    keepLeftovers(worker_.scratchIn(slot_, s), c.in);
    keepLeftovers(worker_.scratchOut(slot_, s), c.out);
  }
}

void Session::prepareBatchReads(std::vector<net::IoBatch::Op>& ops,
                                std::vector<BatchOwner>& owners) {
  if (state_ != State::Tunnel) return;
  for (Side s : {kClient, kBackend}) {
    Conn& c = conn_[s];
    if (c.fd < 0 || !c.readable || !mayRead(s)) continue;
    // A bulk transfer reads synchronously (readStreaming): its reads are big and few.
    if (c.streaming) continue;
    evbuffer_iovec space;
    if (evbuffer_reserve_space(input(s), kReadSize, &space, 1) != 1) continue;
    ops.push_back({.fd = c.fd, .data = space.iov_base, .size = space.iov_len});
    owners.push_back({this, s, space});
  }
}

void Session::completeBatchRead(const BatchOwner& op, ssize_t result) {
  const Side s = op.side;
  evbuffer_iovec space = op.space;
  Conn& c = conn_[s];
  // Closed by what an earlier read of this batch brought: the reserved space goes unused.
  if (c.fd < 0 || state_ != State::Tunnel) return;
  if (result > 0) {
    space.iov_len = static_cast<std::size_t>(result);
    evbuffer_commit_space(input(s), &space, 1);
    // One read per side per batch. A full one means a bulk transfer: the side stays
    // readable and is read synchronously, up to the per-turn budget (readStreaming).
    c.streaming = static_cast<std::size_t>(result) == op.space.iov_len;
    if (!c.streaming && !c.finQueued) c.readable = false;
    onInput(s);
    return;
  }
  c.readable = false;
  c.streaming = false;
  if (result < 0 && retriable(static_cast<int>(-result))) return;
  onEof(s, result < 0);
}

void Session::prepareBatchWrites(std::vector<net::IoBatch::Op>& ops,
                                 std::vector<BatchOwner>& owners) {
  if (state_ != State::Tunnel) return;
  for (Side s : {kClient, kBackend}) {
    Conn& c = conn_[s];
    evbuffer* o = output(s);
    if (c.fd < 0 || c.connecting || c.blocked || len(o) == 0) continue;
    evbuffer_iovec chain;  // the first chain; endTurn writes any others
    if (evbuffer_peek(o, -1, nullptr, &chain, 1) < 1) continue;
    const bool last = chain.iov_len == len(o);
    const int flags = MSG_NOSIGNAL | (!last || finFollows(s) ? MSG_MORE : 0);
    ops.push_back(
        {.fd = c.fd, .write = true, .flags = flags, .data = chain.iov_base, .size = chain.iov_len});
    owners.push_back({this, s, {}});
  }
}

void Session::readStreaming() {
  for (Side s : {kClient, kBackend}) {
    if (state_ == State::Tunnel && conn_[s].streaming && conn_[s].readable) readSide(s);
  }
}

void Session::completeBatchWrite(const BatchOwner& op, ssize_t result) {
  const Side s = op.side;
  Conn& c = conn_[s];
  if (c.fd < 0 || state_ == State::Closed) return;
  if (result > 0) {
    evbuffer_drain(output(s), static_cast<std::size_t>(result));
  } else if (result < 0 && retriable(static_cast<int>(-result))) {
    c.blocked = true;
  }
  // An error is met again, and handled, by endTurn's own write.
}

}  // namespace wsgate::proxy
