#pragma once
// A DNS response read the way backend discovery needs it, and the backend addresses it gives.
// Pure: bytes in, records out (libresolv's ns_initparse/ns_parserr walk the message and
// dn_expand reads the SRV targets; nothing here sends a query).

#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace wsgate::proxy {

struct SrvRecord {
  uint16_t priority = 0;
  uint16_t weight = 0;
  uint16_t port = 0;
  std::string target;  // lower-cased, no trailing dot; "" for the root ("no such service")
  bool operator==(const SrvRecord&) const = default;
};

struct DnsAnswer {
  int rcode = 0;  // 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED, ...
  // A and AAAA records of the answer section, in numeric form, as they came. Whatever their
  // owner: a recursive resolver's answer holds our name and the CNAME chain from it only.
  std::vector<std::string> addresses;
  std::vector<SrvRecord> srv;  // SRV records of the answer section
  // A and AAAA records of the additional section (a resolver's glue for SRV targets) by
  // owner name: lower-cased, no trailing dot.
  std::vector<std::pair<std::string, std::string>> glue;
};

// `message` as a DNS response. nullopt, with `error` saying why, when it is not one or does
// not parse (a truncated record, a name pointer out of bounds, an A record of 5 bytes).
std::optional<DnsAnswer> parseDnsAnswer(std::span<const unsigned char> message, std::string& error);

// One backend found in DNS. Ordered and compared whole: a changed SRV weight is a change.
struct Endpoint {
  std::string host;  // numeric: "10.1.2.3", "fd00::1"
  uint16_t port = 0;
  uint32_t weight = 0;  // an SRV record's; 0: none given
  auto operator<=>(const Endpoint&) const = default;
};
using Endpoints = std::vector<Endpoint>;  // sorted, without duplicates

// More backends than this from one name are cut (and the cut is said): a pool that large
// is a misconfiguration or a resolver gone wrong, and each backend costs a Maglev share.
inline constexpr std::size_t kMaxEndpoints = 1000;

// The backends of A/AAAA answers on `port`: sorted, duplicates removed, at most
// kMaxEndpoints (the lowest addresses, so every instance keeps the same ones).
Endpoints addressEndpoints(std::span<const std::string> addresses, uint16_t port);

// The backends of SRV records: every record of the lowest priority (higher ones are backups
// in RFC 2782, a tier wsgate does not have), each target's addresses from `addressesOf` on
// the record's port, with the record's weight (0 counts as 1). Records whose target is the
// root ("the service is not here") give none. Sorted, deduplicated, capped as above.
Endpoints srvEndpoints(
    std::span<const SrvRecord> records,
    const std::function<std::vector<std::string>(const std::string&)>& addressesOf);

// The name a discovered backend gets: "10.1.2.3:9001", "[fd00::1]:9001". Every instance that
// sees the same records names them the same, which sticky cookies and the hash policy's
// table rely on.
std::string endpointName(const Endpoint& e);

}  // namespace wsgate::proxy
