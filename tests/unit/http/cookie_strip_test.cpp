// cookieWithout: wsgate's own cookie out of a Cookie field (sticky.cookie.indirect), every other
// pair kept byte for byte.
#include "proxy/http/cookie_strip.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>

namespace wsgate::http {
namespace {

struct StripCase {
  const char* name;
  std::string_view value;
  std::optional<std::string_view> expect;  // nullopt: untouched; "": drop the field
};

void PrintTo(const StripCase& c, std::ostream* os) { *os << c.name; }

class CookieWithoutTest : public ::testing::TestWithParam<StripCase> {};

TEST_P(CookieWithoutTest, RemovesOnlyTheNamedCookie) {
  const auto& c = GetParam();
  const auto got = cookieWithout(c.value, "WSGATE");
  ASSERT_EQ(got.has_value(), c.expect.has_value()) << (got ? *got : "(untouched)");
  if (got) {
    EXPECT_EQ(*got, *c.expect);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, CookieWithoutTest,
    ::testing::Values(
        StripCase{"Only", "WSGATE=0123456789abcdef", ""},
        StripCase{"First", "WSGATE=0123456789abcdef; a=1; b=2", "a=1; b=2"},
        StripCase{"Middle", "a=1; WSGATE=0123456789abcdef; b=2", "a=1; b=2"},
        StripCase{"Last", "a=1; b=2; WSGATE=0123456789abcdef", "a=1; b=2"},
        StripCase{"Absent", "a=1; b=2", std::nullopt}, StripCase{"EmptyField", "", std::nullopt},
        StripCase{"SimilarNamesAreOtherCookies", "WSGATE2=x; xWSGATE=y; wsgate=z", std::nullopt},
        StripCase{"SimilarNamesKeptAroundOurs", "WSGATE2=x; WSGATE=v; xWSGATE=y",
                  "WSGATE2=x; xWSGATE=y"},
        StripCase{"QuotedValueOfOurs", "a=1; WSGATE=\"0123456789abcdef\"", "a=1"},
        StripCase{"QuotedValuesOfOthersKept", "a=\"x y\"; WSGATE=v; b=\"\"", "a=\"x y\"; b=\"\""},
        StripCase{"SeparatorsWithoutSpacesKept", "a=1;WSGATE=v;b=2", "a=1;b=2"},
        StripCase{"OddSpacingOfOthersKept", "a=1 ;  WSGATE = v ;\tb = 2 ", "a=1 ;\tb = 2"},
        StripCase{"EveryCopyRemoved", "WSGATE=a; c=3; WSGATE=b", "c=3"},
        StripCase{"PairWithoutEquals", "WSGATE; a=1", "a=1"},
        StripCase{"EmptyValue", "a=1; WSGATE=", "a=1"},
        StripCase{"EmptyPairsDropped", "a=1;; WSGATE=v; ;b=2;", "a=1;b=2"},
        StripCase{"OnlyEmptyPairsLeft", " ; WSGATE=v ;; ", ""},
        StripCase{"EmptyPairsWithoutOursUntouched", "a=1;; b=2", std::nullopt},
        StripCase{"ValueNamingOursIsNotOurs", "a=WSGATE; b=WSGATE=1", std::nullopt},
        StripCase{"LeadingSpacesOfTheFirstKeptDropped", "WSGATE=v;   a=1", "a=1"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(CookieWithout, UsesTheConfiguredName) {
  EXPECT_EQ(cookieWithout("SRV=1; WSGATE=2", "SRV"), "WSGATE=2");
  EXPECT_EQ(cookieWithout("SRV=1; WSGATE=2", "srv"), std::nullopt);  // names are case-sensitive
}

}  // namespace
}  // namespace wsgate::http
