// Per-direction frame rules (RFC 6455 5.1-5.5, RFC 7692 6), case by case as Autobahn groups
// 3, 4, 5 and 9 exercise them.

#include "proxy/ws/frame_checker.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::ws {
namespace {

constexpr uint8_t kRsv1 = 4, kRsv2 = 2, kRsv3 = 1;
constexpr uint8_t kCont = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9, kPong = 0xA;
constexpr uint64_t kLimit = 1000;

// One frame header of a scripted sequence; the mask bit follows the direction unless
// `wrongMask` flips it.
struct Step {
  uint8_t opcode;
  bool fin = true;
  uint64_t length = 0;
  uint8_t rsv = 0;
  bool wrongMask = false;
};

enum Dir : uint8_t { kClient, kBackend };

struct Case {
  std::string_view name;
  Dir dir;
  bool deflate;
  std::vector<Step> steps;  // every step but the last must pass
  uint16_t expect;          // verdict on the last step
};

DirectionRules rules(Dir dir, bool deflate, uint64_t limit = kLimit) {
  return DirectionRules{
      .fromClient = dir == kClient, .permessageDeflate = deflate, .maxMessageBytes = limit};
}

FrameHeader header(const Step& s, Dir dir) {
  FrameHeader h;
  h.fin = s.fin;
  h.rsv = s.rsv;
  h.opcode = s.opcode;
  h.masked = (dir == kClient) != s.wrongMask;
  if (h.masked) h.mask = {0x37, 0xfa, 0x21, 0x3d};
  h.payloadLength = s.length;
  return h;
}

void runCase(const Case& c) {
  SCOPED_TRACE(std::string(c.name) + (c.dir == kClient ? " [client]" : " [backend]") +
               (c.deflate ? " [deflate]" : ""));
  FrameChecker checker(rules(c.dir, c.deflate));
  for (std::size_t i = 0; i + 1 < c.steps.size(); ++i)
    ASSERT_EQ(checker.onHeader(header(c.steps[i], c.dir)).code, 0) << "step " << i;
  const Violation v = checker.onHeader(header(c.steps.back(), c.dir));
  EXPECT_EQ(v.code, c.expect);
  EXPECT_EQ(v.reason.empty(), c.expect == 0);
}

const uint16_t kOk = 0;
const uint16_t k1002 = close_code::kProtocolError;
const uint16_t k1009 = close_code::kMessageTooBig;

TEST(FrameChecker, MaskBitMustMatchTheDirection) {
  const Case cases[] = {
      {"masked client frame", kClient, false, {{kText}}, kOk},
      {"unmasked client frame", kClient, false, {{kText, true, 0, 0, true}}, k1002},
      {"unmasked client ping", kClient, false, {{kPing, true, 0, 0, true}}, k1002},
      {"unmasked backend frame", kBackend, false, {{kBinary}}, kOk},
      {"masked backend frame", kBackend, false, {{kBinary, true, 0, 0, true}}, k1002},
      {"masked backend close", kBackend, false, {{kClose, true, 2, 0, true}}, k1002},
  };
  for (const Case& c : cases) runCase(c);
}

TEST(FrameChecker, ReservedBitsNeedPermessageDeflateAndAFirstDataFrame) {
  const Case cases[] = {
      {"RSV1 text without deflate", kClient, false, {{kText, true, 5, kRsv1}}, k1002},
      {"RSV1 text with deflate", kClient, true, {{kText, true, 5, kRsv1}}, kOk},
      {"RSV1 binary with deflate", kBackend, true, {{kBinary, true, 5, kRsv1}}, kOk},
      {"RSV1 first fragment with deflate",
       kClient,
       true,
       {{kText, false, 5, kRsv1}, {kCont, false, 5}, {kCont, true, 5}},
       kOk},
      {"RSV1 on a continuation with deflate",
       kClient,
       true,
       {{kText, false, 5, kRsv1}, {kCont, true, 5, kRsv1}},
       k1002},
      {"RSV1 on a continuation without deflate",
       kBackend,
       false,
       {{kText, false, 5}, {kCont, true, 5, kRsv1}},
       k1002},
      {"RSV1 on a ping with deflate", kClient, true, {{kPing, true, 0, kRsv1}}, k1002},
      {"RSV1 on a close with deflate", kBackend, true, {{kClose, true, 0, kRsv1}}, k1002},
      {"RSV1 on a pong between fragments with deflate",
       kClient,
       true,
       {{kText, false, 1, kRsv1}, {kPong, true, 0, kRsv1}},
       k1002},
      {"RSV2 without deflate", kClient, false, {{kText, true, 0, kRsv2}}, k1002},
      {"RSV2 with deflate", kClient, true, {{kText, true, 0, kRsv2}}, k1002},
      {"RSV3 without deflate", kBackend, false, {{kBinary, true, 0, kRsv3}}, k1002},
      {"RSV3 with deflate", kBackend, true, {{kBinary, true, 0, kRsv3}}, k1002},
      {"RSV1+RSV2 with deflate", kClient, true, {{kText, true, 0, kRsv1 | kRsv2}}, k1002},
      {"all RSV bits with deflate", kClient, true, {{kText, true, 0, 7}}, k1002},
      // Autobahn 3.2: the frames before the bad one pass (the relay echoes them first).
      {"RSV2 after a good frame",
       kClient,
       false,
       {{kText, true, 5}, {kText, true, 5, kRsv2}},
       k1002},
  };
  for (const Case& c : cases) runCase(c);
}

TEST(FrameChecker, RejectsReservedOpcodes) {
  // Opcode 0 alone is an orphan continuation, tested with the message rules below.
  for (uint8_t op = 1; op < 16; ++op) {
    const bool reserved = (op >= 3 && op <= 7) || op >= 11;
    for (Dir dir : {kClient, kBackend}) {
      // A reserved opcode is refused whether or not a message is open (Autobahn 4.1, 4.2).
      runCase({"reserved opcode", dir, false, {{op}}, reserved ? k1002 : kOk});
      if (reserved)
        runCase({"reserved opcode mid-message", dir, true, {{kText, false}, {op}}, k1002});
    }
  }
}

TEST(FrameChecker, ControlFramesAreShortAndUnfragmented) {
  const Case cases[] = {
      {"ping 125", kClient, false, {{kPing, true, 125}}, kOk},
      {"ping 126", kClient, false, {{kPing, true, 126}}, k1002},
      {"pong 126", kBackend, false, {{kPong, true, 126}}, k1002},
      {"close 125", kBackend, false, {{kClose, true, 125}}, kOk},
      {"close 126", kClient, false, {{kClose, true, 126}}, k1002},
      {"ping 2^63-1", kClient, false, {{kPing, true, (uint64_t{1} << 63) - 1}}, k1002},
      {"ping FIN=0", kClient, false, {{kPing, false}}, k1002},
      {"pong FIN=0", kBackend, false, {{kPong, false}}, k1002},
      {"close FIN=0", kClient, false, {{kClose, false, 2}}, k1002},
      // Autobahn 5.3: a fragmented ping is refused even mid-message.
      {"fragmented ping mid-message",
       kClient,
       false,
       {{kText, false, 1}, {kPing, false, 1}},
       k1002},
  };
  for (const Case& c : cases) runCase(c);
}

TEST(FrameChecker, ControlFramesMayComeBetweenFragments) {
  const Case cases[] = {
      {"ping between fragments",
       kClient,
       false,
       {{kText, false, 3}, {kPing, true, 4}, {kCont, true, 3}},
       kOk},
      {"ping and pong between each fragment",
       kBackend,
       false,
       {{kBinary, false, 1}, {kPing}, {kCont, false, 1}, {kPong}, {kCont, true, 1}},
       kOk},
      {"close between fragments", kClient, false, {{kText, false, 3}, {kClose, true, 2}}, kOk},
  };
  for (const Case& c : cases) runCase(c);
}

TEST(FrameChecker, MessagesDoNotInterleave) {
  const Case cases[] = {
      {"continuation without start", kClient, false, {{kCont, true, 1}}, k1002},
      {"continuation FIN=0 without start", kBackend, false, {{kCont, false, 1}}, k1002},
      {"continuation after a finished message",
       kClient,
       false,
       {{kText, false, 1}, {kCont, true, 1}, {kCont, true, 1}},
       k1002},
      {"continuation after an unfragmented message",
       kBackend,
       false,
       {{kBinary, true, 1}, {kCont, true, 1}},
       k1002},
      {"text inside a text message", kClient, false, {{kText, false, 1}, {kText, true, 1}}, k1002},
      {"binary inside a text message",
       kClient,
       false,
       {{kText, false, 1}, {kPing}, {kBinary, false, 1}},
       k1002},
      {"text inside a binary message", kBackend, false, {{kBinary, false}, {kText, true}}, k1002},
      {"two messages in a row", kClient, false, {{kText, false}, {kCont}, {kBinary}}, kOk},
      {"empty fragments", kClient, false, {{kText, false}, {kCont, false}, {kCont}}, kOk},
  };
  for (const Case& c : cases) runCase(c);
}

TEST(FrameChecker, MessageSizeLimitCountsEveryFragment) {
  const Case cases[] = {
      {"single frame at the limit", kClient, false, {{kBinary, true, kLimit}}, kOk},
      {"single frame over the limit", kClient, false, {{kBinary, true, kLimit + 1}}, k1009},
      {"fragments reaching the limit",
       kBackend,
       false,
       {{kText, false, 400}, {kCont, false, 500}, {kCont, true, 100}},
       kOk},
      {"fragments one over the limit",
       kBackend,
       false,
       {{kText, false, 400}, {kCont, false, 500}, {kCont, true, 101}},
       k1009},
      {"over the limit before FIN",
       kClient,
       false,
       {{kText, false, kLimit}, {kCont, false, 1}},
       k1009},
      {"empty continuation at the limit",
       kClient,
       false,
       {{kText, false, kLimit}, {kCont, true, 0}},
       kOk},
      {"control frames do not count",
       kClient,
       false,
       {{kText, false, kLimit}, {kPing, true, 125}, {kCont, true}},
       kOk},
      {"a new message starts from zero",
       kClient,
       false,
       {{kText, false, 600}, {kCont, true, 400}, {kBinary, true, kLimit}},
       kOk},
      {"largest 64-bit length", kClient, false, {{kBinary, true, (uint64_t{1} << 63) - 1}}, k1009},
      // Autobahn 5.x sets RSV1 only on the first frame; the limit still applies.
      {"deflate frame over the limit", kClient, true, {{kText, true, kLimit + 1, kRsv1}}, k1009},
  };
  for (const Case& c : cases) runCase(c);
}

TEST(FrameChecker, MessageSizeLimitDoesNotOverflow) {
  // messageBytes_ + payloadLength would wrap to 9 here; the check must not form the sum.
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  FrameChecker c(rules(kClient, false, kMax - 1));
  EXPECT_EQ(c.onHeader(header({kBinary, false, kMax - 10}, kClient)).code, 0);
  EXPECT_EQ(c.onHeader(header({kCont, true, 20}, kClient)).code, k1009);

  FrameChecker full(rules(kClient, false, kMax));
  EXPECT_EQ(full.onHeader(header({kBinary, false, kMax}, kClient)).code, 0);
  EXPECT_EQ(full.onHeader(header({kCont, false, 0}, kClient)).code, 0);
  EXPECT_EQ(full.onHeader(header({kCont, true, 1}, kClient)).code, k1009);
}

TEST(FrameChecker, ZeroLimitAllowsOnlyEmptyMessages) {
  FrameChecker c(rules(kBackend, false, 0));
  EXPECT_EQ(c.onHeader(header({kText, true, 0}, kBackend)).code, 0);
  EXPECT_EQ(c.onHeader(header({kText, true, 1}, kBackend)).code, k1009);
}

TEST(FrameChecker, CountsFramesAndCompletedMessages) {
  FrameChecker c(rules(kClient, false));
  EXPECT_EQ(c.frames(), 0u);
  EXPECT_EQ(c.messages(), 0u);
  EXPECT_FALSE(c.inMessage());

  const Step steps[] = {{kText, true, 5},  {kPing, true, 4},   {kBinary, false, 10},
                        {kPong, true, 0},  {kCont, false, 20}, {kClose, true, 2},
                        {kCont, true, 30}, {kText, false, 7}};
  struct After {
    uint64_t frames, messages;
    bool inMessage;
    Opcode opcode;
    uint64_t bytes;
  };
  const After expect[] = {
      {1, 1, false, Opcode::Text, 5},    {2, 1, false, Opcode::Text, 5},
      {3, 1, true, Opcode::Binary, 10},  {4, 1, true, Opcode::Binary, 10},
      {5, 1, true, Opcode::Binary, 30},  {6, 1, true, Opcode::Binary, 30},
      {7, 2, false, Opcode::Binary, 60}, {8, 2, true, Opcode::Text, 7},
  };
  for (std::size_t i = 0; i < std::size(steps); ++i) {
    ASSERT_EQ(c.onHeader(header(steps[i], kClient)).code, 0) << i;
    EXPECT_EQ(c.frames(), expect[i].frames) << i;
    EXPECT_EQ(c.messages(), expect[i].messages) << i;
    EXPECT_EQ(c.inMessage(), expect[i].inMessage) << i;
    EXPECT_EQ(c.messageOpcode(), expect[i].opcode) << i;
    EXPECT_EQ(c.messageBytes(), expect[i].bytes) << i;
  }
}

TEST(FrameChecker, AViolationIsFinal) {
  FrameChecker c(rules(kClient, false));
  ASSERT_EQ(c.onHeader(header({kText, false, 5}, kClient)).code, 0);
  const Violation first = c.onHeader(header({kCont, true, 1, kRsv2}, kClient));
  EXPECT_EQ(first.code, k1002);
  // A frame that would be fine on its own gets the same verdict, and nothing advances.
  const Violation again = c.onHeader(header({kCont, true, 1}, kClient));
  EXPECT_EQ(again.code, first.code);
  EXPECT_EQ(again.reason, first.reason);
  EXPECT_EQ(c.frames(), 1u);
  EXPECT_EQ(c.messages(), 0u);
  EXPECT_TRUE(c.inMessage());
  EXPECT_EQ(c.messageBytes(), 5u);
}

TEST(FrameChecker, AcceptsEveryLengthEncodingThroughTheCodec) {
  // RFC 6455 5.2: 7-bit, 16-bit and 64-bit lengths, at each boundary.
  const uint64_t lengths[] = {0, 125, 126, 65535, 65536, uint64_t{1} << 32};
  const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
  for (Dir dir : {kClient, kBackend}) {
    FrameChecker checker(rules(dir, false, uint64_t{1} << 32));
    for (uint64_t len : lengths) {
      for (Opcode op : {Opcode::Text, Opcode::Binary}) {
        std::string wire;
        appendFrameHeader(wire, /*fin=*/true, op, len, dir == kClient ? key : nullptr);
        FrameHeader h;
        ASSERT_EQ(parseFrameHeader(wire, h), HeaderStatus::Complete) << len;
        ASSERT_EQ(h.payloadLength, len);
        ASSERT_EQ(h.headerBytes, wire.size());
        EXPECT_EQ(checker.onHeader(h).code, 0) << len;
        EXPECT_EQ(checker.messageBytes(), len);
      }
    }
    EXPECT_EQ(checker.messages(), 2 * std::size(lengths));
  }
}

}  // namespace
}  // namespace wsgate::ws
