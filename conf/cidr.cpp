#include "conf/cidr.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <cstring>

namespace wsgate::conf {
namespace {

constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

// The first `bits` bits of `a` and `b` agree.
bool samePrefix(const uint8_t* a, const uint8_t* b, unsigned bits) {
  const unsigned bytes = bits / 8;
  if (std::memcmp(a, b, bytes) != 0) return false;
  if (bits % 8 == 0) return true;
  const auto mask = static_cast<uint8_t>(0xFF << (8 - bits % 8));
  return (a[bytes] & mask) == (b[bytes] & mask);
}

}  // namespace

std::string Cidr::str() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  inet_ntop(v6 ? AF_INET6 : AF_INET, ip.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix);
}

std::optional<Cidr> parseCidr(std::string_view text, std::string& why) {
  Cidr c;
  const std::size_t slash = text.find('/');
  const std::string_view address = text.substr(0, slash);
  if (address.empty() || address.size() >= INET6_ADDRSTRLEN) {
    why = "is not an IPv4 or IPv6 address";
    return std::nullopt;
  }
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, address.data(), address.size());
  buf[address.size()] = '\0';
  if (inet_pton(AF_INET, buf, c.ip.data()) == 1) {
    c.v6 = false;
  } else if (inet_pton(AF_INET6, buf, c.ip.data()) == 1) {
    c.v6 = true;
  } else {
    why = "is not an IPv4 or IPv6 address";
    return std::nullopt;
  }
  const unsigned maxBits = c.v6 ? 128 : 32;
  unsigned bits = maxBits;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    bool ok = !digits.empty() && digits.size() <= 3 && (digits[0] != '0' || digits.size() == 1);
    bits = 0;
    for (char ch : digits) {
      ok = ok && ch >= '0' && ch <= '9';
      bits = bits * 10 + static_cast<unsigned>(ch - '0');
    }
    if (!ok || bits > maxBits) {
      why = "has an invalid prefix length (0 to " + std::to_string(maxBits) + " for IPv" +
            (c.v6 ? "6" : "4") + ")";
      return std::nullopt;
    }
  }
  c.prefix = static_cast<uint8_t>(bits);
  Cidr network = c;
  const unsigned bytes = maxBits / 8;
  for (unsigned i = 0; i < bytes; ++i) {
    const unsigned first = i * 8;  // the byte's first bit
    if (first >= bits) {
      network.ip[i] = 0;
    } else if (bits - first < 8) {
      network.ip[i] &= static_cast<uint8_t>(0xFF << (8 - (bits - first)));
    }
  }
  if (network.ip != c.ip) {
    why = "has bits set past its prefix (the block is " + network.str() + ")";
    return std::nullopt;
  }
  return c;
}

bool cidrContains(const Cidr& block, bool v6, const uint8_t* ip) noexcept {
  if (v6 && !block.v6 && std::memcmp(ip, kMapped, sizeof kMapped) == 0) {
    return samePrefix(block.ip.data(), ip + sizeof kMapped, block.prefix);
  }
  if (v6 != block.v6) return false;
  return samePrefix(block.ip.data(), ip, block.prefix);
}

}  // namespace wsgate::conf
