#pragma once
// What to do with a request head, decided apart from doing it: answer it locally (a
// `respond` route, no route, an invalid upgrade) or forward it to a pool, with what the pick
// needs (sticky key, the backend a cookie names). A pure function of the snapshot, the head
// and the client's address: no socket, no session state. Session::execute carries it out;
// Lua's on_request edits one (applyScriptResult), still without touching a socket.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/control/runtime.h"
#include "proxy/http/head.h"
#include "proxy/ws/handshake.h"
#include "scripting/views.h"

namespace wsgate::proxy {

struct RouteDecision {
  enum class Kind : uint8_t {
    Respond,  // a route's `respond`: its status and body, verbatim
    Refuse,   // an error answer: status, errorBody(detail), reason for the log
    Forward,  // to `pool`
  };
  Kind kind = Kind::Refuse;
  const conf::RouteConfig* route = nullptr;  // the matched route (null: none matched)

  // Respond / Refuse.
  int status = 0;
  std::string_view body;          // Respond: the route's body (lives in the snapshot)
  bool scripted = false;          // Respond: Lua's answer, in scriptBody/scriptHeaders
  std::string_view detail;        // Refuse: for errorBody and the log
  std::string_view reason;        // the access log's reason
  std::string_view extraHeaders;  // "Name: value\r\n" lines (426: Sec-WebSocket-Version)
  // Refuse: the connection may carry on after the answer (if the request allows it).
  bool keepAliveAllowed = false;

  // Forward.
  const PoolEntry* pool = nullptr;
  std::string_view poolName;  // lives in the snapshot's config
  bool websocket = false;     // a valid upgrade; `offer` is its offer
  ws::Offer offer;
  std::optional<uint64_t> stickyKey;  // stickyKeyHash of the header/query/source_ip (or Lua's)
  // The backend to use while it can take the request: the one a valid sticky cookie names,
  // or Lua's `backend`.
  std::optional<std::size_t> preferredBackend;

  // Lua's part (applyScriptResult): what failed, a local answer's own text, and edits of
  // the forwarded request's fields.
  std::string scriptError;
  std::string scriptBody;
  std::string scriptHeaders;      // "name: value\r\n" lines
  std::string scriptContentType;  // its content-type header, when it set one
  scripting::HeaderList setHeaders;
  std::vector<std::string> removeHeaders;

  std::string_view answerBody() const { return scripted ? scriptBody : body; }
  std::string_view answerHeaders() const { return scripted ? scriptHeaders : extraHeaders; }
};

// Decides for `head` against `runtime`'s routes and pools. `clientIp` feeds a source_ip
// sticky key. The result points into `runtime` (and `head` only through `offer`, a copy).
RouteDecision decideRoute(const Runtime& runtime, const http::RequestHead& head,
                          std::string_view clientIp);

// What Lua's on_request returned, applied to a Forward decision `d` (on_request runs only for
// those): a failure, an unknown pool or backend becomes a 500 with scriptError set; `status`
// a local answer; `pool` a new pool (its stickiness computed again from `head`); `backend`
// the preferred backend; `sticky_key` the sticky key; the header edits kept for forwarding.
void applyScriptResult(const Runtime& runtime, RouteDecision& d, scripting::RequestResult&& r,
                       const http::RequestHead& head, std::string_view clientIp);

// On a route whose script reads messages (on_message): no extension is offered to the
// backend, since wsgate must read every payload (permessage-deflate would need zlib).
void withoutExtensions(RouteDecision& d);

}  // namespace wsgate::proxy
