// Request-head parser under libFuzzer: no crash, limits honoured, a Complete verdict that does
// not depend on what follows the head, and a forwarded head that wsgate's own parser accepts
// with the same framing.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/http/forward.h"
#include "proxy/http/request_parser.h"

namespace {

using namespace wsgate::http;

void check(bool ok) {
  if (!ok) std::abort();
}

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

void fuzzWith(std::string_view buf, const ParseLimits& limits) {
  static RequestHead head;  // reused across inputs, as a session reuses it across requests
  const ParseResult r = parseRequestHead(buf, limits, head);
  switch (r.status) {
    case ParseStatus::Incomplete:
      check(buf.size() <= limits.maxHeaderBytes);
      return;
    case ParseStatus::Error:
      check(r.errorStatus == 400 || r.errorStatus == 414 || r.errorStatus == 431 ||
            r.errorStatus == 501 || r.errorStatus == 505);
      check(!r.errorReason.empty());
      return;
    case ParseStatus::Complete:
      break;
  }
  check(r.headBytes <= buf.size() && r.headBytes <= limits.maxHeaderBytes);
  check(head.headers.size() <= limits.maxHeaders);
  check(head.target.size() <= limits.maxUriBytes);
  check(inside(head.method, buf) && inside(head.target, buf) && inside(head.query, buf));
  for (const Header& h : head.headers) check(inside(h.name, buf) && inside(h.value, buf));
  if (head.body == BodyKind::ContentLength) check(head.contentLength > 0);

  // The same head alone gives the same verdict; one byte less is still waiting.
  RequestHead alone;
  const ParseResult exact = parseRequestHead(buf.substr(0, r.headBytes), limits, alone);
  check(exact.status == ParseStatus::Complete && exact.headBytes == r.headBytes);
  check(parseRequestHead(buf.substr(0, r.headBytes - 1), limits, alone).status ==
        ParseStatus::Incomplete);

  std::string out;
  appendForwardedRequest(head, ForwardInfo{"192.0.2.1", "https", head.upgradeWebsocket}, out);
  RequestHead again;
  const ParseLimits roomy{1 << 24, 1 << 16, 1 << 24};
  const ParseResult fwd = parseRequestHead(out, roomy, again);
  check(fwd.status == ParseStatus::Complete && fwd.headBytes == out.size());
  check(again.method == head.method);
  check(again.body == head.body && again.contentLength == head.contentLength);
  check(again.host == head.host);
  check(again.upgradeWebsocket == head.upgradeWebsocket);
  check(again.version == head.version);  // HTTP/1.0 is forwarded as 1.0
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view buf(reinterpret_cast<const char*>(data), size);
  fuzzWith(buf, ParseLimits{});
  fuzzWith(buf, ParseLimits{.maxHeaderBytes = 96, .maxHeaders = 3, .maxUriBytes = 16});
  return 0;
}
