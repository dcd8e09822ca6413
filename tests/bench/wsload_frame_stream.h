#pragma once
// Frames out of a byte stream that arrives in arbitrary pieces (RFC 6455 5.2): a header split
// across reads is assembled in 14 bytes of state, payload bytes are handed on as they come,
// so a connection never buffers a whole frame.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "proxy/ws/frame.h"

namespace wsgate::bench {

// feed() drives a Sink with:
//   bool onFrameHeader(const ws::FrameHeader&)
//   bool onPayload(char* data, std::size_t len)   // a piece of the payload, in order
//   bool onFrameEnd(const ws::FrameHeader&)
//   void onFrameError(std::string_view why)       // the header does not decode
// A callback returning false stops the feed (the connection failed or is closing).
class FrameStream {
public:
  template <class Sink>
  bool feed(char* data, std::size_t len, Sink& sink) {
    while (len > 0) {
      if (!inFrame_) {
        std::size_t used = 0;
        const ws::HeaderStatus status = takeHeader(data, len, used);
        if (status == ws::HeaderStatus::Error) {
          sink.onFrameError("invalid frame header");
          return false;
        }
        data += used;
        len -= used;
        if (status == ws::HeaderStatus::Incomplete) continue;  // every byte kept: len is 0
        left_ = header_.payloadLength;
        inFrame_ = true;
        if (!sink.onFrameHeader(header_)) return false;
      } else {
        const auto take = static_cast<std::size_t>(std::min<uint64_t>(len, left_));
        if (!sink.onPayload(data, take)) return false;
        data += take;
        len -= take;
        left_ -= take;
      }
      if (inFrame_ && left_ == 0) {
        inFrame_ = false;
        if (!sink.onFrameEnd(header_)) return false;
      }
    }
    return true;
  }

  void reset() noexcept {
    have_ = 0;
    inFrame_ = false;
    left_ = 0;
  }

private:
  // Header bytes from `data`: Complete with `used` bytes taken, Incomplete with all kept.
  ws::HeaderStatus takeHeader(const char* data, std::size_t len, std::size_t& used) noexcept {
    if (have_ == 0) {  // the usual case: the whole header is in this read
      const ws::HeaderStatus status = ws::parseFrameHeader({data, len}, header_);
      if (status == ws::HeaderStatus::Complete) used = header_.headerBytes;
      if (status == ws::HeaderStatus::Incomplete) {  // fewer than 14 bytes arrived
        std::memcpy(partial_.data(), data, len);
        have_ = len;
        used = len;
      }
      return status;
    }
    const std::size_t take = std::min(len, partial_.size() - have_);
    std::memcpy(partial_.data() + have_, data, take);
    const ws::HeaderStatus status = ws::parseFrameHeader({partial_.data(), have_ + take}, header_);
    if (status == ws::HeaderStatus::Complete) {
      used = header_.headerBytes - have_;
      have_ = 0;
    } else if (status == ws::HeaderStatus::Incomplete) {
      have_ += take;
      used = take;
    }
    return status;
  }

  std::array<char, 14> partial_{};  // the longest header: 2 + 8 length + 4 mask
  std::size_t have_ = 0;
  ws::FrameHeader header_;
  bool inFrame_ = false;
  uint64_t left_ = 0;  // payload bytes of the current frame still to come
};

}  // namespace wsgate::bench
