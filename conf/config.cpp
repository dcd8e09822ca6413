#include "conf/config.h"

namespace wsgate::conf {

std::string Mark::str() const {
  if (line <= 0) return file;  // about the whole file: no position to point at
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

std::string HostPort::str() const {
  // Only IPv6 literals contain ':'; they need brackets to keep the port readable.
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

const PoolConfig* Config::findPool(std::string_view name) const {
  for (const auto& pool : pools) {
    if (pool.name == name) return &pool;
  }
  return nullptr;
}

}  // namespace wsgate::conf
