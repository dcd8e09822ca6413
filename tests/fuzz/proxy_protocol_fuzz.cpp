// PROXY protocol codec under libFuzzer, against an independent reader written from the spec
// and wsgate's documented choices (model/proxy_protocol_model.h): the verdict on the whole
// input (header length, addresses, LOCAL/UNKNOWN, the kind of rejection) must agree. Then
// properties the model does not spell out: a verdict never depends on bytes after the point
// where it was reached (cuts of the input ask for more, or give the same verdict), a header
// never consumes more than was given, a foreign first byte is refused at once, and the v2
// encoder's output reads back to the addresses it was given.
//
// Input: the bytes a connection would start with.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "model/proxy_protocol_model.h"
#include "proxy/net/proxy_protocol.h"

namespace {

using wsgate::fuzz::model::PpAddress;
using wsgate::fuzz::model::PpKind;
using wsgate::fuzz::model::ProxyProtocolModel;
using namespace wsgate::net;

void check(bool ok) {
  if (!ok) std::abort();
}

bool same(const ProxyAddress& p, const PpAddress& m) {
  return p.v6 == m.v6 && p.port == m.port && std::memcmp(p.ip.data(), m.ip.data(), 16) == 0;
}

bool sameVerdict(const ProxyHeader& a, const ProxyHeader& b) {
  return a.status == b.status && a.error == b.error && a.consumed == b.consumed &&
         a.local == b.local && a.source == b.source && a.destination == b.destination;
}

void againstModel(std::string_view in, const ProxyHeader& r) {
  const auto m = ProxyProtocolModel::read(in);
  switch (m.kind) {
    case PpKind::Undecided:
      // Only v1 tokens cut short may be judged before the model can (by their characters).
      check(r.status == ProxyParse::NeedMore ||
            (r.version == 1 && r.error == ProxyError::Malformed));
      break;
    case PpKind::Done:
      check(r.status == ProxyParse::Done);
      check(r.consumed == m.consumed && r.local == m.local);
      if (!m.local) check(same(r.source, m.source) && same(r.destination, m.destination));
      break;
    case PpKind::NotProxy:
      check(r.error == ProxyError::NotProxy);
      break;
    case PpKind::Malformed:
      check(r.error == ProxyError::Malformed);
      break;
    case PpKind::Oversized:
      check(r.error == ProxyError::Oversized);
      break;
    case PpKind::MalformedOrOversized:
      check(r.error == ProxyError::Malformed || r.error == ProxyError::Oversized);
      break;
  }
  if (r.status == ProxyParse::Error) check(!r.reason.empty());
}

// A verdict reached on the first `cut` bytes is final: more bytes change nothing; fewer
// bytes than the header's ask for more (or fail the same way, earlier).
void cuts(std::string_view in, const ProxyHeader& whole) {
  std::size_t points[40];
  std::size_t n = 0;
  for (std::size_t k = 0; k <= 20 && k < in.size(); ++k) points[n++] = k;
  for (std::size_t k : {whole.consumed, whole.consumed + 1, in.size() / 2}) {
    if (k > 0 && k <= in.size()) points[n++] = k - 1;
  }
  for (std::size_t k : {std::size_t{106}, std::size_t{107}, std::size_t{108}, std::size_t{4095},
                        std::size_t{4096}}) {
    if (k < in.size()) points[n++] = k;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const ProxyHeader part = parseProxyHeader(in.substr(0, points[i]));
    check(part.status != ProxyParse::Done || part.consumed <= points[i]);
    if (part.status == ProxyParse::NeedMore) continue;
    check(sameVerdict(part, whole));
  }
  if (!in.empty() && in[0] != 'P' && in[0] != '\r') {
    check(parseProxyHeader(in.substr(0, 1)).error == ProxyError::NotProxy);
  }
}

// Addresses taken from the input's bytes, encoded and read back.
void roundTrip(std::string_view in) {
  unsigned char raw[38] = {};
  std::memcpy(raw, in.data(), std::min(in.size(), sizeof raw));
  ProxyAddress src, dst;
  src.v6 = raw[0] & 1;
  dst.v6 = raw[0] & 2;
  std::memcpy(src.ip.data(), raw + 2, src.v6 ? 16 : 4);
  std::memcpy(dst.ip.data(), raw + 18, dst.v6 ? 16 : 4);
  src.port = static_cast<uint16_t>(raw[1] << 8 | raw[34]);
  dst.port = static_cast<uint16_t>(raw[35] << 8 | raw[36]);
  const EncodedProxyHeader h = encodeProxyV2(src, dst);
  const ProxyHeader r = parseProxyHeader(h.view());
  check(r.status == ProxyParse::Done && r.consumed == h.size && !r.local && r.version == 2);
  auto mapped = [&](const ProxyAddress& a) {
    if (a.v6 || !(src.v6 || dst.v6)) return a;
    ProxyAddress m;
    m.v6 = true;
    m.ip[10] = m.ip[11] = 0xFF;
    std::memcpy(m.ip.data() + 12, a.ip.data(), 4);
    m.port = a.port;
    return m;
  };
  check(r.source == mapped(src) && r.destination == mapped(dst));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const ProxyHeader r = parseProxyHeader(in);
  check(r.status != ProxyParse::Done || (r.consumed > 0 && r.consumed <= in.size()));
  againstModel(in, r);
  cuts(in, r);
  roundTrip(in);
  return 0;
}
