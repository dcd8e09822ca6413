// The consistent-hash table: shares by weight, only the changed backend's keys move when a
// backend goes, comes or is reweighted, stable substitutes for excluded backends, independence
// from list order.

#include "balancer/maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "balancer/consistent_hash.h"
#include "balancer/hash.h"
#include "test_backends.h"

namespace wsgate::balancer {
namespace {

constexpr int kKeys = 100'000;
// Frozen placements (see IsTheSameTableEveryTime), cross-checked against a separate Python
// transcription of the fill.
constexpr std::size_t kPinnedUser42 = 2;
constexpr std::size_t kPinnedAddress = 4;

std::vector<uint64_t> namesOf(const std::vector<std::string>& names) {
  std::vector<uint64_t> out;
  for (const auto& n : names) out.push_back(fnv1a64("app/" + n));
  return out;
}

std::vector<std::string> backendNames(int n) {
  std::vector<std::string> names;
  for (int i = 0; i < n; ++i) names.push_back("b" + std::to_string(i));
  return names;
}

// The backend (by name) each of kKeys keys lands on.
std::vector<std::string> place(const std::vector<std::string>& names,
                               const std::vector<uint32_t>& weights,
                               const std::vector<bool>& excluded = {}) {
  const MaglevTable table(namesOf(names), weights);
  std::vector<std::string> out;
  out.reserve(kKeys);
  for (int k = 0; k < kKeys; ++k) {
    out.push_back(names[*table.lookup(stickyKeyHash("key-" + std::to_string(k)), excluded)]);
  }
  return out;
}

std::vector<uint64_t> slotCounts(const MaglevTable& table) {
  std::vector<uint64_t> counts(table.backendCount(), 0);
  for (uint32_t s = 0; s < MaglevTable::kSize; ++s) ++counts[table.owner(s)];
  return counts;
}

TEST(MaglevTable, SlotsFollowTheWeightsWithinSamplingNoise) {
  const std::vector<std::vector<uint32_t>> weightSets = {
      std::vector<uint32_t>(10, 1), {1, 2, 3, 4}, {1, 1, 8}, {256, 1, 100, 7, 7}};
  for (const auto& weights : weightSets) {
    const MaglevTable table(namesOf(backendNames(static_cast<int>(weights.size()))), weights);
    const auto counts = slotCounts(table);
    uint64_t sum = 0;
    for (uint32_t w : weights) sum += w;
    for (std::size_t i = 0; i < weights.size(); ++i) {
      const double share = weights[i] / static_cast<double>(sum);
      const double want = double{MaglevTable::kSize} * share;
      // Each slot is an independent weighted draw: a binomial count, within 5% or 4.5
      // standard deviations (the weight-1 backend of 371 expects 177 slots, give or take 13).
      const double sigma = std::sqrt(want * (1 - share));
      EXPECT_NEAR(static_cast<double>(counts[i]), want, std::max(0.05 * want, 4.5 * sigma))
          << "backend " << i << " of " << weights.size();
    }
  }
}

TEST(MaglevTable, EveryBackendOwnsASlotWhateverItsWeight) {
  const MaglevTable table(namesOf(backendNames(3)),
                          std::vector<uint32_t>{1'000'000, 1, 4'000'000'000u});
  for (uint64_t c : slotCounts(table)) EXPECT_GE(c, 1u);
}

TEST(MaglevTable, KeysSpreadByWeight) {
  const auto placed = place(backendNames(4), {1, 1, 1, 1});
  for (const auto& name : backendNames(4)) {
    EXPECT_NEAR(std::count(placed.begin(), placed.end(), name), kKeys / 4, kKeys / 4 * 0.05);
  }
}

TEST(MaglevTable, RemovingOneOfTenBackendsMovesOnlyItsKeys) {
  const auto names = backendNames(10);
  const std::vector<uint32_t> weights(10, 1);
  for (int removed = 0; removed < 10; ++removed) {
    auto fewer = names;
    fewer.erase(fewer.begin() + removed);
    const auto before = place(names, weights);
    const auto after = place(fewer, std::vector<uint32_t>(9, 1));
    int moved = 0, movedElsewhere = 0;
    for (int k = 0; k < kKeys; ++k) {
      if (before[k] == after[k]) continue;
      ++moved;
      if (before[k] != names[removed]) ++movedElsewhere;
    }
    EXPECT_LE(moved, kKeys * (1.0 / 10 + 0.02)) << "removed b" << removed;
    // What several instances rely on when discovery drops an address: a client of another
    // backend never moves (Maglev's own fill would move a few).
    EXPECT_EQ(movedElsewhere, 0) << "removed b" << removed;
  }
}

TEST(MaglevTable, AddingAnEleventhBackendMovesKeysOnlyToIt) {
  const auto names = backendNames(11);
  const auto before =
      place(std::vector<std::string>(names.begin(), names.end() - 1), std::vector<uint32_t>(10, 1));
  const auto after = place(names, std::vector<uint32_t>(11, 1));
  int moved = 0, movedNotToNew = 0;
  for (int k = 0; k < kKeys; ++k) {
    if (before[k] == after[k]) continue;
    ++moved;
    if (after[k] != "b10") ++movedNotToNew;
  }
  EXPECT_LE(moved, kKeys * (1.0 / 11 + 0.02));
  EXPECT_GE(moved, kKeys * (1.0 / 11 - 0.02));
  EXPECT_EQ(movedNotToNew, 0);
}

TEST(MaglevTable, ChangingOneWeightMovesKeysOnlyToOrFromThatBackend) {
  const auto names = backendNames(6);
  const std::vector<uint32_t> weights = {3, 1, 2, 1, 5, 1};
  const auto before = place(names, weights);
  for (const uint32_t w : {1u, 4u, 9u}) {
    auto changed = weights;
    changed[2] = w;
    const auto after = place(names, changed);
    int moved = 0;
    for (int k = 0; k < kKeys; ++k) {
      if (before[k] == after[k]) continue;
      ++moved;
      // Down to 1: b2 only gives keys away; up to 4 or 9: it only takes them.
      ASSERT_EQ(w < 2 ? before[k] : after[k], "b2") << "weight " << w << ", key " << k;
    }
    EXPECT_GT(moved, 0) << "weight " << w;
  }
}

TEST(MaglevTable, EveryInstanceAgreesAfterTheSameChangeWhateverTheOrder) {
  // Two instances: one lists b0..b4, the other the reverse; both lose b2, then gain b5 at
  // different places in their lists. They agree at every step.
  std::vector<std::string> a = backendNames(5);
  std::vector<std::string> b(a.rbegin(), a.rend());
  auto agree = [](const std::vector<std::string>& x, const std::vector<std::string>& y) {
    return place(x, std::vector<uint32_t>(x.size(), 1)) ==
           place(y, std::vector<uint32_t>(y.size(), 1));
  };
  EXPECT_TRUE(agree(a, b));
  std::erase(a, "b2");
  std::erase(b, "b2");
  EXPECT_TRUE(agree(a, b));
  a.push_back("b5");
  b.insert(b.begin(), "b5");
  EXPECT_TRUE(agree(a, b));
}

TEST(MaglevTable, ExcludingABackendMovesOnlyItsKeysAndSpreadsThem) {
  const auto names = backendNames(10);
  const std::vector<uint32_t> weights(10, 1);
  std::vector<bool> excluded(10, false);
  excluded[3] = true;
  const auto before = place(names, weights);
  const auto after = place(names, weights, excluded);
  std::vector<int> took(10, 0);
  int orphans = 0;
  for (int k = 0; k < kKeys; ++k) {
    if (before[k] != "b3") {
      ASSERT_EQ(after[k], before[k]) << "key " << k;
      continue;
    }
    ++orphans;
    ASSERT_NE(after[k], "b3");
    ++took[std::stoi(after[k].substr(1))];
  }
  // The orphans are shared out, not dumped on one neighbour: each of the 9 takes about a
  // ninth of them.
  for (int i = 0; i < 10; ++i) {
    if (i == 3) continue;
    EXPECT_NEAR(took[i], orphans / 9.0, orphans / 9.0 * 0.35) << "b" << i;
  }
}

TEST(MaglevTable, DoesNotDependOnTheOrderOfTheList) {
  auto names = backendNames(6);
  const std::vector<uint32_t> weights = {1, 2, 3, 1, 2, 3};
  const auto before = place(names, weights);
  std::vector<std::size_t> order = {4, 0, 5, 2, 1, 3};
  std::vector<std::string> shuffled;
  std::vector<uint32_t> shuffledWeights;
  for (std::size_t i : order) {
    shuffled.push_back(names[i]);
    shuffledWeights.push_back(weights[i]);
  }
  EXPECT_EQ(place(shuffled, shuffledWeights), before);
}

TEST(MaglevTable, IsTheSameTableEveryTime) {
  // What every wsgate instance relies on: same names and weights, same slots. Two owners
  // are pinned so that a change of the algorithm shows up as a failing test.
  const MaglevTable a(namesOf(backendNames(5)), std::vector<uint32_t>{1, 1, 1, 1, 1});
  const MaglevTable b(namesOf(backendNames(5)), std::vector<uint32_t>{1, 1, 1, 1, 1});
  for (uint32_t s = 0; s < MaglevTable::kSize; ++s) ASSERT_EQ(a.owner(s), b.owner(s));
  const std::vector<bool> none;
  EXPECT_EQ(a.lookup(stickyKeyHash("user-42"), none), kPinnedUser42);
  EXPECT_EQ(a.lookup(stickyKeyHash("10.0.0.7"), none), kPinnedAddress);
}

TEST(MaglevTable, LooksUpNothingWhenEverythingIsExcludedOrThereAreNoBackends) {
  const MaglevTable table(namesOf(backendNames(3)), std::vector<uint32_t>{1, 1, 1});
  EXPECT_EQ(table.lookup(1, {true, true, true}), std::nullopt);
  EXPECT_TRUE(table.lookup(1, {true, true}).has_value());  // short: b2 eligible
  EXPECT_EQ(table.lookup(1, {true, true}), 2u);
  const MaglevTable empty(std::vector<uint64_t>{}, std::vector<uint32_t>{});
  EXPECT_EQ(empty.backendCount(), 0u);
  EXPECT_EQ(empty.lookup(1, {}), std::nullopt);
}

TEST(ConsistentHash, PlacesTheKeyByTheTable) {
  const auto backends = testing::makeBackends(4);
  const MaglevTable table(namesOf(backendNames(4)), std::vector<uint32_t>{1, 1, 1, 1});
  ConsistentHash hash;
  const std::vector<bool> none(4, false);
  for (uint64_t k = 0; k < 1000; ++k) {
    const uint64_t key = mix64(k);
    EXPECT_EQ(hash.pick({backends, none, {}, key, 12345, &table}), table.lookup(key, none));
  }
  EXPECT_EQ(hash.pick({backends, none, {}, uint64_t{1}, 0, nullptr}), std::nullopt);
}

TEST(ConsistentHash, NeverReturnsAnIndexPastTheBackends) {
  const auto backends = testing::makeBackends(2);
  const MaglevTable table(namesOf(backendNames(4)),
                          std::vector<uint32_t>{1, 1, 1, 1});  // out of step
  ConsistentHash hash;
  for (uint64_t k = 0; k < 1000; ++k) {
    const auto i = hash.pick({backends, {}, {}, mix64(k), 0, &table});
    if (i) {
      EXPECT_LT(*i, 2u);
    }
  }
}

}  // namespace
}  // namespace wsgate::balancer
