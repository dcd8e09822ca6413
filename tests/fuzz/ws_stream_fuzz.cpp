// libFuzzer: the real proxy::FrameRelay, one per direction, driven as the session drives it
// (proxy/session/session_tunnel.cpp: Control stops forwarded or dropped, Close payloads checked,
// nothing relayed after a Close or a violation, the other direction discarding once
// wsgate has closed on the violator), fed the client's and the backend's byte streams in
// random pieces and interleavings. After every feed the relay is held to a spec model of
// the direction (model/ws_stream_model.h):
//   - what reached the destination is exactly the stream's prefix the model says a
//     streaming relay must have forwarded by then (valid frames byte-identical and in
//     order, a data frame streamed as it arrives, a control frame whole);
//   - frames(), messages(), payloadBytes() and atFrameBoundary() match the model;
//   - a violation is reported by the first feed that makes it decidable, with the model's
//     close code (1002, 1007, 1009), and nothing of it or after it is forwarded;
//   - what was forwarded is itself a stream that breaks no rule (no message over the
//     limit, no invalid text with validation on, nothing after a Close).
//
// Input: byte 0 picks the rules (bit 0 validate_utf8, bit 1 permessage-deflate, bits 2-3
// the message limit); bytes 1-2 seed the pieces and the interleaving; byte 3 is the
// client's share of the rest (n/255), which is the client's stream followed by the
// backend's.
//
// WSGATE_FUZZ_STRICT in the environment turns off the tolerance for known product bugs
// (README.md, "Findings"); replay_main sets it for inputs kept as known failures.

#include <event2/buffer.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "model/rng.h"
#include "model/ws_stream_model.h"
#include "proxy/session/frame_relay.h"
#include "proxy/ws/close_code.h"
#include "proxy/ws/frame_checker.h"

namespace {

using wsgate::fuzz::model::WsRules;
using wsgate::fuzz::model::WsStreamModel;
using wsgate::proxy::FrameRelay;
using End = WsStreamModel::End;
using Cause = WsStreamModel::Cause;

void check(bool ok) {
  if (!ok) std::abort();
}

// Small limits so that 1009 is reachable with fuzzer-sized inputs.
constexpr uint64_t kLimits[4] = {0, 64, 4096, uint64_t{16} * 1024 * 1024};

struct EvbufferFree {
  void operator()(evbuffer* b) const { evbuffer_free(b); }
};
using EvbufferPtr = std::unique_ptr<evbuffer, EvbufferFree>;

using wsgate::fuzz::Rng;

// One direction: its stream, its relay, what it forwarded, and the model of it.
struct Side {
  Side(std::string_view bytes, const WsRules& r)
      : stream(bytes),
        rules(r),
        model(bytes, r),
        relay({{r.fromClient, r.permessageDeflate, r.maxMessageBytes}, r.validateUtf8}) {}

  std::string_view stream;
  WsRules rules;
  WsStreamModel model;
  FrameRelay relay;
  EvbufferPtr src{evbuffer_new()};
  EvbufferPtr dst{evbuffer_new()};
  std::size_t fed = 0, fedBefore = 0;
  std::string out;
  bool ended = false;
  bool discard = false;  // wsgate sent a Close toward this side's peer: drop, don't relay
  std::size_t frozen = 0;

  bool hungry() const { return !ended && fed < stream.size(); }
};

// Appends stream bytes to src in pieces laid out as separate chains or coalesced, as
// socket reads would leave them.
void feed(Side& side, std::size_t n, Rng& rng) {
  side.fedBefore = side.fed;
  const std::string_view bytes = side.stream.substr(side.fed, n);
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t piece = 1 + rng.below(std::min<std::size_t>(bytes.size() - i, 64));
    const char* p = bytes.data() + i;
    if (rng.next() % 2 == 0) {
      check(evbuffer_add(side.src.get(), p, piece) == 0);
    } else {
      // A chain of its own, pointing into the input (alive for this call).
      check(evbuffer_add_reference(side.src.get(), p, piece, nullptr, nullptr) == 0);
    }
    i += piece;
  }
  side.fed += bytes.size();
}

// How much of a side's stream arrives next: a byte, a few, any share, or all that is left.
std::size_t nextRead(Rng& rng, std::size_t left) {
  switch (rng.next() % 4) {
    case 0:
      return 1;
    case 1:
      return 1 + rng.below(std::min<std::size_t>(left, 16));
    case 2:
      return 1 + rng.below(left);
    default:
      return left;
  }
}

enum class Event { None, Closed, Violated };

// The session's loop over one side's input (Session::pumpTunnel, reduced to the relay's
// contract): returns how this turn ended, with the violation's code.
Event pump(Side& side, uint16_t& code) {
  evbuffer* src = side.src.get();
  evbuffer* dst = side.dst.get();
  for (;;) {
    switch (side.relay.pump(src, dst, side.discard)) {
      case FrameRelay::Status::NeedMore:
        return Event::None;
      case FrameRelay::Status::Message:  // only in collecting mode, not asked for here
        check(false);
        return Event::None;
      case FrameRelay::Status::Violation:
        code = side.relay.violation().code;
        check(!side.relay.violation().reason.empty());
        return Event::Violated;
      case FrameRelay::Status::Control: {
        const wsgate::ws::FrameHeader& h = side.relay.controlHeader();
        const std::string_view payload = side.relay.controlPayload();
        check(payload.size() == h.payloadLength && payload.size() <= 125 && h.fin);
        if (h.opcode == static_cast<uint8_t>(wsgate::ws::Opcode::Close)) {
          const wsgate::ws::Violation v = wsgate::ws::checkClosePayload(payload);
          // The product's close check against the model's, on the same payload.
          check(v.code == WsStreamModel::closePayloadCode(payload));
          if (v) {
            side.relay.dropControl(src);
            code = v.code;
            return Event::Violated;
          }
          if (side.discard) {
            side.relay.dropControl(src);
          } else {
            side.relay.forwardControl(src, dst);
          }
          return Event::Closed;
        }
        if (side.discard) {
          side.relay.dropControl(src);
        } else {
          side.relay.forwardControl(src, dst);
        }
        break;
      }
    }
  }
}

void collect(Side& side) {
  evbuffer* dst = side.dst.get();
  const std::size_t n = evbuffer_get_length(dst);
  const std::size_t at = side.out.size();
  side.out.resize(at + n);
  check(evbuffer_remove(dst, side.out.data() + at, n) == static_cast<int>(n));
}

void expectOut(const Side& side, std::size_t want) {
  if (side.discard) want = side.frozen;
  check(side.out.size() == want);
  check(side.out == side.stream.substr(0, want));
}

// What was forwarded breaks no rule itself (the model finds no violation in it).
void forwardedIsClean(const Side& side) {
  if (side.discard) return;
  const WsStreamModel again(side.out, side.rules);
  check(again.end() != End::Violation);
}

void checkTurn(Side& side, Event event, uint16_t code) {
  const WsStreamModel& m = side.model;
  const FrameRelay& r = side.relay;
  switch (event) {
    case Event::None:
      check(m.end() == End::Open || m.decidedAt() > side.fed);
      expectOut(side, m.forwarded(side.fed));
      check(r.frames() == m.framesAt(side.fed));
      check(r.messages() == m.messagesAt(side.fed));
      check(r.payloadBytes() == m.payloadAt(side.fed));
      check(r.atFrameBoundary() == m.atBoundary(side.fed));
      forwardedIsClean(side);
      return;
    case Event::Closed:
      check(m.end() == End::Close);
      check(side.fedBefore < m.decidedAt() && m.decidedAt() <= side.fed);
      expectOut(side, m.decidedAt());
      check(r.frames() == m.frames().size());
      forwardedIsClean(side);
      return;
    case Event::Violated:
      break;
  }
  check(m.end() == End::Violation && m.code() == code);
  check(side.fedBefore < m.decidedAt() && m.decidedAt() <= side.fed);
  check(r.frames() == m.frames().size());
  // Nothing of the bad frame beyond what had to go before its bad byte arrived.
  const std::size_t clean = std::max(m.forwarded(side.fedBefore), m.lastFrameStart());
  expectOut(side, clean);
  forwardedIsClean(side);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size < 4) return 0;
  const bool validate = (data[0] & 1) != 0;
  const bool deflate = (data[0] & 2) != 0;
  const uint64_t limit = kLimits[(data[0] >> 2) & 3];
  Rng rng{static_cast<uint64_t>(data[1]) | (static_cast<uint64_t>(data[2]) << 8)};
  const std::string_view rest(reinterpret_cast<const char*>(data + 4), size - 4);
  const std::size_t clientBytes = rest.size() * data[3] / 255;

  Side sides[2] = {Side(rest.substr(0, clientBytes), WsRules{true, deflate, limit, validate}),
                   Side(rest.substr(clientBytes), WsRules{false, deflate, limit, validate})};

  for (;;) {
    const bool a = sides[0].hungry(), b = sides[1].hungry();
    if (!a && !b) break;
    const int which = a && b ? static_cast<int>(rng.next() % 2) : (a ? 0 : 1);
    Side& side = sides[which];
    Side& other = sides[1 - which];
    const std::size_t n = nextRead(rng, side.stream.size() - side.fed);
    feed(side, n, rng);
    uint16_t code = 0;
    const Event event = pump(side, code);
    collect(side);
    checkTurn(side, event, code);
    if (event != Event::None) {
      // Session: nothing more is read from this side. On a violation wsgate sends it a
      // Close, after which the other direction's frames toward it are dropped.
      side.ended = true;
      evbuffer_drain(side.src.get(), evbuffer_get_length(side.src.get()));
      if (event == Event::Violated && !other.discard) {
        other.discard = true;
        other.frozen = other.out.size();
      }
    }
  }
  return 0;
}
