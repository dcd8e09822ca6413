#pragma once
// Per-direction WebSocket frame rules (RFC 6455 5.2-5.5): given each frame header in
// order, decides whether the stream is still valid. Pure; the relay owns the I/O and asks
// this class before it forwards a frame header.

#include <cstdint>

#include "proxy/ws/close_code.h"
#include "proxy/ws/frame.h"

namespace wsgate::ws {

struct DirectionRules {
  bool fromClient = true;          // client frames must be masked, backend frames must not
  bool permessageDeflate = false;  // negotiated: RSV1 allowed on a message's first frame
  uint64_t maxMessageBytes = 16 * 1024 * 1024;  // sum of a message's fragments
};

class FrameChecker {
public:
  explicit FrameChecker(const DirectionRules& rules) : rules_(rules) {}

  // Checks the next frame header of this direction and advances the message state.
  // Violations (code 1002 unless noted):
  //   mask bit wrong for the direction; RSV bits not allowed (RSV1 only with
  //   permessage-deflate on the first frame of a data message; RSV2/RSV3 never);
  //   reserved opcode (3-7, 11-15); control frame with FIN clear or payload > 125;
  //   continuation without a started message; text/binary while a message is open;
  //   message size (sum of fragments' declared lengths) over maxMessageBytes -> 1009,
  //   decided from the declared length before any payload is read.
  // A violation is final: later calls return it again and change nothing.
  Violation onHeader(const FrameHeader& h) noexcept;

  bool inMessage() const noexcept { return inMessage_; }
  // Opcode of the open (or last) data message: Text or Binary.
  Opcode messageOpcode() const noexcept { return messageOpcode_; }
  uint64_t messageBytes() const noexcept { return messageBytes_; }
  // Number of complete data messages and of frames seen, for counters.
  uint64_t messages() const noexcept { return messages_; }
  uint64_t frames() const noexcept { return frames_; }

private:
  DirectionRules rules_;
  bool inMessage_ = false;
  Opcode messageOpcode_ = Opcode::Text;
  uint64_t messageBytes_ = 0;
  uint64_t messages_ = 0;
  uint64_t frames_ = 0;
  // The first violation, returned again for every later header: the stream is dead.
  Violation violation_{};
};

}  // namespace wsgate::ws
