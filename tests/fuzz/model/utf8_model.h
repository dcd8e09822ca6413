#pragma once
// Reference UTF-8 check (RFC 3629 sections 3 and 4) for the fuzz oracles of
// ws::Utf8Validator and of everything that validates text (close reasons, text frames).
// Deliberately unlike the product's DFA: it decodes code points arithmetically. A lead byte
// gives the sequence length; after each byte the model asks whether some continuation could
// still yield a scalar value that this length may encode (no overlong form, no surrogate
// D800-DFFF, nothing above U+10FFFF). The first byte after which none could is where a
// fail-fast validator must stop.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace wsgate::fuzz::model {

struct Utf8Answer {
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  std::size_t firstBad = kNone;  // index of the first byte no continuation can redeem
  bool complete = true;          // with firstBad == kNone: ends on a code point boundary
  bool valid() const { return firstBad == kNone && complete; }
};

class Utf8Model {
public:
  static Utf8Answer check(std::string_view s) {
    Utf8Answer a;
    std::size_t i = 0;
    while (i < s.size()) {
      const uint32_t lead = static_cast<unsigned char>(s[i]);
      const int len = lead < 0x80             ? 1
                      : (lead & 0xE0) == 0xC0 ? 2
                      : (lead & 0xF0) == 0xE0 ? 3
                      : (lead & 0xF8) == 0xF0 ? 4
                                              : 0;
      if (len == 0) return bad(a, i);  // a continuation byte, or F8-FF
      if (len == 1) {
        ++i;
        continue;
      }
      // The smallest scalar each length may encode (shorter forms would be overlong).
      const uint32_t least = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
      uint32_t value = lead & (0x7Fu >> len);
      for (int k = 1;; ++k) {
        // `k` bytes of the sequence seen: can the remaining 6*(len-k) bits still land on a
        // scalar this length may encode?
        const int rest = 6 * (len - k);
        const uint64_t lo = uint64_t{value} << rest;
        const uint64_t hi = lo | ((uint64_t{1} << rest) - 1);
        if (!reachable(lo, hi, least)) return bad(a, i + k - 1);
        if (k == len) break;
        if (i + k >= s.size()) {
          a.complete = false;  // the input ends inside the sequence
          return a;
        }
        const uint32_t c = static_cast<unsigned char>(s[i + k]);
        if ((c & 0xC0) != 0x80) return bad(a, i + k);  // not a continuation byte
        value = (value << 6) | (c & 0x3F);
      }
      i += static_cast<std::size_t>(len);
    }
    return a;
  }

private:
  static Utf8Answer bad(Utf8Answer a, std::size_t at) {
    a.firstBad = at;
    a.complete = false;
    return a;
  }

  // Some scalar value in [lo, hi] that is >= least, <= U+10FFFF and not a surrogate.
  static bool reachable(uint64_t lo, uint64_t hi, uint64_t least) {
    const uint64_t from = std::max(lo, least);
    const uint64_t to = std::min<uint64_t>(hi, 0x10FFFF);
    if (from > to) return false;
    return !(from >= 0xD800 && to <= 0xDFFF);
  }
};

}  // namespace wsgate::fuzz::model
