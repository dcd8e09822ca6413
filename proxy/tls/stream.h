#pragma once
// One TLS connection as a filter between a connection's ciphertext and plaintext buffers.
// It touches no socket: the transport reads ciphertext and hands it to decrypt(), and
// writes what encrypt() leaves in its raw output. OpenSSL reads and writes through a
// custom BIO over those buffers (h2o's pattern), so a small record costs no system call
// of its own and one recv still serves a whole batch of records. Not BIO_s_mem: it keeps
// about 22 KB per BIO after a 16 KiB record; this BIO keeps nothing.

#include <event2/buffer.h>
#include <openssl/ssl.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "proxy/tls/context.h"

namespace wsgate::tls {

class Stream {
public:
  // What a call left the stream in.
  enum class Status : uint8_t {
    Ok,      // go on (the handshake may still need the peer's bytes)
    Closed,  // the peer sent close_notify: no more plaintext will come
    Failed,  // a fatal error (bad record, failed handshake, verification): see error()
  };

  // Takes an SSL set to accept or connect state (ServerContext/ClientContext::newSsl).
  explicit Stream(SslPtr ssl);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Feeds the ciphertext in `cipherIn` (drained as OpenSSL takes it; a partial record
  // stays there for the next call) and appends the plaintext to `plainOut`. Drives the
  // handshake; what OpenSSL must send in answer (handshake messages, tickets, alerts) is
  // appended to `cipherOut`.
  Status decrypt(evbuffer* cipherIn, evbuffer* plainOut, evbuffer* cipherOut);
  // Encrypts `plainIn` into records appended to `cipherOut` (drained as written). Before
  // the handshake is done, it starts or continues it and leaves `plainIn` as it is.
  Status encrypt(evbuffer* plainIn, evbuffer* cipherOut);
  // Appends close_notify to `cipherOut` (once).
  void shutdown(evbuffer* cipherOut);

  bool handshakeDone() const { return handshakeDone_; }
  // Frees OpenSSL's record buffers (an idle connection: ~47 KB -> ~14 KB per SSL). No-op
  // while they hold a partial record.
  void releaseBuffers();
  // Why the stream failed (OpenSSL's reason, or the verification error).
  const std::string& error() const { return error_; }
  SSL* ssl() const { return ssl_.get(); }

  // Used by the BIO.
  evbuffer* bioIn() const { return bioIn_; }
  evbuffer* bioOut() const { return bioOut_; }

private:
  Status fail();
  // SSL_do_handshake until it needs the peer: false on a fatal error.
  bool advanceHandshake();

  SslPtr ssl_;
  evbuffer* bioIn_ = nullptr;  // set for the duration of a call
  evbuffer* bioOut_ = nullptr;
  bool handshakeDone_ = false;
  bool shutdownSent_ = false;
  std::string error_;
};

}  // namespace wsgate::tls
