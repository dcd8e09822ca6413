// Backend identity: the key that lets a Backend (and its live counters) survive a reload.

#include "balancer/backend.h"

namespace wsgate::balancer {

std::string BackendSpec::identity() const {
  // An IPv6 literal is bracketed so the port separator stays unambiguous (as in a URI,
  // RFC 3986 3.2.2): "app/a@[::1]:80", not "app/a@::1:80".
  const bool ipv6 = host.find(':') != std::string::npos;
  std::string id;
  id.reserve(pool.size() + name.size() + host.size() + 10);
  id.append(pool).append("/").append(name).append("@");
  if (ipv6) id.append("[");
  id.append(host);
  if (ipv6) id.append("]");
  id.append(":").append(std::to_string(port));
  return id;
}

}  // namespace wsgate::balancer
