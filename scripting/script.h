#pragma once
// A Lua script as a snapshot holds it: the file's text and limits, checked once off the
// event loops (compiled and run in a sandbox, as every worker will), with the names of the
// global functions it defines. Workers build their own states from it (engine.h).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::scripting {

struct Limits {
  uint64_t instructions = 1'000'000;                // per hook call (and for the file's top level)
  std::size_t memoryBytes = std::size_t{64} << 20;  // per Lua state
};

struct Script {
  std::string file;    // as configured; the chunk name, so errors read FILE:LINE
  std::string source;  // the bytes read when the snapshot was built
  Limits limits;
  std::vector<std::string> functions;  // global functions after the top level ran, sorted

  bool defines(std::string_view name) const;
};

using ScriptPtr = std::shared_ptr<const Script>;

// Reads `file` and checks it: nullptr and `error` ("FILE:LINE: message", or "FILE: why" when
// it cannot be read) when it does not compile, its top level fails, or it is a binary chunk.
ScriptPtr loadScript(const std::string& file, const Limits& limits, std::string& error);
// The same check on text already read (tests, and `file` only names it).
ScriptPtr checkScript(std::string file, std::string source, const Limits& limits,
                      std::string& error);

}  // namespace wsgate::scripting
