// Helpers of head_common.cpp: the Host check (as a Host field and as an absolute-form
// authority, which must obey the same rules), case-insensitive comparison, token lists and
// reason phrases. Each table names the boundary or the rejection branch a row stands for.

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "proxy/http/field_parser.h"
#include "proxy/http/head.h"
#include "proxy/http/request_parser.h"

namespace wsgate::http {
namespace {

// Host = uri-host [ ":" port ] (RFC 9112 3.2, RFC 9110 7.2, RFC 3986 3.2.2-3.2.3): an
// IP-literal in brackets, an IPv4 address or a reg-name, then an optional port of up to five
// digits (0..65535 need at most five; RFC 3986 lets the port be empty).
struct HostCase {
  std::string_view name;
  std::string_view value;
  bool valid;
};

void PrintTo(const HostCase& c, std::ostream* os) { *os << c.name; }

HostCase accepts(std::string_view name, std::string_view value) { return {name, value, true}; }
HostCase rejects(std::string_view name, std::string_view value) { return {name, value, false}; }

const std::vector<HostCase>& hostCases() {
  static const std::vector<HostCase> kCases = {
      // reg-name and IPv4 (RFC 3986 3.2.2).
      accepts("AcceptsRegName", "example.com"),
      accepts("AcceptsSingleLabel", "localhost"),
      accepts("AcceptsUppercaseRegName", "EXAMPLE.Com"),
      accepts("AcceptsEveryUnreservedCharacter", "az-AZ.09_~"),
      accepts("AcceptsSubDelimsInRegName", "a!$&'()*+,;=b"),
      accepts("AcceptsPercentEncodedOctets", "ex%41mple%2d%2D"),
      accepts("AcceptsPercentEncodingThatEndsTheValue", "example%41"),
      accepts("AcceptsIpv4Address", "192.0.2.1"),
      accepts("AcceptsEmptyValue", ""),  // RFC 9110 7.2: a target without authority

      // IP-literal (RFC 3986 3.2.2).
      accepts("AcceptsIpv6Literal", "[2001:db8::1]"),
      accepts("AcceptsIpv6Loopback", "[::1]"),
      accepts("AcceptsIpv4MappedIpv6Literal", "[::ffff:192.0.2.1]"),
      accepts("AcceptsIpvFutureLiteral", "[v1.fe80::a+en1]"),

      // Ports (RFC 3986 3.2.3).
      accepts("AcceptsPortZero", "example.com:0"),
      accepts("AcceptsOneDigitPort", "example.com:8"),
      accepts("AcceptsFourDigitPort", "example.com:8080"),
      accepts("AcceptsLowestFiveDigitPort", "example.com:10000"),
      accepts("AcceptsHighestPort", "example.com:65535"),
      accepts("AcceptsFiveDigitPortWrittenWithLeadingZeros", "example.com:00080"),
      accepts("AcceptsEmptyPort", "example.com:"),
      accepts("AcceptsPortOnIpv4Address", "192.0.2.1:54321"),
      accepts("AcceptsPortOnIpv6Literal", "[::1]:8080"),
      accepts("AcceptsHighestPortOnIpv6Literal", "[::1]:65535"),
      accepts("AcceptsEmptyPortOnIpv6Literal", "[::1]:"),

      // Port rejections.
      rejects("RejectsSixDigitPort", "example.com:123456"),
      rejects("RejectsSixDigitPortEvenWithALeadingZero", "example.com:065535"),
      rejects("RejectsSixDigitPortOnIpv6Literal", "[::1]:100000"),
      rejects("RejectsLetterInPort", "example.com:80x"),
      rejects("RejectsSignedPort", "example.com:+80"),
      rejects("RejectsSecondColon", "example.com:80:81"),
      rejects("RejectsPortWithoutHost", ":80"),
      rejects("RejectsLoneColon", ":"),

      // reg-name rejections: what host-confusion attacks are made of.
      rejects("RejectsSpaceInside", "exa mple.com"),
      rejects("RejectsTabInside", "exa\tmple.com"),
      rejects("RejectsSlash", "example.com/admin"),
      rejects("RejectsBackslash", "example.com\\admin"),
      rejects("RejectsUserinfo", "user@example.com"),
      rejects("RejectsNonAscii", "caf\xc3\xa9.example"),
      rejects("RejectsBracketInsideRegName", "exa[mple]"),
      rejects("RejectsClosingBracketWithoutOpening", "example.com]"),
      rejects("RejectsPercentWithOneHexDigit", "ex%4"),
      rejects("RejectsPercentThatEndsTheValue", "example%"),
      rejects("RejectsPercentWithNonHexFirstDigit", "ex%g1"),
      rejects("RejectsPercentWithNonHexSecondDigit", "ex%4g"),

      // IP-literal rejections.
      rejects("RejectsNameInsideIpLiteral", "[example.com]"),
      rejects("RejectsIpv4InsideIpLiteral", "[1.2.3.4]"),
      rejects("RejectsTooManyColonsInIpLiteral", "[:::::]"),
      rejects("RejectsNonHexInsideIpLiteral", "[zzz]"),
      rejects("RejectsIpvFutureWithoutVersion", "[v.x]"),
      rejects("RejectsIpvFutureWithoutDot", "[v1x]"),
      rejects("RejectsIpvFutureWithNothingAfterDot", "[v1.]"),
      rejects("RejectsIpvFutureWithNonHexVersion", "[vg.x]"),
      rejects("RejectsIpv6LiteralWithZone", "[fe80::1%25eth0]"),
      rejects("RejectsEmptyIpLiteral", "[]"),
      rejects("RejectsEmptyIpLiteralWithPort", "[]:80"),
      rejects("RejectsUnclosedIpLiteral", "[::1"),
      rejects("RejectsBracketInsideIpLiteral", "[[::1]]"),
      rejects("RejectsSpaceInsideIpLiteral", "[:: 1]"),
      rejects("RejectsTextAfterIpLiteral", "[::1]x"),
      rejects("RejectsLetterInPortOfIpLiteral", "[::1]:8o"),
  };
  return kCases;
}

class HostTest : public testing::TestWithParam<HostCase> {};

TEST_P(HostTest, DecidesTheHostField) {
  const HostCase& c = GetParam();
  const std::string input = "GET / HTTP/1.1\r\nHost: " + std::string(c.value) + "\r\n\r\n";
  RequestHead head;
  const ParseResult r = parseRequestHead(input, ParseLimits{}, head);
  if (c.valid) {
    ASSERT_EQ(r.status, ParseStatus::Complete) << "reason: " << r.errorReason;
    EXPECT_EQ(head.host, c.value);
  } else {
    ASSERT_EQ(r.status, ParseStatus::Error);
    EXPECT_EQ(r.errorStatus, 400);
    EXPECT_EQ(r.errorReason, "invalid Host");
  }
}

// Whether `value` can stand as the authority of "http://<value>/" without changing where the
// authority ends or what form the target takes.
bool fitsInTargetAuthority(std::string_view value) {
  if (value.empty()) return false;  // "http:///" has no authority: a rejection of its own
  for (char c : value) {
    const bool visible = c > 0x20 && c < 0x7f;
    if (!visible || c == '/' || c == '?' || c == '#' || c == '@') return false;
  }
  return true;
}

// The same table as a target's authority, less the rows that cannot be written there (no
// skipped instances: a row either runs or is not instantiated).
std::vector<HostCase> authorityCases() {
  std::vector<HostCase> out;
  for (const HostCase& c : hostCases()) {
    if (fitsInTargetAuthority(c.value)) out.push_back(c);
  }
  return out;
}

class HostAuthorityTest : public testing::TestWithParam<HostCase> {};

TEST_P(HostAuthorityTest, DecidesTheTargetAuthorityTheSameWay) {
  const HostCase& c = GetParam();
  // HTTP/1.0 so that no Host field is needed: the authority alone decides.
  const std::string input = "GET http://" + std::string(c.value) + "/ HTTP/1.0\r\n\r\n";
  RequestHead head;
  const ParseResult r = parseRequestHead(input, ParseLimits{}, head);
  if (c.valid) {
    ASSERT_EQ(r.status, ParseStatus::Complete) << "reason: " << r.errorReason;
    EXPECT_EQ(head.host, c.value);
  } else {
    ASSERT_EQ(r.status, ParseStatus::Error);
    EXPECT_EQ(r.errorStatus, 400);
    EXPECT_EQ(r.errorReason, "invalid authority in target");
  }
}

INSTANTIATE_TEST_SUITE_P(Table, HostTest, testing::ValuesIn(hostCases()),
                         [](const testing::TestParamInfo<HostCase>& info) {
                           return std::string(info.param.name);
                         });
INSTANTIATE_TEST_SUITE_P(Table, HostAuthorityTest, testing::ValuesIn(authorityCases()),
                         [](const testing::TestParamInfo<HostCase>& info) {
                           return std::string(info.param.name);
                         });

// The value is a view into a larger buffer: what follows it must not complete it (a check
// that reads past the end would take "ex%4" + "1" for "ex%41" and then trip over ":80").
TEST(HostCheck, LooksNoFurtherThanTheEndOfTheValue) {
  const std::string_view buffer = "ex%41:80";
  EXPECT_FALSE(detail::isValidHost(buffer.substr(0, 4)));  // "ex%4", then "1:80"
  EXPECT_TRUE(detail::isValidHost(buffer.substr(0, 5)));
  EXPECT_TRUE(detail::isValidHost(buffer));
  const std::string_view literal = "[::1]:80";
  EXPECT_FALSE(detail::isValidHost(literal.substr(0, 4)));  // "[::1", then "]:80"
  EXPECT_TRUE(detail::isValidHost(literal.substr(0, 5)));
}

struct IequalsCase {
  std::string_view name;
  std::string_view a, b;
  bool equal;
};

void PrintTo(const IequalsCase& c, std::ostream* os) { *os << c.name; }

class IequalsTest : public testing::TestWithParam<IequalsCase> {};

TEST_P(IequalsTest, ComparesAsciiLettersWithoutCase) {
  const IequalsCase& c = GetParam();
  EXPECT_EQ(iequals(c.a, c.b), c.equal);
  EXPECT_EQ(iequals(c.b, c.a), c.equal);
}

INSTANTIATE_TEST_SUITE_P(
    Table, IequalsTest,
    testing::Values(IequalsCase{"FoldsMixedCase", "Content-Length", "content-LENGTH", true},
                    IequalsCase{"FoldsTheFirstAndLastLetters", "AZ", "az", true},
                    IequalsCase{"MatchesTwoEmptyStrings", "", "", true},
                    IequalsCase{"TellsPrefixesApart", "Host", "Hos", false},
                    IequalsCase{"TellsDifferentLettersApart", "Host", "Hoat", false},
                    // '@' and '[' sit next to 'A' and 'Z'; 32 above them are '`' and '{'.
                    IequalsCase{"DoesNotFoldTheCharacterBeforeA", "@", "`", false},
                    IequalsCase{"DoesNotFoldTheCharacterAfterZ", "[", "{", false},
                    IequalsCase{"DoesNotFoldNonAscii", "\xc3\xa9", "\xc3\x89", false}),
    [](const testing::TestParamInfo<IequalsCase>& info) { return std::string(info.param.name); });

struct TokenCase {
  std::string_view name;
  std::string_view list, token;
  bool found;
};

void PrintTo(const TokenCase& c, std::ostream* os) { *os << c.name; }

class HasTokenTest : public testing::TestWithParam<TokenCase> {};

TEST_P(HasTokenTest, FindsWholeTokensInCommaSeparatedLists) {
  const TokenCase& c = GetParam();
  EXPECT_EQ(hasToken(c.list, c.token), c.found);
}

INSTANTIATE_TEST_SUITE_P(
    Table, HasTokenTest,
    testing::Values(TokenCase{"FindsTokenInAnyCase", "keep-alive, Upgrade", "upgrade", true},
                    TokenCase{"IgnoresWhitespaceAroundElements", " \tclose\t ", "close", true},
                    TokenCase{"IgnoresEmptyElements", ",,close,", "close", true},
                    TokenCase{"FindsTheLastElement", "a, b, close", "close", true},
                    TokenCase{"FindsTokenRightAfterAComma", "keep-alive,close", "close", true},
                    TokenCase{"DoesNotMatchAPrefix", "closed", "close", false},
                    TokenCase{"DoesNotMatchInsideAnElement", "x-close-y", "close", false},
                    TokenCase{"FindsNothingInAnEmptyList", "", "close", false},
                    TokenCase{"NeverFindsAnEmptyToken", "a, b", "", false},
                    TokenCase{"NeverFindsAnEmptyTokenInAnEmptyList", "", "", false},
                    TokenCase{"NeverFindsAnEmptyTokenAmongEmptyElements", "a,,b", "", false}),
    [](const testing::TestParamInfo<TokenCase>& info) { return std::string(info.param.name); });

TEST(FindHeader, ReturnsTheFirstFieldOfThatNameInAnyCase) {
  const std::vector<Header> headers = {{"Host", "a"}, {"X-A", "1"}, {"x-a", "2"}};
  EXPECT_EQ(findHeader(headers, "x-A"), &headers[1]);
  EXPECT_EQ(findHeader(headers, "X-Missing"), nullptr);
  EXPECT_EQ(findHeader({}, "Host"), nullptr);
}

// The statuses wsgate answers with itself, and the fallback for a code it does not know.
TEST(ReasonPhrase, NamesTheStatusesWsgateSends) {
  const std::vector<std::pair<int, std::string_view>> expected = {
      {100, "Continue"},
      {101, "Switching Protocols"},
      {200, "OK"},
      {204, "No Content"},
      {304, "Not Modified"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {404, "Not Found"},
      {408, "Request Timeout"},
      {413, "Content Too Large"},
      {414, "URI Too Long"},
      {426, "Upgrade Required"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {505, "HTTP Version Not Supported"},
      {299, "Unknown"},
      {799, "Unknown"},
      {-1, "Unknown"},
  };
  for (const auto& [status, phrase] : expected) EXPECT_EQ(reasonPhrase(status), phrase) << status;
}

}  // namespace
}  // namespace wsgate::http
