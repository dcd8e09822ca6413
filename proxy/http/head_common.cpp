// Helpers shared by both head parsers and by the code that reads parsed heads: case-insensitive
// comparisons, token lists, reason phrases, and the field-section scanner (RFC 9112 5).

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>

#include "proxy/http/field_parser.h"
#include "proxy/http/head.h"

namespace wsgate::http {
namespace {

constexpr std::array<char, 256> makeLowerTable() {
  std::array<char, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[static_cast<std::size_t>(c)] = static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
  }
  return t;
}

constexpr std::array<char, 256> kLower = makeLowerTable();

constexpr char lower(char c) noexcept { return kLower[static_cast<unsigned char>(c)]; }

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool hasToken(std::string_view list, std::string_view token) noexcept {
  if (token.empty()) return false;
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    if (iequals(detail::trimOws(list.substr(start, comma - start)), token)) return true;
    start = comma + 1;
  }
  return false;
}

const Header* findHeader(const std::vector<Header>& headers, std::string_view name) noexcept {
  for (const Header& h : headers) {
    if (iequals(h.name, name)) return &h;
  }
  return nullptr;
}

namespace {

std::string_view trimSpaces(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Walks "k=v<sep>k=v..." and returns the value of the first pair named `name`.
std::optional<std::string_view> findPair(std::string_view list, char sep,
                                         std::string_view name) noexcept {
  while (!list.empty()) {
    const std::size_t end = list.find(sep);
    std::string_view pair = trimSpaces(list.substr(0, end));
    list = end == std::string_view::npos ? std::string_view{} : list.substr(end + 1);
    const std::size_t eq = pair.find('=');
    const std::string_view key = trimSpaces(pair.substr(0, eq));
    if (key != name) continue;
    if (eq == std::string_view::npos) return std::string_view{};
    std::string_view value = trimSpaces(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);  // RFC 6265 4.1.1 allows a quoted value
    }
    return value;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string_view> findCookie(const std::vector<Header>& headers,
                                           std::string_view name) noexcept {
  for (const Header& h : headers) {
    if (!iequals(h.name, "Cookie")) continue;
    if (auto v = findPair(h.value, ';', name)) return v;
  }
  return std::nullopt;
}

std::optional<std::string_view> findQueryParam(std::string_view query,
                                               std::string_view name) noexcept {
  return findPair(query, '&', name);
}

std::string_view reasonPhrase(int status) noexcept {
  // RFC 9110 section 15, plus 429/431 (RFC 6585).
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 421:
      return "Misdirected Request";
    case 422:
      return "Unprocessable Content";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

namespace detail {

std::string_view trimOws(std::string_view s) noexcept {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

bool parseContentLength(std::string_view value, uint64_t& out) noexcept {
  constexpr uint64_t kMax = static_cast<uint64_t>(INT64_MAX);
  if (value.empty()) return false;
  uint64_t n = 0;
  for (char c : value) {
    if (!is(c, kDigit)) return false;
    const auto d = static_cast<uint64_t>(c - '0');
    if (n > (kMax - d) / 10) return false;
    n = n * 10 + d;
  }
  out = n;
  return true;
}

// The inside of an IP-literal (RFC 3986 3.2.2): an IPv6address, or IPvFuture =
// "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ). "[example.com]" or "[1.2.3.4]" is
// neither, and a backend would read it some other way.
static bool isValidIpLiteral(std::string_view lit) noexcept {
  if (!lit.empty() && (lit[0] == 'v' || lit[0] == 'V')) {
    std::size_t k = 1;
    while (k < lit.size() && is(lit[k], kHexDigit)) ++k;
    if (k == 1 || k + 1 >= lit.size() || lit[k] != '.') return false;
    for (++k; k < lit.size(); ++k) {
      if (!is(lit[k], kHostChar) && lit[k] != ':') return false;
    }
    return true;
  }
  std::array<char, INET6_ADDRSTRLEN> text{};  // inet_pton wants a NUL-terminated string
  if (lit.empty() || lit.size() >= text.size()) return false;
  std::copy(lit.begin(), lit.end(), text.begin());
  in6_addr addr;
  return inet_pton(AF_INET6, text.data(), &addr) == 1;
}

bool isValidHost(std::string_view v) noexcept {
  std::size_t i = 0;
  const std::size_t n = v.size();
  if (n > 0 && v[0] == '[') {
    const std::size_t close = v.find(']');
    if (close == std::string_view::npos || !isValidIpLiteral(v.substr(1, close - 1))) {
      return false;
    }
    i = close + 1;
  } else {
    while (i < n && v[i] != ':') {
      if (v[i] == '%') {  // pct-encoded
        if (i + 2 >= n || !is(v[i + 1], kHexDigit) || !is(v[i + 2], kHexDigit)) return false;
        i += 3;
        continue;
      }
      if (!is(v[i], kHostChar)) return false;
      ++i;
    }
    if (i == 0 && n > 0) return false;  // ":80" names no host
  }
  if (i == n) return true;
  if (v[i] != ':') return false;
  const std::string_view port = v.substr(i + 1);
  if (port.size() > 5) return false;
  for (char c : port) {
    if (!is(c, kDigit)) return false;
  }
  return true;
}

Scan scanHttpVersion(std::string_view buf, std::size_t pos, int& major, int& minor) noexcept {
  // HTTP-version = HTTP-name "/" DIGIT "." DIGIT, HTTP-name case-sensitive (RFC 9112 2.3).
  constexpr std::string_view kPattern = "HTTP/0.0";
  for (std::size_t k = 0; k < kPattern.size(); ++k) {
    if (pos + k >= buf.size()) return Scan::incomplete();
    const char c = buf[pos + k];
    const bool ok = kPattern[k] == '0' ? is(c, kDigit) : c == kPattern[k];
    if (!ok) return Scan::error(400, "invalid HTTP version");
  }
  major = buf[pos + 5] - '0';
  minor = buf[pos + 7] - '0';
  return Scan::complete(pos + kPattern.size());
}

namespace {

// Adds the codings of one Transfer-Encoding field to what earlier fields listed (a repeated
// field is the same list continued, RFC 9110 5.3).
Scan addTransferCodings(std::string_view value, const FieldRules& rules, FieldFacts& f) noexcept {
  f.hasTransferEncoding = true;
  std::size_t start = 0;
  while (start <= value.size()) {
    std::size_t comma = value.find(',', start);
    if (comma == std::string_view::npos) comma = value.size();
    const std::string_view element = trimOws(value.substr(start, comma - start));
    start = comma + 1;
    if (element.empty()) continue;  // RFC 9110 5.6.1: empty list elements are ignored
    std::size_t nameEnd = 0;
    while (nameEnd < element.size() && is(element[nameEnd], kTchar)) ++nameEnd;
    if (nameEnd == 0) return Scan::error(400, "invalid transfer coding");
    const std::string_view rest = trimOws(element.substr(nameEnd));
    // Parameters are only checked for a leading ';': any coding carrying them is one we do not
    // implement, so the message is rejected either way.
    if (!rest.empty() && rest.front() != ';') return Scan::error(400, "invalid transfer coding");
    if (iequals(element.substr(0, nameEnd), "chunked")) {
      if (!rest.empty()) return Scan::error(400, "parameters on chunked");
      // RFC 9112 6.1: a sender MUST NOT apply chunked more than once.
      if (f.chunked) return Scan::error(400, "chunked applied twice");
      f.chunked = true;
      f.chunkedLast = true;
    } else {
      // RFC 9112 6.3 (4): a request whose codings do not end in chunked is a 400. Once a coding
      // follows chunked, no later field can fix that (chunked may not repeat): reject now.
      if (f.chunked && rules.request) return Scan::error(400, "chunked is not the final coding");
      f.unknownCoding = true;
      f.chunkedLast = false;
    }
    ++f.codings;
  }
  return Scan::complete(0);
}

void addConnectionOptions(std::string_view value, FieldFacts& f) noexcept {
  std::size_t start = 0;
  while (start <= value.size()) {
    std::size_t comma = value.find(',', start);
    if (comma == std::string_view::npos) comma = value.size();
    const std::string_view option = trimOws(value.substr(start, comma - start));
    start = comma + 1;
    if (iequals(option, "close")) {
      f.connectionClose = true;
    } else if (iequals(option, "keep-alive")) {
      f.connectionKeepAlive = true;
    } else if (iequals(option, "upgrade")) {
      f.connectionUpgrade = true;
    }
  }
}

// The semantics of the fields that frame the message or manage the connection. Checked as each
// field completes, so a head that can no longer be valid is rejected before it is complete.
Scan applyField(const Header& h, const FieldRules& rules, FieldFacts& f) noexcept {
  switch (h.name.size()) {  // a length switch keeps the common case to one comparison
    case 4:
      if (rules.request && iequals(h.name, "Host")) {
        // RFC 9112 3.2: more than one Host, or an invalid one, is a 400.
        if (++f.hostCount > 1) return Scan::error(400, "duplicate Host");
        if (!isValidHost(h.value)) return Scan::error(400, "invalid Host");
        f.host = h.value;
      }
      break;
    case 6:
      if (iequals(h.name, "Expect") && hasToken(h.value, "100-continue")) f.expectContinue = true;
      break;
    case 7:
      if (iequals(h.name, "Upgrade")) {
        f.hasUpgrade = true;
        if (hasToken(h.value, "websocket")) f.upgradeWebsocket = true;
      }
      break;
    case 10:
      if (iequals(h.name, "Connection")) addConnectionOptions(h.value, f);
      break;
    case 14:
      if (iequals(h.name, "Content-Length")) {
        // Strict (RFC 9112 6.3 (5) allows merging equal values; we do not): a second field is
        // how CL.CL smuggling starts.
        if (f.hasContentLength) return Scan::error(400, "duplicate Content-Length");
        if (!parseContentLength(h.value, f.contentLength)) {
          return Scan::error(400, "invalid Content-Length");
        }
        f.hasContentLength = true;
        if (f.hasTransferEncoding) return Scan::error(400, "Transfer-Encoding with Content-Length");
      }
      break;
    case 17:
      if (iequals(h.name, "Transfer-Encoding")) {
        // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
        if (rules.version == Version::Http10) {
          return Scan::error(400, "Transfer-Encoding in HTTP/1.0");
        }
        // RFC 9112 6.1: CL with TE is a smuggling attempt until proven otherwise: reject.
        if (f.hasContentLength) return Scan::error(400, "Transfer-Encoding with Content-Length");
        return addTransferCodings(h.value, rules, f);
      }
      break;
    default:
      break;
  }
  return Scan::complete(0);
}

}  // namespace

Scan scanFields(std::string_view buf, std::size_t pos, const FieldRules& rules,
                std::vector<Header>& headers, FieldFacts& facts) noexcept {
  const char* const begin = buf.data();
  const char* const end = begin + buf.size();
  const char* p = begin + pos;
  for (;;) {
    // Start of a field line, or of the empty line that ends the head.
    if (p == end) return Scan::incomplete();
    if (*p == '\r') {
      if (p + 1 == end) return Scan::incomplete();
      if (p[1] != '\n') return Scan::error(400, "bare CR");
      return Scan::complete(static_cast<std::size_t>(p + 2 - begin));
    }
    if (*p == '\n') return Scan::error(400, "bare LF");
    if (isOws(*p)) {
      // RFC 9112 5.2 (obs-fold) and 2.2 (whitespace after the start line): reject, never
      // unfold, so no two parsers can disagree on where a field ends.
      return Scan::error(400, headers.empty() ? "whitespace after start line" : "obs-fold");
    }
    if (*p == ':') return Scan::error(400, "empty field name");
    if (headers.size() >= rules.maxHeaders) return Scan::error(431, "too many header fields");

    // field-name = token, then ':' with no whitespace before it (RFC 9112 5.1).
    const char* const nameBegin = p;
    while (p != end && is(*p, kTchar)) ++p;
    if (p == end) return Scan::incomplete();
    if (*p != ':') {
      if (isOws(*p)) return Scan::error(400, "whitespace before colon");
      if (*p == '\r' || *p == '\n') return Scan::error(400, "field line without colon");
      return Scan::error(400, "invalid character in field name");
    }
    const std::string_view name(nameBegin, static_cast<std::size_t>(p - nameBegin));
    ++p;

    // field-value with its OWS (RFC 9112 5, RFC 9110 5.5): HTAB, SP, VCHAR, obs-text only.
    while (p != end && isOws(*p)) ++p;
    const char* const valueBegin = p;
    while (p != end && is(*p, kValueChar)) ++p;
    if (p == end) return Scan::incomplete();
    if (*p == '\n') return Scan::error(400, "bare LF");
    if (*p != '\r') {
      return Scan::error(400, *p == '\0' ? "NUL in field value" : "control character in value");
    }
    if (p + 1 == end) return Scan::incomplete();
    if (p[1] != '\n') return Scan::error(400, "bare CR");
    const char* valueEnd = p;
    while (valueEnd != valueBegin && isOws(valueEnd[-1])) --valueEnd;
    p += 2;

    headers.push_back(Header{
        name, std::string_view(valueBegin, static_cast<std::size_t>(valueEnd - valueBegin))});
    const Scan s = applyField(headers.back(), rules, facts);
    if (s.status == ParseStatus::Error) return s;
  }
}

}  // namespace detail
}  // namespace wsgate::http
