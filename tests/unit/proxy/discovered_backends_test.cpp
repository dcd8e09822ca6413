// The file's config plus the discovered sets -> the config a snapshot is built from: one
// backend per address, named after it, after the file's backends, with the entry's settings.
#include "proxy/control/discovered_backends.h"

#include <gtest/gtest.h>

#include "proxy/control/snapshot_diff.h"

namespace wsgate::proxy {
namespace {

conf::Config source() {
  conf::Config c;
  conf::PoolConfig p;
  p.name = "chat";
  p.backends.push_back({"s1", {"127.0.0.1", 9000}, 1, 0, {}, -1});
  conf::DiscoverConfig d;
  d.dns = "chat.svc";
  d.port = 9001;
  d.maxConnections = 50;
  d.mark = {"t.yaml", 7, 9};
  p.discover.push_back(d);
  conf::DiscoverConfig srv;
  srv.dns = "_ws._tcp.chat.svc";
  p.discover.push_back(srv);
  c.pools.push_back(p);
  return c;
}

std::vector<std::string> names(const conf::PoolConfig& p) {
  std::vector<std::string> out;
  for (const auto& b : p.backends) out.push_back(b.name);
  return out;
}

TEST(WithDiscovered, AddsOneBackendPerAddressAfterTheFilesOwn) {
  const conf::Config c = source();
  DiscoveredSets sets;
  sets[discoverKey(c.pools[0], c.pools[0].discover[0])] = {{"10.0.0.1", 9001, 0},
                                                           {"fd00::1", 9001, 0}};
  const conf::Config out = withDiscovered(c, sets);
  const conf::PoolConfig& p = out.pools[0];
  EXPECT_EQ(names(p), (std::vector<std::string>{"s1", "10.0.0.1:9001", "[fd00::1]:9001"}));
  const conf::BackendConfig& b = p.backends[2];
  EXPECT_EQ(b.address.host, "fd00::1");
  EXPECT_EQ(b.address.port, 9001);
  EXPECT_EQ(b.weight, 1u);
  EXPECT_EQ(b.maxConnections, 50u);
  EXPECT_EQ(b.discover, 0);
  EXPECT_EQ(b.mark.line, 7);
  EXPECT_EQ(p.backends[0].discover, -1);
}

TEST(WithDiscovered, GivesSrvWeightsUnlessTheEntrySetsOne) {
  conf::Config c = source();
  const std::string key = discoverKey(c.pools[0], c.pools[0].discover[1]);
  DiscoveredSets sets{{key, {{"10.0.0.5", 7000, 30}, {"10.0.0.6", 7001, 1000}}}};
  conf::Config out = withDiscovered(c, sets);
  EXPECT_EQ(out.pools[0].backends[1].weight, 30u);
  EXPECT_EQ(out.pools[0].backends[2].weight, 256u);  // the largest weight a backend takes
  c.pools[0].discover[1].weight = 4;
  out = withDiscovered(c, sets);
  EXPECT_EQ(out.pools[0].backends[1].weight, 4u);
  EXPECT_EQ(out.pools[0].backends[2].weight, 4u);
}

TEST(WithDiscovered, AddsAnAddressTwoEntriesShareOnce) {
  const conf::Config c = source();
  DiscoveredSets sets{{discoverKey(c.pools[0], c.pools[0].discover[0]), {{"10.0.0.1", 9001, 0}}},
                      {discoverKey(c.pools[0], c.pools[0].discover[1]), {{"10.0.0.1", 9001, 7}}}};
  const conf::Config out = withDiscovered(c, sets);
  EXPECT_EQ(names(out.pools[0]), (std::vector<std::string>{"s1", "10.0.0.1:9001"}));
  EXPECT_EQ(out.pools[0].backends[1].discover, 0);
}

TEST(WithDiscovered, AddsNothingForAnEntryWithoutASet) {
  const conf::Config c = source();
  EXPECT_EQ(names(withDiscovered(c, {}).pools[0]), std::vector<std::string>{"s1"});
}

TEST(DiscoverKey, ChangesWithWhatTheAnswerDependsOnOnly) {
  const conf::Config c = source();
  const conf::PoolConfig& p = c.pools[0];
  conf::DiscoverConfig d = p.discover[0];
  const std::string key = discoverKey(p, d);
  d.interval = std::chrono::seconds(1);
  d.weight = 9;
  d.holdEmpty = {};
  EXPECT_EQ(discoverKey(p, d), key);
  d.port = 9002;
  EXPECT_NE(discoverKey(p, d), key);
  d = p.discover[0];
  d.family = conf::DiscoverFamily::Ipv6;
  EXPECT_NE(discoverKey(p, d), key);
  d = p.discover[0];
  d.resolvers.push_back({"127.0.0.1", 5353});
  EXPECT_NE(discoverKey(p, d), key);
}

// What a change of a set does to a snapshot: the diff of the two derived configs names the
// backend that left and the one that joined, and keeps the rest.
TEST(WithDiscovered, ASetChangeIsOneBackendAddedAndOneRemoved) {
  const conf::Config c = source();
  const std::string key = discoverKey(c.pools[0], c.pools[0].discover[0]);
  const conf::Config was =
      withDiscovered(c, {{key, {{"10.0.0.1", 9001, 0}, {"10.0.0.2", 9001, 0}}}});
  const conf::Config now =
      withDiscovered(c, {{key, {{"10.0.0.2", 9001, 0}, {"10.0.0.3", 9001, 0}}}});
  const SnapshotDiff d = diff(was, now);
  EXPECT_EQ(d.backendsKept.size(), 2u);  // s1 and 10.0.0.2
  ASSERT_EQ(d.backendsRemoved.size(), 1u);
  EXPECT_EQ(was.pools[0].backends[d.backendsRemoved[0].backend].name, "10.0.0.1:9001");
  ASSERT_EQ(d.backendsAdded.size(), 1u);
  EXPECT_EQ(now.pools[0].backends[d.backendsAdded[0].backend].name, "10.0.0.3:9001");
  EXPECT_EQ(diff(was, was).summary(),
            "listeners kept=0 opened=0 closed=0 backends kept=3 added=0 removed=0 updated=0");
}

}  // namespace
}  // namespace wsgate::proxy
