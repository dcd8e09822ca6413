#include "proxy/net/proxy_protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace wsgate::net {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

// v2's address families and transports (the 14th byte: family << 4 | transport).
constexpr uint8_t kUnspec = 0x0, kInet = 0x1, kInet6 = 0x2, kUnix = 0x3;
constexpr uint8_t kStream = 0x1, kDgram = 0x2;
constexpr uint8_t kCmdLocal = 0x0, kCmdProxy = 0x1;
// The longest IPv6 text inet_ntop writes ("ffff:...:255.255.255.255"), without the NUL.
constexpr std::size_t kMaxV6Text = INET6_ADDRSTRLEN - 1;
constexpr std::size_t kMaxV4Text = INET_ADDRSTRLEN - 1;

ProxyHeader needMore(uint8_t version) {
  ProxyHeader r;
  r.version = version;
  return r;
}

ProxyHeader fail(uint8_t version, ProxyError error, std::string_view reason) {
  ProxyHeader r;
  r.status = ProxyParse::Error;
  r.error = error;
  r.reason = reason;
  r.version = version;
  return r;
}

// `in` against the start of `expected`, as far as both go.
bool prefixMatches(std::string_view in, std::string_view expected) {
  const std::size_t n = std::min(in.size(), expected.size());
  return in.substr(0, n) == expected.substr(0, n);
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isHex(char c) { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// A v1 address token, whole (`partial` false) or the start of one that may go on.
bool validAddressText(std::string_view text, bool v6, bool partial, ProxyAddress& out) {
  const std::size_t max = v6 ? kMaxV6Text : kMaxV4Text;
  if (text.size() > max) return false;
  for (char c : text) {
    const bool ok = v6 ? (isHex(c) || c == ':' || c == '.') : (isDigit(c) || c == '.');
    if (!ok) return false;
  }
  if (partial) return true;
  // inet_pton is strict: four dotted decimals without leading zeros for IPv4, no zone for
  // IPv6 (a v4 literal in a TCP6 line, or a v6 one in a TCP4 line, fails).
  char buf[INET6_ADDRSTRLEN];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  out.v6 = v6;
  out.ip.fill(0);
  return inet_pton(v6 ? AF_INET6 : AF_INET, buf, out.ip.data()) == 1;
}

// A v1 port: 0-65535 in decimal, no leading zero but in "0" itself.
bool validPortText(std::string_view text, bool partial, uint16_t& port) {
  if (text.size() > 5 || (!partial && text.empty())) return false;
  if (text.size() > 1 && text[0] == '0') return false;
  uint32_t value = 0;
  for (char c : text) {
    if (!isDigit(c)) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

// "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN[ anything]\r\n", single
// spaces, within 107 bytes. A token cut short by the end of the bytes is checked as far
// as it goes, so garbage is refused before the line ends.
ProxyHeader parseV1(std::string_view in) {
  // "PROXY" then anything but its single space is a broken header, not another protocol.
  if (!prefixMatches(in, kV1Prefix.substr(0, 5))) {
    return fail(1, ProxyError::NotProxy, "not a PROXY header");
  }
  if (in.size() < kV1Prefix.size()) return needMore(1);
  if (in[5] != ' ') return fail(1, ProxyError::Malformed, "v1 no space after PROXY");
  const std::string_view line = in.substr(0, std::min(in.size(), kProxyV1MaxBytes));
  // Out of bytes inside the 107: wait for more. Out of the 107 themselves: too long.
  const ProxyHeader ranOut = in.size() >= kProxyV1MaxBytes
                                 ? fail(1, ProxyError::Oversized, "v1 line over 107 bytes")
                                 : needMore(1);
  std::size_t pos = kV1Prefix.size();
  // The next token, up to a space or a CR or LF (`term`). False when the bytes end first.
  char term = 0;
  auto next = [&](std::string_view& token) {
    const std::size_t start = pos;
    while (pos < line.size() && line[pos] != ' ' && line[pos] != '\r' && line[pos] != '\n') {
      ++pos;
    }
    token = line.substr(start, pos - start);
    if (pos == line.size()) return false;
    term = line[pos++];
    return true;
  };
  // After a CR: the LF that ends the line.
  auto finish = [&](ProxyHeader done) {
    if (pos == line.size()) return ranOut;
    if (line[pos] != '\n') return fail(1, ProxyError::Malformed, "v1 CR without LF");
    done.status = ProxyParse::Done;
    done.version = 1;
    done.consumed = pos + 1;
    return done;
  };

  std::string_view proto;
  if (!next(proto)) {
    for (std::string_view known : {"TCP4", "TCP6", "UNKNOWN"}) {
      if (known.starts_with(proto)) return ranOut;
    }
    return fail(1, ProxyError::Malformed, "v1 unknown protocol");
  }
  if (proto == "UNKNOWN") {
    // The rest of the line is ignored (the spec's receivers must accept anything there).
    if (term == ' ') {
      while (pos < line.size() && line[pos] != '\r' && line[pos] != '\n') ++pos;
      if (pos == line.size()) return ranOut;
      term = line[pos++];
    }
    if (term != '\r') return fail(1, ProxyError::Malformed, "v1 LF without CR");
    return finish(ProxyHeader{});
  }
  if (proto != "TCP4" && proto != "TCP6") {
    return fail(1, ProxyError::Malformed, "v1 unknown protocol");
  }
  if (term != ' ') return fail(1, ProxyError::Malformed, "v1 line ends early");
  const bool v6 = proto == "TCP6";
  ProxyHeader r;
  r.local = false;
  ProxyAddress* addrs[2] = {&r.source, &r.destination};
  for (ProxyAddress* a : addrs) {
    std::string_view text;
    const bool whole = next(text);
    if (!validAddressText(text, v6, !whole, *a) || (whole && text.empty())) {
      return fail(1, ProxyError::Malformed,
                  v6 ? "v1 invalid IPv6 address" : "v1 invalid IPv4 address");
    }
    if (!whole) return ranOut;
    if (term != ' ') return fail(1, ProxyError::Malformed, "v1 line ends early");
  }
  for (int i = 0; i < 2; ++i) {
    std::string_view text;
    const bool whole = next(text);
    uint16_t& port = i == 0 ? r.source.port : r.destination.port;
    if (!validPortText(text, !whole, port))
      return fail(1, ProxyError::Malformed, "v1 invalid port");
    if (!whole) return ranOut;
    if (i == 0 && term != ' ') return fail(1, ProxyError::Malformed, "v1 line ends early");
    if (i == 1 && term == ' ') return fail(1, ProxyError::Malformed, "v1 extra field");
    if (i == 1 && term != '\r') return fail(1, ProxyError::Malformed, "v1 LF without CR");
  }
  return finish(r);
}

uint16_t read16(const char* p) {
  return static_cast<uint16_t>(static_cast<uint8_t>(p[0]) << 8 | static_cast<uint8_t>(p[1]));
}

// The binary header: signature, version 2 and a command, family and transport, length,
// addresses, then TLVs (skipped, but each must fit).
ProxyHeader parseV2(std::string_view in) {
  if (!prefixMatches(in, kV2Signature)) {
    return fail(2, ProxyError::NotProxy, "not a PROXY header");
  }
  if (in.size() < kV2Signature.size() + 1) return needMore(2);
  const auto verCmd = static_cast<uint8_t>(in[12]);
  if (verCmd >> 4 != 2) return fail(2, ProxyError::Malformed, "v2 version is not 2");
  const uint8_t command = verCmd & 0x0F;
  if (command != kCmdLocal && command != kCmdProxy) {
    return fail(2, ProxyError::Malformed, "v2 unknown command");
  }
  if (in.size() < 14) return needMore(2);
  const auto famByte = static_cast<uint8_t>(in[13]);
  const uint8_t family = famByte >> 4;
  const uint8_t transport = famByte & 0x0F;
  // LOCAL: the block is discarded, family included (the spec's rule for receivers).
  if (command == kCmdProxy) {
    const bool known =
        famByte == 0x00 || ((family == kInet || family == kInet6 || family == kUnix) &&
                            (transport == kStream || transport == kDgram));
    if (!known) return fail(2, ProxyError::Malformed, "v2 unknown address family or transport");
    if (transport == kDgram) return fail(2, ProxyError::Malformed, "v2 datagram transport");
  }
  if (in.size() < kProxyV2FixedBytes) return needMore(2);
  const std::size_t total = kProxyV2FixedBytes + read16(in.data() + 14);
  if (total > kProxyV2MaxBytes) return fail(2, ProxyError::Oversized, "v2 header over 4096 bytes");
  std::size_t addressBytes = 0;
  if (command == kCmdProxy) {
    addressBytes = family == kInet ? 12 : family == kInet6 ? 36 : family == kUnix ? 216 : 0;
    if (total - kProxyV2FixedBytes < addressBytes) {
      return fail(2, ProxyError::Malformed, "v2 length shorter than its addresses");
    }
  }
  if (in.size() < total) return needMore(2);
  ProxyHeader r;
  r.status = ProxyParse::Done;
  r.version = 2;
  r.consumed = total;
  if (command == kCmdLocal) return r;
  // TLVs: type (1), length (2), value. Their content is not used; their framing must hold.
  for (std::size_t at = kProxyV2FixedBytes + addressBytes; at < total;) {
    if (total - at < 3 || total - at - 3 < read16(in.data() + at + 1)) {
      return fail(2, ProxyError::Malformed, "v2 TLV overruns the header");
    }
    at += 3 + read16(in.data() + at + 1);
  }
  if (family != kInet && family != kInet6) return r;  // UNSPEC or UNIX: no IP to carry
  r.local = false;
  const std::size_t ipBytes = family == kInet ? 4 : 16;
  const char* p = in.data() + kProxyV2FixedBytes;
  r.source.v6 = r.destination.v6 = family == kInet6;
  std::memcpy(r.source.ip.data(), p, ipBytes);
  std::memcpy(r.destination.ip.data(), p + ipBytes, ipBytes);
  r.source.port = read16(p + 2 * ipBytes);
  r.destination.port = read16(p + 2 * ipBytes + 2);
  return r;
}

// ::ffff:a.b.c.d for an IPv4 address.
ProxyAddress mapped(const ProxyAddress& a) {
  if (a.v6) return a;
  ProxyAddress m;
  m.v6 = true;
  m.ip[10] = m.ip[11] = 0xFF;
  std::memcpy(m.ip.data() + 12, a.ip.data(), 4);
  m.port = a.port;
  return m;
}

void put16(char* p, uint16_t v) {
  p[0] = static_cast<char>(v >> 8);
  p[1] = static_cast<char>(v & 0xFF);
}

}  // namespace

ProxyHeader parseProxyHeader(std::string_view in) noexcept {
  if (in.empty()) return needMore(0);
  if (in[0] == kV1Prefix[0]) return parseV1(in);
  if (in[0] == kV2Signature[0]) return parseV2(in);
  return fail(0, ProxyError::NotProxy, "not a PROXY header");
}

EncodedProxyHeader encodeProxyV2(const ProxyAddress& source,
                                 const ProxyAddress& destination) noexcept {
  const bool v6 = source.v6 || destination.v6;
  const ProxyAddress src = v6 ? mapped(source) : source;
  const ProxyAddress dst = v6 ? mapped(destination) : destination;
  const std::size_t ipBytes = v6 ? 16 : 4;
  EncodedProxyHeader h;
  char* p = h.bytes.data();
  std::memcpy(p, kV2Signature.data(), kV2Signature.size());
  p[12] = static_cast<char>(0x20 | kCmdProxy);
  p[13] = static_cast<char>((v6 ? kInet6 : kInet) << 4 | kStream);
  put16(p + 14, static_cast<uint16_t>(2 * ipBytes + 4));
  char* a = p + kProxyV2FixedBytes;
  std::memcpy(a, src.ip.data(), ipBytes);
  std::memcpy(a + ipBytes, dst.ip.data(), ipBytes);
  put16(a + 2 * ipBytes, src.port);
  put16(a + 2 * ipBytes + 2, dst.port);
  h.size = kProxyV2FixedBytes + 2 * ipBytes + 4;
  return h;
}

EncodedProxyHeader encodeProxyV2Local() noexcept {
  EncodedProxyHeader h;
  std::memcpy(h.bytes.data(), kV2Signature.data(), kV2Signature.size());
  h.bytes[12] = static_cast<char>(0x20 | kCmdLocal);
  h.bytes[13] = static_cast<char>(kUnspec);
  h.size = kProxyV2FixedBytes;  // length 0: no address block
  return h;
}

std::optional<ProxyAddress> proxyAddressOf(const sockaddr* addr) noexcept {
  ProxyAddress a;
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    std::memcpy(a.ip.data(), &in->sin_addr, 4);
    a.port = ntohs(in->sin_port);
    return a;
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    a.v6 = true;
    std::memcpy(a.ip.data(), &in6->sin6_addr, 16);
    a.port = ntohs(in6->sin6_port);
    return a;
  }
  return std::nullopt;
}

sockaddr_storage toSockaddr(const ProxyAddress& addr, socklen_t& length) noexcept {
  sockaddr_storage s{};
  if (addr.v6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&s);
    in6->sin6_family = AF_INET6;
    std::memcpy(&in6->sin6_addr, addr.ip.data(), 16);
    in6->sin6_port = htons(addr.port);
    length = sizeof(sockaddr_in6);
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&s);
    in->sin_family = AF_INET;
    std::memcpy(&in->sin_addr, addr.ip.data(), 4);
    in->sin_port = htons(addr.port);
    length = sizeof(sockaddr_in);
  }
  return s;
}

}  // namespace wsgate::net
