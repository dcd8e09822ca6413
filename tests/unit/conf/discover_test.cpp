// `pools.NAME.backends[]: { discover: {...} }`: every key read, the defaults, and each
// mistake reported once at its FILE:LINE:COL.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "conf/loader.h"

namespace wsgate::conf {
namespace {

using namespace std::chrono_literals;

constexpr const char* kFile = "t.yaml";

// A pool 'p' whose backends list is `backends` (the case's lines start at line 4), plus the
// sections every config needs, after it.
std::string config(std::string_view backends) {
  return "pools:\n  p:\n    backends:\n" + std::string(backends) +
         "\nlisteners: [{name: main, listen: '127.0.0.1:0'}]\nroutes: [{pool: p}]\n";
}

std::string joined(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += e.str() + "\n";
  return out;
}

TEST(Discover, ReadsEveryKey) {
  const LoadResult r = loadString(config(R"(      - { name: s1, address: 127.0.0.1:9001 }
      - discover:
          dns: Chat.Default.svc.Cluster.Local.
          port: 9001
          interval: 250ms
          timeout: 2s
          hold_empty: 1m
          family: ipv4
          resolvers: [127.0.0.1:5353, 10.0.0.10:53]
          weight: 3
          max_connections: 500)"),
                                  kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  const PoolConfig& p = r.config->pools.at(0);
  ASSERT_EQ(p.backends.size(), 1u);  // the file's; discovered ones come at run time
  ASSERT_EQ(p.discover.size(), 1u);
  const DiscoverConfig& d = p.discover[0];
  EXPECT_EQ(d.dns, "chat.default.svc.cluster.local");
  EXPECT_EQ(d.port, 9001);
  EXPECT_EQ(d.interval, 250ms);
  EXPECT_EQ(d.timeout, 2s);
  EXPECT_EQ(d.holdEmpty, 60s);
  EXPECT_EQ(d.family, DiscoverFamily::Ipv4);
  ASSERT_EQ(d.resolvers.size(), 2u);
  EXPECT_EQ(d.resolvers[0].str(), "127.0.0.1:5353");
  EXPECT_EQ(d.resolvers[1].str(), "10.0.0.10:53");
  EXPECT_EQ(d.weight, 3u);
  EXPECT_EQ(d.maxConnections, 500u);
  EXPECT_EQ(d.mark.line, 5);
  EXPECT_EQ(d.mark.column, 9);
}

TEST(Discover, DefaultsWhatIsLeftOut) {
  const LoadResult r = loadString(config("      - discover: { dns: chat.svc, port: 80 }"), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  const DiscoverConfig& d = r.config->pools.at(0).discover.at(0);
  EXPECT_EQ(d.interval, 5s);
  EXPECT_EQ(d.timeout, 1s);
  EXPECT_EQ(d.holdEmpty, 30s);
  EXPECT_EQ(d.family, DiscoverFamily::Any);
  EXPECT_TRUE(d.resolvers.empty());
  EXPECT_EQ(d.weight, 0u);  // 1, or the SRV record's
  EXPECT_EQ(d.maxConnections, 0u);
  EXPECT_TRUE(r.config->pools.at(0).backends.empty());
}

TEST(Discover, TakesAnSrvNameWithoutPort) {
  const LoadResult r =
      loadString(config("      - discover: { dns: _ws._tcp.chat.service.consul }"), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_EQ(r.config->pools.at(0).discover.at(0).port, 0);
}

TEST(Discover, TakesTwoNamesInOnePool) {
  const LoadResult r = loadString(config("      - discover: { dns: a.svc, port: 80 }\n"
                                         "      - discover: { dns: b.svc, port: 80 }"),
                                  kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_EQ(r.config->pools.at(0).discover.size(), 2u);
}

struct BadCase {
  std::string_view name;
  std::string_view backends;  // the pool's backends lines; the first is line 4
  std::string_view expect;    // the one error, without the "t.yaml:" prefix
};
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class RejectsInvalidDiscover : public ::testing::TestWithParam<BadCase> {};

TEST_P(RejectsInvalidDiscover, WithOneErrorAtItsPosition) {
  const BadCase& c = GetParam();
  const LoadResult r = loadString(config(c.backends), kFile);
  EXPECT_FALSE(r.config);
  std::vector<std::string> errors;
  for (const auto& e : r.errors) errors.push_back(e.str());
  EXPECT_EQ(errors, std::vector<std::string>{std::string(kFile) + ":" + std::string(c.expect)});
}

const BadCase kBadCases[] = {
    {"UnknownKeyWithSuggestion", "      - discover: { dns: a.svc, port: 80, intervl: 1s }",
     "4:43: unknown key 'intervl' in discover, did you mean 'interval'?"},
    {"KeyBesideDiscover", "      - { name: a, discover: { dns: a.svc, port: 80 } }",
     "4:11: unknown key 'name' in backend with 'discover'"},
    {"MissingDns", "      - discover: { port: 80 }", "4:19: discover is missing 'dns'"},
    {"NotAMap", "      - discover: a.svc", "4:19: 'discover' must be a map, got 'a.svc'"},
    {"DnsIsAnIpv4Address", "      - discover: { dns: 10.0.0.1, port: 80 }",
     "4:26: 'dns' is an IP address ('10.0.0.1'): write a backend with 'name' and 'address' "
     "instead"},
    {"DnsIsAnIpv6Address", "      - discover: { dns: '::1', port: 80 }",
     "4:26: 'dns' is an IP address ('::1'): write a backend with 'name' and 'address' instead"},
    {"DnsWithBadCharacters", "      - discover: { dns: 'chat svc', port: 80 }",
     "4:26: invalid 'dns' 'chat svc': expected a DNS name such as "
     "chat.default.svc.cluster.local"},
    {"DnsWithEmptyLabel", "      - discover: { dns: chat..svc, port: 80 }",
     "4:26: invalid 'dns' 'chat..svc': expected a DNS name such as "
     "chat.default.svc.cluster.local"},
    {"HostNameWithoutPort", "      - discover: { dns: chat.svc }",
     "4:26: discover needs 'port' for the A/AAAA records of 'chat.svc', or an SRV name such as "
     "_http._tcp.chat.svc without 'port'"},
    {"SrvNameWithPort", "      - discover: { dns: _ws._tcp.chat.svc, port: 80 }",
     "4:51: '_ws._tcp.chat.svc' is an SRV name: leave 'port' out, the SRV records give each port"},
    {"PortZero", "      - discover: { dns: chat.svc, port: 0 }",
     "4:42: 'port' must be between 1 and 65535, got 0"},
    {"PortTooLarge", "      - discover: { dns: chat.svc, port: 65536 }",
     "4:42: 'port' must be between 1 and 65535, got 65536"},
    {"IntervalBelowMinimum", "      - discover: { dns: a.svc, port: 80, interval: 50ms }",
     "4:53: 'interval' must be between 100ms and 1h, got '50ms'"},
    {"IntervalAboveMaximum", "      - discover: { dns: a.svc, port: 80, interval: 2h }",
     "4:53: 'interval' must be between 100ms and 1h, got '2h'"},
    {"IntervalWithoutUnit", "      - discover: { dns: a.svc, port: 80, interval: 5 }",
     "4:53: invalid duration '5' for 'interval': needs a unit (ms, s, m or h), e.g. '10s'"},
    {"TimeoutBelowASecond", "      - discover: { dns: a.svc, port: 80, timeout: 500ms }",
     "4:52: 'timeout' must be between 1s and 30s, got '500ms'"},
    {"HoldEmptyTooLong", "      - discover: { dns: a.svc, port: 80, hold_empty: 2d }",
     "4:55: invalid duration '2d' for 'hold_empty': unknown unit (use ms, s, m or h)"},
    {"UnknownFamily", "      - discover: { dns: a.svc, port: 80, family: ipv5 }",
     "4:51: unknown family 'ipv5', did you mean 'ipv4'? (any, ipv4 or ipv6)"},
    {"ResolverWithoutPort", "      - discover: { dns: a.svc, port: 80, resolvers: [10.0.0.1] }",
     "4:55: invalid address '10.0.0.1' for 'resolver': missing port (expected host:port or "
     "[v6]:port)"},
    {"ResolverIsAName", "      - discover: { dns: a.svc, port: 80, resolvers: ['dns.local:53'] }",
     "4:55: resolver 'dns.local' must be an IPv4 address (host names would need a resolver "
     "themselves; for IPv6 leave 'resolvers' out and list it in /etc/resolv.conf)"},
    {"ResolversEmpty", "      - discover: { dns: a.svc, port: 80, resolvers: [] }",
     "4:54: 'resolvers' is empty: leave it out to use /etc/resolv.conf"},
    {"FourResolvers",
     "      - discover: { dns: a.svc, port: 80, resolvers: [1.1.1.1:53, 1.0.0.1:53, 8.8.8.8:53, "
     "8.8.4.4:53] }",
     "4:54: 'resolvers' lists 4, at most 3 are asked (MAXNS)"},
    {"WeightZero", "      - discover: { dns: a.svc, port: 80, weight: 0 }",
     "4:51: 'weight' must be between 1 and 256, got 0"},
    {"MaxConnectionsNegative", "      - discover: { dns: a.svc, port: 80, max_connections: -1 }",
     "4:60: 'max_connections' must be between 0 and 10000000, got -1"},
    {"SameNameTwice",
     "      - discover: { dns: a.svc, port: 80 }\n      - discover: { dns: a.svc, port: 81 }",
     "5:26: pool 'p' discovers 'a.svc' twice (first at line 4)"},
};

INSTANTIATE_TEST_SUITE_P(Table, RejectsInvalidDiscover, ::testing::ValuesIn(kBadCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace wsgate::conf
