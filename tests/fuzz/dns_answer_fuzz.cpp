// libFuzzer: proxy::parseDnsAnswer and the backend sets made from it (addressEndpoints,
// srvEndpoints), on arbitrary bytes as a resolver could send them. Properties, since the
// parsing itself is libresolv's: never a crash or a read past the message (ASan); the
// response code is the header's; no more records than the header counts; every address is
// numeric text that reads back to itself; every SRV target is a lower-case name without a
// trailing dot; the sets are sorted, without duplicate address:port, capped, with nonzero
// ports and weights, and do not depend on the order the records came in.
//
// Input: one DNS message.

#include <arpa/inet.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "proxy/control/dns_answer.h"

namespace {

using namespace wsgate::proxy;

void check(bool ok) {
  if (!ok) std::abort();
}

bool readsBack(const std::string& text) {
  unsigned char raw[16];
  char again[INET6_ADDRSTRLEN] = {};
  const int family = text.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  if (inet_pton(family, text.c_str(), raw) != 1) return false;
  return inet_ntop(family, raw, again, sizeof again) != nullptr && text == again;
}

void checkSet(const Endpoints& set) {
  check(set.size() <= kMaxEndpoints);
  check(std::is_sorted(set.begin(), set.end()));
  for (std::size_t i = 0; i < set.size(); ++i) {
    check(set[i].port != 0);
    check(readsBack(set[i].host));
    if (i > 0) check(set[i - 1].host != set[i].host || set[i - 1].port != set[i].port);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  std::string error;
  const auto answer = parseDnsAnswer(std::span<const unsigned char>(data, size), error);
  if (!answer) {
    check(!error.empty());
    return 0;
  }
  check(size >= 12);
  check(answer->rcode == (data[3] & 0x0f));
  const std::size_t answers = (std::size_t{data[6]} << 8) | data[7];
  const std::size_t additional = (std::size_t{data[10]} << 8) | data[11];
  check(answer->addresses.size() + answer->srv.size() <= answers);
  check(answer->glue.size() <= additional);
  for (const auto& a : answer->addresses) check(readsBack(a));
  for (const auto& [owner, a] : answer->glue) check(readsBack(a));
  for (const auto& r : answer->srv) {
    check(r.target.size() <= 253);
    check(r.target.empty() || r.target.back() != '.');
    check(std::none_of(r.target.begin(), r.target.end(),
                       [](char c) { return c >= 'A' && c <= 'Z'; }));
  }

  const Endpoints byAddress = addressEndpoints(answer->addresses, 9001);
  checkSet(byAddress);
  std::vector<std::string> reversed(answer->addresses.rbegin(), answer->addresses.rend());
  check(addressEndpoints(reversed, 9001) == byAddress);

  auto glueOf = [&](const std::string& target) {
    std::vector<std::string> out;
    for (const auto& [owner, a] : answer->glue) {
      if (owner == target) out.push_back(a);
    }
    return out;
  };
  const Endpoints bySrv = srvEndpoints(answer->srv, glueOf);
  checkSet(bySrv);
  for (const auto& e : bySrv) check(e.weight >= 1);
  std::vector<SrvRecord> srvReversed(answer->srv.rbegin(), answer->srv.rend());
  // The same records in another order give the same backends, except which weight an address
  // named twice keeps (the lowest, in both cases).
  check(srvEndpoints(srvReversed, glueOf) == bySrv);
  return 0;
}
