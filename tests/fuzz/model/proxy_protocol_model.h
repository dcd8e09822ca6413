#pragma once
// Reference reader of PROXY protocol headers (HAProxy's proxy-protocol.txt, v1 and v2) for
// the proxy_protocol fuzz oracle, with wsgate's documented choices (docs/configuration.md):
// v1 strict (single spaces, dotted quads without leading zeros, ports 0-65535 without
// leading zeros), v2 capped at 4096 bytes, PROXY over DGRAM refused, AF_UNSPEC and AF_UNIX
// kept as the connection's own address, LOCAL discarding the block whatever its family,
// TLVs whose framing must tile the rest of the header.
//
// Unlike the product it reads whole buffers top-down: v1 by finding the CRLF and splitting
// the line on spaces, IPv4 by hand; v2 field by field from a struct-like view. Where the
// product decides early on a cut v1 token, the model only says "undecided" and the target
// checks the product's early verdicts by cutting inputs (monotonicity), not here.

#include <arpa/inet.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::fuzz::model {

enum class PpKind { Undecided, Done, NotProxy, Malformed, Oversized, MalformedOrOversized };

struct PpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> ip{};
  uint16_t port = 0;
};

struct PpAnswer {
  PpKind kind = PpKind::Undecided;
  std::size_t consumed = 0;
  bool local = true;
  PpAddress source, destination;
};

class ProxyProtocolModel {
public:
  static PpAnswer read(std::string_view in) {
    if (in.empty()) return {};
    if (in[0] == 'P') return v1(in);
    if (in[0] == '\r') return v2(in);
    return kind(PpKind::NotProxy);
  }

private:
  static PpAnswer kind(PpKind k) {
    PpAnswer a;
    a.kind = k;
    return a;
  }

  static bool isPrefixOf(std::string_view in, std::string_view whole) {
    for (std::size_t i = 0; i < in.size() && i < whole.size(); ++i) {
      if (in[i] != whole[i]) return false;
    }
    return true;
  }

  static std::vector<std::string_view> split(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= s.size(); ++i) {
      if (i == s.size() || s[i] == ' ') {
        out.push_back(s.substr(start, i - start));
        start = i + 1;
      }
    }
    return out;
  }

  static bool port(std::string_view s, uint16_t& out) {
    if (s.empty() || s.size() > 5 || (s[0] == '0' && s.size() > 1)) return false;
    uint32_t v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<uint32_t>(c - '0');
    }
    out = static_cast<uint16_t>(v);
    return v <= 65535;
  }

  static bool ipv4(std::string_view s, PpAddress& a) {
    int part = 0;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= s.size(); ++i) {
      if (i < s.size() && s[i] != '.') continue;
      const std::string_view octet = s.substr(start, i - start);
      uint16_t v = 0;
      if (part > 3 || octet.size() > 3 || !port(octet, v) || v > 255) return false;
      a.ip[part++] = static_cast<uint8_t>(v);
      start = i + 1;
    }
    return part == 4;
  }

  static bool ipv6(std::string_view s, PpAddress& a) {
    // inet_pton reads up to a NUL: one inside the token would hide what follows it.
    if (s.size() >= INET6_ADDRSTRLEN || s.find('\0') != std::string_view::npos) return false;
    const std::string z(s);  // NUL-terminated
    a.v6 = true;
    return inet_pton(AF_INET6, z.c_str(), a.ip.data()) == 1;
  }

  static PpAnswer v1(std::string_view in) {
    if (!isPrefixOf(in, "PROXY")) return kind(PpKind::NotProxy);
    if (in.size() < 6) return {};
    if (in[5] != ' ') return kind(PpKind::Malformed);
    std::size_t crlf = std::string_view::npos;
    for (std::size_t i = 0; i + 1 < in.size() && i + 2 <= 107; ++i) {
      if (in[i] == '\r' && in[i + 1] == '\n') {
        crlf = i;
        break;
      }
    }
    if (crlf == std::string_view::npos) {
      return in.size() >= 107 ? kind(PpKind::MalformedOrOversized) : PpAnswer{};
    }
    const std::string_view line = in.substr(0, crlf);
    for (char c : line) {
      if (c == '\r' || c == '\n') return kind(PpKind::Malformed);
    }
    const std::vector<std::string_view> t = split(line);
    PpAnswer a;
    a.consumed = crlf + 2;
    if (t.size() >= 2 && t[1] == "UNKNOWN") {
      a.kind = PpKind::Done;
      return a;
    }
    if (t.size() != 6 || (t[1] != "TCP4" && t[1] != "TCP6")) return kind(PpKind::Malformed);
    const bool six = t[1] == "TCP6";
    const bool ok = (six ? ipv6(t[2], a.source) && ipv6(t[3], a.destination)
                         : ipv4(t[2], a.source) && ipv4(t[3], a.destination)) &&
                    port(t[4], a.source.port) && port(t[5], a.destination.port);
    if (!ok) return kind(PpKind::Malformed);
    a.kind = PpKind::Done;
    a.local = false;
    return a;
  }

  static uint16_t be16(std::string_view in, std::size_t at) {
    return static_cast<uint16_t>(static_cast<uint8_t>(in[at]) * 256 +
                                 static_cast<uint8_t>(in[at + 1]));
  }

  static PpAnswer v2(std::string_view in) {
    static const std::string sig("\r\n\r\n\0\r\nQUIT\n", 12);
    if (!isPrefixOf(in, sig)) return kind(PpKind::NotProxy);
    if (in.size() < 13) return {};
    const int version = static_cast<uint8_t>(in[12]) / 16;
    const int command = static_cast<uint8_t>(in[12]) % 16;
    if (version != 2 || command > 1) return kind(PpKind::Malformed);
    const bool proxy = command == 1;
    if (in.size() < 14) return {};
    const auto fam = static_cast<uint8_t>(in[13]);
    // The seven values the spec names; TCP and UNIX stream only.
    static constexpr uint8_t kNamed[] = {0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32};
    bool named = false;
    for (uint8_t v : kNamed) named = named || v == fam;
    if (proxy && (!named || fam % 16 == 2)) return kind(PpKind::Malformed);
    if (in.size() < 16) return {};
    const std::size_t total = 16 + be16(in, 14);
    if (total > 4096) return kind(PpKind::Oversized);
    std::size_t block = 0;
    if (proxy) block = fam == 0x11 ? 12 : fam == 0x21 ? 36 : fam == 0x31 ? 216 : 0;
    if (total < 16 + block) return kind(PpKind::Malformed);
    if (in.size() < total) return {};
    PpAnswer a;
    a.kind = PpKind::Done;
    a.consumed = total;
    if (!proxy) return a;
    std::size_t at = 16 + block;
    while (at != total) {
      if (at + 3 > total) return kind(PpKind::Malformed);
      at += 3 + be16(in, at + 1);
      if (at > total) return kind(PpKind::Malformed);
    }
    if (fam == 0x11 || fam == 0x21) {
      const std::size_t n = fam == 0x11 ? 4 : 16;
      a.local = false;
      a.source.v6 = a.destination.v6 = fam == 0x21;
      for (std::size_t i = 0; i < n; ++i) {
        a.source.ip[i] = static_cast<uint8_t>(in[16 + i]);
        a.destination.ip[i] = static_cast<uint8_t>(in[16 + n + i]);
      }
      a.source.port = be16(in, 16 + 2 * n);
      a.destination.port = be16(in, 16 + 2 * n + 2);
    }
    return a;
  }
};

}  // namespace wsgate::fuzz::model
