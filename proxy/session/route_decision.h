#pragma once
// What to do with a request head, decided apart from doing it: answer it locally (a
// `respond` route, no route, an invalid upgrade) or forward it to a pool, with what the pick
// needs (sticky key, the backend a cookie names). A pure function of the snapshot, the head
// and the client's address: no socket, no session state. Session::execute carries it out;
// Lua's on_request will produce or edit one.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/control/runtime.h"
#include "proxy/http/head.h"
#include "proxy/ws/handshake.h"

namespace wsgate::proxy {

struct RouteDecision {
  enum class Kind : uint8_t {
    Respond,  // a route's `respond`: its status and body, verbatim
    Refuse,   // an error answer: status, errorBody(detail), reason for the log
    Forward,  // to `pool`
  };
  Kind kind = Kind::Refuse;

  // Respond / Refuse.
  int status = 0;
  std::string_view body;          // Respond: the route's body (lives in the snapshot)
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
  std::optional<uint64_t> stickyKey;         // stickyKeyHash of the header/query/source_ip
  std::optional<std::size_t> cookieBackend;  // the backend a valid sticky cookie names
};

// Decides for `head` against `runtime`'s routes and pools. `clientIp` feeds a source_ip
// sticky key. The result points into `runtime` (and `head` only through `offer`, a copy).
RouteDecision decideRoute(const Runtime& runtime, const http::RequestHead& head,
                          std::string_view clientIp);

}  // namespace wsgate::proxy
