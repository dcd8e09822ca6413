// Chunked decoder under libFuzzer: the answer must not depend on how the bytes arrive. The
// first two bytes choose a split point; the rest is fed whole, in two parts, and byte by byte.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "proxy/http/chunked.h"

namespace {

using wsgate::http::ChunkedDecoder;

void check(bool ok) {
  if (!ok) std::abort();
}

struct Outcome {
  ChunkedDecoder::Status status = ChunkedDecoder::Status::NeedMore;
  std::size_t consumed = 0;  // over all feeds
  uint64_t payload = 0;
  std::string_view reason;
};

// Feeds `parts` in order, stopping at the first Done or Error.
template <class Parts>
Outcome run(const Parts& parts) {
  ChunkedDecoder d;
  Outcome o;
  for (std::string_view part : parts) {
    const ChunkedDecoder::Result r = d.feed(part);
    o.status = r.status;
    o.consumed += r.consumed;
    o.reason = r.errorReason;
    check(r.consumed <= part.size());
    if (r.status != ChunkedDecoder::Status::NeedMore) break;
    check(r.consumed == part.size());
  }
  o.payload = d.payloadBytes();
  return o;
}

bool same(const Outcome& a, const Outcome& b) {
  return a.status == b.status && a.consumed == b.consumed && a.payload == b.payload &&
         a.reason == b.reason;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::size_t choice = data[0] | (static_cast<std::size_t>(data[1]) << 8);
  const std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);
  const std::size_t split = body.empty() ? 0 : choice % (body.size() + 1);

  const std::string_view whole[] = {body};
  const Outcome a = run(whole);
  check(a.consumed <= body.size());
  check(a.payload <= body.size());
  if (a.status == ChunkedDecoder::Status::NeedMore) check(a.consumed == body.size());
  if (a.status == ChunkedDecoder::Status::Error) check(!a.reason.empty());

  const std::string_view halves[] = {body.substr(0, split), body.substr(split)};
  check(same(a, run(halves)));

  if (body.size() <= 4096) {
    ChunkedDecoder d;
    Outcome o;
    for (std::size_t i = 0; i < body.size(); ++i) {
      const ChunkedDecoder::Result r = d.feed(body.substr(i, 1));
      o.status = r.status;
      o.consumed += r.consumed;
      o.reason = r.errorReason;
      if (r.status != ChunkedDecoder::Status::NeedMore) break;
    }
    o.payload = d.payloadBytes();
    check(same(a, o));
  }
  return 0;
}
