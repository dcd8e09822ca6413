#pragma once
// Incremental UTF-8 validation (RFC 3629) for text messages that arrive in pieces:
// code points may be split across frames and reads. Pure, no allocation.

#include <cstdint>
#include <string_view>

namespace wsgate::ws {

class Utf8Validator {
public:
  // Feeds the next bytes. Returns false as soon as the bytes seen so far cannot be the
  // prefix of valid UTF-8 (overlong forms, surrogates, > U+10FFFF, bad continuation):
  // fail-fast inside a frame, as Autobahn case group 6 expects.
  bool feed(std::string_view bytes) noexcept;
  // True when the bytes fed so far end on a code point boundary (a message may end here).
  bool complete() const noexcept { return state_ == kAccept; }
  void reset() noexcept { state_ = kAccept; }

private:
  static constexpr uint8_t kAccept = 0;
  static constexpr uint8_t kReject = 1;
  uint8_t state_ = kAccept;
};

// Whole-buffer convenience.
bool isValidUtf8(std::string_view bytes) noexcept;

}  // namespace wsgate::ws
