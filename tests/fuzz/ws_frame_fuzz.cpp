// libFuzzer: parseFrameHeader on arbitrary bytes; a complete header re-encodes to the same
// fields (RFC 6455 5.2).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/ws/frame.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace wsgate::ws;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  FrameHeader h;
  const HeaderStatus status = parseFrameHeader(in, h);
  if (status != HeaderStatus::Complete) return 0;
  check(h.headerBytes >= 2 && h.headerBytes <= 14 && h.headerBytes <= size);
  check(h.rsv <= 7 && h.opcode <= 15);
  check((h.payloadLength >> 63) == 0);

  std::string encoded;
  appendFrameHeader(encoded, h.fin, static_cast<Opcode>(h.opcode), h.payloadLength,
                    h.masked ? h.mask.data() : nullptr);
  // appendFrameHeader has no RSV parameter (extensions set them on the wire themselves).
  encoded[0] = static_cast<char>(encoded[0] | (h.rsv << 4));

  FrameHeader again;
  check(parseFrameHeader(encoded, again) == HeaderStatus::Complete);
  check(again.fin == h.fin && again.rsv == h.rsv && again.opcode == h.opcode);
  check(again.masked == h.masked && again.payloadLength == h.payloadLength);
  check(!h.masked || again.mask == h.mask);
  check(again.headerBytes == encoded.size());
  // The encoder is minimal, so it is never longer than what was parsed; equal when the
  // input was minimal too.
  check(again.headerBytes <= h.headerBytes);

  // Every cut of the re-encoded header is Incomplete, never Error or a wrong Complete.
  for (std::size_t cut = 0; cut < encoded.size(); ++cut) {
    FrameHeader part;
    check(parseFrameHeader(std::string_view(encoded).substr(0, cut), part) ==
          HeaderStatus::Incomplete);
  }

  // Unmasking what follows, in two pieces, equals unmasking it whole.
  if (h.masked) {
    std::string payload(in.substr(h.headerBytes));
    std::string whole = payload;
    applyMask(whole.data(), whole.size(), h.mask);
    const std::size_t split = payload.empty() ? 0 : data[0] % (payload.size() + 1);
    const std::size_t next = applyMask(payload.data(), split, h.mask);
    applyMask(payload.data() + split, payload.size() - split, h.mask, next);
    check(payload == whole);
  }
  return 0;
}
