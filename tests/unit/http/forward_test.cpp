// Forwarded heads: each row parses a head with the real parser and compares the exact bytes
// wsgate would send on, so the hop-by-hop rules and X-Forwarded-* handling are visible at once.

#include "proxy/http/forward.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/http/request_parser.h"
#include "proxy/http/response_parser.h"

namespace wsgate::http {
namespace {

struct RequestCase {
  std::string_view name;
  std::string_view input;
  std::string_view expected;
  bool websocket = false;
  std::string_view clientIp = "10.0.0.5";  // empty: the peer has no address to report
  std::string_view proto = "https";
  std::string_view clientCertSubject = {};
};

void PrintTo(const RequestCase& c, std::ostream* os) { *os << c.name; }

const std::vector<RequestCase>& requestCases() {
  static const std::vector<RequestCase> kCases = {
      {"AddsForwardedFieldsToPlainGet", "GET /a?b HTTP/1.1\r\nHost: example.com\r\n\r\n",
       "GET /a?b HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"KeepsEndToEndFieldsInOrderAndCase",
       "GET / HTTP/1.1\r\nuser-agent: t\r\nHost: example.com\r\nAccept: */*\r\nX-Empty:\r\n\r\n",
       "GET / HTTP/1.1\r\nuser-agent: t\r\nHost: example.com\r\nAccept: */*\r\nX-Empty: \r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"AppendsClientIpToExistingXForwardedFor",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"JoinsRepeatedXForwardedForFields",
       "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: example.com\r\n"
       "x-forwarded-for: 2.2.2.2\r\nX-Forwarded-For:\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"ReplacesClientForwardedProtoAndHost",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-Proto: http\r\n"
       "X-Forwarded-Host: evil.example\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"DoesNotLetConnectionStripForwardedFields",  // Traefik CVE-2024-45410
       "GET / HTTP/1.1\r\nHost: example.com\r\n"
       "Connection: close, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host\r\n"
       "X-Forwarded-For: 1.1.1.1\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"DropsAClientCertHeaderTheClientSent",  // only wsgate vouches for a certificate
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-Client-Cert: Subject=\"CN=admin\"\r\n"
       "x-forwarded-client-cert: By=x\r\nConnection: X-Forwarded-Client-Cert\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"SetsTheVerifiedClientCertSubjectQuoted",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-Client-Cert: "
       "Subject=\"CN=admin\"\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "X-Forwarded-Client-Cert: Subject=\"CN=a \\\"b\\\"\\\\,O=x?\"\r\n"
       "Connection: keep-alive\r\n\r\n",
       false, "10.0.0.5", "https", "CN=a \"b\"\\,O=x\x01"},
      {"DoesNotLetConnectionStripHostOrContentLength",
       "POST / HTTP/1.1\r\nHost: example.com\r\nConnection: Host, Content-Length\r\n"
       "Content-Length: 3\r\n\r\n",
       "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"StripsFieldsNamedInConnection",
       "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: x-secret\r\nX-Secret: 1\r\n"
       "Connection: X-Other\r\nX-Other: 2\r\nX-Kept: 3\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Kept: 3\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"StripsHopByHopFields",
       "GET / HTTP/1.1\r\nHost: example.com\r\nKeep-Alive: timeout=5\r\n"
       "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Sum\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"NeverForwardsH2cUpgrade",
       "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"DropsWebsocketUpgradeThatWasNotValidated",
       "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"RegeneratesValidatedWebsocketUpgrade",
       "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: WebSocket, foo\r\n"
       "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       "Sec-WebSocket-Version: 13\r\n\r\n",
       "GET /ws HTTP/1.1\r\nHost: example.com\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       "Sec-WebSocket-Version: 13\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
       true},
      {"SendsChunkedTransferEncodingForChunkedBody",
       "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: example.com\r\n\r\n",
       "POST / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"},
      {"NormalisesContentLength",
       "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 007\r\n\r\n",
       "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 7\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"SendsHttp10RequestAsHttp10WithHost", "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n",
       "GET / HTTP/1.0\r\nAccept: */*\r\nHost: \r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nConnection: keep-alive\r\n\r\n"},
      {"SendsAbsoluteFormAsOriginForm",
       "GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
       "GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"GivesPathlessAbsoluteFormARootPath", "GET http://example.com?x HTTP/1.0\r\n\r\n",
       "GET /?x HTTP/1.0\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"GivesBareAbsoluteFormARootPath",
       "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"StripsAOneLetterAuthority", "GET http://a/p HTTP/1.1\r\nHost: a\r\n\r\n",
       "GET /p HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: a\r\nConnection: keep-alive\r\n\r\n"},
      {"SendsTheTargetAuthorityAsHost",
       "GET http://Example.COM/p HTTP/1.1\r\nHost: example.com\r\n\r\n",
       "GET /p HTTP/1.1\r\nHost: Example.COM\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: Example.COM\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"KeepsTheClientsChainWhenThePeerHasNoAddress",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.1.1.1\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n",
       false, "", ""},
      {"SendsNoForwardedForOrProtoWithoutEither", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n",
       false, "", ""},
      {"KeepsAsteriskForm", "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n",
       "OPTIONS * HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Connection: keep-alive\r\n\r\n"},
  };
  return kCases;
}

class ForwardRequestTest : public testing::TestWithParam<RequestCase> {};

TEST_P(ForwardRequestTest, WritesTheExpectedHead) {
  const RequestCase& c = GetParam();
  RequestHead req;
  ASSERT_EQ(parseRequestHead(c.input, ParseLimits{}, req).status, ParseStatus::Complete);
  std::string out = "prefix:";  // appends, never overwrites
  appendForwardedRequest(req, ForwardInfo{c.clientIp, c.proto, c.websocket, c.clientCertSubject},
                         out);
  EXPECT_EQ(out, "prefix:" + std::string(c.expected));
}

// What wsgate sends must itself pass wsgate's strict parser, with the same framing.
TEST_P(ForwardRequestTest, WritesAHeadTheParserAccepts) {
  const RequestCase& c = GetParam();
  RequestHead req;
  ASSERT_EQ(parseRequestHead(c.input, ParseLimits{}, req).status, ParseStatus::Complete);
  std::string out;
  appendForwardedRequest(req, ForwardInfo{c.clientIp, c.proto, c.websocket, c.clientCertSubject},
                         out);
  RequestHead again;
  const ParseResult r = parseRequestHead(out, ParseLimits{}, again);
  ASSERT_EQ(r.status, ParseStatus::Complete) << r.errorReason;
  EXPECT_EQ(r.headBytes, out.size());
  EXPECT_EQ(again.body, req.body);
  EXPECT_EQ(again.contentLength, req.contentLength);
  EXPECT_EQ(again.upgradeWebsocket, c.websocket);
  EXPECT_EQ(again.host, req.host);
}

INSTANTIATE_TEST_SUITE_P(Table, ForwardRequestTest, testing::ValuesIn(requestCases()),
                         [](const testing::TestParamInfo<RequestCase>& info) {
                           return std::string(info.param.name);
                         });

// ---- header edits (Lua's set_headers / remove_headers) ------------------------------------

using FieldList = std::vector<std::pair<std::string, std::string>>;

struct EditCase {
  std::string_view name;
  std::string_view input;
  FieldList set;
  std::vector<std::string> remove;
  std::string_view expected;
  bool websocket = false;
};

void PrintTo(const EditCase& c, std::ostream* os) { *os << c.name; }

const std::vector<EditCase>& editCases() {
  static const std::vector<EditCase> kCases = {
      {"SetAddsAnAbsentFieldAfterTheClientsFields",
       "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
       {{"x-tenant", "blue"}},
       {},
       "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nx-tenant: blue\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"SetReplacesAFieldWhateverItsCase",
       "GET / HTTP/1.1\r\nX-Tenant: red\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
       {{"x-tenant", "blue"}},
       {},
       "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nx-tenant: blue\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"SetReplacesRepeatedFieldsWithOne",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\nAccept: */*\r\nx-a: 2\r\nX-A: 3\r\n\r\n",
       {{"x-a", "only"}},
       {},
       "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nx-a: only\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"SetFieldsKeepTheScriptsOrder",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-B: old\r\n\r\n",
       {{"x-c", "3"}, {"x-b", "2"}, {"x-a", "1"}},
       {},
       "GET / HTTP/1.1\r\nHost: example.com\r\nx-c: 3\r\nx-b: 2\r\nx-a: 1\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"RemoveDropsEveryFieldOfThatName",
       "GET / HTTP/1.1\r\nCookie: a=1\r\nHost: example.com\r\nCOOKIE: b=2\r\nAccept: */*\r\n"
       "cookie: c=3\r\n\r\n",
       {},
       {"cookie"},
       "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"RemoveOfAnAbsentFieldChangesNothing",
       "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
       {},
       {"x-debug"},
       "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"SetAndRemoveTogether",
       "GET / HTTP/1.1\r\nHost: example.com\r\nX-Debug: 1\r\nX-Tenant: red\r\n\r\n",
       {{"x-tenant", "blue"}},
       {"x-debug"},
       "GET / HTTP/1.1\r\nHost: example.com\r\nx-tenant: blue\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"SetHostSendsTheNewHostOnceAndForwardsTheClientsAsXForwardedHost",
       "GET /a HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
       {{"host", "internal.svc:8080"}},
       {},
       "GET /a HTTP/1.1\r\nAccept: */*\r\nhost: internal.svc:8080\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"SetHostReplacesAnAbsoluteFormAuthority",
       "GET http://example.com/p HTTP/1.1\r\nHost: example.com\r\n\r\n",
       {{"host", "internal.svc"}},
       {},
       "GET /p HTTP/1.1\r\nhost: internal.svc\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"SetHostOnAnHttp10RequestWithoutOne",
       "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n",
       {{"host", "internal.svc"}},
       {},
       "GET / HTTP/1.0\r\nAccept: */*\r\nhost: internal.svc\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\nConnection: keep-alive\r\n\r\n"},
      // A request always carries Host (RFC 9112 3.2): removing it sends the client's again.
      {"RemoveHostStillSendsTheClientsHost",
       "GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
       {},
       {"host"},
       "GET / HTTP/1.1\r\nAccept: */*\r\nHost: example.com\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"RemoveHostAfterSetHostKeepsTheSetOne",
       "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
       {{"host", "internal.svc"}},
       {"host"},
       "GET / HTTP/1.1\r\nhost: internal.svc\r\n"
       "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\n"
       "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n"},
      {"EditsKeepTheWebsocketHandshake",
       "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
       "Sec-WebSocket-Extensions: permessage-deflate\r\nX-Tenant: red\r\n\r\n",
       {{"x-tenant", "blue"}},
       {"sec-websocket-extensions"},
       "GET /ws HTTP/1.1\r\nHost: example.com\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       "Sec-WebSocket-Version: 13\r\nx-tenant: blue\r\nX-Forwarded-For: 10.0.0.5\r\n"
       "X-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
       "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
       true},
  };
  return kCases;
}

ForwardInfo editInfo(const EditCase& c) {
  return ForwardInfo{"10.0.0.5", "https", c.websocket, {}, HeaderEdits{c.set, c.remove}};
}

class ForwardEditsTest : public testing::TestWithParam<EditCase> {};

TEST_P(ForwardEditsTest, WritesTheExpectedHead) {
  const EditCase& c = GetParam();
  RequestHead req;
  ASSERT_EQ(parseRequestHead(c.input, ParseLimits{}, req).status, ParseStatus::Complete);
  std::string out;
  appendForwardedRequest(req, editInfo(c), out);
  EXPECT_EQ(out, c.expected);
}

// The edited head still passes the strict parser (one Host, no broken field) with the Host the
// script set, or the client's when it set none.
TEST_P(ForwardEditsTest, WritesAHeadTheParserAcceptsWithTheEditedHost) {
  const EditCase& c = GetParam();
  RequestHead req;
  ASSERT_EQ(parseRequestHead(c.input, ParseLimits{}, req).status, ParseStatus::Complete);
  std::string out;
  appendForwardedRequest(req, editInfo(c), out);
  RequestHead again;
  const ParseResult r = parseRequestHead(out, ParseLimits{}, again);
  ASSERT_EQ(r.status, ParseStatus::Complete) << r.errorReason;
  EXPECT_EQ(r.headBytes, out.size());
  std::string_view host = req.host;
  for (const auto& [name, value] : c.set) {
    if (name == "host") host = value;
  }
  EXPECT_EQ(again.host, host);
  EXPECT_EQ(again.upgradeWebsocket, c.websocket);
  for (const std::string& name : c.remove) {
    if (name == "host") continue;
    EXPECT_EQ(findHeader(again.headers, name), nullptr) << name << " was removed";
  }
}

INSTANTIATE_TEST_SUITE_P(Table, ForwardEditsTest, testing::ValuesIn(editCases()),
                         [](const testing::TestParamInfo<EditCase>& info) {
                           return std::string(info.param.name);
                         });

// The fields wsgate writes itself are not the client's to edit: removing them changes nothing
// of what wsgate sends (the scripting layer refuses such names; this is the second line).
TEST(ForwardEdits, RemovingWsgatesOwnFieldsChangesNothing) {
  constexpr std::string_view kInput =
      "GET /ws HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 1.1.1.1\r\n"
      "X-Forwarded-Proto: http\r\nX-Forwarded-Host: other.example\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  RequestHead req;
  ASSERT_EQ(parseRequestHead(kInput, ParseLimits{}, req).status, ParseStatus::Complete);
  const std::vector<std::string> remove = {"x-forwarded-for",  "x-forwarded-proto",
                                           "x-forwarded-host", "x-forwarded-client-cert",
                                           "upgrade",          "connection"};
  for (bool websocket : {true, false}) {
    SCOPED_TRACE(websocket ? "websocket" : "plain");
    std::string unedited;
    appendForwardedRequest(req, ForwardInfo{"10.0.0.5", "https", websocket, "CN=c"}, unedited);
    std::string edited;
    appendForwardedRequest(
        req, ForwardInfo{"10.0.0.5", "https", websocket, "CN=c", HeaderEdits{{}, remove}}, edited);
    EXPECT_EQ(edited, unedited);
    EXPECT_NE(edited.find("X-Forwarded-For: 1.1.1.1, 10.0.0.5\r\n"), std::string::npos);
    EXPECT_NE(edited.find("X-Forwarded-Proto: https\r\n"), std::string::npos);
    EXPECT_NE(edited.find("X-Forwarded-Host: example.com\r\n"), std::string::npos);
    EXPECT_NE(edited.find("X-Forwarded-Client-Cert: Subject=\"CN=c\"\r\n"), std::string::npos);
    EXPECT_NE(edited.find(websocket ? "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                    : "Connection: keep-alive\r\n"),
              std::string::npos);
  }
}

// Empty edits are the unedited head, byte for byte, for every head of the main table.
TEST(ForwardEdits, EmptyEditsChangeNothing) {
  for (const RequestCase& c : requestCases()) {
    SCOPED_TRACE(std::string(c.name));
    RequestHead req;
    ASSERT_EQ(parseRequestHead(c.input, ParseLimits{}, req).status, ParseStatus::Complete);
    const std::vector<std::pair<std::string, std::string>> noSet;
    const std::vector<std::string> noRemove;
    std::string out;
    appendForwardedRequest(
        req, ForwardInfo{c.clientIp, c.proto, c.websocket, c.clientCertSubject, {noSet, noRemove}},
        out);
    EXPECT_EQ(out, c.expected);
  }
}

struct ResponseCase {
  std::string_view name;
  std::string_view input;
  std::string_view expected;
  bool clientKeepAlive = true;
  std::string_view extraHeaders = "";
};

void PrintTo(const ResponseCase& c, std::ostream* os) { *os << c.name; }

const std::vector<ResponseCase>& responseCases() {
  static const std::vector<ResponseCase> kCases = {
      {"KeepsClientAliveWithContentLength",
       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
       "Connection: keep-alive\r\n\r\n"},
      {"ClosesWhenClientIsNotKeptAlive", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", false},
      {"SendsHttp10ResponseAsHttp11", "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n",
       "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"},
      {"KeepsEmptyReason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
       "HTTP/1.1 200 \r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"},
      {"KeepsChunkedTransferEncoding",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n",
       "HTTP/1.1 200 OK\r\nX: y\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"},
      {"KeepsEveryCodingBeforeChunked",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: keep-alive\r\n\r\n"},
      {"ClosesClientForBodyThatEndsAtClose", "HTTP/1.1 200 OK\r\nX: y\r\n\r\n",
       "HTTP/1.1 200 OK\r\nX: y\r\nConnection: close\r\n\r\n"},
      {"KeepsCodingsOfBodyThatEndsAtClose", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n"},
      {"RegeneratesUpgradeFor101",
       "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: upgrade\r\n"
       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
       "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
       "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
      {"SendsNoConnectionFieldOnInterimResponse", "HTTP/1.1 100 Continue\r\n\r\n",
       "HTTP/1.1 100 Continue\r\n\r\n"},
      {"SendsNoConnectionFieldOnTheLastInterimStatus", "HTTP/1.1 199 Odd\r\n\r\n",
       "HTTP/1.1 199 Odd\r\n\r\n"},
      {"DropsContentLengthFromInterimResponse",
       "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n", "HTTP/1.1 100 Continue\r\n\r\n"},
      {"SkipsEmptyTransferEncodingFields",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding:\r\nTransfer-Encoding: chunked\r\n\r\n",
       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"},
      // RFC 9112 6.1: no Transfer-Encoding in a 1xx or 204; the backend's is not relayed.
      {"DropsTransferEncodingFrom204",
       "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
       "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"},
      {"DropsContentLengthFrom204", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
       "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"},
      {"KeepsContentLengthOn304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
       "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nConnection: keep-alive\r\n\r\n"},
      {"StripsHopByHopResponseFields",
       "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Internal, Content-Length\r\n"
       "Keep-Alive: timeout=5\r\nX-Internal: secret\r\nContent-Length: 0\r\n\r\n",
       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"},
      {"AppendsExtraHeadersLast", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\nX-Served-By: c1\r\n\r\n",
       true, "X-Served-By: c1\r\n"},
  };
  return kCases;
}

class ForwardResponseTest : public testing::TestWithParam<ResponseCase> {};

TEST_P(ForwardResponseTest, WritesTheExpectedHead) {
  const ResponseCase& c = GetParam();
  ResponseHead resp;
  ASSERT_EQ(parseResponseHead(c.input, ParseLimits{}, {}, resp).status, ParseStatus::Complete);
  std::string out;
  appendForwardedResponse(resp, c.clientKeepAlive, c.extraHeaders, out);
  EXPECT_EQ(out, c.expected);
}

TEST_P(ForwardResponseTest, WritesAHeadTheParserAcceptsWithTheSameFraming) {
  const ResponseCase& c = GetParam();
  ResponseHead resp;
  ASSERT_EQ(parseResponseHead(c.input, ParseLimits{}, {}, resp).status, ParseStatus::Complete);
  std::string out;
  appendForwardedResponse(resp, c.clientKeepAlive, c.extraHeaders, out);
  ResponseHead again;
  ASSERT_EQ(parseResponseHead(out, ParseLimits{}, {}, again).status, ParseStatus::Complete);
  EXPECT_EQ(again.status, resp.status);
  EXPECT_EQ(again.body, resp.body);
  // RFC 9110 8.6: 1xx and 204 lose their Content-Length on the way.
  const bool lengthDropped = resp.status < 200 || resp.status == 204;
  EXPECT_EQ(again.contentLength, lengthDropped ? 0 : resp.contentLength);
}

INSTANTIATE_TEST_SUITE_P(Table, ForwardResponseTest, testing::ValuesIn(responseCases()),
                         [](const testing::TestParamInfo<ResponseCase>& info) {
                           return std::string(info.param.name);
                         });

// sticky.cookie.indirect: wsgate's cookie leaves every Cookie field, the others are kept as
// sent, a field left with nothing is dropped; upgrades and plain requests alike.
struct RemoveCookieCase {
  std::string_view name;
  std::string_view fields;    // the request's header lines after Host
  std::string_view expected;  // the forwarded lines between Host and X-Forwarded-For
  bool websocket = false;
};

void PrintTo(const RemoveCookieCase& c, std::ostream* os) { *os << c.name; }

class ForwardRemoveCookieTest : public testing::TestWithParam<RemoveCookieCase> {};

TEST_P(ForwardRemoveCookieTest, ForwardsTheOtherCookiesOnly) {
  const RemoveCookieCase& c = GetParam();
  constexpr std::string_view kUpgrade =
      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
  const std::string input = std::string("GET /ws HTTP/1.1\r\nHost: example.com\r\n") +
                            std::string(c.fields) + std::string(c.websocket ? kUpgrade : "") +
                            "\r\n";
  RequestHead req;
  ASSERT_EQ(parseRequestHead(input, ParseLimits{}, req).status, ParseStatus::Complete);
  std::string out;
  appendForwardedRequest(req, ForwardInfo{"10.0.0.5", "https", c.websocket, {}, {}, "WSGATE"}, out);
  const std::string expected =
      std::string("GET /ws HTTP/1.1\r\nHost: example.com\r\n") + std::string(c.expected) +
      (c.websocket ? "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   : "") +
      "X-Forwarded-For: 10.0.0.5\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n" +
      (c.websocket ? "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   : "Connection: keep-alive\r\n") +
      "\r\n";
  EXPECT_EQ(out, expected);
}

INSTANTIATE_TEST_SUITE_P(
    Table, ForwardRemoveCookieTest,
    testing::Values(
        RemoveCookieCase{"OnlyOursDropsTheField", "Cookie: WSGATE=0123456789abcdef\r\n", ""},
        RemoveCookieCase{"OnlyOursOnAnUpgrade", "Cookie: WSGATE=0123456789abcdef\r\n", "", true},
        RemoveCookieCase{"OthersKeptOnAnUpgrade", "Cookie: a=1; WSGATE=v; b=\"x\"\r\n",
                         "Cookie: a=1; b=\"x\"\r\n", true},
        RemoveCookieCase{"FieldWithoutOursUntouched", "cookie: a=1;;b=2 \r\n",
                         "cookie: a=1;;b=2\r\n"},
        RemoveCookieCase{"SeveralFields",
                         "Cookie: a=1\r\nAccept: */*\r\nCOOKIE: WSGATE=v\r\n"
                         "cookie: WSGATE2=w; WSGATE=v; c=3\r\n",
                         "Cookie: a=1\r\nAccept: */*\r\ncookie: WSGATE2=w; c=3\r\n"},
        RemoveCookieCase{"SimilarNamesOnly", "Cookie: xWSGATE=1; WSGATE2=2\r\n",
                         "Cookie: xWSGATE=1; WSGATE2=2\r\n"}),
    [](const testing::TestParamInfo<RemoveCookieCase>& info) {
      return std::string(info.param.name);
    });

// Without removeCookie, wsgate's cookie reaches the backend like any other.
TEST(ForwardRemoveCookie, OffForwardsEveryCookie) {
  RequestHead req;
  ASSERT_EQ(parseRequestHead("GET / HTTP/1.1\r\nHost: h\r\nCookie: WSGATE=v; a=1\r\n\r\n",
                             ParseLimits{}, req)
                .status,
            ParseStatus::Complete);
  std::string out;
  appendForwardedRequest(req, ForwardInfo{"10.0.0.5", "https"}, out);
  EXPECT_NE(out.find("Cookie: WSGATE=v; a=1\r\n"), std::string::npos) << out;
}

TEST(IsHopByHop, NamesTheFixedHopByHopFieldsInAnyCase) {
  const std::vector<Header> none;
  for (std::string_view name : {"connection", "KEEP-ALIVE", "Proxy-Connection", "te", "Trailer",
                                "Transfer-Encoding", "upgrade", "HTTP2-Settings"}) {
    EXPECT_TRUE(isHopByHop(name, none)) << name;
  }
  EXPECT_FALSE(isHopByHop("Accept", none));
  EXPECT_FALSE(isHopByHop("Sec-WebSocket-Key", none));
}

TEST(IsHopByHop, FollowsConnectionOptionsButProtectsWhatWsgateRelies) {
  const std::vector<Header> headers = {
      {"Connection", "close, X-Secret"},
      {"Connection", "x-forwarded-for, HOST, content-length, x-forwarded-host"},
  };
  EXPECT_TRUE(isHopByHop("x-secret", headers));
  EXPECT_FALSE(isHopByHop("X-Forwarded-For", headers));
  EXPECT_FALSE(isHopByHop("X-Forwarded-Host", headers));
  EXPECT_FALSE(isHopByHop("X-Forwarded-Proto", {{"Connection", "X-Forwarded-Proto"}}));
  EXPECT_FALSE(isHopByHop("Host", headers));
  EXPECT_FALSE(isHopByHop("Content-Length", headers));
  EXPECT_FALSE(isHopByHop("Accept", headers));
}

}  // namespace
}  // namespace wsgate::http
