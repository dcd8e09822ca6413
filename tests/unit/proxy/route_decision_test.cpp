// What to do with a request head, decided without a socket: local answers (respond, no
// route, invalid upgrades), the pool to forward to, and what a sticky pool picks by; then what
// Lua's on_request answer makes of it (applyScriptResult) and a script's route offering no
// extension (withoutExtensions).
#include "proxy/session/route_decision.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
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

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

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

// ---- applyScriptResult: what on_request's answer does to a Forward decision ----------------

// A request head over text the test keeps alive (the head's views point into it).
struct Request {
  explicit Request(std::string target_and_fields) : text("GET " + target_and_fields + "\r\n") {
    const auto parsed = http::parseRequestHead(text, {}, head);
    EXPECT_EQ(parsed.status, http::ParseStatus::Complete) << parsed.errorReason;
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;
  std::string text;
  http::RequestHead head;
};

constexpr std::string_view kClientIp = "192.0.2.7";

std::string cookieFor(const std::string& pool, std::size_t backend) {
  return runtime()->findPool(pool)->pool->cookie(backend);
}

// What a decision should hold after the script's answer (an empty optional: none expected).
struct ScriptExpect {
  RouteDecision::Kind kind = RouteDecision::Kind::Forward;
  int status = 0;                          // Respond / Refuse
  std::string pool;                        // Forward: the pool now used
  std::optional<std::string> stickyValue;  // Forward: the value hashed into the key
  std::optional<std::size_t> preferredBackend;
  std::vector<std::string> errorMentions;  // Refuse: words scriptError must contain
};

struct ScriptCase {
  std::string name;
  std::string request;  // target, version and header lines; routed by decideRoute
  scripting::RequestResult result;
  ScriptExpect expect;
};

void PrintTo(const ScriptCase& c, std::ostream* os) { *os << c.name; }

class ApplyScriptResultTest : public testing::TestWithParam<ScriptCase> {};

TEST_P(ApplyScriptResultTest, EditsTheDecision) {
  const ScriptCase& c = GetParam();
  const Request req(c.request);
  RouteDecision d = decideRoute(*runtime(), req.head, kClientIp);
  ASSERT_EQ(d.kind, RouteDecision::Kind::Forward) << "the script runs only for Forward decisions";
  const conf::RouteConfig* route = d.route;
  scripting::RequestResult r = c.result;
  applyScriptResult(*runtime(), d, std::move(r), req.head, kClientIp);

  EXPECT_EQ(d.kind, c.expect.kind);
  EXPECT_EQ(d.route, route) << "the matched route stays for the log";
  if (c.expect.kind != RouteDecision::Kind::Forward) {
    EXPECT_EQ(d.status, c.expect.status);
    EXPECT_EQ(d.pool, nullptr);
    EXPECT_FALSE(d.scriptError.empty());
    for (const auto& word : c.expect.errorMentions) {
      EXPECT_NE(d.scriptError.find(word), std::string::npos)
          << "'" << d.scriptError << "' does not mention " << word;
    }
    return;
  }
  EXPECT_TRUE(d.scriptError.empty()) << d.scriptError;
  ASSERT_NE(d.pool, nullptr);
  EXPECT_EQ(d.pool, runtime()->findPool(c.expect.pool));
  EXPECT_EQ(d.poolName, c.expect.pool);
  if (c.expect.stickyValue) {
    EXPECT_EQ(d.stickyKey, balancer::stickyKeyHash(*c.expect.stickyValue));
  } else {
    EXPECT_EQ(d.stickyKey, std::nullopt);
  }
  EXPECT_EQ(d.preferredBackend, c.expect.preferredBackend);
}

using Kind = RouteDecision::Kind;
using Result = scripting::RequestResult;

std::vector<ScriptCase> scriptCases() {
  const std::string v = " HTTP/1.1\r\n" + kHost;
  const std::string cookieB = "Cookie: WSGATE=" + cookieFor("by_cookie", 1) + "\r\n";
  return {
      {"FailureIs500WithTheError",
       "/header" + v + "X-User: alice\r\n",
       Result{.error = "boom"},
       {Kind::Refuse, 500, "", std::nullopt, std::nullopt, {"boom"}}},
      {"FailureWinsOverAnAnswer",
       "/app" + v,
       Result{.error = "limit", .keep = false, .pool = "by_query", .status = 200},
       {Kind::Refuse, 500, "", std::nullopt, std::nullopt, {"limit"}}},
      {"NilKeepsPoolAndStickyKey",
       "/header" + v + "X-User: alice\r\n",
       Result{},
       {Kind::Forward, 0, "by_header", "alice"}},
      {"NilKeepsTheCookiesBackend",
       "/cookie" + v + cookieB,
       Result{},
       {Kind::Forward, 0, "by_cookie", std::nullopt, 1}},
      {"NewPoolTakesItsQueryKeyNotTheOldHeaderKey",
       "/header?room=blue" + v + "X-User: alice\r\n",
       Result{.keep = false, .pool = "by_query"},
       {Kind::Forward, 0, "by_query", "blue"}},
      {"NewPoolTakesItsCookieNotTheOldHeaderKey",
       "/header" + v + "X-User: alice\r\n" + cookieB,
       Result{.keep = false, .pool = "by_cookie"},
       {Kind::Forward, 0, "by_cookie", std::nullopt, 1}},
      {"NewPoolTakesTheClientAddress",
       "/header" + v + "X-User: alice\r\n",
       Result{.keep = false, .pool = "by_ip"},
       {Kind::Forward, 0, "by_ip", "192.0.2.7"}},
      {"NewPlainPoolDropsTheOldCookiesBackend",
       "/cookie" + v + cookieB,
       Result{.keep = false, .pool = "app"},
       {Kind::Forward, 0, "app"}},
      {"NewStickyPoolWithoutItsKeyGivesNone",
       "/header" + v + "X-User: alice\r\n",
       Result{.keep = false, .pool = "by_query"},
       {Kind::Forward, 0, "by_query"}},
      {"SamePoolKeepsItsKey",
       "/header" + v + "X-User: alice\r\n",
       Result{.keep = false, .pool = "by_header"},
       {Kind::Forward, 0, "by_header", "alice"}},
      {"UnknownPoolIs500NamingIt",
       "/app" + v,
       Result{.keep = false, .pool = "nowhere"},
       {Kind::Refuse, 500, "", std::nullopt, std::nullopt, {"'nowhere'"}}},
      {"BackendIsPreferred",
       "/cookie" + v,
       Result{.keep = false, .backend = "b"},
       {Kind::Forward, 0, "by_cookie", std::nullopt, 1}},
      {"BackendOverridesTheCookiesBackend",
       "/cookie" + v + cookieB,
       Result{.keep = false, .backend = "a"},
       {Kind::Forward, 0, "by_cookie", std::nullopt, 0}},
      {"BackendIsLookedUpInTheNewPool",
       "/app" + v,
       Result{.keep = false, .pool = "by_cookie", .backend = "b"},
       {Kind::Forward, 0, "by_cookie", std::nullopt, 1}},
      {"UnknownBackendIs500NamingItAndThePool",
       "/app" + v,
       Result{.keep = false, .backend = "b"},
       {Kind::Refuse, 500, "", std::nullopt, std::nullopt, {"'b'", "'app'"}}},
      {"UnknownBackendInTheNewPoolNamesTheNewPool",
       "/cookie" + v,
       Result{.keep = false, .pool = "app", .backend = "b"},
       {Kind::Refuse, 500, "", std::nullopt, std::nullopt, {"'b'", "'app'"}}},
      {"StickyKeyIsHashed",
       "/app" + v,
       Result{.keep = false, .stickyKey = "room-7"},
       {Kind::Forward, 0, "app", "room-7"}},
      {"StickyKeyOverridesThePoolsOwnKey",
       "/header" + v + "X-User: alice\r\n",
       Result{.keep = false, .stickyKey = "room-7"},
       {Kind::Forward, 0, "by_header", "room-7"}},
      {"StickyKeyOverridesTheNewPoolsKey",
       "/header?room=blue" + v,
       Result{.keep = false, .pool = "by_query", .stickyKey = "room-7"},
       {Kind::Forward, 0, "by_query", "room-7"}},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, ApplyScriptResultTest, testing::ValuesIn(scriptCases()),
                         [](const testing::TestParamInfo<ScriptCase>& i) { return i.param.name; });

TEST(ApplyScriptResult, NilLeavesAWebsocketDecisionAsItWas) {
  const Request req("/header HTTP/1.1\r\n" + kHost + std::string(kUpgrade) +
                    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
                    "X-User: alice\r\n");
  const RouteDecision before = decideRoute(*runtime(), req.head, kClientIp);
  RouteDecision d = decideRoute(*runtime(), req.head, kClientIp);
  applyScriptResult(*runtime(), d, Result{}, req.head, kClientIp);
  EXPECT_EQ(d.kind, before.kind);
  EXPECT_EQ(d.route, before.route);
  EXPECT_EQ(d.pool, before.pool);
  EXPECT_EQ(d.poolName, before.poolName);
  EXPECT_EQ(d.websocket, before.websocket);
  EXPECT_EQ(d.offer.key, before.offer.key);
  EXPECT_EQ(d.offer.extensions, before.offer.extensions);
  EXPECT_EQ(d.stickyKey, before.stickyKey);
  EXPECT_EQ(d.preferredBackend, before.preferredBackend);
  EXPECT_TRUE(d.setHeaders.empty());
  EXPECT_TRUE(d.removeHeaders.empty());
  EXPECT_TRUE(d.scriptError.empty());
}

TEST(ApplyScriptResult, StatusAnswersLocallyWithTheScriptsBodyAndHeaders) {
  const Request req("/app HTTP/1.1\r\n" + kHost + std::string(kUpgrade) +
                    "Sec-WebSocket-Version: 13\r\n");
  RouteDecision d = decideRoute(*runtime(), req.head, kClientIp);
  ASSERT_TRUE(d.websocket);
  const conf::RouteConfig* route = d.route;
  applyScriptResult(*runtime(), d,
                    Result{.keep = false,
                           .status = 403,
                           .body = "not you\n",
                           .headers = {{"x-why", "lua"},
                                       {"content-type", "text/plain"},
                                       {"cache-control", "no-store"}},
                           .setHeaders = {{"x-ignored", "1"}}},
                    req.head, kClientIp);
  EXPECT_EQ(d.kind, Kind::Respond);
  EXPECT_EQ(d.status, 403);
  EXPECT_TRUE(d.scripted);
  EXPECT_EQ(d.route, route);
  EXPECT_EQ(d.answerBody(), "not you\n");
  // content-type is the answer's own field, not one more line.
  EXPECT_EQ(d.answerHeaders(), "x-why: lua\r\ncache-control: no-store\r\n");
  EXPECT_EQ(d.scriptContentType, "text/plain");
  // Nothing of the Forward it replaced is left to act on.
  EXPECT_FALSE(d.websocket);
  EXPECT_EQ(d.pool, nullptr);
  EXPECT_TRUE(d.setHeaders.empty());
  EXPECT_TRUE(d.scriptError.empty());
}

TEST(ApplyScriptResult, StatusWithoutContentTypeLeavesItEmpty) {
  const Request req("/app HTTP/1.1\r\n" + kHost);
  RouteDecision d = decideRoute(*runtime(), req.head, kClientIp);
  applyScriptResult(*runtime(), d, Result{.keep = false, .status = 204}, req.head, kClientIp);
  EXPECT_EQ(d.kind, Kind::Respond);
  EXPECT_EQ(d.status, 204);
  EXPECT_TRUE(d.scripted);
  EXPECT_EQ(d.answerBody(), "");
  EXPECT_EQ(d.answerHeaders(), "");
  EXPECT_EQ(d.scriptContentType, "");
}

TEST(ApplyScriptResult, HeaderEditsMoveIntoTheDecision) {
  const Request req("/header HTTP/1.1\r\n" + kHost + "X-User: alice\r\n");
  RouteDecision d = decideRoute(*runtime(), req.head, kClientIp);
  const scripting::HeaderList set = {{"x-tenant", "blue"}, {"host", "internal.svc"}};
  const std::vector<std::string> remove = {"cookie", "x-debug"};
  applyScriptResult(
      *runtime(), d,
      Result{.keep = false, .pool = "by_query", .setHeaders = set, .removeHeaders = remove},
      req.head, kClientIp);
  EXPECT_EQ(d.kind, Kind::Forward);
  EXPECT_EQ(d.poolName, "by_query");
  EXPECT_EQ(d.setHeaders, set);
  EXPECT_EQ(d.removeHeaders, remove);
}

// ---- withoutExtensions: a route whose script reads every message offers no extension -------

TEST(WithoutExtensions, DropsTheOfferAndTheClientsFieldOnAWebsocketDecision) {
  const Request req("/app HTTP/1.1\r\n" + kHost + std::string(kUpgrade) +
                    "Sec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
  RouteDecision d = decideRoute(*runtime(), req.head, kClientIp);
  ASSERT_TRUE(d.websocket);
  ASSERT_FALSE(d.offer.extensions.empty());
  applyScriptResult(*runtime(), d, Result{.keep = false, .removeHeaders = {"x-debug"}}, req.head,
                    kClientIp);
  withoutExtensions(d);
  EXPECT_EQ(d.offer.extensions, "");
  EXPECT_EQ(d.offer.key, "dGhlIHNhbXBsZSBub25jZQ==");  // the rest of the offer stays
  // The script's own removals stay, with the extensions field added.
  EXPECT_EQ(d.removeHeaders, (std::vector<std::string>{"x-debug", "sec-websocket-extensions"}));
}

TEST(WithoutExtensions, LeavesAPlainRequestAlone) {
  const Request req("/app HTTP/1.1\r\n" + kHost + "Sec-WebSocket-Extensions: x\r\n");
  RouteDecision d = decideRoute(*runtime(), req.head, kClientIp);
  ASSERT_FALSE(d.websocket);
  withoutExtensions(d);
  EXPECT_TRUE(d.removeHeaders.empty());
  EXPECT_EQ(d.kind, Kind::Forward);
}

TEST(WithoutExtensions, LeavesALocalAnswerAlone) {
  const Request req(
      "/app HTTP/1.1\r\n" + kHost + std::string(kUpgrade) +
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate\r\n");
  RouteDecision d = decideRoute(*runtime(), req.head, kClientIp);
  applyScriptResult(*runtime(), d, Result{.keep = false, .status = 401}, req.head, kClientIp);
  withoutExtensions(d);
  EXPECT_EQ(d.kind, Kind::Respond);
  EXPECT_TRUE(d.removeHeaders.empty());
}

}  // namespace
}  // namespace wsgate::proxy
