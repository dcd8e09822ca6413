// Chunked decoder under libFuzzer, against an independent reference decoder written from
// RFC 9112 7.1 and wsgate's documented strictness (model/chunked_model.h): the verdict
// (NeedMore / Done / Error), where the body ends or which byte is wrong, and the decoded
// chunk data must agree, and none of it may depend on how the bytes arrive (whole, split
// at a chosen point, byte by byte, in random pieces).
//
// Input: two bytes seed the split point and the random pieces; the rest is the body.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "model/chunked_model.h"
#include "model/rng.h"
#include "proxy/http/chunked.h"

namespace {

using wsgate::fuzz::model::ChunkedAnswer;
using wsgate::fuzz::model::ChunkedModel;
using wsgate::http::ChunkedDecoder;

void check(bool ok) {
  if (!ok) std::abort();
}

struct Outcome {
  ChunkedDecoder::Status status = ChunkedDecoder::Status::NeedMore;
  std::size_t consumed = 0;  // over all feeds
  uint64_t payload = 0;
  std::string_view reason;
  std::string decoded;  // filled only when fed byte by byte
};

// Feeds `parts` in order, stopping at the first Done or Error.
Outcome run(const std::vector<std::string_view>& parts) {
  ChunkedDecoder d;
  Outcome o;
  for (std::string_view part : parts) {
    const ChunkedDecoder::Result r = d.feed(part);
    o.status = r.status;
    o.consumed += r.consumed;
    o.reason = r.errorReason;
    check(r.consumed <= part.size());
    if (r.status != ChunkedDecoder::Status::NeedMore) {
      // Final: a later feed consumes nothing and repeats the verdict.
      const ChunkedDecoder::Result again = d.feed(part);
      check(again.status == r.status && again.consumed == 0);
      break;
    }
    check(r.consumed == part.size());
  }
  o.payload = d.payloadBytes();
  return o;
}

// Byte by byte: a byte is chunk data exactly when feeding it moves payloadBytes() by one,
// which recovers the decoder's decoded bytes without it ever copying them.
Outcome runBytes(std::string_view body) {
  ChunkedDecoder d;
  Outcome o;
  for (std::size_t i = 0; i < body.size(); ++i) {
    const uint64_t before = d.payloadBytes();
    const ChunkedDecoder::Result r = d.feed(body.substr(i, 1));
    check(d.payloadBytes() - before <= 1);
    if (d.payloadBytes() != before) o.decoded.push_back(body[i]);
    o.status = r.status;
    o.consumed += r.consumed;
    o.reason = r.errorReason;
    if (r.status != ChunkedDecoder::Status::NeedMore) break;
  }
  o.payload = d.payloadBytes();
  return o;
}

bool same(const Outcome& a, const Outcome& b) {
  return a.status == b.status && a.consumed == b.consumed && a.payload == b.payload &&
         a.reason == b.reason;
}

// The product's outcome against the model's answer.
void agree(const Outcome& o, const ChunkedAnswer& want) {
  switch (want.kind) {
    case ChunkedAnswer::Kind::NeedMore:
      check(o.status == ChunkedDecoder::Status::NeedMore);
      break;
    case ChunkedAnswer::Kind::Done:
      check(o.status == ChunkedDecoder::Status::Done);
      break;
    case ChunkedAnswer::Kind::Error:
      check(o.status == ChunkedDecoder::Status::Error);
      check(!o.reason.empty());
      break;
  }
  check(o.consumed == want.at);
  check(o.payload == want.payload.size());
}

using wsgate::fuzz::Rng;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const std::size_t choice = data[0] | (static_cast<std::size_t>(data[1]) << 8);
  const std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);
  const ChunkedAnswer want = ChunkedModel::decode(body);

  const Outcome whole = run({body});
  agree(whole, want);

  const std::size_t split = body.empty() ? 0 : choice % (body.size() + 1);
  check(same(whole, run({body.substr(0, split), body.substr(split)})));

  Rng rng{choice};
  std::vector<std::string_view> pieces;
  for (std::size_t i = 0; i < body.size();) {
    // Mostly short pieces, so line and CRLF boundaries fall inside and between them.
    const std::size_t n =
        1 + static_cast<std::size_t>(rng.next() % (rng.next() % 4 == 0 ? 512 : 8));
    pieces.push_back(body.substr(i, n));
    i += pieces.back().size();
  }
  check(same(whole, run(pieces)));

  if (body.size() <= 64 * 1024) {
    const Outcome bytes = runBytes(body);
    check(same(whole, bytes));
    check(bytes.decoded == want.payload);
  }
  return 0;
}
