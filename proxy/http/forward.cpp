// Heads as wsgate forwards them. The output is rebuilt from the parsed head, never patched in
// place: what the next hop sees is exactly what wsgate validated and decided.

#include "proxy/http/forward.h"

#include <charconv>
#include <cstdint>

#include "proxy/http/cookie_strip.h"

namespace wsgate::http {
namespace {

// RFC 9110 7.6.1 hop-by-hop fields, plus HTTP2-Settings (RFC 7540 3.2.1: h2c upgrade only;
// stripped with Upgrade so an h2c upgrade can never reach a backend).
constexpr std::string_view kHopByHop[] = {
    "Connection", "Keep-Alive",        "Proxy-Connection", "TE",
    "Trailer",    "Transfer-Encoding", "Upgrade",          "HTTP2-Settings",
};

// Fields a Connection option may not remove. X-Forwarded-*: wsgate sets them, and letting a
// client name them is Traefik CVE-2024-45410. Host and Content-Length: without them the next hop
// would route or frame the message differently from how wsgate did (smuggling).
constexpr std::string_view kProtected[] = {
    "Host",
    "Content-Length",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Client-Cert",
};

constexpr std::string_view kForwardedFields[] = {
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Client-Cert",
};

bool isAnyOf(std::string_view name, const auto& names) noexcept {
  for (std::string_view n : names) {
    if (iequals(name, n)) return true;
  }
  return false;
}

void appendField(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

void appendNumber(std::string& out, uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// The Content-Length field re-serialised from the parsed value ("007" becomes "7"), so every hop
// reads the same number.
void appendContentLength(std::string& out, std::string_view name, uint64_t length) {
  out += name;
  out += ": ";
  appendNumber(out, length);
  out += "\r\n";
}

// origin-form toward the backend (RFC 9112 3.2.1): an absolute-form target loses its scheme and
// authority (the parser made the authority the Host value).
void appendOriginTarget(std::string_view target, std::string& out) {
  if (target.empty() || target.front() == '/' || target == "*") {
    out += target.empty() ? std::string_view("/") : target;
    return;
  }
  const std::size_t scheme = target.find("://");
  if (scheme == std::string_view::npos) {
    out += target;
    return;
  }
  const std::string_view afterScheme = target.substr(scheme + 3);
  const std::size_t pathBegin = afterScheme.find_first_of("/?");
  const std::string_view rest =
      pathBegin == std::string_view::npos ? std::string_view{} : afterScheme.substr(pathBegin);
  if (rest.empty() || rest.front() == '?') out += '/';
  out += rest;
}

}  // namespace

bool isHopByHop(std::string_view name, const std::vector<Header>& headers) noexcept {
  if (isAnyOf(name, kHopByHop)) return true;
  if (isAnyOf(name, kProtected)) return false;
  for (const Header& h : headers) {
    if (iequals(h.name, "Connection") && hasToken(h.value, name)) return true;
  }
  return false;
}

namespace {

// True when `name` is set (replaced) or removed by `edits`.
bool isEdited(std::string_view name, const HeaderEdits& edits) {
  for (const auto& [set, value] : edits.set) {
    if (iequals(name, set)) return true;
  }
  for (const auto& removed : edits.remove) {
    if (iequals(name, removed)) return true;
  }
  return false;
}

}  // namespace

void appendForwardedRequest(const RequestHead& req, const ForwardInfo& info, std::string& out) {
  out += req.method;
  out += ' ';
  appendOriginTarget(req.target, out);
  // An HTTP/1.0 client is forwarded as HTTP/1.0, so the backend answers in a framing the
  // client can read (no chunked body toward a client that does not know chunked).
  out += req.version == Version::Http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n";

  bool sawHost = false;
  for (const Header& h : req.headers) {
    // X-Forwarded-*: For is joined below, Proto and Host are replaced by ours.
    if (isAnyOf(h.name, kForwardedFields)) continue;
    if (isHopByHop(h.name, req.headers)) continue;
    if (!info.edits.empty() && isEdited(h.name, info.edits)) continue;
    if (iequals(h.name, "Host")) {
      // The parser allows one Host, equal to an absolute-form authority when both exist.
      sawHost = true;
      appendField(out, h.name, req.host);
    } else if (iequals(h.name, "Content-Length")) {
      appendContentLength(out, h.name, req.contentLength);
    } else if (!info.removeCookie.empty() && iequals(h.name, "Cookie")) {
      const auto rest = cookieWithout(h.value, info.removeCookie);
      if (!rest) {
        appendField(out, h.name, h.value);
      } else if (!rest->empty()) {
        appendField(out, h.name, *rest);
      }
    } else {
      appendField(out, h.name, h.value);
    }
  }
  for (const auto& [name, value] : info.edits.set) {
    // The fields wsgate writes below are its own, whoever asks (the scripting layer refuses
    // them already: a second line of defence).
    if (isAnyOf(name, kForwardedFields) || isHopByHop(name, req.headers)) continue;
    appendField(out, name, value);
    sawHost = sawHost || iequals(name, "Host");
  }
  // RFC 9112 3.2: an HTTP/1.1 request carries Host; an HTTP/1.0 client may have sent none.
  if (!sawHost) appendField(out, "Host", req.host);

  // Append to the client's chain rather than trust or drop it: the backend decides how many
  // hops it believes. Repeated fields form one list (RFC 9110 5.3).
  bool xffStarted = false;
  for (const Header& h : req.headers) {
    if (h.value.empty() || !iequals(h.name, "X-Forwarded-For")) continue;
    out += xffStarted ? ", " : "X-Forwarded-For: ";
    out += h.value;
    xffStarted = true;
  }
  if (!info.clientIp.empty()) {
    out += xffStarted ? ", " : "X-Forwarded-For: ";
    out += info.clientIp;
    xffStarted = true;
  }
  if (xffStarted) out += "\r\n";
  if (!info.proto.empty()) appendField(out, "X-Forwarded-Proto", info.proto);
  if (!req.host.empty()) appendField(out, "X-Forwarded-Host", req.host);
  if (!info.clientCertSubject.empty()) {
    // A quoted-string (RFC 9110 5.6.4): the subject's quotes and backslashes escaped.
    out += "X-Forwarded-Client-Cert: Subject=\"";
    for (char c : info.clientCertSubject) {
      if (c == '"' || c == '\\') out += '\\';
      // OpenSSL's RFC 2253 form escapes control bytes already; never let one through.
      out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    }
    out += "\"\r\n";
  }

  // The parser accepts no coding but chunked in requests, so this is the whole list.
  if (req.body == BodyKind::Chunked) out += "Transfer-Encoding: chunked\r\n";
  out += info.websocket ? "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        : "Connection: keep-alive\r\n";
  out += "\r\n";
}

void appendForwardedResponse(const ResponseHead& resp, bool clientKeepAlive,
                             std::string_view extraHeaders, std::string& out) {
  out += "HTTP/1.1 ";
  appendNumber(out, static_cast<uint64_t>(resp.status < 0 ? 0 : resp.status));
  out += ' ';
  out += resp.reason;
  out += "\r\n";

  // RFC 9110 8.6: no Content-Length in 1xx or 204; a backend that sends one anyway must not
  // make the client expect a body wsgate will not relay.
  const bool mayCarryLength = resp.status >= 200 && resp.status != 204;
  bool hasTransferEncoding = false;
  for (const Header& h : resp.headers) {
    if (iequals(h.name, "Transfer-Encoding")) {
      hasTransferEncoding = true;
      continue;
    }
    if (isHopByHop(h.name, resp.headers)) continue;
    if (iequals(h.name, "Content-Length")) {
      if (mayCarryLength) appendContentLength(out, h.name, resp.contentLength);
    } else {
      appendField(out, h.name, h.value);
    }
  }

  // The body bytes are relayed verbatim, so the codings the backend applied are the ones the
  // client must undo: keep the whole list (e.g. "gzip, chunked"), not just chunked.
  const bool untilClose = resp.body == BodyKind::UntilClose;
  if (resp.body == BodyKind::Chunked || (untilClose && hasTransferEncoding)) {
    bool first = true;
    for (const Header& h : resp.headers) {
      if (!iequals(h.name, "Transfer-Encoding") || h.value.empty()) continue;
      out += first ? "Transfer-Encoding: " : ", ";
      out += h.value;
      first = false;
    }
    if (!first) out += "\r\n";
  }

  if (resp.status == 101) {
    out += "Upgrade: websocket\r\nConnection: Upgrade\r\n";
  } else if (resp.status >= 200) {
    // An interim 1xx says nothing about persistence; the final response does. A body that ends
    // at close can only be delimited for the client by closing its connection too.
    out += clientKeepAlive && !untilClose ? "Connection: keep-alive\r\n" : "Connection: close\r\n";
  }
  out += extraHeaders;
  out += "\r\n";
}

}  // namespace wsgate::http
