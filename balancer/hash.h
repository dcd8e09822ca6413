#pragma once
// Stable 64-bit hashes: every wsgate instance, of every version, must map the same sticky key
// and the same backend name to the same number, or clients move. Frozen: changing a constant
// here reshuffles every sticky client of every deployment.

#include <cstdint>
#include <string_view>

namespace wsgate::balancer {

inline constexpr uint64_t kFnv64Offset = 14695981039346656037ull;

// FNV-1a, 64-bit. `h` continues an earlier hash: fnv1a64(b, fnv1a64(a)) == fnv1a64(a + b).
constexpr uint64_t fnv1a64(std::string_view bytes, uint64_t h = kFnv64Offset) noexcept {
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

// SplitMix64's finalizer: a bijection that spreads every input bit over the whole word, so
// that `hash % size` is uniform even where FNV's low bits are weak (short, similar keys).
constexpr uint64_t mix64(uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// The key the `hash` policy and Pool::pickSticky place: the value of the sticky header, query
// parameter or the client address, as bytes (the proxy decides the text form, e.g. the
// address without its port).
constexpr uint64_t stickyKeyHash(std::string_view key) noexcept { return mix64(fnv1a64(key)); }

}  // namespace wsgate::balancer
