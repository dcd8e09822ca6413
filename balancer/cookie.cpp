// Sticky cookie values: formatting and strict parsing of the 64-bit backend name hash.

#include "balancer/cookie.h"

#include "balancer/hash.h"

namespace wsgate::balancer {

uint64_t backendCookieHash(std::string_view pool, std::string_view name) noexcept {
  // Hashed piecewise rather than through a joined string: same value, no allocation.
  return fnv1a64(name, fnv1a64("/", fnv1a64(pool)));
}

std::string backendCookie(std::string_view pool, std::string_view name) {
  static constexpr char kDigits[] = "0123456789abcdef";
  uint64_t h = backendCookieHash(pool, name);
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = kDigits[h & 0xf];
  return out;
}

std::optional<uint64_t> parseBackendCookie(std::string_view value) noexcept {
  if (value.size() != 16) return std::nullopt;
  uint64_t h = 0;
  for (char c : value) {
    uint64_t digit;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<uint64_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<uint64_t>(c - 'A' + 10);
    } else {
      return std::nullopt;
    }
    h = (h << 4) | digit;
  }
  return h;
}

}  // namespace wsgate::balancer
