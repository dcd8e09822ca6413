// Strict response-head parser for backend responses (RFC 9112 sections 4-6). Every rejection is
// a 502: the backend, not the client, sent something we cannot relay safely.
//
// Decisions the RFC leaves open, made here once:
// - "HTTP/1.1 200\r\n" (no SP, no reason) is accepted as an empty reason, as HAProxy does: the
//   line's end is unambiguous, so leniency here cannot desynchronise anything.
// - No empty lines are skipped before the status line (RFC 9112 2.2 only allows it for requests).
// - Status codes outside 100..599 are rejected (RFC 9110 15: they are invalid).
// - Transfer-Encoding in an HTTP/1.0 response is rejected (RFC 9112 6.1: faulty framing).

#include "proxy/http/response_parser.h"

#include "proxy/http/field_parser.h"

namespace wsgate::http {
namespace {

using detail::CharClass;
using detail::is;
using detail::Scan;

ParseResult fail(std::string_view reason) noexcept { return {ParseStatus::Error, 0, 502, reason}; }

}  // namespace

ParseResult parseResponseHead(std::string_view buf, const ParseLimits& limits,
                              const ResponseContext& ctx, ResponseHead& out) {
  std::vector<Header> headers = std::move(out.headers);
  headers.clear();
  out = ResponseHead{};
  out.headers = std::move(headers);

  const bool truncated = buf.size() > limits.maxHeaderBytes;
  const std::string_view head = truncated ? buf.substr(0, limits.maxHeaderBytes) : buf;
  const auto needMore = [truncated]() noexcept {
    return truncated ? fail("response head too large") : ParseResult{};
  };
  const std::size_t n = head.size();

  // status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 4).
  int major = 0;
  int minor = 0;
  const Scan version = detail::scanHttpVersion(head, 0, major, minor);
  if (version.status == ParseStatus::Incomplete) return needMore();
  if (version.status == ParseStatus::Error) return fail(version.errorReason);
  if (major != 1 || minor > 1) return fail("unsupported HTTP version");
  out.version = minor == 0 ? Version::Http10 : Version::Http11;
  std::size_t i = version.pos;
  if (i == n) return needMore();
  if (head[i] != ' ') return fail("invalid status line");
  ++i;

  int status = 0;
  for (int k = 0; k < 3; ++k, ++i) {
    if (i == n) return needMore();
    if (!is(head[i], CharClass::kDigit)) return fail("invalid status code");
    status = status * 10 + (head[i] - '0');
  }
  if (status < 100 || status > 599) return fail("status code out of range");
  out.status = status;

  if (i == n) return needMore();
  if (head[i] == ' ') {
    ++i;
    const std::size_t reasonBegin = i;
    while (i < n && is(head[i], CharClass::kValueChar)) ++i;
    if (i == n) return needMore();
    out.reason = head.substr(reasonBegin, i - reasonBegin);
  }
  if (head[i] == '\n') return fail("bare LF");
  if (head[i] != '\r') return fail("invalid character in status line");
  if (i + 1 == n) return needMore();
  if (head[i + 1] != '\n') return fail("bare CR");
  i += 2;

  detail::FieldFacts facts;
  const detail::FieldRules rules{false, out.version, limits.maxHeaders};
  const Scan fields = detail::scanFields(head, i, rules, out.headers, facts);
  if (fields.status == ParseStatus::Incomplete) return needMore();
  if (fields.status == ParseStatus::Error) return fail(fields.errorReason);
  if (facts.hasTransferEncoding && facts.codings == 0) return fail("empty Transfer-Encoding");

  out.contentLength = facts.contentLength;
  out.keepAlive = out.version == Version::Http11
                      ? !facts.connectionClose
                      : facts.connectionKeepAlive && !facts.connectionClose;

  // Body length, RFC 9112 6.3, in the order the RFC gives.
  if (ctx.requestWasHead || status < 200 || status == 204 || status == 304) {
    out.body = BodyKind::None;  // (1)
  } else if (facts.hasTransferEncoding) {
    if (facts.chunkedLast) {
      out.body = BodyKind::Chunked;  // (4)
    } else {
      out.body = BodyKind::UntilClose;  // (4): chunked not final -> read until close
      out.keepAlive = false;
    }
  } else if (facts.hasContentLength) {
    out.body = facts.contentLength > 0 ? BodyKind::ContentLength : BodyKind::None;  // (6)
  } else {
    out.body = BodyKind::UntilClose;  // (8)
    out.keepAlive = false;
  }

  ParseResult done;
  done.status = ParseStatus::Complete;
  done.headBytes = fields.pos;
  return done;
}

}  // namespace wsgate::http
