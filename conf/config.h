#pragma once
// The configuration as plain structs, with every default in one place. Produced by
// conf::load() from YAML; consumed by proxy/ to build a runtime snapshot.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsgate::conf {

using Duration = std::chrono::milliseconds;

// Where a value came from, for messages about it after loading (e.g. a listen address
// that cannot be bound): FILE:LINE:COL, 1-based.
struct Mark {
  std::string file;
  int line = 0;
  int column = 0;
  std::string str() const;  // "FILE:LINE:COL"
};

// host:port or [v6]:port. `host` is kept without brackets.
struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string str() const;  // back to host:port / [v6]:port
};

enum class LogLevel { Trace, Debug, Info, Warn, Error, Off };
enum class LogFormat { Json, Text };

struct LogConfig {
  LogLevel level = LogLevel::Info;
  std::string access = "stdout";  // stdout | stderr | off | PATH
  LogFormat format = LogFormat::Json;
};

struct ListenerConfig {
  std::string name;
  HostPort listen;
  Mark mark;  // of the listen value
};

struct HeaderMatch {
  std::string name;   // lower-cased
  std::string value;  // exact, case-sensitive
};

struct RouteMatch {
  std::optional<std::string> host;  // lower-cased, compared without the port
  std::string pathPrefix = "/";
  std::vector<HeaderMatch> headers;
};

struct Respond {
  int status = 200;
  std::string body;
};

struct RouteConfig {
  RouteMatch match;
  std::string pool;  // set unless `respond` is
  std::optional<Respond> respond;
  Mark mark;  // of the route entry
};

enum class Policy { RoundRobin, LeastConn, RandomTwo, Hash };

struct BackendConfig {
  std::string name;
  HostPort address;
  uint32_t weight = 1;
  uint32_t maxConnections = 0;  // 0 = unlimited
  Mark mark;                    // of the address value, for errors found later (resolving)
};

struct PoolConfig {
  std::string name;
  Policy policy = Policy::RoundRobin;
  std::vector<BackendConfig> backends;
  Duration connectTimeout{2000};
  uint32_t retries = 2;
  Mark mark;  // of the pool's name
};

struct Timeouts {
  Duration handshake{10'000};
  Duration backendResponse{10'000};
  Duration idle{60'000};
  Duration pingInterval{0};
  Duration httpKeepalive{60'000};
  Duration drain{30'000};
  Duration drainSpread{10'000};
  Duration close{2'000};  // wsgate sent a Close -> longest wait for the echo, then TCP close
};

struct WebSocketConfig {
  bool validateUtf8 = false;  // unmask and check text messages; invalid -> close 1007
};

struct Limits {
  uint64_t maxConnections = 100'000;
  uint64_t maxHeaderBytes = 16 * 1024;
  uint64_t maxHeaders = 100;
  uint64_t maxUriBytes = 8 * 1024;
  uint64_t maxMessageBytes = 16 * 1024 * 1024;
  uint64_t maxBufferBytes = 256 * 1024;
};

struct Config {
  std::string file;  // the file it was loaded from
  int workers = 0;   // 0 = auto (one per core)
  bool watch = false;
  LogConfig log;
  std::vector<ListenerConfig> listeners;
  std::vector<RouteConfig> routes;
  std::vector<PoolConfig> pools;  // in file order
  Timeouts timeouts;
  Limits limits;
  WebSocketConfig websocket;

  const PoolConfig* findPool(std::string_view name) const;
};

}  // namespace wsgate::conf
