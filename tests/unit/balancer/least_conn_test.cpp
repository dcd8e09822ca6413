// Weighted least connections, h2o-style: thousands of picks under random open/close churn,
// the invariant checked after each.

#include "balancer/least_conn.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "balancer/slow_start.h"
#include "test_backends.h"

namespace wsgate::balancer {
namespace {

using testing::BackendDef;
using testing::makeBackends;

// Is active_a / weight_a < active_b / weight_b?
bool lowerRatio(uint64_t activeA, uint64_t weightA, uint64_t activeB, uint64_t weightB) {
  return static_cast<unsigned __int128>(activeA) * weightB <
         static_cast<unsigned __int128>(activeB) * weightA;
}

uint64_t spread(const std::vector<BackendPtr>& backends) {
  uint32_t lo = UINT32_MAX, hi = 0;
  for (const auto& b : backends) {
    lo = std::min(lo, b->active());
    hi = std::max(hi, b->active());
  }
  return hi - lo;
}

TEST(LeastConn, PicksTheLowestRatioUnderRandomChurn) {
  // Equal weights: after every pick, no eligible backend had fewer sessions than the one
  // picked, and the spread max - min never grows past 1 because of a pick.
  constexpr std::size_t kBackends = 8;
  LeastConn lc;
  const auto backends = makeBackends(kBackends);
  const std::vector<bool> none(kBackends, false);
  std::mt19937_64 rng(11);
  std::vector<BackendLease> open;
  for (int k = 0; k < 10'000; ++k) {
    const uint64_t before = spread(backends);
    std::vector<uint32_t> active;
    for (const auto& b : backends) active.push_back(b->active());
    const auto i = lc.pick({backends, none, {}, {}, rng()});
    ASSERT_TRUE(i.has_value());
    for (std::size_t j = 0; j < kBackends; ++j) ASSERT_LE(active[*i], active[j]) << "pick " << k;
    open.emplace_back(backends[*i]);
    ASSERT_LE(spread(backends), std::max<uint64_t>(before, 1)) << "pick " << k;
    // Sessions close at random, in bursts, so that the counts drift apart between picks.
    const int closes = static_cast<int>(rng() % 3);
    for (int c = 0; c < closes && !open.empty(); ++c)
      open.erase(open.begin() + rng() % open.size());
  }
}

TEST(LeastConn, KeepsMaxMinusMinAtMostOneWhileSessionsOnlyOpen) {
  LeastConn lc;
  const auto backends = makeBackends(7);
  const std::vector<bool> none(7, false);
  std::vector<BackendLease> open;
  for (uint64_t k = 0; k < 10'000; ++k) {
    open.emplace_back(backends[*lc.pick({backends, none, {}, {}, k * 0x9e3779b97f4a7c15ull})]);
    ASSERT_LE(spread(backends), 1u) << "pick " << k;
  }
}

TEST(LeastConn, WeightedPicksNeverSkipALowerRatioUnderChurn) {
  // Random weights (slow start included), exclusions and churn; the picked backend has the
  // lowest active/weight among those not excluded.
  constexpr std::size_t kBackends = 6;
  LeastConn lc;
  const auto backends = makeBackends({{1}, {2}, {3}, {5}, {8}, {13}});
  std::mt19937_64 rng(5);
  std::vector<BackendLease> open;
  for (int k = 0; k < 10'000; ++k) {
    std::vector<bool> excluded(kBackends);
    std::vector<uint64_t> weights(kBackends);
    for (std::size_t i = 0; i < kBackends; ++i) {
      excluded[i] = rng() % 5 == 0;
      weights[i] = backends[i]->spec().weight * kWeightUnit / (1 + rng() % 3);
    }
    const auto i = lc.pick({backends, excluded, weights, {}, rng()});
    const bool anyEligible = std::count(excluded.begin(), excluded.end(), false) > 0;
    ASSERT_EQ(i.has_value(), anyEligible);
    if (!i) continue;
    ASSERT_FALSE(excluded[*i]);
    for (std::size_t j = 0; j < kBackends; ++j) {
      if (excluded[j]) continue;
      ASSERT_FALSE(
          lowerRatio(backends[j]->active(), weights[j], backends[*i]->active(), weights[*i]))
          << "pick " << k << ": backend " << j << " had a lower ratio than " << *i;
    }
    open.emplace_back(backends[*i]);
    if (rng() % 2) open.erase(open.begin() + rng() % open.size());
  }
}

TEST(LeastConn, HeldSessionsFollowTheWeightsWithinFivePercent) {
  const std::vector<uint32_t> weights = {1, 2, 3, 4};
  LeastConn lc;
  const auto backends = makeBackends({{1}, {2}, {3}, {4}});
  const std::vector<bool> none(4, false);
  std::vector<BackendLease> open;
  open.reserve(100'000);
  for (uint64_t k = 0; k < 100'000; ++k) {
    open.emplace_back(backends[*lc.pick({backends, none, {}, {}, k})]);
  }
  for (std::size_t i = 0; i < 4; ++i) {
    const double want = 100'000.0 * weights[i] / 10;
    EXPECT_NEAR(backends[i]->active(), want, 0.05 * want) << "backend " << i;
  }
}

TEST(LeastConn, TiesGoToTheTiedBackendsByWeightAtRandom) {
  // An idle pool (sessions close before the next pick): every pick is a tie.
  LeastConn lc;
  const auto backends = makeBackends({{1}, {3}, {4}});
  const std::vector<bool> none(3, false);
  std::mt19937_64 rng(2);
  std::vector<uint64_t> counts(3, 0);
  for (int k = 0; k < 80'000; ++k) ++counts[*lc.pick({backends, none, {}, {}, rng()})];
  EXPECT_NEAR(counts[0] / 80'000.0, 1.0 / 8, 0.01);
  EXPECT_NEAR(counts[1] / 80'000.0, 3.0 / 8, 0.01);
  EXPECT_NEAR(counts[2] / 80'000.0, 4.0 / 8, 0.01);
}

TEST(LeastConn, PickersWithTheSameCountsAndDifferentRandomsSpreadOut) {
  // Four workers pick at the same instant and see the same counts: they should not all
  // choose the first backend of the list.
  LeastConn lc;
  const auto backends = makeBackends(4);
  const std::vector<bool> none(4, false);
  std::vector<int> seen(4, 0);
  for (uint64_t worker = 0; worker < 64; ++worker) {
    ++seen[*lc.pick({backends, none, {}, {}, worker * 0x9e3779b97f4a7c15ull})];
  }
  for (int s : seen) EXPECT_GE(s, 8);
}

TEST(LeastConn, NeverPicksAnExcludedBackend) {
  LeastConn lc;
  const auto backends = makeBackends(3);
  BackendLease a(backends[1]), b(backends[2]);  // b0 is emptiest, but excluded
  for (uint64_t k = 0; k < 100; ++k) {
    const auto i = lc.pick({backends, {true, false, false}, {}, {}, k});
    ASSERT_TRUE(i.has_value());
    EXPECT_NE(*i, 0u);
  }
  EXPECT_EQ(lc.pick({backends, {true, true, true}}), std::nullopt);
  EXPECT_EQ(lc.pick({{}, {}}), std::nullopt);
}

TEST(LeastConn, UsesEffectiveWeights) {
  LeastConn lc;
  const auto backends = makeBackends(2);
  std::vector<BackendLease> open;
  for (int k = 0; k < 5; ++k) open.emplace_back(backends[0]);
  open.emplace_back(backends[1]);
  // b1 is ramping at a tenth: 1 session / 100 beats 5 / 1000 only past 10 sessions on b0.
  const std::vector<uint64_t> weights = {kWeightUnit, kWeightUnit / 10};
  EXPECT_EQ(lc.pick({backends, {false, false}, weights}), 0u);
  EXPECT_EQ(lc.pick({backends, {false, false}}), 1u);  // configured weights: b1 is emptier
}

}  // namespace
}  // namespace wsgate::balancer
