// Frame header codec and masking (RFC 6455 5.2, 5.3, 5.5.1).

#include "proxy/ws/frame.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::ws {
namespace {

using namespace std::string_literals;

constexpr uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};

std::string encode(bool fin, Opcode op, uint64_t len, const uint8_t* mask = nullptr) {
  std::string out;
  appendFrameHeader(out, fin, op, len, mask);
  return out;
}

TEST(AppendFrameHeader, UsesTheMinimalLengthEncoding) {
  struct Case {
    uint64_t length;
    std::string expect;
  };
  const Case cases[] = {
      {0, "\x82\x00"s},
      {1, "\x82\x01"s},
      {125, "\x82\x7d"s},
      {126, "\x82\x7e\x00\x7e"s},
      {65535, "\x82\x7e\xff\xff"s},
      {65536, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"s},
      {uint64_t{1} << 32, "\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00"s},
      {(uint64_t{1} << 63) - 1, "\x82\x7f\x7f\xff\xff\xff\xff\xff\xff\xff"s},
  };
  for (const Case& c : cases)
    EXPECT_EQ(encode(true, Opcode::Binary, c.length), c.expect) << c.length;
}

TEST(AppendFrameHeader, SetsMaskBitAndAppendsKey) {
  EXPECT_EQ(encode(true, Opcode::Text, 5, kMask), "\x81\x85\x37\xfa\x21\x3d"s);
  EXPECT_EQ(encode(false, Opcode::Continuation, 126, kMask), "\x00\xfe\x00\x7e\x37\xfa\x21\x3d"s);
}

TEST(ParseFrameHeader, DecodesRfcExamples) {
  // RFC 6455 5.7: a single-frame masked text message "Hello".
  const std::string masked = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"s;
  FrameHeader h;
  ASSERT_EQ(parseFrameHeader(masked, h), HeaderStatus::Complete);
  EXPECT_TRUE(h.fin);
  EXPECT_EQ(h.rsv, 0);
  EXPECT_EQ(h.opcode, 0x1);
  EXPECT_TRUE(h.masked);
  EXPECT_EQ(h.mask, (std::array<uint8_t, 4>{0x37, 0xfa, 0x21, 0x3d}));
  EXPECT_EQ(h.payloadLength, 5u);
  EXPECT_EQ(h.headerBytes, 6u);
  std::string payload = masked.substr(h.headerBytes);
  applyMask(payload.data(), payload.size(), h.mask);
  EXPECT_EQ(payload, "Hello");

  // RFC 6455 5.7: the first fragment of an unmasked text message "Hel".
  ASSERT_EQ(parseFrameHeader("\x01\x03Hel"s, h), HeaderStatus::Complete);
  EXPECT_FALSE(h.fin);
  EXPECT_FALSE(h.masked);
  EXPECT_EQ(h.payloadLength, 3u);
  EXPECT_EQ(h.headerBytes, 2u);
}

TEST(ParseFrameHeader, DecodesRsvBitsAndEveryOpcodeNibble) {
  for (unsigned b0 = 0; b0 < 256; ++b0) {
    const std::string buf{static_cast<char>(b0), '\x00'};
    FrameHeader h;
    ASSERT_EQ(parseFrameHeader(buf, h), HeaderStatus::Complete);
    EXPECT_EQ(h.fin, (b0 & 0x80) != 0);
    EXPECT_EQ(h.rsv, (b0 >> 4) & 7);
    EXPECT_EQ(h.opcode, b0 & 0x0f);
  }
}

TEST(FrameHeader, RoundTripsEveryLengthEncodingMaskedAndNot) {
  const uint64_t lengths[] = {
      0, 1, 125, 126, 127, 65535, 65536, 1u << 20, uint64_t{1} << 32, (uint64_t{1} << 63) - 1};
  const Opcode ops[] = {Opcode::Continuation, Opcode::Text, Opcode::Binary,
                        Opcode::Close,        Opcode::Ping, Opcode::Pong};
  for (uint64_t len : lengths) {
    for (Opcode op : ops) {
      for (bool fin : {true, false}) {
        for (const uint8_t* mask : {static_cast<const uint8_t*>(nullptr), kMask}) {
          const std::string buf = encode(fin, op, len, mask);
          FrameHeader h;
          ASSERT_EQ(parseFrameHeader(buf, h), HeaderStatus::Complete) << len;
          EXPECT_EQ(h.fin, fin);
          EXPECT_EQ(h.rsv, 0);
          EXPECT_EQ(h.opcode, static_cast<uint8_t>(op));
          EXPECT_EQ(h.masked, mask != nullptr);
          if (mask != nullptr) {
            EXPECT_EQ(h.mask, (std::array<uint8_t, 4>{mask[0], mask[1], mask[2], mask[3]}));
          }
          EXPECT_EQ(h.payloadLength, len);
          EXPECT_EQ(h.headerBytes, buf.size());
          const std::size_t lengthBytes = len <= 125 ? 0 : len <= 65535 ? 2 : 8;
          EXPECT_EQ(h.headerBytes, 2 + lengthBytes + (mask != nullptr ? 4 : 0)) << len;
        }
      }
    }
  }
}

TEST(ParseFrameHeader, IgnoresPayloadBytesAfterTheHeader) {
  std::string buf = encode(true, Opcode::Binary, 300, kMask);
  const std::size_t headerSize = buf.size();
  buf.append(300, 'x');
  FrameHeader h;
  ASSERT_EQ(parseFrameHeader(buf, h), HeaderStatus::Complete);
  EXPECT_EQ(h.headerBytes, headerSize);
}

TEST(ParseFrameHeader, ReportsIncompleteForEveryCutHeader) {
  for (uint64_t len : {uint64_t{5}, uint64_t{200}, uint64_t{70000}}) {
    for (const uint8_t* mask : {static_cast<const uint8_t*>(nullptr), kMask}) {
      const std::string buf = encode(true, Opcode::Binary, len, mask);
      for (std::size_t cut = 0; cut < buf.size(); ++cut) {
        FrameHeader h;
        h.payloadLength = 12345;  // sentinel: an incomplete parse leaves `out` alone
        EXPECT_EQ(parseFrameHeader(std::string_view(buf).substr(0, cut), h),
                  HeaderStatus::Incomplete)
            << "length " << len << " cut at " << cut;
        EXPECT_EQ(h.payloadLength, 12345u);
      }
    }
  }
}

TEST(ParseFrameHeader, RejectsLengthWithTopBitSet) {
  FrameHeader h;
  EXPECT_EQ(parseFrameHeader("\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00"s, h), HeaderStatus::Error);
  EXPECT_EQ(parseFrameHeader("\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x02\x03\x04"s, h),
            HeaderStatus::Error);
  // Decided as soon as the length is known, before the mask key arrives.
  EXPECT_EQ(parseFrameHeader("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00"s, h), HeaderStatus::Error);
}

TEST(ParseFrameHeader, AcceptsNonMinimalLengthEncodings) {
  // Senders MUST use the minimal form (RFC 6455 5.2), but the length is still unambiguous.
  FrameHeader h;
  ASSERT_EQ(parseFrameHeader("\x82\x7e\x00\x05"s, h), HeaderStatus::Complete);
  EXPECT_EQ(h.payloadLength, 5u);
  EXPECT_EQ(h.headerBytes, 4u);
  ASSERT_EQ(parseFrameHeader("\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x05"s, h),
            HeaderStatus::Complete);
  EXPECT_EQ(h.payloadLength, 5u);
  EXPECT_EQ(h.headerBytes, 10u);
}

std::string testPayload(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + 7) & 0xff);
  return s;
}

TEST(ApplyMask, XorsByteIWithMaskIModFour) {
  const std::array<uint8_t, 4> mask{0x37, 0xfa, 0x21, 0x3d};
  for (std::size_t n = 0; n < 40; ++n) {
    const std::string plain = testPayload(n);
    for (std::size_t offset = 0; offset < 8; ++offset) {
      std::string data = plain;
      EXPECT_EQ(applyMask(data.data(), data.size(), mask, offset), (offset + n) % 4);
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(static_cast<uint8_t>(data[i]),
                  static_cast<uint8_t>(plain[i]) ^ mask[(offset + i) % 4])
            << "n=" << n << " offset=" << offset << " i=" << i;
      }
    }
  }
}

TEST(ApplyMask, IsItsOwnInverse) {
  const std::array<uint8_t, 4> mask{0xde, 0xad, 0xbe, 0xef};
  const std::string plain = testPayload(1000);
  std::string data = plain;
  applyMask(data.data(), data.size(), mask);
  EXPECT_NE(data, plain);
  applyMask(data.data(), data.size(), mask);
  EXPECT_EQ(data, plain);
}

TEST(ApplyMask, SplitAtEveryOffsetEqualsWhole) {
  const std::array<uint8_t, 4> mask{0x01, 0x82, 0x43, 0xc4};
  const std::string plain = testPayload(67);
  std::string whole = plain;
  applyMask(whole.data(), whole.size(), mask);
  for (std::size_t a = 0; a <= plain.size(); ++a) {
    // Two pieces...
    std::string pieces = plain;
    std::size_t next = applyMask(pieces.data(), a, mask);
    next = applyMask(pieces.data() + a, pieces.size() - a, mask, next);
    EXPECT_EQ(next, plain.size() % 4);
    ASSERT_EQ(pieces, whole) << "split at " << a;
    // ...and three, starting at unaligned addresses.
    for (std::size_t b = a; b <= plain.size(); b += 5) {
      std::string three = plain;
      std::size_t off = applyMask(three.data(), a, mask);
      off = applyMask(three.data() + a, b - a, mask, off);
      applyMask(three.data() + b, three.size() - b, mask, off);
      ASSERT_EQ(three, whole) << "split at " << a << " and " << b;
    }
  }
}

TEST(CloseFrame, EncodesCodeBigEndianThenReason) {
  EXPECT_EQ(closeFrame(1000, ""), "\x88\x02\x03\xe8"s);
  EXPECT_EQ(closeFrame(1001, "idle"), "\x88\x06\x03\xe9idle"s);
  EXPECT_EQ(closeFrame(4999, ""), "\x88\x02\x13\x87"s);
}

TEST(CloseFrame, MasksThePayloadWhenGivenAKey) {
  const std::string frame = closeFrame(1002, "bad", kMask);
  FrameHeader h;
  ASSERT_EQ(parseFrameHeader(frame, h), HeaderStatus::Complete);
  EXPECT_TRUE(h.fin);
  EXPECT_EQ(h.opcode, static_cast<uint8_t>(Opcode::Close));
  EXPECT_TRUE(h.masked);
  EXPECT_EQ(h.payloadLength, 5u);
  ASSERT_EQ(frame.size(), h.headerBytes + h.payloadLength);
  std::string payload = frame.substr(h.headerBytes);
  applyMask(payload.data(), payload.size(), h.mask);
  EXPECT_EQ(payload,
            "\x03\xea"
            "bad"s);
}

TEST(CloseFrame, CutsReasonTo123Bytes) {
  const std::string reason(200, 'r');
  const std::string frame = closeFrame(1009, reason);
  FrameHeader h;
  ASSERT_EQ(parseFrameHeader(frame, h), HeaderStatus::Complete);
  EXPECT_EQ(h.payloadLength, 125u);  // the control frame maximum, RFC 6455 5.5
  EXPECT_EQ(frame.substr(h.headerBytes + 2), reason.substr(0, 123));
  EXPECT_EQ(closeFrame(1009, reason.substr(0, 123)).size(), 2u + 125u);
}

TEST(CloseFrame, CutsReasonOnAUtf8Boundary) {
  struct Case {
    std::string_view name;
    std::string reason;
    std::size_t keep;  // bytes of the reason kept
  };
  const std::string ascii121(121, 'a');
  const std::string ascii122(122, 'a');
  const std::string ascii123(123, 'a');
  const Case cases[] = {
      // "é" (2 bytes) straddling byte 123: dropped whole.
      {"2-byte sequence across the cut", ascii122 + "\xc3\xa9", 122},
      // "é" ending exactly at byte 123: kept.
      {"2-byte sequence ending at the cut", ascii121 + "\xc3\xa9" + "zz", 123},
      // "€" (3 bytes) with one or two bytes beyond the cut.
      {"3-byte sequence, 2 bytes kept", ascii121 + "\xe2\x82\xac", 121},
      {"3-byte sequence, 1 byte kept", ascii122 + "\xe2\x82\xac", 122},
      // "𝄞" (4 bytes) across the cut.
      {"4-byte sequence across the cut", ascii121 + "\xf0\x9d\x84\x9e", 121},
      {"4-byte sequence starting at the cut", ascii123 + "\xf0\x9d\x84\x9e", 123},
      // Only multi-byte characters: 41 x "€" = 123 bytes exactly, 42 would be 126.
      {"all 3-byte characters",
       [] {
         std::string s;
         for (int i = 0; i < 42; ++i) s += "\xe2\x82\xac";
         return s;
       }(),
       123},
  };
  for (const Case& c : cases) {
    const std::string frame = closeFrame(1000, c.reason);
    FrameHeader h;
    ASSERT_EQ(parseFrameHeader(frame, h), HeaderStatus::Complete) << c.name;
    EXPECT_EQ(h.payloadLength, 2 + c.keep) << c.name;
    EXPECT_EQ(frame.substr(h.headerBytes + 2), c.reason.substr(0, c.keep)) << c.name;
  }
}

}  // namespace
}  // namespace wsgate::ws
