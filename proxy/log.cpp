#include "proxy/log.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <system_error>

namespace wsgate::proxy {
namespace {

// ---- the error log ------------------------------------------------------------------------

std::shared_ptr<spdlog::logger> gErrorLog;

spdlog::level::level_enum toSpd(conf::LogLevel l) {
  switch (l) {
    case conf::LogLevel::Trace:
      return spdlog::level::trace;
    case conf::LogLevel::Debug:
      return spdlog::level::debug;
    case conf::LogLevel::Info:
      return spdlog::level::info;
    case conf::LogLevel::Warn:
      return spdlog::level::warn;
    case conf::LogLevel::Error:
      return spdlog::level::err;
    case conf::LogLevel::Off:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger> makeErrorLog() {
  auto l =
      std::make_shared<spdlog::logger>("wsgate", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  l->flush_on(spdlog::level::trace);  // stderr is read by people and tests as it happens
  return l;
}

// ---- access line formatting -----------------------------------------------------------------

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The length (2-4) of the well-formed UTF-8 character starting with the non-ASCII byte s[i],
// or 0 when there is none; then `skip` is the length of its maximal ill-formed prefix, which
// one U+FFFD replaces (Unicode's recommended practice, as WHATWG decoders do).
std::size_t utf8Char(std::string_view s, std::size_t i, std::size_t& skip) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the next byte; narrower after E0 ED F0 F4
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c == 0xE0) {
    need = 2, lo = 0xA0;  // no overlong forms
  } else if (c == 0xED) {
    need = 2, hi = 0x9F;  // no surrogates
  } else if (c >= 0xE1 && c <= 0xEF) {
    need = 2;
  } else if (c == 0xF0) {
    need = 3, lo = 0x90;
  } else if (c == 0xF4) {
    need = 3, hi = 0x8F;  // nothing above U+10FFFF
  } else if (c >= 0xF1 && c <= 0xF3) {
    need = 3;
  } else {
    skip = 1;
    return 0;
  }
  std::size_t k = 1;
  for (; k <= need && i + k < s.size(); ++k) {
    const auto next = static_cast<unsigned char>(s[i + k]);
    if (next < lo || next > hi) break;
    lo = 0x80, hi = 0xBF;
  }
  if (k > need) return need + 1;
  skip = k;
  return 0;
}

// Bytes that go into a JSON string or a bare text field as they are.
bool plain(unsigned char c) { return c >= 0x20 && c < 0x7F && c != '"' && c != '\\'; }

void appendJsonString(std::string& out, std::string_view s) {
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t run = i;
    while (run < s.size() && plain(static_cast<unsigned char>(s[run]))) ++run;
    out.append(s.data() + i, run - i);
    if (run == s.size()) break;
    i = run;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      std::size_t skip = 0;
      if (const std::size_t n = utf8Char(s, i, skip); n != 0) {
        out.append(s.data() + i, n);
        i += n;
      } else {
        out += kReplacement;
        i += skip;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:  // the other control characters and DEL
        fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
    }
    ++i;
  }
  out += '"';
}

// A text field: as it is when it is printable ASCII without spaces or quotes, `-` when
// empty, otherwise a JSON string (so `reason="idle timeout"` stays one field).
void appendTextField(std::string& out, std::string_view s) {
  if (s.empty()) {
    out += '-';
    return;
  }
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F || c == '"') {
      appendJsonString(out, s);
      return;
    }
  }
  out += s;
}

// RFC 3339, UTC, milliseconds: 2026-12-05T23:59:01.123Z.
void appendTime(std::string& out, std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(t);
  const auto day = floor<days>(ms);
  const year_month_day ymd{day};
  const hh_mm_ss hms{ms - day};
  fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                 static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                 static_cast<unsigned>(ymd.day()), hms.hours().count(), hms.minutes().count(),
                 hms.seconds().count(), hms.subseconds().count());
}

// A duration in milliseconds with microsecond digits; `none` for a negative one (not
// measured).
void appendMs(std::string& out, double ms, std::string_view none, std::string_view unit = "") {
  if (!(ms >= 0) || !std::isfinite(ms)) {
    out += none;
    return;
  }
  fmt::format_to(std::back_inserter(out), "{:.3f}{}", ms, unit);
}

std::chrono::system_clock::time_point beganAt(const AccessRecord& r,
                                              std::chrono::system_clock::time_point now) {
  if (!(r.durationMs > 0) || !std::isfinite(r.durationMs)) return now;
  return now - std::chrono::duration_cast<std::chrono::system_clock::duration>(
                   std::chrono::duration<double, std::milli>(r.durationMs));
}

void appendJsonLine(std::string& out, const AccessRecord& r,
                    std::chrono::system_clock::time_point began) {
  auto put = [&out](std::string_view key) {
    out += ",\"";
    out += key;
    out += "\":";
  };
  auto str = [&](std::string_view key, std::string_view value) {
    put(key);
    appendJsonString(out, value);
  };
  auto strOrNull = [&](std::string_view key, std::string_view value) {
    put(key);
    if (value.empty()) {
      out += "null";
    } else {
      appendJsonString(out, value);
    }
  };
  auto num = [&](std::string_view key, auto value) {
    put(key);
    fmt::format_to(std::back_inserter(out), "{}", value);
  };
  auto ms = [&](std::string_view key, double value) {
    put(key);
    appendMs(out, value, "null");
  };
  out += "{\"time\":\"";
  appendTime(out, began);
  out += '"';
  num("session", r.session);
  str("kind", r.kind);
  str("client", r.client);
  str("listener", r.listener);
  put("route");
  if (r.route < 0) {
    out += "null";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", r.route);
  }
  str("method", r.method);
  str("host", r.host);
  str("path", r.path);
  strOrNull("pool", r.pool);
  strOrNull("backend", r.backend);
  num("status", r.status);
  str("reason", r.reason);
  ms("duration_ms", r.durationMs < 0 ? 0 : r.durationMs);
  ms("connect_ms", r.connectMs);
  ms("response_ms", r.responseMs);
  num("bytes_from_client", r.bytesFromClient);
  num("bytes_to_client", r.bytesToClient);
  if (r.tunnel != nullptr) {
    const TunnelStats& t = *r.tunnel;
    num("frames_from_client", t.framesFromClient);
    num("frames_to_client", t.framesToClient);
    num("messages_from_client", t.messagesFromClient);
    num("messages_to_client", t.messagesToClient);
    num("close_code", t.closeCode);
    str("close_by", t.closeBy);
  }
  out += '}';
}

void appendTextLine(std::string& out, const AccessRecord& r,
                    std::chrono::system_clock::time_point began) {
  auto field = [&out](std::string_view key, std::string_view value) {
    out += ' ';
    out += key;
    appendTextField(out, value);
  };
  appendTime(out, began);
  fmt::format_to(std::back_inserter(out), " s{}", r.session);
  field("", r.kind);
  field("", r.client);
  field("listener=", r.listener);
  if (r.route < 0) {
    out += " route=-";
  } else {
    fmt::format_to(std::back_inserter(out), " route={}", r.route);
  }
  field("", r.method);
  field("", r.host);
  field("", r.path);
  field("pool=", r.pool);
  field("backend=", r.backend);
  fmt::format_to(std::back_inserter(out), " {}", r.status);
  field("reason=", r.reason);
  out += ' ';
  appendMs(out, r.durationMs < 0 ? 0 : r.durationMs, "-", "ms");
  out += " connect=";
  appendMs(out, r.connectMs, "-", "ms");
  out += " response=";
  appendMs(out, r.responseMs, "-", "ms");
  fmt::format_to(std::back_inserter(out), " in={} out={}", r.bytesFromClient, r.bytesToClient);
  if (r.tunnel != nullptr) {
    const TunnelStats& t = *r.tunnel;
    fmt::format_to(std::back_inserter(out), " frames={}/{} messages={}/{} close={}",
                   t.framesFromClient, t.framesToClient, t.messagesFromClient, t.messagesToClient,
                   t.closeCode);
    field("by=", t.closeBy);
  }
}

}  // namespace

void appendAccessLine(std::string& out, const AccessRecord& r, conf::LogFormat format,
                      std::chrono::system_clock::time_point now) {
  const std::chrono::system_clock::time_point began = beganAt(r, now);
  if (format == conf::LogFormat::Json) {
    appendJsonLine(out, r, began);
  } else {
    appendTextLine(out, r, began);
  }
}

// ---- the process's loggers ------------------------------------------------------------------

namespace {

enum class AccessMode { Off, Json, Text };

// The queue between the workers and the writer: about 4 s of a burst of 1,000 lines/s of
// 1 KiB, or a quarter of a second at 50,000 short lines/s.
constexpr std::size_t kAccessQueueBytes = 4 * 1024 * 1024;

std::atomic<AccessMode> gAccessMode{AccessMode::Off};
// Made on first use and never freed: a worker may still hold it while the process ends.
std::atomic<AccessLogWriter*> gAccessWriter{nullptr};

int openAccessFile(const std::string& path, std::string& error) {
  std::error_code ec;  // a missing directory is made, as for a first start; errors show below
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd < 0)
    error =
        fmt::format("cannot open access log {}: {}", path, std::generic_category().message(errno));
  return fd;
}

}  // namespace

bool initLogging(const conf::LogConfig& cfg, std::string& error) {
  if (!gErrorLog) gErrorLog = makeErrorLog();
  gErrorLog->set_level(toSpd(cfg.level));

  AccessLogWriter* writer = gAccessWriter.load(std::memory_order_acquire);
  if (cfg.access == "off") {
    gAccessMode.store(AccessMode::Off, std::memory_order_release);
    if (writer != nullptr) writer->setTarget(-1, false);  // what is queued is still written
    return true;
  }
  int fd = -1;
  bool owned = false;
  if (cfg.access == "stdout") {
    fd = STDOUT_FILENO;
  } else if (cfg.access == "stderr") {
    fd = STDERR_FILENO;
  } else {
    fd = openAccessFile(cfg.access, error);
    if (fd < 0) return false;
    owned = true;
  }
  if (writer == nullptr) {
    try {  // called from noexcept reload paths: a thread that cannot start is an error value
      writer = new AccessLogWriter(kAccessQueueBytes);
    } catch (const std::exception& e) {
      if (owned) ::close(fd);
      error = fmt::format("cannot start the access log writer: {}", e.what());
      return false;
    }
    gAccessWriter.store(writer, std::memory_order_release);
  }
  writer->setTarget(fd, owned);
  gAccessMode.store(cfg.format == conf::LogFormat::Json ? AccessMode::Json : AccessMode::Text,
                    std::memory_order_release);
  return true;
}

void shutdownLogging() {
  gAccessMode.store(AccessMode::Off, std::memory_order_release);
  if (AccessLogWriter* writer = gAccessWriter.load(std::memory_order_acquire)) writer->stop();
  if (gErrorLog) gErrorLog->flush();
}

spdlog::logger& log() {
  if (!gErrorLog) gErrorLog = makeErrorLog();
  return *gErrorLog;
}

void writeAccess(const AccessRecord& r) {
  const AccessMode mode = gAccessMode.load(std::memory_order_acquire);
  if (mode == AccessMode::Off) return;
  AccessLogWriter* writer = gAccessWriter.load(std::memory_order_acquire);
  if (writer == nullptr) return;
  thread_local std::string line;  // one per worker, reused: no allocation per line
  line.clear();
  appendAccessLine(line, r,
                   mode == AccessMode::Json ? conf::LogFormat::Json : conf::LogFormat::Text,
                   std::chrono::system_clock::now());
  writer->push(line);
}

uint64_t accessLogDropped() {
  const AccessLogWriter* writer = gAccessWriter.load(std::memory_order_acquire);
  return writer == nullptr ? 0 : writer->dropped();
}

}  // namespace wsgate::proxy
