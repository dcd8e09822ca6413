#pragma once
// Strict HTTP/1.1 response-head parser for what backends send (RFC 9112): pure.

#include <string_view>

#include "proxy/http/head.h"

namespace wsgate::http {

// What the response answers: decides whether it may have a body (RFC 9112 6.3).
struct ResponseContext {
  bool requestWasHead = false;
};

// Parses the response head at the start of `buf`. The same field rules as for requests
// apply (bare CR/LF, obs-fold, whitespace before colon, invalid names, control characters,
// CL/TE conflicts, duplicate or invalid Content-Length); every rejection has errorStatus
// 502 (the proxy answers the client with a bad gateway). Body framing: 1xx, 204, 304 and
// responses to HEAD have none; chunked; Content-Length; otherwise UntilClose.
ParseResult parseResponseHead(std::string_view buf, const ParseLimits& limits,
                              const ResponseContext& ctx, ResponseHead& out);

}  // namespace wsgate::http
