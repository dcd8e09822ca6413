// Pool picks around availability and retries; backend identity; lease accounting.

#include "balancer/pool.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <vector>

#include "balancer/round_robin.h"

namespace wsgate::balancer {
namespace {

struct BackendDef {
  uint32_t weight = 1;
  uint32_t maxConnections = 0;
};

Pool makePool(const std::vector<BackendDef>& defs) {
  std::vector<BackendPtr> backends;
  std::vector<uint32_t> weights;
  for (std::size_t i = 0; i < defs.size(); ++i) {
    backends.push_back(std::make_shared<Backend>(
        BackendSpec{"app", "b" + std::to_string(i), "10.0.0." + std::to_string(i + 1), 8080,
                    defs[i].weight, defs[i].maxConnections}));
    weights.push_back(defs[i].weight);
  }
  return Pool("app", std::move(backends), makePolicy(PolicyKind::RoundRobin, weights));
}

TEST(BackendSpec, IdentityNamesPoolBackendAndAddress) {
  EXPECT_EQ((BackendSpec{"app", "a", "10.0.0.1", 8080}).identity(), "app/a@10.0.0.1:8080");
  EXPECT_EQ((BackendSpec{"app", "a", "backend.internal", 80}).identity(),
            "app/a@backend.internal:80");
  EXPECT_EQ((BackendSpec{"app", "a", "::1", 80}).identity(), "app/a@[::1]:80");
}

TEST(BackendSpec, IdentityIgnoresWeightAndLimit) {
  // A reload that only retunes a backend keeps its live counters.
  EXPECT_EQ((BackendSpec{"app", "a", "h", 1, 1, 0}).identity(),
            (BackendSpec{"app", "a", "h", 1, 9, 100}).identity());
}

TEST(Pool, PicksAvailableUntriedBackends) {
  Pool pool = makePool({{}, {}, {}});
  for (int k = 0; k < 30; ++k) {
    const auto i = pool.pick({false, false, false});
    ASSERT_TRUE(i.has_value());
    EXPECT_LT(*i, 3u);
  }
}

TEST(Pool, SkipsDownFullAndTriedBackends) {
  Pool pool = makePool({{}, {1, 1}, {}, {}});
  pool.backends()[0]->markDown();
  BackendLease fill(pool.backends()[1]);  // b1 at its limit of 1
  const std::vector<bool> tried = {false, false, true, false};
  for (int k = 0; k < 50; ++k) EXPECT_EQ(pool.pick(tried), 3u);
}

TEST(Pool, FallsBackToDownBackendsWhenNothingIsUp) {
  Pool pool = makePool({{}, {}, {}});
  for (const auto& b : pool.backends()) b->markDown();
  for (int k = 0; k < 30; ++k) {
    const auto i = pool.pick({true, false, false});
    ASSERT_TRUE(i.has_value());
    EXPECT_NE(*i, 0u);  // tried stays out even in the fallback
  }
}

TEST(Pool, FallsBackToDownBackendsWhenTheUpOnesAreFull) {
  Pool pool = makePool({{1, 1}, {1, 1}, {}});
  BackendLease fill0(pool.backends()[0]);
  pool.backends()[1]->markDown();
  pool.backends()[2]->markDown();
  // b0 is up but full; b1 and b2 are down with room, so one of them gets the session.
  for (int k = 0; k < 30; ++k) {
    const auto i = pool.pick({false, false, false});
    ASSERT_TRUE(i.has_value());
    EXPECT_NE(*i, 0u);
  }
}

TEST(Pool, NeverFallsBackToAFullBackend) {
  Pool pool = makePool({{1, 1}, {1, 1}});
  BackendLease fill0(pool.backends()[0]);
  BackendLease fill1(pool.backends()[1]);
  pool.backends()[1]->markDown();
  EXPECT_EQ(pool.pick({false, false}), std::nullopt);
}

TEST(Pool, ReturnsNulloptWhenEverythingWasTried) {
  Pool pool = makePool({{}, {}});
  EXPECT_EQ(pool.pick({true, true}), std::nullopt);
  pool.backends()[0]->markDown();
  EXPECT_EQ(pool.pick({true, true}), std::nullopt);
}

TEST(Pool, TreatsAShortTriedVectorAsUntried) {
  Pool pool = makePool({{}, {}});
  EXPECT_TRUE(pool.pick({}).has_value());
}

TEST(Pool, ReturnsNulloptWithoutBackends) {
  Pool pool("empty", {}, makePolicy(PolicyKind::RoundRobin, {}));
  EXPECT_EQ(pool.pick({}), std::nullopt);
}

TEST(Pool, FindsBackendsByName) {
  Pool pool = makePool({{}, {}, {}});
  EXPECT_EQ(pool.find("b0"), 0u);
  EXPECT_EQ(pool.find("b2"), 2u);
  EXPECT_EQ(pool.find("nope"), std::nullopt);
  EXPECT_EQ(pool.name(), "app");
}

TEST(MakePolicy, BuildsRoundRobinAndRefusesUnimplementedKinds) {
  EXPECT_NE(dynamic_cast<RoundRobin*>(makePolicy(PolicyKind::RoundRobin, {1, 2}).get()), nullptr);
  EXPECT_EQ(makePolicy(PolicyKind::LeastConn, {1, 2}), nullptr);
  EXPECT_EQ(makePolicy(PolicyKind::RandomTwo, {1, 2}), nullptr);
  EXPECT_EQ(makePolicy(PolicyKind::Hash, {1, 2}), nullptr);
}

TEST(Pool, WithoutPolicyPicksNothing) {
  std::vector<BackendPtr> backends = {std::make_shared<Backend>(BackendSpec{"p", "a", "h", 1})};
  Pool pool("p", std::move(backends), makePolicy(PolicyKind::LeastConn, {1}));
  EXPECT_EQ(pool.pick({false}), std::nullopt);
}

// h2o-style: random churn of health, limits and open sessions; after every pick, the
// choice respects the rules in Pool::pick's contract.
TEST(Pool, PicksRespectAvailabilityUnderRandomChurn) {
  constexpr std::size_t kBackends = 5;
  Pool pool = makePool({{3, 2}, {1, 0}, {2, 3}, {1, 1}, {4, 0}});
  const auto& backends = pool.backends();
  std::mt19937 rng(7);
  std::bernoulli_distribution coin(0.3);
  std::vector<BackendLease> open;
  for (int k = 0; k < 10'000; ++k) {
    for (const auto& b : backends) {
      if (coin(rng)) coin(rng) ? b->markDown() : b->markUp();
    }
    std::vector<bool> tried(kBackends);
    for (std::size_t i = 0; i < kBackends; ++i) tried[i] = coin(rng) && coin(rng);

    bool anyAvailable = false, anyNotFull = false;
    for (std::size_t i = 0; i < kBackends; ++i) {
      if (tried[i]) continue;
      const Backend& b = *backends[i];
      const bool full = b.spec().maxConnections != 0 && b.active() >= b.spec().maxConnections;
      anyAvailable = anyAvailable || b.available();
      anyNotFull = anyNotFull || !full;
    }

    const auto i = pool.pick(tried);
    ASSERT_EQ(i.has_value(), anyNotFull) << "pick " << k;
    if (i) {
      ASSERT_LT(*i, kBackends);
      ASSERT_FALSE(tried[*i]) << "pick " << k;
      const Backend& b = *backends[*i];
      if (anyAvailable) {
        ASSERT_TRUE(b.available()) << "pick " << k;
      } else {
        ASSERT_TRUE(b.spec().maxConnections == 0 || b.active() < b.spec().maxConnections);
      }
      open.emplace_back(backends[*i]);
    }
    // Sessions end at random.
    std::erase_if(open, [&](const BackendLease&) { return coin(rng); });
  }
}

TEST(Pool, ConcurrentPicksKeepTheDistribution) {
  constexpr int kThreads = 4;
  constexpr int kPicksPerThread = 25'000;
  Pool pool = makePool({{5}, {1}, {1}});
  std::vector<std::vector<uint64_t>> perThread(kThreads, std::vector<uint64_t>(3, 0));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::vector<bool> tried(3, false);
      for (int k = 0; k < kPicksPerThread; ++k) {
        if (auto i = pool.pick(tried)) ++perThread[t][*i];
      }
    });
  }
  for (auto& th : threads) th.join();
  uint64_t counts[3] = {};
  for (const auto& c : perThread) {
    for (std::size_t i = 0; i < 3; ++i) counts[i] += c[i];
  }
  const double total = kThreads * kPicksPerThread;
  EXPECT_NEAR(counts[0] / total, 5.0 / 7, 0.01);
  EXPECT_NEAR(counts[1] / total, 1.0 / 7, 0.01);
  EXPECT_NEAR(counts[2] / total, 1.0 / 7, 0.01);
}

TEST(BackendLease, CountsAcquireReleaseMoveAndReset) {
  auto a = std::make_shared<Backend>(BackendSpec{"p", "a", "h", 1});
  auto b = std::make_shared<Backend>(BackendSpec{"p", "b", "h", 2});
  {
    BackendLease empty;
    EXPECT_FALSE(empty);
    BackendLease la(a);
    EXPECT_TRUE(la);
    EXPECT_EQ(la.get(), a.get());
    EXPECT_EQ(a->active(), 1u);

    BackendLease moved(std::move(la));
    EXPECT_EQ(a->active(), 1u);  // a move transfers, never double-counts
    EXPECT_FALSE(la);            // NOLINT(bugprone-use-after-move): checking the moved-from state

    BackendLease lb(b);
    EXPECT_EQ(b->active(), 1u);
    lb = std::move(moved);  // gives b back, takes over a
    EXPECT_EQ(a->active(), 1u);
    EXPECT_EQ(b->active(), 0u);
    EXPECT_EQ(lb->spec().name, "a");

    BackendLease& alias = lb;
    lb = std::move(alias);  // self-move keeps the share
    EXPECT_EQ(a->active(), 1u);

    lb.reset();
    EXPECT_EQ(a->active(), 0u);
    lb.reset();  // idempotent
    EXPECT_EQ(a->active(), 0u);

    BackendLease again(a);
    BackendLease other(a);
    EXPECT_EQ(a->active(), 2u);
  }
  EXPECT_EQ(a->active(), 0u);
  EXPECT_EQ(b->active(), 0u);
}

TEST(BackendLease, MakesABackendFullAtItsLimit) {
  auto a = std::make_shared<Backend>(BackendSpec{"p", "a", "h", 1, 1, 2});
  BackendLease one(a);
  EXPECT_TRUE(a->available());
  BackendLease two(a);
  EXPECT_FALSE(a->available());
  two.reset();
  EXPECT_TRUE(a->available());
}

TEST(BackendLease, CountsStayExactAcrossThreads) {
  constexpr int kThreads = 4;
  constexpr int kIterations = 10'000;
  auto backend = std::make_shared<Backend>(BackendSpec{"p", "a", "h", 1});
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&backend] {
      std::vector<BackendLease> held;
      for (int k = 0; k < kIterations; ++k) {
        held.emplace_back(backend);
        if (held.size() > 8) held.erase(held.begin(), held.begin() + 5);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(backend->active(), 0u);
}

}  // namespace
}  // namespace wsgate::balancer
