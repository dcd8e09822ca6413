#pragma once
// Serializes heads as wsgate forwards them: hop-by-hop fields removed (RFC 9110 7.6.1),
// X-Forwarded-* set, WebSocket Upgrade/Connection regenerated after validation.

#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "proxy/http/head.h"

namespace wsgate::http {

// Edits of the forwarded request's fields (Lua's set_headers/remove_headers; names lower-case,
// names and values already validated, framing and hop-by-hop fields never among them).
struct HeaderEdits {
  std::span<const std::pair<std::string, std::string>> set;  // replaces every field so named
  std::span<const std::string> remove;
  bool empty() const { return set.empty() && remove.empty(); }
};

struct ForwardInfo {
  std::string_view clientIp;  // appended to X-Forwarded-For
  std::string_view proto;     // "http" or "https" -> X-Forwarded-Proto
  bool websocket = false;     // regenerate "Upgrade: websocket" + "Connection: Upgrade"
  // The verified client certificate's subject (RFC 2253) on a TLS listener with client_ca;
  // empty: none. Sent as X-Forwarded-Client-Cert: Subject="..." (Envoy's XFCC form).
  std::string_view clientCertSubject;
  HeaderEdits edits;  // applied to the client's fields; Host may be set, X-Forwarded-Host
                      // keeps the client's
  // A cookie removed from the client's Cookie fields (cookieWithout; a field left empty is
  // dropped): wsgate's own under sticky.cookie.indirect. Empty: every Cookie field as sent.
  std::string_view removeCookie;
};

// True for fields that never cross the proxy: Connection, Keep-Alive, Proxy-Connection,
// TE, Trailer, Upgrade, HTTP2-Settings, Transfer-Encoding (the caller re-adds it when the body
// stays chunked), and every field the message's Connection header names — except the
// X-Forwarded-* fields wsgate itself sets, which a client cannot strip this way (Traefik
// CVE-2024-45410), and Host and Content-Length, whose removal would change how the next hop
// routes or frames the message.
bool isHopByHop(std::string_view name, const std::vector<Header>& headers) noexcept;

// Appends the request head to send to a backend to `out`: request line in the client's version, the
// client's end-to-end fields in order, Host kept, X-Forwarded-For (client's value, if any,
// + ", " + clientIp), X-Forwarded-Proto, X-Forwarded-Host (the Host value), and
// "Transfer-Encoding: chunked" when the body is chunked. Incoming X-Forwarded-Proto and
// X-Forwarded-Host are replaced; an incoming X-Forwarded-Client-Cert is always dropped (only
// wsgate vouches for a certificate) and set from `clientCertSubject` when there is one. For a
// WebSocket upgrade, Upgrade + Connection are regenerated; otherwise "Connection: keep-alive" is
// sent (HTTP/1.1 default, explicit). An absolute-form target is sent in origin-form; Content-Length
// is re-serialised from the parsed value; a request without Host (HTTP/1.0) gets "Host:
// <req.host>". With `removeCookie`, Cookie fields lose that cookie (see ForwardInfo).
void appendForwardedRequest(const RequestHead& req, const ForwardInfo& info, std::string& out);

// Appends the response head to send to the client: status line as HTTP/1.1, end-to-end
// fields, "Transfer-Encoding: chunked" when the body is chunked, and for a 101 the
// regenerated "Upgrade: websocket" + "Connection: Upgrade"; otherwise a Connection field
// saying "keep-alive" or "close" per `clientKeepAlive` ("close" whatever it says when the body
// is UntilClose; none on an interim 1xx). The backend's transfer codings are kept whole
// ("gzip, chunked") since the body bytes pass through untouched. Content-Length is dropped from
// 1xx and 204. `extraHeaders` (already formatted "Name: value\r\n" lines, may be empty) are
// appended before the final CRLF.
void appendForwardedResponse(const ResponseHead& resp, bool clientKeepAlive,
                             std::string_view extraHeaders, std::string& out);

}  // namespace wsgate::http
