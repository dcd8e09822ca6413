// The TLS client context (SNI, ALPN http/1.1, the stored ticket) and the TLS transport.

#include "tests/bench/wsload_tls.h"

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace wsgate::bench {

namespace {

// SSL_write takes one buffer: a writev is gathered into this much at most per call.
constexpr std::size_t kGatherBytes = 64 * 1024;

// The oldest error OpenSSL queued on this thread (the cause, not its consequences); clears
// the queue so that the next call starts clean.
std::string takeOpensslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return {};
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

std::string describeKey(const EVP_PKEY* key) {
  if (key == nullptr) return "none";
  const int bits = EVP_PKEY_get_bits(key);
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
    char group[64] = {};
    std::size_t len = 0;
    if (EVP_PKEY_get_group_name(key, group, sizeof group, &len) != 1) return "ECDSA";
    const char* nist = EC_curve_nid2nist(OBJ_sn2nid(group));
    return std::string("ECDSA ") + (nist != nullptr ? nist : group);
  }
  const char* type = EVP_PKEY_get0_type_name(key);
  return std::string(type != nullptr ? type : "?") + " " + std::to_string(bits);
}

class TlsTransport final : public Transport {
public:
  explicit TlsTransport(const TlsClient& client) : client_(client) {}
  ~TlsTransport() override { close(); }
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  // Never Done: the handshake always follows in finishConnect(), which the caller runs once
  // the socket is writable (at once if TCP connected already).
  IoResult connect(const SocketAddress& to) override {
    close();
    error_.clear();
    const IoResult r = connectTcp(to, fd_);
    return r.status == Io::Error ? r : IoResult{Io::WouldBlock, 0, 0, true};
  }

  IoResult finishConnect() override {
    if (!ssl_) {  // the TCP connect ended: start the handshake
      const IoResult tcp = connectOutcome(fd_);
      if (tcp.status != Io::Done) return tcp;
      ssl_ = client_.newSsl();
      if (!ssl_ || SSL_set_fd(ssl_.get(), fd_) != 1) return tlsFailure("cannot set up TLS");
      ticketSeen_ = false;
      SSL_set_app_data(ssl_.get(), &ticketSeen_);  // TlsClient::onNewSession sets it
    }
    ERR_clear_error();
    const int rc = SSL_connect(ssl_.get());
    if (rc == 1) return {};
    return outcome(rc, "handshake");
  }

  IoResult read(char* buf, std::size_t len) override {
    ERR_clear_error();
    std::size_t n = 0;
    const int rc = SSL_read_ex(ssl_.get(), buf, len, &n);
    if (rc == 1) return {Io::Done, n};
    return outcome(rc, "read");
  }

  IoResult writev(const iovec* iov, int count) override {
    // One iovec goes as it is; several are gathered. A write that blocked is retried with the
    // same leading bytes and at least as many (the caller's queue only grows at its tail),
    // which is what SSL_write asks of a retry (ACCEPT_MOVING_WRITE_BUFFER: the copy may move).
    const char* data = static_cast<const char*>(iov[0].iov_base);
    std::size_t len = std::min(iov[0].iov_len, kGatherBytes);
    if (count > 1) {
      thread_local std::vector<char> gather(kGatherBytes);
      len = 0;
      for (int i = 0; i < count && len < kGatherBytes; ++i) {
        const std::size_t take = std::min(iov[i].iov_len, kGatherBytes - len);
        std::memcpy(gather.data() + len, iov[i].iov_base, take);
        len += take;
      }
      data = gather.data();
    }
    ERR_clear_error();
    std::size_t n = 0;
    const int rc = SSL_write_ex(ssl_.get(), data, len, &n);
    if (rc == 1) return {Io::Done, n};
    return outcome(rc, "write");
  }

  void close() noexcept override {
    // No close_notify here: closeNotify() sends one where a caller wants it. SSL_free makes the
    // session of a connection not marked shut down unresumable (the stored ticket too, when
    // resuming), and after reading the server's close_notify OpenSSL 3.0 no longer reports the
    // one we sent: so both are marked here.
    if (ssl_) SSL_set_shutdown(ssl_.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    ssl_.reset();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd() const noexcept override { return fd_; }

  std::string errorText(const IoResult& r) const override {
    if (!error_.empty()) return error_;
    return Transport::errorText(r);
  }

  void closeNotify() noexcept override {
    if (!ssl_) return;
    ERR_clear_error();
    // 0 once ours is sent; the server's comes later, read as Eof. A 24-byte alert does not
    // block on a connection that has sent nothing else.
    SSL_shutdown(ssl_.get());
    ERR_clear_error();
  }

  bool ticketReceived() const noexcept override { return ticketSeen_; }

  bool resumed() const noexcept override { return ssl_ && SSL_session_reused(ssl_.get()) == 1; }

  TlsSummary summary() const override {
    TlsSummary s;
    if (!ssl_) return s;
    s.protocol = SSL_get_version(ssl_.get());
    s.cipher = SSL_get_cipher_name(ssl_.get());
    const int group = SSL_get_negotiated_group(ssl_.get());
    const char* name = group != 0 ? SSL_group_to_name(ssl_.get(), group) : nullptr;
    s.group = name != nullptr ? name : "?";
    const X509* cert = SSL_get0_peer_certificate(ssl_.get());
    s.cert = cert != nullptr ? describeKey(X509_get0_pubkey(cert)) : "none (resumed)";
    return s;
  }

private:
  IoResult tlsFailure(std::string why) {
    error_ = std::move(why);
    if (const std::string detail = takeOpensslError(); !detail.empty()) error_ += ": " + detail;
    return {Io::Error, 0, 0};
  }

  // An SSL_* call that did not succeed: which way to wait, end of stream, or why it failed.
  IoResult outcome(int rc, const char* what) {
    switch (SSL_get_error(ssl_.get(), rc)) {
      case SSL_ERROR_WANT_READ:
        return {Io::WouldBlock};
      case SSL_ERROR_WANT_WRITE:
        return {Io::WouldBlock, 0, 0, true};
      case SSL_ERROR_ZERO_RETURN:  // close_notify, or EOF (SSL_OP_IGNORE_UNEXPECTED_EOF)
        return {Io::Eof};
      case SSL_ERROR_SYSCALL:
        if (errno == 0) return {Io::Eof};
        if (wouldBlock(errno)) return {Io::WouldBlock};
        error_.clear();
        return {Io::Error, 0, errno};
      default:
        return tlsFailure(std::string("tls ") + what);
    }
  }

  const TlsClient& client_;
  int fd_ = -1;
  SslPtr ssl_;
  std::string error_;        // the last TLS failure's text
  bool ticketSeen_ = false;  // a session ticket arrived on this connection
};

}  // namespace

std::shared_ptr<TlsClient> TlsClient::create(TlsClientOptions options, std::string& error) {
  std::shared_ptr<TlsClient> client(new TlsClient(std::move(options)));
  client->ctx_.reset(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* ctx = client->ctx_.get();
  if (ctx == nullptr) {
    error = "cannot set up TLS: " + takeOpensslError();
    return nullptr;
  }
  // A benchmark client: the certificate is not checked (its signature over the handshake
  // still is, as TLS requires). TLS 1.2 and 1.3 allowed, 1.3 preferred: OpenSSL's defaults.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // What a browser offers for a WebSocket connection.
  static constexpr unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn) != 0) {  // 0 is success here
    error = "cannot set up TLS: " + takeOpensslError();
    return nullptr;
  }
  // Tickets reach onNewSession (TLS 1.3 sends them after the handshake, read with the stream);
  // OpenSSL's own client cache stays out of it.
  SSL_CTX_set_app_data(ctx, client.get());
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, &TlsClient::onNewSession);
  return client;
}

int TlsClient::onNewSession(SSL* ssl, SSL_SESSION* session) noexcept {
  if (auto* seen = static_cast<bool*>(SSL_get_app_data(ssl))) *seen = true;
  auto* self = static_cast<TlsClient*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (!self->options_.resume) return 0;  // 0: OpenSSL frees it
  std::lock_guard lock(self->mutex_);
  self->session_.reset(session);  // the newest ticket: key rotation cannot strand us
  return 1;                       // 1: we keep the reference
}

SslPtr TlsClient::newSsl() const {
  SslPtr ssl(SSL_new(ctx_.get()));
  if (!ssl) return nullptr;
  SSL_set_connect_state(ssl.get());
  if (!options_.sni.empty() && SSL_set_tlsext_host_name(ssl.get(), options_.sni.c_str()) != 1) {
    return nullptr;
  }
  if (options_.resume) {
    // A copy: at the end of a resumed TLS 1.3 handshake OpenSSL marks the session it used not
    // resumable ("use tickets once"), and a server that sends no new ticket after resuming
    // (wsgate) would otherwise get every other handshake full.
    SslSessionPtr copy;
    {
      std::lock_guard lock(mutex_);
      if (session_) copy.reset(SSL_SESSION_dup(session_.get()));
    }
    if (copy && SSL_set_session(ssl.get(), copy.get()) != 1) return nullptr;
  }
  return ssl;
}

bool TlsClient::hasSession() const {
  std::lock_guard lock(mutex_);
  return session_ != nullptr;
}

std::string TlsClient::version() const { return OpenSSL_version(OPENSSL_VERSION); }

TransportPtr makeTlsTransport(const TlsClient& client) {
  return std::make_unique<TlsTransport>(client);
}

}  // namespace wsgate::bench
