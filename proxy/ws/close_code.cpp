// Close codes on the wire (RFC 6455 7.4.1, 7.4.2) and the close payload (RFC 6455 5.5.1).

#include "proxy/ws/close_code.h"

#include <cstddef>

#include "proxy/ws/utf8.h"

namespace wsgate::ws {

namespace {

// RFC 6455 5.5: every control frame's payload is at most 125 bytes.
constexpr std::size_t kMaxControlPayload = 125;

}  // namespace

bool isValidCloseCode(uint16_t code) noexcept {
  // RFC 6455 7.4.1 defines 1000-1003 and 1007-1011; the IANA registry (7.4.2 points to it)
  // adds 1012-1014. 1004 is reserved, and 1005, 1006 and 1015 are reserved for reporting
  // and "MUST NOT be set as a status code in a Close control frame". 0-999 are unused,
  // 1016-2999 are reserved for future revisions, 3000-3999 are registered for libraries and
  // 4000-4999 are private. 5000 and up are not defined.
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

Violation checkClosePayload(std::string_view payload) noexcept {
  // RFC 6455 5.5.1: the body is empty, or a 2-byte status code in network order followed by
  // a UTF-8 reason.
  if (payload.empty()) return {};
  if (payload.size() > kMaxControlPayload) {
    return {close_code::kProtocolError, "close payload over 125 bytes"};
  }
  if (payload.size() == 1) return {close_code::kProtocolError, "close payload of 1 byte"};
  const auto* p = reinterpret_cast<const unsigned char*>(payload.data());
  const auto code = static_cast<uint16_t>((p[0] << 8) | p[1]);
  if (!isValidCloseCode(code)) return {close_code::kProtocolError, "invalid close code"};
  // RFC 6455 8.1: invalid UTF-8 in text fails the connection with 1007 (7.4.1).
  if (!isValidUtf8(payload.substr(2))) {
    return {close_code::kInvalidPayload, "close reason is not valid UTF-8"};
  }
  return {};
}

}  // namespace wsgate::ws
