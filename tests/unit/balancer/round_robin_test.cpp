// Smooth weighted round robin: the nginx sequence, shares, exclusions, scaling, threads.

#include "balancer/round_robin.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "balancer/hash.h"
#include "balancer/slow_start.h"

namespace wsgate::balancer {
namespace {

std::vector<BackendPtr> makeBackends(std::size_t n) {
  std::vector<BackendPtr> backends;
  for (std::size_t i = 0; i < n; ++i) {
    backends.push_back(std::make_shared<Backend>(
        BackendSpec{"p", "b" + std::to_string(i), "127.0.0.1", static_cast<uint16_t>(9000 + i)}));
  }
  return backends;
}

std::vector<uint64_t> countPicks(RoundRobin& rr, std::size_t n, std::size_t picks) {
  const auto backends = makeBackends(n);
  const std::vector<bool> none(n, false);
  std::vector<uint64_t> counts(n, 0);
  for (std::size_t k = 0; k < picks; ++k) {
    const auto i = rr.pick({backends, none});
    EXPECT_TRUE(i.has_value());
    if (i) ++counts[*i];
  }
  return counts;
}

void expectSharesWithinOnePercent(const std::vector<uint64_t>& counts,
                                  const std::vector<uint32_t>& weights) {
  uint64_t total = 0, weightSum = 0;
  for (uint64_t c : counts) total += c;
  for (uint32_t w : weights) weightSum += w;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const double share = static_cast<double>(counts[i]) / static_cast<double>(total);
    const double want = static_cast<double>(weights[i]) / static_cast<double>(weightSum);
    EXPECT_NEAR(share, want, 0.01) << "backend " << i;
  }
}

TEST(RoundRobin, WeightsFiveOneOneGiveTheSmoothNginxSequence) {
  RoundRobin rr({5, 1, 1});
  EXPECT_EQ(rr.schedule(), (std::vector<uint32_t>{0, 0, 1, 0, 2, 0, 0}));
  const auto backends = makeBackends(3);
  const std::vector<bool> none(3, false);
  std::vector<std::size_t> picked;
  for (int k = 0; k < 14; ++k) picked.push_back(*rr.pick({backends, none}));
  EXPECT_EQ(picked, (std::vector<std::size_t>{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}));
}

TEST(RoundRobin, EqualWeightsAlternate) {
  RoundRobin rr({1, 1, 1});
  EXPECT_EQ(rr.schedule(), (std::vector<uint32_t>{0, 1, 2}));
}

TEST(RoundRobin, ReducesWeightsByTheirCommonDivisor) {
  RoundRobin scaled({50, 10, 10});
  RoundRobin plain({5, 1, 1});
  EXPECT_EQ(scaled.schedule(), plain.schedule());
}

TEST(RoundRobin, SharesFollowWeightsOverManyPicks) {
  const std::vector<std::vector<uint32_t>> weightSets = {
      {5, 1, 1}, {3, 2}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {100, 1}, {7}};
  for (const auto& weights : weightSets) {
    RoundRobin rr(weights);
    expectSharesWithinOnePercent(countPicks(rr, weights.size(), 100'000), weights);
  }
}

TEST(RoundRobin, NeverPicksAnExcludedBackend) {
  constexpr std::size_t kBackends = 6;
  RoundRobin rr({5, 1, 3, 2, 1, 4});
  const auto backends = makeBackends(kBackends);
  std::mt19937 rng(42);
  std::bernoulli_distribution coin(0.4);
  for (int k = 0; k < 10'000; ++k) {
    std::vector<bool> excluded(kBackends);
    bool anyEligible = false;
    for (std::size_t i = 0; i < kBackends; ++i) {
      excluded[i] = coin(rng);
      anyEligible = anyEligible || !excluded[i];
    }
    const auto i = rr.pick({backends, excluded});
    ASSERT_EQ(i.has_value(), anyEligible) << "pick " << k;
    if (i) {
      ASSERT_LT(*i, kBackends);
      ASSERT_FALSE(excluded[*i]) << "pick " << k;
    }
  }
}

TEST(RoundRobin, ReturnsNulloptWhenEveryBackendIsExcluded) {
  RoundRobin rr({5, 1, 1});
  const auto backends = makeBackends(3);
  EXPECT_EQ(rr.pick({backends, {true, true, true}}), std::nullopt);
}

TEST(RoundRobin, ReturnsNulloptWithoutBackends) {
  RoundRobin rr({});
  EXPECT_TRUE(rr.schedule().empty());
  EXPECT_EQ(rr.pick({{}, {}}), std::nullopt);
}

TEST(RoundRobin, SkipsExcludedSlotsToTheOnlyEligibleBackend) {
  RoundRobin rr({5, 1, 1});
  const auto backends = makeBackends(3);
  for (int k = 0; k < 20; ++k) EXPECT_EQ(rr.pick({backends, {true, true, false}}), 2u);
}

TEST(RoundRobin, ScalesLargeWeightsKeepingEachAtLeastOne) {
  const std::vector<uint32_t> weights = {1'000'000, 1, 3'000'000, 2'000'001};
  RoundRobin rr(weights);
  const auto& schedule = rr.schedule();
  ASSERT_LE(schedule.size(), RoundRobin::kMaxSchedule);
  std::vector<uint64_t> counts(weights.size(), 0);
  for (uint32_t i : schedule) ++counts[i];
  EXPECT_EQ(counts[1], 1u);
  EXPECT_NEAR(static_cast<double>(counts[2]) / static_cast<double>(counts[0]), 3.0, 0.01);
  EXPECT_NEAR(static_cast<double>(counts[3]) / static_cast<double>(counts[0]), 2.0, 0.01);
  expectSharesWithinOnePercent(countPicks(rr, weights.size(), 100'000), weights);
}

TEST(RoundRobin, ScalesTheLargestWeights) {
  constexpr uint32_t kMax = std::numeric_limits<uint32_t>::max();
  RoundRobin rr({kMax, kMax - 1, 1});
  ASSERT_LE(rr.schedule().size(), RoundRobin::kMaxSchedule);
  std::vector<uint64_t> counts(3, 0);
  for (uint32_t i : rr.schedule()) ++counts[i];
  EXPECT_GE(counts[2], 1u);
  EXPECT_NEAR(static_cast<double>(counts[0]), static_cast<double>(counts[1]), 1.0);
}

TEST(RoundRobin, GivesEachBackendOneSlotWhenThereAreMoreBackendsThanTheLimit) {
  const std::size_t n = RoundRobin::kMaxSchedule + 100;
  std::vector<uint32_t> weights(n);
  for (std::size_t i = 0; i < n; ++i) weights[i] = static_cast<uint32_t>(2 + i % 3);
  RoundRobin rr(weights);
  ASSERT_EQ(rr.schedule().size(), n);
  std::vector<int> seen(n, 0);
  for (uint32_t i : rr.schedule()) ++seen[i];
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(seen[i], 1) << i;
}

TEST(RoundRobin, ConcurrentPicksKeepTheDistribution) {
  constexpr int kThreads = 4;
  constexpr int kPicksPerThread = 25'000;
  const std::vector<uint32_t> weights = {5, 1, 1};
  RoundRobin rr(weights);
  const auto backends = makeBackends(3);
  const std::vector<bool> none(3, false);
  std::vector<std::vector<uint64_t>> perThread(kThreads, std::vector<uint64_t>(3, 0));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < kPicksPerThread; ++k) {
        if (auto i = rr.pick({backends, none})) ++perThread[t][*i];
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<uint64_t> counts(3, 0);
  for (const auto& c : perThread) {
    for (std::size_t i = 0; i < 3; ++i) counts[i] += c[i];
  }
  EXPECT_EQ(counts[0] + counts[1] + counts[2], uint64_t{kThreads} * kPicksPerThread);
  expectSharesWithinOnePercent(counts, weights);
}

TEST(RoundRobin, SharesAreWithinFivePercentOfTheirWeightsOverOneHundredThousandPicks) {
  const std::vector<uint32_t> weights = {1, 2, 3, 4, 10};
  RoundRobin rr(weights);
  const auto counts = countPicks(rr, weights.size(), 100'000);
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const double want = 100'000.0 * weights[i] / 20;
    EXPECT_NEAR(static_cast<double>(counts[i]), want, 0.05 * want) << "backend " << i;
  }
}

TEST(RoundRobin, FullEffectiveWeightsKeepTheExactSequence) {
  RoundRobin rr({5, 1, 1});
  const auto backends = makeBackends(3);
  const std::vector<bool> none(3, false);
  const std::vector<uint64_t> full = {5 * kWeightUnit, kWeightUnit, kWeightUnit};
  std::vector<std::size_t> picked;
  for (uint64_t k = 0; k < 7; ++k) picked.push_back(*rr.pick({backends, none, full, {}, mix64(k)}));
  EXPECT_EQ(picked, (std::vector<std::size_t>{0, 0, 1, 0, 2, 0, 0}));
}

TEST(RoundRobin, SlowStartThinsARampingBackendsShare) {
  // b0 at a quarter of its weight: it keeps about a quarter of its slots; the rest goes to
  // b1 and b2 by their own weights.
  const std::vector<uint32_t> weights = {2, 1, 1};
  RoundRobin rr(weights);
  const auto backends = makeBackends(3);
  const std::vector<bool> none(3, false);
  const std::vector<uint64_t> effective = {2 * kWeightUnit / 4, kWeightUnit, kWeightUnit};
  std::mt19937_64 rng(3);
  std::vector<uint64_t> counts(3, 0);
  constexpr int kPicks = 100'000;
  for (int k = 0; k < kPicks; ++k) ++counts[*rr.pick({backends, none, effective, {}, rng()})];
  EXPECT_NEAR(counts[0] / double{kPicks}, 0.5 / 4, 0.01);
  EXPECT_NEAR(counts[1] / double{kPicks}, (1 - 0.5 / 4) / 2, 0.01);
  EXPECT_NEAR(counts[2] / double{kPicks}, (1 - 0.5 / 4) / 2, 0.01);
}

TEST(RoundRobin, ARampingBackendThatIsTheOnlyOneLeftIsStillPicked) {
  RoundRobin rr({1, 1});
  const auto backends = makeBackends(2);
  const std::vector<uint64_t> effective = {1, kWeightUnit};  // b0 barely ramping
  for (uint64_t k = 0; k < 50; ++k) {
    EXPECT_EQ(rr.pick({backends, {false, true}, effective, {}, mix64(k)}), 0u);
  }
}

}  // namespace
}  // namespace wsgate::balancer
