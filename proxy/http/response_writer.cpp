// Responses wsgate answers itself. No Server field (it only tells a scanner what to try) and no
// Date field (pure formatting has no clock; a caller that wants one passes it in extraHeaders).

#include "proxy/http/response_writer.h"

#include <charconv>

#include "proxy/http/head.h"

namespace wsgate::http {
namespace {

void appendNumber(std::string& out, std::size_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

}  // namespace

void appendLocalResponse(const LocalResponse& r, std::string& out) {
  out += "HTTP/1.1 ";
  appendNumber(out, static_cast<std::size_t>(r.status < 0 ? 0 : r.status));
  out += ' ';
  out += reasonPhrase(r.status);
  out += "\r\n";

  // RFC 9110 6.4.1 / 8.6: 1xx, 204 and 304 carry no content, and 1xx/204 no Content-Length;
  // whatever `body` holds is not sent with them.
  const bool interim = r.status < 200;
  const bool bodyAllowed = !interim && r.status != 204 && r.status != 304;
  if (bodyAllowed) {
    if (!r.body.empty() && !r.contentType.empty()) {
      out += "Content-Type: ";
      out += r.contentType;
      out += "\r\n";
    }
    out += "Content-Length: ";
    appendNumber(out, r.body.size());
    out += "\r\n";
  }
  // An interim response does not decide persistence (RFC 9110 15.2).
  if (!interim) out += r.keepAlive ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  out += r.extraHeaders;
  out += "\r\n";
  if (bodyAllowed && !r.headOnly) out += r.body;
}

std::string errorBody(int status, std::string_view detail) {
  std::string body;
  body.reserve(48 + detail.size());
  appendNumber(body, static_cast<std::size_t>(status < 0 ? 0 : status));
  body += ' ';
  body += reasonPhrase(status);
  if (!detail.empty()) {
    body += ": ";
    body += detail;
  }
  body += '\n';
  return body;
}

}  // namespace wsgate::http
