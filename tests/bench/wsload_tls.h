#pragma once
// wsload's TLS client (wss://): one OpenSSL 3 context per run, shared by every worker, and the
// Transport that runs SSL_connect inside finishConnect() and SSL_read/SSL_write on the socket.
// A benchmark client: the server's certificate is not verified.

#include <openssl/ssl.h>

#include <memory>
#include <mutex>
#include <string>

#include "proxy/net/handles.h"
#include "tests/bench/wsload_net.h"

namespace wsgate::bench {

using SslCtxPtr = std::unique_ptr<SSL_CTX, net::Deleter<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, net::Deleter<SSL_free>>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, net::Deleter<SSL_SESSION_free>>;

struct TlsClientOptions {
  std::string sni;      // server name sent in the ClientHello; empty: none
  bool resume = false;  // offer the latest ticket the server issued (TLS 1.3 PSK resumption)
};

// Thread-safe: SSL_CTX is shared across threads by design; the stored session is guarded.
class TlsClient {
public:
  // Empty `error` on success.
  static std::shared_ptr<TlsClient> create(TlsClientOptions options, std::string& error);

  SslPtr newSsl() const;  // SNI set, and the stored session when resuming
  bool hasSession() const;
  std::string version() const;  // the OpenSSL library's version string

private:
  explicit TlsClient(TlsClientOptions options) : options_(std::move(options)) {}
  // Every ticket: marks its connection (the SSL's app data); kept when resuming.
  static int onNewSession(SSL* ssl, SSL_SESSION* session) noexcept;

  TlsClientOptions options_;
  SslCtxPtr ctx_;
  mutable std::mutex mutex_;
  SslSessionPtr session_;  // guarded by mutex_: the most recent ticket, when resuming
};

TransportPtr makeTlsTransport(const TlsClient& client);

}  // namespace wsgate::bench
