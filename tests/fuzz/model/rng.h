#pragma once
// A small deterministic generator (SplitMix64) for the fuzz targets' random chunkings: the
// same input always splits the same way, so a finding replays exactly.

#include <cstddef>
#include <cstdint>

namespace wsgate::fuzz {

struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(next() % n); }
};

}  // namespace wsgate::fuzz
