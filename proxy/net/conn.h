#pragma once
// The transport under a session: one socket, its edge-triggered event, and its reads and
// writes. A Conn moves bytes between the socket and buffers; what the bytes mean is the
// session's business. It reads until a short read into the worker's scratch buffers and
// writes once per turn; only leftovers move into buffers of its own, freed once empty, so
// an idle connection holds no buffer.
//
// With TLS (startTls) the Conn still moves only bytes: the socket's bytes are ciphertext,
// decrypted into the input after each read and encrypted from the output before each
// write by a tls::Stream over the Conn's buffers (no SSL_read on the fd). io_uring
// batching, the short-read rule and MSG_MORE+FIN work the same on both paths.
//
// Every call is a plain member call (no virtual dispatch on the data path).

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/net/errors.h"
#include "proxy/net/io_batch.h"
#include "proxy/tls/stream.h"

namespace wsgate::net {

// The worker's scratch buffers lent to one side of a session for one turn: bytes read are
// appended to `in`, bytes to write are queued on `out`; a TLS connection's ciphertext goes
// through `rawIn` and `rawOut`. Empty between two turns.
struct Scratch {
  evbuffer* in;
  evbuffer* out;
  evbuffer* rawIn;
  evbuffer* rawOut;
};

class Conn {
public:
  // The least space a read offers the socket (libevent often offers the rest of its block,
  // up to 32 KiB); a read shorter than what was offered means the socket had no more.
  static constexpr std::size_t kReadSize = 16 * 1024;

  Conn();
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Takes `fd` and adds its one event (EV_READ | EV_WRITE | EV_CLOSED | EV_ET |
  // EV_PERSIST), kept for the socket's whole life: no epoll_ctl per request or message.
  void open(event_base* base, evutil_socket_t fd, event_callback_fn cb, void* arg);
  // Deletes the event, closes the socket and frees the buffered bytes (idempotent; the
  // buffers and TLS state go even when no socket was ever opened). With
  // TLS, first sends (best effort) the records OpenSSL queued, then close_notify. `s`: the
  // scratch buffers of the turn, if one is running.
  void close(const Scratch* s = nullptr);
  bool isOpen() const { return fd_ >= 0; }
  evutil_socket_t fd() const { return fd_; }

  // Puts TLS between the socket and the buffers (before any byte went through).
  void startTls(tls::SslPtr ssl);
  // TLS from here on, after bytes were read in the clear (a PROXY header ahead of the
  // ClientHello): what input(s) still holds is ciphertext, decrypted now. False (errno
  // EPROTO) when it does not decrypt.
  bool startTlsAfterReading(tls::SslPtr ssl, const Scratch& s);
  // Queues bytes for the socket ahead of whatever TLS makes of the output (a PROXY header
  // before the ClientHello): after startTls, before any byte went out.
  void queueRaw(const Scratch& s, std::string_view bytes);
  bool isTls() const { return tls_ != nullptr; }
  const tls::Stream* tls() const;
  // Why the TLS layer failed (a read or write returned -1 with errno EPROTO).
  const std::string& tlsError() const;
  // An idle TLS connection gives OpenSSL's record buffers back (~33 KB).
  void releaseIdleBuffers();

  // Where input is read to / output is queued this turn: the Conn's own buffer when it
  // holds leftovers, else the scratch buffer.
  evbuffer* input(const Scratch& s) const { return in_ != nullptr ? in_ : s.in; }
  evbuffer* output(const Scratch& s) const { return out_ != nullptr ? out_ : s.out; }
  // Bytes queued for the socket that it has not taken yet (plaintext not yet encrypted and
  // ciphertext not yet written: both count against the buffer limits).
  std::size_t pendingOutput(const Scratch& s) const {
    return evbuffer_get_length(output(s)) + (tls_ ? pendingCiphertext(s) : 0);
  }

  // What an event says: a new edge to read, the peer's FIN queued, room to write again.
  void noteEvent(short what);

  // One read into input(s), with the short-read rule: a read shorter than the space it
  // offered emptied the socket (clears `readable`), unless the FIN is queued behind it.
  // Returns what read(2) returns (errno set on -1); `readable` is cleared on 0 or -1.
  ssize_t read(const Scratch& s);
  // One write of output(s) (send for one chain, sendmsg over up to 64). `finFollows`: the
  // caller sends a FIN once this is all written; MSG_MORE lets it ride on the last
  // segment. Returns what send(2) returns; a retriable failure sets `blocked`.
  ssize_t write(const Scratch& s, bool finFollows);
  // A connect in progress: sends the first queued bytes (a send succeeds only on an
  // established connection, and a failed connect reports its error through it: no
  // getsockopt). Returns 1 connected, 0 still connecting, -1 failed (errno set).
  int tryConnected(const Scratch& s);
  // SHUT_WR, once.
  void shutdownWrite();

  // The batched turn (Worker::flushBatch): one operation per side into the worker's
  // io_uring batch, its result reported back. prepare* return false when there is no
  // operation to make.
  bool prepareRead(const Scratch& s, IoBatch::Op& op, evbuffer_iovec& space);
  // Commits a batched read's bytes. Returns the result as read() would.
  ssize_t completeRead(const Scratch& s, evbuffer_iovec space, ssize_t result);
  bool prepareWrite(const Scratch& s, bool finFollows, IoBatch::Op& op);
  void completeWrite(const Scratch& s, ssize_t result);

  // End of a turn: what the scratch buffers still hold moves into the Conn's own buffers
  // (allocated on demand), and own buffers that are empty are freed.
  void keepLeftovers(const Scratch& s);
  // Drops every byte queued for the socket (the peer is gone).
  void dropOutput(const Scratch& s);

  // Socket state, read and set by the session's turn logic.
  bool readable : 1 = false;    // an edge came that was not read down to a short read yet
  bool finQueued : 1 = false;   // EPOLLRDHUP seen: the peer's FIN waits behind its data
  bool connecting : 1 = false;  // a backend connect in progress: no byte went through yet
  bool shutWr : 1 = false;      // SHUT_WR sent
  bool blocked : 1 = false;     // a send met EAGAIN: nothing more until EV_WRITE says so
  bool streaming : 1 = false;   // a bulk transfer: reads fill their buffers

private:
  // Keeps what `scratch` still holds in the buffer `own` (allocated on demand), and frees
  // `own` once it is empty: between turns an idle connection holds no buffer.
  static void keepIn(evbuffer* scratch, evbuffer*& own) {
    if (own == nullptr && evbuffer_get_length(scratch) > 0) {
      own = evbuffer_new();
      evbuffer_add_buffer(own, scratch);
    }
    if (own != nullptr && evbuffer_get_length(own) == 0) {
      evbuffer_free(own);
      own = nullptr;
    }
  }
  bool tlsPeerClosed() const;
  void keepTlsLeftovers(const Scratch& s);
  std::size_t pendingCiphertext(const Scratch& s) const;
  evbuffer* rawInput(const Scratch& s) const;
  evbuffer* rawOutput(const Scratch& s) const;
  // TLS at close: pending records (an alert, a ticket), then close_notify, best effort.
  void flushTlsAtClose(const Scratch* s);
  // TLS: decrypts what a read brought; false (errno EPROTO) when the stream failed.
  bool afterRead(const Scratch& s);
  // TLS: encrypts the output (and close_notify when a FIN follows); false on failure.
  bool beforeWrite(const Scratch& s, bool finFollows);
  // Where the socket's bytes go and come from: ciphertext buffers with TLS.
  evbuffer* socketInput(const Scratch& s) const { return tls_ ? rawInput(s) : input(s); }
  evbuffer* socketOutput(const Scratch& s) const { return tls_ ? rawOutput(s) : output(s); }

  evutil_socket_t fd_ = -1;  // -1: not open (or closed); otherwise `ev_` is added
  event ev_{};
  evbuffer* in_ = nullptr;   // input kept between turns (null: none)
  evbuffer* out_ = nullptr;  // output the socket has not taken yet (null: none)
  // TLS only, behind one pointer so that a plain connection does not grow.
  struct Tls;
  std::unique_ptr<Tls> tls_;
};

// The batch hooks and the end of a turn run for every relayed message: defined here so
// they inline into the session's turn; the TLS work they may call stays out of line.

inline bool Conn::prepareRead(const Scratch& s, IoBatch::Op& op, evbuffer_iovec& space) {
  // A close_notify already seen: the end is reported by a synchronous read.
  if (tls_ && tlsPeerClosed()) return false;
  if (evbuffer_reserve_space(socketInput(s), kReadSize, &space, 1) != 1) return false;
  op = {.fd = fd_, .data = space.iov_base, .size = space.iov_len};
  return true;
}

inline ssize_t Conn::completeRead(const Scratch& s, evbuffer_iovec space, ssize_t result) {
  if (result > 0) {
    const std::size_t reserved = space.iov_len;
    space.iov_len = static_cast<std::size_t>(result);
    evbuffer_commit_space(socketInput(s), &space, 1);
    // One read per side per batch. A full one means a bulk transfer: the side stays
    // readable and is read synchronously, up to the per-turn budget.
    streaming = static_cast<std::size_t>(result) == reserved;
    if (!streaming && !finQueued) readable = false;
    if (tls_) {
      if (!afterRead(s)) {
        readable = streaming = false;
        return -1;
      }
      // A close_notify: the synchronous read (readStreaming) reports the end.
      if (tlsPeerClosed()) streaming = true;
    }
    return result;
  }
  readable = false;
  streaming = false;
  if (result < 0) errno = static_cast<int>(-result);
  return result < 0 ? -1 : 0;
}

inline bool Conn::prepareWrite(const Scratch& s, bool finFollows, IoBatch::Op& op) {
  // A TLS failure is met again, and handled, by the end of the turn's own write.
  if (tls_ && !beforeWrite(s, finFollows)) return false;
  evbuffer* o = socketOutput(s);
  evbuffer_iovec chain;  // the first chain; the end of the turn writes any others
  if (evbuffer_peek(o, -1, nullptr, &chain, 1) < 1) return false;
  const bool last = chain.iov_len == evbuffer_get_length(o);
  const int flags = MSG_NOSIGNAL | (!last || finFollows ? MSG_MORE : 0);
  op = {.fd = fd_, .write = true, .flags = flags, .data = chain.iov_base, .size = chain.iov_len};
  return true;
}

inline void Conn::completeWrite(const Scratch& s, ssize_t result) {
  if (result > 0) {
    evbuffer_drain(socketOutput(s), static_cast<std::size_t>(result));
  } else if (result < 0 && retriable(static_cast<int>(-result))) {
    blocked = true;
  }
  // An error is met again, and handled, by the end of the turn's own write.
}

inline void Conn::keepLeftovers(const Scratch& s) {
  keepIn(s.in, in_);
  keepIn(s.out, out_);
  if (tls_) keepTlsLeftovers(s);
}

}  // namespace wsgate::net
