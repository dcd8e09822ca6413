// What to do with a request head, decided without a socket: local answers (respond, no
// route, invalid upgrades), the pool to forward to, and what a sticky pool picks by.
#include "proxy/session/route_decision.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "balancer/hash.h"
#include "conf/loader.h"
#include "proxy/http/request_parser.h"

namespace wsgate::proxy {
namespace {

// Four pools, one per sticky source, plus a plain one; routes by path prefix.
RuntimePtr runtime() {
  static RuntimePtr rt = [] {
    const std::string yaml = R"(listeners:
  - { name: public, listen: 127.0.0.1:0 }
routes:
  - { match: { path_prefix: /teapot }, respond: { status: 418, body: "short and stout\n" } }
  - { match: { path_prefix: /header }, pool: by_header }
  - { match: { path_prefix: /query }, pool: by_query }
  - { match: { path_prefix: /ip }, pool: by_ip }
  - { match: { path_prefix: /cookie }, pool: by_cookie }
  - { match: { path_prefix: /app }, pool: app }
pools:
  app:
    backends: [ { name: a, address: 127.0.0.1:9001 } ]
  by_header:
    sticky: { header: X-User }
    backends: [ { name: a, address: 127.0.0.1:9001 } ]
  by_query:
    sticky: { query: room }
    backends: [ { name: a, address: 127.0.0.1:9001 } ]
  by_ip:
    sticky: { source_ip: true }
    backends: [ { name: a, address: 127.0.0.1:9001 } ]
  by_cookie:
    sticky: { cookie: { name: WSGATE, insert: true } }
    backends: [ { name: a, address: 127.0.0.1:9001 }, { name: b, address: 127.0.0.1:9002 } ]
)";
    conf::LoadResult r = conf::loadString(yaml, "t.yaml");
    EXPECT_TRUE(r.ok()) << (r.errors.empty() ? "" : r.errors.front().str());
    std::string error;
    std::vector<std::string> warnings;
    return buildRuntime(std::make_shared<const conf::Config>(std::move(*r.config)), nullptr, error,
                        warnings);
  }();
  return rt;
}

constexpr std::string_view kUpgrade =
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

struct Case {
  std::string name;
  std::string request;  // target and extra header lines
  RouteDecision::Kind kind;
  int status = 0;  // Respond / Refuse
  std::string pool;
  bool websocket = false;
  std::optional<std::string> stickyValue;  // Forward: the value hashed into the key
  std::string extraHeaders;
};

class RouteDecisionTest : public testing::TestWithParam<Case> {};

TEST_P(RouteDecisionTest, Decides) {
  const Case& c = GetParam();
  const std::string text = "GET " + c.request + "\r\n";
  http::RequestHead head;
  const auto parsed = http::parseRequestHead(text, {}, head);
  ASSERT_EQ(parsed.status, http::ParseStatus::Complete) << parsed.errorReason;
  const RouteDecision d = decideRoute(*runtime(), head, "192.0.2.7");
  EXPECT_EQ(d.kind, c.kind);
  if (c.kind != RouteDecision::Kind::Forward) {
    EXPECT_EQ(d.status, c.status);
    EXPECT_EQ(d.extraHeaders, c.extraHeaders);
    return;
  }
  EXPECT_EQ(d.poolName, c.pool);
  ASSERT_NE(d.pool, nullptr);
  EXPECT_EQ(d.pool->config->name, c.pool);
  EXPECT_EQ(d.websocket, c.websocket);
  if (c.websocket) {
    EXPECT_EQ(d.offer.key, "dGhlIHNhbXBsZSBub25jZQ==");
  }
  if (c.stickyValue) {
    EXPECT_EQ(d.stickyKey, balancer::stickyKeyHash(*c.stickyValue));
  } else {
    EXPECT_EQ(d.stickyKey, std::nullopt);
  }
}

const std::string kHost = "Host: example.com\r\n";

INSTANTIATE_TEST_SUITE_P(
    Cases, RouteDecisionTest,
    testing::Values(
        Case{"NoRouteIs404", "/elsewhere HTTP/1.1\r\n" + kHost, RouteDecision::Kind::Refuse, 404},
        Case{"RespondRouteAnswersItsStatus", "/teapot HTTP/1.1\r\n" + kHost,
             RouteDecision::Kind::Respond, 418},
        Case{"PlainRequestForwards", "/app/x HTTP/1.1\r\n" + kHost, RouteDecision::Kind::Forward, 0,
             "app"},
        Case{"ValidUpgradeForwardsWithItsOffer",
             "/app/ws HTTP/1.1\r\n" + kHost + std::string(kUpgrade) +
                 "Sec-WebSocket-Version: 13\r\n",
             RouteDecision::Kind::Forward, 0, "app", true},
        Case{
            "UnknownVersionIs426WithTheVersionHeader",
            "/app/ws HTTP/1.1\r\n" + kHost + std::string(kUpgrade) + "Sec-WebSocket-Version: 8\r\n",
            RouteDecision::Kind::Refuse, 426, "", false, std::nullopt,
            "Sec-WebSocket-Version: 13\r\n"},
        Case{"UpgradeWithoutKeyIs400",
             "/app/ws HTTP/1.1\r\n" + kHost +
                 "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
             RouteDecision::Kind::Refuse, 400},
        Case{"StickyHeaderGivesItsValueAsKey", "/header HTTP/1.1\r\n" + kHost + "X-User: alice\r\n",
             RouteDecision::Kind::Forward, 0, "by_header", false, "alice"},
        Case{"StickyHeaderAbsentGivesNoKey", "/header HTTP/1.1\r\n" + kHost,
             RouteDecision::Kind::Forward, 0, "by_header"},
        Case{"StickyHeaderEmptyGivesNoKey", "/header HTTP/1.1\r\n" + kHost + "X-User: \r\n",
             RouteDecision::Kind::Forward, 0, "by_header"},
        Case{"StickyQueryGivesItsValueAsKey", "/query?a=1&room=blue HTTP/1.1\r\n" + kHost,
             RouteDecision::Kind::Forward, 0, "by_query", false, "blue"},
        Case{"StickySourceIpGivesTheClientAddress", "/ip HTTP/1.1\r\n" + kHost,
             RouteDecision::Kind::Forward, 0, "by_ip", false, "192.0.2.7"}),
    [](const testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(RouteDecision, AValidStickyCookieNamesItsBackend) {
  const PoolEntry* pool = runtime()->findPool("by_cookie");
  const std::string text =
      "GET /cookie HTTP/1.1\r\nHost: example.com\r\nCookie: x=1; WSGATE=" + pool->pool->cookie(1) +
      "\r\n\r\n";
  http::RequestHead head;
  ASSERT_EQ(http::parseRequestHead(text, {}, head).status, http::ParseStatus::Complete);
  const RouteDecision d = decideRoute(*runtime(), head, "192.0.2.7");
  EXPECT_EQ(d.preferredBackend, std::optional<std::size_t>(1));
  EXPECT_EQ(d.stickyKey, std::nullopt);
}

TEST(RouteDecision, AForgedStickyCookieNamesNoBackend) {
  http::RequestHead head;
  const std::string text =
      "GET /cookie HTTP/1.1\r\nHost: example.com\r\nCookie: WSGATE=forged\r\n\r\n";
  ASSERT_EQ(http::parseRequestHead(text, {}, head).status, http::ParseStatus::Complete);
  EXPECT_EQ(decideRoute(*runtime(), head, "192.0.2.7").preferredBackend, std::nullopt);
}

}  // namespace
}  // namespace wsgate::proxy
