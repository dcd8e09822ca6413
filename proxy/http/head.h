#pragma once
// Plain data of a parsed HTTP/1.1 message head. Every string_view points into the
// caller's buffer, which must outlive the head (the parser copies nothing).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace wsgate::http {

struct Header {
  std::string_view name;   // as received (case preserved); compare with iequals()
  std::string_view value;  // leading/trailing OWS trimmed
};

enum class Version : uint8_t { Http10, Http11 };

// How the body that follows a head is delimited (RFC 9112 section 6).
enum class BodyKind : uint8_t {
  None,           // no body
  ContentLength,  // exactly contentLength bytes
  Chunked,        // chunked transfer coding, ends with the last chunk + trailers
  UntilClose,     // responses only: the body ends when the backend closes
};

// Outcome of feeding a buffer to a head parser.
enum class ParseStatus : uint8_t {
  Complete,    // a whole head was parsed; headBytes says how long it is
  Incomplete,  // need more bytes (and the limits are not exceeded yet)
  Error,       // the message is invalid; errorStatus/errorReason say why
};

struct ParseLimits {
  std::size_t maxHeaderBytes = 16 * 1024;  // whole head incl. request line -> 431
  std::size_t maxHeaders = 100;            // number of fields -> 431
  std::size_t maxUriBytes = 8 * 1024;      // request target -> 414
};

struct ParseResult {
  ParseStatus status = ParseStatus::Incomplete;
  std::size_t headBytes = 0;       // with Complete: bytes of the head, final CRLF included
  int errorStatus = 0;             // with Error: 400, 414, 431, 501, (502 for responses)
  std::string_view errorReason{};  // with Error: static text for logs, e.g. "obs-fold"
};

struct RequestHead {
  std::string_view method;
  std::string_view target;  // as received
  // target up to '?'; for absolute-form the URI's path ("/" when it has none), for "*" "*"
  std::string_view path;
  std::string_view query;  // after '?', without it; empty when none
  Version version = Version::Http11;
  std::vector<Header> headers;
  // The single Host field's value. For absolute-form, the target's authority (RFC 9112 3.2.2),
  // which the parser requires to equal the Host field when both are present.
  std::string_view host;
  BodyKind body = BodyKind::None;
  uint64_t contentLength = 0;   // with BodyKind::ContentLength
  bool keepAlive = true;        // persistence per RFC 9112 9.3 (version + Connection)
  bool expectContinue = false;  // Expect: 100-continue
  // Upgrade holds the token "websocket" and Connection holds "upgrade" (HTTP/1.1 only).
  bool upgradeWebsocket = false;
  // Any Upgrade field was present (e.g. h2c): it is never forwarded as such.
  bool hasUpgrade = false;
};

struct ResponseHead {
  Version version = Version::Http11;
  int status = 0;
  std::string_view reason;
  std::vector<Header> headers;
  BodyKind body = BodyKind::None;
  uint64_t contentLength = 0;
  bool keepAlive = true;  // false: the backend connection cannot be reused
};

// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b) noexcept;

// True when the comma-separated token list `list` (a field value such as Connection's)
// holds `token`, compared case-insensitively, ignoring OWS around elements.
bool hasToken(std::string_view list, std::string_view token) noexcept;

// First header named `name` (case-insensitive), or nullptr.
const Header* findHeader(const std::vector<Header>& headers, std::string_view name) noexcept;

// The value of cookie `name` in the request's Cookie fields (RFC 6265 5.4: "a=b; c=d",
// possibly over several fields), or nullopt. The value is returned as sent (no decoding).
std::optional<std::string_view> findCookie(const std::vector<Header>& headers,
                                           std::string_view name) noexcept;

// The value of query parameter `name` in `query` ("a=1&b=2", without the '?'), as sent (no
// percent-decoding), or nullopt. A parameter without '=' has an empty value.
std::optional<std::string_view> findQueryParam(std::string_view query,
                                               std::string_view name) noexcept;

// Status line reason phrase for a status code ("Bad Request"), "Unknown" if not known.
std::string_view reasonPhrase(int status) noexcept;

}  // namespace wsgate::http
