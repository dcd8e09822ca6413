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

#include "conf/cidr.h"

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

enum class TlsVersion { V1_2, V1_3 };

// A certificate chain (leaf first, PEM) and its private key (RSA or ECDSA, PEM).
struct CertificateConfig {
  std::string cert;
  std::string key;
  Mark mark;  // of the entry
};

enum class ClientCertMode { Off, Optional, Required };

// `listeners[].tls`: TLS termination on a listener.
struct ListenerTls {
  std::vector<CertificateConfig> certificates;  // at least one; the first is the default
  TlsVersion minVersion = TlsVersion::V1_2;
  std::vector<std::string> alpn{"http/1.1"};        // only "http/1.1" is accepted today
  std::string clientCa;                             // PEM bundle; empty: no client certificates
  ClientCertMode clientCert = ClientCertMode::Off;  // Optional by default with client_ca
  bool ktls = false;  // ask for kernel TLS; falls back quietly where the kernel lacks it
  Mark mark;          // of the `tls` key
};

// `pools.NAME.tls`: TLS (wss) towards a pool's backends.
struct BackendTls {
  bool verify = true;  // verify the chain against `ca` and the name against `sni`
  std::string ca;      // PEM bundle; empty: the system's default trust store
  std::string sni;     // server name sent and verified; empty: the backend's host
  std::string cert;    // optional client certificate (with `key`)
  std::string key;
  TlsVersion minVersion = TlsVersion::V1_2;
  Mark mark;  // of the `tls` key
};

struct ListenerConfig {
  std::string name;
  HostPort listen;
  std::optional<ListenerTls> tls;  // nullopt: plain TCP
  Mark mark;                       // of the listen value
  // A PROXY v1/v2 header comes first on every connection (before TLS), from one of the
  // `proxyProtocolFrom` peers (never empty with proxyProtocol); others are closed unread.
  bool proxyProtocol = false;
  std::vector<Cidr> proxyProtocolFrom;
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
  // `lua:` — the script's function that may override the decision (on_request); the route's
  // sessions also run on_open, on_message and on_close when the script defines them.
  std::string lua;
  Mark luaMark;  // of the lua value
  Mark mark;     // of the route entry
};

enum class Policy { RoundRobin, LeastConn, RandomTwo, Hash };

struct BackendConfig {
  std::string name;
  HostPort address;
  uint32_t weight = 1;
  uint32_t maxConnections = 0;  // 0 = unlimited
  Mark mark;                    // of the address value, for errors found later (resolving)
  // Index in PoolConfig::discover of the entry that found this backend in DNS; -1 for a
  // backend written in the file. The loader only writes the latter (see proxy/control/
  // discovered_backends.h for the config a snapshot is built from).
  int discover = -1;
};

// `pools.NAME.backends[]: { discover: {...} }`: backends found in DNS and re-resolved every
// `interval`, each address one backend named after it ("10.1.2.3:9001", "[fd00::1]:9001").
enum class DiscoverFamily { Any, Ipv4, Ipv6 };

struct DiscoverConfig {
  std::string dns;             // lower-cased, no trailing dot; _service._proto.NAME when port is 0
  uint16_t port = 0;           // A/AAAA records on this port; 0: SRV records give target and port
  Duration interval{5'000};    // from the end of one resolution to the start of the next
  Duration timeout{1'000};     // per query to one resolver (whole seconds: libresolv's unit)
  Duration holdEmpty{30'000};  // NXDOMAIN or no records: the last set stays this long
  DiscoverFamily family = DiscoverFamily::Any;
  std::vector<HostPort> resolvers;  // IPv4 literals; empty: /etc/resolv.conf's nameservers
  uint32_t weight = 0;              // every backend's; 0: 1, or the SRV record's weight
  uint32_t maxConnections = 0;      // every backend's; 0 = unlimited
  Mark mark;                        // of the `discover` key
};

// What keeps a client on the backend it got first. Exactly one source per pool.
enum class StickySource { Cookie, Header, Query, SourceIp };

struct StickyCookie {
  std::string name = "WSGATE";  // an HTTP token
  bool insert = true;           // true: wsgate sets it; false: the application does
  Duration maxAge{0};           // 0 = session cookie (no Max-Age); only with insert
  std::string path = "/";       // the cookie's Path; only with insert
  bool indirect = false;        // true: the backend never sees it (stripped); only with insert
};

struct StickyConfig {
  StickySource source = StickySource::Cookie;
  StickyCookie cookie;  // source == Cookie
  std::string header;   // source == Header: the header name, lower-cased
  std::string query;    // source == Query: the query parameter name, as written
  Mark mark;            // of the `sticky` key
};

// Active health checks; present only when the pool has a `health` block.
struct HealthConfig {
  std::string path = "/health";  // request target of each probe, starts with '/'
  bool websocket = false;        // true: probe with a WebSocket upgrade to `path`
  Duration interval{2'000};      // from one probe's start to the next
  Duration timeout{1'000};       // < interval
  uint32_t rise = 2;             // consecutive successes that mark a down backend up
  uint32_t fall = 3;             // consecutive failures that mark an up backend down
  Mark mark;                     // of the `health` key
};

struct PoolConfig {
  std::string name;
  Policy policy = Policy::RoundRobin;  // Hash implies sticky with source != Cookie
  std::vector<BackendConfig> backends;
  std::vector<DiscoverConfig> discover;  // backends found in DNS, in file order
  Duration connectTimeout{2000};
  uint32_t retries = 2;
  std::optional<StickyConfig> sticky;
  std::optional<HealthConfig> health;  // nullopt: passive ejection only
  bool proxyProtocol = false;          // a PROXY v2 header first on every backend connection
  Duration slowStart{0};               // a backend back up ramps its share over this; 0 = off
  std::optional<BackendTls> tls;       // nullopt: plain TCP to the backends
  // Local IP addresses backend connections are bound to, in turn (IP literals, no port):
  // each gives its own range of local ports per backend address. Empty: the kernel picks.
  std::vector<std::string> sourceAddresses;
  std::vector<Mark> sourceAddressMarks;  // parallel: where each was written
  Mark mark;                             // of the pool's name
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
  Duration queue{5'000};  // every backend full -> longest wait for a slot, then 503; 0 = 503 now
};

struct WebSocketConfig {
  bool validateUtf8 = false;  // unmask and check text messages; invalid -> close 1007
};

struct Limits {
  // Left out of the file, the process's open-files limit decides (Runtime::maxConnections);
  // written, it is taken as it is and wsgate warns when the limit cannot carry it.
  uint64_t maxConnections = 100'000;
  bool maxConnectionsSet = false;
  uint64_t maxHeaderBytes = 16 * 1024;
  uint64_t maxHeaders = 100;
  uint64_t maxUriBytes = 8 * 1024;
  uint64_t maxMessageBytes = 16 * 1024 * 1024;
  uint64_t maxBufferBytes = 256 * 1024;
  uint64_t maxQueue = 1'000;  // per worker: requests waiting in timeouts.queue; 0 = no queue
};

// `scripting:` — the Lua file whose functions routes with `lua:` call (docs/lua.md).
struct ScriptingConfig {
  std::string file;                       // relative to the working directory, as certificates are
  uint64_t instructionLimit = 1'000'000;  // per hook call
  uint64_t memoryLimit = 64ull << 20;     // bytes per worker's Lua state
  Mark mark;                              // of the file value
};

struct AdminConfig {
  HostPort listen;  // port 0 allowed (tests)
  Mark mark;        // of the listen value
  // The bearer token every request must carry: `token` as written, or `token_file`'s
  // content without its trailing whitespace, read when the config is (re)loaded. Empty:
  // none asked for.
  std::string token;
  std::string tokenFile;  // the path it was read from; empty for `token:` or none
};

struct Config {
  std::string file;  // the file it was loaded from
  // Hex SHA-256 of the file's bytes as loaded (loadFile), for the admin's status: says
  // which version of the file runs. "" from loadString.
  std::string sha256;
  int workers = 0;  // 0 = auto (one per core)
  bool watch = false;
  LogConfig log;
  std::vector<ListenerConfig> listeners;
  std::vector<RouteConfig> routes;
  std::vector<PoolConfig> pools;  // in file order
  Timeouts timeouts;
  Limits limits;
  WebSocketConfig websocket;
  std::optional<AdminConfig> admin;  // nullopt: no admin endpoint
  std::optional<ScriptingConfig> scripting;

  const PoolConfig* findPool(std::string_view name) const;
};

}  // namespace wsgate::conf
