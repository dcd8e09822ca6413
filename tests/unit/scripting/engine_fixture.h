#pragma once
// What the scripting suites share: small limits (so a runaway script fails in milliseconds),
// an engine booted from inline source with its log lines captured, and a request to probe.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "scripting/engine.h"

namespace wsgate::scripting::testing {

inline constexpr Limits kTestLimits{.instructions = 200'000, .memoryBytes = 8 << 20};

struct LogLine {
  LogLevel level;
  std::string text;
};

class EngineTest : public ::testing::Test {
protected:
  // Checks and boots `source` as "test.lua"; nullptr (and a failed test) when either fails.
  Engine* boot(std::string_view source, Limits limits = kTestLimits) {
    engine_ = bootAnother(source, limits);
    return engine_.get();
  }

  // A second engine on the same log (for what engines must not share).
  EnginePtr bootAnother(std::string_view source, Limits limits = kTestLimits) {
    std::string error;
    ScriptPtr script = checkScript("test.lua", std::string(source), limits, error);
    if (!script) {
      ADD_FAILURE() << "checkScript: " << error;
      return nullptr;
    }
    auto lines = lines_;
    EnginePtr engine = Engine::create(
        script,
        [lines](LogLevel level, std::string_view text) {
          lines->push_back({level, std::string(text)});
        },
        error);
    if (!engine) ADD_FAILURE() << "Engine::create: " << error;
    return engine;
  }

  // Calls `function` with a plain GET request.
  RequestResult call(const std::string& function) {
    return engine_->onRequest(function, Request{.method = "GET", .path = "/"});
  }

  // The `pool` a probe returned (the tests' way to read a Lua value back), or the error.
  std::string probe(const std::string& function, const Request& req) {
    RequestResult r = engine_->onRequest(function, req);
    if (r.failed()) return "error: " + r.error;
    return r.pool.value_or("(no pool)");
  }
  std::string probe(const std::string& function) {
    return probe(function, Request{.method = "GET", .path = "/"});
  }

  const std::vector<LogLine>& logs() const { return *lines_; }

  std::shared_ptr<std::vector<LogLine>> lines_ = std::make_shared<std::vector<LogLine>>();
  EnginePtr engine_;
};

}  // namespace wsgate::scripting::testing
