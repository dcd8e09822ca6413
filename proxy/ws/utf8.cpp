// Incremental UTF-8 validation (RFC 3629 section 4) as a DFA in the manner of Bjoern
// Hoehrmann's decoder: each byte maps to a class, each (state, class) to the next state.

#include "proxy/ws/utf8.h"

#include <array>
#include <cstddef>
#include <cstring>

namespace wsgate::ws {

namespace {

// Byte classes: the byte ranges that RFC 3629 section 4's table of well-formed sequences
// treats differently, so the transition table below needs only one column per class.
//
//   UTF8-1 = %x00-7F
//   UTF8-2 = %xC2-DF UTF8-tail
//   UTF8-3 = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) /
//            %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
//   UTF8-4 = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) /
//            %xF4 %x80-8F 2( UTF8-tail )
//   UTF8-tail = %x80-BF
//
// The tail range is cut at 0x90 and 0xA0 because the second byte after E0, ED, F0 and F4
// is restricted to part of it (no overlong forms, no surrogates, nothing above U+10FFFF).
enum Class : uint8_t {
  kAscii,    // 00-7F
  kTail80,   // 80-8F
  kTail90,   // 90-9F
  kTailA0,   // A0-BF
  kInvalid,  // C0-C1 (only overlong 2-byte forms), F5-FF (above U+10FFFF or not UTF-8)
  kLead2,    // C2-DF
  kLeadE0,   // E0: second byte A0-BF (80-9F would be overlong)
  kLead3,    // E1-EC, EE-EF
  kLeadED,   // ED: second byte 80-9F (A0-BF would be a surrogate, U+D800-DFFF)
  kLeadF0,   // F0: second byte 90-BF (80-8F would be overlong)
  kLead4,    // F1-F3
  kLeadF4,   // F4: second byte 80-8F (90-BF would be above U+10FFFF)
  kClassCount
};

// States: what the bytes seen so far still need. Accept and reject are the values utf8.h
// fixes; reject is a sink, so a stream stays rejected once a prefix cannot be valid.
enum State : uint8_t {
  kStAccept = 0,   // on a code point boundary
  kStReject = 1,   // no continuation can make the input valid
  kStTail1 = 2,    // one more UTF8-tail
  kStTail2 = 3,    // two more UTF8-tails
  kStAfterE0 = 4,  // A0-BF, then one tail
  kStAfterED = 5,  // 80-9F, then one tail
  kStTail3 = 6,    // three more UTF8-tails
  kStAfterF0 = 7,  // 90-BF, then two tails
  kStAfterF4 = 8,  // 80-8F, then two tails
  kStateCount
};

// Index of (state, class) in the row-major transition table.
constexpr std::size_t cell(uint8_t state, uint8_t cls) noexcept {
  return std::size_t{state} * kClassCount + cls;
}
constexpr std::size_t kCells = std::size_t{kStateCount} * kClassCount;

constexpr std::array<uint8_t, 256> makeClasses() {
  std::array<uint8_t, 256> c{};
  auto fill = [&c](unsigned from, unsigned to, Class cls) {
    for (unsigned b = from; b <= to; ++b) c[b] = cls;
  };
  fill(0x00, 0x7F, kAscii);
  fill(0x80, 0x8F, kTail80);
  fill(0x90, 0x9F, kTail90);
  fill(0xA0, 0xBF, kTailA0);
  fill(0xC0, 0xC1, kInvalid);
  fill(0xC2, 0xDF, kLead2);
  fill(0xE0, 0xE0, kLeadE0);
  fill(0xE1, 0xEC, kLead3);
  fill(0xED, 0xED, kLeadED);
  fill(0xEE, 0xEF, kLead3);
  fill(0xF0, 0xF0, kLeadF0);
  fill(0xF1, 0xF3, kLead4);
  fill(0xF4, 0xF4, kLeadF4);
  fill(0xF5, 0xFF, kInvalid);
  return c;
}

// Every transition not named below goes to kStReject.
constexpr std::array<uint8_t, kCells> makeTransitions() {
  std::array<uint8_t, kCells> t{};
  for (auto& next : t) next = kStReject;
  auto on = [&t](State from, Class cls, State to) { t[cell(from, cls)] = to; };
  // A boundary: an ASCII byte or a lead byte (RFC 3629 section 4, first byte of UTF8-1..4).
  on(kStAccept, kAscii, kStAccept);
  on(kStAccept, kLead2, kStTail1);
  on(kStAccept, kLeadE0, kStAfterE0);
  on(kStAccept, kLead3, kStTail2);
  on(kStAccept, kLeadED, kStAfterED);
  on(kStAccept, kLeadF0, kStAfterF0);
  on(kStAccept, kLead4, kStTail3);
  on(kStAccept, kLeadF4, kStAfterF4);
  // Any UTF8-tail.
  for (Class tail : {kTail80, kTail90, kTailA0}) {
    on(kStTail1, tail, kStAccept);
    on(kStTail2, tail, kStTail1);
    on(kStTail3, tail, kStTail2);
  }
  // The restricted second bytes.
  on(kStAfterE0, kTailA0, kStTail1);
  on(kStAfterED, kTail80, kStTail1);
  on(kStAfterED, kTail90, kStTail1);
  on(kStAfterF0, kTail90, kStTail2);
  on(kStAfterF0, kTailA0, kStTail2);
  on(kStAfterF4, kTail80, kStTail2);
  return t;
}

constexpr std::array<uint8_t, 256> kClasses = makeClasses();
constexpr std::array<uint8_t, kCells> kTransitions = makeTransitions();

static_assert(kStAccept == 0 && kStReject == 1, "utf8.h fixes accept = 0 and reject = 1");
static_assert(kTransitions[cell(kStAccept, kAscii)] == kStAccept);
static_assert(kTransitions[cell(kStAccept, kInvalid)] == kStReject);
static_assert(kTransitions[cell(kStAfterED, kTailA0)] == kStReject, "ED A0 starts a surrogate");
static_assert(kTransitions[cell(kStAfterF4, kTail90)] == kStReject, "F4 90 is above U+10FFFF");

constexpr uint8_t step(uint8_t state, unsigned char byte) noexcept {
  return kTransitions[cell(state, kClasses[byte])];
}

constexpr uint64_t kHighBits = 0x8080808080808080ULL;

}  // namespace

bool Utf8Validator::feed(std::string_view bytes) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  uint8_t state = state_;
  std::size_t i = 0;
  while (i < n) {
    if (state == kAccept) {
      // Text is mostly ASCII: on a boundary, skip eight bytes at a time while none has its
      // high bit set (memcpy keeps the load free of alignment and aliasing questions).
      while (i + 8 <= n) {
        uint64_t word = 0;
        std::memcpy(&word, p + i, sizeof word);
        if ((word & kHighBits) != 0) break;
        i += 8;
      }
      if (i == n) break;
    }
    state = step(state, p[i]);
    ++i;
    // Fail-fast: stop at the first byte that rules out every continuation (RFC 6455 8.1
    // lets the endpoint fail the connection as soon as it sees invalid UTF-8).
    if (state == kReject) break;
  }
  state_ = state;
  return state != kReject;
}

bool isValidUtf8(std::string_view bytes) noexcept {
  Utf8Validator v;
  return v.feed(bytes) && v.complete();
}

}  // namespace wsgate::ws
