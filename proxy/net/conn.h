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
#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>

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
  // Deletes the event, closes the socket and frees the buffered bytes (idempotent). With
  // TLS, first sends (best effort) the records OpenSSL queued, then close_notify. `s`: the
  // scratch buffers of the turn, if one is running.
  void close(const Scratch* s = nullptr);
  bool isOpen() const { return fd_ >= 0; }
  evutil_socket_t fd() const { return fd_; }

  // Puts TLS between the socket and the buffers (before any byte went through).
  void startTls(tls::SslPtr ssl);
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

}  // namespace wsgate::net
