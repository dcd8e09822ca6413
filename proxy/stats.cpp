#include "proxy/stats.h"

namespace wsgate::proxy {

std::size_t closeCodeSlot(uint16_t code) noexcept {
  for (std::size_t i = 0; i < std::size(kCountedCloseCodes); ++i) {
    if (kCountedCloseCodes[i] == code) return i;
  }
  return std::size(kCountedCloseCodes);
}

CloseSide closeSideOf(std::string_view closeBy) noexcept {
  if (closeBy == "client") return CloseSide::Client;
  if (closeBy == "backend") return CloseSide::Backend;
  if (closeBy == "wsgate") return CloseSide::Wsgate;
  return CloseSide::None;
}

}  // namespace wsgate::proxy
