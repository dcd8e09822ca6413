// The snapshot after a change of discovered backends (withNewBackends): the file's backends
// and the kept discovered ones are the same objects, a discovered backend that joins starts
// its slow start, one that left is gone, and the rest of the snapshot is the previous one's.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "conf/loader.h"
#include "proxy/control/discovered_backends.h"
#include "proxy/control/runtime.h"

namespace wsgate::proxy {
namespace {

std::shared_ptr<const conf::Config> source() {
  const std::string yaml =
      "listeners:\n  - { name: public, listen: 127.0.0.1:0 }\n"
      "routes:\n  - { pool: app }\n"
      "pools:\n  app:\n    slow_start: 10s\n    backends:\n"
      "      - { name: s1, address: 127.0.0.1:9000 }\n"
      "      - { discover: { dns: app.svc, port: 9001 } }\n";
  conf::LoadResult r = conf::loadString(yaml, "t.yaml");
  EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors.front().str());
  return std::make_shared<const conf::Config>(std::move(*r.config));
}

DiscoveredSets sets(const conf::Config& c, Endpoints e) {
  return {{discoverKey(c.pools[0], c.pools[0].discover[0]), std::move(e)}};
}

std::vector<std::string> names(const Runtime& rt) {
  std::vector<std::string> out;
  for (const auto& b : rt.findPool("app")->pool->backends()) out.push_back(b->spec().name);
  return out;
}

TEST(RuntimeWithNewBackends, KeepsBackendsAndStartsSlowStartForOneThatJoins) {
  const auto src = source();
  std::string error;
  std::vector<std::string> warnings;
  auto first = std::make_shared<const conf::Config>(
      withDiscovered(*src, sets(*src, {{"127.0.0.2", 9001, 0}, {"127.0.0.3", 9001, 0}})));
  RuntimePtr before = buildRuntime(first, nullptr, error, warnings, src);
  ASSERT_NE(before, nullptr) << error;
  EXPECT_EQ(before->source, src);
  EXPECT_EQ(names(*before), (std::vector<std::string>{"s1", "127.0.0.2:9001", "127.0.0.3:9001"}));
  const auto& old = before->findPool("app")->pool->backends();
  EXPECT_FALSE(old[1]->upSince());  // at start: full weight at once

  auto next = std::make_shared<const conf::Config>(
      withDiscovered(*src, sets(*src, {{"127.0.0.3", 9001, 0}, {"127.0.0.4", 9001, 0}})));
  RuntimePtr after = withNewBackends(*before, next, error);
  ASSERT_NE(after, nullptr) << error;
  EXPECT_EQ(names(*after), (std::vector<std::string>{"s1", "127.0.0.3:9001", "127.0.0.4:9001"}));
  const PoolEntry& pool = *after->findPool("app");
  EXPECT_EQ(pool.pool->backends()[0], old[0]);
  EXPECT_EQ(pool.pool->backends()[1], old[2]);
  EXPECT_TRUE(pool.pool->backends()[2]->upSince());  // joined: slow start from now
  EXPECT_FALSE(pool.pool->backends()[1]->upSince());
  EXPECT_EQ(pool.addresses[2].str(), "127.0.0.4:9001");
  EXPECT_EQ(pool.config, &next->pools[0]);
  EXPECT_EQ(after->source, src);
  EXPECT_EQ(after->listeners[0].config, &next->listeners[0]);
  EXPECT_EQ(after->listeners[0].counters, before->listeners[0].counters);
}

}  // namespace
}  // namespace wsgate::proxy
