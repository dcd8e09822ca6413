// What a script cannot do: reach the file system, the process or the debug library, load
// bytecode, or run a worker out of CPU or memory (instructions, memory, recursion, finalizers,
// patterns). Each escape is tried, refused, and the engine answers the next call.
#include "scripting/sandbox.h"

#include <gtest/gtest.h>

#include <chrono>
#include <ostream>
#include <string>

#include "engine_fixture.h"

namespace wsgate::scripting {
namespace {

using testing::EngineTest;

struct GlobalCase {
  std::string expr;
  std::string type;  // what type(expr) is in the sandbox
};

void PrintTo(const GlobalCase& c, std::ostream* os) { *os << c.expr; }

std::string globalName(const ::testing::TestParamInfo<GlobalCase>& info) {
  std::string name = info.param.expr;
  for (char& ch : name) {
    if (ch == '.') ch = '_';
  }
  return name;
}

class SandboxGlobalTest : public EngineTest, public ::testing::WithParamInterface<GlobalCase> {};

TEST_P(SandboxGlobalTest, HasType) {
  const GlobalCase& c = GetParam();
  ASSERT_TRUE(boot("function f(req) return { pool = type(" + c.expr + ") } end"));
  EXPECT_EQ(probe("f"), c.type);
}

INSTANTIATE_TEST_SUITE_P(
    Absent, SandboxGlobalTest,
    ::testing::Values(GlobalCase{"io", "nil"}, GlobalCase{"os.execute", "nil"},
                      GlobalCase{"os.getenv", "nil"}, GlobalCase{"os.exit", "nil"},
                      GlobalCase{"os.remove", "nil"}, GlobalCase{"os.rename", "nil"},
                      GlobalCase{"os.tmpname", "nil"}, GlobalCase{"require", "nil"},
                      GlobalCase{"package", "nil"}, GlobalCase{"debug", "nil"},
                      GlobalCase{"dofile", "nil"}, GlobalCase{"loadfile", "nil"},
                      GlobalCase{"coroutine", "nil"}, GlobalCase{"string.dump", "nil"}),
    globalName);

INSTANTIATE_TEST_SUITE_P(
    Present, SandboxGlobalTest,
    ::testing::Values(GlobalCase{"load", "function"}, GlobalCase{"os.time", "function"},
                      GlobalCase{"os.clock", "function"}, GlobalCase{"string.find", "function"},
                      GlobalCase{"string.gsub", "function"}, GlobalCase{"table.concat", "function"},
                      GlobalCase{"math.floor", "function"}, GlobalCase{"utf8.char", "function"},
                      GlobalCase{"pcall", "function"}, GlobalCase{"xpcall", "function"},
                      GlobalCase{"setmetatable", "function"}, GlobalCase{"wsgate.log", "function"},
                      GlobalCase{"wsgate.now", "function"}, GlobalCase{"wsgate.shared", "table"}),
    globalName);

struct EscapeCase {
  std::string name;
  std::string body;   // the body of a hook
  std::string error;  // a part of the error it must give
};

void PrintTo(const EscapeCase& c, std::ostream* os) { *os << c.name; }

class SandboxEscapeTest : public EngineTest, public ::testing::WithParamInterface<EscapeCase> {};

TEST_P(SandboxEscapeTest, RefusedAndEngineGoesOn) {
  const EscapeCase& c = GetParam();
  ASSERT_TRUE(boot("function f(req)\n" + c.body + "\nend\n" +
                   "function ok(req) return { pool = 'ok' .. #string.rep('x', 1000) } end"));
  const auto start = std::chrono::steady_clock::now();
  const RequestResult r = call("f");
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.failed());
  EXPECT_NE(r.error.find(c.error), std::string::npos) << r.error;
  EXPECT_LT(took, std::chrono::seconds(1));
  EXPECT_EQ(probe("ok"), "ok1000");
  EXPECT_EQ(probe("ok"), "ok1000");
}

// A binary chunk as string.dump would make it: the signature, then anything.
constexpr std::string_view kBinaryChunk = R"("\27Lua\x54\0\x19\x93\r\n\x1a\n\4\8\8xV\0\0")";

INSTANTIATE_TEST_SUITE_P(
    Escapes, SandboxEscapeTest,
    ::testing::Values(
        EscapeCase{"IoOpen", "io.open('/etc/passwd')", "global 'io'"},
        EscapeCase{"OsExecute", "os.execute('true')", "field 'execute'"},
        EscapeCase{"OsGetenv", "return { pool = os.getenv('HOME') }", "field 'getenv'"},
        EscapeCase{"OsExit", "os.exit(1)", "field 'exit'"},
        EscapeCase{"Require", "require('io')", "global 'require'"},
        EscapeCase{"PackageLoadlib", "package.loadlib('libc.so.6', 'system')", "global 'package'"},
        EscapeCase{"DebugGetinfo", "debug.sethook()", "global 'debug'"},
        EscapeCase{"Dofile", "dofile('/etc/passwd')", "global 'dofile'"},
        EscapeCase{"Loadfile", "loadfile('/etc/passwd')", "global 'loadfile'"},
        EscapeCase{"StringDump", "string.dump(function() end)", "field 'dump'"},
        EscapeCase{"Coroutine", "coroutine.wrap(function() end)", "global 'coroutine'"},
        EscapeCase{"LoadBinaryChunk",
                   "local f, err = load(" + std::string(kBinaryChunk) + ")\nerror(err)",
                   "attempt to load a binary chunk (mode is 't')"},
        EscapeCase{"LoadBinaryChunkAskingForBinaryMode",
                   "local f, err = load(" + std::string(kBinaryChunk) + ", 'x', 'b')\nerror(err)",
                   "attempt to load a binary chunk (mode is 't')"},
        EscapeCase{"LoadFromReaderFunction", "load(function() return nil end)",
                   "string expected, got function"},
        EscapeCase{"StringRepBomb", "local s = string.rep('x', 1 << 30)", "memory limit"},
        EscapeCase{"StringRepSeparatorBomb", "local s = string.rep('x', 1 << 28, 'yy')",
                   "memory limit"},
        EscapeCase{"GrowingTable",
                   "local t = {}\nwhile true do t[#t + 1] = string.rep('x', 4096) .. #t end",
                   "memory limit"},
        EscapeCase{"EndlessLoop", "while true do end", "instruction limit"},
        EscapeCase{"EndlessLoopInsidePcall",
                   "while true do pcall(function() while true do end end) end",
                   "instruction limit"},
        EscapeCase{"ReturnAfterCatchingLimit",
                   "local ok = pcall(function() while true do end end)\nreturn { pool = 'ran on' }",
                   "instruction limit"},
        EscapeCase{"EndlessLoopInsideXpcallHandler",
                   "while true do xpcall(error, function() while true do end end) end",
                   "instruction limit"},
        EscapeCase{"EndlessLoopInCloseHandler",
                   "local x <close> = setmetatable({}, { __close = function() while true do end "
                   "end })\nerror('first')",
                   "instruction limit"},
        EscapeCase{"EndlessLoopInLoadedChunk", "load('while true do end')()", "instruction limit"},
        EscapeCase{"EndlessSortComparator",
                   "local t = {}\nfor i = 1, 100 do t[i] = i end\ntable.sort(t, function(a, b) "
                   "while true do end end)",
                   "instruction limit"},
        EscapeCase{"DeepLuaRecursionHitsALimit",
                   "local function f(n) return 1 + f(n + 1) end\nf(1)", "limit"},
        EscapeCase{"DeepCRecursion",
                   "local function f() return (string.gsub('x', 'x', f)) end\nf()",
                   "stack overflow"},
        EscapeCase{"IndexLoop",
                   "local t = setmetatable({}, {})\ngetmetatable(t).__index = t\nreturn t.x",
                   "'__index' chain too long"},
        EscapeCase{"TostringRecursion",
                   "local t\nt = setmetatable({}, { __tostring = function() return tostring(t) "
                   "end })\nreturn { pool = tostring(t) }",
                   "stack overflow"},
        EscapeCase{"RunawayPatternFind",
                   "return { pool = tostring(string.find(string.rep('a', 30000), '.-.-.-b')) }",
                   "pattern '.-.-.-b' may take up to"},
        EscapeCase{"RunawayPatternMethod",
                   "local s = string.rep('a', 30000)\nreturn { pool = tostring(s:find('.-.-.-b', "
                   "1)) }",
                   "over the call's budget"},
        EscapeCase{"RunawayPatternMatch", "string.match(string.rep('a', 30000), '(.-)(.-)b')",
                   "over the call's budget"},
        EscapeCase{"RunawayPatternGmatch",
                   "for x in string.gmatch(string.rep('a', 30000), '.-.-b') do end",
                   "over the call's budget"},
        EscapeCase{"RunawayPatternGsub", "string.gsub(string.rep('a', 30000), '.-.-b', '')",
                   "over the call's budget"},
        EscapeCase{"RunawayPatternGsubNumericReplacement",
                   "string.gsub(string.rep('a', 30000), '.-.-.-b', 999999)",
                   "over the call's budget"},
        EscapeCase{"RunawayPatternFindNotPlain",
                   "string.find(string.rep('a', 30000), '.-.-.-b', 1, false)",
                   "over the call's budget"},
        EscapeCase{"RunawayPatternMatchWithPlainArgument",
                   "string.match(string.rep('a', 30000), '.-.-.-b', 1, true)",
                   "over the call's budget"},
        EscapeCase{"ManyPatternsEachUnderTheGuard",
                   "local s = string.rep('a', 1400)\nfor i = 1, 1e6 do s:find('.-b') end",
                   "over the call's budget"},
        EscapeCase{"RunawayBackReference", "string.find(string.rep('a', 3000), '(.*)%1b')",
                   "over the call's budget"}),
    [](const auto& info) { return info.param.name; });

// Ordinary pattern use stays allowed under the same small budget.
struct PatternCase {
  std::string name;
  std::string expr;
  std::string expect;
};

void PrintTo(const PatternCase& c, std::ostream* os) { *os << c.name; }

class SandboxPatternTest : public EngineTest, public ::testing::WithParamInterface<PatternCase> {};

TEST_P(SandboxPatternTest, Allowed) {
  const PatternCase& c = GetParam();
  ASSERT_TRUE(
      boot("big = string.rep('a', 1000000) .. 'needle'\n"
           "function f(req) return { pool = tostring(" +
           c.expr + ") } end"));
  EXPECT_EQ(probe("f"), c.expect);
}

INSTANTIATE_TEST_SUITE_P(
    Patterns, SandboxPatternTest,
    ::testing::Values(
        PatternCase{"AnchoredCaptures",
                    "select(2, ('user=alice'):find('^(%w+)=(%w+)$')) .. ','"
                    " .. select(4, ('user=alice'):find('^(%w+)=(%w+)$'))",
                    "10,alice"},
        PatternCase{"MatchShortUnanchored", "('room-42/chat'):match('%d+')", "42"},
        PatternCase{"GsubShort", "(('hello world'):gsub('o', '0'))", "hell0 w0rld"},
        PatternCase{"GmatchShort",
                    "(function() local n = 0 for w in ('a b c'):gmatch('%a') do n = n + 1 end "
                    "return n end)()",
                    "3"},
        PatternCase{"PlainFindOnLargeSubject", "big:find('needle', 1, true)", "1000001"},
        PatternCase{"LiteralFindOnLargeSubject", "big:find('needle')", "1000001"},
        PatternCase{"AnchoredQuantifierOnLargeSubject", "#big:match('^a+')", "1000000"},
        PatternCase{"InitNearEndOfLargeSubject", "big:find('n.-e', -6)", "1000001"},
        PatternCase{"GsubPatternWithNumericReplacement", "(('a-b'):gsub('%-', 7))", "a7b"}),
    [](const auto& info) { return info.param.name; });

// xpcall keeps its contract (the handler's value is the second result) though the handler
// runs after the unwinding.
TEST_F(EngineTest, XpcallStillHandles) {
  ASSERT_TRUE(boot(R"(
function results(...)
  local out = {}
  for i = 1, select("#", ...) do out[i] = tostring((select(i, ...))) end
  return { pool = table.concat(out, ",") }
end
function ok(req)
  return results(xpcall(function(a, b) return a + b, "x" end, error, 1, 2))
end
function handled(req)
  return results(xpcall(error, function(e) return "handled " .. e end, "boom", 0))
end
function handler_fails(req)
  return results(xpcall(error, function(e) error("again", 0) end, "boom"))
end
function no_handler(req) return xpcall(print) end
)"));
  EXPECT_EQ(probe("ok"), "true,3,x");
  EXPECT_EQ(probe("handled"), "false,handled boom");
  EXPECT_EQ(probe("handler_fails"), "false,again");
  EXPECT_NE(call("no_handler").error.find("bad argument #2 to 'xpcall'"), std::string::npos);
}

// setmetatable without __gc is the usual one.
TEST_F(EngineTest, SetmetatableStillWorks) {
  ASSERT_TRUE(boot(R"(
function f(req)
  local t = setmetatable({}, { __index = function(_, k) return k .. "!" end })
  local weak = setmetatable({}, { __mode = "k" })
  local locked = setmetatable({}, { __metatable = "locked" })
  local ok = pcall(setmetatable, locked, {})
  return { pool = t.x .. tostring(getmetatable(weak).__mode) .. getmetatable(locked) ..
                  tostring(ok) .. tostring(getmetatable(setmetatable(t, nil))) }
end
)"));
  EXPECT_EQ(probe("f"), "x!klockedfalsenil");
}

// --- finalizers --------------------------------------------------------------------------

// The collector runs __gc where the instruction hook cannot stop it (Lua turns hooks off
// inside finalizers), so a script may not install one: setmetatable refuses a __gc field,
// and one added later is never called.
TEST_F(EngineTest, GcMetamethodRefused) {
  ASSERT_TRUE(boot(R"(
function direct(req) setmetatable({}, { __gc = function() error("in gc") end }) end
function later(req)
  local mt = {}
  setmetatable({}, mt)
  mt.__gc = function() ran = true end
  collectgarbage()
  collectgarbage()
  return { pool = tostring(ran) }
end
function ok(req) return { pool = "ok" } end
)"));
  const RequestResult r = call("direct");
  ASSERT_TRUE(r.failed());
  EXPECT_NE(r.error.find("__gc"), std::string::npos) << r.error;
  EXPECT_EQ(probe("later"), "nil");
  EXPECT_EQ(probe("ok"), "ok");
}

TEST_F(EngineTest, GcMetamethodWithEndlessLoopCannotHangDestruction) {
  ASSERT_TRUE(boot(R"(
function direct(req) keep = setmetatable({}, { __gc = function() while true do end end }) end
function late(req)
  local mt = {}
  keep2 = setmetatable({}, mt)
  mt.__gc = function() while true do end end
end
)"));
  EXPECT_TRUE(call("direct").failed());
  EXPECT_FALSE(call("late").failed());
  const auto start = std::chrono::steady_clock::now();
  engine_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

// Lua warnings (warn(), or an error in a library's own finalizer) reach the LogFn.
TEST_F(EngineTest, WarningsAreLogged) {
  ASSERT_TRUE(boot("function f(req) warn('@on') warn('a ', 'b') warn('@off') warn('c') end"));
  ASSERT_FALSE(call("f").failed());
  ASSERT_EQ(logs().size(), 2u);
  EXPECT_EQ(logs()[0].level, LogLevel::Warn);
  EXPECT_EQ(logs()[0].text, "Lua warning: a b");
  EXPECT_EQ(logs()[1].text, "Lua warning: c");
}

// --- patternSteps ------------------------------------------------------------------------

struct StepsCase {
  std::string name;
  std::string pattern;
  std::size_t subject;
  double steps;
};

void PrintTo(const StepsCase& c, std::ostream* os) { *os << c.name; }

class PatternStepsTest : public ::testing::TestWithParam<StepsCase> {};

TEST_P(PatternStepsTest, Estimates) {
  const StepsCase& c = GetParam();
  EXPECT_DOUBLE_EQ(patternSteps(c.pattern, c.subject), c.steps);
}

constexpr double kN = 11;  // subject of 10 bytes: 11 start positions, 11 lengths

INSTANTIATE_TEST_SUITE_P(
    Cases, PatternStepsTest,
    ::testing::Values(
        StepsCase{"LiteralUnanchored", "abc", 10, kN}, StepsCase{"LiteralAnchored", "^abc", 10, 1},
        StepsCase{"EmptyUnanchored", "", 10, kN}, StepsCase{"CaretOnly", "^", 10, 1},
        StepsCase{"StarUnanchored", "a*", 10, kN* kN}, StepsCase{"StarAnchored", "^a*", 10, kN},
        StepsCase{"PlusAnchored", "^a+", 10, kN}, StepsCase{"MinusAnchored", "^a-", 10, kN},
        StepsCase{"QuestionDoubles", "^a?", 10, 2},
        StepsCase{"ThreeQuestionsDoubleThrice", "^a?b?c?", 10, 8},
        StepsCase{"QuestionUnanchored", "a?", 10, 2 * kN},
        StepsCase{"TwoLazy", "^.-.-", 10, kN* kN},
        StepsCase{"ThreeLazyUnanchored", ".-.-.-b", 10, kN* kN* kN* kN},
        StepsCase{"ClassWithQuantifier", "^%a*%d+", 10, kN* kN},
        StepsCase{"EscapedQuantifierIsLiteral", "^%*%+%-%?", 10, 1},
        StepsCase{"Balance", "^%b()", 10, kN}, StepsCase{"BalanceThenStar", "^%b()a*", 10, kN* kN},
        StepsCase{"BalanceUnanchored", "%b{}", 10, kN* kN},
        StepsCase{"FrontierIsOnePosition", "^%f[%w]%w+", 10, kN},
        StepsCase{"FrontierWithBracketFirst", "^%f[]x]a", 10, 1},
        StepsCase{"SetWithBracketFirst", "^[]]*", 10, kN},
        StepsCase{"NegatedSetWithBracketFirst", "^[^]]*", 10, kN},
        StepsCase{"SetWithEscapedBracket", "^[%]a]*", 10, kN},
        StepsCase{"QuantifierInsideSetIsLiteral", "^[a*+?-]", 10, 1},
        StepsCase{"RangeSetWithPlus", "^[a-z]+", 10, kN},
        StepsCase{"TrailingDollarIsFree", "^[a-z]+$", 10, kN},
        StepsCase{"InnerDollarIsLiteral", "^a$b", 10, 1},
        StepsCase{"CapturesAreFree", "^(a*)(b)()", 10, kN},
        StepsCase{"BackReferenceScansCapture", "^(.*)%1", 10, kN* kN},
        StepsCase{"EmptySubject", "a*b*", 0, 1},
        StepsCase{"LargeSubject", ".-.-.-b", 30000, 30001.0 * 30001 * 30001 * 30001}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace wsgate::scripting
