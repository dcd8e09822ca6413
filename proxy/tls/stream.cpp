#include "proxy/tls/stream.h"

#include <openssl/err.h>

#include <algorithm>

namespace wsgate::tls {
namespace {

// The largest plaintext per SSL_write: one full TLS record.
constexpr std::size_t kMaxRecord = 16 * 1024;

std::size_t len(evbuffer* b) { return b == nullptr ? 0 : evbuffer_get_length(b); }

// The BIO under every Stream: reads take ciphertext from the stream's input buffer, writes
// append to its output buffer. Both never block: an empty input asks OpenSSL to retry.
int bioRead(BIO* bio, char* data, int size) {
  auto* s = static_cast<Stream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  evbuffer* in = s->bioIn();
  if (in == nullptr || evbuffer_get_length(in) == 0 || size <= 0) {
    BIO_set_retry_read(bio);
    return -1;
  }
  return evbuffer_remove(in, data, static_cast<std::size_t>(size));
}

int bioWrite(BIO* bio, const char* data, int size) {
  auto* s = static_cast<Stream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  evbuffer* out = s->bioOut();
  if (out == nullptr || evbuffer_add(out, data, static_cast<std::size_t>(size)) != 0) {
    BIO_set_retry_write(bio);
    return -1;
  }
  return size;
}

long bioCtrl(BIO*, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:  // the transport writes at the end of its turn
      return 1;
    default:
      return 0;
  }
}

int bioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* bufferBioMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "wsgate buffers");
    BIO_meth_set_read(m, bioRead);
    BIO_meth_set_write(m, bioWrite);
    BIO_meth_set_ctrl(m, bioCtrl);
    BIO_meth_set_create(m, bioCreate);
    return m;
  }();
  return method;
}

// Sets the BIO's buffers for one call and clears them after, so a stale pointer into a
// worker's scratch buffer never outlives the turn.
struct BindBuffers {
  BindBuffers(evbuffer*& in, evbuffer*& out, evbuffer* newIn, evbuffer* newOut)
      : in_(in), out_(out) {
    in_ = newIn;
    out_ = newOut;
  }
  ~BindBuffers() { in_ = out_ = nullptr; }
  evbuffer*& in_;
  evbuffer*& out_;
};

}  // namespace

Stream::Stream(SslPtr ssl) : ssl_(std::move(ssl)) {
  BIO* bio = BIO_new(bufferBioMethod());
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_.get(), bio, bio);  // one reference, owned by the SSL
}

Stream::~Stream() = default;

Stream::Status Stream::fail() {
  if (error_.empty()) {
    const long verify = SSL_get_verify_result(ssl_.get());
    const unsigned long e = ERR_peek_last_error();
    if (verify != X509_V_OK && !SSL_is_server(ssl_.get())) {
      error_ = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
    } else if (e != 0) {
      const char* reason = ERR_reason_error_string(e);
      error_ = reason != nullptr ? reason : "TLS error";
    } else {
      error_ = "TLS error";
    }
  }
  ERR_clear_error();
  return Status::Failed;
}

bool Stream::advanceHandshake() {
  const int r = SSL_do_handshake(ssl_.get());
  if (r == 1) {
    handshakeDone_ = true;
    return true;
  }
  const int err = SSL_get_error(ssl_.get(), r);
  return err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE;
}

Stream::Status Stream::decrypt(evbuffer* cipherIn, evbuffer* plainOut, evbuffer* cipherOut) {
  BindBuffers bind(bioIn_, bioOut_, cipherIn, cipherOut);
  if (!handshakeDone_) {
    if (!advanceHandshake()) return fail();
    if (!handshakeDone_) return Status::Ok;
  }
  // Plaintext is never longer than the ciphertext it came from, so the space reserved
  // follows what arrived (a 64-byte message reserves a small block, not 16 KiB).
  while (len(cipherIn) > 0 || SSL_pending(ssl_.get()) > 0) {
    const std::size_t want = std::min(
        kMaxRecord, std::max(len(cipherIn), static_cast<std::size_t>(SSL_pending(ssl_.get()))));
    evbuffer_iovec space;
    if (evbuffer_reserve_space(plainOut, want, &space, 1) != 1) return fail();
    std::size_t got = 0;
    const int r = SSL_read_ex(ssl_.get(), space.iov_base, space.iov_len, &got);
    if (r == 1) {
      space.iov_len = got;
      evbuffer_commit_space(plainOut, &space, 1);
      continue;
    }
    switch (SSL_get_error(ssl_.get(), r)) {
      case SSL_ERROR_WANT_READ:  // a partial record: the rest comes with the next read
      case SSL_ERROR_WANT_WRITE:
        return Status::Ok;
      case SSL_ERROR_ZERO_RETURN:
        return Status::Closed;
      default:
        return fail();
    }
  }
  return Status::Ok;
}

Stream::Status Stream::encrypt(evbuffer* plainIn, evbuffer* cipherOut) {
  BindBuffers bind(bioIn_, bioOut_, nullptr, cipherOut);
  if (!handshakeDone_) {
    if (!advanceHandshake()) return fail();
    if (!handshakeDone_) return Status::Ok;  // the plaintext waits for the handshake
  }
  while (len(plainIn) > 0) {
    evbuffer_iovec chain;
    if (evbuffer_peek(plainIn, -1, nullptr, &chain, 1) < 1) break;
    // Several small chains (frames queued in one turn) go out as one record.
    const std::size_t want = std::min(kMaxRecord, len(plainIn));
    const void* data = chain.iov_base;
    if (chain.iov_len < want) data = evbuffer_pullup(plainIn, static_cast<ssize_t>(want));
    std::size_t written = 0;
    if (SSL_write_ex(ssl_.get(), data, want, &written) != 1) {
      const int err = SSL_get_error(ssl_.get(), 0);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return Status::Ok;
      return fail();
    }
    evbuffer_drain(plainIn, written);
  }
  return Status::Ok;
}

void Stream::shutdown(evbuffer* cipherOut) {
  if (shutdownSent_ || !handshakeDone_) return;
  shutdownSent_ = true;
  BindBuffers bind(bioIn_, bioOut_, nullptr, cipherOut);
  SSL_shutdown(ssl_.get());
  ERR_clear_error();
}

void Stream::releaseBuffers() { SSL_free_buffers(ssl_.get()); }

}  // namespace wsgate::tls
