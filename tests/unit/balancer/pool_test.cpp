// Pool picks around health, drain, limits and retries for every policy; the half-open gate;
// slow start; sticky placement and cookies; concurrency with leases.

#include "balancer/pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "balancer/consistent_hash.h"
#include "balancer/hash.h"
#include "balancer/least_conn.h"
#include "balancer/random_two.h"
#include "balancer/round_robin.h"
#include "test_backends.h"

namespace wsgate::balancer {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::at;
using testing::BackendDef;
using testing::makeBackends;
using testing::weightsOf;

constexpr PolicyKind kAllKinds[] = {PolicyKind::RoundRobin, PolicyKind::LeastConn,
                                    PolicyKind::RandomTwo, PolicyKind::Hash};

Pool makePool(const std::vector<BackendDef>& defs, PolicyKind kind = PolicyKind::RoundRobin,
              PoolOptions options = {}) {
  auto backends = makeBackends(defs);
  auto weights = weightsOf(backends);
  return Pool("app", std::move(backends), makePolicy(kind, weights), options);
}

// Requests at a fixed instant with fresh random bits, as a worker would make them.
struct Requests {
  TimePoint now = at(milliseconds(0));
  std::mt19937_64 rng{1};

  std::optional<std::size_t> pick(Pool& pool, const std::vector<bool>& tried) {
    return pool.pick({tried, std::nullopt, now, rng()});
  }
};

const char* kindName(PolicyKind kind) {
  switch (kind) {
    case PolicyKind::RoundRobin:
      return "round_robin";
    case PolicyKind::LeastConn:
      return "least_conn";
    case PolicyKind::RandomTwo:
      return "random_two";
    case PolicyKind::Hash:
      return "hash";
  }
  return "?";
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

TEST(MakePolicy, BuildsEveryKind) {
  EXPECT_NE(dynamic_cast<RoundRobin*>(makePolicy(PolicyKind::RoundRobin, {1, 2}).get()), nullptr);
  EXPECT_NE(dynamic_cast<LeastConn*>(makePolicy(PolicyKind::LeastConn, {1, 2}).get()), nullptr);
  EXPECT_NE(dynamic_cast<RandomTwo*>(makePolicy(PolicyKind::RandomTwo, {1, 2}).get()), nullptr);
  EXPECT_NE(dynamic_cast<ConsistentHash*>(makePolicy(PolicyKind::Hash, {1, 2}).get()), nullptr);
}

TEST(Pool, PicksAvailableUntriedBackendsWithEveryPolicy) {
  for (PolicyKind kind : kAllKinds) {
    Pool pool = makePool({{}, {}, {}}, kind);
    Requests r;
    for (int k = 0; k < 30; ++k) {
      const auto i = r.pick(pool, {false, false, false});
      ASSERT_TRUE(i.has_value()) << kindName(kind);
      EXPECT_LT(*i, 3u);
    }
  }
}

TEST(Pool, SkipsEjectedFullTriedDrainingAndActivelyDownBackends) {
  for (PolicyKind kind : kAllKinds) {
    Pool pool = makePool({{}, {1, 1}, {}, {}, {}, {}}, kind);
    Requests r;
    const auto& b = pool.backends();
    b[0]->markDown(r.now);
    BackendLease fill(b[1]);  // b1 at its limit of 1
    b[3]->drain();
    b[4]->reportProbe(false, 1, 1, r.now);
    const std::vector<bool> tried = {false, false, true, false, false, false};
    for (int k = 0; k < 50; ++k) EXPECT_EQ(r.pick(pool, tried), 5u) << kindName(kind);
  }
}

TEST(Pool, FallsBackToEjectedBackendsWhenNothingIsUp) {
  Pool pool = makePool({{}, {}, {}});
  Requests r;
  for (const auto& b : pool.backends()) b->markDown(r.now);
  for (int k = 0; k < 30; ++k) {
    const auto i = r.pick(pool, {true, false, false});
    ASSERT_TRUE(i.has_value());
    EXPECT_NE(*i, 0u);  // tried stays out even in the fallback
  }
}

TEST(Pool, FallsBackToEjectedBackendsWhenTheUpOnesAreFull) {
  Pool pool = makePool({{1, 1}, {1, 1}, {}});
  Requests r;
  BackendLease fill0(pool.backends()[0]);
  pool.backends()[1]->markDown(r.now);
  pool.backends()[2]->markDown(r.now);
  // b0 is up but full; b1 and b2 are ejected with room, so one of them gets the session.
  for (int k = 0; k < 30; ++k) {
    const auto i = r.pick(pool, {false, false, false});
    ASSERT_TRUE(i.has_value());
    EXPECT_NE(*i, 0u);
  }
}

TEST(Pool, NeverFallsBackToAFullBackend) {
  Pool pool = makePool({{1, 1}, {1, 1}});
  Requests r;
  BackendLease fill0(pool.backends()[0]);
  BackendLease fill1(pool.backends()[1]);
  pool.backends()[1]->markDown(r.now);
  EXPECT_EQ(r.pick(pool, {false, false}), std::nullopt);
}

TEST(Pool, NeverFallsBackToDrainingOrActivelyDownBackends) {
  Pool pool = makePool({{}, {}, {}});
  Requests r;
  pool.backends()[0]->drain();
  pool.backends()[1]->reportProbe(false, 1, 1, r.now);
  pool.backends()[2]->markDown(r.now);
  for (int k = 0; k < 10; ++k) EXPECT_EQ(r.pick(pool, {false, false, false}), 2u);
  pool.backends()[2]->drain();
  EXPECT_EQ(r.pick(pool, {false, false, false}), std::nullopt);
}

TEST(Pool, ReturnsNulloptWhenEverythingWasTried) {
  Pool pool = makePool({{}, {}});
  Requests r;
  EXPECT_EQ(r.pick(pool, {true, true}), std::nullopt);
  pool.backends()[0]->markDown(r.now);
  EXPECT_EQ(r.pick(pool, {true, true}), std::nullopt);
}

TEST(Pool, TreatsAShortTriedVectorAsUntried) {
  Pool pool = makePool({{}, {}});
  Requests r;
  EXPECT_TRUE(r.pick(pool, {}).has_value());
}

TEST(Pool, ReturnsNulloptWithoutBackends) {
  for (PolicyKind kind : kAllKinds) {
    Pool pool("empty", {}, makePolicy(kind, {}));
    Requests r;
    EXPECT_EQ(r.pick(pool, {}), std::nullopt);
    EXPECT_EQ(pool.pickSticky(42, {{}, std::nullopt, r.now, 0}), std::nullopt);
  }
}

TEST(Pool, WithoutPolicyPicksNothing) {
  Pool pool("p", makeBackends(1), nullptr);
  Requests r;
  EXPECT_EQ(r.pick(pool, {false}), std::nullopt);
}

TEST(Pool, FindsBackendsByName) {
  Pool pool = makePool({{}, {}, {}});
  EXPECT_EQ(pool.find("b0"), 0u);
  EXPECT_EQ(pool.find("b2"), 2u);
  EXPECT_EQ(pool.find("nope"), std::nullopt);
  EXPECT_EQ(pool.name(), "app");
}

// ---- the half-open retry ---------------------------------------------------------------

TEST(Pool, AHalfOpenBackendGetsOneSessionUntilItReports) {
  // least_conn would send every new session to the empty, just-recovered backend.
  Pool pool = makePool({{}, {}, {}}, PolicyKind::LeastConn);
  Requests r;
  const auto& b = pool.backends();
  std::vector<BackendLease> held;
  for (int k = 0; k < 10; ++k) {
    held.emplace_back(b[1]);
    held.emplace_back(b[2]);
  }
  b[0]->markDown(r.now);
  r.now += seconds(1);
  std::vector<int> counts(3, 0);
  for (int k = 0; k < 20; ++k) {
    const auto i = r.pick(pool, {false, false, false});
    ASSERT_TRUE(i.has_value());
    ++counts[*i];
    held.emplace_back(b[*i]);
  }
  EXPECT_EQ(counts[0], 1);
  // The retry succeeded: b0 is up and least_conn now fills it.
  EXPECT_TRUE(b[0]->markUp(r.now));
  EXPECT_EQ(r.pick(pool, {false, false, false}), 0u);
}

TEST(Pool, AFailedRetryEjectsForLonger) {
  Pool pool = makePool({{}, {}}, PolicyKind::LeastConn);
  Requests r;
  const auto& b = pool.backends();
  b[0]->markDown(r.now);
  r.now += seconds(1);
  ASSERT_EQ(r.pick(pool, {false, false}), 0u);  // the retry
  EXPECT_EQ(b[0]->markDown(r.now), seconds(2));
  r.now += milliseconds(1999);
  for (int k = 0; k < 10; ++k) EXPECT_EQ(r.pick(pool, {false, false}), 1u);
  r.now += milliseconds(1);
  EXPECT_EQ(r.pick(pool, {false, false}), 0u);
}

TEST(Pool, UsesThePoolsBackoff) {
  Pool pool = makePool({{}, {}}, PolicyKind::LeastConn,
                       PoolOptions{Duration::zero(), {milliseconds(100), seconds(1)}});
  Requests r;
  const auto& b = pool.backends();
  b[0]->markDown(r.now, pool.options().backoff);
  r.now += milliseconds(100);
  ASSERT_EQ(r.pick(pool, {false, false}), 0u);
  EXPECT_EQ(r.pick(pool, {false, false}), 1u);  // the retry is out for another 100ms
  r.now += milliseconds(100);
  EXPECT_EQ(r.pick(pool, {false, false}), 0u);
}

// ---- slow start ------------------------------------------------------------------------

TEST(Pool, ARecoveredBackendRampsUpUnderLeastConn) {
  Pool pool = makePool({{}, {}}, PolicyKind::LeastConn, PoolOptions{seconds(30), {}});
  Requests r;
  const auto& b = pool.backends();
  b[1]->markDown(r.now);
  b[1]->markUp(r.now);  // came back at `now`: a tenth of its weight
  std::vector<BackendLease> held;
  auto fill = [&](int picks) {
    std::vector<int> counts(2, 0);
    for (int k = 0; k < picks; ++k) {
      const auto i = r.pick(pool, {false, false});
      ++counts[*i];
      held.emplace_back(b[*i]);
    }
    return counts;
  };
  auto counts = fill(1100);
  EXPECT_NEAR(counts[1], 100, 2);  // 1 : 10

  held.clear();
  r.now += seconds(15);  // halfway: 0.55 of its weight
  counts = fill(1550);
  EXPECT_NEAR(counts[1], 550, 2);

  held.clear();
  r.now += seconds(15);  // done
  counts = fill(1000);
  EXPECT_NEAR(counts[1], 500, 1);
}

TEST(Pool, RoundRobinThinsARecoveredBackend) {
  Pool pool = makePool({{}, {}}, PolicyKind::RoundRobin, PoolOptions{seconds(30), {}});
  Requests r;
  pool.backends()[1]->enable(r.now);  // not draining: nothing to enable, no slow start
  pool.backends()[1]->drain();
  pool.backends()[1]->enable(r.now);
  std::vector<int> counts(2, 0);
  for (int k = 0; k < 20'000; ++k) ++counts[*r.pick(pool, {false, false})];
  // b1 keeps a tenth of its half.
  EXPECT_NEAR(counts[1] / 20'000.0, 0.05, 0.01);
}

// ---- sticky placement ------------------------------------------------------------------

TEST(Pool, CookieNamesTheSameBackendRoundTrip) {
  Pool pool = makePool({{}, {}, {}});
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(pool.cookie(i).size(), 16u);
    EXPECT_EQ(pool.findByCookie(pool.cookie(i)), i);
  }
  EXPECT_NE(pool.cookie(0), pool.cookie(1));
  EXPECT_NE(pool.cookie(1), pool.cookie(2));
  EXPECT_NE(pool.cookie(0), pool.cookie(2));
}

TEST(Pool, AnUnknownCookieNamesNoBackend) {
  Pool pool = makePool({{}, {}});
  Pool other("chat", makeBackends({{}, {}}, "chat"), makePolicy(PolicyKind::RoundRobin, {1, 1}));
  EXPECT_EQ(pool.findByCookie(other.cookie(0)), std::nullopt);  // same name, other pool
  EXPECT_EQ(pool.findByCookie("0000000000000000"), std::nullopt);
  EXPECT_EQ(pool.findByCookie("not a cookie"), std::nullopt);
  EXPECT_EQ(pool.findByCookie(""), std::nullopt);
}

TEST(Pool, CookiesSurviveARebuildThatReordersAndReaddressesBackends) {
  Pool before = makePool({{}, {}, {}});
  std::vector<BackendPtr> moved = {
      std::make_shared<Backend>(BackendSpec{"app", "b2", "192.168.0.9", 81, 5}),
      std::make_shared<Backend>(BackendSpec{"app", "b0", "192.168.0.7", 81, 1}),
      std::make_shared<Backend>(BackendSpec{"app", "new", "192.168.0.8", 81, 1}),
  };
  Pool after("app", std::move(moved), makePolicy(PolicyKind::LeastConn, {5, 1, 1}));
  EXPECT_EQ(after.findByCookie(before.cookie(0)), 1u);
  EXPECT_EQ(after.findByCookie(before.cookie(2)), 0u);
  EXPECT_EQ(after.findByCookie(before.cookie(1)), std::nullopt);  // b1 left the pool
}

TEST(Pool, StickyKeysLandOnTheSameBackendOnEveryInstanceAndPolicy) {
  // Two instances with the same config, one of them listing the backends in another order,
  // and a pool per policy: pickSticky agrees everywhere, and so does the hash policy.
  std::vector<Pool> pools;
  for (PolicyKind kind : kAllKinds) pools.push_back(makePool({{1}, {2}, {1}, {3}}, kind));
  auto shuffled = makeBackends({{1}, {2}, {1}, {3}});
  std::reverse(shuffled.begin(), shuffled.end());
  pools.emplace_back("app", std::move(shuffled), makePolicy(PolicyKind::Hash, {3, 1, 2, 1}));

  const std::vector<bool> none(4, false);
  const TimePoint now = at(milliseconds(0));
  for (int k = 0; k < 2000; ++k) {
    const uint64_t key = stickyKeyHash("user-" + std::to_string(k));
    const auto want = pools[0].pickSticky(key, {none, std::nullopt, now, 0});
    ASSERT_TRUE(want.has_value());
    const std::string& name = pools[0].backends()[*want]->spec().name;
    for (Pool& pool : pools) {
      const auto i = pool.pickSticky(key, {none, std::nullopt, now, uint64_t(k)});
      ASSERT_TRUE(i.has_value());
      ASSERT_EQ(pool.backends()[*i]->spec().name, name) << "key " << k;
    }
    const auto hashed = pools[3].pick({none, key, now, uint64_t(k)});
    ASSERT_EQ(hashed, want);
  }
}

TEST(Pool, StickyKeysOfAnUnavailableBackendMoveAndComeBack) {
  Pool pool = makePool({{}, {}, {}, {}}, PolicyKind::LeastConn);
  const std::vector<bool> none(4, false);
  Requests r;
  std::vector<std::size_t> home(1000);
  for (uint64_t k = 0; k < home.size(); ++k) {
    home[k] = *pool.pickSticky(mix64(k), {none, std::nullopt, r.now, 0});
  }
  pool.backends()[2]->drain();
  for (uint64_t k = 0; k < home.size(); ++k) {
    const auto i = pool.pickSticky(mix64(k), {none, std::nullopt, r.now, 0});
    ASSERT_TRUE(i.has_value());
    if (home[k] == 2) {
      EXPECT_NE(*i, 2u);
      EXPECT_EQ(pool.pickSticky(mix64(k), {none, std::nullopt, r.now, 7}), i);  // stable
    } else {
      EXPECT_EQ(*i, home[k]);  // nobody else moves
    }
  }
  pool.backends()[2]->enable(r.now);
  for (uint64_t k = 0; k < home.size(); ++k) {
    EXPECT_EQ(pool.pickSticky(mix64(k), {none, std::nullopt, r.now, 0}), home[k]);
  }
}

TEST(Pool, StickyPlacementRetriesElsewhere) {
  Pool pool = makePool({{}, {}, {}});
  Requests r;
  const uint64_t key = stickyKeyHash("room-1");
  std::vector<bool> tried(3, false);
  for (int attempt = 0; attempt < 3; ++attempt) {
    const auto i = pool.pickSticky(key, {tried, std::nullopt, r.now, 0});
    ASSERT_TRUE(i.has_value());
    ASSERT_FALSE(tried[*i]);
    tried[*i] = true;
  }
  EXPECT_EQ(pool.pickSticky(key, {tried, std::nullopt, r.now, 0}), std::nullopt);
}

TEST(Pool, HashPolicyWithoutAKeySpreadsByWeight) {
  Pool pool = makePool({{1}, {3}}, PolicyKind::Hash);
  Requests r;
  std::vector<int> counts(2, 0);
  for (int k = 0; k < 40'000; ++k) ++counts[*r.pick(pool, {false, false})];
  EXPECT_NEAR(counts[1] / 40'000.0, 0.75, 0.02);
}

TEST(Pool, PrefersTheNamedBackendWhileItCanTakeTheRequest) {
  Pool pool = makePool({{}, {}, {}}, PolicyKind::LeastConn);
  Requests r;
  const std::vector<bool> none(3, false);
  const auto& b = pool.backends();
  auto prefer = [&](std::size_t index, const std::vector<bool>& tried) {
    return pool.pickPreferring(index, {tried, std::nullopt, r.now, r.rng()});
  };
  EXPECT_EQ(prefer(1, none), 1u);
  EXPECT_NE(prefer(1, {false, true, false}), 1u);  // tried
  EXPECT_TRUE(prefer(7, none).has_value());        // no such backend: any
  b[1]->drain();
  EXPECT_NE(prefer(1, none), 1u);
  b[1]->enable(r.now);
  b[1]->markDown(r.now);
  EXPECT_NE(prefer(1, none), 1u);
  r.now += seconds(1);
  EXPECT_EQ(prefer(1, none), 1u);  // half-open: this request is the retry
  EXPECT_NE(prefer(1, none), 1u);  // and only this one
}

// ---- invariants under churn -----------------------------------------------------------

// h2o-style: random churn of passive and active health, drain, limits, tried sets, open
// sessions and the clock; after every pick, the choice respects Pool::pick's contract.
TEST(Pool, PicksRespectEligibilityUnderRandomChurn) {
  constexpr std::size_t kBackends = 5;
  for (PolicyKind kind : kAllKinds) {
    Pool pool = makePool({{3, 2}, {1, 0}, {2, 3}, {1, 1}, {4, 0}}, kind,
                         PoolOptions{seconds(5), {milliseconds(50), milliseconds(400)}});
    const auto& backends = pool.backends();
    Requests r;
    std::mt19937 rng(7);
    std::bernoulli_distribution coin(0.3);
    std::vector<BackendLease> open;
    for (int k = 0; k < 10'000; ++k) {
      r.now += milliseconds(rng() % 20);
      for (const auto& b : backends) {
        if (!coin(rng)) continue;
        switch (rng() % 6) {
          case 0:
            b->markDown(r.now, pool.options().backoff);
            break;
          case 1:
            b->markUp(r.now);
            break;
          case 2:
            b->reportProbe(coin(rng), 2, 2, r.now);
            break;
          case 3:
            coin(rng) && coin(rng) ? b->drain() : b->enable(r.now);
            break;
          default:
            break;
        }
      }
      std::vector<bool> tried(kBackends);
      for (std::size_t i = 0; i < kBackends; ++i) tried[i] = coin(rng) && coin(rng);

      bool anyAvailable = false, anyFallback = false;
      for (std::size_t i = 0; i < kBackends; ++i) {
        const Backend& b = *backends[i];
        if (tried[i]) continue;
        anyAvailable = anyAvailable || b.available(r.now);
        anyFallback = anyFallback || (!b.draining() && b.activeUp() && !b.full());
      }
      std::vector<bool> availableBefore(kBackends);
      for (std::size_t i = 0; i < kBackends; ++i)
        availableBefore[i] = backends[i]->available(r.now);

      const auto i = r.pick(pool, tried);
      ASSERT_EQ(i.has_value(), anyFallback) << kindName(kind) << " pick " << k;
      if (i) {
        ASSERT_LT(*i, kBackends);
        ASSERT_FALSE(tried[*i]) << kindName(kind) << " pick " << k;
        const Backend& b = *backends[*i];
        ASSERT_FALSE(b.draining());
        ASSERT_TRUE(b.activeUp());
        ASSERT_FALSE(b.full());
        if (anyAvailable) {
          ASSERT_TRUE(availableBefore[*i]) << kindName(kind) << " pick " << k;
        }
        open.emplace_back(backends[*i]);
      }
      std::erase_if(open, [&](const BackendLease&) { return coin(rng); });
    }
  }
}

// ---- threads ---------------------------------------------------------------------------

TEST(Pool, ConcurrentPicksWithLeasesGiveEveryCountBack) {
  constexpr int kThreads = 4;
  constexpr int kPicksPerThread = 20'000;
  for (PolicyKind kind : kAllKinds) {
    Pool pool = makePool({{3, 50}, {1}, {2}, {1, 10}, {5}}, kind, PoolOptions{seconds(1), {}});
    std::atomic<bool> stop{false};
    // A fifth thread plays the prober, the admin and failing connects meanwhile.
    std::thread chaos([&] {
      std::mt19937 rng(99);
      const TimePoint start = at(milliseconds(0));
      for (int k = 0; !stop.load(std::memory_order_relaxed); ++k) {
        const auto& b = pool.backends()[rng() % pool.backends().size()];
        const TimePoint now = start + milliseconds(k);
        switch (rng() % 5) {
          case 0:
            b->markDown(now);
            break;
          case 1:
            b->markUp(now);
            break;
          case 2:
            b->reportProbe(rng() % 2 == 0, 1, 1, now);
            break;
          case 3:
            b->drain();
            break;
          default:
            b->enable(now);
            break;
        }
      }
    });
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(t);
        const std::vector<bool> none(pool.backends().size(), false);
        std::vector<BackendLease> held;
        for (int k = 0; k < kPicksPerThread; ++k) {
          const TimePoint now = at(milliseconds(k / 10));
          const std::optional<uint64_t> key =
              rng() % 2 ? std::optional<uint64_t>(rng()) : std::nullopt;
          const auto i = pool.pick({none, key, now, rng()});
          if (i) held.emplace_back(pool.backends()[*i]);
          if (held.size() > 16) held.erase(held.begin(), held.begin() + (rng() % 16));
        }
      });
    }
    for (auto& th : threads) th.join();
    stop = true;
    chaos.join();
    // How many picks succeed depends on how the chaos thread interleaves (it may drain or
    // eject everything for a while); the invariant is that every lease gave its count back.
    for (const auto& b : pool.backends()) EXPECT_EQ(b->active(), 0u) << kindName(kind);
  }
}

TEST(Pool, ConcurrentRoundRobinPicksKeepTheDistribution) {
  constexpr int kThreads = 4;
  constexpr int kPicksPerThread = 25'000;
  Pool pool = makePool({{5}, {1}, {1}});
  std::vector<std::vector<uint64_t>> perThread(kThreads, std::vector<uint64_t>(3, 0));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::vector<bool> tried(3, false);
      for (int k = 0; k < kPicksPerThread; ++k) {
        if (auto i = pool.pick({tried, std::nullopt, at(milliseconds(0)), uint64_t(k)})) {
          ++perThread[t][*i];
        }
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

// ---- the impure convenience ------------------------------------------------------------

TEST(Pool, TheClockReadingOverloadSkipsABackendJustEjected) {
  Pool pool = makePool({{}, {}}, PolicyKind::LeastConn);
  pool.backends()[0]->markDown(std::chrono::steady_clock::now());
  for (int k = 0; k < 20; ++k) EXPECT_EQ(pool.pick(std::vector<bool>{false, false}), 1u);
  EXPECT_EQ(pool.pick(std::vector<bool>{}), 1u);
}

// ---- leases -----------------------------------------------------------------------------

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
  const TimePoint now = at(milliseconds(0));
  BackendLease one(a);
  EXPECT_TRUE(a->available(now));
  BackendLease two(a);
  EXPECT_FALSE(a->available(now));
  two.reset();
  EXPECT_TRUE(a->available(now));
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
