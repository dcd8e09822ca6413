// Response-head parser under libFuzzer: no crash, every rejection a 502, framing consistent
// with RFC 9112 6.3, and a forwarded head that parses back to the same framing.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/http/forward.h"
#include "proxy/http/response_parser.h"

namespace {

using namespace wsgate::http;

void check(bool ok) {
  if (!ok) std::abort();
}

void fuzzWith(std::string_view buf, const ParseLimits& limits, const ResponseContext& ctx) {
  static ResponseHead head;
  const ParseResult r = parseResponseHead(buf, limits, ctx, head);
  if (r.status == ParseStatus::Incomplete) {
    check(buf.size() <= limits.maxHeaderBytes);
    return;
  }
  if (r.status == ParseStatus::Error) {
    check(r.errorStatus == 502 && !r.errorReason.empty());
    return;
  }
  check(r.headBytes <= buf.size() && r.headBytes <= limits.maxHeaderBytes);
  check(head.status >= 100 && head.status <= 599);
  check(head.headers.size() <= limits.maxHeaders);
  const bool noBody =
      ctx.requestWasHead || head.status < 200 || head.status == 204 || head.status == 304;
  if (noBody) check(head.body == BodyKind::None);
  if (head.body == BodyKind::UntilClose) check(!head.keepAlive);
  if (head.body == BodyKind::ContentLength) check(head.contentLength > 0);

  ResponseHead alone;
  const ParseResult exact = parseResponseHead(buf.substr(0, r.headBytes), limits, ctx, alone);
  check(exact.status == ParseStatus::Complete && exact.headBytes == r.headBytes);

  for (bool keepAlive : {true, false}) {
    std::string out;
    appendForwardedResponse(head, keepAlive, "X-Fuzz: 1\r\n", out);
    ResponseHead again;
    const ParseLimits roomy{1 << 24, 1 << 16, 1 << 24};
    const ParseResult fwd = parseResponseHead(out, roomy, ctx, again);
    check(fwd.status == ParseStatus::Complete && fwd.headBytes == out.size());
    check(again.status == head.status && again.body == head.body);
    if (head.status >= 200 && head.status != 204) {
      check(again.contentLength == head.contentLength);
    }
    if (head.status >= 200 && (!keepAlive || head.body == BodyKind::UntilClose)) {
      check(!again.keepAlive);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view buf(reinterpret_cast<const char*>(data), size);
  fuzzWith(buf, ParseLimits{}, ResponseContext{false});
  fuzzWith(buf, ParseLimits{}, ResponseContext{true});
  fuzzWith(buf, ParseLimits{.maxHeaderBytes = 80, .maxHeaders = 2}, ResponseContext{false});
  return 0;
}
