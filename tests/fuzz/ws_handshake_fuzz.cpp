// libFuzzer: isValidKey and computeAccept on arbitrary strings never crash, and agree with
// their contracts (RFC 6455 4.1, 4.2.2).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/ws/handshake.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  using namespace wsgate::ws;
  const std::string_view key(reinterpret_cast<const char*>(data), size);
  const bool valid = isValidKey(key);
  if (valid && (key.size() != 24 || key.substr(22) != "==")) std::abort();
  const std::string accept = computeAccept(key);
  // base64 of a 20-byte SHA-1: 28 characters ending in one '='.
  if (accept.size() != 28 || accept.back() != '=') std::abort();
  return 0;
}
