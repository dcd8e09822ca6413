// The pure diff a reload acts on: listeners by address, backends by identity (pool + name +
// address), tunables updated in place, and what needs a restart.
#include "proxy/control/snapshot_diff.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace wsgate::proxy {
namespace {

struct B {
  std::string name, host;
  uint16_t port;
  uint32_t weight = 1;
  uint32_t maxConnections = 0;
};
struct P {
  std::string name;
  std::vector<B> backends;
};
struct L {
  std::string name, host;
  uint16_t port;
};

conf::Config config(std::vector<L> listeners, std::vector<P> pools, int workers = 0) {
  conf::Config c;
  c.workers = workers;
  for (const L& l : listeners) {
    conf::ListenerConfig lc;
    lc.name = l.name;
    lc.listen = {l.host, l.port};
    c.listeners.push_back(lc);
  }
  for (const P& p : pools) {
    conf::PoolConfig pc;
    pc.name = p.name;
    for (const B& b : p.backends) {
      conf::BackendConfig bc;
      bc.name = b.name;
      bc.address = {b.host, b.port};
      bc.weight = b.weight;
      bc.maxConnections = b.maxConnections;
      pc.backends.push_back(bc);
    }
    c.pools.push_back(pc);
  }
  return c;
}

const std::vector<L> kOne{{"public", "127.0.0.1", 8080}};
const std::vector<P> kApp{{"app", {{"a", "127.0.0.1", 9001}, {"b", "127.0.0.1", 9002}}}};

TEST(SnapshotDiff, SameConfigKeepsEverythingAndChangesNothing) {
  const SnapshotDiff d = diff(config(kOne, kApp), config(kOne, kApp));
  EXPECT_EQ(d.listenersKept, (std::vector<SnapshotDiff::KeptListener>{{0, 0}}));
  EXPECT_TRUE(d.listenersOpened.empty());
  EXPECT_TRUE(d.listenersClosed.empty());
  EXPECT_EQ(d.backendsKept.size(), 2u);
  EXPECT_TRUE(d.backendsAdded.empty());
  EXPECT_TRUE(d.backendsRemoved.empty());
  EXPECT_EQ(d.backendsUpdated(), 0u);
  EXPECT_TRUE(d.needsRestart.empty());
  EXPECT_EQ(d.summary(),
            "listeners kept=1 opened=0 closed=0 backends kept=2 added=0 removed=0 updated=0");
}

struct ListenerCase {
  const char* name;
  std::vector<L> before, after;
  std::vector<SnapshotDiff::KeptListener> kept;
  std::vector<std::size_t> opened, closed;
};

class ListenerDiff : public testing::TestWithParam<ListenerCase> {};

TEST_P(ListenerDiff, MatchesListenersByAddress) {
  const ListenerCase& c = GetParam();
  const SnapshotDiff d = diff(config(c.before, kApp), config(c.after, kApp));
  EXPECT_EQ(d.listenersKept, c.kept);
  EXPECT_EQ(d.listenersOpened, c.opened);
  EXPECT_EQ(d.listenersClosed, c.closed);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ListenerDiff,
    testing::Values(
        ListenerCase{"AddedListenerOpens",
                     kOne,
                     {{"public", "127.0.0.1", 8080}, {"admin2", "127.0.0.1", 8081}},
                     {{0, 0}},
                     {1},
                     {}},
        ListenerCase{"RemovedListenerCloses",
                     {{"public", "127.0.0.1", 8080}, {"old", "127.0.0.1", 8081}},
                     kOne,
                     {{0, 0}},
                     {},
                     {1}},
        ListenerCase{"RenamedListenerOnTheSameAddressIsKept",
                     kOne,
                     {{"renamed", "127.0.0.1", 8080}},
                     {{0, 0}},
                     {},
                     {}},
        ListenerCase{"NewPortIsANewListener", kOne, {{"public", "127.0.0.1", 8090}}, {}, {0}, {0}},
        ListenerCase{"OtherSpellingOfAnAddressIsANewListener",
                     kOne,
                     {{"public", "localhost", 8080}},
                     {},
                     {0},
                     {0}},
        ListenerCase{"ReorderedListenersAreKept",
                     {{"a", "127.0.0.1", 1}, {"b", "127.0.0.1", 2}},
                     {{"b", "127.0.0.1", 2}, {"a", "127.0.0.1", 1}},
                     {{1, 0}, {0, 1}},
                     {},
                     {}},
        ListenerCase{"PortZeroListenersAreKeptByName",
                     {{"a", "127.0.0.1", 0}, {"b", "127.0.0.1", 0}},
                     {{"b", "127.0.0.1", 0}, {"c", "127.0.0.1", 0}},
                     {{1, 0}},
                     {1},
                     {0}},
        ListenerCase{"IPv6ListenerKeptByItsBracketedForm",
                     {{"v6", "::1", 8080}},
                     {{"v6", "::1", 8080}},
                     {{0, 0}},
                     {},
                     {}}),
    [](const testing::TestParamInfo<ListenerCase>& i) { return std::string(i.param.name); });

struct BackendCase {
  const char* name;
  std::vector<P> before, after;
  std::size_t kept, updated;
  std::vector<BackendAt> added, removed;
};

class BackendDiff : public testing::TestWithParam<BackendCase> {};

TEST_P(BackendDiff, MatchesBackendsByPoolNameAndAddress) {
  const BackendCase& c = GetParam();
  const SnapshotDiff d = diff(config(kOne, c.before), config(kOne, c.after));
  EXPECT_EQ(d.backendsKept.size(), c.kept);
  EXPECT_EQ(d.backendsUpdated(), c.updated);
  EXPECT_EQ(d.backendsAdded, c.added);
  EXPECT_EQ(d.backendsRemoved, c.removed);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BackendDiff,
    testing::Values(
        BackendCase{
            "AddedBackend",
            kApp,
            {{"app",
              {{"a", "127.0.0.1", 9001}, {"b", "127.0.0.1", 9002}, {"c", "127.0.0.1", 9003}}}},
            2,
            0,
            {{0, 2}},
            {}},
        BackendCase{
            "RemovedBackend", kApp, {{"app", {{"b", "127.0.0.1", 9002}}}}, 1, 0, {}, {{0, 0}}},
        BackendCase{"WeightEditIsAnUpdateInPlace",
                    kApp,
                    {{"app", {{"a", "127.0.0.1", 9001, 5}, {"b", "127.0.0.1", 9002}}}},
                    2,
                    1,
                    {},
                    {}},
        BackendCase{"MaxConnectionsEditIsAnUpdateInPlace",
                    kApp,
                    {{"app", {{"a", "127.0.0.1", 9001}, {"b", "127.0.0.1", 9002, 1, 10}}}},
                    2,
                    1,
                    {},
                    {}},
        BackendCase{"NewAddressIsANewBackend",
                    kApp,
                    {{"app", {{"a", "127.0.0.1", 9101}, {"b", "127.0.0.1", 9002}}}},
                    1,
                    0,
                    {{0, 0}},
                    {{0, 0}}},
        BackendCase{"RenamedBackendIsANewBackend",
                    kApp,
                    {{"app", {{"z", "127.0.0.1", 9001}, {"b", "127.0.0.1", 9002}}}},
                    1,
                    0,
                    {{0, 0}},
                    {{0, 0}}},
        BackendCase{"SameBackendInAnotherPoolIsANewBackend",
                    kApp,
                    {{"app", {{"b", "127.0.0.1", 9002}}}, {"other", {{"a", "127.0.0.1", 9001}}}},
                    1,
                    0,
                    {{1, 0}},
                    {{0, 0}}},
        BackendCase{"ReorderedBackendsAreKept",
                    kApp,
                    {{"app", {{"b", "127.0.0.1", 9002}, {"a", "127.0.0.1", 9001}}}},
                    2,
                    0,
                    {},
                    {}},
        BackendCase{"RemovedPoolRemovesItsBackends",
                    {{"app", {{"a", "127.0.0.1", 9001}}}, {"gone", {{"g", "127.0.0.1", 9009}}}},
                    {{"app", {{"a", "127.0.0.1", 9001}}}},
                    1,
                    0,
                    {},
                    {{1, 0}}}),
    [](const testing::TestParamInfo<BackendCase>& i) { return std::string(i.param.name); });

TEST(SnapshotDiff, KeptBackendPointsAtBothPositions) {
  const SnapshotDiff d =
      diff(config(kOne, kApp),
           config(kOne, {{"app", {{"b", "127.0.0.1", 9002, 3}, {"a", "127.0.0.1", 9001}}}}));
  ASSERT_EQ(d.backendsKept.size(), 2u);
  EXPECT_EQ(d.backendsKept[0], (SnapshotDiff::KeptBackend{{0, 1}, {0, 0}, true}));
  EXPECT_EQ(d.backendsKept[1], (SnapshotDiff::KeptBackend{{0, 0}, {0, 1}, false}));
}

struct RestartCase {
  const char* name;
  int before, after;
  std::vector<std::string> needsRestart;
};

class RestartDiff : public testing::TestWithParam<RestartCase> {};

TEST_P(RestartDiff, ReportsAWorkersChangeAsNeedingARestart) {
  const RestartCase& c = GetParam();
  const SnapshotDiff d = diff(config(kOne, kApp, c.before), config(kOne, kApp, c.after));
  EXPECT_EQ(d.needsRestart, c.needsRestart);
  EXPECT_EQ(d.backendsKept.size(), 2u);  // the rest of the reload goes on
}

INSTANTIATE_TEST_SUITE_P(Cases, RestartDiff,
                         testing::Values(RestartCase{"SameCount", 2, 2, {}},
                                         RestartCase{"MoreWorkers", 2, 4, {"workers: 2 -> 4"}},
                                         RestartCase{"AutoToFixed", 0, 2, {"workers: auto -> 2"}},
                                         RestartCase{"FixedToAuto", 3, 0, {"workers: 3 -> auto"}}),
                         [](const testing::TestParamInfo<RestartCase>& i) {
                           return std::string(i.param.name);
                         });

TEST(SnapshotDiff, KeysAreTheConfiguredAddress) {
  conf::ListenerConfig l;
  l.listen = {"::1", 443};
  EXPECT_EQ(listenerKey(l), "[::1]:443");
  l.listen = {"127.0.0.1", 0};
  l.name = "public";
  EXPECT_EQ(listenerKey(l), "127.0.0.1:0#public");
  conf::PoolConfig p;
  p.name = "chat";
  conf::BackendConfig b;
  b.name = "c1";
  b.address = {"10.0.0.1", 9001};
  EXPECT_EQ(backendIdentity(p, b), "chat/c1@10.0.0.1:9001");
}

TEST(SnapshotDiff, ProxyProtocolChangesKeepTheListenerAsTlsChangesDo) {
  // The listener's sockets stay open (no connection refused during the reload); the new
  // snapshot's settings apply to the connections accepted after it.
  conf::Config before = config(kOne, kApp);
  conf::Config after = config(kOne, kApp);
  after.listeners[0].proxyProtocol = true;
  std::string why;
  after.listeners[0].proxyProtocolFrom.push_back(*conf::parseCidr("10.0.0.0/8", why));
  for (const auto& [from, to] : {std::pair{&before, &after}, std::pair{&after, &before}}) {
    const SnapshotDiff d = diff(*from, *to);
    EXPECT_EQ(d.listenersKept, (std::vector<SnapshotDiff::KeptListener>{{0, 0}}));
    EXPECT_TRUE(d.listenersOpened.empty());
    EXPECT_TRUE(d.listenersClosed.empty());
  }
  EXPECT_EQ(listenerKey(before.listeners[0]), listenerKey(after.listeners[0]));
}

}  // namespace
}  // namespace wsgate::proxy
