// on_request as a script sees it: every field of `req` (lazy headers, query and cookies
// included), every form a return value may take, and each rule a returned table can break.
#include <gtest/gtest.h>

#include <algorithm>
#include <ostream>
#include <string>
#include <vector>

#include "engine_fixture.h"

namespace wsgate::scripting {
namespace {

using testing::EngineTest;

// dump(t): a table as "k=v&k=v", keys sorted, so a probe can return it as one string.
constexpr std::string_view kDump = R"(
function dump(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = k .. "=" .. tostring(t[k]) end
  return table.concat(out, "&")
end
)";

struct FieldCase {
  std::string name;
  std::string expr;  // a Lua expression over `req`, returned as the probe's pool
  std::string query;
  std::vector<Header> headers;
  std::string expect;
};

void PrintTo(const FieldCase& c, std::ostream* os) { *os << c.name; }

class RequestFieldTest : public EngineTest, public ::testing::WithParamInterface<FieldCase> {};

TEST_P(RequestFieldTest, ScriptSeesField) {
  const FieldCase& c = GetParam();
  ASSERT_TRUE(boot(std::string(kDump) + "function probe(req) return { pool = tostring(" + c.expr +
                   ") } end"));
  const Request req{.method = "POST",
                    .path = "/chat/room",
                    .query = c.query,
                    .host = "example.test:8080",
                    .clientIp = "192.0.2.7",
                    .route = "chat",
                    .isWebsocket = true,
                    .headers = c.headers};
  EXPECT_EQ(probe("probe", req), c.expect);
}

INSTANTIATE_TEST_SUITE_P(
    Fields, RequestFieldTest,
    ::testing::Values(
        FieldCase{"Method", "req.method", "", {}, "POST"},
        FieldCase{"PathWithoutQuery", "req.path", "a=1", {}, "/chat/room"},
        FieldCase{"Host", "req.host", "", {}, "example.test:8080"},
        FieldCase{"ClientIp", "req.client_ip", "", {}, "192.0.2.7"},
        FieldCase{"Route", "req.route", "", {}, "chat"},
        FieldCase{"IsWebsocket", "req.is_websocket", "", {}, "true"},
        FieldCase{"IsWebsocketIsBoolean", "type(req.is_websocket)", "", {}, "boolean"},
        FieldCase{"QueryIsTable", "dump(req.query)", "a=1&b=two", {}, "a=1&b=two"},
        FieldCase{"QueryEmptyIsEmptyTable",
                  "type(req.query) .. tostring(next(req.query))",
                  "",
                  {},
                  "tablenil"},
        FieldCase{
            "QueryPercentDecoded", "req.query.name", "name=J%C3%B6rg%2Fx%3d", {}, "J\xC3\xB6rg/x="},
        FieldCase{"QueryPlusIsSpace", "req.query.q", "q=a+b+c", {}, "a b c"},
        FieldCase{"QueryEncodedPlusIsPlus", "req.query.q", "q=a%2Bb", {}, "a+b"},
        FieldCase{"QueryKeyDecoded", "req.query['a key']", "a+k%65y=v", {}, "v"},
        FieldCase{"QueryFirstOccurrenceWins", "req.query.a", "a=1&a=2&a=3", {}, "1"},
        FieldCase{"QueryKeyWithoutValue", "dump(req.query)", "flag&x=", {}, "flag=&x="},
        FieldCase{"QueryEmptyPartsSkipped", "dump(req.query)", "&&a=1&", {}, "a=1"},
        FieldCase{"QueryValueKeepsEquals", "req.query.a", "a=b=c", {}, "b=c"},
        FieldCase{"QueryBadPercentKept", "req.query.a", "a=%zz%4%", {}, "%zz%4%"},
        FieldCase{"HeaderKeysLowerCased",
                  "dump(req.headers)",
                  "",
                  {{"X-Tenant", "beta"}, {"Accept", "*/*"}},
                  "accept=*/*&x-tenant=beta"},
        FieldCase{"HeaderMixedCaseKeyAbsent",
                  "req.headers['X-Tenant']",
                  "",
                  {{"X-Tenant", "beta"}},
                  "nil"},
        FieldCase{"RepeatedHeaderJoinedWithComma",
                  "req.headers['x-a']",
                  "",
                  {{"X-A", "1"}, {"Other", "o"}, {"x-a", "2"}, {"X-a", "3"}},
                  "1, 2, 3"},
        FieldCase{"RepeatedCookieJoinedWithSemicolon",
                  "req.headers.cookie",
                  "",
                  {{"Cookie", "a=1"}, {"cookie", "b=2"}},
                  "a=1; b=2"},
        FieldCase{"HeaderValueKeptAsIs", "req.headers['x-v']", "", {{"X-V", " a,b "}}, " a,b "},
        FieldCase{
            "CookiesIsTable", "dump(req.cookies)", "", {{"Cookie", "a=1; b=two"}}, "a=1&b=two"},
        FieldCase{"CookiesTrimmedAndUnquoted",
                  "dump(req.cookies)",
                  "",
                  {{"Cookie", " a = 1 ;b=\"q v\";  ;noeq; =x"}},
                  "a=1&b=q v"},
        FieldCase{"CookieValueKeepsEquals", "req.cookies.t", "", {{"Cookie", "t=a=b"}}, "a=b"},
        FieldCase{"CookiesFromEveryCookieHeaderFirstWins",
                  "dump(req.cookies)",
                  "",
                  {{"Cookie", "a=1"}, {"COOKIE", "a=2; b=3"}},
                  "a=1&b=3"},
        FieldCase{"NoCookieHeaderIsEmptyTable",
                  "next(req.cookies) == nil",
                  "",
                  {{"X-Cookie", "a=1"}},
                  "true"},
        FieldCase{"SecondReadSameTable", "req.headers == req.headers", "", {{"A", "1"}}, "true"}),
    [](const auto& info) { return info.param.name; });

TEST_F(RequestFieldTest, IsWebsocketFalseForPlainHttp) {
  ASSERT_TRUE(boot("function probe(req) return { pool = tostring(req.is_websocket) } end"));
  EXPECT_EQ(probe("probe", Request{.method = "GET", .path = "/", .isWebsocket = false}), "false");
}

// The views behind headers/query/cookies end with the call: a request kept in a global reads
// as an error later, never as freed memory.
TEST_F(RequestFieldTest, HeadersReadAfterReturnIsError) {
  ASSERT_TRUE(boot(R"(
function keep(req) saved = req end
function later_headers(req) return { pool = saved.headers["x-a"] } end
function later_query(req) return { pool = saved.query.a } end
function later_cookies(req) return { pool = saved.cookies.a } end
function later_method(req) return { pool = saved.method } end
function on_message(conn, dir, msg) return saved.headers["x-a"] end
)"));
  const Header headers[] = {{"X-A", "1"}, {"Cookie", "a=1"}};
  const Request first{.method = "PUT", .path = "/", .query = "a=1", .headers = headers};
  ASSERT_FALSE(engine_->onRequest("keep", first).failed());
  // Every field is made when read, from views that end with the call: none can be read after.
  for (const char* fn : {"later_headers", "later_query", "later_cookies", "later_method"}) {
    const Request second{.method = "GET", .path = "/", .query = "a=2", .headers = headers};
    const RequestResult r = engine_->onRequest(fn, second);
    ASSERT_TRUE(r.failed()) << fn;
    EXPECT_NE(r.error.find("read after on_request returned"), std::string::npos) << r.error;
  }
  HookError err;
  const int conn = engine_->openConn({.id = 1}, err);
  ASSERT_GT(conn, 0) << err.error;
  const MessageResult m = engine_->onMessage(conn, Direction::Client, {.text = true, .data = "x"});
  EXPECT_EQ(m.action, MessageResult::Action::Error);
  EXPECT_NE(m.reason.find("read after on_request returned"), std::string::npos) << m.reason;
}

// The request metatable's __index reads raw C views: a script must not reach it to call it on
// something that is not a live request.
TEST_F(RequestFieldTest, HeadersAreLookedUpOneByOneAndPairsSeesEachOnce) {
  ASSERT_NE(boot(R"(
function probe(req)
  local h = req.headers
  local before = tostring(h["x-a"]) .. "|" .. tostring(h["X-A"]) .. "|" .. tostring(h["none"])
  local seen = {}
  for k, v in pairs(h) do seen[#seen + 1] = k .. "=" .. v end
  table.sort(seen)
  return { pool = before .. "|" .. table.concat(seen, ";") }
end)"),
            nullptr);
  const Header headers[] = {
      {"X-A", "1"}, {"Host", "h"}, {"x-a", "2"}, {"Cookie", "c=1"}, {"cookie", "d=2"}};
  // A lookup joins the repeated field; pairs after it lists it once, joined once.
  EXPECT_EQ(probe("probe", Request{.method = "GET", .path = "/", .headers = headers}),
            "1, 2|nil|nil|cookie=c=1; d=2;host=h;x-a=1, 2");
}

TEST_F(RequestFieldTest, RequestMetatableIsOutOfReach) {
  ASSERT_TRUE(boot(R"(
function probe(req) return { pool = tostring(getmetatable(req)) } end
function call_index(req)
  local index = getmetatable(req).__index
  return { pool = tostring(index("not a table", "headers")) }
end
function replace(req) setmetatable(req, {}) end
)"));
  EXPECT_EQ(probe("probe"), "false");
  EXPECT_TRUE(call("call_index").failed());
  EXPECT_TRUE(call("replace").failed());
  EXPECT_EQ(probe("probe"), "false");
}

TEST_F(RequestFieldTest, UnknownFunctionIsError) {
  ASSERT_TRUE(boot("x = 1"));
  const RequestResult r = call("nope");
  EXPECT_EQ(r.error, "'nope' is not a function of test.lua");
  EXPECT_EQ(call("x").error, "'x' is not a function of test.lua");
}

TEST_F(RequestFieldTest, RuntimeErrorNamesFileAndLine) {
  ASSERT_TRUE(boot("function f(req)\n  local t = nil\n  return t.x\nend"));
  const RequestResult r = call("f");
  EXPECT_EQ(r.error.rfind("test.lua:3: attempt to index a nil value", 0), 0u) << r.error;
  EXPECT_TRUE(r.keep);
  EXPECT_FALSE(r.pool);
}

// --- return values ---------------------------------------------------------------------

struct ReturnCase {
  std::string name;
  std::string returned;  // Lua expression on_request returns
  RequestResult expect;
};

void PrintTo(const ReturnCase& c, std::ostream* os) { *os << c.name; }

class RequestReturnTest : public EngineTest, public ::testing::WithParamInterface<ReturnCase> {};

HeaderList sorted(HeaderList list) {
  std::sort(list.begin(), list.end());
  return list;
}

TEST_P(RequestReturnTest, CarriesResultOut) {
  const ReturnCase& c = GetParam();
  ASSERT_TRUE(boot("function f(req) return " + c.returned + " end"));
  const RequestResult r = call("f");
  ASSERT_FALSE(r.failed()) << r.error;
  EXPECT_EQ(r.keep, c.expect.keep);
  EXPECT_EQ(r.pool, c.expect.pool);
  EXPECT_EQ(r.backend, c.expect.backend);
  EXPECT_EQ(r.stickyKey, c.expect.stickyKey);
  EXPECT_EQ(r.status, c.expect.status);
  EXPECT_EQ(r.body, c.expect.body);
  EXPECT_EQ(sorted(r.headers), sorted(c.expect.headers));
  EXPECT_EQ(sorted(r.setHeaders), sorted(c.expect.setHeaders));
  EXPECT_EQ(r.removeHeaders, c.expect.removeHeaders);
}

INSTANTIATE_TEST_SUITE_P(
    Returns, RequestReturnTest,
    ::testing::Values(
        ReturnCase{"NilKeepsDecision", "nil", {.keep = true}},
        ReturnCase{"EmptyTableSetsNothing", "{}", {.keep = false}},
        ReturnCase{"Pool", "{ pool = 'beta' }", {.keep = false, .pool = "beta"}},
        ReturnCase{"Backend", "{ backend = 'b1' }", {.keep = false, .backend = "b1"}},
        ReturnCase{
            "StickyKey", "{ sticky_key = 'user-7' }", {.keep = false, .stickyKey = "user-7"}},
        ReturnCase{"PoolBackendAndStickyKey",
                   "{ pool = 'p', backend = 'b', sticky_key = 'k' }",
                   {.keep = false, .pool = "p", .backend = "b", .stickyKey = "k"}},
        ReturnCase{"LocalAnswer",
                   "{ status = 403, body = 'no', headers = { ['X-Reason'] = 'tenant', "
                   "['content-type'] = 'text/plain' } }",
                   {.keep = false,
                    .status = 403,
                    .body = "no",
                    .headers = {{"x-reason", "tenant"}, {"content-type", "text/plain"}}}},
        ReturnCase{"StatusAlone", "{ status = 204 }", {.keep = false, .status = 204}},
        ReturnCase{"LowestStatus", "{ status = 200 }", {.keep = false, .status = 200}},
        ReturnCase{"HighestStatus", "{ status = 599 }", {.keep = false, .status = 599}},
        ReturnCase{"LocalAnswerMayRedirect",
                   "{ status = 302, headers = { Location = '/login' } }",
                   {.keep = false, .status = 302, .headers = {{"location", "/login"}}}},
        ReturnCase{"SetHeadersLowerCased",
                   "{ set_headers = { ['X-A'] = '1', ['x-b'] = '' } }",
                   {.keep = false, .setHeaders = {{"x-a", "1"}, {"x-b", ""}}}},
        ReturnCase{"SetHeaderValueMayHoldTabAndObsText",
                   "{ set_headers = { ['x-a'] = 'a\\tb \\xff' } }",
                   {.keep = false, .setHeaders = {{"x-a", "a\tb \xff"}}}},
        ReturnCase{"SetHeaderHostAllowed",
                   "{ set_headers = { Host = 'internal.test' } }",
                   {.keep = false, .setHeaders = {{"host", "internal.test"}}}},
        ReturnCase{"RemoveHeadersLowerCasedInOrder",
                   "{ remove_headers = { 'X-B', 'x-c' } }",
                   {.keep = false, .removeHeaders = {"x-b", "x-c"}}},
        ReturnCase{"RemoveHeadersEmptyList", "{ remove_headers = {} }", {.keep = false}},
        ReturnCase{"RoutingAndEdits",
                   "{ pool = 'p', set_headers = { ['x-user'] = 'u' }, remove_headers = { "
                   "'cookie' } }",
                   {.keep = false,
                    .pool = "p",
                    .setHeaders = {{"x-user", "u"}},
                    .removeHeaders = {"cookie"}}}),
    [](const auto& info) { return info.param.name; });

struct RejectCase {
  std::string name;
  std::string returned;
  std::string error;  // the whole message
};

void PrintTo(const RejectCase& c, std::ostream* os) { *os << c.name; }

class RequestRejectTest : public EngineTest, public ::testing::WithParamInterface<RejectCase> {};

TEST_P(RequestRejectTest, RefusesWithMessage) {
  const RejectCase& c = GetParam();
  ASSERT_TRUE(boot("function f(req) return " + c.returned + " end\n" +
                   "function ok(req) return { pool = 'ok' } end"));
  const RequestResult r = call("f");
  EXPECT_EQ(r.error, c.error);
  // A rejected result carries nothing else out.
  EXPECT_TRUE(r.keep);
  EXPECT_FALSE(r.pool);
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(r.setHeaders.empty());
  EXPECT_EQ(probe("ok"), "ok");
}

INSTANTIATE_TEST_SUITE_P(
    Rejects, RequestRejectTest,
    ::testing::Values(
        RejectCase{"String", "'beta'", "on_request must return nil or a table, got string"},
        RejectCase{"Number", "42", "on_request must return nil or a table, got number"},
        RejectCase{"Boolean", "false", "on_request must return nil or a table, got boolean"},
        RejectCase{"UnknownKey", "{ pol = 'beta' }", "on_request returned an unknown key 'pol'"},
        RejectCase{"ListEntry", "{ 'beta' }", "on_request returned a table with a number key"},
        RejectCase{"PoolNotString", "{ pool = 5 }",
                   "on_request: 'pool' must be a string, got number"},
        RejectCase{"BackendNotString", "{ backend = {} }",
                   "on_request: 'backend' must be a string, got table"},
        RejectCase{"StickyKeyNotString", "{ sticky_key = true }",
                   "on_request: 'sticky_key' must be a string, got boolean"},
        RejectCase{"Status199", "{ status = 199 }",
                   "on_request: 'status' must be 200-599, got 199"},
        RejectCase{"Status600", "{ status = 600 }",
                   "on_request: 'status' must be 200-599, got 600"},
        RejectCase{"StatusHuge", "{ status = 1 << 40 }",
                   "on_request: 'status' must be 200-599, got 1099511627776"},
        RejectCase{"StatusFraction", "{ status = 403.5 }",
                   "on_request: 'status' must be an integer"},
        RejectCase{"StatusString", "{ status = '403' }", "on_request: 'status' must be an integer"},
        RejectCase{"BodyWithoutStatus", "{ body = 'x' }",
                   "on_request: 'body' and 'headers' answer locally and need 'status'"},
        RejectCase{"HeadersWithoutStatus", "{ headers = { ['x-a'] = '1' } }",
                   "on_request: 'body' and 'headers' answer locally and need 'status'"},
        RejectCase{"StatusWithPool", "{ status = 403, pool = 'p' }",
                   "on_request returned both a local answer ('status') and routing fields"},
        RejectCase{"StatusWithSetHeaders", "{ status = 403, set_headers = { ['x-a'] = '1' } }",
                   "on_request returned both a local answer ('status') and routing fields"},
        RejectCase{"BodyNotString", "{ status = 200, body = 1 }",
                   "on_request: 'body' must be a string, got number"},
        RejectCase{"SetHeadersNotTable", "{ set_headers = 'x-a: 1' }",
                   "on_request: 'set_headers' must be a table, got string"},
        RejectCase{"SetHeaderValueNotString", "{ set_headers = { ['x-a'] = 1 } }",
                   "on_request: 'set_headers' must map header names to string values"},
        RejectCase{"SetHeaderNameWithSpace", "{ set_headers = { ['x a'] = '1' } }",
                   "on_request: set_headers: invalid header name 'x a'"},
        RejectCase{"SetHeaderNameEmpty", "{ set_headers = { [''] = '1' } }",
                   "on_request: set_headers: invalid header name ''"},
        RejectCase{"SetHeaderNameWithColon", "{ set_headers = { ['x:a'] = '1' } }",
                   "on_request: set_headers: invalid header name 'x:a'"},
        RejectCase{"SetHeaderValueWithCR", "{ set_headers = { ['x-a'] = 'a\\rb' } }",
                   "on_request: set_headers: the value of 'x-a' holds a control character (CR, "
                   "LF, NUL...)"},
        RejectCase{"SetHeaderValueWithLF", "{ set_headers = { ['x-a'] = 'a\\nx-b: 1' } }",
                   "on_request: set_headers: the value of 'x-a' holds a control character (CR, "
                   "LF, NUL...)"},
        RejectCase{"SetHeaderValueWithNUL", "{ set_headers = { ['x-a'] = 'a\\0b' } }",
                   "on_request: set_headers: the value of 'x-a' holds a control character (CR, "
                   "LF, NUL...)"},
        RejectCase{"SetHeaderValueWithDEL", "{ set_headers = { ['x-a'] = 'a\\127' } }",
                   "on_request: set_headers: the value of 'x-a' holds a control character (CR, "
                   "LF, NUL...)"},
        RejectCase{"SetContentLength", "{ set_headers = { ['Content-Length'] = '0' } }",
                   "on_request: set_headers: 'content-length' is managed by wsgate"},
        RejectCase{"SetTransferEncoding", "{ set_headers = { ['transfer-encoding'] = 'x' } }",
                   "on_request: set_headers: 'transfer-encoding' is managed by wsgate"},
        RejectCase{"SetConnection", "{ set_headers = { connection = 'close' } }",
                   "on_request: set_headers: 'connection' is managed by wsgate"},
        RejectCase{"SetUpgrade", "{ set_headers = { upgrade = 'h2c' } }",
                   "on_request: set_headers: 'upgrade' is managed by wsgate"},
        RejectCase{"SetSecWebSocketKey", "{ set_headers = { ['Sec-WebSocket-Key'] = 'x' } }",
                   "on_request: set_headers: 'sec-websocket-key' is managed by wsgate"},
        RejectCase{"SetXForwardedFor", "{ set_headers = { ['X-Forwarded-For'] = '1.2.3.4' } }",
                   "on_request: set_headers: 'x-forwarded-for' is managed by wsgate"},
        RejectCase{"AnswerContentLength",
                   "{ status = 200, headers = { ['content-length'] = '9' } }",
                   "on_request: headers: 'content-length' is managed by wsgate"},
        RejectCase{"AnswerHeaderValueWithLF",
                   "{ status = 200, headers = { ['x-a'] = '\\r\\nx: y' } }",
                   "on_request: headers: the value of 'x-a' holds a control character (CR, LF, "
                   "NUL...)"},
        RejectCase{"RemoveHeadersString", "{ remove_headers = 'x-b' }",
                   "on_request: 'remove_headers' must be a list, got string"},
        RejectCase{"RemoveHeadersMap", "{ remove_headers = { ['x-b'] = true } }",
                   "on_request: 'remove_headers' must be a list, got a table with a string key"},
        RejectCase{"RemoveHeadersHoles", "{ remove_headers = { 'x-a', nil, 'x-c' } }",
                   "on_request: 'remove_headers' must be a list, got a table with a hole"},
        RejectCase{"RemoveHeadersNumber", "{ remove_headers = { 5 } }",
                   "on_request: 'remove_headers' must list header names (strings)"},
        RejectCase{"RemoveHeadersBadName", "{ remove_headers = { 'x b' } }",
                   "on_request: remove_headers: invalid header name 'x b'"},
        RejectCase{"RemoveContentLength", "{ remove_headers = { 'Content-Length' } }",
                   "on_request: remove_headers: 'content-length' is managed by wsgate"},
        RejectCase{"RemoveSecWebSocketKey", "{ remove_headers = { 'sec-websocket-key' } }",
                   "on_request: remove_headers: 'sec-websocket-key' is managed by wsgate"}),
    [](const auto& info) { return info.param.name; });

// Lua's own errors and errors with odd objects come back as text, never as a crash.
TEST_F(RequestRejectTest, ErrorObjectsOfAnyType) {
  ASSERT_TRUE(boot(R"(
function table_error(req) error({}) end
function nil_error(req) error(nil) end
function string_error(req) error("plain", 0) end
function empty_error(req) error("", 0) end
)"));
  EXPECT_EQ(call("table_error").error, "test.lua: error object is a table value");
  EXPECT_EQ(call("nil_error").error, "test.lua: error object is a nil value");
  EXPECT_EQ(call("string_error").error, "plain");
  EXPECT_EQ(call("empty_error").error, "test.lua: error with an empty message");
}

}  // namespace
}  // namespace wsgate::scripting
