// Request-head parser: one table of inputs with the verdict each must get, then properties that
// hold for every row (the verdict is stable over prefixes) and the limits at their boundaries.

#include "proxy/http/request_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace wsgate::http {
namespace {

using namespace std::string_view_literals;

// What a valid request parses into. The defaults describe "GET / HTTP/1.1" to example.com.
struct Want {
  std::string_view method = "GET";
  std::string_view target = "/";
  std::string_view path = "/";
  std::string_view query = "";
  std::string_view host = "example.com";
  Version version = Version::Http11;
  BodyKind body = BodyKind::None;
  uint64_t contentLength = 0;
  bool keepAlive = true;
  bool expectContinue = false;
  bool upgradeWebsocket = false;
  bool hasUpgrade = false;
  std::size_t afterHead = 0;  // bytes of the input past the head (body, next request)
};

struct Case {
  std::string_view name;
  std::string_view input;
  ParseStatus status = ParseStatus::Complete;
  int errorStatus = 0;
  std::string_view errorReason{};  // with Error: the reason that names the rule broken
  Want want{};
};

// Test names stand for the rows in failure messages, instead of a byte dump.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

Case accepts(std::string_view name, std::string_view input, Want want = {}) {
  return {name, input, ParseStatus::Complete, 0, {}, want};
}
// The reason is checked too: a row must fail for the rule it names, not for another one that
// happens to share the status.
Case rejects(std::string_view name, std::string_view input, int status, std::string_view reason) {
  return {name, input, ParseStatus::Error, status, reason, {}};
}
Case waits(std::string_view name, std::string_view input) {
  return {name, input, ParseStatus::Incomplete, 0, {}, {}};
}

const std::vector<Case>& cases() {
  static const std::vector<Case> kCases = {
      // Valid requests.
      accepts("AcceptsSimpleGet", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
      accepts("AcceptsHttp10WithoutHost", "GET / HTTP/1.0\r\n\r\n",
              {.host = "", .version = Version::Http10, .keepAlive = false}),
      accepts("KeepsHttp10AliveWithKeepAliveToken",
              "GET / HTTP/1.0\r\nHost: example.com\r\nConnection: Keep-Alive\r\n\r\n",
              {.version = Version::Http10, .keepAlive = true}),
      accepts("LetsCloseWinOverKeepAliveInHttp10",
              "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
              {.host = "", .version = Version::Http10, .keepAlive = false}),
      accepts("ClosesHttp11OnConnectionClose",
              "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
              {.keepAlive = false}),
      accepts("FindsCloseInRepeatedConnectionFields",
              "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: foo\r\nConnection: bar, CLOSE\r\n"
              "\r\n",
              {.keepAlive = false}),
      accepts("FindsCloseRightAfterAComma",
              "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive,close\r\n\r\n",
              {.keepAlive = false}),
      accepts("SplitsPathAndQuery", "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\n\r\n",
              {.target = "/a/b?x=1&y=2", .path = "/a/b", .query = "x=1&y=2"}),
      accepts("KeepsEmptyQueryAfterQuestionMark", "GET /a? HTTP/1.1\r\nHost: example.com\r\n\r\n",
              {.target = "/a?", .path = "/a", .query = ""}),
      accepts("AcceptsQuestionMarksInsideQuery", "GET /a?b?c HTTP/1.1\r\nHost: example.com\r\n\r\n",
              {.target = "/a?b?c", .path = "/a", .query = "b?c"}),
      accepts("AcceptsAbsoluteFormWithMatchingHost",
              "GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
              {.target = "http://example.com/p?q=1", .path = "/p", .query = "q=1"}),
      accepts("GivesAbsoluteFormWithoutPathTheRootPath",
              "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
              {.target = "http://example.com", .path = "/"}),
      accepts("AcceptsHttpsAbsoluteFormWithUppercaseScheme",
              "GET HTTPS://Example.com:8443/x HTTP/1.1\r\nHost: example.COM:8443\r\n\r\n",
              {.target = "HTTPS://Example.com:8443/x", .path = "/x", .host = "Example.com:8443"}),
      accepts("TakesHostFromAbsoluteFormInHttp10", "GET http://a.example/ HTTP/1.0\r\n\r\n",
              {.target = "http://a.example/",
               .host = "a.example",
               .version = Version::Http10,
               .keepAlive = false}),
      accepts("AcceptsAsteriskFormForOptions", "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n",
              {.method = "OPTIONS", .target = "*", .path = "*"}),
      accepts("AcceptsMethodMadeOfTcharSymbols",
              "X-Custom.Method_1! / HTTP/1.1\r\nHost: example.com\r\n\r\n",
              {.method = "X-Custom.Method_1!"}),
      accepts("AcceptsTabsAndSpacesAroundValue",
              "GET / HTTP/1.1\r\nHost:\t example.com \t\r\nX: \t v \t\r\n\r\n"),
      accepts("AcceptsEmptyValue", "GET / HTTP/1.1\r\nHost: example.com\r\nX-Empty:\r\n\r\n"),
      accepts("AcceptsValueOfOnlyWhitespace",
              "GET / HTTP/1.1\r\nHost: example.com\r\nX-Empty: \t \r\n\r\n"),
      accepts("AcceptsObsTextInValue",
              "GET / HTTP/1.1\r\nHost: example.com\r\nX-Name: caf\xc3\xa9 \xff\r\n\r\n"),
      accepts("AcceptsTabInsideValue", "GET / HTTP/1.1\r\nHost: example.com\r\nX: a\tb\r\n\r\n"),
      accepts("AcceptsCaseInsensitiveFieldNames", "GET / HTTP/1.1\r\nhOsT: example.com\r\n\r\n"),
      accepts("SkipsOneLeadingEmptyLine", "\r\nGET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
      accepts("SkipsSeveralLeadingEmptyLines",
              "\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: example.com\r\n\r\n"),
      accepts("StopsAtEndOfHeadBeforePipelinedRequest",
              "GET /1 HTTP/1.1\r\nHost: example.com\r\n\r\nGET /2 HTTP/1.1\r\nHost: example.com\r\n"
              "\r\n",
              {.target = "/1", .path = "/1", .afterHead = 38}),
      accepts("StopsAtEndOfHeadBeforeBody",
              "POST /u HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello",
              {.method = "POST",
               .target = "/u",
               .path = "/u",
               .body = BodyKind::ContentLength,
               .contentLength = 5,
               .afterHead = 5}),
      accepts("TreatsContentLengthZeroAsNoBody",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n",
              {.method = "POST", .body = BodyKind::None}),
      accepts("AcceptsLeadingZerosInContentLength",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 007\r\n\r\n",
              {.method = "POST", .body = BodyKind::ContentLength, .contentLength = 7}),
      accepts("AcceptsLargestContentLength",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 9223372036854775807\r\n\r\n",
              {.method = "POST",
               .body = BodyKind::ContentLength,
               .contentLength = 9223372036854775807ULL}),
      accepts("AcceptsContentLengthInHttp10", "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
              {.method = "POST",
               .host = "",
               .version = Version::Http10,
               .body = BodyKind::ContentLength,
               .contentLength = 3,
               .keepAlive = false,
               .afterHead = 3}),
      accepts("AcceptsChunked",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n",
              {.method = "POST", .body = BodyKind::Chunked}),
      accepts("AcceptsChunkedInAnyCase",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: ChUnKeD\r\n\r\n",
              {.method = "POST", .body = BodyKind::Chunked}),
      accepts("IgnoresEmptyTransferCodingListElements",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: , chunked ,\r\n\r\n",
              {.method = "POST", .body = BodyKind::Chunked}),
      accepts(
          "DetectsWebsocketUpgrade",
          "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "\r\n",
          {.target = "/ws", .path = "/ws", .upgradeWebsocket = true, .hasUpgrade = true}),
      accepts(
          "DetectsWebsocketUpgradeAcrossRepeatedConnectionFields",
          "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\nUpgrade: websocket\r\n"
          "Connection: upgrade\r\n\r\n",
          {.upgradeWebsocket = true, .hasUpgrade = true}),
      accepts("DetectsWebsocketAmongOtherTokens",
              "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: foo/2, WebSocket\r\n"
              "Connection: keep-alive ,\tUPGRADE\r\n\r\n",
              {.upgradeWebsocket = true, .hasUpgrade = true}),
      accepts("DoesNotTreatUpgradeWithoutConnectionTokenAsWebsocket",
              "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\r\n",
              {.upgradeWebsocket = false, .hasUpgrade = true}),
      accepts(
          "DoesNotMatchWebsocketAsSubstring",
          "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websockets\r\nConnection: upgrade\r\n"
          "\r\n",
          {.upgradeWebsocket = false, .hasUpgrade = true}),
      accepts("IgnoresUpgradeInHttp10",
              "GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
              {.host = "",
               .version = Version::Http10,
               .keepAlive = false,
               .upgradeWebsocket = false,
               .hasUpgrade = true}),
      accepts(
          "FlagsH2cUpgradeWithoutCallingItWebsocket",
          "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: h2c\r\n"
          "Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
          {.upgradeWebsocket = false, .hasUpgrade = true}),
      accepts("DetectsExpectContinueInAnyCase",
              "PUT / HTTP/1.1\r\nHost: example.com\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n"
              "\r\n",
              {.method = "PUT",
               .body = BodyKind::ContentLength,
               .contentLength = 1,
               .expectContinue = true}),

      accepts("IgnoresExpectationsOtherThanContinue",
              "PUT / HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue-later\r\n\r\n",
              {.method = "PUT", .expectContinue = false}),
      // The framing rules are looked up by name length first: fields that only share a length
      // with Host, Expect, Upgrade, Connection, Content-Length or Transfer-Encoding are plain.
      accepts("IgnoresFieldsThatOnlyShareTheLengthOfAFramingField",
              "GET / HTTP/1.1\r\nHost: example.com\r\nDate: not a host\r\n"
              "Accept: 100-continue\r\nReferer: websocket\r\nKeep-Alive: close\r\n"
              "X-Content-Type: a b\r\nX-Forwarded-Proto: chunked\r\n\r\n"),
      accepts("TakesTheTargetAuthorityOverAnEqualHostInAnotherCase",
              "GET http://Example.COM:8080/ HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
              {.target = "http://Example.COM:8080/", .host = "Example.COM:8080"}),

      // Line endings (RFC 9112 2.2).
      rejects("RejectsBareLfAfterRequestLine", "GET / HTTP/1.1\nHost: example.com\r\n\r\n", 400,
              "bare LF"),
      rejects("RejectsBareLfAfterField", "GET / HTTP/1.1\r\nHost: example.com\n\r\n", 400,
              "bare LF"),
      rejects("RejectsBareLfAsEndOfHead", "GET / HTTP/1.1\r\nHost: example.com\r\n\n", 400,
              "bare LF"),
      rejects("RejectsBareLfBeforeRequestLine", "\nGET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
              400, "bare LF"),
      rejects("RejectsBareCrBeforeRequestLine", "\rGET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
              400, "bare CR"),
      rejects("RejectsBareCrInRequestLine", "GET / HTTP/1.1\rHost: example.com\r\n\r\n", 400,
              "bare CR"),
      rejects("RejectsBareCrInValue", "GET / HTTP/1.1\r\nHost: example.com\r\nX: a\rb\r\n\r\n", 400,
              "bare CR"),
      rejects("RejectsBareCrAtEndOfHead", "GET / HTTP/1.1\r\nHost: example.com\r\n\rX", 400,
              "bare CR"),
      rejects("RejectsBareLfAfterMethod", "GET\n", 400, "bare LF"),

      // Field syntax (RFC 9112 5).
      rejects("RejectsObsFold", "GET / HTTP/1.1\r\nHost: example.com\r\nX: a\r\n b\r\n\r\n", 400,
              "obs-fold"),
      rejects("RejectsObsFoldWithTab", "GET / HTTP/1.1\r\nHost: example.com\r\nX: a\r\n\tb\r\n\r\n",
              400, "obs-fold"),
      rejects("RejectsWhitespaceBeforeFirstField", "GET / HTTP/1.1\r\n Host: example.com\r\n\r\n",
              400, "whitespace after start line"),
      rejects("RejectsSpaceBeforeColon", "GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", 400,
              "whitespace before colon"),
      rejects("RejectsTabBeforeColon", "GET / HTTP/1.1\r\nHost\t: example.com\r\n\r\n", 400,
              "whitespace before colon"),
      rejects("RejectsEmptyFieldName", "GET / HTTP/1.1\r\nHost: example.com\r\n: v\r\n\r\n", 400,
              "empty field name"),
      rejects("RejectsNonTokenCharInFieldName",
              "GET / HTTP/1.1\r\nHost: example.com\r\nX@Y: v\r\n\r\n", 400,
              "invalid character in field name"),
      rejects("RejectsNonAsciiFieldName",
              "GET / HTTP/1.1\r\nHost: example.com\r\nX\xc3\xa9: v\r\n\r\n", 400,
              "invalid character in field name"),
      rejects("RejectsFieldLineWithoutColon",
              "GET / HTTP/1.1\r\nHost: example.com\r\nNoColon\r\n\r\n", 400,
              "field line without colon"),
      rejects("RejectsFieldLineWithoutColonEndedByBareLf",
              "GET / HTTP/1.1\r\nHost: example.com\r\nNoColon\n\r\n", 400,
              "field line without colon"),
      rejects("RejectsNulInValue", "GET / HTTP/1.1\r\nHost: example.com\r\nX: a\0b\r\n\r\n"sv, 400,
              "NUL in field value"),
      rejects("RejectsNulRightAfterColon", "GET / HTTP/1.1\r\nHost: example.com\r\nX:\0\r\n\r\n"sv,
              400, "NUL in field value"),
      rejects("RejectsControlCharInValue",
              "GET / HTTP/1.1\r\nHost: example.com\r\nX: a\x01"
              "b\r\n\r\n",
              400, "control character in value"),
      rejects("RejectsEscapeCharInValue",
              "GET / HTTP/1.1\r\nHost: example.com\r\nX: \x1b[31m\r\n\r\n", 400,
              "control character in value"),
      rejects("RejectsDelInValue",
              "GET / HTTP/1.1\r\nHost: example.com\r\nX: a\x7f"
              "b\r\n\r\n",
              400, "control character in value"),

      // Host (RFC 9112 3.2, RFC 9110 7.2).
      rejects("RejectsMissingHostInHttp11", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400, "missing Host"),
      rejects("RejectsDuplicateHost",
              "GET / HTTP/1.1\r\nHost: example.com\r\nHost: other.example\r\n\r\n", 400,
              "duplicate Host"),
      rejects("RejectsDuplicateHostEvenWhenEqual",
              "GET / HTTP/1.1\r\nHost: example.com\r\nhost: example.com\r\n\r\n", 400,
              "duplicate Host"),

      rejects("RejectsAbsoluteFormWithoutHostInHttp11", "GET http://example.com/ HTTP/1.1\r\n\r\n",
              400, "missing Host"),
      rejects("RejectsAbsoluteFormWhosePortDiffers",
              "GET http://example.com:8080/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "Host differs from target authority"),
      rejects("RejectsAbsoluteFormWhoseHostDiffersInHttp10",
              "GET http://a.example/ HTTP/1.0\r\nHost: b.example\r\n\r\n", 400,
              "Host differs from target authority"),

      // Request line (RFC 9112 3).
      rejects("RejectsConnectWith501",
              "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 501,
              "CONNECT not supported"),
      rejects("RejectsAuthorityFormForGet",
              "GET example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "invalid request target form"),
      rejects("RejectsAsteriskFormForGet", "GET * HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "asterisk-form without OPTIONS"),
      rejects("RejectsAbsoluteFormWhoseHostDiffers",
              "GET http://internal.example/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "Host differs from target authority"),
      rejects("RejectsAbsoluteFormWithUserinfo",
              "GET http://user@example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "userinfo in target"),
      rejects("RejectsAbsoluteFormWithEmptyAuthority",
              "GET http:///x HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "empty authority in target"),
      rejects("RejectsNonHttpScheme",
              "GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "invalid request target form"),
      rejects("RejectsHttpSchemeWithoutAuthority", "GET http:// HTTP/1.1\r\nHost: a\r\n\r\n", 400,
              "empty authority in target"),
      rejects("RejectsHttpsSchemeWithoutAuthority", "GET https:// HTTP/1.1\r\nHost: a\r\n\r\n", 400,
              "empty authority in target"),
      rejects("RejectsSchemeWithoutSlashes", "GET http:example.com HTTP/1.1\r\nHost: a\r\n\r\n",
              400, "invalid request target form"),
      rejects("RejectsBareLfAfterTarget", "GET /\n", 400, "missing HTTP version"),
      rejects("RejectsFragmentInTarget", "GET /a#frag HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "invalid character in target"),
      rejects("RejectsNulInTargetImmediately", "GET /\0"sv, 400, "invalid character in target"),
      rejects("RejectsDelInTarget", "GET /\x7f HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "invalid character in target"),
      rejects("RejectsNonAsciiInTarget", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: example.com\r\n\r\n",
              400, "invalid character in target"),
      rejects("RejectsTabInTarget", "GET /a\tb HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "invalid character in target"),
      rejects("RejectsDoubleSpaceAfterMethod", "GET  / HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "empty request target"),
      rejects("RejectsDoubleSpaceBeforeVersion", "GET /  HTTP/1.1\r\nHost: example.com\r\n\r\n",
              400, "invalid HTTP version"),
      rejects("RejectsTabAsSeparator", "GET\t/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "invalid method"),
      rejects("RejectsEmptyMethod", " / HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "invalid method"),
      rejects("RejectsNonTokenCharInMethod", "G(T / HTTP/1.1\r\nHost: example.com\r\n\r\n", 400,
              "invalid method"),
      rejects("RejectsHttp09RequestLine", "GET /\r\n\r\n", 400, "missing HTTP version"),
      rejects("RejectsLowercaseHttpName", "GET / http/1.1\r\nHost: example.com\r\n\r\n", 400,
              "invalid HTTP version"),
      rejects("RejectsNonDigitVersion", "GET / HTTP/x.1\r\nHost: example.com\r\n\r\n", 400,
              "invalid HTTP version"),
      rejects("RejectsVersionWithExtraDigit", "GET / HTTP/1.10\r\nHost: example.com\r\n\r\n", 400,
              "invalid request line"),
      rejects("RejectsSpaceAfterVersion", "GET / HTTP/1.1 \r\nHost: example.com\r\n\r\n", 400,
              "invalid request line"),
      rejects("RejectsHttp2With505", "GET / HTTP/2.0\r\nHost: example.com\r\n\r\n", 505,
              "unsupported HTTP version"),
      rejects("RejectsHttp12With505", "GET / HTTP/1.2\r\nHost: example.com\r\n\r\n", 505,
              "unsupported HTTP version"),
      rejects("RejectsHttp09VersionWith505", "GET / HTTP/0.9\r\nHost: example.com\r\n\r\n", 505,
              "unsupported HTTP version"),

      // Content-Length (RFC 9110 8.6, RFC 9112 6.3).
      rejects("RejectsDuplicateContentLength",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
              "\r\n",
              400, "duplicate Content-Length"),
      rejects("RejectsDuplicateContentLengthEvenWhenEqual",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\ncontent-length: 5\r\n"
              "\r\n",
              400, "duplicate Content-Length"),
      rejects("RejectsContentLengthList",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5, 5\r\n\r\n", 400,
              "invalid Content-Length"),
      rejects("RejectsNegativeContentLength",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: -1\r\n\r\n", 400,
              "invalid Content-Length"),
      rejects("RejectsSignedContentLength",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: +5\r\n\r\n", 400,
              "invalid Content-Length"),
      rejects("RejectsEmptyContentLength",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length:\r\n\r\n", 400,
              "invalid Content-Length"),
      rejects("RejectsHexContentLength",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0x10\r\n\r\n", 400,
              "invalid Content-Length"),
      rejects("RejectsContentLengthWithInnerSpace",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 1 0\r\n\r\n", 400,
              "invalid Content-Length"),
      rejects("RejectsContentLengthOverInt64",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 9223372036854775808\r\n\r\n",
              400, "invalid Content-Length"),
      rejects("RejectsContentLengthOverUint64",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 99999999999999999999999\r\n"
              "\r\n",
              400, "invalid Content-Length"),

      // Transfer-Encoding (RFC 9112 6.1, 6.3).
      rejects("RejectsTransferEncodingBeforeContentLength",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
              "Content-Length: 5\r\n\r\n",
              400, "Transfer-Encoding with Content-Length"),
      rejects("RejectsContentLengthBeforeTransferEncoding",
              "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
              "Transfer-Encoding: chunked\r\n\r\n",
              400, "Transfer-Encoding with Content-Length"),
      rejects("RejectsChunkedNotLast",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
              400, "chunked is not the final coding"),
      rejects("RejectsChunkedNotLastAcrossFields",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
              "Transfer-Encoding: gzip\r\n\r\n",
              400, "chunked is not the final coding"),
      rejects("RejectsChunkedTwice",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
              400, "chunked applied twice"),
      rejects("RejectsChunkedTwiceAcrossFields",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
              "Transfer-Encoding: chunked\r\n\r\n",
              400, "chunked applied twice"),
      rejects("RejectsUnknownCodingAloneAsNotEndingInChunked",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
              "chunked is not the final coding"),
      rejects("RejectsEmptyTransferEncoding",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding:\r\n\r\n", 400,
              "empty Transfer-Encoding"),
      rejects("RejectsChunkedWithParameters",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked;x=1\r\n\r\n", 400,
              "parameters on chunked"),
      rejects("RejectsQuotedTransferCoding",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400,
              "invalid transfer coding"),
      rejects("RejectsTwoCodingsWithoutAComma",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip chunked\r\n\r\n",
              400, "invalid transfer coding"),
      rejects("RejectsParametersWithoutACodingName",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: ;q=1, chunked\r\n\r\n",
              400, "invalid transfer coding"),
      rejects("RejectsUnknownCodingWithParametersWith501",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip;q=1, chunked\r\n"
              "\r\n",
              501, "unsupported transfer coding"),
      rejects("RejectsTransferEncodingInHttp10",
              "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
              "Transfer-Encoding in HTTP/1.0"),
      rejects("RejectsUnknownCodingBeforeChunkedWith501",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
              501, "unsupported transfer coding"),
      rejects("RejectsUnknownCodingInEarlierFieldWith501",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: identity\r\n"
              "Transfer-Encoding: chunked\r\n\r\n",
              501, "unsupported transfer coding"),

      // Incomplete while every byte seen is valid.
      waits("WaitsOnEmptyBuffer", ""),
      waits("WaitsOnLoneCr", "\r"),
      waits("WaitsOnPartialMethod", "GE"),
      waits("WaitsOnPartialAbsoluteScheme", "GET htt"),
      waits("WaitsOnPartialVersion", "GET / HTT"),
      waits("WaitsOnHeadWithoutFinalCrlf", "GET / HTTP/1.1\r\nHost: example.com\r\n"),
      waits("WaitsOnCrBeforeFinalLf", "GET / HTTP/1.1\r\nHost: example.com\r\n\r"),
      waits("WaitsOnLeadingEmptyLineOnly", "\r\n"),

      // Rejected as soon as the prefix can no longer become valid.
      rejects("RejectsImpossibleTargetBeforeItEnds", "GET x", 400, "invalid request target form"),
      rejects("RejectsConnectAsSoonAsMethodEnds", "CONNECT ", 501, "CONNECT not supported"),
      rejects("RejectsHttp2BeforeLineEnds", "GET / HTTP/2.0", 505, "unsupported HTTP version"),
      rejects("RejectsObsFoldBeforeHeadEnds", "GET / HTTP/1.1\r\nHost: example.com\r\n ", 400,
              "obs-fold"),
      rejects("RejectsAsteriskFormForGetBeforeItEnds", "GET *", 400, "invalid request target form"),
      rejects("RejectsCodingAfterChunkedBeforeHeadEnds",
              "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked, gzip\r\n", 400,
              "chunked is not the final coding"),
      rejects("RejectsTransferEncodingWithContentLengthBeforeHeadEnds",
              "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n",
              400, "Transfer-Encoding with Content-Length"),
      rejects("RejectsDuplicateHostBeforeHeadEnds", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n", 400,
              "duplicate Host"),
  };
  return kCases;
}

class RequestParserTest : public testing::TestWithParam<Case> {};

TEST_P(RequestParserTest, GivesTheExpectedVerdict) {
  const Case& c = GetParam();
  RequestHead head;
  const ParseResult r = parseRequestHead(c.input, ParseLimits{}, head);
  ASSERT_EQ(r.status, c.status) << "reason: " << r.errorReason;
  if (c.status == ParseStatus::Error) {
    EXPECT_EQ(r.errorStatus, c.errorStatus) << "reason: " << r.errorReason;
    EXPECT_EQ(r.errorReason, c.errorReason);
    return;
  }
  if (c.status != ParseStatus::Complete) return;
  const Want& w = c.want;
  EXPECT_EQ(r.headBytes, c.input.size() - w.afterHead);
  EXPECT_EQ(head.method, w.method);
  EXPECT_EQ(head.target, w.target);
  EXPECT_EQ(head.path, w.path);
  EXPECT_EQ(head.query, w.query);
  EXPECT_EQ(head.host, w.host);
  EXPECT_EQ(head.version, w.version);
  EXPECT_EQ(head.body, w.body);
  EXPECT_EQ(head.contentLength, w.contentLength);
  EXPECT_EQ(head.keepAlive, w.keepAlive);
  EXPECT_EQ(head.expectContinue, w.expectContinue);
  EXPECT_EQ(head.upgradeWebsocket, w.upgradeWebsocket);
  EXPECT_EQ(head.hasUpgrade, w.hasUpgrade);
}

// Feeding a growing buffer must give Incomplete until the verdict, then that same verdict for
// every longer prefix: a caller that parses on each read never sees a verdict change.
TEST_P(RequestParserTest, KeepsTheVerdictStableOverPrefixes) {
  const Case& c = GetParam();
  RequestHead head;
  const ParseResult full = parseRequestHead(c.input, ParseLimits{}, head);
  bool decided = false;
  for (std::size_t k = 0; k <= c.input.size(); ++k) {
    const ParseResult r = parseRequestHead(c.input.substr(0, k), ParseLimits{}, head);
    if (r.status == ParseStatus::Incomplete) {
      ASSERT_FALSE(decided) << "verdict withdrawn at prefix " << k;
      continue;
    }
    decided = true;
    ASSERT_EQ(r.status, full.status) << "prefix " << k;
    ASSERT_EQ(r.errorStatus, full.errorStatus) << "prefix " << k;
    ASSERT_EQ(r.headBytes, full.headBytes) << "prefix " << k;
    if (r.status == ParseStatus::Complete) {
      ASSERT_GE(k, r.headBytes);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Table, RequestParserTest, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// The limits, built at run time to sit exactly on the boundary.
struct LimitCase {
  std::string name;
  std::string input;
  ParseLimits limits;
  ParseStatus status;
  int errorStatus = 0;
  std::string_view errorReason{};
};

std::string requestWithTarget(std::size_t targetBytes) {
  return "GET /" + std::string(targetBytes - 1, 'a') + " HTTP/1.1\r\nHost: example.com\r\n\r\n";
}

// A head of exactly `bytes` bytes, padded with one filler field.
std::string headOfSize(std::size_t bytes) {
  const std::string start = "GET / HTTP/1.1\r\nHost: example.com\r\nX-Fill: ";
  const std::string end = "\r\n\r\n";
  return start + std::string(bytes - start.size() - end.size(), 'f') + end;
}

// A valid head cut short inside a field value, `bytes` long.
std::string unfinishedHead(std::size_t bytes) {
  const std::string start = "GET / HTTP/1.1\r\nHost: example.com\r\nX-Fill: ";
  return start + std::string(bytes - start.size(), 'f');
}

std::string repeat(std::string_view s, std::size_t times) {
  std::string out;
  for (std::size_t i = 0; i < times; ++i) out += s;
  return out;
}

std::string headWithFields(std::size_t fields) {
  std::string s = "GET / HTTP/1.1\r\nHost: example.com\r\n";
  for (std::size_t i = 1; i < fields; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
  return s + "\r\n";
}

std::vector<LimitCase> limitCases() {
  const ParseLimits d;
  const ParseLimits small{.maxHeaderBytes = 64, .maxHeaders = 3, .maxUriBytes = 10};
  return {
      {"AcceptsTargetAtUriLimit", requestWithTarget(d.maxUriBytes), d, ParseStatus::Complete},
      {"RejectsTargetOneOverUriLimitWith414", requestWithTarget(d.maxUriBytes + 1), d,
       ParseStatus::Error, 414, "request target too long"},
      {"RejectsLongTargetWith414BeforeItEnds", "GET /" + std::string(d.maxUriBytes, 'a'), d,
       ParseStatus::Error, 414, "request target too long"},
      {"WaitsOnTargetThatIsStillAtTheLimit", "GET /" + std::string(d.maxUriBytes - 1, 'a'), d,
       ParseStatus::Incomplete},
      {"AcceptsHeadAtHeaderLimit", headOfSize(d.maxHeaderBytes), d, ParseStatus::Complete},
      {"RejectsHeadOneOverHeaderLimitWith431", headOfSize(d.maxHeaderBytes + 1), d,
       ParseStatus::Error, 431, "head too large"},
      {"WaitsOnUnfinishedHeadAtHeaderLimit", unfinishedHead(d.maxHeaderBytes), d,
       ParseStatus::Incomplete},
      {"RejectsUnfinishedHeadOneOverLimitWith431", unfinishedHead(d.maxHeaderBytes + 1), d,
       ParseStatus::Error, 431, "head too large"},
      {"IgnoresBodyBytesBeyondHeaderLimit",
       "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 40000\r\n\r\n" +
           std::string(40000, 'b'),
       d, ParseStatus::Complete},
      {"AcceptsFieldsAtMaxHeaders", headWithFields(d.maxHeaders), d, ParseStatus::Complete},
      {"RejectsOneFieldOverMaxHeadersWith431", headWithFields(d.maxHeaders + 1), d,
       ParseStatus::Error, 431, "too many header fields"},
      {"AcceptsSmallTargetAtLimit", "GET /123456789 HTTP/1.1\r\nHost: h\r\n\r\n", small,
       ParseStatus::Complete},
      {"RejectsSmallTargetOverLimit", "GET /1234567890 HTTP/1.1\r\nHost: h\r\n\r\n", small,
       ParseStatus::Error, 414, "request target too long"},
      {"AcceptsThreeFieldsWithLimitThree", "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n",
       small, ParseStatus::Complete},
      {"RejectsFourthFieldWithLimitThreeBeforeHeadEnds",
       "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC", small, ParseStatus::Error, 431,
       "too many header fields"},
      {"CountsLeadingEmptyLinesTowardHeaderLimit",
       repeat("\r\n", 24) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n", small, ParseStatus::Error, 431,
       "head too large"},
  };
}

void PrintTo(const LimitCase& c, std::ostream* os) { *os << c.name; }

class RequestParserLimitTest : public testing::TestWithParam<LimitCase> {};

TEST_P(RequestParserLimitTest, EnforcesTheLimitAtItsBoundary) {
  const LimitCase& c = GetParam();
  RequestHead head;
  const ParseResult r = parseRequestHead(c.input, c.limits, head);
  ASSERT_EQ(r.status, c.status) << "reason: " << r.errorReason;
  EXPECT_EQ(r.errorStatus, c.errorStatus) << "reason: " << r.errorReason;
  EXPECT_EQ(r.errorReason, c.errorReason);
}

INSTANTIATE_TEST_SUITE_P(Limits, RequestParserLimitTest, testing::ValuesIn(limitCases()),
                         [](const testing::TestParamInfo<LimitCase>& info) {
                           return info.param.name;
                         });

// RFC 9110 5.6.2: a field name is a token; every tchar may appear in one, no delimiter may.
TEST(RequestParser, AcceptsEveryTcharInAFieldName) {
  const std::string_view input =
      "GET / HTTP/1.1\r\nHost: example.com\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n";
  RequestHead head;
  ASSERT_EQ(parseRequestHead(input, ParseLimits{}, head).status, ParseStatus::Complete);
  EXPECT_EQ(head.headers.back().name, "!#$%&'*+-.^_`|~09azAZ");
}

TEST(RequestParser, RejectsEveryDelimiterInAFieldName) {
  // ':' is left out: it ends the name.
  for (char delimiter : std::string_view("\"(),/;<=>?@[\\]{}")) {
    const std::string input =
        "GET / HTTP/1.1\r\nHost: example.com\r\nX" + std::string(1, delimiter) + "Y: v\r\n\r\n";
    RequestHead head;
    const ParseResult r = parseRequestHead(input, ParseLimits{}, head);
    ASSERT_EQ(r.status, ParseStatus::Error) << delimiter;
    EXPECT_EQ(r.errorStatus, 400) << delimiter;
    EXPECT_EQ(r.errorReason, "invalid character in field name") << delimiter;
  }
}

TEST(RequestParser, ReturnsTrimmedFieldViewsIntoTheBuffer) {
  const std::string_view input =
      "GET / HTTP/1.1\r\nHost:\texample.com \r\nX-A:  two  words \t\r\nX-Empty:\r\n"
      "X-Obs: \xc3\xa9\r\n\r\n";
  RequestHead head;
  ASSERT_EQ(parseRequestHead(input, ParseLimits{}, head).status, ParseStatus::Complete);
  ASSERT_EQ(head.headers.size(), 4u);
  EXPECT_EQ(head.headers[0].name, "Host");
  EXPECT_EQ(head.headers[0].value, "example.com");
  EXPECT_EQ(head.headers[1].name, "X-A");
  EXPECT_EQ(head.headers[1].value, "two  words");
  EXPECT_EQ(head.headers[2].value, "");
  EXPECT_EQ(head.headers[3].value, "\xc3\xa9");
  for (const Header& h : head.headers) {
    EXPECT_GE(h.name.data(), input.data());
    EXPECT_LE(h.name.data() + h.name.size(), input.data() + input.size());
  }
  EXPECT_EQ(findHeader(head.headers, "x-a"), &head.headers[1]);
  EXPECT_EQ(findHeader(head.headers, "X-Missing"), nullptr);
}

TEST(RequestParser, ReusesTheHeaderVectorCapacity) {
  RequestHead head;
  const std::string big = headWithFields(50);
  ASSERT_EQ(parseRequestHead(big, ParseLimits{}, head).status, ParseStatus::Complete);
  const Header* storage = head.headers.data();
  const std::size_t capacity = head.headers.capacity();
  ASSERT_EQ(parseRequestHead(headWithFields(10), ParseLimits{}, head).status,
            ParseStatus::Complete);
  EXPECT_EQ(head.headers.data(), storage);
  EXPECT_EQ(head.headers.capacity(), capacity);
  EXPECT_EQ(head.headers.size(), 10u);
}

TEST(RequestParser, ResetsEveryFieldFromThePreviousRequest) {
  RequestHead head;
  ASSERT_EQ(parseRequestHead("POST /ws?x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                             "Connection: upgrade, close\r\nExpect: 100-continue\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n",
                             ParseLimits{}, head)
                .status,
            ParseStatus::Complete);
  ASSERT_EQ(parseRequestHead("GET / HTTP/1.1\r\nHost: b\r\n\r\n", ParseLimits{}, head).status,
            ParseStatus::Complete);
  EXPECT_EQ(head.query, "");
  EXPECT_EQ(head.body, BodyKind::None);
  EXPECT_TRUE(head.keepAlive);
  EXPECT_FALSE(head.upgradeWebsocket);
  EXPECT_FALSE(head.hasUpgrade);
  EXPECT_FALSE(head.expectContinue);
}

}  // namespace
}  // namespace wsgate::http
