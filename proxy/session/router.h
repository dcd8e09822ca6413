#pragma once
// Static routing: the first route whose match fields all hold for a request head wins.

#include <vector>

#include "conf/config.h"
#include "proxy/http/head.h"

namespace wsgate::proxy {

class Router {
public:
  explicit Router(const std::vector<conf::RouteConfig>& routes) : routes_(&routes) {}

  // The matching route, or nullptr (answered 404). The host is compared without its port,
  // case-insensitively; path_prefix as a byte prefix of the path; header values exactly.
  const conf::RouteConfig* match(const http::RequestHead& req) const;

private:
  const std::vector<conf::RouteConfig>* routes_;  // owned by the Runtime's Config
};

}  // namespace wsgate::proxy
