// Strict request-head parser (RFC 9112 sections 2-3, 5-6): one pass over the buffer, no copies.
//
// Decisions the RFC leaves open, made here once:
// - Empty lines (CRLF) before the request line are skipped (RFC 9112 2.2 SHOULD; old clients
//   send one after a POST body). They count toward headBytes and maxHeaderBytes, which bounds
//   them. A bare LF there is still a 400.
// - CONNECT is answered 501 as soon as the method is read: a reverse proxy offers no tunnels,
//   and authority-form is therefore never accepted (400 with any other method).
// - absolute-form is accepted for http/https (RFC 9112 3.2.2: servers MUST accept it). Its
//   authority must be a valid host without userinfo and, like HAProxy, must equal the Host field
//   (case-insensitively) when there is one, so routing and the backend see the same host.
//   `path`/`query` are then those of the target's path ("/" when it has none).
// - A fragment ('#') in the target is a 400 (RFC 9112 3.2 has none; HAProxy CVE-2023-45539).
// - A version that is not HTTP/1.x is rejected with 505 as soon as its digits are seen.

#include "proxy/http/request_parser.h"

#include "proxy/http/field_parser.h"

namespace wsgate::http {
namespace {

using detail::CharClass;
using detail::is;
using detail::Scan;

ParseResult fail(int status, std::string_view reason) noexcept {
  return {ParseStatus::Error, 0, status, reason};
}

// Length of an "http://" or "https://" prefix (scheme case-insensitive, RFC 3986 3.1), else 0.
std::size_t schemeLength(std::string_view t) noexcept {
  if (t.size() >= 7 && iequals(t.substr(0, 7), "http://")) return 7;
  if (t.size() >= 8 && iequals(t.substr(0, 8), "https://")) return 8;
  return 0;
}

// Whether a target cut short by the end of the buffer can still become valid, so that an
// impossible one is rejected before the rest arrives.
bool isTargetPrefix(std::string_view partial, std::string_view method) noexcept {
  if (partial.empty() || partial.front() == '/') return true;
  if (partial == "*") return method == "OPTIONS";
  for (std::string_view scheme : {std::string_view("http://"), std::string_view("https://")}) {
    const std::size_t n = partial.size() < scheme.size() ? partial.size() : scheme.size();
    if (iequals(partial.substr(0, n), scheme.substr(0, n))) return true;
  }
  return false;
}

// Splits a complete target into path and query; for absolute-form also returns the authority.
// RFC 9112 3.2: origin-form, absolute-form, asterisk-form (OPTIONS only).
ParseResult splitTarget(std::string_view target, RequestHead& out,
                        std::string_view& authority) noexcept {
  std::string_view pathAndQuery;
  if (target.front() == '/') {
    pathAndQuery = target;
  } else if (target == "*") {
    if (out.method != "OPTIONS") return fail(400, "asterisk-form without OPTIONS");
    out.path = target;
    return {};
  } else {
    const std::size_t scheme = schemeLength(target);
    if (scheme == 0) return fail(400, "invalid request target form");
    const std::string_view rest = target.substr(scheme);
    const std::size_t authorityEnd = rest.find_first_of("/?");
    authority = rest.substr(0, authorityEnd);
    // RFC 9110 4.2.1: an http(s) URI needs a host; 4.2.4: userinfo is an error.
    if (authority.empty()) return fail(400, "empty authority in target");
    if (authority.find('@') != std::string_view::npos) return fail(400, "userinfo in target");
    if (!detail::isValidHost(authority)) return fail(400, "invalid authority in target");
    pathAndQuery =
        authorityEnd == std::string_view::npos ? std::string_view{} : rest.substr(authorityEnd);
  }
  const std::size_t q = pathAndQuery.find('?');
  out.path = pathAndQuery.substr(0, q);
  if (q != std::string_view::npos) out.query = pathAndQuery.substr(q + 1);
  if (out.path.empty()) out.path = "/";  // absolute-form without a path (RFC 9112 3.2.1)
  return {};
}

}  // namespace

ParseResult parseRequestHead(std::string_view buf, const ParseLimits& limits, RequestHead& out) {
  // Reset every field but keep the vector's capacity: the parser's only allocation.
  std::vector<Header> headers = std::move(out.headers);
  headers.clear();
  out = RequestHead{};
  out.headers = std::move(headers);

  // Only the first maxHeaderBytes can belong to an acceptable head: scan those, and if the head
  // has not ended within them while more bytes exist, it is too large (RFC 6585 431).
  const bool truncated = buf.size() > limits.maxHeaderBytes;
  const std::string_view head = truncated ? buf.substr(0, limits.maxHeaderBytes) : buf;
  const auto needMore = [truncated]() noexcept {
    return truncated ? fail(431, "head too large") : ParseResult{};
  };
  const std::size_t n = head.size();
  std::size_t i = 0;

  while (i < n && head[i] == '\r') {
    if (i + 1 == n) return needMore();
    if (head[i + 1] != '\n') return fail(400, "bare CR");
    i += 2;
  }

  // method = token (RFC 9112 3.1), then exactly one SP.
  const std::size_t methodBegin = i;
  while (i < n && is(head[i], CharClass::kTchar)) ++i;
  if (i == n) return needMore();
  if (head[i] == '\n') return fail(400, "bare LF");
  if (head[i] != ' ' || i == methodBegin) return fail(400, "invalid method");
  out.method = head.substr(methodBegin, i - methodBegin);
  if (out.method == "CONNECT") return fail(501, "CONNECT not supported");
  ++i;

  // request-target: visible ASCII (RFC 9112 3.2), bounded by maxUriBytes (414, RFC 9110 15.5.15).
  const std::size_t targetBegin = i;
  while (i < n && is(head[i], CharClass::kTargetChar)) ++i;
  if (i - targetBegin > limits.maxUriBytes) return fail(414, "request target too long");
  const std::string_view target = head.substr(targetBegin, i - targetBegin);
  if (i == n) {
    if (!isTargetPrefix(target, out.method)) return fail(400, "invalid request target form");
    return needMore();
  }
  if (head[i] != ' ') {
    return fail(400, head[i] == '\r' || head[i] == '\n' ? "missing HTTP version"
                                                        : "invalid character in target");
  }
  if (target.empty()) return fail(400, "empty request target");
  out.target = target;
  std::string_view authority;
  if (const ParseResult r = splitTarget(target, out, authority); r.status == ParseStatus::Error) {
    return r;
  }
  ++i;

  int major = 0;
  int minor = 0;
  const Scan version = detail::scanHttpVersion(head, i, major, minor);
  if (version.status == ParseStatus::Incomplete) return needMore();
  if (version.status == ParseStatus::Error) return fail(400, version.errorReason);
  if (major != 1 || minor > 1) return fail(505, "unsupported HTTP version");
  out.version = minor == 0 ? Version::Http10 : Version::Http11;
  i = version.pos;
  if (i == n) return needMore();
  if (head[i] == '\n') return fail(400, "bare LF");
  if (head[i] != '\r') return fail(400, "invalid request line");
  if (i + 1 == n) return needMore();
  if (head[i + 1] != '\n') return fail(400, "bare CR");
  i += 2;

  detail::FieldFacts facts;
  const detail::FieldRules rules{true, out.version, limits.maxHeaders};
  const Scan fields = detail::scanFields(head, i, rules, out.headers, facts);
  if (fields.status == ParseStatus::Incomplete) return needMore();
  if (fields.status == ParseStatus::Error) return fail(fields.errorStatus, fields.errorReason);

  // Checks that need the whole field section.
  if (facts.hostCount == 0 && out.version == Version::Http11) {
    return fail(400, "missing Host");  // RFC 9112 3.2
  }
  out.host = facts.host;
  if (!authority.empty()) {
    if (facts.hostCount == 1 && !iequals(facts.host, authority)) {
      return fail(400, "Host differs from target authority");
    }
    out.host = authority;  // RFC 9112 3.2.2: the target's authority wins
  }
  if (facts.hasTransferEncoding) {
    if (facts.codings == 0) return fail(400, "empty Transfer-Encoding");
    // RFC 9112 6.3 (4) MUST before RFC 9112 6.1's SHOULD-501: framing errors come first.
    if (!facts.chunkedLast) return fail(400, "chunked is not the final coding");
    if (facts.unknownCoding) return fail(501, "unsupported transfer coding");
    out.body = BodyKind::Chunked;
  } else if (facts.hasContentLength && facts.contentLength > 0) {
    out.body = BodyKind::ContentLength;
  }
  out.contentLength = facts.contentLength;

  // RFC 9112 9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
  out.keepAlive = out.version == Version::Http11
                      ? !facts.connectionClose
                      : facts.connectionKeepAlive && !facts.connectionClose;
  out.expectContinue = facts.expectContinue;
  out.hasUpgrade = facts.hasUpgrade;
  // RFC 9110 7.8: Upgrade is ignored in HTTP/1.0; RFC 6455 4.2.1 needs both tokens.
  out.upgradeWebsocket =
      out.version == Version::Http11 && facts.upgradeWebsocket && facts.connectionUpgrade;

  ParseResult done;
  done.status = ParseStatus::Complete;
  done.headBytes = fields.pos;
  return done;
}

}  // namespace wsgate::http
