// conf::loadString on arbitrary bytes: it must never crash, throw or hang, and its result
// must be consistent (a config exactly when there are no errors, every error printable).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "conf/loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const wsgate::conf::LoadResult result = wsgate::conf::loadString(text, "fuzz.yaml");
  if (result.ok() != result.config.has_value()) std::abort();
  for (const auto& error : result.errors) {
    if (error.message.empty() || error.str().empty()) std::abort();
  }
  if (result.config) {
    // What the proxy relies on once a config is accepted.
    const auto& config = *result.config;
    if (config.listeners.empty() || config.routes.empty()) std::abort();
    for (const auto& route : config.routes) {
      if (route.respond.has_value() == !route.pool.empty()) std::abort();
      if (!route.respond && config.findPool(route.pool) == nullptr) std::abort();
      if (route.match.pathPrefix.empty() || route.match.pathPrefix[0] != '/') std::abort();
    }
    for (const auto& pool : config.pools) {
      if (pool.backends.empty()) std::abort();
      for (const auto& backend : pool.backends) {
        if (backend.weight == 0 || backend.address.port == 0) std::abort();
      }
    }
  }
  return 0;
}
