#pragma once
// Turning the random bits a caller passes into choices, without bias worth the name.

#include <cstdint>

namespace wsgate::balancer {

// A number in [0, bound) from 64 uniform bits: the high half of the 128-bit product
// (Lemire's multiply-and-shift range reduction), which needs no division and whose bias is bound /
// 2^64.
constexpr uint64_t uniformBelow(uint64_t random, uint64_t bound) noexcept {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(random) * bound) >> 64);
}

}  // namespace wsgate::balancer
