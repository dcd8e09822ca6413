// Per-direction frame rules (RFC 6455 5.1-5.5, RFC 7692 6): one verdict per frame header.

#include "proxy/ws/frame_checker.h"

namespace wsgate::ws {

namespace {

// RFC 6455 5.2: RSV1 = 4, RSV2 = 2, RSV3 = 1 in FrameHeader::rsv.
constexpr uint8_t kRsv1 = 0x4;
// RFC 6455 5.5: control frames carry at most 125 bytes.
constexpr uint64_t kMaxControlPayload = 125;

constexpr Violation protocolError(std::string_view reason) noexcept {
  return {close_code::kProtocolError, reason};
}

bool isControl(uint8_t opcode) noexcept { return (opcode & 0x8) != 0; }

// RFC 6455 5.2: 0x3-0x7 and 0xB-0xF are reserved for further frames.
bool isKnownOpcode(uint8_t opcode) noexcept {
  switch (static_cast<Opcode>(opcode)) {
    case Opcode::Continuation:
    case Opcode::Text:
    case Opcode::Binary:
    case Opcode::Close:
    case Opcode::Ping:
    case Opcode::Pong:
      return true;
  }
  return false;
}

// The verdict on one header given the message state; changes nothing.
Violation checkHeader(const FrameHeader& h, const DirectionRules& rules, bool inMessage,
                      uint64_t messageBytes) noexcept {
  // RFC 6455 5.2: an unknown opcode fails the connection.
  if (!isKnownOpcode(h.opcode)) return protocolError("reserved opcode");
  const auto op = static_cast<Opcode>(h.opcode);

  // RFC 6455 5.2: RSV bits are zero unless an extension defines them. permessage-deflate
  // defines RSV1 only, and only on the first frame of a data message (RFC 7692 6): never on
  // a continuation or a control frame (6.1).
  if (h.rsv != 0) {
    const bool firstDataFrame = op == Opcode::Text || op == Opcode::Binary;
    if (h.rsv != kRsv1 || !rules.permessageDeflate || !firstDataFrame) {
      return protocolError("reserved bits set");
    }
  }

  // RFC 6455 5.1: a client masks every frame, a server masks none; the peer closes on a
  // frame that breaks this. The proxy is the server to its client and the client to its
  // backend, so both directions are checked.
  if (h.masked != rules.fromClient) {
    return protocolError(rules.fromClient ? "unmasked client frame" : "masked server frame");
  }

  if (isControl(h.opcode)) {
    // RFC 6455 5.5: control frames are never fragmented and carry at most 125 bytes. They
    // may come between the fragments of a message (5.4).
    if (!h.fin) return protocolError("fragmented control frame");
    if (h.payloadLength > kMaxControlPayload) return protocolError("control frame over 125 bytes");
    return {};
  }

  // RFC 6455 5.4: the fragments of one message are never interleaved with another message.
  if (op == Opcode::Continuation) {
    if (!inMessage) return protocolError("continuation without a message");
  } else if (inMessage) {
    return protocolError("new message inside a fragmented one");
  }

  // RFC 6455 10.4: a limit on message size, judged from the declared lengths before any
  // payload is read. The bytes already counted never exceed the limit, so the subtraction
  // cannot wrap, and the sum (which could) is never formed.
  const uint64_t already = op == Opcode::Continuation ? messageBytes : 0;
  if (h.payloadLength > rules.maxMessageBytes - already) {
    return {close_code::kMessageTooBig, "message too big"};
  }
  return {};
}

}  // namespace

Violation FrameChecker::onHeader(const FrameHeader& h) noexcept {
  if (violation_) return violation_;
  violation_ = checkHeader(h, rules_, inMessage_, messageBytes_);
  if (violation_) return violation_;

  ++frames_;
  // Control frames leave the message state alone (RFC 6455 5.4, 5.5).
  if (isControl(h.opcode)) return {};
  const auto op = static_cast<Opcode>(h.opcode);
  if (op != Opcode::Continuation) {
    messageOpcode_ = op;
    messageBytes_ = 0;
  }
  messageBytes_ += h.payloadLength;
  inMessage_ = !h.fin;
  if (h.fin) ++messages_;
  return {};
}

}  // namespace wsgate::ws
