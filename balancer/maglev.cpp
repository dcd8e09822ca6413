// Maglev table population, weighted as Envoy's MaglevTable does it, and lookup with
// excluded backends.

#include "balancer/maglev.h"

#include <algorithm>
#include <numeric>

#include "balancer/hash.h"

namespace wsgate::balancer {

namespace {

constexpr uint16_t kEmpty = 0xffff;  // never a backend index: kMaxBackends < 0xffff + 1
constexpr uint64_t kSkipSeed = 0x5bd1e9955bd1e995ull;

}  // namespace

MaglevTable::MaglevTable(std::span<const uint64_t> names, std::span<const uint32_t> weights)
    : count_(std::min({names.size(), weights.size(), kMaxBackends})) {
  if (count_ == 0) return;
  slots_.assign(kSize, kEmpty);

  // Each backend walks its own permutation of the slots, offset + j * skip (mod a prime), and
  // takes the first free one on its turn (the paper's Algorithm 1).
  struct Walk {
    uint32_t slot, skip;  // the next slot of its permutation; the step to the one after
    uint64_t weight, target = 0;
  };
  std::vector<Walk> walks;
  walks.reserve(count_);
  uint64_t maxWeight = 1;
  for (std::size_t i = 0; i < count_; ++i) {
    const uint64_t weight = std::max<uint32_t>(weights[i], 1);
    walks.push_back({static_cast<uint32_t>(mix64(names[i]) % kSize),
                     static_cast<uint32_t>(mix64(names[i] ^ kSkipSeed) % (kSize - 1) + 1), weight});
    maxWeight = std::max(maxWeight, weight);
  }
  // Turns go in the order of the names, not of the config's list, so that reordering the
  // backends in the file moves no key.
  std::vector<std::size_t> order(count_);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return names[a] < names[b]; });

  // Weights by turns (Envoy's scheme): in round r a backend takes a slot when r * weight has
  // reached its target, which then grows by the largest weight. The heaviest backend takes a
  // slot every round, one of a third of its weight every third round; every backend takes one
  // in the first round, so none is left without a slot.
  uint32_t filled = 0;
  for (uint64_t round = 1; filled < kSize; ++round) {
    for (std::size_t k = 0; k < count_ && filled < kSize; ++k) {
      const std::size_t i = order[k];
      Walk& w = walks[i];
      if (round * w.weight < w.target) continue;
      w.target += maxWeight;
      // Stepping by addition, not offset + j * skip modulo the size: the walks past taken
      // slots near the end dominate the build, and a division per step doubles its cost.
      auto advance = [&w] {
        w.slot = w.slot + w.skip >= kSize ? w.slot + w.skip - kSize : w.slot + w.skip;
      };
      while (slots_[w.slot] != kEmpty) advance();
      slots_[w.slot] = static_cast<uint16_t>(i);
      advance();
      ++filled;
    }
  }
}

std::optional<std::size_t> MaglevTable::lookup(uint64_t key,
                                               const std::vector<bool>& excluded) const {
  if (count_ == 0) return std::nullopt;
  auto isExcluded = [&](std::size_t i) { return i < excluded.size() && excluded[i]; };
  bool anyEligible = false;
  for (std::size_t i = 0; i < count_ && !anyEligible; ++i) anyEligible = !isExcluded(i);
  if (!anyEligible) return std::nullopt;

  // The key's slot first; if its owner is out, a fresh slot from a rehash of the key, and so
  // on: each draw lands on a backend in proportion to its slots, so an excluded backend's
  // keys are shared out by weight. (The next slot would not do: the fill's interleaving
  // makes some backends follow others far more often.) After kRehashes draws, all on
  // excluded backends, a walk from the last slot finds one for sure: every backend owns a
  // slot.
  constexpr int kRehashes = 32;
  uint64_t h = key;
  for (int draw = 0; draw < kRehashes; ++draw) {
    const std::size_t i = slots_[slotOf(h)];
    if (!isExcluded(i)) return i;
    h = mix64(h + 0x9e3779b97f4a7c15ull);
  }
  for (uint32_t slot = slotOf(h), k = 0; k < kSize; ++k, slot = slot + 1 == kSize ? 0 : slot + 1) {
    const std::size_t i = slots_[slot];
    if (!isExcluded(i)) return i;
  }
  return std::nullopt;
}

}  // namespace wsgate::balancer
