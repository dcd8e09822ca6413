#pragma once
// WebSocket opening handshake rules (RFC 6455 4.1, 4.2): pure checks over parsed heads.

#include <string>
#include <string_view>

#include "proxy/http/head.h"

namespace wsgate::ws {

// RFC 6455 1.3: the GUID appended to the key before hashing.
inline constexpr std::string_view kAcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// True when `key` is base64 (with padding) of exactly 16 bytes: 24 characters, 22 from
// the base64 alphabet then "==", and the last data character encodes no stray bits.
bool isValidKey(std::string_view key) noexcept;

// base64(SHA-1(key + GUID)). RFC example: "dGhlIHNhbXBsZSBub25jZQ==" ->
// "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
std::string computeAccept(std::string_view key);

struct Verdict {
  bool ok = true;
  int status = 0;           // for a rejected request: 400 or 426
  std::string_view reason;  // static text for logs and the error body
  static Verdict accept() { return {}; }
  static Verdict reject(int status, std::string_view reason) { return {false, status, reason}; }
};

// Validates a client's upgrade request (RFC 6455 4.2.1) that the parser flagged as
// `upgradeWebsocket`: method GET (else 400), HTTP/1.1 (else 400), exactly one
// Sec-WebSocket-Key that isValidKey (else 400), Sec-WebSocket-Version exactly "13" (else
// 426, answered with "Sec-WebSocket-Version: 13"), no request body (Content-Length > 0 or
// chunked -> 400).
Verdict checkUpgradeRequest(const http::RequestHead& req) noexcept;

// What the client offered, copied out of the request so it outlives the request buffer.
struct Offer {
  std::string key;         // Sec-WebSocket-Key
  std::string protocols;   // Sec-WebSocket-Protocol values joined with ", " (may be empty)
  std::string extensions;  // Sec-WebSocket-Extensions values joined with ", " (may be empty)
};
Offer offerOf(const http::RequestHead& req);

// Validates a backend's 101 as a client would (RFC 6455 4.1): "Upgrade: websocket",
// Connection holding "upgrade", Sec-WebSocket-Accept equal to computeAccept(offer.key),
// a Sec-WebSocket-Protocol (if any) that is one of the offered ones, and extensions (if
// any) whose names were all offered. A failure means 502 to the client; `reason` says why.
Verdict checkUpgradeResponse(const http::ResponseHead& resp, const Offer& offer);

// True when an accepted 101 puts permessage-deflate in use (RFC 7692): an element of
// Sec-WebSocket-Extensions named so, compared as a token (case-insensitive), never a
// substring of another name or of a parameter. RSV1 is then allowed on first frames.
bool negotiatesDeflate(const http::ResponseHead& resp);

}  // namespace wsgate::ws
