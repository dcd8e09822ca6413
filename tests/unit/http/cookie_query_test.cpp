// Cookie and query-parameter lookup used by sticky sessions.
#include <gtest/gtest.h>

#include <optional>
#include <string_view>
#include <vector>

#include "proxy/http/head.h"

namespace wsgate::http {
namespace {

struct CookieCase {
  const char* name;
  std::vector<Header> headers;
  std::string_view cookie;
  std::optional<std::string_view> expect;
};

class FindCookieTest : public ::testing::TestWithParam<CookieCase> {};

TEST_P(FindCookieTest, FindsTheNamedCookie) {
  const auto& c = GetParam();
  EXPECT_EQ(findCookie(c.headers, c.cookie), c.expect);
}

INSTANTIATE_TEST_SUITE_P(
    Table, FindCookieTest,
    ::testing::Values(
        CookieCase{"Single", {{"Cookie", "WSGATE=abc"}}, "WSGATE", "abc"},
        CookieCase{"AmongOthers", {{"Cookie", "a=1; WSGATE=abc; b=2"}}, "WSGATE", "abc"},
        CookieCase{"SecondField", {{"Cookie", "a=1"}, {"cookie", "WSGATE=x"}}, "WSGATE", "x"},
        CookieCase{"NameIsCaseSensitive", {{"Cookie", "wsgate=abc"}}, "WSGATE", std::nullopt},
        CookieCase{"PrefixOfAnotherName", {{"Cookie", "WSGATE2=abc"}}, "WSGATE", std::nullopt},
        CookieCase{"QuotedValue", {{"Cookie", "WSGATE=\"abc\""}}, "WSGATE", "abc"},
        CookieCase{"EmptyValue", {{"Cookie", "WSGATE="}}, "WSGATE", ""},
        CookieCase{"NoCookieField", {{"Host", "x"}}, "WSGATE", std::nullopt},
        CookieCase{"FirstOfTwoWins", {{"Cookie", "WSGATE=a; WSGATE=b"}}, "WSGATE", "a"},
        CookieCase{"SpacesAndTabsAroundPairs",
                   {{"Cookie", " a=1 ;\tWSGATE = abc \t; b=2"}},
                   "WSGATE",
                   "abc"},
        CookieCase{"LoneQuoteIsKeptAsSent", {{"Cookie", "WSGATE=\""}}, "WSGATE", "\""},
        CookieCase{"UnbalancedQuoteIsKeptAsSent", {{"Cookie", "WSGATE=\"abc"}}, "WSGATE", "\"abc"},
        CookieCase{"EmptyQuotedValue", {{"Cookie", "WSGATE=\"\""}}, "WSGATE", ""},
        CookieCase{"NotInOtherFields",
                   {{"Set-Cookie", "WSGATE=evil"}, {"X-Cookie", "WSGATE=evil"}},
                   "WSGATE",
                   std::nullopt},
        CookieCase{"EmptyCookieField", {{"Cookie", ""}}, "WSGATE", std::nullopt}),
    [](const auto& info) { return info.param.name; });

struct QueryCase {
  const char* name;
  std::string_view query;
  std::string_view param;
  std::optional<std::string_view> expect;
};

class FindQueryParamTest : public ::testing::TestWithParam<QueryCase> {};

TEST_P(FindQueryParamTest, FindsTheNamedParameter) {
  const auto& c = GetParam();
  EXPECT_EQ(findQueryParam(c.query, c.param), c.expect);
}

INSTANTIATE_TEST_SUITE_P(
    Table, FindQueryParamTest,
    ::testing::Values(QueryCase{"Only", "room=42", "room", "42"},
                      QueryCase{"Middle", "a=1&room=42&b=2", "room", "42"},
                      QueryCase{"WithoutValue", "a=1&room", "room", ""},
                      QueryCase{"Missing", "a=1&b=2", "room", std::nullopt},
                      QueryCase{"PrefixIsNotAMatch", "rooms=1", "room", std::nullopt},
                      QueryCase{"EmptyQuery", "", "room", std::nullopt},
                      QueryCase{"KeptEncoded", "room=a%20b", "room", "a%20b"},
                      QueryCase{"FirstOfTwoWins", "room=1&room=2", "room", "1"},
                      QueryCase{"EmptyValue", "a=1&room=", "room", ""},
                      QueryCase{"ValueMayHoldEquals", "room=a=b", "room", "a=b"},
                      QueryCase{"SemicolonDoesNotSeparate", "a=1;room=2", "room", std::nullopt}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace wsgate::http
