#pragma once
// Strict HTTP/1.1 request-head parser (RFC 9112): a pure function over a byte span.

#include <string_view>

#include "proxy/http/head.h"

namespace wsgate::http {

// Parses the request head at the start of `buf`. On Complete, `out` holds views into
// `buf`. Rejections (ParseStatus::Error):
//   400: bare CR or LF, obs-fold, whitespace before a colon, empty or invalid field name,
//        NUL/control characters in a value, invalid request line or method or version,
//        missing or duplicate Host, invalid or duplicate Content-Length,
//        Transfer-Encoding together with Content-Length, Transfer-Encoding whose last coding
//        is not chunked, Transfer-Encoding in an HTTP/1.0 request.
//   501: an unknown transfer coding.
//   414: request target longer than limits.maxUriBytes.
//   431: head longer than limits.maxHeaderBytes, more than limits.maxHeaders fields.
//   505: an HTTP version other than 1.0 or 1.1.
// Incomplete is returned only while the bytes seen so far are a valid prefix and within
// limits, so a caller can reject as early as possible.
ParseResult parseRequestHead(std::string_view buf, const ParseLimits& limits, RequestHead& out);

}  // namespace wsgate::http
