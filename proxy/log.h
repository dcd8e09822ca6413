#pragma once
// Logging: the error log (stderr, levels) and the access log (one line per HTTP request
// or WebSocket session, JSON or text, to stdout|stderr|off|PATH). Both are spdlog loggers.

#include <spdlog/spdlog.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "conf/config.h"

namespace wsgate::proxy {

// What a WebSocket session adds to its access line.
struct TunnelStats {
  uint64_t framesFromClient = 0, framesToClient = 0;
  uint64_t messagesFromClient = 0, messagesToClient = 0;
  uint16_t closeCode = 0;    // first close code seen or sent; 1006 when a side vanished
  std::string_view closeBy;  // "client" | "backend" | "wsgate"
};

// What one access-log line says.
struct AccessRecord {
  uint64_t session = 0;
  std::string_view client;    // ip:port
  std::string_view kind;      // "http" | "websocket"
  std::string_view listener;  // the listener's name
  int route = -1;             // the matched route's index in `routes:`; -1: none matched
  std::string_view method;
  std::string_view path;
  std::string_view host;
  int status = 0;            // sent to the client; 0 = nothing was sent
  std::string_view pool;     // the pool the request was routed to, empty when none
  std::string_view backend;  // "pool/name", empty when none was used
  std::string_view reason;   // why it ended or was refused ("ok" when nothing went wrong)
  double durationMs = 0;     // first byte of the request (or the accept) -> this line
  double connectMs = -1;     // backend connect, TLS included; -1: none (or a kept-alive one)
  double responseMs = -1;    // request head sent -> response head received; -1: none came
  uint64_t bytesFromClient = 0;
  uint64_t bytesToClient = 0;
  const TunnelStats* tunnel = nullptr;  // WebSocket sessions only
};

// Sets up both loggers; safe to call again on reload. Returns false with `error` set when
// the access log file cannot be opened.
bool initLogging(const conf::LogConfig& cfg, std::string& error);

// The error log ("wsgate").
spdlog::logger& log();

// Writes one access line (no-op when access is off).
void writeAccess(const AccessRecord& r);

}  // namespace wsgate::proxy
