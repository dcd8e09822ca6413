#pragma once
// Spec model of one direction of a WebSocket tunnel (RFC 6455 5, 5.5.1, 8.1; RFC 7692 6),
// for the fuzz oracle of proxy::FrameRelay and the session's handling of its Control
// stops. Written from the RFC and docs/websocket.md, sharing no code with proxy/ws: it
// decodes headers, unmasks and judges frames itself, and validates text with the
// reference UTF-8 model.
//
// Given the whole byte stream of one side and that direction's rules, it lists the frames
// the relay must accept and how the stream ends (not at all, a valid Close, or a violation
// with its close code), and answers, for any prefix of the stream that has arrived, what a
// streaming relay must have forwarded by then and what its counters say. The rules:
//   - a data frame is judged on its header alone and streamed: its header goes out with
//     its first payload bytes; a control frame (<= 125 bytes) is taken whole, judged, then
//     forwarded; one over 125 bytes is judged on its header;
//   - 1002: reserved opcode, RSV bits (RSV1 only with permessage-deflate, on the first
//     frame of a data message), mask bit wrong for the direction, control frame
//     fragmented or over 125 bytes, continuation outside a message, text/binary inside
//     one, 64-bit length with its top bit set (judged as soon as the 8 length bytes are
//     there), a Close payload of 1 byte or with a code not allowed on the wire;
//   - 1009: a message whose declared lengths sum over the limit, judged on the header;
//   - 1007: with validation on, a text message (not compressed) that is not UTF-8, judged
//     at the first byte no continuation can redeem, or at the end of the message when it
//     stops inside a code point; a Close reason that is not UTF-8 (always checked);
//   - nothing of a judged-bad frame is forwarded beyond what had to go before the bad
//     byte arrived, and nothing after a violation or a Close.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/utf8_model.h"

namespace wsgate::fuzz::model {

struct WsRules {
  bool fromClient = true;
  bool permessageDeflate = false;
  uint64_t maxMessageBytes = 0;
  bool validateUtf8 = false;
};

struct WsFrame {
  std::size_t start = 0, headerEnd = 0;
  uint64_t end = 0;  // headerEnd + length: past the stream while the frame is arriving
  uint8_t opcode = 0;
  bool fin = false;
  uint64_t length = 0;
  bool control() const { return (opcode & 0x8) != 0; }
  // Where the relay has judged and accepted the frame: data frames on their header,
  // control frames once whole.
  uint64_t acceptedAt() const { return control() ? end : headerEnd; }
};

class WsStreamModel {
public:
  enum class End { Open, Close, Violation };
  enum class Cause { None, Header, Text, TextEnd, ClosePayload };

  WsStreamModel(std::string_view stream, const WsRules& rules) : s_(stream), rules_(rules) {
    walk();
  }

  const std::vector<WsFrame>& frames() const { return frames_; }
  End end() const { return end_; }
  Cause cause() const { return cause_; }
  uint16_t code() const { return code_; }
  // The stream length at which the end is decided (a Close or violation is reported by
  // the first feed that reaches it).
  std::size_t decidedAt() const { return decidedAt_; }
  // Start of the frame that closed or broke the stream.
  std::size_t lastFrameStart() const { return lastStart_; }

  // Bytes a streaming relay must have forwarded once `p` bytes arrived (p < decidedAt()):
  // whole accepted frames, and of a data frame whose header is accepted, everything that
  // arrived as soon as one payload byte did. Always a prefix of the stream.
  std::size_t forwarded(std::size_t p) const {
    std::size_t k = 0;
    for (const WsFrame& f : frames_) {
      if (p >= f.end) {
        k = static_cast<std::size_t>(f.end);
        continue;
      }
      if (!f.control() && p > f.headerEnd) k = p;
      break;
    }
    return k;
  }
  // Counters of the relay once `p` bytes arrived.
  uint64_t framesAt(std::size_t p) const {
    uint64_t n = 0;
    for (const WsFrame& f : frames_) n += f.acceptedAt() <= p ? 1 : 0;
    return n;
  }
  uint64_t messagesAt(std::size_t p) const {
    uint64_t n = 0;
    for (const WsFrame& f : frames_) n += (!f.control() && f.fin && f.acceptedAt() <= p) ? 1 : 0;
    return n;
  }
  uint64_t payloadAt(std::size_t p) const {
    uint64_t n = 0;
    for (const WsFrame& f : frames_) {
      if (f.control() || p <= f.headerEnd) continue;
      n += std::min<uint64_t>(f.length, p - f.headerEnd);
    }
    return n;
  }
  // No data frame is part-way forwarded: another frame could be written to the peer now.
  bool atBoundary(std::size_t p) const {
    for (const WsFrame& f : frames_) {
      if (!f.control() && f.headerEnd < p && p < f.end) return false;
    }
    return true;
  }

  // RFC 6455 7.4.1 / 7.4.2 and the IANA registry: the codes a Close may carry.
  static bool closeCodeAllowed(unsigned code) {
    if (code < 1000 || code >= 5000) return false;
    if (code >= 3000) return true;
    static constexpr unsigned kAllowed[] = {1000, 1001, 1002, 1003, 1007, 1008,
                                            1009, 1010, 1011, 1012, 1013, 1014};
    return std::find(std::begin(kAllowed), std::end(kAllowed), code) != std::end(kAllowed);
  }
  // The verdict on an unmasked Close payload: 0, 1002 or 1007 (RFC 6455 5.5.1).
  static uint16_t closePayloadCode(std::string_view payload) {
    if (payload.empty()) return 0;
    if (payload.size() == 1) return 1002;
    const unsigned code =
        (static_cast<unsigned char>(payload[0]) << 8) | static_cast<unsigned char>(payload[1]);
    if (!closeCodeAllowed(code)) return 1002;
    return Utf8Model::check(payload.substr(2)).valid() ? 0 : 1007;
  }

private:
  unsigned char byte(std::size_t i) const { return static_cast<unsigned char>(s_[i]); }

  void finish(End e, Cause c, uint16_t code, std::size_t decidedAt, std::size_t start) {
    end_ = e;
    cause_ = c;
    code_ = code;
    decidedAt_ = decidedAt;
    lastStart_ = start;
  }

  // 0 when the header is fine, else its close code.
  uint16_t judge(const WsFrame& f, uint8_t rsv, bool masked) const {
    const uint8_t op = f.opcode;
    const bool known = op == 0 || op == 1 || op == 2 || op == 8 || op == 9 || op == 10;
    bool protocolError = !known;
    const bool rsvOk = rsv == 0 || (rsv == 4 && rules_.permessageDeflate && (op == 1 || op == 2));
    protocolError = protocolError || !rsvOk;
    protocolError = protocolError || masked != rules_.fromClient;
    if (f.control()) {
      protocolError = protocolError || !f.fin || f.length > 125;
    } else {
      protocolError = protocolError || (op == 0 && !inMessage_) || (op != 0 && inMessage_);
    }
    if (protocolError) return 1002;
    if (!f.control()) {
      const uint64_t before = op == 0 ? messageBytes_ : 0;
      // before + length > max, without overflow (before <= max always holds here).
      if (f.length > rules_.maxMessageBytes - before) return 1009;
    }
    return 0;
  }

  void walk() {
    std::size_t p = 0;
    for (;;) {
      // RFC 6455 5.2 base framing, decoded by hand.
      if (s_.size() < p + 2) return;
      WsFrame f;
      f.start = p;
      f.fin = (byte(p) & 0x80) != 0;
      const uint8_t rsv = (byte(p) >> 4) & 0x7;
      f.opcode = byte(p) & 0x0F;
      const bool masked = (byte(p + 1) & 0x80) != 0;
      const unsigned len7 = byte(p + 1) & 0x7F;
      std::size_t h = p + 2;
      const std::size_t extra = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
      if (s_.size() < h + extra) return;
      f.length = len7 < 126 ? len7 : 0;
      for (std::size_t i = 0; i < extra; ++i) f.length = (f.length << 8) | byte(h + i);
      h += extra;
      if (len7 == 127 && (f.length >> 63) != 0) {
        return finish(End::Violation, Cause::Header, 1002, h, p);
      }
      uint8_t key[4] = {0, 0, 0, 0};
      if (masked) {
        if (s_.size() < h + 4) return;
        for (int i = 0; i < 4; ++i) key[i] = byte(h + static_cast<std::size_t>(i));
        h += 4;
      }
      f.headerEnd = h;
      f.end = h + f.length;  // no overflow: length < 2^63
      // Where the frame ends, once it has arrived whole.
      const std::size_t end = static_cast<std::size_t>(std::min<uint64_t>(f.end, s_.size()));
      const bool wholeControl = f.control() && f.length <= 125;
      if (wholeControl && f.end > s_.size()) return;  // still arriving
      if (const uint16_t code = judge(f, rsv, masked)) {
        return finish(End::Violation, Cause::Header, code, wholeControl ? end : h, p);
      }
      frames_.push_back(f);

      const std::size_t avail =
          static_cast<std::size_t>(std::min<uint64_t>(f.length, s_.size() - h));
      std::string payload(s_.substr(h, avail));
      for (std::size_t i = 0; i < payload.size() && masked; ++i) payload[i] ^= key[i % 4];

      if (f.control()) {
        if (f.opcode == 8) {
          const uint16_t code = closePayloadCode(payload);
          if (code != 0) return finish(End::Violation, Cause::ClosePayload, code, end, p);
          return finish(End::Close, Cause::None, 0, end, p);
        }
        p = end;
        continue;
      }

      // A data frame: the message state, then its payload as far as it arrived.
      if (f.opcode != 0) {
        messageBytes_ = 0;
        checkText_ = rules_.validateUtf8 && f.opcode == 1 && (rsv & 4) == 0;
        text_.clear();
        textPos_.clear();
      }
      messageBytes_ += f.length;
      inMessage_ = !f.fin;
      if (checkText_) {
        text_ += payload;
        for (std::size_t i = 0; i < avail; ++i) textPos_.push_back(h + i);
        const Utf8Answer a = Utf8Model::check(text_);
        if (a.firstBad != Utf8Answer::kNone) {
          return finish(End::Violation, Cause::Text, 1007, textPos_[a.firstBad] + 1, p);
        }
        if (avail == f.length && f.fin && !a.complete) {
          return finish(End::Violation, Cause::TextEnd, 1007, end, p);
        }
      }
      if (avail < f.length) return;  // the stream ends inside this payload
      p = end;
    }
  }

  std::string_view s_;
  WsRules rules_;
  std::vector<WsFrame> frames_;
  End end_ = End::Open;
  Cause cause_ = Cause::None;
  uint16_t code_ = 0;
  std::size_t decidedAt_ = static_cast<std::size_t>(-1);
  std::size_t lastStart_ = 0;
  bool inMessage_ = false;
  uint64_t messageBytes_ = 0;
  bool checkText_ = false;
  std::string text_;                  // the open text message, unmasked, as far as it arrived
  std::vector<std::size_t> textPos_;  // stream position of each byte of text_
};

}  // namespace wsgate::fuzz::model
