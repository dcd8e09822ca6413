#include "proxy/net/conn.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>

#include "proxy/net/errors.h"
#include "proxy/net/handles.h"

namespace wsgate::net {
namespace {

// Reads from `fd` straight into `buf` (no FIONREAD first, unlike evbuffer_read), into the
// space libevent reserves for at least kReadSize bytes (often more: the rest of its block).
// `offered` is set to that space, so the caller can tell a short read. recv(2) when the
// space is one block, as it nearly always is: cheaper in the kernel than readv(2).
ssize_t readInto(evbuffer* buf, evutil_socket_t fd, std::size_t& offered) {
  evbuffer_iovec space[2];
  const int n = evbuffer_reserve_space(buf, Conn::kReadSize, space, 2);
  if (n <= 0) {
    errno = ENOMEM;
    return -1;
  }
  ssize_t got;
  if (n == 1) {
    offered = space[0].iov_len;
    got = recv(fd, space[0].iov_base, space[0].iov_len, 0);
  } else {
    iovec iov[2];
    offered = 0;
    for (int i = 0; i < n; ++i) {
      iov[i] = {space[i].iov_base, space[i].iov_len};
      offered += space[i].iov_len;
    }
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
ssize_t writeFrom(evbuffer* buf, evutil_socket_t fd, int flags) {
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

void dropAll(evbuffer* b) { evbuffer_drain(b, len(b)); }

const std::string kNoError;

}  // namespace

struct Conn::Tls {
  explicit Tls(tls::SslPtr ssl) : stream(std::move(ssl)) {}
  ~Tls() {
    if (rawIn != nullptr) evbuffer_free(rawIn);
    if (rawOut != nullptr) evbuffer_free(rawOut);
  }
  tls::Stream stream;
  evbuffer* rawIn = nullptr;   // a partial record kept between reads (null: none)
  evbuffer* rawOut = nullptr;  // ciphertext the socket has not taken yet (null: none)
  bool peerClosed = false;     // close_notify came: the next read reports the end
  bool failed = false;
};

Conn::Conn() = default;

Conn::~Conn() { close(); }

void Conn::startTls(tls::SslPtr ssl) { tls_ = std::make_unique<Tls>(std::move(ssl)); }

bool Conn::startTlsAfterReading(tls::SslPtr ssl, const Scratch& s) {
  tls_ = std::make_unique<Tls>(std::move(ssl));
  evbuffer_add_buffer(rawInput(s), input(s));
  if (afterRead(s)) return true;
  readable = false;
  return false;
}

void Conn::queueRaw(const Scratch& s, std::string_view bytes) {
  evbuffer_add(socketOutput(s), bytes.data(), bytes.size());
}

const tls::Stream* Conn::tls() const { return tls_ ? &tls_->stream : nullptr; }

const std::string& Conn::tlsError() const { return tls_ ? tls_->stream.error() : kNoError; }

void Conn::flushTlsAtClose(const Scratch* s) {
  // Records OpenSSL queued and the socket has not taken (its alert after a failed
  // handshake, the session ticket right after one when the client closes at once), then
  // close_notify ahead of the FIN when no write carried it already. One send each, best
  // effort: the socket closes either way; close_notify never goes behind ciphertext that
  // was not written.
  evbuffer* raw = tls_->rawOut != nullptr ? tls_->rawOut : (s != nullptr ? s->rawOut : nullptr);
  if (raw != nullptr && len(raw) > 0) {
    writeFrom(raw, fd_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (len(raw) > 0) return;
  }
  if (tls_->failed || !tls_->stream.handshakeDone() || shutWr) return;
  evbuffer* notify = evbuffer_new();
  tls_->stream.shutdown(notify);
  if (len(notify) > 0) writeFrom(notify, fd_, MSG_NOSIGNAL | MSG_DONTWAIT);
  evbuffer_free(notify);
}

void Conn::releaseIdleBuffers() {
  if (tls_) tls_->stream.releaseBuffers();
}

evbuffer* Conn::rawInput(const Scratch& s) const {
  return tls_->rawIn != nullptr ? tls_->rawIn : s.rawIn;
}

evbuffer* Conn::rawOutput(const Scratch& s) const {
  return tls_->rawOut != nullptr ? tls_->rawOut : s.rawOut;
}

bool Conn::afterRead(const Scratch& s) {
  switch (tls_->stream.decrypt(rawInput(s), input(s), rawOutput(s))) {
    case tls::Stream::Status::Ok:
      return true;
    case tls::Stream::Status::Closed:
      // The plaintext before it is delivered now; the end is reported by the next read.
      tls_->peerClosed = true;
      readable = true;
      return true;
    case tls::Stream::Status::Failed:
      break;
  }
  tls_->failed = true;
  errno = EPROTO;
  return false;
}

bool Conn::beforeWrite(const Scratch& s, bool finFollows) {
  evbuffer* plain = output(s);
  if (tls_->stream.encrypt(plain, rawOutput(s)) == tls::Stream::Status::Failed) {
    tls_->failed = true;
    errno = EPROTO;
    return false;
  }
  // close_notify goes out ahead of the FIN, in the same segment.
  if (finFollows && len(plain) == 0) tls_->stream.shutdown(rawOutput(s));
  return true;
}

void Conn::open(event_base* base, evutil_socket_t fd, event_callback_fn cb, void* arg) {
  close();
  readable = finQueued = connecting = shutWr = blocked = streaming = false;
  fd_ = fd;
  // epoll reports the socket's current state when it is added: no read is tried before
  // the first edge.
  event_assign(&ev_, base, fd, EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, cb, arg);
  event_add(&ev_, nullptr);
}

void Conn::close(const Scratch* s) {
  if (fd_ >= 0) {  // else closed already (or never opened): only buffers may be left
    if (tls_) flushTlsAtClose(s);
    event_del(&ev_);
    evutil_closesocket(fd_);
    fd_ = -1;
  }
  readable = false;
  connecting = false;
  if (in_ != nullptr) evbuffer_free(in_);
  if (out_ != nullptr) evbuffer_free(out_);
  in_ = out_ = nullptr;
  tls_.reset();
}

std::size_t Conn::pendingCiphertext(const Scratch& s) const { return len(rawOutput(s)); }

void Conn::noteEvent(short what) {
  // EV_CLOSED (EPOLLRDHUP): the peer's FIN is queued. A short read no longer proves the
  // socket empty then (the FIN may sit behind the data just read): read on to the end.
  if (what & EV_CLOSED) finQueued = true;
  if (what & (EV_READ | EV_CLOSED)) readable = true;
  if (what & EV_WRITE) blocked = false;
}

ssize_t Conn::read(const Scratch& s) {
  if (tls_ && tls_->peerClosed) {
    readable = false;
    return 0;
  }
  std::size_t offered = 0;
  const ssize_t n = readInto(socketInput(s), fd_, offered);
  if (n > 0) {
    // A read shorter than the space offered emptied the socket: the next bytes bring a new
    // edge. Not so when the FIN is already queued: its edge came with these bytes, so read
    // on to the end.
    if (static_cast<std::size_t>(n) < offered && !finQueued) readable = false;
    if (tls_ && !afterRead(s)) {
      readable = false;
      return -1;
    }
  } else {
    readable = false;
  }
  return n;
}

ssize_t Conn::write(const Scratch& s, bool finFollows) {
  if (tls_ && !beforeWrite(s, finFollows)) return -1;
  const ssize_t put = writeFrom(socketOutput(s), fd_, MSG_NOSIGNAL | (finFollows ? MSG_MORE : 0));
  if (put < 0 && retriable(errno)) blocked = true;  // the EV_WRITE edge says when to go on
  return put;
}

int Conn::tryConnected(const Scratch& s) {
  // With TLS the first bytes are the ClientHello; the request waits for the handshake.
  if (tls_ && !beforeWrite(s, false)) return -1;
  evbuffer* o = socketOutput(s);
  evbuffer_iovec chain;
  ssize_t put = 0;
  if (evbuffer_peek(o, -1, nullptr, &chain, 1) > 0) {
    put = send(fd_, chain.iov_base, chain.iov_len, MSG_NOSIGNAL);
  }
  if (put < 0) return retriable(errno) ? 0 : -1;     // still connecting: its event will say
  evbuffer_drain(o, static_cast<std::size_t>(put));  // the end of the turn writes the rest
  connecting = false;
  return 1;
}

void Conn::shutdownWrite() {
  if (fd_ < 0 || shutWr) return;
  shutWr = true;
  if (tls_ && !tls_->failed && tls_->stream.handshakeDone()) {
    // close_notify ahead of the FIN, when the last write did not carry it already (then
    // shutdown() adds nothing). Called only once every byte queued has been written.
    evbuffer* notify = evbuffer_new();
    tls_->stream.shutdown(notify);
    if (len(notify) > 0) writeFrom(notify, fd_, MSG_NOSIGNAL | MSG_DONTWAIT);
    evbuffer_free(notify);
  }
  shutdown(fd_, SHUT_WR);
}

bool Conn::tlsPeerClosed() const { return tls_->peerClosed; }

void Conn::keepTlsLeftovers(const Scratch& s) {
  keepIn(s.rawIn, tls_->rawIn);
  keepIn(s.rawOut, tls_->rawOut);
}

void Conn::dropOutput(const Scratch& s) {
  dropAll(output(s));
  if (tls_) dropAll(rawOutput(s));
}

}  // namespace wsgate::net
