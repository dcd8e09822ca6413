#pragma once
// OpenSSL contexts built from the config: one SSL_CTX per listener certificate (SNI picks
// among them by their subjectAltName DNS names) and one client SSL_CTX per pool with
// `tls`. Built off the event loops, held in the config snapshot (Runtime), shared read-only
// by every worker: SSL_new on a shared SSL_CTX is thread-safe. A context must outlive the
// SSLs it made (each session holds the snapshot that holds it): their callbacks reach it.

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"
#include "proxy/net/handles.h"

namespace wsgate::tls {

using SslPtr = std::unique_ptr<SSL, net::Deleter<SSL_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, net::Deleter<SSL_CTX_free>>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, net::Deleter<SSL_SESSION_free>>;

// A problem found while building a context: an error refuses the config; a warning is
// logged (an expired certificate, a certificate without a route's host name).
struct Problem {
  conf::Mark mark;
  std::string message;  // names the file
};

// TLS termination for one listener.
class ServerContext {
public:
  // nullptr when any error was found (each one in `errors`). `routeHosts`: the host names
  // the routes match on (a certificate set with none of them is warned about).
  static std::unique_ptr<ServerContext> build(const conf::ListenerTls& config,
                                              const std::vector<std::string>& routeHosts,
                                              std::vector<Problem>& errors,
                                              std::vector<Problem>& warnings);
  ~ServerContext();

  // A server SSL for an accepted connection: starts on the default certificate; the
  // client-hello callback switches to the one whose names match the SNI.
  SslPtr newSsl() const;

  // The client certificate's verified subject (RFC 2253), empty when none was presented.
  static std::string peerSubject(const SSL* ssl);

private:
  ServerContext() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// TLS towards a pool's backends.
class ClientContext {
public:
  static std::unique_ptr<ClientContext> build(const conf::BackendTls& config,
                                              std::vector<Problem>& errors,
                                              std::vector<Problem>& warnings);
  ~ClientContext();

  // A client SSL for a connection to `host` (the backend's host, used as SNI and for
  // verification unless `sni` is set); `session`: a cached session to resume, or null.
  // No SNI is sent for an IP literal; the certificate must then hold it as an IP address.
  // nullptr when out of memory, or when verifying and there is no name to verify.
  // Sessions are not cached here: TLS 1.3 delivers the ticket after the handshake, so take
  // SSL_get1_session() once SSL_SESSION_is_resumable() says so, and use each one once.
  SslPtr newSsl(std::string_view host, SSL_SESSION* session) const;

private:
  ClientContext() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wsgate::tls
