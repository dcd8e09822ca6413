#include "proxy/control/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>

#include "proxy/control/discovery.h"
#include "proxy/control/server.h"
#include "proxy/control/worker.h"
#include "proxy/log.h"
#include "proxy/stats.h"
#include "wsgate/version.h"

namespace wsgate::proxy {
namespace {

// Prometheus text format 0.0.4: label values escape \, " and newline.
std::string escapeLabel(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

class Writer {
public:
  explicit Writer(std::ostringstream& out) : out_(out) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  }
  // One sample; `labels` is the inside of the braces, already escaped ("" for none).
  template <class V>
  void sample(std::string_view name, std::string_view labels, V value) {
    out_ << name;
    if (!labels.empty()) out_ << '{' << labels << '}';
    out_ << ' ' << value << '\n';
  }
  // A histogram summed over the workers' blocks (`pick` chooses the one from a block).
  template <class Pick>
  void histogram(std::string_view name, std::string_view help,
                 const std::vector<std::unique_ptr<Worker>>& workers, Pick pick) {
    family(name, "histogram", help);
    uint64_t cumulative = 0;
    uint64_t sumUs = 0;
    for (std::size_t b = 0; b <= kLatencyBuckets; ++b) {
      for (const auto& w : workers) cumulative += pick(w->stats()).buckets[b].get();
      std::ostringstream le;
      if (b < kLatencyBuckets) {
        le << "le=\"" << kLatencyBucketsUs[b] / 1e6 << '"';
      } else {
        le << "le=\"+Inf\"";
      }
      sample(std::string(name) + "_bucket", le.str(), cumulative);
    }
    for (const auto& w : workers) sumUs += pick(w->stats()).sumUs.get();
    sample(std::string(name) + "_sum", "", sumUs / 1e6);
    sample(std::string(name) + "_count", "", cumulative);
  }

private:
  std::ostringstream& out_;
};

std::size_t openSessions(const Server& server) {
  std::size_t n = 0;
  for (const auto& w : server.workers()) n += w->sessionCount();
  return n;
}

void appendWorkerCounters(const Server& server, Writer& out) {
  const auto& workers = server.workers();
  // The sum over the workers' blocks of one counter: a member, or a callable picking one.
  auto sum = [&](auto pick) {
    uint64_t total = 0;
    for (const auto& w : workers) {
      total += static_cast<const Counter&>(std::invoke(pick, w->stats())).get();
    }
    return total;
  };
  out.family("wsgate_connections_refused_total", "counter",
             "accept() failures for want of descriptors or memory (the connection waits in the "
             "kernel's queue and is accepted when one frees up).");
  out.sample("wsgate_connections_refused_total", "reason=\"out_of_resources\"",
             sum(&WorkerStats::acceptFailures));

  out.family("wsgate_http_requests_total", "counter",
             "Requests answered, by the status class sent (WebSocket upgrades count as 1xx; "
             "\"none\" when nothing was sent).");
  static constexpr std::string_view kClasses[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
  for (std::size_t c = 0; c < 6; ++c) {
    out.sample("wsgate_http_requests_total", "code=\"" + std::string(kClasses[c]) + '"',
               sum([c](const WorkerStats& s) -> const Counter& { return s.httpResponses[c]; }));
  }
  out.histogram("wsgate_handshake_duration_seconds",
                "From the accept (or a kept-alive connection's next first byte) to the full "
                "request head, TLS handshake included.",
                workers, [](const WorkerStats& s) -> const Histogram& { return s.handshake; });
  out.histogram("wsgate_backend_connect_duration_seconds",
                "Backend connects, from connect() to connected (new connections only).", workers,
                [](const WorkerStats& s) -> const Histogram& { return s.backendConnect; });
  out.histogram("wsgate_backend_response_duration_seconds",
                "From the request head sent to a backend to its response head (101 included).",
                workers,
                [](const WorkerStats& s) -> const Histogram& { return s.backendResponse; });

  // Each gauge below is a difference of two counters other threads go on adding to: the
  // "ended" one is read first, so a session that starts and ends between the reads can
  // only make the gauge read high for one scrape, never wrap below zero.
  const uint64_t ended = sum(&WorkerStats::websocketSessions);
  const uint64_t opened = sum(&WorkerStats::websocketOpened);
  out.family("wsgate_websocket_sessions_active", "gauge", "WebSocket tunnels open now.");
  out.sample("wsgate_websocket_sessions_active", "", opened >= ended ? opened - ended : 0);
  out.family("wsgate_websocket_sessions_total", "counter", "WebSocket sessions that ended.");
  out.sample("wsgate_websocket_sessions_total", "", ended);
  out.family("wsgate_websocket_messages_total", "counter",
             "WebSocket messages relayed, by direction (counted when the session ends).");
  out.sample("wsgate_websocket_messages_total", "direction=\"client_to_backend\"",
             sum(&WorkerStats::messagesFromClient));
  out.sample("wsgate_websocket_messages_total", "direction=\"backend_to_client\"",
             sum(&WorkerStats::messagesToClient));
  out.family("wsgate_websocket_payload_bytes_total", "counter",
             "WebSocket data payload bytes relayed, by direction (counted when the session ends).");
  out.sample("wsgate_websocket_payload_bytes_total", "direction=\"client_to_backend\"",
             sum(&WorkerStats::tunnelBytesFromClient));
  out.sample("wsgate_websocket_payload_bytes_total", "direction=\"backend_to_client\"",
             sum(&WorkerStats::tunnelBytesToClient));
  out.family("wsgate_websocket_closes_total", "counter",
             "WebSocket sessions by their first close code and who sent it (1006: a side "
             "vanished; 0: none).");
  static constexpr std::string_view kSides[kCloseSides] = {"client", "backend", "wsgate", "none"};
  for (std::size_t code = 0; code < kCloseCodeSlots; ++code) {
    for (std::size_t side = 0; side < kCloseSides; ++side) {
      const uint64_t n =
          sum([&](const WorkerStats& s) -> const Counter& { return s.closes[code][side]; });
      if (n == 0) continue;  // most pairs never happen: no series until one does
      out.sample(
          "wsgate_websocket_closes_total",
          "code=\"" +
              (code < std::size(kCountedCloseCodes) ? std::to_string(kCountedCloseCodes[code])
                                                    : std::string("other")) +
              "\",by=\"" + std::string(kSides[side]) + '"',
          n);
    }
  }
  const uint64_t drainsEnded = sum(&WorkerStats::drainsEnded);
  const uint64_t drainsStarted = sum(&WorkerStats::drainsStarted);
  out.family("wsgate_draining_sessions", "gauge",
             "WebSocket tunnels told to drain (reload, backend drain, shutdown) that are still "
             "open.");
  out.sample("wsgate_draining_sessions", "",
             drainsStarted >= drainsEnded ? drainsStarted - drainsEnded : 0);
  out.family("wsgate_drained_sessions_total", "counter",
             "WebSocket tunnels that ended after being told to drain.");
  out.sample("wsgate_drained_sessions_total", "", drainsEnded);

  const uint64_t left = sum(&WorkerStats::queueLeft);
  const uint64_t waits = sum(&WorkerStats::queueWaits);
  out.family("wsgate_queue_length", "gauge",
             "Requests waiting for a backend place (every backend at max_connections) or a "
             "descriptor.");
  out.sample("wsgate_queue_length", "", waits >= left ? waits - left : 0);
  out.family("wsgate_queue_waits_total", "counter", "Requests that had to wait in the queue.");
  out.sample("wsgate_queue_waits_total", "", waits);
  out.family("wsgate_queue_timeouts_total", "counter",
             "Queued requests answered 503 when timeouts.queue ran out.");
  out.sample("wsgate_queue_timeouts_total", "", sum(&WorkerStats::queueTimeouts));

  out.family(
      "wsgate_lua_errors_total", "counter",
      "Lua hook calls that failed (an error, a limit, a return value breaking a rule), by hook.");
  for (std::size_t h = 0; h < kLuaHooks; ++h) {
    out.sample("wsgate_lua_errors_total", "hook=\"" + std::string(kLuaHookNames[h]) + '"',
               sum([h](const WorkerStats& s) -> const Counter& { return s.luaErrors[h]; }));
  }
  out.family("wsgate_lua_limit_hits_total", "counter",
             "Lua hook calls ended by scripting.instruction_limit or memory_limit.");
  out.sample("wsgate_lua_limit_hits_total", "limit=\"instructions\"",
             sum(&WorkerStats::luaInstructionLimit));
  out.sample("wsgate_lua_limit_hits_total", "limit=\"memory\"", sum(&WorkerStats::luaMemoryLimit));
}

// The listeners with proxy_protocol: headers taken by version, connections refused by why.
void appendProxyProtocol(const Runtime& runtime, Writer& out) {
  auto load = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  out.family("wsgate_proxy_protocol_headers_total", "counter",
             "PROXY protocol headers accepted on proxy_protocol listeners, by version.");
  for (const ListenerEntry& l : runtime.listeners) {
    if (!l.config->proxyProtocol) continue;
    for (int v = 0; v < 2; ++v) {
      out.sample("wsgate_proxy_protocol_headers_total",
                 "listener=\"" + escapeLabel(l.config->name) + "\",version=\"" +
                     std::to_string(v + 1) + '"',
                 load(l.counters->proxyHeaders[v]));
    }
  }
  out.family("wsgate_proxy_protocol_rejected_total", "counter",
             "Connections to proxy_protocol listeners closed before a PROXY header was accepted, "
             "by reason (untrusted: peer outside proxy_protocol_from; missing: the first bytes "
             "are not a PROXY header; malformed; truncated: closed or timed out mid-header; "
             "oversized; timeout: nothing within timeouts.handshake).");
  for (const ListenerEntry& l : runtime.listeners) {
    if (!l.config->proxyProtocol) continue;
    for (std::size_t r = 0; r < kProxyRejects; ++r) {
      out.sample("wsgate_proxy_protocol_rejected_total",
                 "listener=\"" + escapeLabel(l.config->name) + "\",reason=\"" +
                     std::string(kProxyRejectNames[r]) + '"',
                 load(l.counters->proxyRejects[r]));
    }
  }
}

void appendListeners(const Runtime& runtime, Writer& out) {
  auto each = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
    out.family(name, type, help);
    for (const ListenerEntry& l : runtime.listeners) {
      out.sample(name, "listener=\"" + escapeLabel(l.config->name) + '"', value(*l.counters));
    }
  };
  auto load = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  each("wsgate_connections_accepted_total", "counter", "Client connections accepted.",
       [&](const ListenerCounters& c) { return load(c.accepted); });
  each("wsgate_connections_active", "gauge", "Client connections open now.",
       [&](const ListenerCounters& c) {
         const uint64_t d = load(c.closed);  // read first: see appendWorkerCounters
         const uint64_t a = load(c.accepted);
         return a >= d ? a - d : 0;
       });
  out.family("wsgate_tls_handshakes_total", "counter", "Client TLS handshakes completed.");
  for (const ListenerEntry& l : runtime.listeners) {
    if (!l.tls) continue;
    out.sample("wsgate_tls_handshakes_total", "listener=\"" + escapeLabel(l.config->name) + '"',
               load(l.counters->tlsHandshakes));
  }
  out.family("wsgate_tls_handshake_failures_total", "counter",
             "Client TLS handshakes that failed, by reason (protocol: no common version, cipher "
             "or ALPN; certificate: a client certificate refused; sni; plain_http: HTTP sent "
             "to a TLS port; timeout; closed: the client left mid-handshake; other).");
  for (const ListenerEntry& l : runtime.listeners) {
    if (!l.tls) continue;
    for (std::size_t r = 0; r < kTlsFailures; ++r) {
      out.sample("wsgate_tls_handshake_failures_total",
                 "listener=\"" + escapeLabel(l.config->name) + "\",reason=\"" +
                     std::string(kTlsFailureNames[r]) + '"',
                 load(l.counters->tlsFailures[r]));
    }
  }
  appendProxyProtocol(runtime, out);
}

void appendBackends(const Runtime& runtime, Writer& out) {
  const auto now = std::chrono::steady_clock::now();
  auto load = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  // One family over every backend of every pool; `value` reads one.
  auto each = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
    out.family(name, type, help);
    for (const auto& [pool, entry] : runtime.pools) {
      const bool checked = entry.config->health.has_value();
      for (const auto& b : entry.pool->backends()) {
        out.sample(
            name,
            "pool=\"" + escapeLabel(pool) + "\",backend=\"" + escapeLabel(b->spec().name) + '"',
            value(*b, checked));
      }
    }
  };
  each("wsgate_backend_up", "gauge",
       "1 when the backend's health says up: its active check where the pool has one, else "
       "passive health (not ejected after failures).",
       [&](const balancer::Backend& b, bool checked) {
         return checked ? (b.activeUp() ? 1 : 0)
                        : (b.passiveState(now) == balancer::PassiveState::Up ? 1 : 0);
       });
  each("wsgate_backend_available", "gauge",
       "1 when the backend takes new sessions now (up, not drained, not full).",
       [&](const balancer::Backend& b, bool) { return b.available(now) ? 1 : 0; });
  each("wsgate_backend_draining", "gauge", "1 when the backend was drained by the admin API.",
       [&](const balancer::Backend& b, bool) { return b.draining() ? 1 : 0; });
  each("wsgate_backend_active", "gauge", "Sessions using the backend.",
       [&](const balancer::Backend& b, bool) { return b.active(); });
  out.family("wsgate_backend_responses_total", "counter",
             "Response heads from the backend, by status class (101 counts as 1xx).");
  static constexpr std::string_view kClasses[6] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
  for (const auto& [pool, entry] : runtime.pools) {
    for (const auto& b : entry.pool->backends()) {
      for (std::size_t c = 1; c < 6; ++c) {
        out.sample("wsgate_backend_responses_total",
                   "pool=\"" + escapeLabel(pool) + "\",backend=\"" + escapeLabel(b->spec().name) +
                       "\",code=\"" + std::string(kClasses[c]) + '"',
                   load(b->counters().responses[c]));
      }
    }
  }
  each("wsgate_backend_websocket_sessions_total", "counter",
       "WebSocket sessions opened on the backend (a valid 101 relayed).",
       [&](const balancer::Backend& b, bool) { return load(b.counters().websocketSessions); });
  each("wsgate_backend_connect_failures_total", "counter",
       "Connects to the backend that were refused, timed out or reset.",
       [&](const balancer::Backend& b, bool) { return load(b.counters().connectFailures); });
  each("wsgate_backend_retries_total", "counter",
       "Connects to the backend that retried a request another backend of the pool had "
       "failed (the pool's retries).",
       [&](const balancer::Backend& b, bool) { return load(b.counters().retries); });
  each("wsgate_backend_ejections_total", "counter",
       "Passive ejections: the backend was taken out of rotation after a failure.",
       [&](const balancer::Backend& b, bool) { return load(b.counters().ejections); });
  each("wsgate_backend_dropped_sessions_total", "counter",
       "WebSocket sessions the backend left without a close frame (crash, reset, deploy "
       "without a drain); the client got 1014.",
       [&](const balancer::Backend& b, bool) { return load(b.counters().droppedSessions); });
}

// The discover entries' resolutions (proxy/control/discovery.h), one series per entry.
void appendDiscovery(const Server& server, Writer& out) {
  const auto entries = server.discovery().status();
  if (entries.empty()) return;  // no discover entry: no families (nothing to label them by)
  auto labels = [](const Discovery::Status& s) {
    return "pool=\"" + escapeLabel(s.pool) + "\",dns=\"" + escapeLabel(s.config.dns) + '"';
  };
  out.family("wsgate_discovery_resolutions_total", "counter",
             "Resolutions of a discover entry by result: ok (same set), changed (a new set was "
             "published), held (an empty answer kept the last set within hold_empty), failed "
             "(no usable answer: the last set stays).");
  for (const auto& s : entries) {
    const std::pair<const char*, uint64_t> results[] = {
        {"ok", s.ok}, {"changed", s.changed}, {"held", s.held}, {"failed", s.failed}};
    for (const auto& [result, n] : results) {
      out.sample("wsgate_discovery_resolutions_total", labels(s) + ",result=\"" + result + '"', n);
    }
  }
  out.family("wsgate_discovery_backends", "gauge", "Backends the discover entry gives now.");
  for (const auto& s : entries) out.sample("wsgate_discovery_backends", labels(s), s.backends);
  out.family("wsgate_discovery_failing", "gauge",
             "1 while the discover entry's last resolution failed (its last set stays).");
  for (const auto& s : entries) {
    out.sample("wsgate_discovery_failing", labels(s), s.failing ? 1 : 0);
  }
  out.family("wsgate_discovery_last_success_age_seconds", "gauge",
             "Seconds since the discover entry's last answer (records or an empty one); "
             "absent until the first.");
  for (const auto& s : entries) {
    if (!s.sinceSuccess) continue;
    out.sample("wsgate_discovery_last_success_age_seconds", labels(s),
               std::chrono::duration<double>(*s.sinceSuccess).count());
  }
}

// process_* as the Prometheus client libraries name them, from /proc/self.
void appendProcess(Writer& out) {
  const long ticks = sysconf(_SC_CLK_TCK);
  const long page = sysconf(_SC_PAGESIZE);
  std::ifstream statFile("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(statFile)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces): state is field 3.
  const auto close = stat.rfind(')');
  std::istringstream fields(close == std::string::npos ? "" : stat.substr(close + 2));
  std::vector<std::string> f((std::istream_iterator<std::string>(fields)),
                             std::istream_iterator<std::string>());
  // f[0] is field 3: utime 14, stime 15, starttime 22, vsize 23, rss 24.
  auto field = [&](int n) -> double {
    const std::size_t i = static_cast<std::size_t>(n - 3);
    return i < f.size() ? std::strtod(f[i].c_str(), nullptr) : 0.0;
  };
  double bootTime = 0;
  std::ifstream procStat("/proc/stat");
  for (std::string line; std::getline(procStat, line);) {
    if (line.rfind("btime ", 0) == 0) bootTime = std::strtod(line.c_str() + 6, nullptr);
  }
  std::size_t fds = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (const dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++fds;
    }
    closedir(d);
    if (fds > 0) --fds;  // the directory's own descriptor
  }
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);

  out.family("process_cpu_seconds_total", "counter", "User and system CPU time spent, seconds.");
  out.sample("process_cpu_seconds_total", "", (field(14) + field(15)) / static_cast<double>(ticks));
  out.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  out.sample("process_resident_memory_bytes", "",
             static_cast<uint64_t>(field(24)) * static_cast<uint64_t>(page));
  out.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  out.sample("process_virtual_memory_bytes", "", static_cast<uint64_t>(field(23)));
  out.family("process_open_fds", "gauge", "Open file descriptors.");
  out.sample("process_open_fds", "", fds);
  out.family("process_max_fds", "gauge", "The open files limit (RLIMIT_NOFILE).");
  out.sample("process_max_fds", "", static_cast<uint64_t>(nofile.rlim_cur));
  out.family("process_start_time_seconds", "gauge",
             "Start time of the process since the Unix epoch, seconds.");
  std::ostringstream start;
  start.precision(3);
  start << std::fixed << bootTime + field(22) / static_cast<double>(ticks);
  out.sample("process_start_time_seconds", "", start.str());
}

}  // namespace

std::string renderMetrics(const Runtime& runtime, const Server& server) {
  std::ostringstream text;
  text.precision(9);
  Writer out(text);
  out.family("wsgate_build_info", "gauge", "1, labelled with the running wsgate's version.");
  out.sample("wsgate_build_info", "version=\"" + escapeLabel(WSGATE_VERSION) + '"', 1);
  out.family("wsgate_sessions", "gauge", "Open client connections.");
  out.sample("wsgate_sessions", "", openSessions(server));
  const ReloadStats& r = server.reloadStats();
  out.family("wsgate_config_reloads_total", "counter", "Reloads of the config, by result.");
  out.sample("wsgate_config_reloads_total", "result=\"ok\"", r.succeeded);
  out.sample("wsgate_config_reloads_total", "result=\"failed\"", r.failed);
  out.family("wsgate_config_generation", "gauge",
             "Snapshots published since start (1: the first).");
  out.sample("wsgate_config_generation", "", r.generation);
  appendListeners(runtime, out);
  appendWorkerCounters(server, out);
  appendBackends(runtime, out);
  appendDiscovery(server, out);
  out.family("wsgate_access_log_dropped_total", "counter",
             "Access log lines dropped because the log's writer fell behind (a full pipe or "
             "disk): the event loops never wait for the log.");
  out.sample("wsgate_access_log_dropped_total", "", accessLogDropped());
  appendProcess(out);
  return text.str();
}

}  // namespace wsgate::proxy
