// Stable hashes and cookie values: frozen numbers, since every instance and every version
// must agree on them.

#include "balancer/hash.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "balancer/cookie.h"

namespace wsgate::balancer {
namespace {

TEST(Fnv1a64, MatchesTheReferenceVectors) {
  // From the FNV reference test suite (draft-eastlake-fnv).
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ull);
}

TEST(Fnv1a64, ContinuesAnEarlierHash) {
  EXPECT_EQ(fnv1a64("bar", fnv1a64("foo")), fnv1a64("foobar"));
}

TEST(StickyKeyHash, IsFrozen) {
  // Changing these moves every sticky client of every deployment. Values computed
  // independently (Python) from the FNV-1a and SplitMix64 definitions.
  EXPECT_EQ(stickyKeyHash(""), mix64(0xcbf29ce484222325ull));
  EXPECT_EQ(stickyKeyHash("user-42"), 0x7a1596f0e94b5793ull);
  EXPECT_EQ(stickyKeyHash("10.0.0.7"), 0x7140dfb15c70ce5cull);
}

TEST(StickyKeyHash, SpreadsSimilarKeysOverTheLowBits) {
  std::set<uint64_t> buckets;
  for (int k = 0; k < 1000; ++k) buckets.insert(stickyKeyHash("user-" + std::to_string(k)) % 64);
  EXPECT_EQ(buckets.size(), 64u);
}

TEST(BackendCookie, IsSixteenHexDigitsOfTheNameHash) {
  EXPECT_EQ(backendCookie("chat", "c1"), "0ec9b24624879ce4");
  EXPECT_EQ(backendCookieHash("chat", "c1"), fnv1a64("chat/c1"));
  EXPECT_EQ(backendCookie("", ""), "af63a24c860189fe");  // fnv1a64("/")
  EXPECT_NE(backendCookie("chat", "c1"), backendCookie("chat", "c2"));
  EXPECT_NE(backendCookie("chat", "c1"), backendCookie("app", "c1"));
}

TEST(BackendCookie, ParsesWhatItFormats) {
  for (const char* name : {"a", "b", "c1", "backend-with-a-long-name"}) {
    EXPECT_EQ(parseBackendCookie(backendCookie("pool", name)), backendCookieHash("pool", name));
  }
  EXPECT_EQ(parseBackendCookie("0EC9B24624879CE4"), 0x0ec9b24624879ce4ull);
}

TEST(BackendCookie, RejectsAnythingButSixteenHexDigits) {
  for (const char* bad : {"", "d39d4f4da5fd9bc", "d39d4f4da5fd9bc5a", "d39d4f4da5fd9bcg",
                          " d39d4f4da5fd9bc", "0x39d4f4da5fd9bc", "d39d4f4d-5fd9bc5"}) {
    EXPECT_EQ(parseBackendCookie(bad), std::nullopt) << '"' << bad << '"';
  }
}

}  // namespace
}  // namespace wsgate::balancer
