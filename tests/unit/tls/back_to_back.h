#pragma once
// A client SSL and a server SSL joined by a BIO pair, driven in turns in one thread: real
// handshakes without sockets. Plus plain OpenSSL clients shaped the way a test needs.

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>
#include <vector>

#include "proxy/tls/context.h"
#include "tests/unit/tls/pki.h"

namespace wsgate::tls::testkit {

struct HandshakeResult {
  bool ok = false;          // both sides finished
  std::string clientError;  // OpenSSL's reason on a side that failed, else empty
  std::string serverError;
};

inline std::string takeError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  const char* reason = e != 0 ? ERR_reason_error_string(e) : nullptr;
  return reason != nullptr ? reason : "failed";
}

// The SSLs keep the BIOs (one each); they go with the SSLs.
inline void joinBackToBack(SSL* client, SSL* server) {
  BIO* c = nullptr;
  BIO* s = nullptr;
  check(BIO_new_bio_pair(&c, 0, &s, 0) == 1, "bio pair");
  SSL_set_bio(client, c, c);
  SSL_set_bio(server, s, s);
}

inline HandshakeResult handshake(SSL* client, SSL* server) {
  joinBackToBack(client, server);
  struct Side {
    SSL* ssl;
    std::string* error;
    bool done = false;
    bool failed = false;
    bool settled() const { return done || failed; }
    void step() {
      if (settled()) return;
      int rc = SSL_do_handshake(ssl);
      if (rc == 1) {
        done = true;
        return;
      }
      int e = SSL_get_error(ssl, rc);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return;
      }
      failed = true;
      *error = takeError();
    }
  };
  HandshakeResult result;
  Side c{client, &result.clientError};
  Side s{server, &result.serverError};
  // A handshake takes a handful of turns; after a failure the peer gets turns to read the
  // alert, and a side left waiting simply runs out of turns.
  for (int turn = 0; turn < 20 && !(c.settled() && s.settled()); ++turn) {
    c.step();
    s.step();
  }
  result.ok = c.done && s.done;
  return result;
}

// The client's session once the server's ticket has arrived (TLS 1.3 sends it after the
// handshake, so the client reads once to take it in). The client then sends close_notify:
// OpenSSL marks the session of an SSL freed without one as not resumable.
inline SslSessionPtr takeSession(SSL* client) {
  char byte;
  SSL_read(client, &byte, 1);  // WANT_READ after consuming the ticket
  SSL_shutdown(client);
  ERR_clear_error();
  return SslSessionPtr(SSL_get1_session(client));
}

struct ClientOptions {
  std::string trust = "root.pem";  // under Pki; empty: trust nothing, verify nothing
  int minVersion = TLS1_2_VERSION;
  int maxVersion = 0;           // 0: the newest
  std::string ciphers;          // TLS 1.2 list; empty: OpenSSL's default
  std::string alpn;             // wire format; empty: no ALPN
  std::string cert, key;        // under Pki: a client certificate
  bool legacyVersions = false;  // security level 0, so that OpenSSL offers TLS 1.1 at all
};

inline SslCtxPtr clientContext(const ClientOptions& o) {
  const Pki& pki = Pki::get();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  check(ctx != nullptr, "client ctx");
  if (o.legacyVersions) {
    SSL_CTX_set_security_level(ctx.get(), 0);
    check(SSL_CTX_set_cipher_list(ctx.get(), "DEFAULT:@SECLEVEL=0") == 1, "legacy ciphers");
  }
  SSL_CTX_set_min_proto_version(ctx.get(), o.minVersion);
  SSL_CTX_set_max_proto_version(ctx.get(), o.maxVersion);
  if (!o.ciphers.empty())
    check(SSL_CTX_set_cipher_list(ctx.get(), o.ciphers.c_str()) == 1, "ciphers");
  if (!o.trust.empty()) {
    check(SSL_CTX_load_verify_locations(ctx.get(), pki.path(o.trust).c_str(), nullptr) == 1,
          "trust");
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  }
  if (!o.alpn.empty()) {
    check(SSL_CTX_set_alpn_protos(ctx.get(), reinterpret_cast<const unsigned char*>(o.alpn.data()),
                                  static_cast<unsigned>(o.alpn.size())) == 0,
          "alpn");
  }
  if (!o.cert.empty()) {
    check(
        SSL_CTX_use_certificate_chain_file(ctx.get(), pki.path(o.cert).c_str()) == 1 &&
            SSL_CTX_use_PrivateKey_file(ctx.get(), pki.path(o.key).c_str(), SSL_FILETYPE_PEM) == 1,
        "client certificate");
  }
  // As ClientContext: the test keeps the sessions it wants to resume.
  SSL_CTX_set_session_cache_mode(ctx.get(),
                                 SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  return ctx;
}

inline SslPtr clientSsl(SSL_CTX* ctx, const std::string& sni = "", SSL_SESSION* session = nullptr) {
  SslPtr ssl(SSL_new(ctx));
  check(ssl != nullptr, "client ssl");
  SSL_set_connect_state(ssl.get());
  if (!sni.empty()) check(SSL_set_tlsext_host_name(ssl.get(), sni.c_str()) == 1, "sni");
  if (session != nullptr) check(SSL_set_session(ssl.get(), session) == 1, "session");
  return ssl;
}

// The subject CN of the certificate the server sent, "" when none.
inline std::string servedCertificate(const SSL* client) {
  X509* cert = SSL_get0_peer_certificate(client);
  if (cert == nullptr) return "";
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  return cn;
}

inline std::string negotiatedAlpn(const SSL* ssl) {
  const unsigned char* data = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl, &data, &len);
  if (data == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(data), len);
}

}  // namespace wsgate::tls::testkit
