// Local responses: exact bytes for each shape wsgate answers with itself.

#include "proxy/http/response_writer.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "proxy/http/head.h"
#include "proxy/http/response_parser.h"

namespace wsgate::http {
namespace {

struct Case {
  std::string_view name;
  LocalResponse response;
  std::string_view expected;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

const std::vector<Case>& cases() {
  static const std::vector<Case> kCases = {
      {"WritesErrorAndCloses",
       {.status = 400, .body = "400 Bad Request: obs-fold\n"},
       "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
       "Content-Length: 26\r\nConnection: close\r\n\r\n400 Bad Request: obs-fold\n"},
      {"WritesKeepAliveResponse",
       {.status = 200, .body = "ok", .contentType = "text/html", .keepAlive = true},
       "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n"
       "Connection: keep-alive\r\n\r\nok"},
      {"SendsLengthButNoBodyForHead",
       {.status = 200, .body = "hello", .headOnly = true},
       "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n"
       "Connection: close\r\n\r\n"},
      {"OmitsContentTypeForEmptyBody",
       {.status = 503},
       "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
      {"AppendsExtraHeaders",
       {.status = 426,
        .body = "426 Upgrade Required\n",
        .extraHeaders = "Sec-WebSocket-Version: 13\r\n"},
       "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\n"
       "Content-Length: 21\r\nConnection: close\r\nSec-WebSocket-Version: 13\r\n\r\n"
       "426 Upgrade Required\n"},
      {"RedirectsWithLocation",
       {.status = 308, .extraHeaders = "Location: https://example.com/\r\n", .keepAlive = true},
       "HTTP/1.1 308 Permanent Redirect\r\nContent-Length: 0\r\nConnection: keep-alive\r\n"
       "Location: https://example.com/\r\n\r\n"},
      {"SendsNoContentOrLengthWith204",
       {.status = 204, .body = "ignored", .keepAlive = true},
       "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"},
      {"SendsNoContentWith304",
       {.status = 304, .body = "ignored", .keepAlive = true},
       "HTTP/1.1 304 Not Modified\r\nConnection: keep-alive\r\n\r\n"},
      {"WritesBareInterimResponse", {.status = 100}, "HTTP/1.1 100 Continue\r\n\r\n"},
      {"NamesUnknownStatusUnknown",
       {.status = 299, .body = "x"},
       "HTTP/1.1 299 Unknown\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 1\r\n"
       "Connection: close\r\n\r\nx"},
  };
  return kCases;
}

class ResponseWriterTest : public testing::TestWithParam<Case> {};

TEST_P(ResponseWriterTest, WritesTheExpectedBytes) {
  std::string out = "before|";
  appendLocalResponse(GetParam().response, out);
  EXPECT_EQ(out, "before|" + std::string(GetParam().expected));
}

TEST_P(ResponseWriterTest, WritesAHeadTheResponseParserAccepts) {
  std::string out;
  appendLocalResponse(GetParam().response, out);
  ResponseHead head;
  const ParseResult r = parseResponseHead(out, ParseLimits{}, {}, head);
  ASSERT_EQ(r.status, ParseStatus::Complete) << r.errorReason;
  EXPECT_EQ(head.status, GetParam().response.status);
  if (head.body == BodyKind::ContentLength && !GetParam().response.headOnly) {
    EXPECT_EQ(r.headBytes + head.contentLength, out.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Table, ResponseWriterTest, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

TEST(ErrorBody, SaysCodeReasonAndDetail) {
  EXPECT_EQ(errorBody(400, "obs-fold"), "400 Bad Request: obs-fold\n");
  EXPECT_EQ(errorBody(502, "backend closed"), "502 Bad Gateway: backend closed\n");
  EXPECT_EQ(errorBody(404, ""), "404 Not Found\n");
  EXPECT_EQ(errorBody(431, "too many header fields"),
            "431 Request Header Fields Too Large: too many header fields\n");
}

}  // namespace
}  // namespace wsgate::http
