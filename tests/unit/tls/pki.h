#pragma once
// Keys and certificates for the TLS tests, made with the OpenSSL API when first asked for
// and written as PEM files to a temporary directory that goes away with the test binary.

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "proxy/net/handles.h"

namespace wsgate::tls::testkit {

using PkeyPtr = std::unique_ptr<EVP_PKEY, net::Deleter<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, net::Deleter<X509_free>>;

struct Issued {
  PkeyPtr key;
  X509Ptr cert;
};

struct CertSpec {
  std::string cn;
  std::string san;  // "DNS:a.test,IP:127.0.0.1", empty for none
  bool rsa = false;
  bool ca = false;
  long validFromDays = -1;  // relative to now
  long validToDays = 30;
};

inline void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test PKI: ") + what);
}

inline void addExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
  check(ext != nullptr && X509_add_ext(cert, ext, -1) == 1, "extension");
  X509_EXTENSION_free(ext);
}

// A certificate for spec, signed by issuer (self-signed when null).
inline Issued issue(const CertSpec& spec, const Issued* issuer) {
  static long serial = 1;
  Issued out;
  out.key.reset(spec.rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256"));
  check(out.key != nullptr, "key");
  out.cert.reset(X509_new());
  X509* x = out.cert.get();
  check(X509_set_version(x, X509_VERSION_3) == 1, "version");
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), spec.validFromDays * 86400);
  X509_gmtime_adj(X509_getm_notAfter(x), spec.validToDays * 86400);
  check(X509_set_pubkey(x, out.key.get()) == 1, "pubkey");
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("wsgate tests"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1, 0);
  X509* signerCert = issuer ? issuer->cert.get() : x;
  EVP_PKEY* signerKey = issuer ? issuer->key.get() : out.key.get();
  check(X509_set_issuer_name(x, X509_get_subject_name(signerCert)) == 1, "issuer");
  addExtension(x, signerCert, NID_basic_constraints, spec.ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (spec.ca) addExtension(x, signerCert, NID_key_usage, "critical,keyCertSign,cRLSign");
  if (!spec.san.empty()) addExtension(x, signerCert, NID_subject_alt_name, spec.san);
  check(X509_sign(x, signerKey, EVP_sha256()) > 0, "sign");
  return out;
}

// The files every TLS test draws on. Names are relative to dir().
class Pki {
public:
  static const Pki& get() {
    static const Pki pki;
    return pki;
  }

  std::string path(const std::string& file) const {
    // An RSA key takes ~0.2 s to generate and ctest runs each test in a process of its own:
    // the RSA files are made only for the tests that name them.
    if (file.starts_with("rsa.")) std::call_once(rsaMade_, [this] { makeRsa(); });
    return (dir_ / file).string();
  }

private:
  Pki() {
    char templ[] = "/tmp/wsgate-tls-test-XXXXXX";
    check(mkdtemp(templ) != nullptr, "mkdtemp");
    dir_ = templ;

    root_ = issue({.cn = "wsgate test root", .ca = true, .validToDays = 3650}, nullptr);
    const Issued& root = root_;
    Issued inter = issue({.cn = "wsgate test intermediate", .ca = true}, &root);
    writeCerts("root.pem", {&root});

    // a.pem carries the chain: the leaf, then the intermediate clients do not have.
    Issued a = issue({.cn = "cert-a", .san = "DNS:a.test,DNS:www.a.test"}, &inter);
    writeCerts("a.pem", {&a, &inter});
    writeKey("a.key", a);
    Issued wild = issue({.cn = "cert-wild", .san = "DNS:*.b.test"}, &root);
    writeCerts("wild.pem", {&wild});
    writeKey("wild.key", wild);
    Issued cnOnly = issue({.cn = "cn.test"}, &root);
    writeCerts("cn.pem", {&cnOnly});
    writeKey("cn.key", cnOnly);
    Issued badWild = issue({.cn = "cert-badwild", .san = "DNS:f*.c.test,DNS:c.test"}, &root);
    writeCerts("badwild.pem", {&badWild});
    writeKey("badwild.key", badWild);
    Issued ip = issue({.cn = "cert-ip", .san = "IP:127.0.0.1,IP:::1"}, &root);
    writeCerts("ip.pem", {&ip});
    writeKey("ip.key", ip);
    Issued expired = issue(
        {.cn = "cert-expired", .san = "DNS:expired.test", .validFromDays = -30, .validToDays = -1},
        &root);
    writeCerts("expired.pem", {&expired});
    writeKey("expired.key", expired);
    Issued future = issue(
        {.cn = "cert-future", .san = "DNS:future.test", .validFromDays = 2, .validToDays = 30},
        &root);
    writeCerts("future.pem", {&future});
    writeKey("future.key", future);

    Issued stray = issue({.cn = "stray"}, nullptr);  // its key belongs to no certificate here
    writeKey("other.key", stray);
    writeKey("encrypted.key", stray, "secret");
    writeText("garbage.pem", "this is not PEM\n");

    Issued otherRoot = issue({.cn = "other root", .ca = true}, nullptr);
    writeCerts("other-root.pem", {&otherRoot});

    Issued clientCa = issue({.cn = "wsgate client ca", .ca = true}, nullptr);
    writeCerts("client-ca.pem", {&clientCa});
    Issued client = issue({.cn = "client"}, &clientCa);
    writeCerts("client.pem", {&client});
    writeKey("client.key", client);
    Issued rogue = issue({.cn = "rogue"}, &otherRoot);
    writeCerts("rogue.pem", {&rogue});
    writeKey("rogue.key", rogue);
  }

  void makeRsa() const {
    Issued rsa = issue({.cn = "cert-rsa", .san = "DNS:rsa.test", .rsa = true}, &root_);
    writeCerts("rsa.pem", {&rsa});
    writeKey("rsa.key", rsa);
  }

  ~Pki() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  void writeCerts(const std::string& file, const std::vector<const Issued*>& chain) const {
    std::FILE* f = std::fopen((dir_ / file).c_str(), "w");
    check(f != nullptr, "open");
    for (const Issued* c : chain) check(PEM_write_X509(f, c->cert.get()) == 1, "write cert");
    std::fclose(f);
  }

  void writeKey(const std::string& file, const Issued& issued,
                const std::string& passphrase = "") const {
    std::FILE* f = std::fopen((dir_ / file).c_str(), "w");
    check(f != nullptr, "open");
    const EVP_CIPHER* cipher = passphrase.empty() ? nullptr : EVP_aes_256_cbc();
    auto* pass = reinterpret_cast<unsigned char*>(const_cast<char*>(passphrase.data()));
    check(PEM_write_PrivateKey(f, issued.key.get(), cipher, pass,
                               static_cast<int>(passphrase.size()), nullptr, nullptr) == 1,
          "write key");
    std::fclose(f);
  }

  void writeText(const std::string& file, const std::string& text) const {
    std::ofstream(dir_ / file) << text;
  }

  std::filesystem::path dir_;
  Issued root_;
  mutable std::once_flag rsaMade_;
};

}  // namespace wsgate::tls::testkit
