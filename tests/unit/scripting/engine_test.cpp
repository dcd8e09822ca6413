// The per-call limits an engine holds a script to: instructions (a count hook reset for each
// call), memory (the allocator), and what is left of the state after one is hit.
#include "scripting/engine.h"

#include <gtest/gtest.h>

#include <string>

#include "engine_fixture.h"

namespace wsgate::scripting {
namespace {

using testing::EngineTest;

// The budget is per call: two calls each using 60% of it both succeed, one using 120% fails.
TEST_F(EngineTest, InstructionBudgetResetsEveryCall) {
  ASSERT_TRUE(boot(R"(
function spend(n) for i = 1, n do end end
function sixty(req) spend(120000) end
function hundred_twenty(req) spend(240000) end
function on_message(conn) spend(120000) end
)"));
  EXPECT_FALSE(call("sixty").failed());
  EXPECT_FALSE(call("sixty").failed());
  EXPECT_FALSE(call("sixty").failed());
  const RequestResult over = call("hundred_twenty");
  EXPECT_NE(over.error.find("instruction limit (200000) exceeded"), std::string::npos)
      << over.error;
  EXPECT_FALSE(call("sixty").failed());
  HookError err;
  const int conn = engine_->openConn({.id = 1}, err);
  EXPECT_EQ(engine_->onMessage(conn, Direction::Client, {}).action, MessageResult::Action::Pass);
  EXPECT_EQ(engine_->onMessage(conn, Direction::Client, {}).action, MessageResult::Action::Pass);
}

// A memory error caught and cleared by the script does not make a later, unrelated error
// read as the memory limit.
TEST_F(EngineTest, CaughtMemoryErrorDoesNotMislabelLaterError) {
  ASSERT_TRUE(boot(R"(
function f(req)
  local ok, err = pcall(string.rep, 'x', 1 << 30)
  assert(not ok)
  local t = nil
  return t.x
end
function g(req)
  local ok, err = pcall(string.rep, 'x', 1 << 30)
  error(err, 0)
end
)"));
  RequestResult r = call("f");
  EXPECT_NE(r.error.find("attempt to index a nil value"), std::string::npos) << r.error;
  r = call("g");
  EXPECT_NE(r.error.find("memory limit"), std::string::npos) << r.error;
}

TEST_F(EngineTest, MemoryUsedIsCountedAndBounded) {
  ASSERT_TRUE(boot(R"(
function grow(req) blob = string.rep("x", 1 << 20) end
function shrink(req) blob = nil collectgarbage() end
)"));
  const std::size_t base = engine_->memoryUsed();
  EXPECT_GT(base, 0u);
  ASSERT_FALSE(call("grow").failed());
  // The 1 MiB blob, less what a collection during the call may have freed of earlier garbage.
  EXPECT_GE(engine_->memoryUsed(), base + (1u << 20) - 4096);
  ASSERT_FALSE(call("shrink").failed());
  EXPECT_LT(engine_->memoryUsed(), base + 4096);
  EXPECT_LE(engine_->memoryUsed(), testing::kTestLimits.memoryBytes);
}

// With room for it, deep recursion ends in Lua's own stack overflow, not in a crash.
TEST_F(EngineTest, DeepRecursionIsStackOverflow) {
  ASSERT_TRUE(boot(R"(
function f(req)
  -- Wide frames reach Lua's stack limit in fewer calls.
  local function deeper(n)
    local a, b, c, d, e, f, g, h, i, j, k, l, m, o, p, q, r, s, t, u, v, w, x, y, z
    local a2, b2, c2, d2, e2, f2, g2, h2, i2, j2, k2, l2, m2, o2, p2, q2, r2, s2, t2, u2
    return 1 + deeper(n + 1)
  end
  deeper(1)
end
function ok(req) return { pool = "ok" } end
)",
                   Limits{.instructions = 20'000'000, .memoryBytes = 256 << 20}));
  const RequestResult r = call("f");
  EXPECT_NE(r.error.find("stack overflow"), std::string::npos) << r.error;
  EXPECT_EQ(probe("ok"), "ok");
}

// The limit error names where the script was when it ran out.
TEST_F(EngineTest, InstructionLimitNamesFileAndLine) {
  ASSERT_TRUE(boot("function f(req)\n  local n = 0\n  while true do n = n + 1 end\nend"));
  EXPECT_EQ(call("f").error, "test.lua:3: instruction limit (200000) exceeded");
}

// Too little memory for the sandbox itself fails the check with the file's name, no panic.
TEST(EngineMemory, TooLittleForTheSandboxFailsCleanly) {
  for (const std::size_t bytes : {std::size_t{0}, std::size_t{1000}, std::size_t{8000}}) {
    std::string error;
    EXPECT_FALSE(
        checkScript("tiny.lua", "x = 1", {.instructions = 1000, .memoryBytes = bytes}, error));
    EXPECT_EQ(error.rfind("tiny.lua: ", 0), 0u) << error;
  }
}

}  // namespace
}  // namespace wsgate::scripting
