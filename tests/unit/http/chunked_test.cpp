// Chunked decoder: each row is checked fed whole, byte by byte and in random splits, which must
// all agree on the status, where the body ends (or fails) and the payload size.

#include "proxy/http/chunked.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::http {
namespace {

using Status = ChunkedDecoder::Status;

constexpr std::size_t kAll = static_cast<std::size_t>(-1);

struct Case {
  std::string name;
  std::string input;
  Status status;
  std::size_t consumed = kAll;  // Done: body length; Error: offset of the bad byte; kAll: size
  uint64_t payload = 0;
  std::string_view reason{};  // with Error: which rule the body broke
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::string repeat(std::string_view s, std::size_t times) {
  std::string out;
  for (std::size_t i = 0; i < times; ++i) out += s;
  return out;
}

std::vector<Case> cases() {
  constexpr std::size_t kLine = ChunkedDecoder::kMaxLineBytes;
  constexpr std::size_t kTrailer = ChunkedDecoder::kMaxTrailerBytes;
  // A size line of exactly `bytes` bytes before its CRLF: "1;" plus extension padding.
  const auto sizeLine = [](std::size_t bytes) { return "1;" + std::string(bytes - 2, 'e'); };
  // A trailer line of `bytes` bytes before its CRLF.
  const auto trailerLine = [](std::size_t bytes) {
    return "X:" + std::string(bytes - 2, 'v') + "\r\n";
  };
  // A trailer section of exactly `bytes` bytes, every CRLF included (100-byte lines).
  const auto trailerSection = [&](std::size_t bytes) {
    std::string s = repeat(trailerLine(98), (bytes - 2) / 100);
    const std::size_t rest = bytes - 2 - s.size();
    if (rest > 0) s += trailerLine(rest - 2);
    return s + "\r\n";
  };
  // Whole trailer lines of exactly `bytes` bytes, CRLFs included (100-byte lines, then one of
  // the rest, which is never shorter than the 4 bytes of "X:\r\n" for the sizes used here).
  const auto fillerLines = [&](std::size_t bytes) {
    std::string s = repeat(trailerLine(98), bytes / 100);
    if (bytes % 100 > 0) s += trailerLine(bytes % 100 - 2);
    return s;
  };
  // A trailer section whose first byte over the limit is `last[at]`, and the one before it
  // `last[at - 1]` (or the filler's final LF): each state that counts the section checks the
  // limit itself, so each is made to meet it.
  const auto crossingAt = [&](std::string_view last, std::size_t at) {
    return "0\r\n" + fillerLines(kTrailer - at) + std::string(last);
  };
  constexpr std::size_t kOver = 3 + kTrailer;  // offset of the first byte over, after "0\r\n"
  constexpr std::string_view kTooLarge = "trailer section too large";
  return {
      {"EndsAfterSingleChunk", "5\r\nhello\r\n0\r\n\r\n", Status::Done, kAll, 5},
      {"EndsAfterSeveralChunks", "5\r\nhello\r\n1\r\n \r\n6\r\n world\r\n0\r\n\r\n", Status::Done,
       kAll, 12},
      {"ReadsHexSizesInEitherCase", "A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", Status::Done,
       kAll, 20},
      {"AcceptsLeadingZerosInSize", "0005\r\nhello\r\n0\r\n\r\n", Status::Done, kAll, 5},
      {"AcceptsRepeatedZerosAsLastChunk", "000\r\n\r\n", Status::Done, kAll, 0},
      {"AcceptsEmptyBody", "0\r\n\r\n", Status::Done, kAll, 0},
      {"SkipsChunkExtensions", "5;name=value;flag\r\nhello\r\n0;last\r\n\r\n", Status::Done, kAll,
       5},
      {"AcceptsWhitespaceBeforeExtension", "5 \t;a=b\r\nhello\r\n0\r\n\r\n", Status::Done, kAll, 5},
      {"AcceptsQuotedExtensionValue", "5;a=\"b c\"\r\nhello\r\n0\r\n\r\n", Status::Done, kAll, 5},
      {"AcceptsDataContainingCrlf", "4\r\n\r\n\r\n\r\n0\r\n\r\n", Status::Done, kAll, 4},
      {"AcceptsTrailerFields", "0\r\nX-Checksum: abc\r\nY:\r\n\r\n", Status::Done, kAll, 0},
      {"StopsAtEndOfBodyBeforeNextMessage", "0\r\n\r\nGET / HTTP/1.1\r\n", Status::Done, 5, 0},
      {"AcceptsSizeLineAtLimit", sizeLine(kLine) + "\r\nx\r\n0\r\n\r\n", Status::Done, kAll, 1},
      {"AcceptsTrailerLineAtLimit", "0\r\n" + trailerLine(kLine) + "\r\n", Status::Done, kAll, 0},
      {"AcceptsTrailerSectionAtLimit", "0\r\n" + trailerSection(kTrailer), Status::Done, kAll, 0},
      {"AcceptsLargestChunkSize", "7fffffffffffffff\r\nabc", Status::NeedMore, kAll, 3},

      {"ReadsDigitNineInSize", "9\r\n123456789\r\n0\r\n\r\n", Status::Done, kAll, 9},
      {"ReadsHexDigitFInEitherCase",
       "F\r\n" + std::string(15, 'x') + "\r\nf\r\n" + std::string(15, 'y') + "\r\n0\r\n\r\n",
       Status::Done, kAll, 30},
      {"CountsEachSizeLineOnItsOwn", repeat(sizeLine(3000) + "\r\nx\r\n", 3) + "0\r\n\r\n",
       Status::Done, kAll, 3},
      {"CountsEachTrailerLineOnItsOwn", "0\r\n" + trailerLine(3000) + trailerLine(3000) + "\r\n",
       Status::Done, kAll, 0},
      {"AcceptsTrailerNameAtLineLimit", "0\r\n" + std::string(kLine - 1, 'N') + ":\r\n\r\n",
       Status::Done, kAll, 0},

      {"NeedsMoreOnEmptyInput", "", Status::NeedMore, kAll, 0},
      {"NeedsMoreInsideSize", "1f", Status::NeedMore, kAll, 0},
      {"NeedsMoreInsideData", "5\r\nhel", Status::NeedMore, kAll, 3},
      {"NeedsMoreBeforeFinalCrlf", "0\r\n", Status::NeedMore, kAll, 0},
      {"NeedsMoreInsideTrailer", "0\r\nX: 1", Status::NeedMore, kAll, 0},

      {"RejectsBareLfAfterSize", "5\nhello\r\n0\r\n\r\n", Status::Error, 1, 0,
       "bare LF in chunk size line"},
      {"RejectsBareCrAfterSize", "5\rhello\r\n", Status::Error, 2, 0, "bare CR in chunk size line"},
      {"RejectsBareLfAfterData", "5\r\nhello\n0\r\n\r\n", Status::Error, 8, 5,
       "missing CRLF after chunk data"},
      {"RejectsDataLongerThanSize", "5\r\nhello!\r\n0\r\n\r\n", Status::Error, 8, 5,
       "missing CRLF after chunk data"},
      {"RejectsCrWithoutLfAfterData", "5\r\nhello\rX", Status::Error, 9, 5,
       "bare CR after chunk data"},
      {"RejectsNonHexSize", "g\r\n", Status::Error, 0, 0, "invalid chunk size"},
      {"RejectsEmptySize", "\r\n", Status::Error, 0, 0, "invalid chunk size"},
      {"RejectsSignedSize", "+5\r\nhello\r\n", Status::Error, 0, 0, "invalid chunk size"},
      {"RejectsHexPrefixInSize", "0x5\r\nhello\r\n", Status::Error, 1, 0, "invalid chunk size"},
      {"RejectsSizeOverInt64", "8000000000000000\r\n", Status::Error, 15, 0,
       "chunk size too large"},
      {"RejectsSizeFarOverUint64", "fffffffffffffffffff\r\n", Status::Error, 15, 0,
       "chunk size too large"},
      {"RejectsWhitespaceBeforeCrlf", "5 \r\nhello\r\n0\r\n\r\n", Status::Error, 2, 0,
       "invalid chunk extension"},
      {"RejectsGarbageAfterSize", "5x\r\n", Status::Error, 1, 0, "invalid chunk size"},
      {"RejectsControlCharInExtension", "5;a\x01\r\nhello\r\n", Status::Error, 3, 0,
       "control character in chunk extension"},
      {"RejectsBareLfInExtension", "5;a\nhello\r\n", Status::Error, 3, 0,
       "bare LF in chunk size line"},
      {"RejectsSizeLineOverLimit", sizeLine(kLine + 1) + "\r\nx\r\n0\r\n\r\n", Status::Error, kLine,
       0, "chunk size line too long"},
      {"RejectsExtensionWithoutSize", ";a\r\n", Status::Error, 0, 0, "invalid chunk size"},
      {"RejectsWhitespaceBeforeSize", " 5\r\nhello\r\n", Status::Error, 0, 0, "invalid chunk size"},
      {"RejectsEmptySizeAfterAChunk", "5\r\nhello\r\n\r\n", Status::Error, 10, 5,
       "invalid chunk size"},
      {"RejectsObsFoldInTrailer", "0\r\nX: a\r\n b\r\n\r\n", Status::Error, 9, 0,
       "obs-fold in trailer"},
      {"RejectsTrailerWithoutColon", "0\r\nX\r\n\r\n", Status::Error, 4, 0,
       "invalid trailer field name"},
      {"RejectsSpaceBeforeColonInTrailer", "0\r\nX : a\r\n\r\n", Status::Error, 4, 0,
       "invalid trailer field name"},
      {"RejectsBareLfInTrailer", "0\r\nX: a\n\r\n", Status::Error, 7, 0, "bare LF in trailer"},
      {"RejectsNulInTrailer", std::string("0\r\nX: \0\r\n\r\n", 11), Status::Error, 6, 0,
       "control character in trailer"},
      {"RejectsBareLfAtEnd", "0\r\n\n", Status::Error, 3, 0, "invalid trailer field name"},
      {"RejectsBareCrAtEnd", "0\r\n\rX", Status::Error, 4, 0, "bare CR after trailers"},
      {"RejectsTrailerLineOverLimit", "0\r\n" + trailerLine(kLine + 1) + "\r\n", Status::Error,
       3 + kLine, 0, "trailer line too long"},
      {"RejectsTrailerSectionOverLimit", "0\r\n" + trailerSection(kTrailer + 1), Status::Error,
       3 + kTrailer, 0, "trailer section too large"},
      {"RejectsBareCrInTrailer", "0\r\nX: a\rb\r\n\r\n", Status::Error, 8, 0, "bare CR in trailer"},
      {"RejectsTrailerNameOverLineLimit", "0\r\n" + std::string(kLine, 'N') + ":v\r\n\r\n",
       Status::Error, 3 + kLine, 0, "trailer line too long"},
      {"RejectsTrailersCrossingTheLimitAtANamesFirstByte", crossingAt("AB:v\r\n\r\n", 0),
       Status::Error, kOver, 0, kTooLarge},
      {"RejectsTrailersCrossingTheLimitAtANamesSecondByte", crossingAt("AB:v\r\n\r\n", 1),
       Status::Error, kOver, 0, kTooLarge},
      {"RejectsTrailersCrossingTheLimitInsideAName", crossingAt("ABC:v\r\n\r\n", 2), Status::Error,
       kOver, 0, kTooLarge},
      {"RejectsTrailersCrossingTheLimitInsideAValue", crossingAt("A:vv\r\n\r\n", 3), Status::Error,
       kOver, 0, kTooLarge},
      {"RejectsTrailersCrossingTheLimitAtALinesCr", crossingAt("A:v\r\n\r\n", 3), Status::Error,
       kOver, 0, kTooLarge},
      {"RejectsTrailersCrossingTheLimitAtALinesLf", crossingAt("A:v\r\n\r\n", 4), Status::Error,
       kOver, 0, kTooLarge},
      {"RejectsTrailersCrossingTheLimitAtTheFinalCr", crossingAt("A:v\r\n\r\n", 5), Status::Error,
       kOver, 0, kTooLarge},
      {"RejectsTrailersCrossingTheLimitAtTheFinalLf", crossingAt("A:v\r\n\r\n", 6), Status::Error,
       kOver, 0, kTooLarge},
  };
}

struct Outcome {
  Status status = Status::NeedMore;
  std::size_t consumed = 0;  // total over all feeds
  uint64_t payload = 0;
  std::string_view reason{};
};

// Feeds `input` in pieces cut at `cuts` (sorted offsets), stopping at Done or Error.
Outcome feedInPieces(std::string_view input, const std::vector<std::size_t>& cuts) {
  ChunkedDecoder d;
  Outcome o;
  std::size_t from = 0;
  std::vector<std::size_t> ends = cuts;
  ends.push_back(input.size());
  for (std::size_t to : ends) {
    const ChunkedDecoder::Result r = d.feed(input.substr(from, to - from));
    o.status = r.status;
    o.consumed += r.consumed;
    o.reason = r.errorReason;
    if (r.status != Status::NeedMore) break;
    EXPECT_EQ(r.consumed, to - from);
    from = to;
  }
  o.payload = d.payloadBytes();
  return o;
}

class ChunkedDecoderTest : public testing::TestWithParam<Case> {
protected:
  void expectOutcome(const Outcome& o, const std::string& how) {
    const Case& c = GetParam();
    EXPECT_EQ(o.status, c.status) << how;
    EXPECT_EQ(o.consumed, c.consumed == kAll ? c.input.size() : c.consumed) << how;
    EXPECT_EQ(o.payload, c.payload) << how;
    EXPECT_EQ(o.reason, c.reason) << how;
  }
};

TEST_P(ChunkedDecoderTest, DecodesInputFedWhole) {
  expectOutcome(feedInPieces(GetParam().input, {}), "whole");
}

TEST_P(ChunkedDecoderTest, DecodesInputFedByteByByte) {
  const std::string& input = GetParam().input;
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < input.size(); ++i) cuts.push_back(i);
  expectOutcome(feedInPieces(input, cuts), "byte by byte");
}

TEST_P(ChunkedDecoderTest, DecodesInputFedInRandomSplits) {
  const std::string& input = GetParam().input;
  std::mt19937 rng(12345);  // fixed seed: a failure reproduces
  for (int round = 0; round < 50; ++round) {
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < input.size(); ++i) {
      if (rng() % 4 == 0) cuts.push_back(i);
    }
    expectOutcome(feedInPieces(input, cuts), "round " + std::to_string(round));
  }
}

INSTANTIATE_TEST_SUITE_P(Table, ChunkedDecoderTest, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(ChunkedDecoder, StaysDoneAndConsumesNothingMore) {
  ChunkedDecoder d;
  ASSERT_EQ(d.feed("0\r\n\r\n").status, Status::Done);
  const ChunkedDecoder::Result again = d.feed("5\r\nhello\r\n");
  EXPECT_EQ(again.status, Status::Done);
  EXPECT_EQ(again.consumed, 0u);
}

TEST(ChunkedDecoder, StaysFailedWithTheSameReason) {
  ChunkedDecoder d;
  const ChunkedDecoder::Result first = d.feed("z");
  ASSERT_EQ(first.status, Status::Error);
  const ChunkedDecoder::Result again = d.feed("0\r\n\r\n");
  EXPECT_EQ(again.status, Status::Error);
  EXPECT_EQ(again.consumed, 0u);
  EXPECT_EQ(again.errorReason, first.errorReason);
  EXPECT_FALSE(first.errorReason.empty());
}

TEST(ChunkedDecoder, CountsPayloadOfLargeChunksAcrossFeeds) {
  ChunkedDecoder d;
  ASSERT_EQ(d.feed("100000\r\n").status, Status::NeedMore);  // 1 MiB chunk
  const std::string piece(64 * 1024, 'x');
  for (int i = 0; i < 16; ++i) ASSERT_EQ(d.feed(piece).status, Status::NeedMore);
  EXPECT_EQ(d.payloadBytes(), 1024u * 1024u);
  const ChunkedDecoder::Result end = d.feed("\r\n0\r\n\r\nnext");
  EXPECT_EQ(end.status, Status::Done);
  EXPECT_EQ(end.consumed, 7u);
}

}  // namespace
}  // namespace wsgate::http
