#pragma once
// Counters for /metrics. Each worker owns one cache-line-aligned WorkerStats and is its only
// writer: a Counter is a relaxed atomic whose add is a plain load and store (no lock prefix,
// no data race with the scrape), so counting costs what an integer add costs and touches no
// line another thread writes. The scrape sums the workers' blocks. Counting happens where
// the code passes once per event (the access-log point of an exchange or session, an
// accept, a hook failure), never per frame.

#include <atomic>
#include <cstdint>
#include <string_view>

#include "proxy/log_throttle.h"

namespace wsgate::proxy {

class Counter {
public:
  // One writer only (the owning worker): load + store, not a read-modify-write.
  void add(uint64_t n = 1) noexcept {
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<uint64_t> value_{0};
};

// A latency histogram with fixed buckets (kLatencyBucketsUs, the same for every histogram):
// per-bucket counts, made cumulative when scraped, and the sum in microseconds. Observed once
// per request or connect, by the owning worker only.
inline constexpr uint32_t kLatencyBucketsUs[] = {500,     1000,    2500,    5000,    10000,
                                                 25000,   50000,   100000,  250000,  500000,
                                                 1000000, 2500000, 5000000, 10000000};
inline constexpr std::size_t kLatencyBuckets = std::size(kLatencyBucketsUs);

struct Histogram {
  Counter buckets[kLatencyBuckets + 1];  // the last: above every bound (+Inf)
  Counter sumUs;
  void observe(uint32_t us) noexcept {
    std::size_t i = 0;
    while (i < kLatencyBuckets && us > kLatencyBucketsUs[i]) ++i;
    buckets[i].add();
    sumUs.add(us);
  }
};

// The close codes /metrics names; every other code is "other". Bounded, so the series are.
// 0: the session ended with no close code at all (both sides went away).
inline constexpr uint16_t kCountedCloseCodes[] = {0,    1000, 1001, 1002, 1003, 1006, 1007,
                                                  1008, 1009, 1011, 1012, 1013, 1014};
inline constexpr std::size_t kCloseCodeSlots = std::size(kCountedCloseCodes) + 1;  // + other
std::size_t closeCodeSlot(uint16_t code) noexcept;

enum class CloseSide : uint8_t { Client, Backend, Wsgate, None };
inline constexpr std::size_t kCloseSides = 4;
CloseSide closeSideOf(std::string_view closeBy) noexcept;

// Why a client's TLS handshake failed, as /metrics names it (bounded: OpenSSL's reason
// strings are sorted into these).
enum class TlsFailure : uint8_t { Protocol, Certificate, Sni, PlainHttp, Timeout, Closed, Other };
inline constexpr std::size_t kTlsFailures = 7;
inline constexpr std::string_view kTlsFailureNames[kTlsFailures] = {
    "protocol", "certificate", "sni", "plain_http", "timeout", "closed", "other"};
// `error`: the TLS layer's reason (empty when it saw none); `timedOut`: the handshake
// timeout ended it.
TlsFailure tlsFailureOf(std::string_view error, bool timedOut) noexcept;

// Why a connection on a proxy_protocol listener was closed before its PROXY header was
// taken, as /metrics names it (bounded). Untrusted: from outside proxy_protocol_from;
// missing: the first bytes are not a PROXY header; truncated: the connection ended or
// timeouts.handshake ran out mid-header; timeout: nothing came in timeouts.handshake.
enum class ProxyReject : uint8_t { Untrusted, Missing, Malformed, Truncated, Oversized, Timeout };
inline constexpr std::size_t kProxyRejects = 6;
inline constexpr std::string_view kProxyRejectNames[kProxyRejects] = {
    "untrusted", "missing", "malformed", "truncated", "oversized", "timeout"};

// Per listener: carried across reloads with the listener (by its key), so a reload does not
// reset them. Workers add with relaxed fetch_add, once per connection event.
struct ListenerCounters {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> closed{0};  // active = accepted - closed
  std::atomic<uint64_t> tlsHandshakes{0};
  std::atomic<uint64_t> tlsFailures[kTlsFailures]{};
  std::atomic<uint64_t> proxyHeaders[2]{};  // PROXY headers taken: [0] v1, [1] v2
  std::atomic<uint64_t> proxyRejects[kProxyRejects]{};
  LogThrottle proxyRejectLog;  // the refusals' log line: one per 10 s per listener
  static void add(std::atomic<uint64_t>& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }
};

enum class LuaHook : uint8_t { State, OnRequest, OnOpen, OnMessage, OnClose };
inline constexpr std::size_t kLuaHooks = 5;
inline constexpr std::string_view kLuaHookNames[kLuaHooks] = {"state", "on_request", "on_open",
                                                              "on_message", "on_close"};

struct alignas(64) WorkerStats {
  Counter accepted;            // client connections accepted
  Counter httpResponses[6];    // HTTP requests by the status class sent: [0] none, [1..5] 1xx..5xx
  Counter websocketSessions;   // tunnels that ended (counted with their access line)
  Counter messagesFromClient;  // WebSocket messages relayed, client -> backend
  Counter messagesToClient;    // backend -> client
  Counter tunnelBytesFromClient;
  Counter tunnelBytesToClient;
  Counter closes[kCloseCodeSlots][kCloseSides];  // a tunnel's first close code, by who sent it
  Counter luaErrors[kLuaHooks];
  Counter luaInstructionLimit;  // hook calls ended by scripting.instruction_limit
  Counter luaMemoryLimit;       // ... by scripting.memory_limit
  Counter websocketOpened;      // tunnels started (a valid 101 relayed); active = opened - ended
  Counter drainsStarted;        // tunnels given a drain (1012 due within drain_spread)
  Counter drainsEnded;          // ... that have ended since
  Counter queueWaits;           // requests that waited for a place (every backend full)
  Counter queueTimeouts;        // ... and got 503 when timeouts.queue ran out
  Counter queueLeft;            // left the queue (a place, a timeout, gone): length = waits - left
  Counter acceptFailures;       // accept() failed for want of descriptors or memory
  Histogram handshake;          // accept or first byte -> full request head (TLS included)
  Histogram backendConnect;     // connect started -> connected (new connections only)
  Histogram backendResponse;    // request head sent -> response head received
};

}  // namespace wsgate::proxy
