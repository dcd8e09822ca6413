#pragma once
// WebSocket close codes (RFC 6455 7.4) and close-payload validation (5.5.1): pure.

#include <cstdint>
#include <string_view>

namespace wsgate::ws {

// The codes wsgate itself sends or checks for.
namespace close_code {
inline constexpr uint16_t kNormal = 1000;
inline constexpr uint16_t kGoingAway = 1001;
inline constexpr uint16_t kProtocolError = 1002;
inline constexpr uint16_t kUnsupportedData = 1003;
inline constexpr uint16_t kNoStatus = 1005;  // never on the wire
inline constexpr uint16_t kAbnormal = 1006;  // never on the wire
inline constexpr uint16_t kInvalidPayload = 1007;
inline constexpr uint16_t kPolicyViolation = 1008;
inline constexpr uint16_t kMessageTooBig = 1009;
inline constexpr uint16_t kInternalError = 1011;
inline constexpr uint16_t kServiceRestart = 1012;
inline constexpr uint16_t kTryAgainLater = 1013;
inline constexpr uint16_t kBadGateway = 1014;
}  // namespace close_code

// A protocol verdict: code 0 means "no violation"; otherwise the close code to send to
// the peer that violated and a static reason for logs and the close frame.
struct Violation {
  uint16_t code = 0;
  std::string_view reason{};
  explicit operator bool() const noexcept { return code != 0; }
};

// Codes allowed in a close frame on the wire: 1000-1003, 1007-1014, 3000-4999.
bool isValidCloseCode(uint16_t code) noexcept;

// Checks an (unmasked) close payload: empty is fine; 1 byte -> 1002; an invalid code ->
// 1002; a reason that is not valid UTF-8 -> 1007.
Violation checkClosePayload(std::string_view payload) noexcept;

}  // namespace wsgate::ws
