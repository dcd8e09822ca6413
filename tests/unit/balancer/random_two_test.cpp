// Power of two choices: weighted shares, the lighter of two wins, exclusions.

#include "balancer/random_two.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "balancer/slow_start.h"
#include "test_backends.h"

namespace wsgate::balancer {
namespace {

using testing::makeBackends;

TEST(RandomTwo, HeldSessionsFollowTheWeightsWithinFivePercent) {
  const std::vector<uint32_t> weights = {1, 2, 3, 4};
  RandomTwo p2c;
  const auto backends = makeBackends({{1}, {2}, {3}, {4}});
  const std::vector<bool> none(4, false);
  std::mt19937_64 rng(17);
  std::vector<BackendLease> open;
  open.reserve(100'000);
  for (int k = 0; k < 100'000; ++k) {
    open.emplace_back(backends[*p2c.pick({backends, none, {}, {}, rng()})]);
  }
  for (std::size_t i = 0; i < 4; ++i) {
    const double want = 100'000.0 * weights[i] / 10;
    EXPECT_NEAR(backends[i]->active(), want, 0.05 * want) << "backend " << i;
  }
}

TEST(RandomTwo, AnIdlePoolIsSharedByWeightWithinFivePercent) {
  const std::vector<uint32_t> weights = {1, 2, 3, 4};
  RandomTwo p2c;
  const auto backends = makeBackends({{1}, {2}, {3}, {4}});
  const std::vector<bool> none(4, false);
  std::mt19937_64 rng(23);
  std::vector<uint64_t> counts(4, 0);
  for (int k = 0; k < 100'000; ++k) ++counts[*p2c.pick({backends, none, {}, {}, rng()})];
  for (std::size_t i = 0; i < 4; ++i) {
    const double want = 100'000.0 * weights[i] / 10;
    EXPECT_NEAR(static_cast<double>(counts[i]), want, 0.05 * want) << "backend " << i;
  }
}

TEST(RandomTwo, TheLoadedBackendWinsOnlyWhenDrawnTwice) {
  RandomTwo p2c;
  const auto backends = makeBackends(2);
  std::vector<BackendLease> open;
  for (int k = 0; k < 100; ++k) open.emplace_back(backends[0]);
  std::mt19937_64 rng(29);
  int loaded = 0;
  for (int k = 0; k < 40'000; ++k)
    loaded += *p2c.pick({backends, {false, false}, {}, {}, rng()}) == 0;
  EXPECT_NEAR(loaded / 40'000.0, 0.25, 0.01);
}

TEST(RandomTwo, NeverPicksAnExcludedBackend) {
  constexpr std::size_t kBackends = 6;
  RandomTwo p2c;
  const auto backends = makeBackends({{5}, {1}, {3}, {2}, {1}, {4}});
  std::mt19937_64 rng(31);
  for (int k = 0; k < 10'000; ++k) {
    std::vector<bool> excluded(kBackends);
    bool anyEligible = false;
    for (std::size_t i = 0; i < kBackends; ++i) {
      excluded[i] = rng() % 5 < 2;
      anyEligible = anyEligible || !excluded[i];
    }
    const auto i = p2c.pick({backends, excluded, {}, {}, rng()});
    ASSERT_EQ(i.has_value(), anyEligible) << "pick " << k;
    if (i) {
      ASSERT_FALSE(excluded[*i]) << "pick " << k;
    }
  }
  EXPECT_EQ(p2c.pick({{}, {}}), std::nullopt);
}

TEST(RandomTwo, IsAFunctionOfItsInput) {
  RandomTwo p2c;
  const auto backends = makeBackends(5);
  const std::vector<bool> none(5, false);
  for (uint64_t r = 0; r < 100; ++r) {
    EXPECT_EQ(p2c.pick({backends, none, {}, {}, r}), p2c.pick({backends, none, {}, {}, r}));
  }
}

TEST(RandomTwo, DrawsByEffectiveWeight) {
  RandomTwo p2c;
  const auto backends = makeBackends(2);
  const std::vector<uint64_t> weights = {9 * kWeightUnit, kWeightUnit};  // b0 not ramping
  std::mt19937_64 rng(37);
  int first = 0;
  for (int k = 0; k < 40'000; ++k)
    first += *p2c.pick({backends, {false, false}, weights, {}, rng()}) == 0;
  EXPECT_NEAR(first / 40'000.0, 0.9, 0.01);
}

}  // namespace
}  // namespace wsgate::balancer
