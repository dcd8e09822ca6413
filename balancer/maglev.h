#pragma once
// Consistent hashing through a lookup table as Maglev's (Eisenbud et al., NSDI 2016): a prime
// number of slots, each owned by a backend; a key goes to its slot's owner. The slots are filled
// by weighted rendezvous hashing, so shares follow weights and adding or removing a backend
// moves only the keys that go to or came from it. Placement follows backend names and weights,
// not list positions: every instance with the same names and weights builds the same table, in
// any order.

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace wsgate::balancer {

class MaglevTable {
public:
  // Prime, so that every backend's skip walks all the slots; large against any sane pool
  // (the paper wants M >> N for even shares). 65,537 two-byte slots: 128 KiB per pool.
  static constexpr uint32_t kSize = 65537;
  // Slots name backends in 16 bits; a pool longer than this places only its first kMaxBackends.
  static constexpr std::size_t kMaxBackends = 65535;

  // `names[i]`: a stable 64-bit name of backend i (Pool uses fnv1a64 of "pool/name");
  // `weights[i]`: its configured weight (0 counts as 1). Parallel spans. Builds the whole
  // table: kSize * backends scores (see maglev.cpp for the figures).
  MaglevTable(std::span<const uint64_t> names, std::span<const uint32_t> weights);

  std::size_t backendCount() const noexcept { return count_; }

  // The backend owning `key`'s slot. If it is excluded, the owner of a slot the key rehashes
  // to that is not: stable (the same key finds the same substitute on every instance while the
  // exclusions are the same), spread over the other backends by their shares, and keys of
  // backends that are not excluded never move. nullopt when every backend is excluded
  // (a short `excluded` leaves the rest eligible).
  std::optional<std::size_t> lookup(uint64_t key, const std::vector<bool>& excluded) const;

  // The backend owning `slot` (< kSize), for tests. Only valid when backendCount() > 0.
  std::size_t owner(uint32_t slot) const noexcept { return slots_[slot]; }

  // The slot `key` hashes to.
  static uint32_t slotOf(uint64_t key) noexcept { return static_cast<uint32_t>(key % kSize); }

private:
  std::vector<uint16_t> slots_;  // backend index per slot; empty without backends
  std::vector<uint16_t> order_;  // backend indices by name: ties and the last fallback
  std::size_t count_ = 0;
};

}  // namespace wsgate::balancer
