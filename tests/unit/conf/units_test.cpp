// Durations, sizes and host:port pairs as the config spells them: each accepted form and
// each rejection, with the reason the loader will show.
#include "conf/units.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string_view>

namespace wsgate::conf {
namespace {

using namespace std::chrono_literals;

struct DurationCase {
  std::string_view input;
  std::optional<Duration> expect;  // nullopt: rejected
  std::string_view why = {};       // substring of the reason, for rejections
};

TEST(ParseDuration, AcceptsAndRejectsTable) {
  const DurationCase cases[] = {
      {"0", 0ms},
      {"0s", 0ms},
      {"0ms", 0ms},
      {"0h", 0ms},
      {"1ms", 1ms},
      {"500ms", 500ms},
      {"10s", 10s},
      {"5m", 5min},
      {"1h", 1h},
      {"90s", 90s},
      {"007s", 7s},
      {"2562047788h", std::chrono::duration_cast<Duration>(std::chrono::hours(2562047788))},
      {"", std::nullopt, "empty"},
      {"10", std::nullopt, "needs a unit"},
      {"1", std::nullopt, "needs a unit"},
      {"-5s", std::nullopt, "negative"},
      {"-0s", std::nullopt, "negative"},
      {"1.5s", std::nullopt, "fractions"},
      {"1,5s", std::nullopt, "fractions"},
      {"10S", std::nullopt, "unknown unit"},
      {"10 s", std::nullopt, "unknown unit"},
      {"10sec", std::nullopt, "unknown unit"},
      {"10us", std::nullopt, "unknown unit"},
      {"1d", std::nullopt, "unknown unit"},
      {"1m30s", std::nullopt, "unknown unit"},
      {"s", std::nullopt, "does not start with a number"},
      {"+5s", std::nullopt, "does not start with a number"},
      {" 5s", std::nullopt, "does not start with a number"},
      {"99999999999999999999ms", std::nullopt, "too large"},  // over uint64
      {"9223372036854775808ms", std::nullopt, "too large"},   // over int64 milliseconds
      {"9999999999999999h", std::nullopt, "too large"},       // overflows when scaled
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.input);
    std::string_view why;
    auto got = parseDuration(c.input, why);
    EXPECT_EQ(got, c.expect);
    EXPECT_EQ(parseDuration(c.input), got) << "both overloads agree";
    if (!c.expect) {
      EXPECT_NE(why.find(c.why), std::string_view::npos) << why;
    }
  }
}

struct SizeCase {
  std::string_view input;
  std::optional<uint64_t> expect;
  std::string_view why = {};
};

TEST(ParseSize, AcceptsAndRejectsTable) {
  const SizeCase cases[] = {
      {"0", 0},
      {"1", 1},
      {"16384", 16384},
      {"1KiB", 1024},
      {"16KiB", 16 * 1024},
      {"16MiB", 16 * 1024 * 1024},
      {"1GiB", uint64_t{1} << 30},
      {"1KB", 1000},
      {"2MB", 2'000'000},
      {"3GB", 3'000'000'000},
      {"18446744073709551615", std::numeric_limits<uint64_t>::max()},
      {"", std::nullopt, "empty"},
      {"-1", std::nullopt, "negative"},
      {"1.5MiB", std::nullopt, "fractions"},
      {"16k", std::nullopt, "unknown unit"},
      {"16K", std::nullopt, "unknown unit"},
      {"16kb", std::nullopt, "unknown unit"},
      {"16kib", std::nullopt, "unknown unit"},
      {"16 KiB", std::nullopt, "unknown unit"},
      {"1TiB", std::nullopt, "unknown unit"},
      {"16B", std::nullopt, "unknown unit"},
      {"KiB", std::nullopt, "does not start with a number"},
      {"0x10", std::nullopt, "unknown unit"},
      {"18446744073709551616", std::nullopt, "too large"},
      {"17179869184GiB", std::nullopt, "too large"},  // 2^34 * 2^30 = 2^64
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.input);
    std::string_view why;
    auto got = parseSize(c.input, why);
    EXPECT_EQ(got, c.expect);
    EXPECT_EQ(parseSize(c.input), got);
    if (!c.expect) {
      EXPECT_NE(why.find(c.why), std::string_view::npos) << why;
    }
  }
}

struct HostPortCase {
  std::string_view input;
  bool allowZeroPort;
  std::optional<std::string_view> host;  // nullopt: rejected
  uint16_t port = 0;
  std::string_view why = {};
};

TEST(ParseHostPort, AcceptsAndRejectsTable) {
  const HostPortCase cases[] = {
      {"127.0.0.1:8080", false, "127.0.0.1", 8080},
      {"0.0.0.0:0", true, "0.0.0.0", 0},
      {"localhost:80", false, "localhost", 80},
      {"my_svc.internal:9000", false, "my_svc.internal", 9000},
      {"Example.COM:65535", false, "Example.COM", 65535},
      {"[::1]:443", false, "::1", 443},
      {"[::]:0", true, "::", 0},
      {"[fe80::1%eth0]:80", false, "fe80::1%eth0", 80},
      {"127.0.0.1:08080", false, "127.0.0.1", 8080},
      {"", false, std::nullopt, 0, "empty"},
      {"127.0.0.1", false, std::nullopt, 0, "missing port"},
      {"127.0.0.1:", false, std::nullopt, 0, "missing port"},
      {":80", false, std::nullopt, 0, "missing host"},
      {"::1:80", false, std::nullopt, 0, "needs brackets"},
      {"[::1]", false, std::nullopt, 0, "missing port"},
      {"[::1]80", false, std::nullopt, 0, "missing port"},
      {"[::1:80", false, std::nullopt, 0, "missing ']'"},
      {"[xyz]:80", false, std::nullopt, 0, "invalid IPv6"},
      {"[127.0.0.1]:80", false, std::nullopt, 0, "invalid IPv6"},
      {"[fe80::1%]:80", false, std::nullopt, 0, "invalid IPv6"},
      {"1.2.3:80", false, std::nullopt, 0, "invalid IPv4"},
      {"256.1.1.1:80", false, std::nullopt, 0, "invalid IPv4"},
      {"-bad.example:80", false, std::nullopt, 0, "invalid host name"},
      {"a..b:80", false, std::nullopt, 0, "invalid host name"},
      {"bad host:80", false, std::nullopt, 0, "invalid host name"},
      {"host:65536", false, std::nullopt, 0, "between 1 and 65535"},
      {"host:123456", false, std::nullopt, 0, "between 1 and 65535"},
      {"host:65536", true, std::nullopt, 0, "between 0 and 65535"},
      {"http://127.0.0.1:8601", false, std::nullopt, 0, "without a scheme"},
      {"ws://[::1]:80", false, std::nullopt, 0, "without a scheme"},
      {"host:-1", false, std::nullopt, 0, "not a number"},
      {"host:http", false, std::nullopt, 0, "not a number"},
      {"host:0", false, std::nullopt, 0, "only allowed for listeners"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.input);
    std::string_view why;
    auto got = parseHostPort(c.input, c.allowZeroPort, why);
    EXPECT_EQ(parseHostPort(c.input, c.allowZeroPort).has_value(), got.has_value());
    if (c.host) {
      ASSERT_TRUE(got) << why;
      EXPECT_EQ(got->host, *c.host);
      EXPECT_EQ(got->port, c.port);
    } else {
      EXPECT_FALSE(got);
      EXPECT_NE(why.find(c.why), std::string_view::npos) << why;
    }
  }
}

TEST(HostPort, PrintsBackWithBracketsForIpv6) {
  for (std::string_view text :
       {"127.0.0.1:80", "[::1]:443", "example.com:8080", "[fe80::1%lo]:1"}) {
    auto hp = parseHostPort(text, false);
    ASSERT_TRUE(hp) << text;
    EXPECT_EQ(hp->str(), text);
  }
}

TEST(IsValidHost, AcceptsNamesAndLiteralsOnly) {
  struct Case {
    std::string_view host;
    bool valid;
  };
  const Case cases[] = {
      {"example.com", true},
      {"a", true},
      {"xn--bcher-kva.example", true},
      {"10.0.0.1", true},
      {"::1", true},
      {"fe80::1%eth0", true},
      {"", false},
      {"-a.com", false},
      {"a-.com", false},
      {"a..com", false},
      {"example.com.", false},
      {"*.example.com", false},
      {"10.0.0", false},
      {"300.0.0.1", false},
      {"[::1]", false},
      {"host name", false},
      {std::string_view("a\0b", 3), false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(isValidHost(c.host), c.valid) << c.host;
  }
}

TEST(IsValidHost, RejectsOverlongNamesAndLabels) {
  const std::string label63(63, 'a');
  EXPECT_TRUE(isValidHost(label63 + ".com"));
  EXPECT_FALSE(isValidHost(std::string(64, 'a') + ".com"));
  std::string name253;
  while (name253.size() + 2 <= 253) name253 += (name253.empty() ? "a" : ".a");
  EXPECT_TRUE(isValidHost(name253));
  EXPECT_FALSE(isValidHost(name253 + "aa"));
}

TEST(Mark, PrintsFileLineColumnOrJustTheFile) {
  EXPECT_EQ((Mark{"conf/a.yaml", 12, 5}.str()), "conf/a.yaml:12:5");
  EXPECT_EQ((Mark{"conf/a.yaml", 0, 0}.str()), "conf/a.yaml");
}

}  // namespace
}  // namespace wsgate::conf
