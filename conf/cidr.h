#pragma once
// An address block written as CIDR ("10.0.0.0/8", "2001:db8::/32", or a bare address for
// one host): what `proxy_protocol_from` lists. Parsing and matching are pure.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsgate::conf {

struct Cidr {
  bool v6 = false;
  std::array<uint8_t, 16> ip{};  // network order; IPv4 in the first four bytes
  uint8_t prefix = 0;            // leading bits that must match: 0-32 (IPv4), 0-128 (IPv6)
  std::string str() const;       // "10.0.0.0/8"
};

// "ADDRESS/BITS" or "ADDRESS" (/32 or /128). Addresses as inet_pton reads them (no zone),
// BITS in decimal without a sign or leading zero. Bits set past the prefix are an error
// ("10.0.0.1/8" is most likely a typo for a host or for 10.0.0.0/8). nullopt with `why`.
std::optional<Cidr> parseCidr(std::string_view text, std::string& why);

// True when the address `ip` (4 bytes when !v6, else 16) lies in `block`. An IPv4-mapped
// IPv6 address (::ffff:a.b.c.d, how a dual-stack socket sees an IPv4 peer) matches IPv4
// blocks as its IPv4 address.
bool cidrContains(const Cidr& block, bool v6, const uint8_t* ip) noexcept;

}  // namespace wsgate::conf
