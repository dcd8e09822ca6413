#pragma once
// One resolution of a `discover` entry: DNS queries through glibc's libresolv (res_ninit,
// res_nquery) to the configured resolvers or /etc/resolv.conf's, blocking for at most the
// entry's timeout per query and resolver. Call it off the event loops (the discovery
// thread, the reload thread, the start before the listeners open). /etc/hosts and the
// search list are not read: the name is asked as written, of DNS only.

#include <string>

#include "conf/config.h"
#include "proxy/control/dns_answer.h"

namespace wsgate::proxy {

struct Resolution {
  enum class Status {
    Ok,      // records: `endpoints` is the set (never empty)
    Empty,   // NXDOMAIN, or the name has no such records: an answer, but no backend
    Failed,  // no usable answer (timeout, refused, SERVFAIL, REFUSED, malformed): no news
  };
  Status status = Status::Failed;
  Endpoints endpoints;
  std::string detail;  // for the log: "SERVFAIL from 127.0.0.1:5353", "NXDOMAIN", ...
};

Resolution resolveDiscover(const conf::DiscoverConfig& d);

}  // namespace wsgate::proxy
