// The relay's per-frame work on the client side (RFC 6455 5.2, 5.3, 8.1): parse a masked
// frame header, check it, unmask the payload; and validate a text payload as UTF-8.
// Reported per frame (items/s) and per byte (bytes/s, counting header and payload).

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/ws/frame.h"
#include "proxy/ws/frame_checker.h"
#include "proxy/ws/utf8.h"

namespace {

using namespace wsgate::ws;

constexpr uint8_t kKey[4] = {0x37, 0xfa, 0x21, 0x3d};
// Streams of about 256 KiB: larger than L1/L2 for the big frames, as a busy relay sees them.
constexpr std::size_t kKiB = 1024;
constexpr std::size_t kStreamBytes = 256 * kKiB;

// Back-to-back masked client binary frames of `payload` bytes each.
std::string clientStream(std::size_t payload, std::size_t& frames) {
  frames = kStreamBytes / payload;
  if (frames == 0) frames = 1;
  std::string stream;
  for (std::size_t i = 0; i < frames; ++i) {
    appendFrameHeader(stream, /*fin=*/true, Opcode::Binary, payload, kKey);
    for (std::size_t j = 0; j < payload; ++j) stream.push_back(static_cast<char>(j * 31 + i));
  }
  return stream;
}

// parseFrameHeader + FrameChecker::onHeader + applyMask over each payload, in place (the
// XOR toggles between runs, which costs the same either way).
void BM_ParseCheckUnmask(benchmark::State& state) {
  const auto payload = static_cast<std::size_t>(state.range(0));
  std::size_t frames = 0;
  std::string stream = clientStream(payload, frames);
  FrameChecker checker(DirectionRules{.fromClient = true});
  for (auto _ : state) {
    std::size_t pos = 0;
    while (pos < stream.size()) {
      FrameHeader h;
      if (parseFrameHeader(std::string_view(stream).substr(pos), h) != HeaderStatus::Complete ||
          checker.onHeader(h)) {
        state.SkipWithError("frame rejected");
        return;
      }
      pos += h.headerBytes;
      applyMask(stream.data() + pos, h.payloadLength, h.mask);
      pos += h.payloadLength;
    }
    benchmark::DoNotOptimize(stream.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * frames));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
}
BENCHMARK(BM_ParseCheckUnmask)->Arg(64)->Arg(int64_t{16} * 1024);

// The header work alone, without touching the payload.
void BM_ParseCheck(benchmark::State& state) {
  const auto payload = static_cast<std::size_t>(state.range(0));
  std::size_t frames = 0;
  const std::string stream = clientStream(payload, frames);
  FrameChecker checker(DirectionRules{.fromClient = true});
  for (auto _ : state) {
    std::size_t pos = 0;
    while (pos < stream.size()) {
      FrameHeader h;
      if (parseFrameHeader(std::string_view(stream).substr(pos), h) != HeaderStatus::Complete ||
          checker.onHeader(h)) {
        state.SkipWithError("frame rejected");
        return;
      }
      pos += h.headerBytes + h.payloadLength;
    }
    benchmark::DoNotOptimize(pos);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * frames));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
}
BENCHMARK(BM_ParseCheck)->Arg(64)->Arg(int64_t{16} * 1024);

enum Text : int64_t { kAscii, kMixed, kCjk };

// 16 KiB of text: plain ASCII (the fast path), Latin/Greek with some 2-byte characters,
// or CJK (all 3-byte, no ASCII run to skip).
std::string text16k(Text kind) {
  const std::string_view unit = kind == kAscii   ? std::string_view("The quick brown fox. ")
                                : kind == kMixed ? std::string_view("Grüße, κόσμε! café ")
                                                 : std::string_view("\xe6\x97\xa5\xe6\x9c\xac");
  std::string s;
  while (s.size() + unit.size() <= 16 * kKiB) s.append(unit);
  while (s.size() < 16 * kKiB) s.push_back('.');
  return s;
}

void BM_Utf8Validate16K(benchmark::State& state) {
  const std::string text = text16k(static_cast<Text>(state.range(0)));
  if (!isValidUtf8(text)) std::abort();
  for (auto _ : state) {
    Utf8Validator v;
    bool ok = v.feed(text) && v.complete();
    benchmark::DoNotOptimize(ok);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_Utf8Validate16K)->ArgName("ascii0_mixed1_cjk2")->Arg(kAscii)->Arg(kMixed)->Arg(kCjk);

}  // namespace

BENCHMARK_MAIN();
