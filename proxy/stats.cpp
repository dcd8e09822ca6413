#include "proxy/stats.h"

namespace wsgate::proxy {

std::size_t closeCodeSlot(uint16_t code) noexcept {
  for (std::size_t i = 0; i < std::size(kCountedCloseCodes); ++i) {
    if (kCountedCloseCodes[i] == code) return i;
  }
  return std::size(kCountedCloseCodes);
}

TlsFailure tlsFailureOf(std::string_view error, bool timedOut) noexcept {
  if (error.empty()) return timedOut ? TlsFailure::Timeout : TlsFailure::Closed;
  auto has = [&](std::string_view s) { return error.find(s) != std::string_view::npos; };
  if (has("http request")) return TlsFailure::PlainHttp;  // plain HTTP sent to a TLS port
  if (has("unrecognized name")) return TlsFailure::Sni;
  if (has("certificate") || has("unknown ca") || has("unknown_ca")) return TlsFailure::Certificate;
  if (has("protocol") || has("version") || has("cipher") || has("no shared") || has("signature") ||
      has("group")) {
    return TlsFailure::Protocol;
  }
  return TlsFailure::Other;
}

CloseSide closeSideOf(std::string_view closeBy) noexcept {
  if (closeBy == "client") return CloseSide::Client;
  if (closeBy == "backend") return CloseSide::Backend;
  if (closeBy == "wsgate") return CloseSide::Wsgate;
  return CloseSide::None;
}

}  // namespace wsgate::proxy
