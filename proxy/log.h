#pragma once
// Logging: the error log (stderr, levels, synchronous) and the access log (one line per HTTP
// request or WebSocket session, JSON or text, to stdout|stderr|off|PATH). Access lines are
// formatted on the worker and handed to one writer thread through a bounded queue, so a slow
// disk or a reader that stops reading never blocks an event loop: a full queue drops lines
// and counts them.

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "conf/config.h"
#include "proxy/access_log_writer.h"

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
  double connectMs = -1;     // backend TCP connect; -1: none (or a kept-alive one)
  double responseMs = -1;    // request head sent -> response head received; -1: none came
  uint64_t bytesFromClient = 0;
  uint64_t bytesToClient = 0;
  const TunnelStats* tunnel = nullptr;  // WebSocket sessions only
};

// Sets up both loggers; safe to call again on reload and on SIGUSR1 (the access log file is
// opened anew: lines queued before the call still go to the file they were meant for).
// Returns false with `error` set, and the access log unchanged, when the file cannot be
// opened.
bool initLogging(const conf::LogConfig& cfg, std::string& error);

// Writes out the access lines still queued (giving up on a reader that takes nothing for a
// couple of seconds) and stops the writer thread. Called once, as the process exits.
void shutdownLogging();

// The error log ("wsgate").
spdlog::logger& log();

// Queues one access line (no-op when access is off). Never blocks.
void writeAccess(const AccessRecord& r);

// Access lines dropped since start because the queue was full (the writer could not keep
// up) or a write failed. Cheap, callable from any thread.
uint64_t accessLogDropped();

// Appends the access line for `r` to `out`, without the newline: the pure core of
// writeAccess. `now` is when the record is written; the line's time is now minus its
// duration, when the request began. Invalid UTF-8 in any field is replaced by U+FFFD.
void appendAccessLine(std::string& out, const AccessRecord& r, conf::LogFormat format,
                      std::chrono::system_clock::time_point now);

}  // namespace wsgate::proxy
