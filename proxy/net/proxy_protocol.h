#pragma once
// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): the header an L4
// balancer writes ahead of a connection's own bytes to say whose connection it carries.
// A pure codec: parseProxyHeader reads one header from the start of a byte span (no I/O,
// no allocation) and says as early as it can when the bytes are not one; encodeProxyV2
// writes the header wsgate sends its backends.

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace wsgate::net {

// An address a header carries, in network byte order.
struct ProxyAddress {
  bool v6 = false;
  std::array<uint8_t, 16> ip{};  // IPv4: the first four bytes, the rest zero
  uint16_t port = 0;
  bool operator==(const ProxyAddress&) const = default;
};

// A v1 line, CRLF included, is at most 107 bytes (the spec's bound for TCP6).
inline constexpr std::size_t kProxyV1MaxBytes = 107;
// The fixed part of a v2 header: signature, version and command, family, length.
inline constexpr std::size_t kProxyV2FixedBytes = 16;
// wsgate's cap on a whole v2 header (fixed part, addresses and TLVs): 4 KiB. The spec
// allows 64 KiB of TLVs; the balancers in use send tens of bytes (AWS NLB, GCP and Azure
// add one short TLV), and a cap keeps what an unread header may hold small.
inline constexpr std::size_t kProxyV2MaxBytes = 4096;

enum class ProxyParse : uint8_t {
  NeedMore,  // a prefix of a possible header: read more (or give up: truncated)
  Done,      // a whole header of `consumed` bytes
  Error,     // not a PROXY header, or a broken one: `error` and `reason` say which
};

enum class ProxyError : uint8_t {
  None,
  NotProxy,   // the first bytes are not a PROXY header's (a client speaking straight away)
  Malformed,  // a PROXY header that breaks the grammar
  Oversized,  // longer than kProxyV1MaxBytes / kProxyV2MaxBytes
};

struct ProxyHeader {
  ProxyParse status = ProxyParse::NeedMore;
  ProxyError error = ProxyError::None;
  std::string_view reason;   // Error: why, as static text
  uint8_t version = 0;       // 1 or 2 once the first byte says which
  std::size_t consumed = 0;  // Done: the header's length; what follows is the connection's
  // Done: true for v1 UNKNOWN, v2 LOCAL, and v2 PROXY over AF_UNSPEC or AF_UNIX: the
  // connection keeps its own addresses. Otherwise source and destination are set.
  bool local = true;
  ProxyAddress source, destination;
};

// Reads a PROXY header (v1 or v2, told apart by the first byte) from the start of `in`.
ProxyHeader parseProxyHeader(std::string_view in) noexcept;

// A header to send, in a buffer of its own.
struct EncodedProxyHeader {
  std::array<char, kProxyV2FixedBytes + 36> bytes{};
  std::size_t size = 0;
  std::string_view view() const { return {bytes.data(), size}; }
};

// A v2 PROXY header for a TCP connection from `source` to `destination`. When one is IPv4
// and the other IPv6, the IPv4 one is sent as ::ffff:a.b.c.d (as HAProxy does): the header
// names one family for both.
EncodedProxyHeader encodeProxyV2(const ProxyAddress& source,
                                 const ProxyAddress& destination) noexcept;
// A v2 LOCAL header (no address): what a health check sends, so the backend uses the
// connection's own addresses.
EncodedProxyHeader encodeProxyV2Local() noexcept;

// Between socket addresses and header addresses. nullopt for a family other than
// AF_INET and AF_INET6.
std::optional<ProxyAddress> proxyAddressOf(const sockaddr* addr) noexcept;
sockaddr_storage toSockaddr(const ProxyAddress& addr, socklen_t& length) noexcept;

}  // namespace wsgate::net
