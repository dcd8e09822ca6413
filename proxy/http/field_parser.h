#pragma once
// Internal to proxy/http: the character classes and the field-section scanner shared by the
// request and response parsers, so the field rules of RFC 9112 section 5 live in one place.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "proxy/http/head.h"

namespace wsgate::http::detail {

// One 256-entry table of class bits, built at compile time: a class test is one load.
enum CharClass : uint8_t {
  kTchar = 1 << 0,       // RFC 9110 5.6.2 token characters
  kTargetChar = 1 << 1,  // request-target: visible ASCII except '#' (no fragment, RFC 9112 3.2)
  kValueChar = 1 << 2,   // field-value / reason-phrase: HTAB, SP, VCHAR, obs-text (RFC 9110 5.5)
  kHexDigit = 1 << 3,    // RFC 5234 HEXDIG (either case)
  kHostChar = 1 << 4,    // RFC 3986 unreserved / sub-delims (reg-name without pct-encoding)
  kDigit = 1 << 5,
};

consteval std::array<uint8_t, 256> makeCharTable() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    const bool vchar = c >= 0x21 && c <= 0x7E;
    uint8_t bits = 0;
    if (alpha || digit ||
        std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos) {
      bits |= kTchar;
    }
    if (vchar && c != '#') bits |= kTargetChar;
    if (vchar || c == ' ' || c == '\t' || c >= 0x80) bits |= kValueChar;
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) bits |= kHexDigit;
    if (alpha || digit ||
        std::string_view("-._~!$&'()*+,;=").find(static_cast<char>(c)) != std::string_view::npos) {
      bits |= kHostChar;
    }
    if (digit) bits |= kDigit;
    t[static_cast<std::size_t>(c)] = bits;
  }
  return t;
}

inline constexpr std::array<uint8_t, 256> kCharTable = makeCharTable();

constexpr bool is(char c, CharClass cls) noexcept {
  return (kCharTable[static_cast<unsigned char>(c)] & cls) != 0;
}

constexpr bool isOws(char c) noexcept { return c == ' ' || c == '\t'; }

// Trims optional whitespace (SP / HTAB) on both sides.
std::string_view trimOws(std::string_view s) noexcept;

// RFC 9110 8.6: Content-Length = 1*DIGIT, at most 2^63-1 (so it fits the signed offsets the
// rest of the proxy uses). A list ("5, 5") is not accepted: strict, like HAProxy.
bool parseContentLength(std::string_view value, uint64_t& out) noexcept;

// Host = uri-host [ ":" port ] (RFC 9110 7.2, RFC 3986 3.2.2): an IP-literal in brackets or a
// reg-name of unreserved / sub-delims / pct-encoded characters, then an optional port of up to
// five digits. Empty is allowed (RFC 9110 7.2: a target without authority sends an empty Host).
// No userinfo, no '/', no whitespace: those are how host-confusion attacks start.
bool isValidHost(std::string_view value) noexcept;

// Outcome of one scanning step.
struct Scan {
  ParseStatus status = ParseStatus::Incomplete;
  std::size_t pos = 0;  // with Complete: offset just past the consumed bytes
  int errorStatus = 0;
  std::string_view errorReason{};

  static Scan incomplete() noexcept { return {}; }
  static Scan complete(std::size_t pos) noexcept { return {ParseStatus::Complete, pos, 0, {}}; }
  static Scan error(int status, std::string_view reason) noexcept {
    return {ParseStatus::Error, 0, status, reason};
  }
};

// Matches "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3, case-sensitive) at buf[pos]. On Complete,
// major/minor are set and pos is past the version. Error (status 400) means not a version.
Scan scanHttpVersion(std::string_view buf, std::size_t pos, int& major, int& minor) noexcept;

// What the framing and connection-management fields said, gathered during the scan.
struct FieldFacts {
  std::size_t hostCount = 0;
  std::string_view host;
  bool hasContentLength = false;
  uint64_t contentLength = 0;
  bool hasTransferEncoding = false;
  std::size_t codings = 0;     // transfer codings listed, over every Transfer-Encoding field
  bool chunked = false;        // chunked was listed
  bool chunkedLast = false;    // the last coding listed is chunked
  bool unknownCoding = false;  // a coding other than chunked was listed
  bool connectionClose = false;
  bool connectionKeepAlive = false;
  bool connectionUpgrade = false;
  bool hasUpgrade = false;
  bool upgradeWebsocket = false;
  bool expectContinue = false;
};

struct FieldRules {
  bool request = true;  // requests also check Host and reject codings after chunked
  Version version = Version::Http11;
  std::size_t maxHeaders = 100;
};

// Scans field lines from buf[pos] (just past the start line's CRLF) through the empty line
// that ends the head, appending to `headers` and filling `facts`. Errors carry 400 or 431;
// the response parser maps every one to 502. Incomplete means every byte seen is valid.
// Checks that need the whole section (missing Host, last coding) are left to the caller.
Scan scanFields(std::string_view buf, std::size_t pos, const FieldRules& rules,
                std::vector<Header>& headers, FieldFacts& facts) noexcept;

}  // namespace wsgate::http::detail
