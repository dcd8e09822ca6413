// FrameRelay driven with real evbuffers: what reaches the destination, byte for byte, for
// data frames, control frames, every length encoding, input split anywhere, each class of
// violation, the message-size limit and UTF-8 validation; and the collecting mode Lua's
// on_message reads whole messages through.

#include "proxy/session/frame_relay.h"

#include <event2/buffer.h>
#include <gtest/gtest.h>

#include <array>
#include <cctype>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsgate::proxy {
namespace {

using Status = FrameRelay::Status;

constexpr uint8_t kCont = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8, kPing = 0x9, kPong = 0xA;
constexpr uint8_t kRsv1 = 4, kRsv2 = 2;
constexpr std::array<uint8_t, 4> kKey{0x37, 0xfa, 0x21, 0x3d};
constexpr uint16_t kProtocolError = 1002, kInvalidPayload = 1007, kTooBig = 1009;

// ---- frames on the wire ------------------------------------------------------------------

struct Wire {
  uint8_t opcode = kBinary;
  std::string payload;
  bool fin = true;
  bool masked = true;  // the client direction masks
  uint8_t rsv = 0;
  std::array<uint8_t, 4> key = kKey;
};

// The bytes of a frame header alone, for a declared length (the payload need not follow).
std::string headerBytes(uint8_t opcode, uint64_t length, bool fin, bool masked, uint8_t rsv = 0,
                        std::array<uint8_t, 4> key = kKey) {
  std::string out;
  out += static_cast<char>((fin ? 0x80 : 0) | (rsv << 4) | opcode);
  const char maskBit = masked ? static_cast<char>(0x80) : 0;
  if (length < 126) {
    out += static_cast<char>(maskBit | static_cast<char>(length));
  } else if (length < 65536) {
    out += static_cast<char>(maskBit | 126);
    out += static_cast<char>(length >> 8);
    out += static_cast<char>(length & 0xff);
  } else {
    out += static_cast<char>(maskBit | 127);
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>(length >> shift);
  }
  if (masked) out.append(reinterpret_cast<const char*>(key.data()), key.size());
  return out;
}

std::string encode(const Wire& w) {
  std::string out = headerBytes(w.opcode, w.payload.size(), w.fin, w.masked, w.rsv, w.key);
  for (std::size_t i = 0; i < w.payload.size(); ++i) {
    out += w.masked ? static_cast<char>(w.payload[i] ^ w.key[i % 4]) : w.payload[i];
  }
  return out;
}

// Shorthands: c* are client frames (masked), b* backend frames (unmasked).
std::string cFrame(uint8_t op, std::string payload, bool fin = true, uint8_t rsv = 0) {
  return encode({op, std::move(payload), fin, true, rsv});
}
std::string bFrame(uint8_t op, std::string payload, bool fin = true, uint8_t rsv = 0) {
  return encode({op, std::move(payload), fin, false, rsv});
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + 7) & 0xff);
  return s;
}

// ---- evbuffers --------------------------------------------------------------------------

struct EvbufferFree {
  void operator()(evbuffer* b) const { evbuffer_free(b); }
};
using Evbuffer = std::unique_ptr<evbuffer, EvbufferFree>;

Evbuffer newBuffer() { return Evbuffer(evbuffer_new()); }

void add(evbuffer* b, std::string_view bytes) { evbuffer_add(b, bytes.data(), bytes.size()); }

std::string take(evbuffer* b) {
  std::string out(evbuffer_get_length(b), '\0');
  evbuffer_remove(b, out.data(), out.size());
  return out;
}

FrameRelay::Options clientSide(bool validateUtf8 = false, bool deflate = false,
                               uint64_t maxMessage = 16u << 20) {
  return {{.fromClient = true, .permessageDeflate = deflate, .maxMessageBytes = maxMessage},
          validateUtf8};
}
FrameRelay::Options backendSide(bool validateUtf8 = false, bool deflate = false,
                                uint64_t maxMessage = 16u << 20) {
  return {{.fromClient = false, .permessageDeflate = deflate, .maxMessageBytes = maxMessage},
          validateUtf8};
}

// A relay with its two buffers. run() pumps until the relay needs more input, forwarding
// every control frame it stops at, so it behaves like a session that passes everything.
struct Pipe {
  explicit Pipe(const FrameRelay::Options& o) : relay(o) {}
  FrameRelay relay;
  Evbuffer src = newBuffer();
  Evbuffer dst = newBuffer();
  int controls = 0;

  Status run() {
    for (;;) {
      const Status s = relay.pump(src.get(), dst.get());
      if (s != Status::Control) return s;
      ++controls;
      relay.forwardControl(src.get(), dst.get());
    }
  }
  Status feed(std::string_view bytes) {
    add(src.get(), bytes);
    return run();
  }
  std::string out() { return take(dst.get()); }
  std::size_t pending() const { return evbuffer_get_length(src.get()); }
};

// ---- data frames pass byte-identical ------------------------------------------------------

struct PassCase {
  std::string_view name;
  bool fromClient;
  bool validateUtf8;
  std::vector<std::string> frames;
  uint64_t messages;
};

std::vector<PassCase> passCases() {
  return {
      {"client text", true, false, {cFrame(kText, "hello")}, 1},
      {"client binary", true, false, {cFrame(kBinary, pattern(300))}, 1},
      {"client empty text", true, true, {cFrame(kText, "")}, 1},
      {"client fragments",
       true,
       true,
       {cFrame(kText, "frag", false), cFrame(kCont, "men", false), cFrame(kCont, "ted")},
       1},
      {"client two messages", true, false, {cFrame(kText, "a"), cFrame(kBinary, "b")}, 2},
      {"backend text", false, true, {bFrame(kText, "h\xc3\xa9llo \xe2\x98\x83")}, 1},
      {"backend binary", false, false, {bFrame(kBinary, pattern(70000))}, 1},
      {"backend fragments",
       false,
       false,
       {bFrame(kBinary, "x", false), bFrame(kCont, "", false), bFrame(kCont, "y")},
       1},
  };
}

TEST(FrameRelay, DataFramesPassByteIdenticalAndMaskedFramesStayMasked) {
  for (const auto& c : passCases()) {
    SCOPED_TRACE(std::string(c.name));
    Pipe p(c.fromClient ? clientSide(c.validateUtf8) : backendSide(c.validateUtf8));
    std::string all;
    for (const auto& f : c.frames) all += f;
    EXPECT_EQ(p.feed(all), Status::NeedMore);
    EXPECT_EQ(p.out(), all);  // masked client bytes come out as they went in
    EXPECT_EQ(p.pending(), 0u);
    EXPECT_EQ(p.relay.frames(), c.frames.size());
    EXPECT_EQ(p.relay.messages(), c.messages);
    EXPECT_TRUE(p.relay.atFrameBoundary());
  }
}

// RFC 6455 5.2: 7-bit (0..125), 16-bit (126..65535) and 64-bit (65536..) lengths.
constexpr std::array<std::size_t, 7> kLengths{0, 1, 125, 126, 127, 65535, 65536};

TEST(FrameRelay, EveryLengthEncodingPassesIdentically) {
  for (bool fromClient : {true, false}) {
    for (std::size_t n : kLengths) {
      SCOPED_TRACE((fromClient ? "client " : "backend ") + std::to_string(n));
      Pipe p(fromClient ? clientSide() : backendSide());
      const std::string f = encode({kBinary, pattern(n), true, fromClient});
      EXPECT_EQ(p.feed(f), Status::NeedMore);
      EXPECT_EQ(p.out(), f);
      EXPECT_EQ(p.relay.payloadBytes(), n);
      EXPECT_EQ(p.relay.messages(), 1u);
    }
  }
}

TEST(FrameRelay, InputSplitAtEveryByteBoundaryGivesIdenticalOutput) {
  // A fragmented message with a ping between fragments and a text frame after it.
  const std::string stream = cFrame(kBinary, pattern(130), false) + cFrame(kPing, "are you there") +
                             cFrame(kCont, pattern(3)) +
                             cFrame(kText, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  for (bool validate : {false, true}) {
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
      SCOPED_TRACE("validate " + std::to_string(validate) + ", cut at " + std::to_string(cut));
      Pipe p(clientSide(validate));
      ASSERT_EQ(p.feed(std::string_view(stream).substr(0, cut)), Status::NeedMore);
      ASSERT_EQ(p.feed(std::string_view(stream).substr(cut)), Status::NeedMore);
      ASSERT_EQ(p.out(), stream);
      ASSERT_EQ(p.controls, 1);
      ASSERT_EQ(p.relay.frames(), 4u);
      ASSERT_EQ(p.relay.messages(), 2u);
    }
  }
}

TEST(FrameRelay, EveryLengthFedOneByteAtATimeGivesIdenticalOutput) {
  for (bool fromClient : {true, false}) {
    for (std::size_t n : kLengths) {
      SCOPED_TRACE((fromClient ? "client " : "backend ") + std::to_string(n));
      Pipe p(fromClient ? clientSide(true) : backendSide(true));
      // Text of ASCII so that validation runs on every piece too.
      const std::string f = encode({kText, std::string(n, 'a'), true, fromClient});
      std::string out;
      for (char byte : f) {
        ASSERT_EQ(p.feed(std::string_view(&byte, 1)), Status::NeedMore);
        out += p.out();  // what is in dst is never taken back: drain as we go
      }
      EXPECT_EQ(out, f);
      EXPECT_EQ(p.relay.frames(), 1u);
      EXPECT_TRUE(p.relay.atFrameBoundary());
    }
  }
}

TEST(FrameRelay, HeaderIsForwardedOnlyWithItsFirstPayloadBytes) {
  const std::string f = cFrame(kBinary, pattern(65536));  // 2 + 8 + 4 header bytes
  Pipe p(clientSide());
  EXPECT_EQ(p.feed(f.substr(0, 13)), Status::NeedMore);
  EXPECT_EQ(p.out(), "");
  EXPECT_EQ(p.feed(f.substr(13, 1)), Status::NeedMore);
  EXPECT_EQ(p.out(), "");  // a complete header waits for payload: a frame is never started empty
  EXPECT_TRUE(p.relay.atFrameBoundary());
  EXPECT_EQ(p.feed(f.substr(14, 1)), Status::NeedMore);
  EXPECT_EQ(p.out(), f.substr(0, 15));
  EXPECT_FALSE(p.relay.atFrameBoundary());
  EXPECT_EQ(p.feed(f.substr(15)), Status::NeedMore);
  EXPECT_EQ(p.out(), f.substr(15));
}

// ---- control frames -------------------------------------------------------------------------

TEST(FrameRelay, ControlFrameStopsThePumpWithItsUnmaskedPayload) {
  Pipe p(clientSide());
  const std::string data = cFrame(kText, "before");
  const std::string ping = cFrame(kPing, "are you there");
  add(p.src.get(), data + ping);
  ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get()), Status::Control);
  EXPECT_EQ(p.out(), data);  // what came before the ping is through
  EXPECT_EQ(p.relay.controlHeader().opcode, kPing);
  EXPECT_TRUE(p.relay.controlHeader().masked);
  EXPECT_EQ(p.relay.controlPayload(), "are you there");
  EXPECT_EQ(p.pending(), ping.size());  // the ping waits in src for the session's decision
  p.relay.forwardControl(p.src.get(), p.dst.get());
  EXPECT_EQ(p.out(), ping);  // as it came, mask included
  EXPECT_EQ(p.relay.pump(p.src.get(), p.dst.get()), Status::NeedMore);
}

TEST(FrameRelay, DroppedControlFrameLeavesNothingBehind) {
  Pipe p(backendSide());
  add(p.src.get(), bFrame(kPong, "wsgate:1") + bFrame(kBinary, "after"));
  ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get()), Status::Control);
  EXPECT_EQ(p.relay.controlHeader().opcode, kPong);
  EXPECT_EQ(p.relay.controlPayload(), "wsgate:1");
  p.relay.dropControl(p.src.get());
  EXPECT_EQ(p.relay.pump(p.src.get(), p.dst.get()), Status::NeedMore);
  EXPECT_EQ(p.out(), bFrame(kBinary, "after"));
}

TEST(FrameRelay, ControlFrameIsTakenOnlyWhole) {
  const std::string close = cFrame(kClose, std::string("\x03\xe8", 2) + "bye");
  for (std::size_t cut = 0; cut < close.size(); ++cut) {
    SCOPED_TRACE(cut);
    Pipe p(clientSide());
    add(p.src.get(), close.substr(0, cut));
    EXPECT_EQ(p.relay.pump(p.src.get(), p.dst.get()), Status::NeedMore);
    EXPECT_EQ(p.out(), "");
    add(p.src.get(), close.substr(cut));
    ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get()), Status::Control);
    EXPECT_EQ(p.relay.controlHeader().opcode, kClose);
    EXPECT_EQ(p.relay.controlPayload(), std::string("\x03\xe8", 2) + "bye");
  }
}

TEST(FrameRelay, ControlPayloadsOfZeroAnd125BytesAreTaken) {
  for (std::size_t n : {std::size_t{0}, std::size_t{125}}) {
    SCOPED_TRACE(n);
    Pipe p(clientSide());
    add(p.src.get(), cFrame(kPing, pattern(n)));
    ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get()), Status::Control);
    EXPECT_EQ(p.relay.controlPayload(), pattern(n));
  }
}

TEST(FrameRelay, PingBetweenFragmentsStopsThePumpAfterTheFirstFragment) {
  Pipe p(clientSide(true));
  const std::string first = cFrame(kText, "frag", false);
  const std::string ping = cFrame(kPing, "p");
  const std::string last = cFrame(kCont, "mented");
  add(p.src.get(), first + ping + last);
  ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get()), Status::Control);
  EXPECT_EQ(p.out(), first);  // no whole-message buffering
  EXPECT_TRUE(p.relay.atFrameBoundary());
  p.relay.forwardControl(p.src.get(), p.dst.get());
  EXPECT_EQ(p.relay.pump(p.src.get(), p.dst.get()), Status::NeedMore);
  EXPECT_EQ(p.out(), ping + last);
  EXPECT_EQ(p.relay.frames(), 3u);
  EXPECT_EQ(p.relay.messages(), 1u);
}

// ---- violations -------------------------------------------------------------------------------

struct ViolationCase {
  std::string_view name;
  FrameRelay::Options options;
  std::string before;  // valid frames, relayed before the bad one
  std::string bad;
  uint16_t code;
};

std::string len64TopBit() {
  std::string h;
  h += static_cast<char>(0x82);
  h += static_cast<char>(0x80 | 127);
  h += '\x80';
  h.append(7, '\0');
  h.append(reinterpret_cast<const char*>(kKey.data()), 4);
  return h;
}

std::vector<ViolationCase> violationCases() {
  const auto deflateClient = clientSide(false, true);
  return {
      {"unmasked client frame", clientSide(), "", bFrame(kText, "x"), kProtocolError},
      {"masked backend frame", backendSide(), "", cFrame(kText, "x"), kProtocolError},
      {"RSV1 without an extension", clientSide(), cFrame(kText, "ok"),
       cFrame(kText, "x", true, kRsv1), kProtocolError},
      {"RSV1 from the backend without an extension", backendSide(), "",
       bFrame(kBinary, "x", true, kRsv1), kProtocolError},
      {"RSV2 with deflate", deflateClient, "", cFrame(kText, "x", true, kRsv2), kProtocolError},
      {"RSV1 on a continuation with deflate", deflateClient, cFrame(kText, "a", false, kRsv1),
       cFrame(kCont, "b", true, kRsv1), kProtocolError},
      {"RSV1 on a ping with deflate", deflateClient, "", cFrame(kPing, "", true, kRsv1),
       kProtocolError},
      {"reserved opcode 3", clientSide(), cFrame(kText, "ok"), cFrame(0x3, "x"), kProtocolError},
      {"reserved opcode 7", clientSide(), "", cFrame(0x7, ""), kProtocolError},
      {"reserved opcode 11", clientSide(), "", cFrame(0xB, "x"), kProtocolError},
      {"reserved opcode 15", backendSide(), "", bFrame(0xF, ""), kProtocolError},
      {"ping of 126 bytes", clientSide(), "", cFrame(kPing, pattern(126)), kProtocolError},
      {"close of 126 bytes", backendSide(), "", bFrame(kClose, pattern(126)), kProtocolError},
      {"fragmented ping", clientSide(), "", cFrame(kPing, "x", false), kProtocolError},
      {"fragmented close between fragments", clientSide(), cFrame(kText, "a", false),
       cFrame(kClose, "", false), kProtocolError},
      {"orphan continuation", clientSide(), cFrame(kText, "done"), cFrame(kCont, "x"),
       kProtocolError},
      {"text inside a fragmented message", clientSide(), cFrame(kBinary, "start", false),
       cFrame(kText, "new"), kProtocolError},
      {"binary inside a fragmented message", backendSide(), bFrame(kText, "start", false),
       bFrame(kBinary, "new"), kProtocolError},
      {"64-bit length with the top bit set", clientSide(), "", len64TopBit(), kProtocolError},
      {"frame over max_message_bytes", clientSide(false, false, 1024), "",
       cFrame(kBinary, pattern(2048)), kTooBig},
      {"fragments summing over max_message_bytes", clientSide(false, false, 1024),
       cFrame(kBinary, pattern(600), false), cFrame(kCont, pattern(600)), kTooBig},
  };
}

// UTF-8 violations, each bad frame whole in src when the relay first sees it.
std::vector<ViolationCase> utf8ViolationCases() {
  return {
      {"invalid UTF-8 from the client", clientSide(true), cFrame(kText, "ok"),
       cFrame(kText, "a\xff"), kInvalidPayload},
      {"invalid UTF-8 from the backend", backendSide(true), "", bFrame(kText, "\xc0\xaf"),
       kInvalidPayload},
      {"surrogate code point", clientSide(true), "", cFrame(kText, "\xed\xa0\x80"),
       kInvalidPayload},
      {"invalid UTF-8 in a continuation", clientSide(true), cFrame(kText, "ok", false),
       cFrame(kCont, "\xf8\x88\x80\x80\x80"), kInvalidPayload},
      // RFC 6455 8.1: the message must end on a code point; decided before its last bytes
      // leave (the fuzz finding text_message_ending_inside_code_point_is_forwarded).
      {"final frame ending inside a code point", clientSide(true), "", cFrame(kText, "a\xe2\x82"),
       kInvalidPayload},
      {"final frame ending inside a code point, from the backend", backendSide(true), "",
       bFrame(kText, "a\xf0\x9f\x98"), kInvalidPayload},
      {"final continuation ending inside a code point", clientSide(true),
       cFrame(kText, "ok", false), cFrame(kCont, "\xe2\x82"), kInvalidPayload},
      {"empty final continuation after a cut code point", clientSide(true),
       cFrame(kText, "ok\xe2", false), cFrame(kCont, ""), kInvalidPayload},
  };
}

void expectViolationForwardsNothingOfTheBadFrame(const ViolationCase& c) {
  SCOPED_TRACE(std::string(c.name));
  Pipe p(c.options);
  ASSERT_EQ(p.feed(c.before), Status::NeedMore);
  ASSERT_EQ(p.out(), c.before);
  EXPECT_EQ(p.feed(c.bad), Status::Violation);
  EXPECT_EQ(p.relay.violation().code, c.code);
  EXPECT_FALSE(p.relay.violation().reason.empty());
  // Nothing of the bad frame, not even its header: the session can then still send the
  // other side a Close at a frame boundary.
  EXPECT_EQ(p.out(), "");
  EXPECT_TRUE(p.relay.atFrameBoundary());
  // Final: later input changes nothing.
  EXPECT_EQ(p.feed(cFrame(kText, "more")), Status::Violation);
  EXPECT_EQ(p.out(), "");
}

TEST(FrameRelay, EachViolationClassStopsWithItsCodeAndForwardsNothingOfTheBadFrame) {
  for (const auto& c : violationCases()) expectViolationForwardsNothingOfTheBadFrame(c);
}

TEST(FrameRelay, InvalidUtf8InAFrameThatArrivedWholeForwardsNothingOfIt) {
  for (const auto& c : utf8ViolationCases()) expectViolationForwardsNothingOfTheBadFrame(c);
}

TEST(FrameRelay, OversizedFrameIsRejectedFromItsHeaderBeforeThePayloadArrives) {
  Pipe p(clientSide(false, false, 1024));
  EXPECT_EQ(p.feed(headerBytes(kBinary, 2048, true, true)), Status::Violation);
  EXPECT_EQ(p.relay.violation().code, kTooBig);
  EXPECT_EQ(p.out(), "");
}

TEST(FrameRelay, MessageOfExactlyMaxMessageBytesPasses) {
  Pipe p(clientSide(false, false, 1024));
  const std::string s = cFrame(kBinary, pattern(512), false) + cFrame(kCont, pattern(512));
  EXPECT_EQ(p.feed(s), Status::NeedMore);
  EXPECT_EQ(p.out(), s);
  // The limit is per message: the next one starts from zero.
  EXPECT_EQ(p.feed(cFrame(kBinary, pattern(1024))), Status::NeedMore);
}

TEST(FrameRelay, CloseFrameIsHandedToTheSessionWhateverItsPayload) {
  // Close payload rules (1-byte payload, invalid codes, UTF-8 reason) are the session's
  // (ws::checkClosePayload): the relay hands the whole frame over.
  for (std::string payload : {std::string(""), std::string("\x03"), std::string("\x03\xed", 2),
                              std::string("\x03\xe8\xff", 3)}) {
    Pipe p(clientSide(true));
    add(p.src.get(), cFrame(kClose, payload));
    ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get()), Status::Control);
    EXPECT_EQ(p.relay.controlPayload(), payload);
  }
}

// ---- UTF-8 ----------------------------------------------------------------------------------

const std::string kEuro = "\xe2\x82\xac";  // U+20AC, three bytes

TEST(FrameRelay, CodePointSplitAcrossFramesIsValid) {
  for (bool fromClient : {true, false}) {
    SCOPED_TRACE(fromClient ? "client" : "backend");
    Pipe p(fromClient ? clientSide(true) : backendSide(true));
    const std::string s = encode({kText, "a\xe2", false, fromClient}) +
                          encode({kCont, "\x82", false, fromClient}) +
                          encode({kCont,
                                  "\xac"
                                  "b",
                                  true, fromClient});
    EXPECT_EQ(p.feed(s), Status::NeedMore);
    EXPECT_EQ(p.out(), s);
  }
}

TEST(FrameRelay, CodePointSplitAcrossPumpsIsValid) {
  for (bool fromClient : {true, false}) {
    const std::string f = encode({kText, "x" + kEuro + "y", true, fromClient});
    const std::size_t header = fromClient ? 6 : 2;
    for (std::size_t cut = header + 1; cut < f.size(); ++cut) {
      SCOPED_TRACE((fromClient ? "client, cut " : "backend, cut ") + std::to_string(cut));
      Pipe p(fromClient ? clientSide(true) : backendSide(true));
      EXPECT_EQ(p.feed(f.substr(0, cut)), Status::NeedMore);
      EXPECT_EQ(p.feed(f.substr(cut)), Status::NeedMore);
      EXPECT_EQ(p.out(), f);
    }
  }
}

TEST(FrameRelay, LongMaskedTextIsValidatedAcrossUnmaskingWindows) {
  // 3-byte code points over more than the 4 KiB scratch window, fed in odd-sized pieces so
  // windows and pieces start at every mask offset and inside code points.
  std::string text;
  while (text.size() < 10000) text += kEuro + "a";
  const std::string f = cFrame(kText, text);
  Pipe p(clientSide(true));
  std::string out;
  for (std::size_t at = 0; at < f.size(); at += 1237) {
    ASSERT_EQ(p.feed(std::string_view(f).substr(at, 1237)), Status::NeedMore) << at;
    out += p.out();
  }
  EXPECT_EQ(out, f);

  // The same text with one bad byte near the end still fails.
  std::string bad = text;
  bad[9001] = '\xff';
  Pipe q(clientSide(true));
  EXPECT_EQ(q.feed(cFrame(kText, bad)), Status::Violation);
  EXPECT_EQ(q.relay.violation().code, kInvalidPayload);
}

TEST(FrameRelay, InvalidUtf8FailsFastInsideAFrame) {
  // Only the first payload bytes have arrived; the frame declares 100.
  for (bool fromClient : {true, false}) {
    SCOPED_TRACE(fromClient ? "client" : "backend");
    Pipe p(fromClient ? clientSide(true) : backendSide(true));
    const std::string f = encode({kText, "ok\xff" + std::string(97, 'a'), true, fromClient});
    const std::size_t header = fromClient ? 6 : 2;
    EXPECT_EQ(p.feed(f.substr(0, header + 3)), Status::Violation);
    EXPECT_EQ(p.relay.violation().code, kInvalidPayload);
  }
}

TEST(FrameRelay, TextEndingInsideACodePointIsInvalid) {
  Pipe p(clientSide(true));
  EXPECT_EQ(p.feed(cFrame(kText, "a\xe2\x82")), Status::Violation);
  EXPECT_EQ(p.relay.violation().code, kInvalidPayload);

  // Not at the end of a fragment: only at the end of the message.
  Pipe q(clientSide(true));
  EXPECT_EQ(q.feed(cFrame(kText, "a\xe2\x82", false)), Status::NeedMore);
  EXPECT_EQ(q.feed(cFrame(kCont, "")), Status::Violation);
  EXPECT_EQ(q.relay.violation().code, kInvalidPayload);
}

TEST(FrameRelay, ValidationStateDoesNotLeakBetweenMessages) {
  Pipe p(clientSide(true));
  // Binary is never validated, and a binary message left "mid code point" does not taint
  // the next text message.
  EXPECT_EQ(p.feed(cFrame(kBinary, "\xe2\x82")), Status::NeedMore);
  EXPECT_EQ(p.feed(cFrame(kText, "fine")), Status::NeedMore);
  EXPECT_EQ(p.feed(cFrame(kText, kEuro)), Status::NeedMore);
}

TEST(FrameRelay, InvalidUtf8PassesUntouchedWhenValidationIsOff) {
  for (bool fromClient : {true, false}) {
    SCOPED_TRACE(fromClient ? "client" : "backend");
    Pipe p(fromClient ? clientSide(false) : backendSide(false));
    const std::string f = encode({kText, "\xff\xfe\xed\xa0\x80", true, fromClient});
    EXPECT_EQ(p.feed(f), Status::NeedMore);
    EXPECT_EQ(p.out(), f);
  }
}

TEST(FrameRelay, CompressedTextIsNotValidatedAsUtf8) {
  Pipe p(clientSide(true, true));
  const std::string f = cFrame(kText, "\xff\x00\x01", true, kRsv1);  // deflate output
  EXPECT_EQ(p.feed(f), Status::NeedMore);
  EXPECT_EQ(p.out(), f);
}

TEST(FrameRelay, PermessageDeflateAllowsRsv1OnAFirstFrame) {
  for (bool fromClient : {true, false}) {
    SCOPED_TRACE(fromClient ? "client" : "backend");
    Pipe p(fromClient ? clientSide(false, true) : backendSide(false, true));
    const std::string s =
        encode({kBinary, "z", false, fromClient, kRsv1}) + encode({kCont, "z", true, fromClient});
    EXPECT_EQ(p.feed(s), Status::NeedMore);
    EXPECT_EQ(p.out(), s);
  }
}

// ---- discard mode and frame boundaries ----------------------------------------------------

TEST(FrameRelay, DiscardModeDropsDataButStillStopsAtControlFrames) {
  Pipe p(clientSide(true));
  const std::string data = cFrame(kText, "dropped", false) + cFrame(kCont, std::string(300, 'x'));
  const std::string close = cFrame(kClose, std::string("\x03\xe8", 2));
  add(p.src.get(), data + close);
  ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get(), /*discard=*/true), Status::Control);
  EXPECT_EQ(p.out(), "");
  EXPECT_EQ(p.pending(), close.size());
  EXPECT_EQ(p.relay.controlHeader().opcode, kClose);
  p.relay.dropControl(p.src.get());
  EXPECT_EQ(p.pending(), 0u);
  EXPECT_EQ(p.relay.frames(), 3u);
}

TEST(FrameRelay, DiscardModeStillEnforcesTheRules) {
  Pipe p(clientSide());
  add(p.src.get(), cFrame(0x3, "x"));
  EXPECT_EQ(p.relay.pump(p.src.get(), p.dst.get(), true), Status::Violation);
  EXPECT_EQ(p.relay.violation().code, kProtocolError);
}

TEST(FrameRelay, AtFrameBoundaryIsFalseOnlyMidPayload) {
  Pipe p(backendSide());
  EXPECT_TRUE(p.relay.atFrameBoundary());
  const std::string f = bFrame(kBinary, pattern(1000));
  EXPECT_EQ(p.feed(f.substr(0, 1)), Status::NeedMore);
  EXPECT_TRUE(p.relay.atFrameBoundary());  // half a header went nowhere
  EXPECT_EQ(p.feed(f.substr(1, 3)), Status::NeedMore);
  EXPECT_TRUE(p.relay.atFrameBoundary());  // header complete but held until payload comes
  EXPECT_EQ(p.feed(f.substr(4, 500)), Status::NeedMore);
  EXPECT_FALSE(p.relay.atFrameBoundary());  // header and part of the payload are out
  EXPECT_EQ(p.feed(f.substr(504)), Status::NeedMore);
  EXPECT_TRUE(p.relay.atFrameBoundary());
  EXPECT_EQ(p.out(), f);
}

TEST(FrameRelay, CountsFramesMessagesAndPayloadBytes) {
  Pipe p(clientSide());
  EXPECT_EQ(p.feed(cFrame(kText, "abc", false) + cFrame(kPing, "pp") + cFrame(kCont, "de") +
                   cFrame(kBinary, "") + cFrame(kPong, "")),
            Status::NeedMore);
  EXPECT_EQ(p.relay.frames(), 5u);
  EXPECT_EQ(p.relay.messages(), 2u);
  EXPECT_EQ(p.relay.payloadBytes(), 5u);  // data payloads only
}

// ---- collecting mode (Lua's on_message) ---------------------------------------------------

// What a collecting session sees, in order: each control frame it stops at (forwarded as it
// came), each whole message (its unmasked payload, its kind and the frames as they came).
struct Event {
  Status status;
  std::string payload;  // Message: the whole payload, unmasked; Control: the control payload
  bool text = false;    // Message
  std::string frames;   // Message: the held frames, byte for byte
  bool operator==(const Event&) const = default;
};

void PrintTo(const Event& e, std::ostream* os) {
  *os << (e.status == Status::Message ? "Message" : "Control") << " text=" << e.text
      << " payload=" << testing::PrintToString(e.payload) << " frames=" << e.frames.size()
      << " bytes";
}

Event message(std::string payload, bool text, std::string frames) {
  return {Status::Message, std::move(payload), text, std::move(frames)};
}
Event control(std::string payload) { return {Status::Control, std::move(payload)}; }

// A relay in collecting mode with its buffers. feed() pumps until the relay needs more input,
// forwarding every control frame and taking every message, emptying the Collected after each
// as the session does.
struct CollectingPipe {
  explicit CollectingPipe(const FrameRelay::Options& o) : relay(o) {}
  FrameRelay relay;
  Evbuffer src = newBuffer();
  Evbuffer dst = newBuffer();
  FrameRelay::Collected collect;
  std::vector<Event> events;

  Status feed(std::string_view bytes) {
    add(src.get(), bytes);
    for (;;) {
      const Status s = relay.pump(src.get(), dst.get(), false, &collect);
      if (s == Status::Control) {
        events.push_back(control(std::string(relay.controlPayload())));
        relay.forwardControl(src.get(), dst.get());
      } else if (s == Status::Message) {
        events.push_back(message(collect.payload, collect.text, take(collect.frames.get())));
        collect.clear();
      } else {
        return s;
      }
    }
  }
  std::string out() { return take(dst.get()); }
  std::size_t held() const { return evbuffer_get_length(collect.frames.get()); }
};

// `bytes` cut into consecutive pieces of the given sizes, cycled (the last may be shorter).
std::vector<std::string> pieces(std::string_view bytes, const std::vector<std::size_t>& sizes) {
  std::vector<std::string> out;
  std::size_t at = 0;
  for (std::size_t i = 0; at < bytes.size(); ++i) {
    const std::size_t n = sizes[i % sizes.size()];
    out.emplace_back(bytes.substr(at, n));
    at += n;
  }
  return out;
}

struct CollectCase {
  std::string_view name;
  FrameRelay::Options options;
  std::vector<std::string> input;  // each piece fed to a pump of its own
  std::vector<Event> events;
  std::string dst;  // what reached the destination: the control frames only
};

void PrintTo(const CollectCase& c, std::ostream* os) { *os << c.name; }

std::vector<CollectCase> collectCases() {
  const std::string fragmented = cFrame(kText, "frag", false) + cFrame(kCont, "mented ", false) +
                                 cFrame(kCont, "caf\xc3\xa9 \xe2\x82\xac, and so on");
  const std::string big = cFrame(kBinary, pattern(70000));  // a 64-bit length
  const std::string ping = cFrame(kPing, "are you there");
  const std::string first = cFrame(kText, "frag", false);
  const std::string last = cFrame(kCont, "mented");
  return {
      {"masked text in one frame",
       clientSide(),
       {cFrame(kText, "hello")},
       {message("hello", true, cFrame(kText, "hello"))},
       ""},
      {"masked fragments fed at odd boundaries",
       clientSide(true),
       pieces(fragmented, {3, 5, 7}),
       {message("fragmented caf\xc3\xa9 \xe2\x82\xac, and so on", true, fragmented)},
       ""},
      {"masked 64-bit length fed in odd pieces",
       clientSide(),
       pieces(big, {1237, 3, 401}),
       {message(pattern(70000), false, big)},
       ""},
      {"ping between fragments comes first",
       clientSide(),
       {first + ping + last},
       {control("are you there"), message("fragmented", true, first + last)},
       ping},
      {"two messages in one buffer",
       clientSide(),
       {cFrame(kText, "one") + cFrame(kBinary, "two") + cFrame(kText, "three")},
       {message("one", true, cFrame(kText, "one")), message("two", false, cFrame(kBinary, "two")),
        message("three", true, cFrame(kText, "three"))},
       ""},
      {"empty text message",
       clientSide(true),
       {cFrame(kText, "")},
       {message("", true, cFrame(kText, ""))},
       ""},
      {"binary is not text",
       clientSide(),
       {cFrame(kBinary, pattern(300))},
       {message(pattern(300), false, cFrame(kBinary, pattern(300)))},
       ""},
      {"unmasked text from the backend",
       backendSide(true),
       {bFrame(kText, "h\xc3\xa9llo")},
       {message("h\xc3\xa9llo", true, bFrame(kText, "h\xc3\xa9llo"))},
       ""},
      {"unmasked fragments from the backend split mid frame",
       backendSide(),
       pieces(bFrame(kBinary, "ab", false) + bFrame(kCont, "", false) + bFrame(kCont, "cde"), {3}),
       {message("abcde", false,
                bFrame(kBinary, "ab", false) + bFrame(kCont, "", false) + bFrame(kCont, "cde"))},
       ""},
  };
}

class FrameRelayCollectTest : public testing::TestWithParam<CollectCase> {};

TEST_P(FrameRelayCollectTest, HoldsFramesUntilTheMessageEnds) {
  const CollectCase& c = GetParam();
  CollectingPipe p(c.options);
  for (const std::string& piece : c.input) ASSERT_EQ(p.feed(piece), Status::NeedMore);
  EXPECT_EQ(p.events, c.events);
  EXPECT_EQ(p.out(), c.dst);
  EXPECT_EQ(p.held(), 0u);
  EXPECT_EQ(evbuffer_get_length(p.src.get()), 0u);
  uint64_t messages = 0;
  for (const Event& e : c.events) messages += e.status == Status::Message ? 1 : 0;
  EXPECT_EQ(p.relay.messages(), messages);
}

INSTANTIATE_TEST_SUITE_P(Table, FrameRelayCollectTest, testing::ValuesIn(collectCases()),
                         [](const testing::TestParamInfo<CollectCase>& info) {
                           std::string name(info.param.name);
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

TEST(FrameRelayCollect, AnyCutOfAMaskedStreamCollectsTheSameMessages) {
  // Cuts land at every mask offset of every frame, inside headers and code points.
  const std::string first = cFrame(kBinary, pattern(130), false);
  const std::string ping = cFrame(kPing, "p");
  const std::string last = cFrame(kCont, pattern(7));
  const std::string text = cFrame(kText, "caf\xc3\xa9 \xe2\x82\xac");
  const std::string stream = first + ping + last + text;
  std::string whole = pattern(130) + pattern(7);
  const std::vector<Event> expected = {control("p"), message(whole, false, first + last),
                                       message("caf\xc3\xa9 \xe2\x82\xac", true, text)};
  for (bool validate : {false, true}) {
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
      SCOPED_TRACE("validate " + std::to_string(validate) + ", cut at " + std::to_string(cut));
      CollectingPipe p(clientSide(validate));
      ASSERT_EQ(p.feed(std::string_view(stream).substr(0, cut)), Status::NeedMore);
      ASSERT_EQ(p.feed(std::string_view(stream).substr(cut)), Status::NeedMore);
      ASSERT_EQ(p.events, expected);
      ASSERT_EQ(p.out(), ping);
    }
  }
}

TEST(FrameRelayCollect, ControlFrameBetweenFragmentsLeavesTheFragmentsHeld) {
  CollectingPipe p(clientSide());
  const std::string first = cFrame(kText, "frag", false);
  const std::string ping = cFrame(kPing, "p");
  const std::string last = cFrame(kCont, "mented");
  add(p.src.get(), first + ping + last);
  ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get(), false, &p.collect), Status::Control);
  EXPECT_EQ(p.out(), "");  // nothing of the message reaches the peer before it ends
  EXPECT_EQ(p.held(), first.size());
  EXPECT_EQ(p.collect.payload, "frag");
  p.relay.forwardControl(p.src.get(), p.dst.get());
  EXPECT_EQ(p.out(), ping);
  ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get(), false, &p.collect), Status::Message);
  EXPECT_EQ(p.collect.payload, "fragmented");
  EXPECT_EQ(take(p.collect.frames.get()), first + last);
  EXPECT_EQ(p.out(), "");
}

TEST(FrameRelayCollect, EachMessageStopsThePumpWithTheRestLeftInSrc) {
  CollectingPipe p(clientSide());
  const std::string one = cFrame(kText, "one");
  const std::string two = cFrame(kBinary, "two");
  add(p.src.get(), one + two);
  ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get(), false, &p.collect), Status::Message);
  EXPECT_EQ(p.collect.payload, "one");
  EXPECT_TRUE(p.collect.text);
  EXPECT_EQ(evbuffer_get_length(p.src.get()), two.size());
  p.collect.clear();
  ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get(), false, &p.collect), Status::Message);
  EXPECT_EQ(p.collect.payload, "two");
  EXPECT_FALSE(p.collect.text);
  EXPECT_EQ(take(p.collect.frames.get()), two);
  EXPECT_EQ(p.relay.pump(p.src.get(), p.dst.get(), false, &p.collect), Status::NeedMore);
}

TEST(FrameRelayCollect, InvalidUtf8IsStillA1007AndNoMessage) {
  const std::vector<ViolationCase> cases = {
      {"invalid byte in one frame", clientSide(true), "", cFrame(kText, "a\xff"), kInvalidPayload},
      {"invalid byte in the last fragment", clientSide(true), cFrame(kText, "ok", false),
       cFrame(kCont, "\xc0\xaf"), kInvalidPayload},
      {"message ending inside a code point", clientSide(true), "", cFrame(kText, "a\xe2\x82"),
       kInvalidPayload},
      {"invalid byte from the backend", backendSide(true), "", bFrame(kText, "\xed\xa0\x80"),
       kInvalidPayload},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.name));
    CollectingPipe p(c.options);
    EXPECT_EQ(p.feed(c.before + c.bad), Status::Violation);
    EXPECT_EQ(p.relay.violation().code, c.code);
    EXPECT_TRUE(p.events.empty());
    EXPECT_EQ(p.out(), "");
    EXPECT_EQ(p.feed(cFrame(kText, "more")), Status::Violation);  // final
  }
}

TEST(FrameRelayCollect, DiscardCollectsNothingButStillStopsAtControlFrames) {
  CollectingPipe p(clientSide(true));
  const std::string close = cFrame(kClose, std::string("\x03\xe8", 2));
  add(p.src.get(), cFrame(kText, "dropped", false) + cFrame(kCont, "too") +
                       cFrame(kBinary, pattern(200)) + close);
  ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get(), /*discard=*/true, &p.collect), Status::Control);
  EXPECT_EQ(p.relay.controlHeader().opcode, kClose);
  EXPECT_EQ(evbuffer_get_length(p.src.get()), close.size());
  EXPECT_EQ(p.held(), 0u);
  EXPECT_EQ(p.collect.payload, "");
  EXPECT_EQ(p.out(), "");
  EXPECT_EQ(p.relay.frames(), 4u);
}

TEST(FrameRelayCollect, WithoutCollectFramesStillGoToDstAsTheyCome) {
  // The same stream as a collecting relay holds: relayed frame by frame, no Message status.
  const std::string first = cFrame(kText, "frag", false);
  const std::string ping = cFrame(kPing, "p");
  const std::string stream = first + ping + cFrame(kCont, "mented") + cFrame(kBinary, "x");
  Pipe p(clientSide(true));
  add(p.src.get(), stream);
  ASSERT_EQ(p.relay.pump(p.src.get(), p.dst.get(), false, nullptr), Status::Control);
  EXPECT_EQ(p.out(), first);  // the fragment left before the ping
  p.relay.forwardControl(p.src.get(), p.dst.get());
  EXPECT_EQ(p.relay.pump(p.src.get(), p.dst.get(), false, nullptr), Status::NeedMore);
  EXPECT_EQ(p.out(), stream.substr(first.size()));
  EXPECT_EQ(p.relay.messages(), 2u);
}

}  // namespace
}  // namespace wsgate::proxy
