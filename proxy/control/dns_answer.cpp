#include "proxy/control/dns_answer.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <resolv.h>

#include <algorithm>

#include "conf/units.h"

namespace wsgate::proxy {
namespace {

std::string normalName(const char* name) {
  std::string out(name);
  if (!out.empty() && out.back() == '.') out.pop_back();
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  });
  return out;
}

// The numeric text of an A (4 bytes) or AAAA (16 bytes) record; nullopt for any other length.
std::optional<std::string> addressText(const ns_rr& rr) {
  const int family = ns_rr_type(rr) == ns_t_a ? AF_INET : AF_INET6;
  const std::size_t want = family == AF_INET ? 4 : 16;
  if (ns_rr_rdlen(rr) != want) return std::nullopt;
  char text[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(family, ns_rr_rdata(rr), text, sizeof text) == nullptr) return std::nullopt;
  return std::string(text);
}

Endpoints sortedCapped(Endpoints all) {
  std::sort(all.begin(), all.end());
  // The same address and port twice (two SRV records naming one host): one backend, the
  // first weight in sort order.
  all.erase(std::unique(all.begin(), all.end(),
                        [](const Endpoint& a, const Endpoint& b) {
                          return a.host == b.host && a.port == b.port;
                        }),
            all.end());
  if (all.size() > kMaxEndpoints) all.resize(kMaxEndpoints);
  return all;
}

}  // namespace

std::optional<DnsAnswer> parseDnsAnswer(std::span<const unsigned char> message,
                                        std::string& error) {
  ns_msg msg;
  if (ns_initparse(message.data(), static_cast<int>(message.size()), &msg) != 0) {
    error = "malformed response (" + std::to_string(message.size()) + " bytes)";
    return std::nullopt;
  }
  if (ns_msg_getflag(msg, ns_f_qr) == 0) {
    error = "a query where a response was expected";
    return std::nullopt;
  }
  DnsAnswer answer;
  answer.rcode = ns_msg_getflag(msg, ns_f_rcode);
  for (ns_sect section : {ns_s_an, ns_s_ar}) {
    const int count = ns_msg_count(msg, section);
    for (int i = 0; i < count; ++i) {
      ns_rr rr;
      if (ns_parserr(&msg, section, i, &rr) != 0) {
        error = std::string("malformed record ") + std::to_string(i + 1) + " in the " +
                (section == ns_s_an ? "answer" : "additional") + " section";
        return std::nullopt;
      }
      if (ns_rr_class(rr) != ns_c_in) continue;
      const int type = ns_rr_type(rr);
      if (type == ns_t_a || type == ns_t_aaaa) {
        auto text = addressText(rr);
        if (!text) {
          error = std::string(type == ns_t_a ? "an A" : "an AAAA") + " record of " +
                  std::to_string(ns_rr_rdlen(rr)) + " bytes";
          return std::nullopt;
        }
        if (section == ns_s_an) {
          answer.addresses.push_back(*text);
        } else {
          answer.glue.emplace_back(normalName(ns_rr_name(rr)), std::move(*text));
        }
      } else if (type == ns_t_srv && section == ns_s_an) {
        const unsigned char* rdata = ns_rr_rdata(rr);
        const std::size_t length = ns_rr_rdlen(rr);
        // priority, weight, port (2 bytes each), then the target: at least the root's byte.
        char target[NS_MAXDNAME] = {};
        const int used = length < 7 ? -1
                                    : dn_expand(ns_msg_base(msg), ns_msg_end(msg), rdata + 6,
                                                target, sizeof target);
        if (used < 0 || static_cast<std::size_t>(used) != length - 6) {
          error = "a malformed SRV record";
          return std::nullopt;
        }
        // "." (no service here) reads as ""; anything else must be a host name: dn_expand
        // writes other bytes as \DDD escapes, which no lookup of the target could use.
        std::string name = normalName(target);
        if (!name.empty() && !conf::isValidHost(name)) {
          error = "a SRV record whose target is not a host name";
          return std::nullopt;
        }
        answer.srv.push_back({static_cast<uint16_t>(ns_get16(rdata)),
                              static_cast<uint16_t>(ns_get16(rdata + 2)),
                              static_cast<uint16_t>(ns_get16(rdata + 4)), std::move(name)});
      }
    }
  }
  return answer;
}

Endpoints addressEndpoints(std::span<const std::string> addresses, uint16_t port) {
  Endpoints all;
  all.reserve(addresses.size());
  for (const auto& a : addresses) all.push_back({a, port, 0});
  return sortedCapped(std::move(all));
}

Endpoints srvEndpoints(
    std::span<const SrvRecord> records,
    const std::function<std::vector<std::string>(const std::string&)>& addressesOf) {
  uint16_t best = UINT16_MAX;
  for (const auto& r : records) {
    if (!r.target.empty() && r.port != 0) best = std::min(best, r.priority);
  }
  Endpoints all;
  for (const auto& r : records) {
    if (r.target.empty() || r.port == 0 || r.priority != best) continue;
    for (const auto& host : addressesOf(r.target)) {
      all.push_back({host, r.port, std::max<uint32_t>(r.weight, 1)});
    }
  }
  return sortedCapped(std::move(all));
}

std::string endpointName(const Endpoint& e) {
  const bool v6 = e.host.find(':') != std::string::npos;
  return (v6 ? "[" + e.host + "]" : e.host) + ":" + std::to_string(e.port);
}

}  // namespace wsgate::proxy
