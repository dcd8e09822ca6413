#pragma once
// The sticky cookie's value: names a backend without revealing its address, and is the same
// on every wsgate instance that has the same pool and backend names, so a client keeps its
// backend whichever instance the L4 balancer sends it to.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsgate::balancer {

// 16 lower-case hex digits of fnv1a64("pool/name"). Frozen (see hash.h).
std::string backendCookie(std::string_view pool, std::string_view name);

// The 64-bit value a cookie carries, or nullopt unless it is exactly 16 hex digits (either
// case: a client or an intermediary may upper-case it; nothing else is tolerated).
std::optional<uint64_t> parseBackendCookie(std::string_view value) noexcept;

// The hash both functions above agree on, for a Pool to precompute.
uint64_t backendCookieHash(std::string_view pool, std::string_view name) noexcept;

}  // namespace wsgate::balancer
