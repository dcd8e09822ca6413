#include "proxy/tls/context.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <system_error>
#include <unordered_map>

#include "proxy/tls/ticket_keys.h"

namespace wsgate::tls {
namespace {

// TLS 1.2 only: forward secrecy and AEAD, nothing else. TLS 1.3 suites stay OpenSSL's.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

constexpr std::string_view kHttp11 = "http/1.1";
constexpr std::size_t kMaxHostName = 255;  // RFC 1035; longer SNI cannot match a name

void freeNameStack(STACK_OF(X509_NAME) * names) { sk_X509_NAME_pop_free(names, X509_NAME_free); }

using X509NameStack = std::unique_ptr<STACK_OF(X509_NAME), net::Deleter<freeNameStack>>;
using GeneralNames = std::unique_ptr<GENERAL_NAMES, net::Deleter<GENERAL_NAMES_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, net::Deleter<X509_STORE_free>>;
using BioPtr = std::unique_ptr<BIO, net::Deleter<BIO_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, net::Deleter<EVP_PKEY_free>>;

// The first (root-cause) reason in OpenSSL's error queue, which it empties: the queue is
// per thread, and a stale entry would be blamed on the next failure.
std::string takeOpensslError() {
  unsigned long first = ERR_get_error();
  ERR_clear_error();
  if (first == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(first);
  if (reason != nullptr) return reason;
  char buf[256];
  ERR_error_string_n(first, buf, sizeof buf);
  return buf;
}

// Empty when `path` can be opened; else why not ("No such file or directory"). OpenSSL's
// own message for a missing file is a bare "system lib".
std::string unreadable(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return std::error_code(errno, std::generic_category()).message();
  std::fclose(f);
  return {};
}

// Without this, OpenSSL asks for a key's passphrase on the terminal, which hangs a daemon.
int refusePassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*arg*/) { return 0; }

int protocolVersion(conf::TlsVersion v) {
  return v == conf::TlsVersion::V1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

std::string lowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string formatTime(const ASN1_TIME* t) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return "an unreadable date";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// What servers and clients share: the version floor, the TLS 1.2 suites, and buffers that
// follow traffic (RELEASE_BUFFERS) and tolerate our transport moving its write buffer.
// RELEASE_BUFFERS costs a free and a malloc around each record (callgrind: ~725 instructions,
// ~5 %, per relayed wss message), but without it 3,000 idle wss connections held 30.5 KB of
// RSS each instead of 18.8 KB: buffers held through the handshakes and freed a second later
// leave holes glibc does not give back. Memory per idle connection wins.
bool applyCommon(SSL_CTX* ctx, conf::TlsVersion minVersion) {
  if (SSL_CTX_set_min_proto_version(ctx, protocolVersion(minVersion)) != 1) return false;
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) return false;
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // The transport hands OpenSSL bytes it already read; read-ahead would only copy them.
  SSL_CTX_set_read_ahead(ctx, 0);
  SSL_CTX_set_default_passwd_cb(ctx, refusePassphrase);
  return true;
}

void warnAboutValidity(X509* cert, const std::string& file, const conf::Mark& mark,
                       std::vector<Problem>& warnings) {
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
    warnings.push_back(
        {mark, file + ": certificate expired on " + formatTime(X509_get0_notAfter(cert))});
  } else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
    warnings.push_back(
        {mark, file + ": certificate not valid before " + formatTime(X509_get0_notBefore(cert))});
  }
}

// Loads a chain and its key into ctx. Each failure becomes one error naming the file.
bool loadCertificate(SSL_CTX* ctx, const std::string& certFile, const std::string& keyFile,
                     const conf::Mark& mark, std::vector<Problem>& errors,
                     std::vector<Problem>& warnings) {
  if (auto why = unreadable(certFile); !why.empty()) {
    errors.push_back({mark, "cannot read certificate file " + certFile + ": " + why});
    return false;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, certFile.c_str()) != 1) {
    errors.push_back(
        {mark, certFile + ": not a PEM certificate chain (" + takeOpensslError() + ")"});
    return false;
  }
  if (auto why = unreadable(keyFile); !why.empty()) {
    errors.push_back({mark, "cannot read key file " + keyFile + ": " + why});
    return false;
  }
  // Read the key ourselves so that a key that does not belong to the certificate is told
  // apart from a file that is no key at all: OpenSSL files an RSA key next to an ECDSA
  // certificate in another slot and later reports only "no certificate assigned".
  PkeyPtr key;
  if (BioPtr bio(BIO_new_file(keyFile.c_str(), "r")); bio) {
    key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, refusePassphrase, nullptr));
  }
  if (!key) {
    errors.push_back(
        {mark, keyFile + ": not an unencrypted PEM private key (" + takeOpensslError() + ")"});
    return false;
  }
  X509* leaf = SSL_CTX_get0_certificate(ctx);
  const bool matches = X509_check_private_key(leaf, key.get()) == 1;
  ERR_clear_error();
  if (!matches || SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    errors.push_back({mark, keyFile + ": key does not match certificate " + certFile});
    ERR_clear_error();
    return false;
  }
  warnAboutValidity(leaf, certFile, mark, warnings);
  return true;
}

// The DNS names a certificate answers for, lower-cased: its subjectAltName DNS entries, or
// its subject CN when it has none (RFC 6125 6.4.4).
std::vector<std::string> certificateNames(X509* cert) {
  std::vector<std::string> names;
  GeneralNames san(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; san && i < sk_GENERAL_NAME_num(san.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(san.get(), i);
    if (name->type != GEN_DNS) continue;
    const ASN1_IA5STRING* dns = name->d.dNSName;
    names.push_back(lowerAscii(std::string_view(
        reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)), ASN1_STRING_length(dns))));
  }
  if (!names.empty()) return names;
  X509_NAME* subject = X509_get_subject_name(cert);
  int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return names;
  unsigned char* utf8 = nullptr;
  int len =
      ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
  if (len > 0) names.push_back(lowerAscii(std::string_view(reinterpret_cast<char*>(utf8), len)));
  OPENSSL_free(utf8);
  return names;
}

bool isIpLiteral(const std::string& host) {
  unsigned char addr[16];
  return inet_pton(AF_INET, host.c_str(), addr) == 1 ||
         inet_pton(AF_INET6, host.c_str(), addr) == 1;
}

// Sessions (tickets included) resume only where the session id context matches. Tickets are
// sealed with process-wide keys, so without this a ticket from a listener that asks for no
// client certificate would resume on one that requires it. Derived from what decides client
// authentication, so a reload with the same settings keeps resuming.
std::vector<unsigned char> sessionIdContext(const conf::ListenerTls& config) {
  std::string material = "wsgate server v1";
  material += static_cast<char>('0' + static_cast<int>(config.clientCert));
  if (config.clientCert != conf::ClientCertMode::Off) {
    material += config.clientCa;
    material += '\0';
    std::ifstream in(config.clientCa, std::ios::binary);
    material.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::vector<unsigned char> digest(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  EVP_Digest(material.data(), material.size(), digest.data(), &len, EVP_sha256(), nullptr);
  digest.resize(std::min<std::size_t>(len, SSL_MAX_SID_CTX_LENGTH));
  return digest;
}

struct NameHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};
using NameTable = std::unordered_map<std::string, SSL_CTX*, NameHash, std::equal_to<>>;

}  // namespace

struct ServerContext::Impl {
  std::vector<SslCtxPtr> contexts;  // one per certificate; [0] is the default
  NameTable exact;                  // "a.example.com" -> its context
  NameTable wildcard;               // "*.example.com" is filed under "example.com"
  std::string alpn;                 // our protocols in wire format, in our preference

  // The context whose certificate names `name` (lower-case), or null.
  SSL_CTX* match(std::string_view name) const {
    if (auto it = exact.find(name); it != exact.end()) return it->second;
    // A wildcard stands for exactly one whole left-most label.
    auto dot = name.find('.');
    if (dot == 0 || dot == std::string_view::npos) return nullptr;
    if (auto it = wildcard.find(name.substr(dot + 1)); it != wildcard.end()) return it->second;
    return nullptr;
  }

  // Runs before OpenSSL looks at anything else in the ClientHello (resumption included), so
  // the session id context and certificate of the chosen context apply to the whole
  // handshake. Options and verify mode stay as SSL_new copied them from the default context,
  // and tickets go through the default context (OpenSSL's session_ctx); every context
  // carries the same settings anyway.
  static int onClientHello(SSL* ssl, int* /*alert*/, void* arg) noexcept {
    const auto* self = static_cast<const Impl*>(arg);
    const unsigned char* ext = nullptr;
    std::size_t len = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) != 1) {
      return SSL_CLIENT_HELLO_SUCCESS;  // no SNI: the default certificate
    }
    // ServerNameList (RFC 6066 3): u16 length, then {u8 type, u16 length, name}. A malformed
    // list is left to OpenSSL's own parser, which rejects it right after us.
    if (len < 2 || static_cast<std::size_t>(ext[0] << 8 | ext[1]) != len - 2) {
      return SSL_CLIENT_HELLO_SUCCESS;
    }
    std::size_t pos = 2;
    while (pos + 3 <= len) {
      unsigned type = ext[pos];
      auto nameLen = static_cast<std::size_t>(ext[pos + 1] << 8 | ext[pos + 2]);
      pos += 3;
      if (nameLen > len - pos) break;
      if (type == TLSEXT_NAMETYPE_host_name) {
        if (nameLen == 0 || nameLen > kMaxHostName) break;
        char lower[kMaxHostName];
        for (std::size_t i = 0; i < nameLen; ++i) {
          char c = static_cast<char>(ext[pos + i]);
          lower[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        }
        SSL_CTX* chosen = self->match(std::string_view(lower, nameLen));
        // On failure (out of memory) the handshake goes on with the default certificate.
        if (chosen != nullptr && chosen != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, chosen);
        break;
      }
      pos += nameLen;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
  }

  // A client that offers none of our protocols goes on without ALPN (as nginx does) rather
  // than being refused: it may still send HTTP/1.1, and if not, the parser answers it.
  static int onAlpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outLen,
                    const unsigned char* in, unsigned int inLen, void* arg) noexcept {
    const auto* self = static_cast<const Impl*>(arg);
    unsigned char* selected = nullptr;
    if (SSL_select_next_proto(
            &selected, outLen, reinterpret_cast<const unsigned char*>(self->alpn.data()),
            static_cast<unsigned>(self->alpn.size()), in, inLen) != OPENSSL_NPN_NEGOTIATED) {
      return SSL_TLSEXT_ERR_NOACK;
    }
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }

  // The settings every certificate's context gets, so that switching contexts on SNI
  // changes only the certificate.
  bool configure(SSL_CTX* ctx, const conf::ListenerTls& config,
                 const std::vector<unsigned char>& sidContext, X509_STORE* clientCaStore,
                 const STACK_OF(X509_NAME) * clientCaNames) const {
    if (!applyCommon(ctx, config.minVersion)) return false;
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    // Asked for, and harmless: our transport is a custom BIO, so OpenSSL never hands the
    // records to the kernel; it falls back to user-space TLS without a word.
    if (config.ktls) SSL_CTX_set_options(ctx, SSL_OP_ENABLE_KTLS);

    // No server-side session cache (memory per session, shared between workers); resumption
    // comes from tickets sealed by the process-wide ring, one ticket per TLS 1.3 handshake.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &TicketKeys::callback) != 1) return false;
    if (SSL_CTX_set_num_tickets(ctx, 1) != 1) return false;
    SSL_CTX_set_timeout(ctx, static_cast<long>(TicketKeys::kTicketLifetime.count()));
    if (SSL_CTX_set_session_id_context(ctx, sidContext.data(),
                                       static_cast<unsigned>(sidContext.size())) != 1) {
      return false;
    }

    if (!alpn.empty()) SSL_CTX_set_alpn_select_cb(ctx, &Impl::onAlpn, const_cast<Impl*>(this));

    if (config.clientCert == conf::ClientCertMode::Off) {
      SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
      return true;
    }
    SSL_CTX_set1_cert_store(ctx, clientCaStore);  // shared, read-only: one copy of the CAs
    STACK_OF(X509_NAME)* names = SSL_dup_CA_list(clientCaNames);
    if (names == nullptr) return false;
    SSL_CTX_set_client_CA_list(ctx, names);
    int mode = SSL_VERIFY_PEER;
    if (config.clientCert == conf::ClientCertMode::Required) {
      mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    }
    SSL_CTX_set_verify(ctx, mode, nullptr);
    return true;
  }

  void addNames(SSL_CTX* ctx, const conf::CertificateConfig& entry,
                std::vector<Problem>& warnings) {
    for (auto& name : certificateNames(SSL_CTX_get0_certificate(ctx))) {
      // The first certificate that names a host keeps it (emplace does not overwrite).
      if (name.starts_with("*.") && name.size() > 2 && name.find('*', 1) == std::string::npos) {
        wildcard.emplace(name.substr(2), ctx);
      } else if (name.find('*') != std::string::npos) {
        warnings.push_back({entry.mark, entry.cert + ": name " + name +
                                            " ignored (a wildcard must be a whole left-most "
                                            "label)"});
      } else {
        exact.emplace(std::move(name), ctx);
      }
    }
  }
};

std::unique_ptr<ServerContext> ServerContext::build(const conf::ListenerTls& config,
                                                    const std::vector<std::string>& routeHosts,
                                                    std::vector<Problem>& errors,
                                                    std::vector<Problem>& warnings) {
  const std::size_t errorsBefore = errors.size();
  auto impl = std::make_unique<Impl>();
  ERR_clear_error();

  if (config.certificates.empty()) errors.push_back({config.mark, "tls: no certificates"});
  for (const auto& protocol : config.alpn) {
    if (protocol != kHttp11) {
      errors.push_back({config.mark, "tls: alpn " + protocol +
                                         " is not supported (wsgate speaks http/1.1 only)"});
      continue;
    }
    impl->alpn += static_cast<char>(protocol.size());
    impl->alpn += protocol;
  }

  X509StorePtr clientCaStore;
  X509NameStack clientCaNames;
  if (config.clientCert != conf::ClientCertMode::Off) {
    if (config.clientCa.empty()) {
      errors.push_back({config.mark, "tls: client_cert needs client_ca"});
    } else if (auto why = unreadable(config.clientCa); !why.empty()) {
      errors.push_back({config.mark, "cannot read client_ca file " + config.clientCa + ": " + why});
    } else {
      clientCaStore.reset(X509_STORE_new());
      if (!clientCaStore ||
          X509_STORE_load_file(clientCaStore.get(), config.clientCa.c_str()) != 1) {
        errors.push_back({config.mark, config.clientCa + ": no PEM CA certificates (" +
                                           takeOpensslError() + ")"});
      } else {
        clientCaNames.reset(SSL_load_client_CA_file(config.clientCa.c_str()));
        if (!clientCaNames) {
          errors.push_back({config.mark, config.clientCa + ": no CA names to send to clients (" +
                                             takeOpensslError() + ")"});
        }
      }
    }
  }
  if (errors.size() != errorsBefore) return nullptr;

  const auto sidContext = sessionIdContext(config);
  for (const auto& entry : config.certificates) {
    SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
    if (!ctx ||
        !impl->configure(ctx.get(), config, sidContext, clientCaStore.get(), clientCaNames.get())) {
      errors.push_back(
          {entry.mark, "cannot set up TLS for " + entry.cert + ": " + takeOpensslError()});
      continue;
    }
    if (!loadCertificate(ctx.get(), entry.cert, entry.key, entry.mark, errors, warnings)) {
      continue;
    }
    impl->addNames(ctx.get(), entry, warnings);
    impl->contexts.push_back(std::move(ctx));
  }
  if (errors.size() != errorsBefore) return nullptr;

  // Only the context SSL_new starts from sees the ClientHello.
  SSL_CTX_set_client_hello_cb(impl->contexts.front().get(), &Impl::onClientHello, impl.get());

  std::set<std::string> warned;  // each host once, in the order the routes name them
  for (const auto& host : routeHosts) {
    std::string name = lowerAscii(host);
    if (impl->match(name) != nullptr || !warned.insert(name).second) continue;
    warnings.push_back({config.mark, "no certificate covers route host " + name + "; " +
                                         config.certificates.front().cert +
                                         " (the default) is sent for it"});
  }

  auto context = std::unique_ptr<ServerContext>(new ServerContext());
  context->impl_ = std::move(impl);
  return context;
}

ServerContext::~ServerContext() = default;

SslPtr ServerContext::newSsl() const {
  SslPtr ssl(SSL_new(impl_->contexts.front().get()));
  if (ssl) SSL_set_accept_state(ssl.get());
  return ssl;
}

std::string ServerContext::peerSubject(const SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return {};
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0) {
    return {};
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<std::size_t>(len)) : std::string();
}

struct ClientContext::Impl {
  SslCtxPtr ctx;
  std::string sni;  // overrides the backend's host when set
  bool verify = true;
};

std::unique_ptr<ClientContext> ClientContext::build(const conf::BackendTls& config,
                                                    std::vector<Problem>& errors,
                                                    std::vector<Problem>& warnings) {
  const std::size_t errorsBefore = errors.size();
  ERR_clear_error();
  auto impl = std::make_unique<Impl>();
  impl->sni = config.sni;
  impl->verify = config.verify;
  impl->ctx.reset(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* ctx = impl->ctx.get();
  if (ctx == nullptr || !applyCommon(ctx, config.minVersion)) {
    errors.push_back({config.mark, "cannot set up TLS: " + takeOpensslError()});
    return nullptr;
  }

  if (!config.verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  } else if (config.ca.empty()) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      errors.push_back(
          {config.mark, "cannot load the system's trusted CAs: " + takeOpensslError()});
    }
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    if (auto why = unreadable(config.ca); !why.empty()) {
      errors.push_back({config.mark, "cannot read ca file " + config.ca + ": " + why});
    } else if (SSL_CTX_load_verify_locations(ctx, config.ca.c_str(), nullptr) != 1) {
      errors.push_back(
          {config.mark, config.ca + ": no PEM CA certificates (" + takeOpensslError() + ")"});
    }
  }

  if (config.cert.empty() != config.key.empty()) {
    errors.push_back({config.mark, "tls: cert and key go together (client certificate)"});
  } else if (!config.cert.empty()) {
    loadCertificate(ctx, config.cert, config.key, config.mark, errors, warnings);
  }

  // Offered so that a backend that insists on ALPN knows what follows.
  static constexpr unsigned char kOffer[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  if (SSL_CTX_set_alpn_protos(ctx, kOffer, sizeof kOffer) != 0) {  // 0 is success here
    errors.push_back({config.mark, "cannot set up TLS: " + takeOpensslError()});
  }
  // Sessions are kept by the caller (per backend), not in a cache shared by all workers.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);

  if (errors.size() != errorsBefore) return nullptr;
  auto context = std::unique_ptr<ClientContext>(new ClientContext());
  context->impl_ = std::move(impl);
  return context;
}

ClientContext::~ClientContext() = default;

SslPtr ClientContext::newSsl(std::string_view host, SSL_SESSION* session) const {
  const std::string name(impl_->sni.empty() ? host : std::string_view(impl_->sni));
  // With nothing to compare the certificate to, any valid certificate would pass.
  if (impl_->verify && name.empty()) return nullptr;
  SslPtr ssl(SSL_new(impl_->ctx.get()));
  if (!ssl) return nullptr;
  SSL_set_connect_state(ssl.get());
  // RFC 6066 3: SNI carries host names only, never an address.
  const bool ip = isIpLiteral(name);
  if (!ip && !name.empty() && SSL_set_tlsext_host_name(ssl.get(), name.c_str()) != 1) {
    return nullptr;
  }
  if (impl_->verify) {
    if (ip) {
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), name.c_str()) != 1) {
        return nullptr;
      }
    } else {
      SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (SSL_set1_host(ssl.get(), name.c_str()) != 1) return nullptr;
    }
  }
  // A session that does not fit (another version, expired) only costs a full handshake.
  if (session != nullptr && SSL_set_session(ssl.get(), session) != 1) ERR_clear_error();
  return ssl;
}

}  // namespace wsgate::tls
