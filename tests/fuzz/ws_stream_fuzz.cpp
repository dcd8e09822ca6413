// libFuzzer: a byte stream of frames in one direction, run through the relay's checks in
// order: parseFrameHeader -> FrameChecker::onHeader -> payload (unmasked, text validated as
// UTF-8, close payload checked) until the stream ends or is failed (RFC 6455 5, 8.1).
//
// Input: byte 0 picks the rules (bit 0 client direction, bit 1 permessage-deflate, bits 2-3
// the message limit), byte 1 picks where to split payloads for the two-part UTF-8 check, the
// rest is the stream.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/ws/close_code.h"
#include "proxy/ws/frame.h"
#include "proxy/ws/frame_checker.h"
#include "proxy/ws/utf8.h"

namespace {

using namespace wsgate::ws;

void check(bool ok) {
  if (!ok) std::abort();
}

// Small limits so that 1009 is reachable with fuzzer-sized inputs.
constexpr uint64_t kLimits[4] = {0, 64, 4096, uint64_t{16} * 1024 * 1024};

// Feeding `bytes` in two parts at any split gives the verdict of validating them whole.
void checkSplit(std::string_view bytes, uint8_t splitSeed) {
  const std::size_t split = bytes.empty() ? 0 : splitSeed % (bytes.size() + 1);
  Utf8Validator v;
  const bool ok = v.feed(bytes.substr(0, split)) && v.feed(bytes.substr(split)) && v.complete();
  check(ok == isValidUtf8(bytes));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const DirectionRules rules{.fromClient = (data[0] & 1) != 0,
                             .permessageDeflate = (data[0] & 2) != 0,
                             .maxMessageBytes = kLimits[(data[0] >> 2) & 3]};
  const uint8_t splitSeed = data[1];
  std::string_view in(reinterpret_cast<const char*>(data + 2), size - 2);
  checkSplit(in, splitSeed);

  FrameChecker checker(rules);
  Utf8Validator text;  // the open text message, across its fragments
  bool compressed = false;
  std::string payload;
  while (!in.empty()) {
    FrameHeader h;
    const HeaderStatus status = parseFrameHeader(in, h);
    if (status != HeaderStatus::Complete) break;
    check(h.headerBytes >= 2 && h.headerBytes <= in.size());

    const uint64_t framesBefore = checker.frames();
    const uint64_t messagesBefore = checker.messages();
    const Violation v = checker.onHeader(h);
    if (v) {
      check(v.code == close_code::kProtocolError || v.code == close_code::kMessageTooBig);
      check(!v.reason.empty());
      check(checker.frames() == framesBefore && checker.messages() == messagesBefore);
      // Final: the same header again gets the same verdict.
      check(checker.onHeader(h).code == v.code);
      break;
    }
    check(checker.frames() == framesBefore + 1);
    check(checker.messages() - messagesBefore <= 1);
    check(checker.messageBytes() <= rules.maxMessageBytes);
    // Only what onHeader accepted reaches here: the mask bit matches the direction.
    check(h.masked == rules.fromClient);

    // Skip the payload, or what there is of it; never size anything by the declared length
    // beyond the bytes at hand.
    in.remove_prefix(h.headerBytes);
    const std::size_t have = h.payloadLength < in.size() ? h.payloadLength : in.size();
    payload.assign(in.substr(0, have));
    in.remove_prefix(have);
    if (h.masked) applyMask(payload.data(), payload.size(), h.mask);

    const bool control = (h.opcode & 0x8) != 0;
    if (control) {
      check(h.fin && h.payloadLength <= 125);
      if (h.opcode == static_cast<uint8_t>(Opcode::Close) && have == h.payloadLength) {
        const Violation closeVerdict = checkClosePayload(payload);
        check(!closeVerdict || closeVerdict.code == close_code::kProtocolError ||
              closeVerdict.code == close_code::kInvalidPayload);
        break;  // RFC 6455 5.5.1: nothing follows a close
      }
      continue;
    }

    // A data frame. A message whose first frame has RSV1 is compressed (RFC 7692 6), and
    // is not UTF-8 until inflated.
    if (h.opcode != static_cast<uint8_t>(Opcode::Continuation)) {
      text.reset();
      compressed = (h.rsv & 4) != 0;
    }
    if (checker.messageOpcode() == Opcode::Text && !compressed) {
      checkSplit(payload, splitSeed);
      if (!text.feed(payload)) break;                                   // 1007, fail-fast
      if (h.fin && have == h.payloadLength && !text.complete()) break;  // 1007 at the end
    }
    if (have < h.payloadLength) break;  // the stream ended inside this payload
  }
  return 0;
}
