// Close codes (RFC 6455 7.4) and close payloads (RFC 6455 5.5.1), as Autobahn group 7 tests.

#include "proxy/ws/close_code.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace wsgate::ws {
namespace {

using namespace std::string_literals;

std::string payload(uint16_t code, std::string_view reason = {}) {
  std::string p{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
  p.append(reason);
  return p;
}

TEST(IsValidCloseCode, AcceptsExactlyTheCodesAllowedOnTheWire) {
  struct Range {
    uint32_t first, last;
    bool valid;
  };
  const Range ranges[] = {
      {0, 999, false},      // unused
      {1000, 1003, true},   // normal, going away, protocol error, unsupported data
      {1004, 1006, false},  // reserved, no status, abnormal
      {1007, 1014, true},   // invalid payload ... bad gateway
      {1015, 1015, false},  // TLS handshake failure, never on the wire
      {1016, 2999, false},  // reserved for the protocol
      {3000, 3999, true},   // registered for libraries and frameworks
      {4000, 4999, true},   // private use
      {5000, 65535, false},
  };
  uint32_t next = 0;
  for (const Range& r : ranges) {
    ASSERT_EQ(r.first, next) << "ranges must tile 0-65535";
    for (uint32_t code = r.first; code <= r.last; ++code)
      ASSERT_EQ(isValidCloseCode(static_cast<uint16_t>(code)), r.valid) << code;
    next = r.last + 1;
  }
  EXPECT_EQ(next, 65536u);
}

TEST(IsValidCloseCode, AcceptsTheCodesWsgateSends) {
  for (uint16_t code :
       {close_code::kNormal, close_code::kGoingAway, close_code::kProtocolError,
        close_code::kInvalidPayload, close_code::kMessageTooBig, close_code::kInternalError,
        close_code::kServiceRestart, close_code::kTryAgainLater, close_code::kBadGateway})
    EXPECT_TRUE(isValidCloseCode(code)) << code;
  for (uint16_t code : {close_code::kNoStatus, close_code::kAbnormal})
    EXPECT_FALSE(isValidCloseCode(code)) << code;
}

TEST(CheckClosePayload, JudgesEachShape) {
  struct Case {
    std::string_view name;
    std::string payload;
    uint16_t expect;
  };
  const Case cases[] = {
      {"empty", ""s, 0},
      {"one byte", "\x03"s, close_code::kProtocolError},
      // 0x0C followed by the string's NUL would read as 3072, a valid code.
      {"one byte of a valid code", "\x0c"s, close_code::kProtocolError},
      {"code only", payload(1000), 0},
      {"code and reason", payload(1001, "bye"), 0},
      {"library code", payload(3000), 0},
      {"private code", payload(4999, "x"), 0},
      {"125 bytes", payload(1000, std::string(123, 'r')), 0},
      {"125 bytes ending in a 2-byte character", payload(1000, std::string(121, 'r') + "\xc3\xa9"),
       0},
      {"126 bytes", payload(1000, std::string(124, 'r')), close_code::kProtocolError},
      {"utf-8 reason", payload(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), 0},
      {"code 0", payload(0), close_code::kProtocolError},
      {"code 999", payload(999), close_code::kProtocolError},
      {"code 1004", payload(1004), close_code::kProtocolError},
      {"code 1005", payload(1005), close_code::kProtocolError},
      {"code 1006", payload(1006), close_code::kProtocolError},
      {"code 1015", payload(1015), close_code::kProtocolError},
      {"code 1016", payload(1016), close_code::kProtocolError},
      {"code 2999", payload(2999), close_code::kProtocolError},
      {"code 5000", payload(5000), close_code::kProtocolError},
      {"code 65535", payload(65535), close_code::kProtocolError},
      {"invalid reason byte", payload(1000, "\xff"), close_code::kInvalidPayload},
      {"surrogate in reason", payload(1000, "ok\xed\xa0\x80"), close_code::kInvalidPayload},
      {"reason cut inside a character", payload(1000, "caf\xc3"), close_code::kInvalidPayload},
      // The code is judged before the reason.
      {"invalid code and reason", payload(1005, "\xff"), close_code::kProtocolError},
  };
  for (const Case& c : cases) {
    const Violation v = checkClosePayload(c.payload);
    EXPECT_EQ(v.code, c.expect) << c.name;
    EXPECT_EQ(static_cast<bool>(v), c.expect != 0) << c.name;
    EXPECT_EQ(v.reason.empty(), c.expect == 0) << c.name;
  }
}

TEST(CheckClosePayload, ReadsOnlyThePayloadItIsGiven) {
  // The relay may hand a view into a larger buffer: the byte after a 1-byte payload, which
  // would complete code 1000, is not part of it.
  const std::string buffer = payload(1000, "reason");
  EXPECT_EQ(checkClosePayload(std::string_view(buffer).substr(0, 1)).code,
            close_code::kProtocolError);
  EXPECT_EQ(checkClosePayload(std::string_view(buffer).substr(0, 2)).code, 0);
  // A reason cut inside a code point by the view is invalid UTF-8.
  const std::string accented = payload(1000, "caf\xc3\xa9");
  EXPECT_EQ(checkClosePayload(std::string_view(accented).substr(0, accented.size() - 1)).code,
            close_code::kInvalidPayload);
}

}  // namespace
}  // namespace wsgate::ws
