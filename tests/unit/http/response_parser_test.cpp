// Response-head parser: body framing per RFC 9112 6.3 and the field rules, every rejection 502.

#include "proxy/http/response_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace wsgate::http {
namespace {

using namespace std::string_view_literals;

// What a valid response parses into; the defaults describe "HTTP/1.1 200 OK" with no body.
struct Want {
  int status = 200;
  std::string_view reason = "OK";
  Version version = Version::Http11;
  BodyKind body = BodyKind::None;
  uint64_t contentLength = 0;
  bool keepAlive = true;
  std::size_t afterHead = 0;  // bytes of the input past the head
};

struct Case {
  std::string_view name;
  std::string_view input;
  bool requestWasHead = false;
  ParseStatus status = ParseStatus::Complete;
  std::string_view errorReason{};  // with Error (always a 502): the rule the backend broke
  Want want{};
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

Case accepts(std::string_view name, std::string_view input, Want want = {}) {
  return {name, input, false, ParseStatus::Complete, {}, want};
}
Case acceptsForHead(std::string_view name, std::string_view input, Want want = {}) {
  return {name, input, true, ParseStatus::Complete, {}, want};
}
Case rejects(std::string_view name, std::string_view input, std::string_view reason) {
  return {name, input, false, ParseStatus::Error, reason, {}};
}
Case waits(std::string_view name, std::string_view input) {
  return {name, input, false, ParseStatus::Incomplete, {}, {}};
}

const std::vector<Case>& cases() {
  static const std::vector<Case> kCases = {
      // Framing (RFC 9112 6.3).
      accepts("FramesByContentLength", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
              {.body = BodyKind::ContentLength, .contentLength = 5, .afterHead = 5}),
      accepts("FramesByContentLengthOfOne", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
              {.body = BodyKind::ContentLength, .contentLength = 1, .afterHead = 1}),
      accepts("TreatsContentLengthZeroAsNoBody", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
      accepts("FramesByChunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
              {.body = BodyKind::Chunked}),
      accepts("FramesByChunkedAfterOtherCodings",
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
              {.body = BodyKind::Chunked}),
      accepts("ReadsUntilCloseWhenChunkedIsNotLast",
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
              {.body = BodyKind::UntilClose, .keepAlive = false}),
      accepts("ReadsUntilCloseWithOnlyUnknownCoding",
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
              {.body = BodyKind::UntilClose, .keepAlive = false}),
      accepts("ReadsUntilCloseWithoutLength", "HTTP/1.1 200 OK\r\nX: y\r\n\r\n",
              {.body = BodyKind::UntilClose, .keepAlive = false}),
      acceptsForHead("HasNoBodyForHeadRequest", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
                     {.contentLength = 100}),
      acceptsForHead("HasNoBodyForHeadRequestEvenIfChunked",
                     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
      accepts("HasNoBodyFor204", "HTTP/1.1 204 No Content\r\n\r\n",
              {.status = 204, .reason = "No Content"}),
      accepts("HasNoBodyFor304EvenWithContentLength",
              "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
              {.status = 304, .reason = "Not Modified", .contentLength = 10}),
      accepts("HasNoBodyFor100", "HTTP/1.1 100 Continue\r\n\r\n",
              {.status = 100, .reason = "Continue"}),
      accepts("HasNoBodyFor101",
              "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
              {.status = 101, .reason = "Switching Protocols"}),
      accepts("HasNoBodyFor103", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
              {.status = 103, .reason = "Early Hints"}),
      accepts("HasNoBodyForTheLast1xxStatusEvenWithContentLength",
              "HTTP/1.1 199 Odd\r\nContent-Length: 10\r\n\r\n",
              {.status = 199, .reason = "Odd", .contentLength = 10}),
      accepts("KeepsChunkedResponseReusable",
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
              {.body = BodyKind::Chunked, .keepAlive = true}),

      // Persistence (RFC 9112 9.3).
      accepts("IsNotReusedAfterConnectionClose",
              "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
              {.keepAlive = false}),
      accepts("IsNotReusedForHttp10WithoutKeepAlive",
              "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
              {.version = Version::Http10,
               .body = BodyKind::ContentLength,
               .contentLength = 2,
               .keepAlive = false,
               .afterHead = 2}),
      accepts("IsReusedForHttp10WithKeepAlive",
              "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
              {.version = Version::Http10, .keepAlive = true}),
      accepts("IsNotReusedForHttp10WithCloseAfterKeepAlive",
              "HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
              {.version = Version::Http10, .keepAlive = false}),

      // Status line (RFC 9112 4).
      accepts("AcceptsMissingReasonPhrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
              {.reason = ""}),
      accepts("AcceptsEmptyReasonPhrase", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n",
              {.reason = ""}),
      accepts("KeepsReasonPhraseWithSpacesAndObsText",
              "HTTP/1.1 404 Not \tFound \xc3\xa9\r\nContent-Length: 0\r\n\r\n",
              {.status = 404, .reason = "Not \tFound \xc3\xa9"}),
      accepts("StopsAtEndOfHead",
              "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
              {.status = 204, .reason = "No Content", .afterHead = 38}),
      accepts("AcceptsStatus599", "HTTP/1.1 599 Odd\r\nContent-Length: 0\r\n\r\n",
              {.status = 599, .reason = "Odd"}),
      rejects("RejectsStatusBelow100", "HTTP/1.1 099 Odd\r\n\r\n", "status code out of range"),
      rejects("RejectsStatusAbove599", "HTTP/1.1 600 Odd\r\n\r\n", "status code out of range"),
      rejects("RejectsTwoDigitStatus", "HTTP/1.1 20 OK\r\n\r\n", "invalid status code"),
      rejects("RejectsFourDigitStatus", "HTTP/1.1 2000 OK\r\n\r\n",
              "invalid character in status line"),
      rejects("RejectsMissingSpaceAfterVersion", "HTTP/1.1200 OK\r\n\r\n", "invalid status line"),
      rejects("RejectsHttp2Version", "HTTP/2.0 200 OK\r\n\r\n", "unsupported HTTP version"),
      rejects("RejectsHttp12Version", "HTTP/1.2 200 OK\r\n\r\n", "unsupported HTTP version"),
      rejects("RejectsHttp09Version", "HTTP/0.9 200 OK\r\n\r\n", "unsupported HTTP version"),
      rejects("RejectsLetterInStatusCode", "HTTP/1.1 2x0 OK\r\n\r\n", "invalid status code"),
      rejects("RejectsBareLfRightAfterStatusCode", "HTTP/1.1 200\nContent-Length: 0\r\n\r\n",
              "bare LF"),
      rejects("RejectsLowercaseHttpName", "http/1.1 200 OK\r\n\r\n", "invalid HTTP version"),
      rejects("RejectsControlCharInReason", "HTTP/1.1 200 O\x01K\r\n\r\n",
              "invalid character in status line"),
      rejects("RejectsLeadingEmptyLine", "\r\nHTTP/1.1 200 OK\r\n\r\n", "invalid HTTP version"),
      rejects("RejectsBareLfAfterStatusLine", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
              "bare LF"),
      rejects("RejectsBareCrInStatusLine", "HTTP/1.1 200 OK\rX\r\n\r\n", "bare CR"),

      // Fields: the request rules, every one a 502.
      // A response's Host fields mean nothing to wsgate: no Host rule applies to them.
      accepts("IgnoresHostFieldsInResponses",
              "HTTP/1.1 200 OK\r\nHost: not a host\r\nHost: b\r\nContent-Length: 0\r\n\r\n"),
      rejects("RejectsBareLfAfterField", "HTTP/1.1 200 OK\r\nContent-Length: 0\n\r\n", "bare LF"),
      rejects("RejectsObsFold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
              "obs-fold"),
      rejects("RejectsSpaceBeforeColon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
              "whitespace before colon"),
      rejects("RejectsEmptyFieldName", "HTTP/1.1 200 OK\r\n: x\r\n\r\n", "empty field name"),
      rejects("RejectsNulInValue", "HTTP/1.1 200 OK\r\nX: a\0\r\n\r\n"sv, "NUL in field value"),
      rejects("RejectsDuplicateContentLength",
              "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
              "duplicate Content-Length"),
      rejects("RejectsInvalidContentLength", "HTTP/1.1 200 OK\r\nContent-Length: 1a\r\n\r\n",
              "invalid Content-Length"),
      rejects("RejectsContentLengthOverInt64",
              "HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
              "invalid Content-Length"),
      rejects("RejectsTransferEncodingWithContentLength",
              "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
              "Transfer-Encoding with Content-Length"),
      rejects("RejectsChunkedTwice",
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
              "chunked applied twice"),
      rejects("RejectsEmptyTransferEncoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n",
              "empty Transfer-Encoding"),
      rejects("RejectsTransferEncodingInHttp10",
              "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
              "Transfer-Encoding in HTTP/1.0"),
      rejects("RejectsInvalidFramingEvenWithoutBody",
              "HTTP/1.1 204 No Content\r\nContent-Length: x\r\n\r\n", "invalid Content-Length"),

      rejects("RejectsTransferEncodingWithContentLengthBeforeHeadEnds",
              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n",
              "Transfer-Encoding with Content-Length"),

      waits("WaitsOnEmptyBuffer", ""),
      waits("WaitsOnPartialStatusCode", "HTTP/1.1 20"),
      waits("WaitsAfterStatusCode", "HTTP/1.1 200"),
      waits("WaitsOnPartialReason", "HTTP/1.1 200 O"),
      waits("WaitsOnHeadWithoutFinalCrlf", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"),
  };
  return kCases;
}

class ResponseParserTest : public testing::TestWithParam<Case> {};

TEST_P(ResponseParserTest, GivesTheExpectedVerdict) {
  const Case& c = GetParam();
  ResponseHead head;
  const ParseResult r = parseResponseHead(c.input, ParseLimits{}, {c.requestWasHead}, head);
  ASSERT_EQ(r.status, c.status) << "reason: " << r.errorReason;
  if (c.status == ParseStatus::Error) {
    EXPECT_EQ(r.errorStatus, 502);
    EXPECT_EQ(r.errorReason, c.errorReason);
    return;
  }
  if (c.status != ParseStatus::Complete) return;
  const Want& w = c.want;
  EXPECT_EQ(r.headBytes, c.input.size() - w.afterHead);
  EXPECT_EQ(head.status, w.status);
  EXPECT_EQ(head.reason, w.reason);
  EXPECT_EQ(head.version, w.version);
  EXPECT_EQ(head.body, w.body);
  EXPECT_EQ(head.contentLength, w.contentLength);
  EXPECT_EQ(head.keepAlive, w.keepAlive);
}

TEST_P(ResponseParserTest, KeepsTheVerdictStableOverPrefixes) {
  const Case& c = GetParam();
  const ResponseContext ctx{c.requestWasHead};
  ResponseHead head;
  const ParseResult full = parseResponseHead(c.input, ParseLimits{}, ctx, head);
  bool decided = false;
  for (std::size_t k = 0; k <= c.input.size(); ++k) {
    const ParseResult r = parseResponseHead(c.input.substr(0, k), ParseLimits{}, ctx, head);
    if (r.status == ParseStatus::Incomplete) {
      ASSERT_FALSE(decided) << "verdict withdrawn at prefix " << k;
      continue;
    }
    decided = true;
    ASSERT_EQ(r.status, full.status) << "prefix " << k;
    ASSERT_EQ(r.errorReason, full.errorReason) << "prefix " << k;
    ASSERT_EQ(r.headBytes, full.headBytes) << "prefix " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Table, ResponseParserTest, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

TEST(ResponseParser, RejectsTooManyFieldsWith502) {
  const ParseLimits limits{.maxHeaderBytes = 1024, .maxHeaders = 2, .maxUriBytes = 1024};
  ResponseHead head;
  EXPECT_EQ(parseResponseHead("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", limits, {}, head).status,
            ParseStatus::Complete);
  const ParseResult r =
      parseResponseHead("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits, {}, head);
  EXPECT_EQ(r.status, ParseStatus::Error);
  EXPECT_EQ(r.errorStatus, 502);
  EXPECT_EQ(r.errorReason, "too many header fields");
}

TEST(ResponseParser, RejectsHeadOverTheByteLimitWith502) {
  const std::string_view input = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  ResponseHead head;
  ParseLimits limits;
  limits.maxHeaderBytes = input.size();
  EXPECT_EQ(parseResponseHead(input, limits, {}, head).status, ParseStatus::Complete);
  limits.maxHeaderBytes = input.size() - 1;
  const ParseResult r = parseResponseHead(input, limits, {}, head);
  EXPECT_EQ(r.status, ParseStatus::Error);
  EXPECT_EQ(r.errorStatus, 502);
  EXPECT_EQ(r.errorReason, "response head too large");
  // Within the limit and unfinished: still waiting.
  EXPECT_EQ(parseResponseHead(input.substr(0, input.size() - 1), limits, {}, head).status,
            ParseStatus::Incomplete);
}

TEST(ResponseParser, ResetsEveryFieldFromThePreviousResponse) {
  ResponseHead head;
  ASSERT_EQ(parseResponseHead("HTTP/1.0 404 Gone Away\r\nContent-Length: 5\r\n\r\n", ParseLimits{},
                              {}, head)
                .status,
            ParseStatus::Complete);
  ASSERT_EQ(parseResponseHead("HTTP/1.1 204\r\n\r\n", ParseLimits{}, {}, head).status,
            ParseStatus::Complete);
  EXPECT_EQ(head.version, Version::Http11);
  EXPECT_EQ(head.status, 204);
  EXPECT_EQ(head.reason, "");
  EXPECT_TRUE(head.headers.empty());
  EXPECT_EQ(head.body, BodyKind::None);
  EXPECT_EQ(head.contentLength, 0u);
  EXPECT_TRUE(head.keepAlive);
}

TEST(ResponseParser, ReusesTheHeaderVectorCapacity) {
  std::string big = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 50; ++i) big += "X-" + std::to_string(i) + ": v\r\n";
  big += "Content-Length: 0\r\n\r\n";
  ResponseHead head;
  ASSERT_EQ(parseResponseHead(big, ParseLimits{}, {}, head).status, ParseStatus::Complete);
  const Header* storage = head.headers.data();
  const std::size_t capacity = head.headers.capacity();
  ASSERT_EQ(
      parseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", ParseLimits{}, {}, head)
          .status,
      ParseStatus::Complete);
  EXPECT_EQ(head.headers.data(), storage);
  EXPECT_EQ(head.headers.capacity(), capacity);
  EXPECT_EQ(head.headers.size(), 1u);
}

TEST(ResponseParser, ReturnsFieldsAsTrimmedViews) {
  ResponseHead head;
  ASSERT_EQ(parseResponseHead("HTTP/1.1 101 Switching Protocols\r\nUpgrade:  websocket \r\n"
                              "Connection:\tUpgrade\r\n\r\n",
                              ParseLimits{}, {}, head)
                .status,
            ParseStatus::Complete);
  ASSERT_EQ(head.headers.size(), 2u);
  EXPECT_EQ(head.headers[0].value, "websocket");
  EXPECT_EQ(head.headers[1].value, "Upgrade");
}

}  // namespace
}  // namespace wsgate::http
