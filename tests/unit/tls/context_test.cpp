// Server and client TLS contexts built from config: what a bad certificate entry reports,
// what is warned about, and real handshakes against them (SNI, versions, ALPN, client
// certificates, resumption across rebuilt contexts, backend verification).
#include "proxy/tls/context.h"

#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "proxy/tls/ticket_keys.h"
#include "tests/unit/tls/back_to_back.h"
#include "tests/unit/tls/pki.h"

namespace wsgate::tls {
namespace {

using testkit::ClientOptions;
using testkit::Pki;

constexpr int kTlsLine = 3;         // the `tls` key in the imagined config
constexpr int kFirstEntryLine = 5;  // certificate entry i is on line 5 + i

std::string file(const std::string& name) { return Pki::get().path(name); }

conf::ListenerTls listener(const std::vector<std::pair<std::string, std::string>>& certs) {
  conf::ListenerTls config;
  int line = kFirstEntryLine;
  for (const auto& [cert, key] : certs) {
    config.certificates.push_back({file(cert), file(key), {"t.yaml", line++, 9}});
  }
  config.mark = {"t.yaml", kTlsLine, 3};
  return config;
}

struct Built {
  std::unique_ptr<ServerContext> context;
  std::vector<Problem> errors;
  std::vector<Problem> warnings;
};

Built build(const conf::ListenerTls& config, const std::vector<std::string>& routeHosts = {}) {
  Built b;
  b.context = ServerContext::build(config, routeHosts, b.errors, b.warnings);
  return b;
}

std::string listProblems(const std::vector<Problem>& problems) {
  std::string out;
  for (const auto& p : problems) out += p.mark.str() + ": " + p.message + "\n";
  return out;
}

// The default (first) certificate is RSA; SNI picks among the others.
conf::ListenerTls sniListener() {
  return listener({{"rsa.pem", "rsa.key"},
                   {"a.pem", "a.key"},
                   {"wild.pem", "wild.key"},
                   {"cn.pem", "cn.key"},
                   {"badwild.pem", "badwild.key"}});
}

// ---------------------------------------------------------------------------------------
// Build errors: each one names the file at fault, at the mark of the entry (or `tls` key).

struct ErrorCase {
  std::string name;
  std::vector<std::pair<std::string, std::string>> certs;
  int line;                       // where the error points
  std::vector<std::string> says;  // in the message
  conf::ClientCertMode clientCert = conf::ClientCertMode::Off;
  std::string clientCa;  // under Pki
  std::vector<std::string> alpn{"http/1.1"};
};
// gtest prints the case by its name (not as a byte dump) in test listings and failures.
void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.name; }

class BuildError : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(BuildError, IsReportedOnceWithItsFile) {
  const ErrorCase& c = GetParam();
  conf::ListenerTls config = listener(c.certs);
  config.clientCert = c.clientCert;
  if (!c.clientCa.empty()) config.clientCa = file(c.clientCa);
  config.alpn = c.alpn;
  Built b = build(config);
  EXPECT_EQ(b.context, nullptr);
  ASSERT_EQ(b.errors.size(), 1u) << listProblems(b.errors);
  EXPECT_EQ(b.errors[0].mark.line, c.line);
  for (const auto& part : c.says) {
    EXPECT_NE(b.errors[0].message.find(part), std::string::npos)
        << "'" << part << "' not in: " << b.errors[0].message;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BuildError,
    ::testing::Values(
        ErrorCase{
            "MissingCertificate", {{"missing.pem", "a.key"}}, 5, {"missing.pem", "No such file"}},
        ErrorCase{"MissingKey", {{"a.pem", "missing.key"}}, 5, {"missing.key", "No such file"}},
        ErrorCase{"GarbageCertificate",
                  {{"garbage.pem", "a.key"}},
                  5,
                  {"garbage.pem", "not a PEM certificate"}},
        ErrorCase{"GarbageKey",
                  {{"a.pem", "garbage.pem"}},
                  5,
                  {"garbage.pem", "not an unencrypted PEM private key"}},
        ErrorCase{"KeyOfAnotherCertificate",
                  {{"a.pem", "other.key"}},
                  5,
                  {"other.key", "does not match", "a.pem"}},
        ErrorCase{"RsaKeyForEcdsaCertificate",
                  {{"a.pem", "rsa.key"}},
                  5,
                  {"rsa.key", "does not match", "a.pem"}},
        ErrorCase{"EncryptedKey",
                  {{"a.pem", "encrypted.key"}},
                  5,
                  {"encrypted.key", "not an unencrypted"}},
        ErrorCase{"SecondEntryBad",
                  {{"a.pem", "a.key"}, {"wild.pem", "a.key"}},
                  6,
                  {"a.key", "does not match", "wild.pem"}},
        ErrorCase{"NoCertificates", {}, kTlsLine, {"no certificates"}},
        ErrorCase{"ClientCertWithoutCa",
                  {{"a.pem", "a.key"}},
                  kTlsLine,
                  {"client_ca"},
                  conf::ClientCertMode::Required},
        ErrorCase{"GarbageClientCa",
                  {{"a.pem", "a.key"}},
                  kTlsLine,
                  {"garbage.pem"},
                  conf::ClientCertMode::Optional,
                  "garbage.pem"},
        ErrorCase{"MissingClientCa",
                  {{"a.pem", "a.key"}},
                  kTlsLine,
                  {"missing-ca.pem", "No such file"},
                  conf::ClientCertMode::Optional,
                  "missing-ca.pem"},
        ErrorCase{"AlpnOtherThanHttp11",
                  {{"a.pem", "a.key"}},
                  kTlsLine,
                  {"alpn h2"},
                  conf::ClientCertMode::Off,
                  "",
                  {"h2", "http/1.1"}}),
    [](const auto& info) { return info.param.name; });

TEST(ServerContext, ReportsEveryBadEntryNotJustTheFirst) {
  Built b = build(listener({{"garbage.pem", "a.key"}, {"a.pem", "a.key"}, {"a.pem", "other.key"}}));
  EXPECT_EQ(b.context, nullptr);
  ASSERT_EQ(b.errors.size(), 2u) << listProblems(b.errors);
  EXPECT_EQ(b.errors[0].mark.line, 5);
  EXPECT_EQ(b.errors[1].mark.line, 7);
}

// ---------------------------------------------------------------------------------------
// Warnings: the config loads, and the operator hears about what will bite later.

struct WarningCase {
  std::string name;
  std::vector<std::pair<std::string, std::string>> certs;
  std::vector<std::string> routeHosts;
  std::vector<std::string> says;  // one warning each, in order; empty: no warning
};
// gtest prints the case by its name (not as a byte dump) in test listings and failures.
void PrintTo(const WarningCase& c, std::ostream* os) { *os << c.name; }

class BuildWarning : public ::testing::TestWithParam<WarningCase> {};

TEST_P(BuildWarning, IsReportedAndTheContextStillBuilds) {
  const WarningCase& c = GetParam();
  Built b = build(listener(c.certs), c.routeHosts);
  ASSERT_NE(b.context, nullptr) << listProblems(b.errors);
  ASSERT_EQ(b.warnings.size(), c.says.size()) << listProblems(b.warnings);
  for (std::size_t i = 0; i < c.says.size(); ++i) {
    EXPECT_NE(b.warnings[i].message.find(c.says[i]), std::string::npos)
        << "'" << c.says[i] << "' not in: " << b.warnings[i].message;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BuildWarning,
    ::testing::Values(
        WarningCase{"NothingToSay", {{"a.pem", "a.key"}, {"wild.pem", "wild.key"}}, {}, {}},
        WarningCase{"ExpiredCertificate",
                    {{"expired.pem", "expired.key"}},
                    {},
                    {"expired.pem: certificate expired on 20"}},
        WarningCase{"NotYetValidCertificate",
                    {{"future.pem", "future.key"}},
                    {},
                    {"future.pem: certificate not valid before 20"}},
        WarningCase{"RouteHostsAllCovered",
                    {{"a.pem", "a.key"}, {"wild.pem", "wild.key"}},
                    {"a.test", "WWW.A.test", "x.b.test"},
                    {}},
        // b.test is not covered by *.b.test; each host is warned about once, in route order.
        WarningCase{"RouteHostsNotCovered",
                    {{"a.pem", "a.key"}, {"wild.pem", "wild.key"}},
                    {"nope.test", "a.test", "B.test", "b.test", "nope.test"},
                    {"route host nope.test; " + file("a.pem"), "route host b.test"}},
        WarningCase{"PartialWildcardIgnored",
                    {{"badwild.pem", "badwild.key"}},
                    {"fx.c.test"},
                    {"name f*.c.test ignored", "route host fx.c.test"}}),
    [](const auto& info) { return info.param.name; });

TEST(ServerContext, WarningsPointAtTheirEntry) {
  Built b = build(listener({{"a.pem", "a.key"}, {"expired.pem", "expired.key"}}), {"z.test"});
  ASSERT_EQ(b.warnings.size(), 2u) << listProblems(b.warnings);
  EXPECT_EQ(b.warnings[0].mark.line, 6);         // the expired entry
  EXPECT_EQ(b.warnings[1].mark.line, kTlsLine);  // the route host: about the set as a whole
}

// ---------------------------------------------------------------------------------------
// Real handshakes against a built context.

struct Connection {
  SslPtr client;
  SslPtr server;
  testkit::HandshakeResult result;
};

Connection connect(const ServerContext& server, SSL_CTX* client, const std::string& sni = "",
                   SSL_SESSION* session = nullptr) {
  Connection c;
  c.client = testkit::clientSsl(client, sni, session);
  c.server = server.newSsl();
  c.result = testkit::handshake(c.client.get(), c.server.get());
  return c;
}

std::unique_ptr<ServerContext> mustBuild(const conf::ListenerTls& config) {
  Built b = build(config);
  EXPECT_TRUE(b.errors.empty()) << listProblems(b.errors);
  return std::move(b.context);
}

struct SniCase {
  std::string name;
  std::string sni;     // empty: none sent
  std::string served;  // the CN of the certificate the client gets
};
// gtest prints the case by its name (not as a byte dump) in test listings and failures.
void PrintTo(const SniCase& c, std::ostream* os) { *os << c.name; }

class Sni : public ::testing::TestWithParam<SniCase> {};

TEST_P(Sni, PicksTheCertificateNamingTheHost) {
  static const auto server = mustBuild(sniListener());
  ASSERT_NE(server, nullptr);
  auto client = testkit::clientContext({});
  Connection c = connect(*server, client.get(), GetParam().sni);
  ASSERT_TRUE(c.result.ok) << c.result.clientError << " / " << c.result.serverError;
  EXPECT_EQ(testkit::servedCertificate(c.client.get()), GetParam().served);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Sni,
    ::testing::Values(SniCase{"ExactName", "a.test", "cert-a"},
                      SniCase{"SecondSanName", "www.a.test", "cert-a"},
                      SniCase{"CaseInsensitive", "A.Test", "cert-a"},
                      SniCase{"WildcardOneLabel", "x.b.test", "cert-wild"},
                      SniCase{"WildcardNotTwoLabels", "y.x.b.test", "cert-rsa"},
                      SniCase{"WildcardNotTheBareDomain", "b.test", "cert-rsa"},
                      SniCase{"UnknownNameGetsDefault", "unknown.test", "cert-rsa"},
                      SniCase{"NoSniGetsDefault", "", "cert-rsa"},
                      SniCase{"CnWhenNoSan", "cn.test", "cn.test"},
                      SniCase{"CnIgnoredWhenSanPresent", "cert-a", "cert-rsa"},
                      SniCase{"PartialWildcardNeverMatches", "fx.c.test", "cert-rsa"},
                      SniCase{"SanNextToPartialWildcardStillMatches", "c.test", "cert-badwild"}),
    [](const auto& info) { return info.param.name; });

struct VersionCase {
  std::string name;
  conf::TlsVersion serverMin;
  ClientOptions client;
  bool ok;
  std::string serverError;     // when !ok
  std::string version;         // when ok
  std::string cipher;          // when ok and TLS 1.2
  std::string sni = "a.test";  // picks the ECDSA certificate, rsa.test the RSA one
};
// gtest prints the case by its name (not as a byte dump) in test listings and failures.
void PrintTo(const VersionCase& c, std::ostream* os) { *os << c.name; }

class Versions : public ::testing::TestWithParam<VersionCase> {};

TEST_P(Versions, FloorAndCiphersHold) {
  const VersionCase& c = GetParam();
  conf::ListenerTls config = listener({{"a.pem", "a.key"}, {"rsa.pem", "rsa.key"}});
  config.minVersion = c.serverMin;
  auto server = mustBuild(config);
  ASSERT_NE(server, nullptr);
  auto client = testkit::clientContext(c.client);
  Connection conn = connect(*server, client.get(), c.sni);
  ASSERT_EQ(conn.result.ok, c.ok) << conn.result.clientError << " / " << conn.result.serverError;
  if (!c.ok) {
    EXPECT_EQ(conn.result.serverError, c.serverError);
    return;
  }
  EXPECT_EQ(SSL_get_version(conn.server.get()), c.version);
  if (!c.cipher.empty()) {
    EXPECT_EQ(SSL_get_cipher_name(conn.server.get()), c.cipher);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Versions,
    ::testing::Values(
        VersionCase{"Tls13ByDefault", conf::TlsVersion::V1_2, {}, true, "", "TLSv1.3"},
        VersionCase{"Tls12Accepted",
                    conf::TlsVersion::V1_2,
                    {.maxVersion = TLS1_2_VERSION},
                    true,
                    "",
                    "TLSv1.2",
                    "ECDHE-ECDSA-AES128-GCM-SHA256"},
        // The server's order wins over a client that prefers AES-256.
        VersionCase{"Tls12ServerPreference",
                    conf::TlsVersion::V1_2,
                    {.maxVersion = TLS1_2_VERSION,
                     .ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"},
                    true,
                    "",
                    "TLSv1.2",
                    "ECDHE-ECDSA-AES128-GCM-SHA256"},
        VersionCase{"Tls11Refused",
                    conf::TlsVersion::V1_2,
                    {.trust = "",
                     .minVersion = TLS1_1_VERSION,
                     .maxVersion = TLS1_1_VERSION,
                     .legacyVersions = true},
                    false,
                    "unsupported protocol"},
        VersionCase{"Tls12RefusedWhenFloorIs13",
                    conf::TlsVersion::V1_3,
                    {.maxVersion = TLS1_2_VERSION},
                    false,
                    "unsupported protocol"},
        VersionCase{"Tls13AcceptedWhenFloorIs13", conf::TlsVersion::V1_3, {}, true, "", "TLSv1.3"},
        VersionCase{"Tls12RsaCertificate",
                    conf::TlsVersion::V1_2,
                    {.maxVersion = TLS1_2_VERSION},
                    true,
                    "",
                    "TLSv1.2",
                    "ECDHE-RSA-AES128-GCM-SHA256",
                    "rsa.test"},
        // RSA key exchange: possible with the RSA certificate, but no forward secrecy.
        VersionCase{"Tls12WithoutForwardSecrecyRefused",
                    conf::TlsVersion::V1_2,
                    {.maxVersion = TLS1_2_VERSION, .ciphers = "AES128-GCM-SHA256"},
                    false,
                    "no shared cipher",
                    "",
                    "",
                    "rsa.test"},
        VersionCase{"Tls12CbcRefused",
                    conf::TlsVersion::V1_2,
                    {.maxVersion = TLS1_2_VERSION, .ciphers = "ECDHE-ECDSA-AES128-SHA256"},
                    false,
                    "no shared cipher"}),
    [](const auto& info) { return info.param.name; });

struct AlpnCase {
  std::string name;
  std::string offer;  // wire format
  std::string selected;
};
// gtest prints the case by its name (not as a byte dump) in test listings and failures.
void PrintTo(const AlpnCase& c, std::ostream* os) { *os << c.name; }

class Alpn : public ::testing::TestWithParam<AlpnCase> {};

TEST_P(Alpn, SelectsHttp11OrNothing) {
  static const auto server = mustBuild(listener({{"a.pem", "a.key"}}));
  auto client = testkit::clientContext({.alpn = GetParam().offer});
  Connection c = connect(*server, client.get(), "a.test");
  ASSERT_TRUE(c.result.ok) << c.result.clientError << " / " << c.result.serverError;
  EXPECT_EQ(testkit::negotiatedAlpn(c.client.get()), GetParam().selected);
  EXPECT_EQ(testkit::negotiatedAlpn(c.server.get()), GetParam().selected);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Alpn,
    ::testing::Values(AlpnCase{"OnlyHttp11", std::string("\x08http/1.1"), "http/1.1"},
                      AlpnCase{"H2FirstThenHttp11", std::string("\x02h2\x08http/1.1"), "http/1.1"},
                      // No overlap: the handshake goes on without ALPN (nginx does the same).
                      AlpnCase{"OnlyH2GoesOnWithout", std::string("\x02h2"), ""},
                      AlpnCase{"NoneOffered", "", ""}),
    [](const auto& info) { return info.param.name; });

TEST(ServerContext, NoAlpnConfiguredAnswersNone) {
  conf::ListenerTls config = listener({{"a.pem", "a.key"}});
  config.alpn.clear();
  auto server = mustBuild(config);
  auto client = testkit::clientContext({.alpn = std::string("\x08http/1.1")});
  Connection c = connect(*server, client.get(), "a.test");
  ASSERT_TRUE(c.result.ok);
  EXPECT_EQ(testkit::negotiatedAlpn(c.client.get()), "");
}

struct ClientCertCase {
  std::string name;
  conf::ClientCertMode mode;
  std::string cert, key;  // the client's, under Pki; empty: none
  bool ok;
  std::string subject;      // peerSubject when ok
  std::string serverError;  // when !ok
};
// gtest prints the case by its name (not as a byte dump) in test listings and failures.
void PrintTo(const ClientCertCase& c, std::ostream* os) { *os << c.name; }

class ClientCertificates : public ::testing::TestWithParam<ClientCertCase> {};

TEST_P(ClientCertificates, AreAskedForAndVerified) {
  const ClientCertCase& c = GetParam();
  conf::ListenerTls config = listener({{"a.pem", "a.key"}});
  config.clientCert = c.mode;
  config.clientCa = file("client-ca.pem");
  auto server = mustBuild(config);
  ASSERT_NE(server, nullptr);
  auto client = testkit::clientContext({.cert = c.cert, .key = c.key});
  Connection conn = connect(*server, client.get(), "a.test");
  // TLS 1.3: the client is done before the server has checked its certificate, so the
  // outcome is the server's.
  ASSERT_EQ(conn.result.ok, c.ok) << conn.result.clientError << " / " << conn.result.serverError;
  if (c.ok) {
    EXPECT_EQ(ServerContext::peerSubject(conn.server.get()), c.subject);
  } else {
    EXPECT_EQ(conn.result.serverError, c.serverError);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ClientCertificates,
    ::testing::Values(
        ClientCertCase{"RequiredAndMissing", conf::ClientCertMode::Required, "", "", false, "",
                       "peer did not return a certificate"},
        ClientCertCase{"RequiredAndPresented", conf::ClientCertMode::Required, "client.pem",
                       "client.key", true, "CN=client,O=wsgate tests"},
        ClientCertCase{"RequiredFromAnotherCa", conf::ClientCertMode::Required, "rogue.pem",
                       "rogue.key", false, "", "certificate verify failed"},
        ClientCertCase{"OptionalAndMissing", conf::ClientCertMode::Optional, "", "", true, ""},
        ClientCertCase{"OptionalAndPresented", conf::ClientCertMode::Optional, "client.pem",
                       "client.key", true, "CN=client,O=wsgate tests"},
        // An invalid certificate fails even when certificates are optional.
        ClientCertCase{"OptionalFromAnotherCa", conf::ClientCertMode::Optional, "rogue.pem",
                       "rogue.key", false, "", "certificate verify failed"},
        // Not asked for, so not sent.
        ClientCertCase{"OffNeverAsks", conf::ClientCertMode::Off, "client.pem", "client.key", true,
                       ""}),
    [](const auto& info) { return info.param.name; });

TEST(ServerContext, SendsTheClientCaNamesItAccepts) {
  conf::ListenerTls config = listener({{"a.pem", "a.key"}});
  config.clientCert = conf::ClientCertMode::Optional;
  config.clientCa = file("client-ca.pem");
  auto server = mustBuild(config);
  auto client = testkit::clientContext({});
  Connection c = connect(*server, client.get(), "a.test");
  ASSERT_TRUE(c.result.ok);
  STACK_OF(X509_NAME)* names = SSL_get_client_CA_list(c.client.get());
  ASSERT_NE(names, nullptr);
  ASSERT_EQ(sk_X509_NAME_num(names), 1);
  char cn[64] = {};
  X509_NAME_get_text_by_NID(sk_X509_NAME_value(names, 0), NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "wsgate client ca");
}

// ---------------------------------------------------------------------------------------
// Resumption: tickets are sealed by the process-wide key ring, so a context rebuilt from the
// same config (a reload) resumes them, until the keys that sealed them have aged out.

class Resumption : public ::testing::TestWithParam<int> {
protected:
  ClientOptions clientOptions() const { return {.maxVersion = GetParam()}; }

  // A session from a first connection to a context built from `config`.
  SslSessionPtr firstSession(const conf::ListenerTls& config, SSL_CTX* client) {
    auto server = mustBuild(config);
    Connection c = connect(*server, client, "a.test");
    EXPECT_TRUE(c.result.ok) << c.result.clientError << " / " << c.result.serverError;
    EXPECT_FALSE(SSL_session_reused(c.client.get()));
    auto session = testkit::takeSession(c.client.get());
    // So that a refusal later is the server's doing.
    EXPECT_TRUE(session && SSL_SESSION_is_resumable(session.get()));
    return session;
  }

  // Whether a second connection, to a new context built from `config`, resumed `session`.
  bool resumes(const conf::ListenerTls& config, SSL_CTX* client, SSL_SESSION* session) {
    auto server = mustBuild(config);
    Connection c = connect(*server, client, "a.test", session);
    EXPECT_TRUE(c.result.ok) << c.result.clientError << " / " << c.result.serverError;
    EXPECT_EQ(SSL_session_reused(c.client.get()), SSL_session_reused(c.server.get()));
    return SSL_session_reused(c.client.get()) == 1;
  }
};

TEST_P(Resumption, WorksOnAContextRebuiltFromTheSameConfig) {
  auto client = testkit::clientContext(clientOptions());
  const auto config = listener({{"a.pem", "a.key"}});
  auto session = firstSession(config, client.get());
  EXPECT_TRUE(resumes(config, client.get(), session.get()));
}

TEST_P(Resumption, WorksWhileTheSealingKeyIsOneOfTheTwoPrevious) {
  auto client = testkit::clientContext(clientOptions());
  const auto config = listener({{"a.pem", "a.key"}});
  auto session = firstSession(config, client.get());
  TicketKeys::instance().advanceClockForTesting(TicketKeys::kRotation * 2);
  EXPECT_TRUE(resumes(config, client.get(), session.get()));
}

TEST_P(Resumption, FallsBackToAFullHandshakeOnceTheKeyAgedOut) {
  auto client = testkit::clientContext(clientOptions());
  const auto config = listener({{"a.pem", "a.key"}});
  auto session = firstSession(config, client.get());
  TicketKeys::instance().advanceClockForTesting(TicketKeys::kRotation * 3);
  EXPECT_FALSE(resumes(config, client.get(), session.get()));
}

// A ticket from a listener that asks for no client certificate must not get a client past
// one that requires it: the session id context differs.
TEST_P(Resumption, DoesNotCrossIntoAListenerRequiringClientCertificates) {
  auto client =
      testkit::clientContext({.maxVersion = GetParam(), .cert = "client.pem", .key = "client.key"});
  auto open = listener({{"a.pem", "a.key"}});
  auto session = firstSession(open, client.get());
  auto strict = open;
  strict.clientCert = conf::ClientCertMode::Required;
  strict.clientCa = file("client-ca.pem");
  EXPECT_FALSE(resumes(strict, client.get(), session.get()));
}

TEST_P(Resumption, KeepsTheVerifiedClientSubject) {
  auto client =
      testkit::clientContext({.maxVersion = GetParam(), .cert = "client.pem", .key = "client.key"});
  auto config = listener({{"a.pem", "a.key"}});
  config.clientCert = conf::ClientCertMode::Required;
  config.clientCa = file("client-ca.pem");
  auto session = firstSession(config, client.get());
  auto server = mustBuild(config);
  Connection c = connect(*server, client.get(), "a.test", session.get());
  ASSERT_TRUE(c.result.ok);
  EXPECT_TRUE(SSL_session_reused(c.server.get()));
  EXPECT_EQ(ServerContext::peerSubject(c.server.get()), "CN=client,O=wsgate tests");
}

INSTANTIATE_TEST_SUITE_P(Versions, Resumption, ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION),
                         [](const auto& info) {
                           return info.param == TLS1_2_VERSION ? "Tls12" : "Tls13";
                         });

TEST(ServerContext, ConfiguresTheContextAsDocumented) {
  conf::ListenerTls config = listener({{"a.pem", "a.key"}});
  config.ktls = true;
  auto server = mustBuild(config);
  SslPtr ssl = server->newSsl();
  ASSERT_NE(ssl, nullptr);
  EXPECT_FALSE(SSL_is_init_finished(ssl.get()));
  EXPECT_TRUE(SSL_is_server(ssl.get()));
  const uint64_t options = SSL_get_options(ssl.get());
  for (uint64_t want :
       {SSL_OP_NO_RENEGOTIATION, SSL_OP_IGNORE_UNEXPECTED_EOF, SSL_OP_CIPHER_SERVER_PREFERENCE,
        SSL_OP_NO_COMPRESSION, SSL_OP_ENABLE_KTLS}) {
    EXPECT_EQ(options & want, want) << std::hex << want;
  }
  EXPECT_EQ(options & SSL_OP_NO_TICKET, 0u);
  const long mode = SSL_get_mode(ssl.get());
  for (long want : {SSL_MODE_RELEASE_BUFFERS, SSL_MODE_ENABLE_PARTIAL_WRITE,
                    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER}) {
    EXPECT_EQ(mode & want, want) << want;
  }
  SSL_CTX* ctx = SSL_get_SSL_CTX(ssl.get());
  EXPECT_EQ(SSL_CTX_get_session_cache_mode(ctx), SSL_SESS_CACHE_OFF);
  EXPECT_EQ(SSL_CTX_get_num_tickets(ctx), 1u);
  EXPECT_EQ(SSL_CTX_get_read_ahead(ctx), 0);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
  EXPECT_EQ(SSL_get_verify_mode(ssl.get()), SSL_VERIFY_NONE);
}

TEST(ServerContext, PeerSubjectIsEmptyWithoutAClientCertificate) {
  auto server = mustBuild(listener({{"a.pem", "a.key"}}));
  SslPtr ssl = server->newSsl();
  EXPECT_EQ(ServerContext::peerSubject(ssl.get()), "");
}

// ---------------------------------------------------------------------------------------
// ClientContext: wss towards backends, against a ServerContext standing in for a backend.

struct BackendCase {
  std::string name;
  conf::BackendTls config;  // ca/cert/key under Pki
  std::string host;         // passed to newSsl
  bool ok;
  long verifyResult = X509_V_OK;
  std::string sniSeen;  // what the server got as SNI ("" = none)
};
// gtest prints the case by its name (not as a byte dump) in test listings and failures.
void PrintTo(const BackendCase& c, std::ostream* os) { *os << c.name; }

conf::BackendTls backendTls(conf::BackendTls config) {
  if (!config.ca.empty()) config.ca = file(config.ca);
  if (!config.cert.empty()) config.cert = file(config.cert);
  if (!config.key.empty()) config.key = file(config.key);
  config.mark = {"t.yaml", 20, 5};
  return config;
}

std::unique_ptr<ClientContext> mustBuild(const conf::BackendTls& config) {
  std::vector<Problem> errors, warnings;
  auto context = ClientContext::build(backendTls(config), errors, warnings);
  EXPECT_TRUE(errors.empty()) << listProblems(errors);
  EXPECT_TRUE(warnings.empty()) << listProblems(warnings);
  return context;
}

// A backend with the IP certificate as its default and the named ones for SNI.
const ServerContext& backend() {
  static const auto server =
      mustBuild(listener({{"ip.pem", "ip.key"}, {"a.pem", "a.key"}, {"wild.pem", "wild.key"}}));
  return *server;
}

Connection connect(const ClientContext& client, std::string_view host,
                   SSL_SESSION* session = nullptr) {
  Connection c;
  c.client = client.newSsl(host, session);
  c.server = backend().newSsl();
  if (c.client) c.result = testkit::handshake(c.client.get(), c.server.get());
  return c;
}

class Backend : public ::testing::TestWithParam<BackendCase> {};

TEST_P(Backend, VerifiesWhatItConnectsTo) {
  const BackendCase& c = GetParam();
  auto client = mustBuild(c.config);
  ASSERT_NE(client, nullptr);
  Connection conn = connect(*client, c.host);
  ASSERT_NE(conn.client, nullptr);
  EXPECT_EQ(conn.result.ok, c.ok) << conn.result.clientError << " / " << conn.result.serverError;
  EXPECT_EQ(SSL_get_verify_result(conn.client.get()), c.verifyResult)
      << X509_verify_cert_error_string(SSL_get_verify_result(conn.client.get()));
  const char* sni = SSL_get_servername(conn.server.get(), TLSEXT_NAMETYPE_host_name);
  EXPECT_EQ(sni ? std::string(sni) : "", c.sniSeen);
  if (c.ok) {
    EXPECT_EQ(testkit::negotiatedAlpn(conn.client.get()), "http/1.1");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Backend,
    ::testing::Values(
        BackendCase{"RightCaAndName", {.ca = "root.pem"}, "a.test", true, X509_V_OK, "a.test"},
        BackendCase{"WildcardName", {.ca = "root.pem"}, "x.b.test", true, X509_V_OK, "x.b.test"},
        BackendCase{"WrongCa",
                    {.ca = "other-root.pem"},
                    "a.test",
                    false,
                    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                    "a.test"},
        // Our root is in no system store.
        BackendCase{"SystemCasByDefault",
                    {},
                    "a.test",
                    false,
                    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                    "a.test"},
        // unknown.test gets the default (IP) certificate, which does not name it.
        BackendCase{"WrongName",
                    {.ca = "root.pem"},
                    "unknown.test",
                    false,
                    X509_V_ERR_HOSTNAME_MISMATCH,
                    "unknown.test"},
        BackendCase{"WildcardCoversOneLabelOnly",
                    {.ca = "root.pem"},
                    "y.x.b.test",
                    false,
                    X509_V_ERR_HOSTNAME_MISMATCH,
                    "y.x.b.test"},
        BackendCase{
            "IpLiteralVerifiedWithoutSni", {.ca = "root.pem"}, "127.0.0.1", true, X509_V_OK, ""},
        BackendCase{
            "Ipv6LiteralVerifiedWithoutSni", {.ca = "root.pem"}, "::1", true, X509_V_OK, ""},
        BackendCase{"WrongIpLiteral",
                    {.ca = "root.pem"},
                    "127.0.0.2",
                    false,
                    X509_V_ERR_IP_ADDRESS_MISMATCH,
                    ""},
        BackendCase{"SniOverridesHost",
                    {.ca = "root.pem", .sni = "a.test"},
                    "127.0.0.1",
                    true,
                    X509_V_OK,
                    "a.test"},
        BackendCase{"NoVerifyAcceptsAnyCertificate",
                    {.verify = false, .ca = "other-root.pem"},
                    "unknown.test",
                    true,
                    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,  // noted, not enforced
                    "unknown.test"}),
    [](const auto& info) { return info.param.name; });

TEST(ClientContext, RefusesToVerifyWithoutAName) {
  auto client = mustBuild(conf::BackendTls{.ca = "root.pem"});
  EXPECT_EQ(client->newSsl("", nullptr), nullptr);
}

TEST(ClientContext, PresentsItsCertificateToABackendThatRequiresOne) {
  conf::ListenerTls strict = listener({{"a.pem", "a.key"}});
  strict.clientCert = conf::ClientCertMode::Required;
  strict.clientCa = file("client-ca.pem");
  auto server = mustBuild(strict);
  auto client =
      mustBuild(conf::BackendTls{.ca = "root.pem", .cert = "client.pem", .key = "client.key"});
  SslPtr c = client->newSsl("a.test", nullptr);
  SslPtr s = server->newSsl();
  auto result = testkit::handshake(c.get(), s.get());
  ASSERT_TRUE(result.ok) << result.clientError << " / " << result.serverError;
  EXPECT_EQ(ServerContext::peerSubject(s.get()), "CN=client,O=wsgate tests");
}

TEST(ClientContext, ResumesASessionItIsGiven) {
  auto client = mustBuild(conf::BackendTls{.ca = "root.pem"});
  Connection first = connect(*client, "a.test");
  ASSERT_TRUE(first.result.ok);
  EXPECT_FALSE(SSL_session_reused(first.client.get()));
  auto session = testkit::takeSession(first.client.get());
  ASSERT_TRUE(SSL_SESSION_is_resumable(session.get()));
  Connection second = connect(*client, "a.test", session.get());
  ASSERT_TRUE(second.result.ok);
  EXPECT_TRUE(SSL_session_reused(second.client.get()));
}

TEST(ClientContext, RespectsItsVersionFloor) {
  auto client = mustBuild(conf::BackendTls{.ca = "root.pem", .minVersion = conf::TlsVersion::V1_3});
  SslPtr ssl = client->newSsl("a.test", nullptr);
  EXPECT_EQ(SSL_get_min_proto_version(ssl.get()), TLS1_3_VERSION);
  EXPECT_EQ(SSL_get_verify_mode(ssl.get()), SSL_VERIFY_PEER);
  EXPECT_EQ(SSL_get_mode(ssl.get()) & SSL_MODE_RELEASE_BUFFERS, SSL_MODE_RELEASE_BUFFERS);
}

struct BackendErrorCase {
  std::string name;
  conf::BackendTls config;
  std::vector<std::string> says;
};
// gtest prints the case by its name (not as a byte dump) in test listings and failures.
void PrintTo(const BackendErrorCase& c, std::ostream* os) { *os << c.name; }

class BackendBuildError : public ::testing::TestWithParam<BackendErrorCase> {};

TEST_P(BackendBuildError, IsReportedWithItsFile) {
  std::vector<Problem> errors, warnings;
  auto client = ClientContext::build(backendTls(GetParam().config), errors, warnings);
  EXPECT_EQ(client, nullptr);
  ASSERT_EQ(errors.size(), 1u) << listProblems(errors);
  EXPECT_EQ(errors[0].mark.line, 20);
  for (const auto& part : GetParam().says) {
    EXPECT_NE(errors[0].message.find(part), std::string::npos)
        << "'" << part << "' not in: " << errors[0].message;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BackendBuildError,
    ::testing::Values(
        BackendErrorCase{"MissingCa", {.ca = "missing-ca.pem"}, {"missing-ca.pem", "No such"}},
        BackendErrorCase{"GarbageCa", {.ca = "garbage.pem"}, {"garbage.pem", "no PEM CA"}},
        BackendErrorCase{
            "CertWithoutKey", {.ca = "root.pem", .cert = "client.pem"}, {"cert and key"}},
        BackendErrorCase{"KeyOfAnotherCertificate",
                         {.ca = "root.pem", .cert = "client.pem", .key = "other.key"},
                         {"other.key", "does not match", "client.pem"}}),
    [](const auto& info) { return info.param.name; });

TEST(ClientContext, WarnsAboutAnExpiredClientCertificate) {
  std::vector<Problem> errors, warnings;
  auto client = ClientContext::build(
      backendTls({.ca = "root.pem", .cert = "expired.pem", .key = "expired.key"}), errors,
      warnings);
  EXPECT_NE(client, nullptr);
  ASSERT_EQ(warnings.size(), 1u) << listProblems(warnings);
  EXPECT_NE(warnings[0].message.find("expired.pem: certificate expired"), std::string::npos);
}

}  // namespace
}  // namespace wsgate::tls
