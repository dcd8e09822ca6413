// WebSocket frame header codec (RFC 6455 5.2) and masking (RFC 6455 5.3).

#include "proxy/ws/frame.h"

#include <cstring>

namespace wsgate::ws {

namespace {

// RFC 6455 5.2: the 7-bit length field values that announce an extended length.
constexpr uint8_t kLength16 = 126;
constexpr uint8_t kLength64 = 127;
constexpr uint64_t kMaxLength7 = 125;
constexpr uint64_t kMaxLength16 = 0xFFFF;

// RFC 6455 5.5: a control frame's payload is at most 125 bytes; a close payload spends two
// of them on the status code (5.5.1), leaving 123 for the reason.
constexpr std::size_t kMaxCloseReason = 123;

uint64_t readBigEndian(const unsigned char* p, std::size_t n) noexcept {
  uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

void appendBigEndian(std::string& out, uint64_t v, std::size_t n) {
  for (std::size_t i = n; i-- > 0;) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

// Longest prefix of `s` of at most `max` bytes that does not end inside a UTF-8 sequence:
// the cut must not land on a continuation byte (10xxxxxx), or the peer would see invalid
// UTF-8 in the close reason and fail the connection with 1007 (RFC 6455 5.5.1, 8.1).
std::string_view cutUtf8(std::string_view s, std::size_t max) noexcept {
  if (s.size() <= max) return s;
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

}  // namespace

HeaderStatus parseFrameHeader(std::string_view buf, FrameHeader& out) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(buf.data());
  if (buf.size() < 2) return HeaderStatus::Incomplete;

  // RFC 6455 5.2, first two bytes: FIN, RSV1-3, opcode | MASK, 7-bit length. Whether the
  // RSV bits and opcode are acceptable depends on negotiated extensions and the message
  // state, so the relay judges them; the codec only decodes.
  FrameHeader h;
  h.fin = (p[0] & 0x80) != 0;
  h.rsv = static_cast<uint8_t>((p[0] >> 4) & 0x07);
  h.opcode = static_cast<uint8_t>(p[0] & 0x0F);
  h.masked = (p[1] & 0x80) != 0;
  const uint8_t length7 = p[1] & 0x7F;

  std::size_t pos = 2;
  if (length7 == kLength16) {
    if (buf.size() < pos + 2) return HeaderStatus::Incomplete;
    h.payloadLength = readBigEndian(p + pos, 2);
    pos += 2;
  } else if (length7 == kLength64) {
    if (buf.size() < pos + 8) return HeaderStatus::Incomplete;
    h.payloadLength = readBigEndian(p + pos, 8);
    pos += 8;
    // RFC 6455 5.2: "the most significant bit MUST be 0". Refused before anything could
    // size a buffer or a counter by it.
    if ((h.payloadLength >> 63) != 0) return HeaderStatus::Error;
  } else {
    h.payloadLength = length7;
  }
  // A length not in its minimal form (RFC 6455 5.2 says senders MUST use the minimal one)
  // is accepted: the frame boundary is still unambiguous, so it cannot desynchronise the
  // relay, and rejecting it would only break sloppy but harmless peers.

  if (h.masked) {
    if (buf.size() < pos + 4) return HeaderStatus::Incomplete;
    std::memcpy(h.mask.data(), p + pos, 4);
    pos += 4;
  }
  h.headerBytes = pos;
  out = h;
  return HeaderStatus::Complete;
}

void appendFrameHeader(std::string& out, bool fin, Opcode op, uint64_t payloadLength,
                       const uint8_t* mask) {
  // The caller never frames more than 2^63 - 1 bytes: payloads come from memory.
  out.push_back(static_cast<char>((fin ? 0x80 : 0x00) | (static_cast<uint8_t>(op) & 0x0F)));
  const uint8_t maskBit = mask != nullptr ? 0x80 : 0x00;
  // RFC 6455 5.2: the minimal number of bytes MUST be used to encode the length.
  if (payloadLength <= kMaxLength7) {
    out.push_back(static_cast<char>(maskBit | payloadLength));
  } else if (payloadLength <= kMaxLength16) {
    out.push_back(static_cast<char>(maskBit | kLength16));
    appendBigEndian(out, payloadLength, 2);
  } else {
    out.push_back(static_cast<char>(maskBit | kLength64));
    appendBigEndian(out, payloadLength, 8);
  }
  if (mask != nullptr) out.append(reinterpret_cast<const char*>(mask), 4);
}

std::size_t applyMask(char* data, std::size_t len, const std::array<uint8_t, 4>& mask,
                      std::size_t offset) noexcept {
  // RFC 6455 5.3: octet i of the payload is XORed with mask[i % 4]. Rotating the key by
  // `offset` lets a payload that arrives in pieces be unmasked piece by piece.
  std::array<uint8_t, 8> rotated{};
  for (std::size_t k = 0; k < rotated.size(); ++k) rotated[k] = mask[(offset + k) & 3];

  // Eight bytes per step. memcpy keeps the loads and stores free of alignment and
  // aliasing questions (it compiles to plain 64-bit moves), and since the key word is
  // built from bytes in memory order it is correct on either endianness.
  uint64_t key = 0;
  std::memcpy(&key, rotated.data(), sizeof key);
  std::size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t word = 0;
    std::memcpy(&word, data + i, sizeof word);
    word ^= key;
    std::memcpy(data + i, &word, sizeof word);
  }
  // `i` is a multiple of 8 here, so the rotated key still lines up byte for byte.
  for (; i < len; ++i) data[i] = static_cast<char>(data[i] ^ rotated[i & 7]);
  return (offset + len) & 3;
}

std::string closeFrame(uint16_t code, std::string_view reason, const uint8_t* mask) {
  // RFC 6455 5.5.1: the body starts with the status code as a 2-byte unsigned integer in
  // network byte order, followed by a UTF-8 reason.
  const std::string_view cut = cutUtf8(reason, kMaxCloseReason);
  std::string frame;
  frame.reserve(2 + 4 + 2 + cut.size());
  appendFrameHeader(frame, /*fin=*/true, Opcode::Close, 2 + cut.size(), mask);
  const std::size_t payloadStart = frame.size();
  appendBigEndian(frame, code, 2);
  frame.append(cut);
  if (mask != nullptr) {
    // RFC 6455 5.3: frames toward a server (the backend) carry a masked payload.
    const std::array<uint8_t, 4> key{mask[0], mask[1], mask[2], mask[3]};
    applyMask(frame.data() + payloadStart, frame.size() - payloadStart, key);
  }
  return frame;
}

}  // namespace wsgate::ws
