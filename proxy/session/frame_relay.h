#pragma once
// One direction of a WebSocket tunnel: moves frames from a source evbuffer to a
// destination evbuffer, checking every header before it passes (ws::FrameChecker) and
// moving data payloads as buffer chains, never copying them into per-message buffers.
// Control frames (<= 125 bytes) stop the pump whole, so the session decides whether to
// forward, swallow or answer them. Pure of sockets: tests drive it with plain evbuffers.

#include <event2/buffer.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/net/handles.h"
#include "proxy/ws/frame.h"
#include "proxy/ws/frame_checker.h"
#include "proxy/ws/utf8.h"

namespace wsgate::proxy {

class FrameRelay {
public:
  struct Options {
    ws::DirectionRules rules;
    bool validateUtf8 = false;  // unmask and check text payloads (costs a pass over them)
  };

  enum class Status : uint8_t {
    NeedMore,   // all complete input was relayed; src may hold the start of a frame
    Control,    // a whole control frame is at the front of src: forwardControl/dropControl
    Violation,  // the stream broke a rule: violation() has the close code; stop relaying
    Message,    // collecting: a whole data message is in the Collected; take it, then pump
  };

  // Collecting mode (Lua's on_message): a data message's frames are held as they came (masked
  // when from a client) with an unmasked copy of its payload, until the message ends. Only
  // sessions whose script reads messages have one; the others relay frame by frame.
  struct Collected {
    net::EvBufferPtr frames{evbuffer_new()};
    std::string payload;
    bool text = false;
    void clear() {
      evbuffer_drain(frames.get(), evbuffer_get_length(frames.get()));
      payload.clear();
    }
  };

  explicit FrameRelay(const Options& options);

  // Relays from src to dst until input runs out, a control frame is reached, or a rule
  // is broken. With `discard` true, data frames are parsed and dropped instead of moved
  // (after a Close went to the destination, nothing more may follow it).
  // With `collect`, data frames go to it instead of dst, and Status::Message reports each
  // complete message (the caller empties `collect` before pumping again).
  Status pump(evbuffer* src, evbuffer* dst, bool discard = false, Collected* collect = nullptr);

  // With Status::Control: the frame's header and its payload, unmasked. The payload lives
  // in a per-thread buffer (a tunnel holds none of its own): it is valid until the next
  // pump() of any relay on this thread.
  const ws::FrameHeader& controlHeader() const noexcept { return header_; }
  std::string_view controlPayload() const noexcept;
  // Moves the pending control frame to dst as it came (mask included), or drops it.
  void forwardControl(evbuffer* src, evbuffer* dst);
  void dropControl(evbuffer* src);

  const ws::Violation& violation() const noexcept { return violation_; }

  // True when dst holds no partial frame from this relay, so another frame (a ping, a
  // close) may be written to dst now without corrupting the stream.
  bool atFrameBoundary() const noexcept { return phase_ == Phase::Header || headerPending_ > 0; }

  uint64_t frames() const noexcept { return checker_.frames(); }
  uint64_t messages() const noexcept { return checker_.messages(); }
  uint64_t payloadBytes() const noexcept { return payloadBytes_; }

private:
  enum class Phase : uint8_t { Header, Payload };

  Status fail(ws::Violation v);
  // Checks `n` payload bytes of src, after its first `skip` bytes, as UTF-8 text.
  bool validateText(evbuffer* src, std::size_t skip, std::size_t n);
  // Appends `n` payload bytes of src after its first `skip`, unmasked, to `out`.
  void copyPayload(evbuffer* src, std::size_t skip, std::size_t n, std::string& out);

  Options options_;
  ws::FrameChecker checker_;
  ws::Utf8Validator utf8_;
  Phase phase_ = Phase::Header;
  // Positions in the mask key (0-3) for the next payload byte: of the UTF-8 check's
  // unmasking, and of the collected copy's.
  uint8_t maskOffset_ = 0;
  uint8_t collectMask_ = 0;
  ws::FrameHeader header_;
  uint64_t remaining_ = 0;         // payload bytes of the current data frame still to move
  std::size_t headerPending_ = 0;  // header bytes at the front of src not moved yet
  bool checkingText_ = false;      // the open message is text and validateUtf8 is on
  uint64_t payloadBytes_ = 0;
  ws::Violation violation_{};
};

}  // namespace wsgate::proxy
