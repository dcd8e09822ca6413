// Route matching: first match wins; host without port, case-insensitive; prefix; headers.
#include "proxy/session/router.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace wsgate::proxy {
namespace {

conf::RouteConfig route(std::string pool, std::optional<std::string> host, std::string prefix,
                        std::vector<conf::HeaderMatch> headers = {}) {
  conf::RouteConfig r;
  r.pool = std::move(pool);
  r.match.host = std::move(host);
  r.match.pathPrefix = std::move(prefix);
  r.match.headers = std::move(headers);
  return r;
}

struct Case {
  std::string name;
  std::string host;
  std::string path;
  std::vector<http::Header> headers;
  std::string expectPool;  // empty: no route
};

class RouterTest : public ::testing::TestWithParam<Case> {};

const std::vector<conf::RouteConfig>& table() {
  static const std::vector<conf::RouteConfig> routes = {
      route("beta", "chat.example.com", "/ws", {{"x-tenant", "beta"}}),
      route("chat", "chat.example.com", "/ws"),
      route("internal", std::nullopt, "/internal"),
      route("app", "app.example.com", "/"),
  };
  return routes;
}

TEST_P(RouterTest, PicksFirstMatchingRoute) {
  const Case& c = GetParam();
  Router router(table());
  http::RequestHead req;
  req.host = c.host;
  req.path = c.path;
  req.headers = c.headers;
  req.headers.push_back({"Host", c.host});
  const conf::RouteConfig* r = router.match(req);
  if (c.expectPool.empty()) {
    EXPECT_EQ(r, nullptr);
  } else {
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->pool, c.expectPool);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Routes, RouterTest,
    ::testing::Values(
        Case{"HeaderMatchWinsWhenFirst", "chat.example.com", "/ws", {{"X-Tenant", "beta"}}, "beta"},
        Case{"HeaderValueIsCaseSensitive",
             "chat.example.com",
             "/ws",
             {{"x-tenant", "Beta"}},
             "chat"},
        Case{"HostWithoutHeaderFallsThrough", "chat.example.com", "/ws/room", {}, "chat"},
        Case{"HostComparedWithoutPort", "chat.example.com:8080", "/ws", {}, "chat"},
        Case{"HostComparedCaseInsensitively", "CHAT.Example.COM", "/ws", {}, "chat"},
        Case{"PrefixIsByteExact", "chat.example.com", "/WS", {}, ""},
        Case{"RouteWithoutHostMatchesAnyHost", "other.example.com", "/internal/x", {}, "internal"},
        Case{"CatchAllOfAnotherHost", "app.example.com", "/anything", {}, "app"},
        Case{"NoRouteForUnknownHost", "unknown.example.com", "/", {}, ""},
        Case{"Ipv6LiteralHostWithPort", "[::1]:8080", "/internal", {}, "internal"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace wsgate::proxy
