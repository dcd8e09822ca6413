#include "proxy/control/dns_resolver.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace wsgate::proxy {
namespace {

// Tries per resolver before a query fails (libresolv's RES_DFLRETRY).
constexpr int kAttempts = 2;
// Room for the largest answer: TCP carries up to 64 KiB (libresolv retries over TCP when
// the UDP answer is truncated).
constexpr std::size_t kAnswerBytes = 65536;

// A res_state of our own per resolution (the thread-safe res_n* interface), closed on scope
// exit. res_ninit reads /etc/resolv.conf each time, so an edit of it is seen at the next
// resolution.
class ResolverState {
public:
  explicit ResolverState(const conf::DiscoverConfig& d) {
    ok_ = res_ninit(&state_) == 0;
    if (!ok_) return;
    if (!d.resolvers.empty()) {
      state_.nscount = 0;
      for (const auto& r : d.resolvers) {
        if (state_.nscount >= MAXNS) break;
        sockaddr_in& sin = state_.nsaddr_list[state_.nscount];
        sin = {};
        sin.sin_family = AF_INET;
        sin.sin_port = htons(r.port);
        if (inet_pton(AF_INET, r.host.c_str(), &sin.sin_addr) == 1) ++state_.nscount;
      }
    }
    // libresolv counts in whole seconds; the loader keeps timeout at 1s or more.
    state_.retrans = static_cast<int>((d.timeout.count() + 999) / 1000);
    state_.retry = kAttempts;
    // The name as written: no search list, no default domain appended.
    state_.options &= ~static_cast<decltype(state_.options)>(RES_DNSRCH | RES_DEFNAMES);
    // EDNS0: answers up to 1200 bytes over UDP before libresolv falls back to TCP.
    state_.options |= RES_USE_EDNS0;
  }
  ~ResolverState() {
    if (ok_) res_nclose(&state_);
  }
  ResolverState(const ResolverState&) = delete;
  ResolverState& operator=(const ResolverState&) = delete;

  bool ok() const { return ok_; }
  res_state get() { return &state_; }
  // "127.0.0.1:5353" or "127.0.0.1:5353, 10.0.0.2:53": whom the queries went to.
  std::string servers() const {
    std::string out;
    for (int i = 0; i < state_.nscount; ++i) {
      char text[INET_ADDRSTRLEN] = {};
      inet_ntop(AF_INET, &state_.nsaddr_list[i].sin_addr, text, sizeof text);
      if (!out.empty()) out += ", ";
      out += std::string(text) + ":" + std::to_string(ntohs(state_.nsaddr_list[i].sin_port));
    }
    return out.empty() ? "/etc/resolv.conf's resolvers" : out;
  }

private:
  struct __res_state state_ {};
  bool ok_ = false;
};

std::string rcodeName(int rcode) {
  switch (rcode) {
    case ns_r_formerr:
      return "FORMERR";
    case ns_r_servfail:
      return "SERVFAIL";
    case ns_r_nxdomain:
      return "NXDOMAIN";
    case ns_r_notimpl:
      return "NOTIMP";
    case ns_r_refused:
      return "REFUSED";
    default:
      return "RCODE " + std::to_string(rcode);
  }
}

struct Query {
  Resolution::Status status = Resolution::Status::Failed;
  DnsAnswer answer;
  std::string detail;
};

// One question. libresolv returns -1 for every answer but NOERROR with records, and says
// which in h_errno: NXDOMAIN (HOST_NOT_FOUND) and no records (NO_DATA) are answers; the
// rest (TRY_AGAIN, NO_RECOVERY) failures. An error answer stays in `buffer` (its QR bit,
// cleared before the call, tells it from no answer at all), which names its rcode.
Query ask(ResolverState& rs, const std::string& name, int type,
          std::vector<unsigned char>& buffer) {
  Query q;
  buffer[2] = 0;
  errno = 0;
  const int n = res_nquery(rs.get(), name.c_str(), ns_c_in, type, buffer.data(),
                           static_cast<int>(buffer.size()));
  const char* kind = type == ns_t_a ? "A" : type == ns_t_aaaa ? "AAAA" : "SRV";
  if (n < 0) {
    const int error = errno;
    const int herr = rs.get()->res_h_errno;
    const bool response = (buffer[2] & 0x80) != 0;
    if (herr == HOST_NOT_FOUND || herr == NO_DATA) {
      q.status = Resolution::Status::Empty;
      q.detail = herr == HOST_NOT_FOUND ? "NXDOMAIN" : std::string("no ") + kind + " records";
    } else if (response && (buffer[3] & 0x0f) != ns_r_noerror) {
      q.detail =
          rcodeName(buffer[3] & 0x0f) + " for " + kind + " " + name + " from " + rs.servers();
    } else {
      q.detail = std::string(error == ETIMEDOUT ? "no answer (timeout)"
                             : error != 0       ? std::strerror(error)
                                                : "no answer") +
                 " for " + kind + " " + name + " from " + rs.servers();
    }
    return q;
  }
  std::string error;
  auto answer = parseDnsAnswer({buffer.data(), static_cast<std::size_t>(n)}, error);
  if (!answer) {
    q.detail = error + " for " + kind + " " + name + " from " + rs.servers();
    return q;
  }
  q.status = Resolution::Status::Ok;
  q.answer = std::move(*answer);
  return q;
}

// The addresses of `name` in the families `d` asks for: A, AAAA or both. Empty when the
// name has none; nullopt (with `detail`) when a query failed.
std::optional<std::vector<std::string>> addressesOf(ResolverState& rs,
                                                    const conf::DiscoverConfig& d,
                                                    const std::string& name,
                                                    std::vector<unsigned char>& buffer,
                                                    std::string& detail) {
  std::vector<std::string> out;
  for (int type : {ns_t_a, ns_t_aaaa}) {
    if (type == ns_t_a && d.family == conf::DiscoverFamily::Ipv6) continue;
    if (type == ns_t_aaaa && d.family == conf::DiscoverFamily::Ipv4) continue;
    Query q = ask(rs, name, type, buffer);
    if (q.status == Resolution::Status::Failed) {
      detail = q.detail;
      return std::nullopt;
    }
    if (q.status == Resolution::Status::Empty) {
      detail = q.detail;
      continue;
    }
    out.insert(out.end(), q.answer.addresses.begin(), q.answer.addresses.end());
  }
  return out;
}

bool wanted(const conf::DiscoverConfig& d, const std::string& address) {
  const bool v6 = address.find(':') != std::string::npos;
  return d.family == conf::DiscoverFamily::Any ||
         (v6 ? d.family == conf::DiscoverFamily::Ipv6 : d.family == conf::DiscoverFamily::Ipv4);
}

}  // namespace

Resolution resolveDiscover(const conf::DiscoverConfig& d) {
  Resolution r;
  ResolverState rs(d);
  if (!rs.ok()) {
    r.detail = "libresolv could not be initialised (res_ninit)";
    return r;
  }
  std::vector<unsigned char> buffer(kAnswerBytes);
  if (d.port != 0) {
    std::string detail;
    auto addresses = addressesOf(rs, d, d.dns, buffer, detail);
    if (!addresses) {
      r.detail = detail;
      return r;
    }
    r.endpoints = addressEndpoints(*addresses, d.port);
    r.status = r.endpoints.empty() ? Resolution::Status::Empty : Resolution::Status::Ok;
    r.detail = r.endpoints.empty() ? detail : "";
    return r;
  }
  Query srv = ask(rs, d.dns, ns_t_srv, buffer);
  if (srv.status != Resolution::Status::Ok) {
    r.status = srv.status;
    r.detail = srv.detail;
    return r;
  }
  // Targets from the additional section when the resolver sent them (CoreDNS and Consul
  // do), else asked one by one. A target that does not exist (a pod gone since) gives no
  // backend; one whose query fails fails the whole resolution, as the set would be partial.
  std::string failure;
  auto targetAddresses = [&](const std::string& target) {
    std::vector<std::string> out;
    for (const auto& [owner, address] : srv.answer.glue) {
      if (owner == target && wanted(d, address)) out.push_back(address);
    }
    if (!out.empty() || !failure.empty()) return out;
    std::string detail;
    auto asked = addressesOf(rs, d, target, buffer, detail);
    if (!asked) {
      failure = detail;
      return out;
    }
    return *asked;
  };
  r.endpoints = srvEndpoints(srv.answer.srv, targetAddresses);
  if (!failure.empty()) {
    r.endpoints.clear();
    r.detail = failure;
    return r;
  }
  r.status = r.endpoints.empty() ? Resolution::Status::Empty : Resolution::Status::Ok;
  if (r.endpoints.empty()) r.detail = "no SRV target with an address";
  return r;
}

}  // namespace wsgate::proxy
