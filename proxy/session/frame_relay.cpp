#include "proxy/session/frame_relay.h"

#include <algorithm>

namespace wsgate::proxy {
namespace {

constexpr std::size_t kMaxHeader = 14;  // RFC 6455 5.2: 2 + 8 (length) + 4 (mask)
constexpr std::size_t kScratch = 4096;  // unmasking window for UTF-8 checks

bool isControl(uint8_t opcode) { return (opcode & 0x8) != 0; }

// The unmasked payload of the last control frame a relay of this thread stopped at.
thread_local std::array<char, 125> tControlPayload;

}  // namespace

FrameRelay::FrameRelay(const Options& options) : options_(options), checker_(options.rules) {}

std::string_view FrameRelay::controlPayload() const noexcept {
  return {tControlPayload.data(), static_cast<std::size_t>(header_.payloadLength)};
}

FrameRelay::Status FrameRelay::fail(ws::Violation v) {
  violation_ = v;
  return Status::Violation;
}

FrameRelay::Status FrameRelay::pump(evbuffer* src, evbuffer* dst, bool discard,
                                    Collected* collect) {
  if (violation_) return Status::Violation;
  for (;;) {
    if (phase_ == Phase::Header) {
      std::array<char, kMaxHeader> head;
      const ev_ssize_t got = evbuffer_copyout(src, head.data(), head.size());
      if (got < 2) return Status::NeedMore;
      ws::FrameHeader h;
      switch (ws::parseFrameHeader({head.data(), static_cast<std::size_t>(got)}, h)) {
        case ws::HeaderStatus::Incomplete:
          return Status::NeedMore;
        case ws::HeaderStatus::Error:
          return fail({ws::close_code::kProtocolError, "frame length over 2^63"});
        case ws::HeaderStatus::Complete:
          break;
      }
      // A control frame (at most 125 bytes, else the checker rejects it) is taken whole:
      // wait for all of it before the checker counts its header.
      if (isControl(h.opcode) && h.payloadLength <= 125 &&
          evbuffer_get_length(src) < h.headerBytes + h.payloadLength) {
        return Status::NeedMore;
      }
      if (ws::Violation v = checker_.onHeader(h)) return fail(v);
      header_ = h;
      if (isControl(h.opcode)) {
        evbuffer_ptr at;
        evbuffer_ptr_set(src, &at, h.headerBytes, EVBUFFER_PTR_SET);
        evbuffer_copyout_from(src, &at, tControlPayload.data(), h.payloadLength);
        if (h.masked) ws::applyMask(tControlPayload.data(), h.payloadLength, h.mask);
        return Status::Control;
      }
      if (h.opcode != static_cast<uint8_t>(ws::Opcode::Continuation)) {
        checkingText_ = options_.validateUtf8 &&
                        h.opcode == static_cast<uint8_t>(ws::Opcode::Text) &&
                        (h.rsv & 0x4) == 0;  // a compressed text message is not UTF-8 on the wire
        utf8_.reset();
        if (collect != nullptr) {
          collect->text = h.opcode == static_cast<uint8_t>(ws::Opcode::Text);
        }
      }
      // The header leaves together with the first payload bytes, once they are checked:
      // a frame whose text turns out invalid is not even started toward the peer.
      headerPending_ = h.headerBytes;
      remaining_ = h.payloadLength;
      maskOffset_ = 0;
      collectMask_ = 0;
      phase_ = Phase::Payload;
    }
    // Payload of a data frame: move what is here, as chains, without copying.
    const std::size_t n = static_cast<std::size_t>(
        std::min<uint64_t>(evbuffer_get_length(src) - headerPending_, remaining_));
    if (n == 0 && remaining_ > 0) return Status::NeedMore;
    if (n > 0 && checkingText_ && !validateText(src, headerPending_, n)) {
      return fail({ws::close_code::kInvalidPayload, "invalid UTF-8 in a text message"});
    }
    // RFC 6455 8.1: a text message ends on a code point. Decided before the final bytes
    // leave, so the peer never receives the whole invalid message ahead of the 1007.
    if (checkingText_ && header_.fin && n == remaining_ && !utf8_.complete()) {
      return fail({ws::close_code::kInvalidPayload, "text message ends inside a UTF-8 sequence"});
    }
    if (discard) {
      evbuffer_drain(src, headerPending_ + n);
    } else if (collect != nullptr) {
      copyPayload(src, headerPending_, n, collect->payload);
      evbuffer_remove_buffer(src, collect->frames.get(), headerPending_ + n);
    } else {
      evbuffer_remove_buffer(src, dst, headerPending_ + n);
    }
    headerPending_ = 0;
    remaining_ -= n;
    payloadBytes_ += n;
    if (remaining_ > 0) return Status::NeedMore;
    phase_ = Phase::Header;
    if (collect != nullptr && !discard && header_.fin) return Status::Message;
  }
}

bool FrameRelay::validateText(evbuffer* src, std::size_t skip, std::size_t n) {
  if (!header_.masked) {
    // Unmasked (from a backend): validate the chains in place.
    evbuffer_iovec vec[8];
    evbuffer_ptr pos;
    evbuffer_ptr_set(src, &pos, skip, EVBUFFER_PTR_SET);
    std::size_t left = n;
    while (left > 0) {
      const int got = evbuffer_peek(src, left, &pos, vec, 8);
      if (got <= 0) return false;
      for (int i = 0; i < std::min(got, 8) && left > 0; ++i) {
        const std::size_t take = std::min(left, vec[i].iov_len);
        if (!utf8_.feed({static_cast<const char*>(vec[i].iov_base), take})) return false;
        left -= take;
      }
      evbuffer_ptr_set(src, &pos, skip + n - left, EVBUFFER_PTR_SET);
    }
    return true;
  }
  // Masked (from a client): unmask a window at a time into scratch; the masked bytes are
  // what gets forwarded, untouched.
  std::array<char, kScratch> scratch;
  evbuffer_ptr pos;
  std::size_t done = 0;
  while (done < n) {
    const std::size_t take = std::min(n - done, scratch.size());
    evbuffer_ptr_set(src, &pos, skip + done, EVBUFFER_PTR_SET);
    evbuffer_copyout_from(src, &pos, scratch.data(), take);
    maskOffset_ =
        static_cast<uint8_t>(ws::applyMask(scratch.data(), take, header_.mask, maskOffset_));
    if (!utf8_.feed({scratch.data(), take})) return false;
    done += take;
  }
  return true;
}

void FrameRelay::copyPayload(evbuffer* src, std::size_t skip, std::size_t n, std::string& out) {
  const std::size_t at = out.size();
  out.resize(at + n);
  evbuffer_ptr pos;
  evbuffer_ptr_set(src, &pos, skip, EVBUFFER_PTR_SET);
  evbuffer_copyout_from(src, &pos, out.data() + at, n);
  if (header_.masked) {
    collectMask_ =
        static_cast<uint8_t>(ws::applyMask(out.data() + at, n, header_.mask, collectMask_));
  }
}

void FrameRelay::forwardControl(evbuffer* src, evbuffer* dst) {
  evbuffer_remove_buffer(src, dst, header_.headerBytes + header_.payloadLength);
}

void FrameRelay::dropControl(evbuffer* src) {
  evbuffer_drain(src, header_.headerBytes + header_.payloadLength);
}

}  // namespace wsgate::proxy
