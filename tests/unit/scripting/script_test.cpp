// Checking a script once per snapshot: what a bad file reports (FILE:LINE, or FILE: why), and
// the list of functions the routes' `lua:` may name.
#include <gtest/gtest.h>

#include <fstream>
#include <ostream>
#include <string>
#include <vector>

#include "engine_fixture.h"

namespace wsgate::scripting {
namespace {

using testing::kTestLimits;

struct BadScriptCase {
  std::string name;
  std::string source;
  std::string error;  // the start of the message
};

void PrintTo(const BadScriptCase& c, std::ostream* os) { *os << c.name; }

class CheckScriptTest : public ::testing::TestWithParam<BadScriptCase> {};

TEST_P(CheckScriptTest, RefusesWithFileAndLine) {
  const BadScriptCase& c = GetParam();
  std::string error;
  const ScriptPtr script = checkScript("bad.lua", c.source, kTestLimits, error);
  EXPECT_FALSE(script);
  EXPECT_EQ(error.substr(0, c.error.size()), c.error) << error;
}

INSTANTIATE_TEST_SUITE_P(
    Bad, CheckScriptTest,
    ::testing::Values(
        BadScriptCase{"SyntaxError", "x = 1\n\nfunction f( end",
                      "bad.lua:3: <name> or '...' expected"},
        BadScriptCase{"UnfinishedString", "x = 'abc", "bad.lua:1: unfinished string"},
        BadScriptCase{"RuntimeErrorAtTopLevel", "local t = nil\nlocal x = 1\nt.y = x",
                      "bad.lua:3: attempt to index a nil value (local 't')"},
        BadScriptCase{"ErrorCallAtTopLevel", "\nerror('no config')", "bad.lua:2: no config"},
        BadScriptCase{"EndlessTopLevel", "while true do end",
                      "bad.lua:1: instruction limit (200000) exceeded"},
        BadScriptCase{"MemoryBombAtTopLevel", "x = string.rep('x', 1 << 30)",
                      "bad.lua: memory limit (8388608 bytes) reached"},
        BadScriptCase{"BinaryChunk", std::string("\x1bLua\x54\0\x19\x93\r\n\x1a\n", 12),
                      "bad.lua: a binary (precompiled) chunk; only Lua source is loaded"},
        BadScriptCase{"SandboxedTopLevel", "local f = io.open('/etc/passwd')",
                      "bad.lua:1: attempt to index a nil value (global 'io')"}),
    [](const auto& info) { return info.param.name; });

TEST(CheckScript, EndlessTopLevelNamesInstructionLimit) {
  std::string error;
  EXPECT_FALSE(
      checkScript("loop.lua", "local n = 0\nwhile true do n = n + 1 end", kTestLimits, error));
  EXPECT_EQ(error, "loop.lua:2: instruction limit (200000) exceeded");
}

TEST(CheckScript, KeepsFileSourceAndLimits) {
  std::string error;
  const ScriptPtr script = checkScript("ok.lua", "x = 1", kTestLimits, error);
  ASSERT_TRUE(script) << error;
  EXPECT_EQ(script->file, "ok.lua");
  EXPECT_EQ(script->source, "x = 1");
  EXPECT_EQ(script->limits.instructions, kTestLimits.instructions);
  EXPECT_EQ(script->limits.memoryBytes, kTestLimits.memoryBytes);
  EXPECT_TRUE(script->functions.empty());
}

// Only what the script itself defines: global functions, sorted; not locals, not tables'
// fields, not other values, not the sandbox's own functions (unless the script replaces one).
TEST(CheckScript, ListsScriptFunctionsSorted) {
  std::string error;
  const ScriptPtr script = checkScript("fns.lua", R"(
function zeta(req) end
function alpha(req) end
local function hidden() end
mid = function() end
lib = { inner = function() end }
count = 3
name = "on_request"
function print(...) end
)",
                                       kTestLimits, error);
  ASSERT_TRUE(script) << error;
  EXPECT_EQ(script->functions, (std::vector<std::string>{"alpha", "mid", "print", "zeta"}));
  EXPECT_TRUE(script->defines("alpha"));
  EXPECT_TRUE(script->defines("mid"));
  EXPECT_FALSE(script->defines("hidden"));
  EXPECT_FALSE(script->defines("inner"));
  EXPECT_FALSE(script->defines("count"));
  EXPECT_FALSE(script->defines("pairs"));
  EXPECT_FALSE(script->defines("error"));
  EXPECT_FALSE(script->defines(""));
}

TEST(CheckScript, EngineListsTheSameFunctions) {
  std::string error;
  const ScriptPtr script =
      checkScript("fns.lua", "function b() end\nfunction a() end", kTestLimits, error);
  ASSERT_TRUE(script) << error;
  EnginePtr engine = Engine::create(script, nullptr, error);
  ASSERT_TRUE(engine) << error;
  EXPECT_EQ(engine->globalFunctions(error), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(error, "");
}

class LoadScriptTest : public ::testing::Test {
protected:
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
};

TEST_F(LoadScriptTest, ReadsFile) {
  const std::string path = write("wsgate_load_ok.lua", "function on_request(req) end\n");
  std::string error;
  const ScriptPtr script = loadScript(path, kTestLimits, error);
  ASSERT_TRUE(script) << error;
  EXPECT_EQ(script->file, path);
  EXPECT_EQ(script->functions, (std::vector<std::string>{"on_request"}));
}

TEST_F(LoadScriptTest, ErrorsNameTheFile) {
  const std::string path = write("wsgate_load_bad.lua", "x = 1\ny = = 2\n");
  std::string error;
  EXPECT_FALSE(loadScript(path, kTestLimits, error));
  EXPECT_EQ(error.rfind(path + ":2: unexpected symbol", 0), 0u) << error;
}

TEST_F(LoadScriptTest, MissingFile) {
  const std::string path = ::testing::TempDir() + "wsgate_no_such_script.lua";
  std::string error;
  EXPECT_FALSE(loadScript(path, kTestLimits, error));
  EXPECT_EQ(error, path + ": cannot read the script: No such file or directory");
}

TEST_F(LoadScriptTest, DirectoryIsNotAScript) {
  const std::string path = ::testing::TempDir();
  std::string error;
  EXPECT_FALSE(loadScript(path, kTestLimits, error));
  EXPECT_EQ(error, path + ": cannot read the script: Is a directory");
}

TEST_F(LoadScriptTest, EmptyFileIsAnEmptyScript) {
  const std::string path = write("wsgate_load_empty.lua", "");
  std::string error;
  const ScriptPtr script = loadScript(path, kTestLimits, error);
  ASSERT_TRUE(script) << error;
  EXPECT_TRUE(script->functions.empty());
}

}  // namespace
}  // namespace wsgate::scripting
