// The Lua half of the Session: on_request edits the route decision; on a WebSocket route
// with `lua:`, on_open after the 101, on_message per complete message (the relay collects
// them), on_close when the session ends. A hook's failure answers 500 or closes 1011 and is
// logged at a limited rate; the worker carries on.

#include "proxy/session/session_script.h"

#include <event2/buffer.h>
#include <openssl/rand.h>

#include <chrono>
#include <vector>

#include "proxy/control/worker.h"
#include "proxy/log.h"
#include "proxy/session/session_tunnel.h"
#include "proxy/ws/close_code.h"
#include "proxy/ws/utf8.h"

namespace wsgate::proxy {
namespace {

namespace cc = ws::close_code;

// At most kErrorsPerSecond hook failures are logged per worker and second; the rest are
// counted and reported with the next logged one.
constexpr int kErrorsPerSecond = 10;

struct ErrorBudget {
  std::chrono::steady_clock::time_point window{};
  int logged = 0;
  uint64_t suppressed = 0;
};
thread_local ErrorBudget tErrors;

}  // namespace

void Session::logScriptError(LuaHook which, std::string_view error) {
  WorkerStats& stats = worker_.stats();
  stats.luaErrors[static_cast<std::size_t>(which)].add();
  // The engine's words for its limits (scripting/engine.cpp).
  if (error.find("instruction limit (") != std::string_view::npos) stats.luaInstructionLimit.add();
  if (error.find("memory limit (") != std::string_view::npos) stats.luaMemoryLimit.add();
  const std::string_view hook = kLuaHookNames[static_cast<std::size_t>(which)];
  const auto now = std::chrono::steady_clock::now();
  if (now - tErrors.window >= std::chrono::seconds(1)) {
    tErrors.window = now;
    tErrors.logged = 0;
  }
  if (tErrors.logged >= kErrorsPerSecond) {
    ++tErrors.suppressed;
    return;
  }
  ++tErrors.logged;
  if (tErrors.suppressed > 0) {
    log().warn("[s{} {}] lua {} failed: {} ({} more failures not logged)", id_, clientAddr_, hook,
               error, tErrors.suppressed);
    tErrors.suppressed = 0;
  } else {
    log().warn("[s{} {}] lua {} failed: {}", id_, clientAddr_, hook, error);
  }
}

void Session::runOnRequest(RouteDecision& d, const http::RequestHead& head) {
  std::string error;
  scripting::Engine* engine = runtime_->engine(worker_.index(), error);
  if (engine == nullptr) {  // the same 500 as a failed hook (applyScriptResult)
    scripting::RequestResult failed;
    failed.error = error;
    applyScriptResult(*runtime_, d, std::move(failed), head, clientIp_);
    logScriptError(LuaHook::State, error);
    return;
  }
  // The head's fields as the scripting layer's views: one vector per thread, reused.
  thread_local std::vector<scripting::Header> headers;
  headers.clear();
  for (const auto& h : head.headers) headers.push_back({h.name, h.value});
  const scripting::Request req{.method = head.method,
                               .path = head.path,
                               .query = head.query,
                               .host = head.host,
                               .clientIp = clientIp_,
                               .route = d.route->pool,
                               .isWebsocket = d.websocket,
                               .headers = headers};
  applyScriptResult(*runtime_, d, engine->onRequest(d.route->lua, req), head, clientIp_);
  if (!d.scriptError.empty()) {
    logScriptError(LuaHook::OnRequest, d.scriptError);
    return;
  }
  if (d.kind != RouteDecision::Kind::Forward || !d.websocket) return;
  if (engine->hasOnMessage()) withoutExtensions(d);
  if (engine->hasOnMessage() || engine->hasOnOpen() || engine->hasOnClose()) {
    script_ = std::make_unique<ScriptState>();
    script_->engine = engine;
  }
}

void Session::openScriptConn() {
  ScriptState& s = *script_;
  if (s.engine->hasOnMessage()) {
    s.collect[kClient] = std::make_unique<FrameRelay::Collected>();
    s.collect[kBackend] = std::make_unique<FrameRelay::Collected>();
  }
  const std::size_t slash = backendName_.find('/');
  const std::string_view backend = slash == std::string::npos
                                       ? std::string_view(backendName_)
                                       : std::string_view(backendName_).substr(slash + 1);
  scripting::HookError err;
  s.conn = s.engine->openConn({id_, ex_.pool, backend, clientIp_}, err);
  if (err.failed()) {
    logScriptError(LuaHook::OnOpen, err.error);
    originateClose(cc::kInternalError, cc::kGoingAway, "lua error");
  }
}

bool Session::onScriptMessage(Side from) {
  ScriptState& s = *script_;
  FrameRelay::Collected& c = *s.collect[from];
  const Side to = other(from);
  // Lua reads the text as a string: invalid UTF-8 is the sender's protocol error (RFC 6455
  // 8.1: 1007), checked here whatever websocket.validate_utf8 says, since the payload is
  // unmasked anyway. (Compressed messages never get here: no extension on these routes.)
  if (c.text && !ws::isValidUtf8(c.payload)) {
    c.clear();
    onTunnelViolation(from, {cc::kInvalidPayload, "invalid UTF-8 in a text message"});
    return false;
  }
  const scripting::MessageResult r = s.engine->onMessage(
      s.conn, from == kClient ? scripting::Direction::Client : scripting::Direction::Backend,
      {c.text, c.payload});
  using Action = scripting::MessageResult::Action;
  switch (r.action) {
    case Action::Pass:
      evbuffer_add_buffer(output(to), c.frames.get());
      break;
    case Action::Drop:
      break;
    case Action::Replace: {
      if (c.text && !ws::isValidUtf8(r.data)) {
        c.clear();
        logScriptError(LuaHook::OnMessage, "replaced a text message with invalid UTF-8");
        originateClose(cc::kInternalError, cc::kGoingAway, "lua error");
        return false;
      }
      // One frame, re-made: masked with a fresh key toward the backend (RFC 6455 5.3).
      std::string frame;
      const auto op = c.text ? ws::Opcode::Text : ws::Opcode::Binary;
      if (to == kBackend) {
        std::array<uint8_t, 4> mask;
        RAND_bytes(mask.data(), static_cast<int>(mask.size()));
        ws::appendFrameHeader(frame, true, op, r.data.size(), mask.data());
        const std::size_t at = frame.size();
        frame += r.data;
        ws::applyMask(frame.data() + at, r.data.size(), mask);
      } else {
        ws::appendFrameHeader(frame, true, op, r.data.size());
        frame += r.data;
      }
      evbuffer_add(output(to), frame.data(), frame.size());
      break;
    }
    case Action::Close:
      c.clear();
      log().info("[s{} {} tunnel b={}] lua closed the session: {} {}", id_, clientAddr_,
                 backendName_, r.code, r.reason);
      originateClose(r.code, cc::kGoingAway, r.reason.empty() ? "closed by lua" : r.reason);
      return false;
    case Action::Error:
      c.clear();
      logScriptError(LuaHook::OnMessage, r.reason);
      originateClose(cc::kInternalError, cc::kGoingAway, "lua error");
      return false;
  }
  c.clear();
  return true;
}

void Session::closeScriptConn() {
  if (!script_) return;
  if (script_->conn > 0) {
    const uint16_t code = tunnel_ && tunnel_->closeCode != 0 ? tunnel_->closeCode : cc::kAbnormal;
    scripting::HookError err = script_->engine->closeConn(script_->conn, code);
    if (err.failed()) logScriptError(LuaHook::OnClose, err.error);
  }
  script_.reset();
}

}  // namespace wsgate::proxy
