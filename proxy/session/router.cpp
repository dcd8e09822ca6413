#include "proxy/session/router.h"

namespace wsgate::proxy {
namespace {

// Host without ":port" (and without brackets' port for IPv6 literals).
std::string_view hostWithoutPort(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    auto end = host.find(']');
    return end == std::string_view::npos ? host : host.substr(0, end + 1);
  }
  auto colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

bool matches(const conf::RouteMatch& m, const http::RequestHead& req) {
  if (m.host && !http::iequals(hostWithoutPort(req.host), *m.host)) return false;
  if (!req.path.starts_with(m.pathPrefix)) return false;
  for (const auto& hm : m.headers) {
    const http::Header* h = http::findHeader(req.headers, hm.name);
    if (h == nullptr || h->value != hm.value) return false;
  }
  return true;
}

}  // namespace

const conf::RouteConfig* Router::match(const http::RequestHead& req) const {
  for (const auto& route : *routes_) {
    if (matches(route.match, req)) return &route;
  }
  return nullptr;
}

}  // namespace wsgate::proxy
