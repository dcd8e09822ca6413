#pragma once
// What a session on a route with `lua:` keeps for its script's connection hooks: the worker's
// Lua state of its snapshot, the `conn` table (from the 101 on), and on_message's collected
// messages. Sessions without them hold a null pointer only.

#include "proxy/session/frame_relay.h"
#include "proxy/session/session.h"
#include "scripting/engine.h"

namespace wsgate::proxy {

struct Session::ScriptState {
  scripting::Engine* engine;  // runtime_'s state for this worker: lives as long as runtime_
  int conn = 0;               // the conn table's handle, once on_open ran (0: none)
  // on_message: the message being collected from each side (indexed by Side).
  std::unique_ptr<FrameRelay::Collected> collect[2];
};

}  // namespace wsgate::proxy
