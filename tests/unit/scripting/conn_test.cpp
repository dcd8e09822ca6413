// The connection hooks (on_open, on_message, on_close) and what lives across calls: a
// connection's `vars`, the worker's `wsgate.shared`, and the log and clock a script can use.
#include <gtest/gtest.h>

#include <chrono>
#include <ostream>
#include <string>
#include <vector>

#include "engine_fixture.h"

namespace wsgate::scripting {
namespace {

using testing::EngineTest;
using Action = MessageResult::Action;

class ConnTest : public EngineTest {
protected:
  int open(const ConnInfo& info) {
    HookError err;
    const int conn = engine_->openConn(info, err);
    EXPECT_FALSE(err.failed()) << err.error;
    EXPECT_GT(conn, 0);
    return conn;
  }
  int open(uint64_t id) { return open(ConnInfo{.id = id}); }

  // What on_message returned as a replacement, or a description of the other action.
  std::string text(int conn, std::string_view data = "", Direction dir = Direction::Client) {
    const MessageResult r = engine_->onMessage(conn, dir, {.text = true, .data = data});
    if (r.action == Action::Replace) return r.data;
    if (r.action == Action::Error) return "error: " + r.reason;
    return "action " + std::to_string(static_cast<int>(r.action));
  }
};

TEST_F(ConnTest, ConnTableHoldsSessionFields) {
  ASSERT_TRUE(boot(R"(
function on_open(conn)
  conn.vars.seen = string.format("%s|%s|%s|%s|%s", math.type(conn.id), conn.id, conn.pool,
                                 conn.backend, conn.client_ip)
end
function on_message(conn, dir, msg)
  return conn.vars.seen .. "|" .. string.format("%s|%s|%s|%s", conn.id, conn.pool, conn.backend,
                                                conn.client_ip)
end
)"));
  const int conn = open({.id = 42, .pool = "chat", .backend = "c1", .clientIp = "2001:db8::1"});
  EXPECT_EQ(text(conn), "integer|42|chat|c1|2001:db8::1|42|chat|c1|2001:db8::1");
}

TEST_F(ConnTest, OpenWithoutOnOpenStillMakesTable) {
  ASSERT_TRUE(boot("function on_message(conn) return tostring(conn.id) .. type(conn.vars) end"));
  const int conn = open(7);
  EXPECT_EQ(text(conn), "7table");
  EXPECT_FALSE(engine_->closeConn(conn, 1000).failed());
}

TEST_F(ConnTest, VarsPersistAcrossMessagesOfOneConnection) {
  ASSERT_TRUE(boot(R"(
function on_message(conn, dir, msg)
  conn.vars.n = (conn.vars.n or 0) + 1
  return conn.id .. ":" .. conn.vars.n
end
)"));
  const int a = open(1);
  const int b = open(2);
  EXPECT_EQ(text(a), "1:1");
  EXPECT_EQ(text(a), "1:2");
  EXPECT_EQ(text(b), "2:1");
  EXPECT_EQ(text(a), "1:3");
  EXPECT_EQ(text(b), "2:2");
}

// Once closed, nothing holds a connection's table: a weak table sees it go.
TEST_F(ConnTest, CloseFreesConnTable) {
  ASSERT_TRUE(boot(R"(
live = setmetatable({}, { __mode = "k" })
function on_open(conn) live[conn.vars] = true end
function on_message(conn, dir, msg)
  collectgarbage()
  collectgarbage()
  local n = 0
  for _ in pairs(live) do n = n + 1 end
  return tostring(n)
end
)"));
  const int probeConn = open(0);
  std::vector<int> conns;
  for (uint64_t id = 1; id <= 10; ++id) conns.push_back(open(id));
  EXPECT_EQ(text(probeConn), "11");
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(engine_->closeConn(conns[i], 1000).failed());
  EXPECT_EQ(text(probeConn), "7");
  for (int i = 4; i < 10; ++i) engine_->closeConn(conns[i], 1001);
  EXPECT_EQ(text(probeConn), "1");
}

TEST_F(ConnTest, CloseReleasesMemory) {
  ASSERT_TRUE(boot(R"(
function on_open(conn) conn.vars.blob = string.rep(tostring(conn.id), 10000) end
function on_message(conn) collectgarbage() collectgarbage() end
)"));
  const int probeConn = open(0);
  text(probeConn);
  const std::size_t before = engine_->memoryUsed();
  std::vector<int> conns;
  for (uint64_t id = 1; id <= 50; ++id) conns.push_back(open(id));
  text(probeConn);
  const std::size_t opened = engine_->memoryUsed();
  EXPECT_GT(opened, before + 50 * 10000);
  for (int conn : conns) engine_->closeConn(conn, 1000);
  text(probeConn);
  EXPECT_LT(engine_->memoryUsed(), before + 10000);
}

TEST_F(ConnTest, HandlesAreReusedAfterCloseWithFreshVars) {
  ASSERT_TRUE(boot(R"(
function on_message(conn)
  local before = conn.vars.mark
  conn.vars.mark = conn.id
  return tostring(before)
end
)"));
  const int a = open(1);
  EXPECT_EQ(text(a), "nil");
  engine_->closeConn(a, 1000);
  const int b = open(2);
  EXPECT_EQ(text(b), "nil");
  EXPECT_EQ(text(b), "2");
}

TEST_F(ConnTest, OnCloseGetsConnAndCode) {
  ASSERT_TRUE(boot(R"(
closed = {}
function on_open(conn) conn.vars.tag = "t" .. conn.id end
function on_close(conn, code)
  closed[#closed + 1] = conn.vars.tag .. ":" .. math.type(code) .. ":" .. code
end
function probe(req) return { pool = table.concat(closed, ",") } end
)"));
  const int a = open(1);
  const int b = open(2);
  EXPECT_FALSE(engine_->closeConn(b, 4000).failed());
  EXPECT_FALSE(engine_->closeConn(a, 1006).failed());
  EXPECT_EQ(probe("probe"), "t2:integer:4000,t1:integer:1006");
}

TEST_F(ConnTest, OnOpenErrorKeepsHandleForClose) {
  ASSERT_TRUE(boot(R"(
closed = 0
function on_open(conn) error("no " .. conn.id) end
function on_close(conn, code) closed = closed + 1 end
function probe(req) return { pool = tostring(closed) } end
)"));
  HookError err;
  const int conn = engine_->openConn({.id = 9}, err);
  EXPECT_EQ(err.error, "test.lua:3: no 9");
  ASSERT_GT(conn, 0);
  EXPECT_FALSE(engine_->closeConn(conn, 1011).failed());
  EXPECT_EQ(probe("probe"), "1");
}

TEST_F(ConnTest, OnCloseErrorStillFreesTable) {
  ASSERT_TRUE(boot(R"(
live = setmetatable({}, { __mode = "k" })
function on_open(conn) live[conn] = true end
function on_close(conn, code) error("close " .. code) end
function probe(req)
  collectgarbage()
  local n = 0
  for _ in pairs(live) do n = n + 1 end
  return { pool = tostring(n) }
end
)"));
  const int conn = open(1);
  EXPECT_EQ(probe("probe"), "1");
  EXPECT_EQ(engine_->closeConn(conn, 1000).error, "test.lua:4: close 1000");
  EXPECT_EQ(probe("probe"), "0");
}

TEST_F(ConnTest, ClosingNoHandleDoesNothing) {
  ASSERT_TRUE(boot("function on_close(conn, code) error('called') end"));
  EXPECT_FALSE(engine_->closeConn(0, 1000).failed());
}

TEST_F(ConnTest, HooksAreDetected) {
  ASSERT_TRUE(boot("function on_request(req) end"));
  EXPECT_FALSE(engine_->hasOnMessage());
  ASSERT_TRUE(boot("function on_message(conn, dir, msg) end"));
  EXPECT_TRUE(engine_->hasOnMessage());
  ASSERT_TRUE(boot("on_message = 'not a function'"));
  EXPECT_FALSE(engine_->hasOnMessage());
}

TEST_F(ConnTest, MessageSeesDirectionOpcodeAndData) {
  ASSERT_TRUE(boot(R"(
function on_message(conn, dir, msg) return dir .. " " .. msg.opcode .. " " .. msg.data end
)"));
  const int conn = open(1);
  struct Case {
    Direction dir;
    bool text;
    std::string_view data;
    std::string_view expect;
  };
  const Case cases[] = {
      {Direction::Client, true, "hi", "client text hi"},
      {Direction::Backend, true, "yo", "backend text yo"},
      {Direction::Client, false, std::string_view("\0\x01\xff", 3),
       std::string_view("client binary \0\x01\xff", 17)},
      {Direction::Backend, false, "", "backend binary "},
  };
  for (const Case& c : cases) {
    const MessageResult r = engine_->onMessage(conn, c.dir, {.text = c.text, .data = c.data});
    EXPECT_EQ(r.action, Action::Replace) << r.reason;
    EXPECT_EQ(r.data, c.expect);
  }
}

struct MessageCase {
  std::string name;
  std::string returned;  // Lua expression on_message returns
  Action action;
  std::string data;    // Replace
  uint16_t code = 0;   // Close
  std::string reason;  // Close: the reason; Error: the whole message
  bool text = true;    // the message's opcode
};

void PrintTo(const MessageCase& c, std::ostream* os) { *os << c.name; }

class MessageReturnTest : public ConnTest, public ::testing::WithParamInterface<MessageCase> {};

TEST_P(MessageReturnTest, ReadsReturn) {
  const MessageCase& c = GetParam();
  ASSERT_TRUE(boot("function on_message(conn, dir, msg) return " + c.returned + " end\n" +
                   "function ok(req) return { pool = 'ok' } end"));
  const int conn = open(1);
  const MessageResult r =
      engine_->onMessage(conn, Direction::Client, {.text = c.text, .data = "m"});
  EXPECT_EQ(r.action, c.action);
  EXPECT_EQ(r.data, c.data);
  EXPECT_EQ(r.code, c.code);
  EXPECT_EQ(r.reason, c.reason);
  EXPECT_EQ(probe("ok"), "ok");
}

const std::string k123(123, 'r');

INSTANTIATE_TEST_SUITE_P(
    Returns, MessageReturnTest,
    ::testing::Values(
        MessageCase{"NilPasses", "nil", Action::Pass},
        MessageCase{"PassString", "'pass'", Action::Pass},
        MessageCase{"Drop", "'drop'", Action::Drop},
        MessageCase{"Replacement", "msg.data:upper() .. '!'", Action::Replace, "M!"},
        MessageCase{"EmptyReplacement", "''", Action::Replace, ""},
        MessageCase{"BinaryReplacementAnyBytes", "'\\xff\\0'", Action::Replace,
                    std::string("\xff\0", 2), 0, "", false},
        MessageCase{"Close1000", "{ close = 1000 }", Action::Close, "", 1000},
        MessageCase{"Close3000WithReason", "{ close = 3000, reason = 'bye' }", Action::Close, "",
                    3000, "bye"},
        MessageCase{"Close4999", "{ close = 4999 }", Action::Close, "", 4999},
        MessageCase{"CloseReason123Bytes", "{ close = 4000, reason = string.rep('r', 123) }",
                    Action::Close, "", 4000, k123},
        MessageCase{"CloseReasonUtf8", "{ close = 4000, reason = 'f\\u{e9}e \\u{1F600}' }",
                    Action::Close, "", 4000,
                    "f\xc3\xa9"
                    "e \xf0\x9f\x98\x80"},
        MessageCase{"Close999", "{ close = 999 }", Action::Error, "", 0,
                    "on_message: close code must be 1000 or 3000-4999, got 999"},
        MessageCase{"Close1001", "{ close = 1001 }", Action::Error, "", 0,
                    "on_message: close code must be 1000 or 3000-4999, got 1001"},
        MessageCase{"Close1011", "{ close = 1011 }", Action::Error, "", 0,
                    "on_message: close code must be 1000 or 3000-4999, got 1011"},
        MessageCase{"Close2999", "{ close = 2999 }", Action::Error, "", 0,
                    "on_message: close code must be 1000 or 3000-4999, got 2999"},
        MessageCase{"Close5000", "{ close = 5000 }", Action::Error, "", 0,
                    "on_message: close code must be 1000 or 3000-4999, got 5000"},
        MessageCase{"CloseHuge", "{ close = (1 << 32) + 1000 }", Action::Error, "", 0,
                    "on_message: close code must be 1000 or 3000-4999, got 4294968296"},
        MessageCase{"CloseFraction", "{ close = 1000.5 }", Action::Error, "", 0,
                    "on_message: a returned table needs 'close' = a close code"},
        MessageCase{"CloseString", "{ close = '1000' }", Action::Error, "", 0,
                    "on_message: a returned table needs 'close' = a close code"},
        MessageCase{"TableWithoutClose", "{ reason = 'x' }", Action::Error, "", 0,
                    "on_message: a returned table needs 'close' = a close code"},
        MessageCase{"CloseReason124Bytes", "{ close = 4000, reason = string.rep('r', 124) }",
                    Action::Error, "", 0, "on_message: close reason over 123 bytes"},
        MessageCase{"CloseReasonNotString", "{ close = 4000, reason = 5 }", Action::Error, "", 0,
                    "on_message: 'reason' must be a string"},
        MessageCase{"CloseReasonNotUtf8", "{ close = 4000, reason = '\\xff' }", Action::Error, "",
                    0, "on_message: close reason is not valid UTF-8"},
        MessageCase{"CloseReasonSurrogate", "{ close = 4000, reason = '\\xed\\xa0\\x80' }",
                    Action::Error, "", 0, "on_message: close reason is not valid UTF-8"},
        MessageCase{"Number", "42", Action::Error, "", 0,
                    "on_message must return nil, \"pass\", \"drop\", a string or { close = code "
                    "}, got number"},
        MessageCase{"Boolean", "true", Action::Error, "", 0,
                    "on_message must return nil, \"pass\", \"drop\", a string or { close = code "
                    "}, got boolean"},
        MessageCase{"Function", "print", Action::Error, "", 0,
                    "on_message must return nil, \"pass\", \"drop\", a string or { close = code "
                    "}, got function"}),
    [](const auto& info) { return info.param.name; });

TEST_F(ConnTest, MessageErrorNamesFileAndLine) {
  ASSERT_TRUE(boot("function on_message(conn, dir, msg)\n  return msg.nope.x\nend"));
  const int conn = open(1);
  const MessageResult r = engine_->onMessage(conn, Direction::Client, {.data = "x"});
  EXPECT_EQ(r.action, Action::Error);
  EXPECT_EQ(r.reason.rfind("test.lua:2: attempt to index a nil value", 0), 0u) << r.reason;
}

// A handle that is not (or no longer) a connection is an error, not another session's table.
TEST_F(ConnTest, StaleHandleIsError) {
  ASSERT_TRUE(boot(R"(
function on_message(conn) return type(conn) end
function on_close(conn, code) closed = (closed or 0) + 1 end
function probe(req) return { pool = tostring(closed) } end
)"));
  const int a = open(1);
  EXPECT_FALSE(engine_->closeConn(a, 1000).failed());
  EXPECT_EQ(text(a), "error: test.lua: no connection " + std::to_string(a));
  EXPECT_EQ(engine_->closeConn(a, 1000).error, "test.lua: no connection " + std::to_string(a));
  EXPECT_EQ(probe("probe"), "1");
  // The double close did not corrupt the free list: two new connections get two tables.
  const int b = open(2);
  const int c = open(3);
  EXPECT_NE(b, c);
  EXPECT_EQ(text(b), "table");
  EXPECT_EQ(text(c), "table");
  for (int bogus : {-1, 1, 2, 3, 12345}) {
    if (bogus == b || bogus == c) continue;
    EXPECT_EQ(text(bogus), "error: test.lua: no connection " + std::to_string(bogus));
  }
}

// --- what lives across calls -----------------------------------------------------------

TEST_F(ConnTest, SharedPersistsWithinEngineAndIsSeparateBetweenEngines) {
  const std::string source = R"(
function count(req)
  wsgate.shared.n = (wsgate.shared.n or 0) + 1
  return { pool = tostring(wsgate.shared.n) }
end
function on_message(conn)
  wsgate.shared.n = (wsgate.shared.n or 0) + 10
  return tostring(wsgate.shared.n)
end
)";
  ASSERT_TRUE(boot(source));
  EnginePtr other = bootAnother(source);
  ASSERT_TRUE(other);
  EXPECT_EQ(probe("count"), "1");
  EXPECT_EQ(probe("count"), "2");
  EXPECT_EQ(text(open(1)), "12");
  EXPECT_EQ(other->onRequest("count", {.method = "GET"}).pool.value_or(""), "1");
  EXPECT_EQ(probe("count"), "13");
}

struct LogCase {
  std::string name;
  std::string statement;
  LogLevel level;
  std::string text;  // a prefix of the logged text
};

void PrintTo(const LogCase& c, std::ostream* os) { *os << c.name; }

class LogTest : public EngineTest, public ::testing::WithParamInterface<LogCase> {};

TEST_P(LogTest, ReachesLogFn) {
  const LogCase& c = GetParam();
  ASSERT_TRUE(boot("function f(req) " + c.statement + " end"));
  const std::size_t before = logs().size();
  const RequestResult r = call("f");
  ASSERT_FALSE(r.failed()) << r.error;
  ASSERT_EQ(logs().size(), before + 1);
  EXPECT_EQ(logs().back().level, c.level);
  EXPECT_EQ(logs().back().text.substr(0, c.text.size()), c.text);
}

INSTANTIATE_TEST_SUITE_P(
    Levels, LogTest,
    ::testing::Values(
        LogCase{"Debug", "wsgate.log('debug', 'd')", LogLevel::Debug, "d"},
        LogCase{"Info", "wsgate.log('info', 'i')", LogLevel::Info, "i"},
        LogCase{"Warn", "wsgate.log('warn', 'w')", LogLevel::Warn, "w"},
        LogCase{"Error", "wsgate.log('error', 'e')", LogLevel::Error, "e"},
        LogCase{"ArgumentsJoinedWithSpaces", "wsgate.log('info', 'a', 1, 2.5, true, nil)",
                LogLevel::Info, "a 1 2.5 true nil"},
        LogCase{"NoText", "wsgate.log('info')", LogLevel::Info, ""},
        LogCase{"TableShownAsTostring", "wsgate.log('info', {})", LogLevel::Info, "table: "},
        LogCase{"TostringMetamethod",
                "wsgate.log('info', setmetatable({}, { __tostring = function() return 'T' end }))",
                LogLevel::Info, "T"},
        LogCase{"PrintIsInfo", "print('p', 1)", LogLevel::Info, "p 1"},
        LogCase{"WarnIsWarn", "warn('careful', ' now')", LogLevel::Warn,
                "Lua warning: careful now"}),
    [](const auto& info) { return info.param.name; });

TEST_F(LogTest, UnknownLevelIsError) {
  ASSERT_TRUE(boot("function f(req) wsgate.log('loud', 'x') end"));
  const RequestResult r = call("f");
  EXPECT_NE(r.error.find("invalid option 'loud'"), std::string::npos) << r.error;
  EXPECT_TRUE(logs().empty());
}

TEST_F(LogTest, LogWithoutLogFnIsQuiet) {
  std::string error;
  ScriptPtr script =
      checkScript("quiet.lua", "function f(req) print('x') wsgate.log('error', 'y') warn('z') end",
                  testing::kTestLimits, error);
  ASSERT_TRUE(script) << error;
  EnginePtr engine = Engine::create(script, nullptr, error);
  ASSERT_TRUE(engine) << error;
  EXPECT_FALSE(engine->onRequest("f", {}).failed());
}

TEST_F(EngineTest, NowIsWallClockSeconds) {
  ASSERT_TRUE(boot(R"(
function f(req) return { pool = string.format("%.6f", wsgate.now()) } end
function g(req) return { pool = math.type(wsgate.now()) } end
)"));
  const double before =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const double now = std::stod(probe("f"));
  const double after =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_GE(now, before - 0.001);
  EXPECT_LE(now, after + 0.001);
  EXPECT_EQ(probe("g"), "float");
}

}  // namespace
}  // namespace wsgate::scripting
