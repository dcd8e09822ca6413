// Building snapshots across a reload: a backend whose identity stays is the same object (its
// active count and health survive), its new tunables wait for applyTunables (publication),
// and listeners are found by key.
#include "proxy/control/runtime.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <memory>
#include <string>
#include <vector>

#include "conf/loader.h"

namespace wsgate::proxy {
namespace {

std::shared_ptr<const conf::Config> load(const std::string& backends) {
  const std::string yaml =
      "listeners:\n  - { name: public, listen: 127.0.0.1:0 }\n"
      "  - { name: fixed, listen: 127.0.0.1:18443 }\n"
      "routes:\n  - { match: { path_prefix: / }, pool: app }\n"
      "pools:\n  app:\n    policy: least_conn\n    backends:\n" +
      backends;
  conf::LoadResult r = conf::loadString(yaml, "t.yaml");
  EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors.front().str());
  return std::make_shared<const conf::Config>(std::move(*r.config));
}

RuntimePtr build(const std::string& backends, const Runtime* previous) {
  std::string error;
  std::vector<std::string> warnings;
  RuntimePtr rt = buildRuntime(load(backends), previous, error, warnings);
  EXPECT_NE(rt, nullptr) << error;
  return rt;
}

const std::string kAB =
    "      - { name: a, address: 127.0.0.1:9001 }\n"
    "      - { name: b, address: 127.0.0.1:9002 }\n";

TEST(Runtime, KeptBackendIsTheSameObjectWithItsCountsAndState) {
  RuntimePtr before = build(kAB, nullptr);
  const auto& old = before->findPool("app")->pool->backends();
  balancer::BackendLease lease(old[0]);
  old[1]->drain();
  RuntimePtr after = build(
      "      - { name: b, address: 127.0.0.1:9002 }\n"
      "      - { name: a, address: 127.0.0.1:9001, weight: 3 }\n",
      before.get());
  const auto& now = after->findPool("app")->pool->backends();
  EXPECT_EQ(now[1], old[0]);
  EXPECT_EQ(now[0], old[1]);
  EXPECT_EQ(now[1]->active(), 1u);
  EXPECT_TRUE(now[0]->draining());
}

TEST(Runtime, NewTunablesWaitForPublication) {
  RuntimePtr before = build(kAB, nullptr);
  RuntimePtr after = build(
      "      - { name: a, address: 127.0.0.1:9001, weight: 3, max_connections: 7 }\n"
      "      - { name: b, address: 127.0.0.1:9002 }\n",
      before.get());
  const auto& a = after->findPool("app")->pool->backends()[0];
  // Built but not published: the running snapshot's picks still see the old values.
  EXPECT_EQ(a->weight(), 1u);
  EXPECT_EQ(a->maxConnections(), 0u);
  EXPECT_EQ(applyTunables(*after), 1u);
  EXPECT_EQ(a->weight(), 3u);
  EXPECT_EQ(a->maxConnections(), 7u);
  EXPECT_EQ(applyTunables(*after), 0u);  // nothing left to change
}

TEST(Runtime, ChangedAddressOrNameIsANewBackend) {
  RuntimePtr before = build(kAB, nullptr);
  RuntimePtr after = build(
      "      - { name: a, address: 127.0.0.1:9101 }\n"
      "      - { name: c, address: 127.0.0.1:9002 }\n",
      before.get());
  const auto& old = before->findPool("app")->pool->backends();
  const auto& now = after->findPool("app")->pool->backends();
  EXPECT_NE(now[0], old[0]);
  EXPECT_NE(now[1], old[1]);
  EXPECT_EQ(now[0]->active(), 0u);
}

TEST(Runtime, FindsListenersByKey) {
  RuntimePtr rt = build(kAB, nullptr);
  ASSERT_NE(rt->findListener("127.0.0.1:0#public"), nullptr);
  EXPECT_EQ(rt->findListener("127.0.0.1:0#public")->config->name, "public");
  ASSERT_NE(rt->findListener("127.0.0.1:18443"), nullptr);
  EXPECT_EQ(rt->findListener("127.0.0.1:18443")->config->name, "fixed");
  EXPECT_EQ(rt->findListener("127.0.0.1:0"), nullptr);
}

// Loads `yaml` (it must load) and builds a snapshot of it; the error when that fails.
std::string buildError(const std::string& yaml) {
  conf::LoadResult r = conf::loadString(yaml, "t.yaml");
  EXPECT_TRUE(r.ok());
  if (!r.ok()) return "(does not load)";
  std::string error;
  std::vector<std::string> warnings;
  EXPECT_EQ(buildRuntime(std::make_shared<const conf::Config>(std::move(*r.config)), nullptr, error,
                         warnings),
            nullptr);
  return error;
}

TEST(Runtime, ResolvesListenerAddressesOnceAndNamesAnUnresolvableOne) {
  RuntimePtr rt = build(kAB, nullptr);
  EXPECT_EQ(rt->findListener("127.0.0.1:18443")->address.str(), "127.0.0.1:18443");
  const std::string error = buildError(
      "listeners:\n  - { name: public, listen: 'no-such-host.invalid:8080' }\n"
      "routes:\n  - { match: { path_prefix: / }, respond: { status: 200 } }\n");
  EXPECT_TRUE(error.starts_with("t.yaml:2:29: listener public: cannot resolve")) << error;
}

TEST(Runtime, NamesAnUnresolvableBackendAtItsAddress) {
  const std::string error = buildError(
      "listeners:\n  - { name: public, listen: '127.0.0.1:0' }\n"
      "routes:\n  - { match: { path_prefix: / }, pool: app }\n"
      "pools:\n  app:\n    backends:\n      - { name: a, address: 'no-such-host.invalid:80' }\n");
  EXPECT_TRUE(error.starts_with("t.yaml:8:29: pool app backend a: cannot resolve")) << error;
}

TEST(Runtime, MaxConnectionsLeftOutFollowsTheOpenFilesLimit) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 1000;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  const std::string base =
      "listeners:\n  - { name: public, listen: '127.0.0.1:0' }\n"
      "routes:\n  - { match: { path_prefix: / }, respond: { status: 200 } }\n";
  struct Case {
    std::string_view limits;
    uint64_t expect;
  };
  const Case cases[] = {
      {"", 450},                                      // (1000 - 100 reserved) / 2
      {"limits: { max_connections: 5000 }\n", 5000},  // written: taken as it is
      {"limits: { max_connections: 10 }\n", 10},
  };
  for (const auto& c : cases) {
    conf::LoadResult r = conf::loadString(base + std::string(c.limits), "t.yaml");
    ASSERT_TRUE(r.ok());
    std::string error;
    std::vector<std::string> warnings;
    RuntimePtr rt = buildRuntime(std::make_shared<const conf::Config>(std::move(*r.config)),
                                 nullptr, error, warnings);
    ASSERT_NE(rt, nullptr) << error;
    EXPECT_EQ(rt->maxConnections, c.expect) << c.limits;
  }
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

TEST(Runtime, OpenFilesCapacityKeepsAReserve) {
  EXPECT_EQ(openFilesCapacity(20000), 9950u);
  EXPECT_EQ(openFilesCapacity(1000), 450u);
  EXPECT_EQ(openFilesCapacity(64), 24u);  // a quarter of a small limit is kept
  EXPECT_EQ(openFilesCapacity(2), 1u);
  EXPECT_EQ(openFilesCapacity(UINT64_MAX), UINT64_MAX);
}

}  // namespace
}  // namespace wsgate::proxy
