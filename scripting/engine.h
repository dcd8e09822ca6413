#pragma once
// One Lua state of one worker, for one script generation: the sandbox (sandbox.h), the
// instruction and memory limits, and the hooks of interface.md called through lua_pcall.
// Not thread-safe: a worker's sessions use their own engine only. The glue that touches the
// Lua stack is C-style (no C++ object with a destructor in a frame a Lua error unwinds); it
// copies into and out of the plain views of views.h.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "scripting/script.h"
#include "scripting/views.h"

struct lua_State;

namespace wsgate::scripting {

enum class LogLevel : uint8_t { Debug, Info, Warn, Error };
// Where wsgate.log, print and Lua warnings (the script's warn(), Lua's own) go.
using LogFn = std::function<void(LogLevel, std::string_view)>;

class Engine {
public:
  // Builds the sandbox and runs the script's top level. nullptr with `error` on failure.
  static std::unique_ptr<Engine> create(ScriptPtr script, LogFn log, std::string& error);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const Script& script() const { return *script_; }
  bool hasOnMessage() const { return hasOnMessage_; }
  bool hasOnOpen() const { return hasOnOpen_; }
  bool hasOnClose() const { return hasOnClose_; }

  // Calls the global `function` (a route's `lua:`) with the request table.
  RequestResult onRequest(const std::string& function, const Request& req);

  // A connection's `conn` table (id, pool, backend, client_ip, vars), kept until closeConn;
  // on_open(conn) runs when the script defines it. Returns the table's handle (> 0), or 0
  // when even the table could not be made; `err` says what failed (the handle is still
  // valid when only on_open failed).
  int openConn(const ConnInfo& info, HookError& err);
  MessageResult onMessage(int conn, Direction dir, const Message& msg);
  // on_close(conn, code) when defined, then the table is freed (whatever on_close did).
  HookError closeConn(int conn, uint16_t code);

  std::size_t memoryUsed() const { return memoryUsed_; }
  // The names of the global functions the state holds, sorted (Script::functions).
  std::vector<std::string> globalFunctions(std::string& error);

private:
  struct Glue;  // the C-style functions, friends of the engine
  Engine(ScriptPtr script, LogFn log);
  static void* allocate(void* self, void* ptr, std::size_t osize, std::size_t nsize) noexcept;
  // Starts a call's instruction budget (the count hook) and clears the memory flag.
  void armBudget();
  // Runs `fn(L)` with `arg` as a light userdata under lua_pcall; the error text, if any.
  std::string protectedCall(int (*fn)(lua_State*), void* arg);

  static constexpr std::size_t kChunkNameMax = 48;  // well under LUA_IDSIZE (60)

  ScriptPtr script_;
  std::string chunkName_;  // the chunk's name in positions (a long path's base name)
  LogFn log_;
  lua_State* L_ = nullptr;
  std::size_t memoryUsed_ = 0;
  bool memoryRefused_ = false;  // the allocator said no during this call
  bool hasOnMessage_ = false;
  bool hasOnOpen_ = false;
  bool hasOnClose_ = false;
  int64_t budgetLeft_ = 0;   // instructions left in this call
  int hookStep_ = 0;         // instructions between two count hooks
  uint64_t requestSeq_ = 0;  // the on_request call in flight (for lazy fields)
  const Request* currentRequest_ = nullptr;
  const void* currentHeaders_ =
      nullptr;  // that call's req.headers table (lazy lookups)  // set during on_request only
  std::string warning_;  // a Lua warning being assembled (lua_WarnFunction)
};

using EnginePtr = std::unique_ptr<Engine>;

}  // namespace wsgate::scripting
