#include "proxy/log.h"

#include <fmt/format.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>
#include <nlohmann/json.hpp>

namespace wsgate::proxy {
namespace {

std::shared_ptr<spdlog::logger> gErrorLog;
std::shared_ptr<spdlog::logger> gAccessLog;  // null when access logging is off
std::atomic<bool> gAccessJson{true};

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

}  // namespace

bool initLogging(const conf::LogConfig& cfg, std::string& error) {
  if (!gErrorLog) gErrorLog = makeErrorLog();
  gErrorLog->set_level(toSpd(cfg.level));

  std::shared_ptr<spdlog::logger> access;
  if (cfg.access == "stdout") {
    access = std::make_shared<spdlog::logger>("access",
                                              std::make_shared<spdlog::sinks::stdout_sink_mt>());
  } else if (cfg.access == "stderr") {
    access = std::make_shared<spdlog::logger>("access",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
  } else if (cfg.access != "off") {
    try {
      access = std::make_shared<spdlog::logger>(
          "access", std::make_shared<spdlog::sinks::basic_file_sink_mt>(cfg.access));
    } catch (const spdlog::spdlog_ex& e) {
      error = fmt::format("cannot open access log {}: {}", cfg.access, e.what());
      return false;
    }
  }
  if (access) {
    access->set_pattern("%v");
    access->flush_on(spdlog::level::info);
  }
  gAccessJson.store(cfg.format == conf::LogFormat::Json, std::memory_order_relaxed);
  std::atomic_store(&gAccessLog, access);
  return true;
}

spdlog::logger& log() {
  if (!gErrorLog) gErrorLog = makeErrorLog();
  return *gErrorLog;
}

void writeAccess(const AccessRecord& r) {
  auto access = std::atomic_load(&gAccessLog);
  if (!access) return;
  if (gAccessJson.load(std::memory_order_relaxed)) {
    nlohmann::json j;
    j["session"] = r.session;
    j["client"] = r.client;
    j["kind"] = r.kind;
    j["method"] = r.method;
    j["path"] = r.path;
    j["host"] = r.host;
    j["status"] = r.status;
    j["pool"] = r.pool.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.pool);
    j["backend"] = r.backend.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.backend);
    j["reason"] = r.reason;
    j["duration_ms"] = static_cast<int64_t>(r.durationMs * 1000) / 1000.0;
    j["bytes_from_client"] = r.bytesFromClient;
    j["bytes_to_client"] = r.bytesToClient;
    if (r.tunnel != nullptr) {
      j["frames_from_client"] = r.tunnel->framesFromClient;
      j["frames_to_client"] = r.tunnel->framesToClient;
      j["messages_from_client"] = r.tunnel->messagesFromClient;
      j["messages_to_client"] = r.tunnel->messagesToClient;
      j["close_code"] = r.tunnel->closeCode;
      j["close_by"] = r.tunnel->closeBy;
    }
    // replace: a path with invalid UTF-8 must not make the log line throw.
    access->info(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  } else if (r.tunnel != nullptr) {
    const TunnelStats& t = *r.tunnel;
    access->info(
        "s{} {} {} {} {} {} {} pool={} backend={} reason={} {:.3f}ms in={} out={} frames={}/{} "
        "messages={}/{} close={} by={}",
        r.session, r.client, r.kind, r.method, r.path, r.host, r.status,
        r.pool.empty() ? "-" : r.pool, r.backend.empty() ? "-" : r.backend, r.reason, r.durationMs,
        r.bytesFromClient, r.bytesToClient, t.framesFromClient, t.framesToClient,
        t.messagesFromClient, t.messagesToClient, t.closeCode, t.closeBy);
  } else {
    access->info("s{} {} {} {} {} {} {} pool={} backend={} reason={} {:.3f}ms in={} out={}",
                 r.session, r.client, r.kind, r.method, r.path, r.host, r.status,
                 r.pool.empty() ? "-" : r.pool, r.backend.empty() ? "-" : r.backend, r.reason,
                 r.durationMs, r.bytesFromClient, r.bytesToClient);
  }
}

}  // namespace wsgate::proxy
