// libFuzzer: ws::Utf8Validator and isValidUtf8 against an independent RFC 3629 decoder
// (model/utf8_model.h): the verdict, the first byte at which the fail-fast validator must
// stop, and whether the input ends on a code point boundary, for the input fed whole, byte
// by byte, split in two at every point, and in random pieces.
//
// Input: the bytes to validate (the first byte also seeds the random pieces).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "model/utf8_model.h"
#include "proxy/ws/utf8.h"

namespace {

using wsgate::fuzz::model::Utf8Answer;
using wsgate::fuzz::model::Utf8Model;
using wsgate::ws::Utf8Validator;

void check(bool ok) {
  if (!ok) std::abort();
}

// Feeds `first` then `second`; checks each verdict against the model's first bad byte.
void twoParts(std::string_view s, std::size_t cut, const Utf8Answer& want) {
  Utf8Validator v;
  const bool firstOk = v.feed(s.substr(0, cut));
  check(firstOk == (want.firstBad == Utf8Answer::kNone || want.firstBad >= cut));
  if (!firstOk) {
    check(!v.feed(s.substr(cut)));  // rejection is final
    return;
  }
  check(v.feed(s.substr(cut)) == (want.firstBad == Utf8Answer::kNone));
  check(v.complete() == want.valid());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  const Utf8Answer want = Utf8Model::check(s);

  check(wsgate::ws::isValidUtf8(s) == want.valid());

  Utf8Validator whole;
  check(whole.feed(s) == (want.firstBad == Utf8Answer::kNone));
  check(whole.complete() == want.valid());
  if (want.firstBad == Utf8Answer::kNone) {
    // A validator fed valid text takes a new message after reset(), and ends a message
    // on a boundary exactly when the model says so.
    whole.reset();
    check(whole.complete() && whole.feed("ok") && whole.complete());
  }

  // Byte by byte: the first false is at the model's first bad byte, and stays false.
  Utf8Validator bytes;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool ok = bytes.feed(s.substr(i, 1));
    check(ok == (want.firstBad == Utf8Answer::kNone || i < want.firstBad));
  }
  if (want.firstBad == Utf8Answer::kNone) check(bytes.complete() == want.complete);

  // Two parts, split at every point (sampled on long inputs).
  const std::size_t step = s.size() <= 512 ? 1 : s.size() / 256;
  for (std::size_t cut = 0; cut <= s.size(); cut += step) twoParts(s, cut, want);

  // Random pieces, so the 8-byte ASCII fast path starts and stops at odd offsets.
  uint32_t seed = size > 0 ? data[0] * 2654435761u + 1 : 1;
  Utf8Validator pieces;
  bool ok = true;
  for (std::size_t i = 0; i < s.size() && ok;) {
    seed = seed * 1103515245u + 12345u;
    const std::size_t n = 1 + (seed >> 16) % 23;
    ok = pieces.feed(s.substr(i, n));
    i += n;
    check(ok == (want.firstBad == Utf8Answer::kNone || want.firstBad >= i));
  }
  if (ok) check(pieces.complete() == want.valid());
  return 0;
}
