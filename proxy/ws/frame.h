#pragma once
// WebSocket frame header codec (RFC 6455 5.2): pure. The frame-aware relay builds on it.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wsgate::ws {

enum class Opcode : uint8_t {
  Continuation = 0x0,
  Text = 0x1,
  Binary = 0x2,
  Close = 0x8,
  Ping = 0x9,
  Pong = 0xA
};

struct FrameHeader {
  bool fin = true;
  uint8_t rsv = 0;  // the three RSV bits, as bits 2..0 (RSV1 = 4)
  uint8_t opcode = 0;
  bool masked = false;
  std::array<uint8_t, 4> mask{};
  uint64_t payloadLength = 0;
  std::size_t headerBytes = 0;  // 2..14
};

enum class HeaderStatus : uint8_t { Complete, Incomplete, Error };

// Decodes the frame header at the start of `buf` (no payload needed). Error when the
// 64-bit length has its top bit set (RFC 6455 5.2).
HeaderStatus parseFrameHeader(std::string_view buf, FrameHeader& out) noexcept;

// Appends a frame header for `payloadLength` bytes (masked when `mask` is non-null).
void appendFrameHeader(std::string& out, bool fin, Opcode op, uint64_t payloadLength,
                       const uint8_t* mask = nullptr);

// XORs `data` in place with `mask`, starting at mask offset `offset` (for payloads that
// arrive in pieces); returns the offset for the next piece.
std::size_t applyMask(char* data, std::size_t len, const std::array<uint8_t, 4>& mask,
                      std::size_t offset = 0) noexcept;

// A complete close frame carrying `code` and `reason` (reason cut to 123 bytes).
std::string closeFrame(uint16_t code, std::string_view reason, const uint8_t* mask = nullptr);

}  // namespace wsgate::ws
