#include "proxy/control/metrics.h"

#include <chrono>
#include <functional>
#include <sstream>

#include "proxy/control/server.h"
#include "proxy/control/worker.h"
#include "proxy/stats.h"

namespace wsgate::proxy {
namespace {

std::size_t openSessions(const Server& server) {
  std::size_t n = 0;
  for (const auto& w : server.workers()) n += w->sessionCount();
  return n;
}

void appendWorkerCounters(const Server& server, std::ostringstream& out) {
  const auto& workers = server.workers();
  // The sum over the workers' blocks of one counter: a member, or a callable picking one.
  auto sum = [&](auto pick) {
    uint64_t total = 0;
    for (const auto& w : workers) {
      total += static_cast<const Counter&>(std::invoke(pick, w->stats())).get();
    }
    return total;
  };
  auto family = [&](std::string_view name, std::string_view type, std::string_view help) {
    out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << "\n";
  };
  family("wsgate_connections_accepted_total", "counter", "Client connections accepted.");
  out << "wsgate_connections_accepted_total " << sum(&WorkerStats::accepted) << "\n";
  family("wsgate_http_requests_total", "counter",
         "Requests answered, by the status class sent (WebSocket upgrades count as 1xx; "
         "\"none\" when nothing was sent).");
  static constexpr std::string_view kClasses[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
  for (std::size_t c = 0; c < 6; ++c) {
    out << "wsgate_http_requests_total{code=\"" << kClasses[c] << "\"} "
        << sum([c](const WorkerStats& s) -> const Counter& { return s.httpResponses[c]; }) << "\n";
  }
  family("wsgate_websocket_sessions_total", "counter", "WebSocket sessions that ended.");
  out << "wsgate_websocket_sessions_total " << sum(&WorkerStats::websocketSessions) << "\n";
  family("wsgate_websocket_messages_total", "counter",
         "WebSocket messages relayed, by direction (counted when the session ends).");
  out << "wsgate_websocket_messages_total{direction=\"client_to_backend\"} "
      << sum(&WorkerStats::messagesFromClient)
      << "\nwsgate_websocket_messages_total{direction=\"backend_to_client\"} "
      << sum(&WorkerStats::messagesToClient) << "\n";
  family("wsgate_websocket_payload_bytes_total", "counter",
         "WebSocket data payload bytes relayed, by direction (counted when the session ends).");
  out << "wsgate_websocket_payload_bytes_total{direction=\"client_to_backend\"} "
      << sum(&WorkerStats::tunnelBytesFromClient)
      << "\nwsgate_websocket_payload_bytes_total{direction=\"backend_to_client\"} "
      << sum(&WorkerStats::tunnelBytesToClient) << "\n";
  family("wsgate_websocket_closes_total", "counter",
         "WebSocket sessions by their first close code and who sent it (1006: a side vanished; "
         "0: none).");
  static constexpr std::string_view kSides[kCloseSides] = {"client", "backend", "wsgate", "none"};
  for (std::size_t code = 0; code < kCloseCodeSlots; ++code) {
    for (std::size_t side = 0; side < kCloseSides; ++side) {
      const uint64_t n =
          sum([&](const WorkerStats& s) -> const Counter& { return s.closes[code][side]; });
      if (n == 0) continue;  // most pairs never happen: no series until one does
      out << "wsgate_websocket_closes_total{code=\""
          << (code < std::size(kCountedCloseCodes) ? std::to_string(kCountedCloseCodes[code])
                                                   : std::string("other"))
          << "\",by=\"" << kSides[side] << "\"} " << n << "\n";
    }
  }
  family(
      "wsgate_lua_errors_total", "counter",
      "Lua hook calls that failed (an error, a limit, a return value breaking a rule), by hook.");
  for (std::size_t h = 0; h < kLuaHooks; ++h) {
    out << "wsgate_lua_errors_total{hook=\"" << kLuaHookNames[h] << "\"} "
        << sum([h](const WorkerStats& s) -> const Counter& { return s.luaErrors[h]; }) << "\n";
  }
  family("wsgate_lua_limit_hits_total", "counter",
         "Lua hook calls ended by scripting.instruction_limit or memory_limit.");
  out << "wsgate_lua_limit_hits_total{limit=\"instructions\"} "
      << sum(&WorkerStats::luaInstructionLimit)
      << "\nwsgate_lua_limit_hits_total{limit=\"memory\"} " << sum(&WorkerStats::luaMemoryLimit)
      << "\n";
}

}  // namespace

std::string renderMetrics(const Runtime& runtime, const Server& server) {
  std::ostringstream out;
  out << "# HELP wsgate_sessions Open client connections.\n# TYPE wsgate_sessions gauge\n"
      << "wsgate_sessions " << openSessions(server) << "\n";
  const ReloadStats& r = server.reloadStats();
  out << "# HELP wsgate_config_reloads_total Reloads of the config, by result.\n"
         "# TYPE wsgate_config_reloads_total counter\n"
      << "wsgate_config_reloads_total{result=\"ok\"} " << r.succeeded << "\n"
      << "wsgate_config_reloads_total{result=\"failed\"} " << r.failed << "\n"
      << "# HELP wsgate_config_generation Snapshots published since start (1: the first).\n"
         "# TYPE wsgate_config_generation gauge\n"
      << "wsgate_config_generation " << r.generation << "\n";
  appendWorkerCounters(server, out);
  const auto now = std::chrono::steady_clock::now();
  out << "# HELP wsgate_backend_active Sessions using the backend.\n"
         "# TYPE wsgate_backend_active gauge\n";
  for (const auto& [name, entry] : runtime.pools) {
    for (const auto& b : entry.pool->backends()) {
      out << "wsgate_backend_active{pool=\"" << name << "\",backend=\"" << b->spec().name << "\"} "
          << b->active() << "\n";
    }
  }
  out << "# HELP wsgate_backend_available 1 when the backend takes new sessions.\n"
         "# TYPE wsgate_backend_available gauge\n";
  for (const auto& [name, entry] : runtime.pools) {
    for (const auto& b : entry.pool->backends()) {
      out << "wsgate_backend_available{pool=\"" << name << "\",backend=\"" << b->spec().name
          << "\"} " << (b->available(now) ? 1 : 0) << "\n";
    }
  }
  return out.str();
}

}  // namespace wsgate::proxy
