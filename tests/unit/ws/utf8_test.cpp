// Incremental UTF-8 validation (RFC 3629 section 4), fail-fast as Autobahn group 6 expects.

#include "proxy/ws/utf8.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace wsgate::ws {
namespace {

using namespace std::string_literals;

// "κόσμε", the first sample of Markus Kuhn's UTF-8 test file and of Autobahn case 6.2.
const std::string kKosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"s;

// RFC 3629 section 3: the encoding of one scalar value.
std::string encode(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

bool isSurrogate(uint32_t cp) { return cp >= 0xD800 && cp <= 0xDFFF; }

struct Valid {
  std::string_view name;
  std::string bytes;
};

const Valid kValid[] = {
    {"empty", ""s},
    {"nul", "\x00"s},
    {"ascii", "Hello, world"s},
    {"long ascii run", std::string(100, 'a')},
    {"U+007F last 1-byte", "\x7f"s},
    {"U+0080 first 2-byte", "\xc2\x80"s},
    {"U+07FF last 2-byte", "\xdf\xbf"s},
    {"U+0800 first 3-byte", "\xe0\xa0\x80"s},
    {"U+D7FF before surrogates", "\xed\x9f\xbf"s},
    {"U+E000 after surrogates", "\xee\x80\x80"s},
    {"U+FFFD replacement", "\xef\xbf\xbd"s},
    {"U+FFFE noncharacter", "\xef\xbf\xbe"s},
    {"U+FFFF last 3-byte", "\xef\xbf\xbf"s},
    {"U+10000 first 4-byte", "\xf0\x90\x80\x80"s},
    {"U+FFFFF", "\xf3\xbf\xbf\xbf"s},
    {"U+100000", "\xf4\x80\x80\x80"s},
    {"U+10FFFF last", "\xf4\x8f\xbf\xbf"s},
    {"kosme", kKosme},
    {"kosme between ascii", "Hello-" + kKosme + "-Hello"},
    {"ascii runs around multibyte", std::string(13, 'x') + "\xe2\x82\xac" + std::string(17, 'y')},
    {"mixed lengths", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z"s},
};

TEST(Utf8Validator, AcceptsValidSequencesWhole) {
  for (const Valid& c : kValid) {
    Utf8Validator v;
    EXPECT_TRUE(v.feed(c.bytes)) << c.name;
    EXPECT_TRUE(v.complete()) << c.name;
    EXPECT_TRUE(isValidUtf8(c.bytes)) << c.name;
  }
}

TEST(Utf8Validator, AcceptsValidSequencesByteByByte) {
  for (const Valid& c : kValid) {
    Utf8Validator v;
    for (std::size_t i = 0; i < c.bytes.size(); ++i)
      ASSERT_TRUE(v.feed(std::string_view(c.bytes).substr(i, 1))) << c.name << " byte " << i;
    EXPECT_TRUE(v.complete()) << c.name;
  }
}

TEST(Utf8Validator, AcceptsValidSequencesSplitAtEveryPosition) {
  for (const Valid& c : kValid) {
    const std::string_view all = c.bytes;
    for (std::size_t cut = 0; cut <= all.size(); ++cut) {
      Utf8Validator v;
      ASSERT_TRUE(v.feed(all.substr(0, cut))) << c.name << " cut " << cut;
      ASSERT_TRUE(v.feed(all.substr(cut))) << c.name << " cut " << cut;
      EXPECT_TRUE(v.complete()) << c.name << " cut " << cut;
    }
  }
}

// `failAt` is the length of the shortest prefix the validator must reject: every shorter
// prefix is still a possible start of valid UTF-8.
struct Invalid {
  std::string_view name;
  std::string bytes;
  std::size_t failAt;
};

const Invalid kInvalid[] = {
    // Bytes that never occur (RFC 3629 section 1).
    {"C0", "\xc0"s, 1},
    {"C1", "\xc1"s, 1},
    {"F5", "\xf5\x80\x80\x80"s, 1},
    {"F8 5-byte form", "\xf8\x88\x80\x80\x80"s, 1},
    {"FC 6-byte form", "\xfc\x84\x80\x80\x80\x80"s, 1},
    {"FE", "\xfe"s, 1},
    {"FF", "\xff"s, 1},
    // Continuation bytes without a lead.
    {"lone 80", "\x80"s, 1},
    {"lone BF", "\xbf"s, 1},
    {"continuation after ascii", "ab\x80"s, 3},
    {"extra continuation", "\xc2\x80\x80"s, 3},
    // Overlong forms (Kuhn 4.1, 4.2): "/" and the largest overlong of each length.
    {"overlong / 2-byte", "\xc0\xaf"s, 1},
    {"overlong / 3-byte", "\xe0\x80\xaf"s, 2},
    {"overlong / 4-byte", "\xf0\x80\x80\xaf"s, 2},
    {"max overlong 2-byte", "\xc1\xbf"s, 1},
    {"max overlong 3-byte", "\xe0\x9f\xbf"s, 2},
    {"max overlong 4-byte", "\xf0\x8f\xbf\xbf"s, 2},
    {"overlong NUL", "\xc0\x80"s, 1},
    // UTF-16 surrogates (Kuhn 5.1, 5.2).
    {"U+D800", "\xed\xa0\x80"s, 2},
    {"U+DB7F", "\xed\xad\xbf"s, 2},
    {"U+DC00", "\xed\xb0\x80"s, 2},
    {"U+DFFF", "\xed\xbf\xbf"s, 2},
    {"surrogate pair", "\xed\xa0\x80\xed\xb0\x80"s, 2},
    // Above U+10FFFF.
    {"U+110000", "\xf4\x90\x80\x80"s, 2},
    {"F4 BF", "\xf4\xbf\xbf\xbf"s, 2},
    // A lead byte cut short by something that is not a continuation (Kuhn 3.2, 3.3).
    {"2-byte lead then space", "\xc2 "s, 2},
    {"3-byte lead then ascii", "\xe1\x80x"s, 3},
    {"4-byte lead then ascii", "\xf1\x80\x80x"s, 4},
    {"two lead bytes", "\xe1\xe1\x80\x80"s, 2},
    // Autobahn 6.3.1 and 6.4.1/6.4.3: fail at the first impossible byte, not at the end.
    {"kosme then surrogate", kKosme + "\xed\xa0\x80\x65\x64\x69\x74\x65\x64"s, kKosme.size() + 2},
    {"kosme then F4 90", kKosme + "\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64"s, kKosme.size() + 2},
    // Inside an ASCII run the fast path must stop at the bad byte.
    {"bad byte inside long ascii", std::string(20, 'a') + "\xff" + std::string(20, 'b'), 21},
};

TEST(Utf8Validator, RejectsAtTheFirstImpossibleByte) {
  for (const Invalid& c : kInvalid) {
    const std::string_view all = c.bytes;
    ASSERT_LE(c.failAt, all.size()) << c.name;
    Utf8Validator ok;
    EXPECT_TRUE(ok.feed(all.substr(0, c.failAt - 1))) << c.name;
    Utf8Validator bad;
    EXPECT_FALSE(bad.feed(all.substr(0, c.failAt))) << c.name;
    EXPECT_FALSE(isValidUtf8(all)) << c.name;
  }
}

TEST(Utf8Validator, RejectsByteByByteAtTheSamePosition) {
  for (const Invalid& c : kInvalid) {
    Utf8Validator v;
    std::size_t rejectedAt = 0;
    for (std::size_t i = 0; i < c.bytes.size() && rejectedAt == 0; ++i)
      if (!v.feed(std::string_view(c.bytes).substr(i, 1))) rejectedAt = i + 1;
    EXPECT_EQ(rejectedAt, c.failAt) << c.name;
  }
}

TEST(Utf8Validator, FastPathSeesEveryByteOfEveryWord) {
  // The ASCII fast path reads 8 bytes at a time: a non-ASCII byte in any lane, at any
  // alignment, must reach the DFA.
  for (std::size_t at = 0; at < 40; ++at) {
    std::string bad(40, 'a');
    bad[at] = '\xff';
    Utf8Validator v;
    EXPECT_TRUE(v.feed(std::string_view(bad).substr(0, at))) << at;
    EXPECT_FALSE(v.feed(std::string_view(bad).substr(at))) << at;
    EXPECT_FALSE(isValidUtf8(bad)) << at;

    std::string good(40, 'a');
    good.insert(at, "\xe2\x82\xac");  // U+20AC
    EXPECT_TRUE(isValidUtf8(good)) << at;
    std::string cut(40, 'a');
    cut.insert(at, "\xe2\x82");  // a lead and one tail, then ASCII
    EXPECT_FALSE(isValidUtf8(cut)) << at;
  }
}

// A sequence cut short by a run of ASCII long enough for the 8-byte fast path, then
// "completed" by the tails it lacked: the first ASCII byte already rules it out. The fast
// path may only skip on a code point boundary.
struct CutByAscii {
  std::string_view name;
  std::string started;  // a lead byte and maybe some of its tails
  std::size_t asciiRun;
  std::string rest;  // the tails that would have completed it
};

const CutByAscii kCutByAscii[] = {
    {"2-byte lead, 8 ascii, tail", "\xc3"s, 8, "\xa9"s},
    {"2-byte lead, 16 ascii, tail", "\xc3"s, 16, "\xa9"s},
    {"3-byte lead, 8 ascii, 2 tails", "\xe2"s, 8, "\x82\xac"s},
    {"3-byte lead and tail, 8 ascii, tail", "\xe2\x82"s, 8, "\xac"s},
    {"4-byte lead and 2 tails, 24 ascii, tail", "\xf0\x9f\x98"s, 24, "\x80"s},
};

TEST(Utf8Validator, RejectsAsciiInsideASequenceEvenWhereTheFastPathReadsWords) {
  for (const CutByAscii& c : kCutByAscii) {
    const std::string rest = std::string(c.asciiRun, 'a') + c.rest;
    EXPECT_FALSE(isValidUtf8(c.started + rest)) << c.name;
    Utf8Validator v;
    ASSERT_TRUE(v.feed(c.started)) << c.name;
    EXPECT_FALSE(v.feed(rest)) << c.name << ": fed in two pieces";
  }
}

TEST(Utf8Validator, StaysRejected) {
  Utf8Validator v;
  EXPECT_FALSE(v.feed("\xff"));
  EXPECT_FALSE(v.feed("plain ascii"));
  EXPECT_FALSE(v.feed(""));
  EXPECT_FALSE(v.complete());
  v.reset();
  EXPECT_TRUE(v.feed("plain ascii"));
  EXPECT_TRUE(v.complete());
}

TEST(Utf8Validator, TruncatedSequenceIsAcceptedButIncomplete) {
  const std::string truncated[] = {
      "\xc2"s, "\xe0\xa0"s, "\xe1"s, "\xed\x9f"s, "\xf0\x90\x80"s, "\xf4\x8f"s, kKosme + "\xce"s,
  };
  for (const std::string& t : truncated) {
    Utf8Validator v;
    EXPECT_TRUE(v.feed(t)) << testing::PrintToString(t);
    EXPECT_FALSE(v.complete()) << testing::PrintToString(t);
    EXPECT_FALSE(isValidUtf8(t)) << testing::PrintToString(t);
  }
}

TEST(Utf8Validator, CodePointSplitAcrossFeedsCompletesLater) {
  // Autobahn 6.2.3/6.2.4: a message whose code points are cut across frames.
  Utf8Validator v;
  EXPECT_TRUE(v.feed("\xf0\x9f"));
  EXPECT_FALSE(v.complete());
  EXPECT_TRUE(v.feed("\x98"));
  EXPECT_FALSE(v.complete());
  EXPECT_TRUE(v.feed("\x80 ok"));
  EXPECT_TRUE(v.complete());
}

TEST(Utf8Validator, AcceptsEveryScalarValueAndNoSurrogate) {
  for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    const std::string s = encode(cp);
    ASSERT_EQ(isValidUtf8(s), !isSurrogate(cp)) << std::hex << cp;
  }
}

// An oracle independent of the DFA: the set of every prefix of every encoded scalar value,
// marked whole or partial. Then a string is a valid prefix when it splits into whole
// encodings followed by at most one partial one.
class PrefixOracle {
public:
  PrefixOracle() {
    for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
      if (isSurrogate(cp)) continue;
      const std::string s = encode(cp);
      for (std::size_t n = 1; n <= s.size(); ++n) {
        bool& whole = pieces_[key(std::string_view(s).substr(0, n))];
        whole = whole || n == s.size();
      }
    }
  }
  // Sets `complete` when the whole string splits into whole encodings.
  bool validPrefix(std::string_view s, bool& complete) const {
    complete = s.empty();
    if (s.empty()) return true;
    for (std::size_t n = 1; n <= s.size() && n <= 4; ++n) {
      const auto it = pieces_.find(key(s.substr(0, n)));
      if (it == pieces_.end()) continue;
      if (n == s.size()) {
        complete = it->second;
        return true;
      }
      if (it->second) return validPrefix(s.substr(n), complete);
    }
    return false;
  }

private:
  static uint64_t key(std::string_view s) {
    uint64_t k = s.size();
    for (char c : s) k = (k << 8) | static_cast<unsigned char>(c);
    return k;
  }
  std::unordered_map<uint64_t, bool> pieces_;
};

TEST(Utf8Validator, AgreesWithOracleOnEveryStringUpToThreeBytes) {
  const PrefixOracle oracle;
  std::string s;
  auto check = [&] {
    bool complete = false;
    const bool valid = oracle.validPrefix(s, complete);
    Utf8Validator v;
    ASSERT_EQ(v.feed(s), valid) << testing::PrintToString(s);
    ASSERT_EQ(valid && v.complete(), valid && complete) << testing::PrintToString(s);
  };
  for (unsigned a = 0; a < 256; ++a) {
    s.assign(1, static_cast<char>(a));
    check();
    for (unsigned b = 0; b < 256; ++b) {
      s.assign({static_cast<char>(a), static_cast<char>(b)});
      check();
      // A third byte only behind a lead byte: after ASCII the state is back to accept and
      // after a lone continuation it is rejected, so those add nothing the pairs did not.
      if (a < 0xC0) continue;
      for (unsigned c = 0; c < 256; ++c) {
        s.assign({static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)});
        check();
      }
    }
  }
}

}  // namespace
}  // namespace wsgate::ws
