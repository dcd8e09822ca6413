// YAML -> Config: every key read into its field, defaults where keys are absent, and each
// mistake reported once at the FILE:LINE:COL a user would jump to.
#include "conf/loader.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsgate::conf {
namespace {

using namespace std::chrono_literals;

constexpr const char* kFile = "t.yaml";

std::vector<std::string> errorStrings(const LoadResult& r) {
  std::vector<std::string> out;
  for (const auto& e : r.errors) out.push_back(e.str());
  return out;
}

std::string joined(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) out += e.str() + "\n";
  return out;
}

// Appends the sections a test does not write itself, *after* its text, so that the line
// numbers a case expects are the lines of its own text.
std::string withDefaults(std::string yaml) {
  auto has = [&](std::string_view key) {
    return yaml.starts_with(key) || yaml.find("\n" + std::string(key)) != std::string::npos;
  };
  if (!has("listeners:")) yaml += "\nlisteners: [{name: main, listen: '127.0.0.1:0'}]";
  if (!has("routes:")) yaml += "\nroutes: [{respond: {status: 200}}]";
  return yaml + "\n";
}

std::filesystem::path sourceDir() {
  // tests/unit/conf/loader_test.cpp -> the checkout root; __FILE__ is absolute under CMake.
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
}

// Every key set to something other than its default, so each assertion proves a read.
constexpr std::string_view kFull = R"(workers: 4
watch: false
log:
  level: debug
  access: /var/log/wsgate/access.log
  format: text
listeners:
  - name: public
    listen: 0.0.0.0:8080
    proxy_protocol: false
  - name: v6
    listen: "[::1]:0"
routes:
  - match:
      host: Chat.Example.COM
      path_prefix: /ws
      header: { X-Tenant: beta, x-region: EU }
    pool: chat
  - match: { path_prefix: /internal }
    respond: { status: 403, body: "forbidden\n" }
  - pool: app
pools:
  chat:
    policy: least_conn
    backends:
      - { name: c1, address: 127.0.0.1:9001, weight: 3, max_connections: 10000 }
      - { name: c2, address: "[::1]:9002" }
    connect_timeout: 500ms
    retries: 0
    sticky:
      cookie: { name: chat_id, insert: true, max_age: 2h, path: /ws }
    health:
      path: /healthz?deep=1
      websocket: true
      interval: 5s
      timeout: 500ms
      rise: 5
      fall: 7
    slow_start: 45s
  app:
    backends:
      - { name: a1, address: app.internal:80 }
  users:
    policy: hash
    sticky: { header: X-User-ID }
    backends: [{ name: u1, address: 127.0.0.1:9101 }]
    health: {}
  rooms:
    policy: random_two
    sticky: { query: room_id }
    backends: [{ name: r1, address: 127.0.0.1:9201 }]
    slow_start: 1h
  edge:
    policy: hash
    sticky: { source_ip: true }
    backends: [{ name: e1, address: 127.0.0.1:9301 }]
  legacy:
    policy: round_robin
    sticky:
      cookie: { name: SERVERID, insert: false }
    backends: [{ name: l1, address: 127.0.0.1:9401 }]
timeouts:
  handshake: 5s
  backend_response: 15s
  idle: 2m
  ping_interval: 20s
  http_keepalive: 30s
  drain: 1h
  drain_spread: 5m
  close: 5s
  queue: 250ms
limits:
  max_connections: 5000
  max_header_bytes: 32KiB
  max_headers: 50
  max_uri_bytes: 4KB
  max_message_bytes: 1MiB
  max_buffer_bytes: 1048576
  max_queue: 250
websocket:
  validate_utf8: true
admin:
  listen: 127.0.0.1:9900
)";

TEST(Loader, ReadsEveryKeyOfAFullConfig) {
  const LoadResult r = loadString(kFull, kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.file, kFile);
  EXPECT_EQ(c.workers, 4);
  EXPECT_FALSE(c.watch);
  EXPECT_EQ(c.log.level, LogLevel::Debug);
  EXPECT_EQ(c.log.access, "/var/log/wsgate/access.log");
  EXPECT_EQ(c.log.format, LogFormat::Text);

  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[0].name, "public");
  EXPECT_EQ(c.listeners[0].listen.host, "0.0.0.0");
  EXPECT_EQ(c.listeners[0].listen.port, 8080);
  EXPECT_EQ(c.listeners[0].mark.str(), "t.yaml:9:13");
  EXPECT_EQ(c.listeners[1].name, "v6");
  EXPECT_EQ(c.listeners[1].listen.host, "::1");
  EXPECT_EQ(c.listeners[1].listen.port, 0);

  ASSERT_EQ(c.routes.size(), 3u);
  const RouteConfig& chat = c.routes[0];
  EXPECT_EQ(chat.match.host, "chat.example.com");
  EXPECT_EQ(chat.match.pathPrefix, "/ws");
  ASSERT_EQ(chat.match.headers.size(), 2u);
  EXPECT_EQ(chat.match.headers[0].name, "x-tenant");
  EXPECT_EQ(chat.match.headers[0].value, "beta");
  EXPECT_EQ(chat.match.headers[1].name, "x-region");
  EXPECT_EQ(chat.match.headers[1].value, "EU");
  EXPECT_EQ(chat.pool, "chat");
  EXPECT_FALSE(chat.respond);
  EXPECT_EQ(chat.mark.str(), "t.yaml:14:5");
  const RouteConfig& internal = c.routes[1];
  EXPECT_FALSE(internal.match.host);
  EXPECT_EQ(internal.match.pathPrefix, "/internal");
  EXPECT_TRUE(internal.pool.empty());
  ASSERT_TRUE(internal.respond);
  EXPECT_EQ(internal.respond->status, 403);
  EXPECT_EQ(internal.respond->body, "forbidden\n");
  EXPECT_EQ(c.routes[2].match.pathPrefix, "/");
  EXPECT_EQ(c.routes[2].pool, "app");

  ASSERT_EQ(c.pools.size(), 6u);
  const PoolConfig& pool = c.pools[0];
  EXPECT_EQ(pool.name, "chat");
  EXPECT_EQ(pool.mark.str(), "t.yaml:23:3");
  EXPECT_EQ(pool.policy, Policy::LeastConn);
  EXPECT_EQ(pool.connectTimeout, 500ms);
  EXPECT_EQ(pool.retries, 0u);
  ASSERT_EQ(pool.backends.size(), 2u);
  EXPECT_EQ(pool.backends[0].name, "c1");
  EXPECT_EQ(pool.backends[0].address.str(), "127.0.0.1:9001");
  EXPECT_EQ(pool.backends[0].weight, 3u);
  EXPECT_EQ(pool.backends[0].maxConnections, 10000u);
  EXPECT_EQ(pool.backends[0].mark.str(), "t.yaml:26:30");
  EXPECT_EQ(pool.backends[1].address.host, "::1");
  EXPECT_EQ(pool.backends[1].weight, 1u);
  EXPECT_EQ(pool.backends[1].maxConnections, 0u);
  ASSERT_TRUE(pool.sticky);
  EXPECT_EQ(pool.sticky->source, StickySource::Cookie);
  EXPECT_EQ(pool.sticky->cookie.name, "chat_id");
  EXPECT_TRUE(pool.sticky->cookie.insert);
  EXPECT_EQ(pool.sticky->cookie.maxAge, 2h);
  EXPECT_EQ(pool.sticky->cookie.path, "/ws");
  EXPECT_EQ(pool.sticky->header, "");
  EXPECT_EQ(pool.sticky->query, "");
  EXPECT_EQ(pool.sticky->mark.str(), "t.yaml:30:5");
  ASSERT_TRUE(pool.health);
  EXPECT_EQ(pool.health->path, "/healthz?deep=1");
  EXPECT_TRUE(pool.health->websocket);
  EXPECT_EQ(pool.health->interval, 5s);
  EXPECT_EQ(pool.health->timeout, 500ms);
  EXPECT_EQ(pool.health->rise, 5u);
  EXPECT_EQ(pool.health->fall, 7u);
  EXPECT_EQ(pool.health->mark.str(), "t.yaml:32:5");
  EXPECT_EQ(pool.slowStart, 45s);

  const PoolConfig& app = c.pools[1];
  EXPECT_EQ(app.name, "app");
  EXPECT_EQ(app.backends[0].address.str(), "app.internal:80");
  EXPECT_EQ(c.findPool("app"), &c.pools[1]);

  const PoolConfig& users = c.pools[2];
  EXPECT_EQ(users.name, "users");
  EXPECT_EQ(users.policy, Policy::Hash);
  ASSERT_TRUE(users.sticky);
  EXPECT_EQ(users.sticky->source, StickySource::Header);
  EXPECT_EQ(users.sticky->header, "x-user-id") << "stored lower-cased";
  ASSERT_TRUE(users.health) << "an empty block turns checks on";
  EXPECT_EQ(users.health->path, "/health");

  const PoolConfig& rooms = c.pools[3];
  EXPECT_EQ(rooms.policy, Policy::RandomTwo);
  ASSERT_TRUE(rooms.sticky);
  EXPECT_EQ(rooms.sticky->source, StickySource::Query);
  EXPECT_EQ(rooms.sticky->query, "room_id");
  EXPECT_EQ(rooms.slowStart, 1h);
  EXPECT_FALSE(rooms.health);

  const PoolConfig& edge = c.pools[4];
  EXPECT_EQ(edge.policy, Policy::Hash);
  ASSERT_TRUE(edge.sticky);
  EXPECT_EQ(edge.sticky->source, StickySource::SourceIp);

  const PoolConfig& legacy = c.pools[5];
  EXPECT_EQ(legacy.policy, Policy::RoundRobin);
  ASSERT_TRUE(legacy.sticky);
  EXPECT_EQ(legacy.sticky->source, StickySource::Cookie);
  EXPECT_EQ(legacy.sticky->cookie.name, "SERVERID");
  EXPECT_FALSE(legacy.sticky->cookie.insert);
  EXPECT_EQ(legacy.sticky->cookie.maxAge, 0s);
  EXPECT_EQ(legacy.sticky->cookie.path, "/");
  EXPECT_EQ(c.findPool("nope"), nullptr);

  EXPECT_EQ(c.timeouts.handshake, 5s);
  EXPECT_EQ(c.timeouts.backendResponse, 15s);
  EXPECT_EQ(c.timeouts.idle, 2min);
  EXPECT_EQ(c.timeouts.pingInterval, 20s);
  EXPECT_EQ(c.timeouts.httpKeepalive, 30s);
  EXPECT_EQ(c.timeouts.drain, 1h);
  EXPECT_EQ(c.timeouts.drainSpread, 5min);
  EXPECT_EQ(c.timeouts.close, 5s);
  EXPECT_EQ(c.timeouts.queue, 250ms);

  EXPECT_EQ(c.limits.maxConnections, 5000u);
  EXPECT_EQ(c.limits.maxHeaderBytes, 32u * 1024);
  EXPECT_EQ(c.limits.maxHeaders, 50u);
  EXPECT_EQ(c.limits.maxUriBytes, 4000u);
  EXPECT_EQ(c.limits.maxMessageBytes, 1024u * 1024);
  EXPECT_EQ(c.limits.maxBufferBytes, 1048576u);
  EXPECT_EQ(c.limits.maxQueue, 250u);

  EXPECT_TRUE(c.websocket.validateUtf8);

  ASSERT_TRUE(c.admin);
  EXPECT_EQ(c.admin->listen.str(), "127.0.0.1:9900");
  EXPECT_EQ(c.admin->mark.str(), "t.yaml:83:11");
}

TEST(Loader, AppliesDefaultsToAMinimalConfig) {
  const LoadResult r = loadString(withDefaults(""), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.workers, 0) << "auto";
  EXPECT_FALSE(c.watch);
  EXPECT_EQ(c.log.level, LogLevel::Info);
  EXPECT_EQ(c.log.access, "stdout");
  EXPECT_EQ(c.log.format, LogFormat::Json);
  EXPECT_TRUE(c.pools.empty());
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_EQ(c.routes[0].match.pathPrefix, "/");
  EXPECT_FALSE(c.routes[0].match.host);
  EXPECT_TRUE(c.routes[0].match.headers.empty());
  EXPECT_EQ(c.timeouts.handshake, 10s);
  EXPECT_EQ(c.timeouts.backendResponse, 10s);
  EXPECT_EQ(c.timeouts.idle, 60s);
  EXPECT_EQ(c.timeouts.pingInterval, 0s);
  EXPECT_EQ(c.timeouts.httpKeepalive, 60s);
  EXPECT_EQ(c.timeouts.drain, 30s);
  EXPECT_EQ(c.timeouts.drainSpread, 10s);
  EXPECT_EQ(c.timeouts.close, 2s);
  EXPECT_EQ(c.timeouts.queue, 5s);
  EXPECT_EQ(c.limits.maxConnections, 100'000u);
  EXPECT_EQ(c.limits.maxHeaderBytes, 16u * 1024);
  EXPECT_EQ(c.limits.maxHeaders, 100u);
  EXPECT_EQ(c.limits.maxUriBytes, 8u * 1024);
  EXPECT_EQ(c.limits.maxMessageBytes, 16u * 1024 * 1024);
  EXPECT_EQ(c.limits.maxBufferBytes, 256u * 1024);
  EXPECT_EQ(c.limits.maxQueue, 1000u);
  EXPECT_FALSE(c.websocket.validateUtf8);
  EXPECT_FALSE(c.admin);
}

TEST(Loader, AppliesPoolAndBackendDefaults) {
  const LoadResult r = loadString(withDefaults("pools:\n"
                                               "  app:\n"
                                               "    backends: [{name: a, address: 'h:1'}]\n"),
                                  kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  const PoolConfig& p = r.config->pools.at(0);
  EXPECT_EQ(p.policy, Policy::RoundRobin);
  EXPECT_EQ(p.connectTimeout, 2s);
  EXPECT_EQ(p.retries, 2u);
  EXPECT_FALSE(p.sticky);
  EXPECT_FALSE(p.health) << "passive ejection only";
  EXPECT_EQ(p.slowStart, 0s);
  EXPECT_TRUE(p.sourceAddresses.empty()) << "the kernel picks the source";
  EXPECT_EQ(p.backends.at(0).weight, 1u);
  EXPECT_EQ(p.backends.at(0).maxConnections, 0u);
}

TEST(Loader, ReadsSourceAddressesInOrder) {
  const LoadResult r =
      loadString(withDefaults("pools:\n"
                              "  app:\n"
                              "    backends: [{name: a, address: 'h:1'}]\n"
                              "    source_addresses: [10.0.0.2, 10.0.0.1, 'fd00::7']\n"),
                 kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_EQ(r.config->pools.at(0).sourceAddresses,
            (std::vector<std::string>{"10.0.0.2", "10.0.0.1", "fd00::7"}));
}

TEST(Loader, AppliesHealthDefaultsToAnEmptyHealthBlock) {
  const LoadResult r = loadString(withDefaults("pools:\n"
                                               "  app:\n"
                                               "    backends: [{name: a, address: 'h:1'}]\n"
                                               "    health: {}\n"),
                                  kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  const auto& health = r.config->pools.at(0).health;
  ASSERT_TRUE(health);
  EXPECT_EQ(health->path, "/health");
  EXPECT_FALSE(health->websocket);
  EXPECT_EQ(health->interval, 2s);
  EXPECT_EQ(health->timeout, 1s);
  EXPECT_EQ(health->rise, 2u);
  EXPECT_EQ(health->fall, 3u);
  EXPECT_EQ(health->mark.str(), "t.yaml:4:5");
}

TEST(Loader, AppliesCookieDefaultsToAnEmptyCookieBlock) {
  const LoadResult r = loadString(withDefaults("pools:\n"
                                               "  app:\n"
                                               "    backends: [{name: a, address: 'h:1'}]\n"
                                               "    sticky: {cookie: {}}\n"),
                                  kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  const auto& sticky = r.config->pools.at(0).sticky;
  ASSERT_TRUE(sticky);
  EXPECT_EQ(sticky->source, StickySource::Cookie);
  EXPECT_EQ(sticky->cookie.name, "WSGATE");
  EXPECT_TRUE(sticky->cookie.insert);
  EXPECT_EQ(sticky->cookie.maxAge, 0s) << "a session cookie";
  EXPECT_EQ(sticky->cookie.path, "/");
  EXPECT_FALSE(sticky->cookie.indirect) << "the backend sees the cookie unless asked";
}

TEST(Loader, ReadsCookieIndirectWithInsert) {
  for (std::string_view block : {"{indirect: true}", "{insert: true, indirect: true}"}) {
    const LoadResult r = loadString(withDefaults("pools:\n"
                                                 "  app:\n"
                                                 "    backends: [{name: a, address: 'h:1'}]\n"
                                                 "    sticky: {cookie: " +
                                                 std::string(block) + "}\n"),
                                    kFile);
    ASSERT_TRUE(r.ok()) << joined(r);
    EXPECT_TRUE(r.config->pools.at(0).sticky->cookie.indirect) << block;
  }
}

TEST(Loader, AcceptsEveryPolicyButHashWithoutSticky) {
  for (std::string_view policy : {"round_robin", "least_conn", "random_two"}) {
    const LoadResult r =
        loadString(withDefaults("pools:\n  p:\n    policy: " + std::string(policy) +
                                "\n    backends: [{name: a, address: 'h:1'}]\n"),
                   kFile);
    EXPECT_TRUE(r.ok()) << policy << "\n" << joined(r);
  }
}

TEST(Loader, AcceptsAdminOnAnEphemeralPortBesideAnEphemeralListener) {
  const LoadResult r = loadString(withDefaults("admin: {listen: '127.0.0.1:0'}\n"
                                               "listeners: [{name: a, listen: '127.0.0.1:0'}]\n"),
                                  kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  ASSERT_TRUE(r.config->admin);
  EXPECT_EQ(r.config->admin->listen.port, 0);
}

TEST(Loader, AcceptsValuesAtTheEdgesOfTheirRanges) {
  const LoadResult r = loadString(withDefaults(R"(workers: 256
watch: FALSE
timeouts: { handshake: 1ms, idle: 24h, ping_interval: 100ms, drain: 0, drain_spread: 0s,
            queue: 0s }
limits: { max_header_bytes: 1KiB, max_buffer_bytes: 1KiB, max_uri_bytes: 256, max_headers: 1,
          max_queue: 0 }
pools:
  p:
    backends: [{name: a, address: 'h:65535', weight: 256, max_connections: 0}]
    retries: 10
    slow_start: 0s
    health: {interval: 100ms, timeout: 99ms, rise: 1, fall: 100}
    sticky: {cookie: {name: '!#$%&*+-.^_`|~', max_age: 24h, path: '/a/~b!$&()*+,=:@'}}
  q:
    backends: [{name: a, address: 'h:1'}]
    slow_start: 1h
    health: {interval: 24h, timeout: 1ms, rise: 100, fall: 1}
    sticky: {query: 'Az09-._~'}
)"),
                                  kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_EQ(r.config->pools.at(0).health->timeout, 99ms);
  EXPECT_EQ(r.config->pools.at(1).health->interval, 24h);
  EXPECT_EQ(r.config->pools.at(1).slowStart, 1h);
  EXPECT_EQ(r.config->timeouts.queue, 0s);
  EXPECT_EQ(r.config->limits.maxQueue, 0u);
  EXPECT_EQ(r.config->workers, 256);
  EXPECT_EQ(r.config->timeouts.handshake, 1ms);
  EXPECT_EQ(r.config->timeouts.drain, 0ms);
  EXPECT_EQ(r.config->limits.maxUriBytes, 256u);
  EXPECT_EQ(r.config->pools.at(0).backends.at(0).weight, 256u);
}

// Timeouts where 0 switches something off (pings) or means "at once": a 0 written out loads,
// whatever minimum a non-zero value has.
struct ZeroTimeoutCase {
  std::string_view yaml;
  Duration Timeouts::*field;
};

const ZeroTimeoutCase kZeroTimeouts[] = {
    {"timeouts: {ping_interval: 0s}", &Timeouts::pingInterval},
    {"timeouts: {ping_interval: 0}", &Timeouts::pingInterval},
    {"timeouts: {ping_interval: 0ms}", &Timeouts::pingInterval},
    {"timeouts: {close: 0s}", &Timeouts::close},
    {"timeouts: {queue: 0s}", &Timeouts::queue},
    {"timeouts: {drain: 0s, drain_spread: 0s}", &Timeouts::drain},
};

TEST(Loader, AcceptsZeroForTimeoutsThatZeroSwitchesOff) {
  for (const ZeroTimeoutCase& c : kZeroTimeouts) {
    const LoadResult r = loadString(withDefaults(std::string(c.yaml)), kFile);
    ASSERT_TRUE(r.ok()) << c.yaml << "\n" << joined(r);
    EXPECT_EQ((r.config->timeouts.*c.field), 0ms) << c.yaml;
  }
}

TEST(Loader, TreatsAnEmptySectionAsAllDefaults) {
  // What is left when every line of a section is commented out.
  const LoadResult r =
      loadString(withDefaults("log:\ntimeouts:\n  # idle: 5m\nlimits:\npools:\n"), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_EQ(r.config->timeouts.idle, 60s);
}

TEST(Loader, AcceptsARouteWithoutMatchAsCatchAll) {
  const LoadResult r = loadString(withDefaults("routes:\n  - respond: {status: 404}\n"), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_EQ(r.config->routes.at(0).match.pathPrefix, "/");
  EXPECT_EQ(r.config->routes.at(0).respond->status, 404);
  EXPECT_EQ(r.config->routes.at(0).respond->body, "");
}

TEST(Loader, AcceptsBracketedIpv6RouteHostKeepingBrackets) {
  const LoadResult r =
      loadString(withDefaults("routes:\n  - {match: {host: '[::1]'}, respond: {}}\n"), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_EQ(r.config->routes.at(0).match.host, "[::1]");
}

TEST(Loader, AllowsSeveralEphemeralListenersOnTheSameHost) {
  const LoadResult r = loadString(withDefaults("listeners:\n"
                                               "  - {name: a, listen: '127.0.0.1:0'}\n"
                                               "  - {name: b, listen: '127.0.0.1:0'}\n"),
                                  kFile);
  EXPECT_TRUE(r.ok()) << joined(r);
}

TEST(Loader, AllowsUnusedPools) {
  const LoadResult r = loadString(
      withDefaults("pools:\n  spare:\n    backends: [{name: s, address: 'h:1'}]\n"), kFile);
  EXPECT_TRUE(r.ok()) << joined(r);
}

struct BadCase {
  std::string_view name;
  std::string_view yaml;    // completed by withDefaults()
  std::string_view expect;  // the one error, without the "t.yaml:" prefix
};
void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class RejectsInvalidConfig : public ::testing::TestWithParam<BadCase> {};

TEST_P(RejectsInvalidConfig, WithOneErrorAtItsPosition) {
  const BadCase& c = GetParam();
  const LoadResult r = loadString(withDefaults(std::string(c.yaml)), kFile);
  EXPECT_FALSE(r.config);
  EXPECT_EQ(errorStrings(r),
            std::vector<std::string>{std::string(kFile) + ":" + std::string(c.expect)});
}

const BadCase kBadCases[] = {
    // Unknown keys, with a hint when a known key is close.
    {"UnknownTopLevelKeyWithSuggestion", "wrkers: 4",
     "1:1: unknown key 'wrkers' in config, did you mean 'workers'?"},
    {"UnknownWebsocketKey", "websocket: {validate_utf: true}",
     "1:13: unknown key 'validate_utf' in websocket, did you mean 'validate_utf8'?"},
    {"CompoundDurationGetsOneUnit", "timeouts: {idle: 1m30s}",
     "1:18: invalid duration '1m30s' for 'idle': one number and one unit, write '90s'"},
    {"CompoundDurationInMilliseconds", "timeouts: {close: 1s500ms}",
     "1:19: invalid duration '1s500ms' for 'close': one number and one unit, write '1500ms'"},
    {"PingIntervalNotShorterThanIdle", "timeouts: {idle: 30s, ping_interval: 30s}",
     "1:38: 'ping_interval' (30s) must be shorter than 'idle' (30s): the idle timeout would "
     "close a silent client before the first ping"},
    {"PingIntervalOverDefaultIdle", "timeouts: {ping_interval: 2m}",
     "1:27: 'ping_interval' (2m) must be shorter than 'idle' (1m): the idle timeout would "
     "close a silent client before the first ping"},
    {"BackendAddressWithScheme",
     "pools:\n  p:\n    backends: [{name: a, address: 'http://127.0.0.1:8601'}]",
     "3:35: invalid address 'http://127.0.0.1:8601' for 'address': an address is host:port, "
     "without a scheme: write '127.0.0.1:8601'"},
    {"CloseTimeoutWithoutUnit", "timeouts: {close: 2}",
     "1:19: invalid duration '2' for 'close': needs a unit (ms, s, m or h), e.g. '10s'"},
    {"UnknownTopLevelKeyWithoutSuggestion", "colour: red", "1:1: unknown key 'colour' in config"},
    {"UnknownListenerKey", "listeners:\n  - {name: a, listen: '127.0.0.1:0', nmae: b}",
     "2:38: unknown key 'nmae' in listener, did you mean 'name'?"},
    {"CamelCaseKeySuggestsSnakeCase", "limits:\n  maxHeaders: 5",
     "2:3: unknown key 'maxHeaders' in limits, did you mean 'max_headers'?"},
    {"UnknownPoolKeyNamesThePool",
     "pools:\n  app:\n    backends: [{name: a, address: 'h:1'}]\n    retrys: 1",
     "4:5: unknown key 'retrys' in pool 'app', did you mean 'retries'?"},
    {"UnknownMatchKey", "routes:\n  - {match: {headers: {a: b}}, respond: {}}",
     "2:14: unknown key 'headers' in match, did you mean 'header'?"},
    {"DuplicateKey", "workers: 2\nworkers: 3", "2:1: duplicate key 'workers' (first at line 1)"},
    {"NonScalarKey", "? [a]\n: 1", "1:3: keys in 'config' must be strings, got a list"},

    // Keys interface.md defines that this version refuses rather than ignores.
    {"ScriptingWithoutFile", "scripting: {instruction_limit: 5000}",
     "1:12: scripting is missing 'file'"},
    {"ScriptingFileMissing", "scripting: {file: /nonexistent/route.lua}",
     "1:19: cannot read Lua script '/nonexistent/route.lua': No such file or directory"},
    {"ScriptingInstructionLimitTooLow", "scripting: {file: /dev/null, instruction_limit: 10}",
     "1:49: 'instruction_limit' must be between 1000 and 1000000000, got 10"},
    {"ScriptingMemoryLimitTooLow", "scripting: {file: /dev/null, memory_limit: 1000}",
     "1:44: 'memory_limit' must be between 1MiB and 1GiB, got '1000'"},
    {"ScriptingUnknownKey", "scripting: {file: /dev/null, instructions: 5}",
     "1:30: unknown key 'instructions' in scripting"},
    {"RouteLuaWithRespond",
     "scripting: {file: /dev/null}\nroutes:\n  - {respond: {}, lua: on_request}",
     "3:5: route has both 'respond' and 'lua': a Lua hook needs a route with 'pool' (it can "
     "answer locally itself, with 'status')"},
    {"RouteLuaNotAName",
     "scripting: {file: /dev/null}\npools: {p: {backends: [{name: a, address: 'h:1'}]}}\n"
     "routes:\n  - {pool: p, lua: 'a.b'}",
     "4:20: 'lua' must name a Lua function (letters, digits, '_'), got 'a.b'"},
    {"RouteLuaWithoutScripting",
     "pools: {p: {backends: [{name: a, address: 'h:1'}]}}\nroutes:\n  - {pool: p, lua: on_request}",
     "3:20: a route has 'lua' but there is no 'scripting' section naming the file that defines "
     "it"},
    {"UnknownPolicy",
     "pools:\n  p:\n    policy: round-robin\n    backends: [{name: a, address: 'h:1'}]",
     "3:13: unknown policy 'round-robin', did you mean 'round_robin'? (round_robin, "
     "least_conn, random_two or hash)"},

    // Wrong types.
    {"MapWhereStringExpected", "log:\n  level: {a: 1}",
     "2:10: 'level' must be a string, got a map"},
    {"ScalarWhereMapExpected", "log: info", "1:6: 'log' must be a map, got 'info'"},
    {"MapWhereListExpected", "listeners: {name: a}", "1:12: 'listeners' must be a list, got a map"},
    {"ListItemNotAMap", "listeners:\n  - public", "2:5: each listener must be a map, got 'public'"},
    {"MissingValue", "listeners:\n  - name: a\n    listen:\n",
     "3:5: 'listen' must be a string, got nothing"},
    {"YesIsNotABoolean", "watch: yes", "1:8: 'watch' must be true or false, got 'yes'"},
    {"WorkersNotANumber", "workers: many",
     "1:10: 'workers' must be 'auto' or an integer between 1 and 256, got 'many'"},
    {"WorkersZero", "workers: 0",
     "1:10: 'workers' must be 'auto' or an integer between 1 and 256, got '0'"},
    {"WorkersTooMany", "workers: 257",
     "1:10: 'workers' must be 'auto' or an integer between 1 and 256, got '257'"},
    {"UnknownLogLevel", "log: {level: warning}",
     "1:14: unknown log level 'warning', expected trace, debug, info, warn, error or off"},
    {"UnknownLogFormat", "log: {format: xml}",
     "1:15: unknown log format 'xml', expected json or text"},
    {"EmptyAccessLog", "log: {access: ''}",
     "1:15: 'access' must be stdout, stderr, off or a file path, got ''"},

    // Durations and sizes.
    {"DurationWithoutUnit", "timeouts:\n  idle: 10",
     "2:9: invalid duration '10' for 'idle': needs a unit (ms, s, m or h), e.g. '10s'"},
    {"DurationFraction", "timeouts: {idle: 1.5s}",
     "1:18: invalid duration '1.5s' for 'idle': fractions are not supported (write 1500ms, not "
     "1.5s)"},
    {"DurationUnknownUnit", "timeouts: {drain: 1d}",
     "1:19: invalid duration '1d' for 'drain': unknown unit (use ms, s, m or h)"},
    {"ZeroHandshake", "timeouts: {handshake: 0s}",
     "1:23: 'handshake' must be between 1ms and 24h, got '0s'"},
    {"DurationOverCap", "timeouts: {idle: 25h}",
     "1:18: 'idle' must be between 1ms and 24h, got '25h'"},
    {"PingTooOften", "timeouts: {ping_interval: 10ms}",
     "1:27: 'ping_interval' must be 0s (off) or at least 100ms, got '10ms'"},
    {"DrainSpreadOverDrain", "timeouts:\n  drain: 5s\n  drain_spread: 10s",
     "3:17: 'drain_spread' (10s) must not exceed 'drain' (5s)"},
    {"DrainBelowDefaultSpread", "timeouts:\n  drain: 5s",
     "2:10: 'drain_spread' (10s) must not exceed 'drain' (5s)"},
    {"SizeUnknownUnit", "limits:\n  max_uri_bytes: 16k",
     "2:18: invalid size '16k' for 'max_uri_bytes': unknown unit (use KiB, MiB, GiB, or KB, MB, "
     "GB)"},
    {"NegativeSize", "limits: {max_buffer_bytes: -1}",
     "1:28: invalid size '-1' for 'max_buffer_bytes': must not be negative"},
    {"SizeOverflow", "limits: {max_message_bytes: 99999999999999999999}",
     "1:29: invalid size '99999999999999999999' for 'max_message_bytes': too large"},
    {"BufferBelow1KiB", "limits: {max_buffer_bytes: 512}",
     "1:28: 'max_buffer_bytes' must be between 1KiB and 1GiB, got '512'"},
    {"HeaderBytesBelow1KiB", "limits: {max_header_bytes: 1000}",
     "1:28: 'max_header_bytes' must be between 1KiB and 1MiB, got '1000'"},
    {"HeaderBytesOver1MiB", "limits: {max_header_bytes: 2MiB}",
     "1:28: 'max_header_bytes' must be between 1KiB and 1MiB, got '2MiB'"},
    {"UriLongerThanHead", "limits: {max_header_bytes: 4KiB, max_uri_bytes: 8KiB}",
     "1:49: 'max_uri_bytes' (8KiB) must not exceed 'max_header_bytes' (4KiB): the URI is part "
     "of the head"},
    {"ZeroMaxConnections", "limits: {max_connections: 0}",
     "1:27: 'max_connections' must be between 1 and 10000000, got 0"},
    {"MaxConnectionsNotAnInteger", "limits: {max_connections: 1e5}",
     "1:27: 'max_connections' must be an integer between 1 and 10000000, got '1e5'"},

    // Listeners.
    {"NoListeners", "listeners: []", "1:12: no listeners: at least one is required"},
    {"DuplicateListenerName",
     "listeners:\n  - {name: a, listen: '127.0.0.1:1'}\n  - {name: a, listen: '127.0.0.1:2'}",
     "3:12: duplicate listener name 'a' (first at line 2)"},
    {"DuplicateListenAddress",
     "listeners:\n  - {name: a, listen: '127.0.0.1:1'}\n  - {name: b, listen: '127.0.0.1:1'}",
     "3:23: duplicate listen address 127.0.0.1:1 (also used by listener 'a' at line 2)"},
    {"ListenerMissingListen", "listeners:\n  - {name: a}", "2:5: listener is missing 'listen'"},
    {"ListenerBadName", "listeners:\n  - {name: 'a b', listen: '127.0.0.1:1'}",
     "2:12: invalid listener name 'a b': use 1 to 64 letters, digits, '_', '-' or '.'"},
    {"ListenWithoutPort", "listeners:\n  - {name: a, listen: 127.0.0.1}",
     "2:23: invalid address '127.0.0.1' for 'listen': missing port (expected host:port or "
     "[v6]:port)"},
    {"ListenIpv6WithoutBrackets", "listeners:\n  - {name: a, listen: '::1:80'}",
     "2:23: invalid address '::1:80' for 'listen': an IPv6 address needs brackets, e.g. "
     "[::1]:8080"},

    // Routes.
    {"NoRoutes", "routes: []",
     "1:9: no routes: at least one is required, or every request would be refused"},
    {"RouteWithPoolAndRespond",
     "pools: {p: {backends: [{name: a, address: 'h:1'}]}}\nroutes:\n  - pool: p\n    respond: {}",
     "3:5: route has both 'pool' and 'respond': it either forwards or answers, not both"},
    {"RouteWithNeither", "routes:\n  - match: {path_prefix: /}",
     "2:5: route needs 'pool' (forward to a pool) or 'respond' (answer directly)"},
    {"UnknownPoolWithSuggestion",
     "pools: {chat: {backends: [{name: a, address: 'h:1'}]}}\nroutes:\n  - pool: chta",
     "3:11: unknown pool 'chta', did you mean 'chat'?"},
    {"UnknownPoolWithNoPools", "routes:\n  - pool: app",
     "2:11: unknown pool 'app' (no pools are defined)"},
    {"RespondStatusTooHigh", "routes:\n  - respond: {status: 600}",
     "2:23: 'status' must be between 200 and 599, got 600"},
    {"RespondStatusInformational", "routes:\n  - respond: {status: 101}",
     "2:23: 'status' must be between 200 and 599, got 101"},
    {"BodyOnNoContent", "routes:\n  - respond: {status: 204, body: x}",
     "2:34: a 204 response cannot have a body"},
    {"PathPrefixWithoutSlash", "routes:\n  - {match: {path_prefix: ws}, respond: {}}",
     "2:27: 'path_prefix' must start with '/', got 'ws'"},
    {"PathPrefixWithQuery", "routes:\n  - {match: {path_prefix: '/a?b'}, respond: {}}",
     "2:27: 'path_prefix' cannot contain '?' or '#': only the path is matched, not the query, "
     "got '/a?b'"},
    {"HeaderNameNotAToken", "routes:\n  - {match: {header: {'x tenant': a}}, respond: {}}",
     "2:23: invalid header name 'x tenant': use letters, digits and !#$%&'*+-.^_`|~ only"},
    {"HeaderNameTwiceInDifferentCase",
     "routes:\n  - match:\n      header:\n        X-Tenant: a\n        x-tenant: b\n    respond: "
     "{}",
     "5:9: header 'x-tenant' is matched twice (first at line 4): header names are "
     "case-insensitive"},
    {"HeaderValueNotAString", "routes:\n  - {match: {header: {x-a: [1]}}, respond: {}}",
     "2:28: 'x-a' must be a string, got a list"},
    {"HostWithPort", "routes:\n  - {match: {host: 'example.com:8080'}, respond: {}}",
     "2:20: 'host' is matched without the port: write 'example.com', got 'example.com:8080'"},
    {"WildcardHost", "routes:\n  - {match: {host: '*.example.com'}, respond: {}}",
     "2:20: wildcard hosts are not supported: give each host its own route, got '*.example.com'"},
    {"Ipv6HostWithoutBrackets", "routes:\n  - {match: {host: '::1'}, respond: {}}",
     "2:20: an IPv6 host needs brackets, as in the Host header: write '[::1]'"},
    {"InvalidHost", "routes:\n  - {match: {host: 'exa mple.com'}, respond: {}}",
     "2:20: invalid host 'exa mple.com': expected a DNS name or an IP address"},

    // Pools and backends.
    {"PoolWithoutBackends", "pools:\n  p:\n    backends: []", "3:15: pool 'p' has no backends"},
    {"PoolMissingBackends", "pools:\n  p:\n    retries: 1", "3:5: pool 'p' is missing 'backends'"},
    {"PoolBadName", "pools:\n  'a/b':\n    backends: [{name: a, address: 'h:1'}]",
     "2:3: invalid pool name 'a/b': use 1 to 64 letters, digits, '_', '-' or '.'"},
    {"DuplicatePool",
     "pools:\n  p: {backends: [{name: a, address: 'h:1'}]}\n  p: {backends: [{name: "
     "a, address: 'h:1'}]}",
     "3:3: duplicate key 'p' (first at line 2)"},
    {"DuplicateBackendName",
     "pools:\n  p:\n    backends:\n      - {name: a, address: 'h:1'}\n      - {name: a, "
     "address: 'h:2'}",
     "5:16: duplicate backend name 'a' in pool 'p' (first at line 4)"},
    {"BackendMissingName", "pools:\n  p:\n    backends:\n      - {address: 'h:1'}",
     "4:9: backend is missing 'name'"},
    {"BackendPortZero", "pools:\n  p:\n    backends: [{name: a, address: 'h:0'}]",
     "3:35: invalid address 'h:0' for 'address': port 0 is only allowed for listeners"},
    {"WeightZero", "pools:\n  p:\n    backends: [{name: a, address: 'h:1', weight: 0}]",
     "3:50: 'weight' must be between 1 and 256, got 0"},
    {"WeightTooHigh", "pools:\n  p:\n    backends: [{name: a, address: 'h:1', weight: 257}]",
     "3:50: 'weight' must be between 1 and 256, got 257"},
    {"NegativeMaxConnections",
     "pools:\n  p:\n    backends: [{name: a, address: 'h:1', max_connections: -1}]",
     "3:59: 'max_connections' must be between 0 and 10000000, got -1"},
    {"TooManyRetries", "pools:\n  p:\n    backends: [{name: a, address: 'h:1'}]\n    retries: 11",
     "4:14: 'retries' must be between 0 and 10, got 11"},
    {"ConnectTimeoutWithoutUnit",
     "pools:\n  p:\n    backends: [{name: a, address: 'h:1'}]\n    connect_timeout: 2",
     "4:22: invalid duration '2' for 'connect_timeout': needs a unit (ms, s, m or h), e.g. "
     "'10s'"},

    // Queueing.
    {"NegativeQueueTimeout", "timeouts: {queue: -1s}",
     "1:19: invalid duration '-1s' for 'queue': must not be negative"},
    {"QueueTimeoutOverCap", "timeouts: {queue: 25h}",
     "1:19: 'queue' must be between 0ms and 24h, got '25h'"},
    {"NegativeMaxQueue", "limits: {max_queue: -1}",
     "1:21: 'max_queue' must be between 0 and 10000000, got -1"},
    {"MaxQueueNotAnInteger", "limits: {max_queue: 1k}",
     "1:21: 'max_queue' must be an integer between 0 and 10000000, got '1k'"},

    // Admin.
    {"AdminWithoutListen", "admin: {}", "1:8: admin is missing 'listen'"},
    {"AdminLeftEmpty", "admin:\nworkers: 2", "1:1: admin is missing 'listen'"},
    {"AdminNotAMap", "admin: 127.0.0.1:9900", "1:8: 'admin' must be a map, got '127.0.0.1:9900'"},
    {"AdminUnknownKey", "admin: {listen: '127.0.0.1:9900', tls: {}}",
     "1:35: unknown key 'tls' in admin"},
    {"AdminListenWithoutPort", "admin: {listen: localhost}",
     "1:17: invalid address 'localhost' for 'listen': missing port (expected host:port or "
     "[v6]:port)"},
    {"AdminOnAListenerAddress",
     "admin: {listen: '127.0.0.1:8080'}\nlisteners: [{name: pub, listen: '127.0.0.1:8080'}]",
     "1:17: admin listen address 127.0.0.1:8080 is also used by listener 'pub' at line 2"},
    {"AdminTokenNotAString", "admin: {listen: '127.0.0.1:9900', token: {a: b}}",
     "1:42: 'token' must be a string, got a map"},
    {"AdminTokenLeftEmpty",
     "admin:\n  listen: '127.0.0.1:9900'\n  token:", "3:3: 'token' must be a string, got nothing"},
    {"AdminTokenTooShort", "admin: {listen: '127.0.0.1:9900', token: 'short-secret'}",
     "1:42: 'token' is 12 characters long: an admin token needs at least 16"},
    {"AdminTokenWithASpace", "admin: {listen: '127.0.0.1:9900', token: 'two halves of a secret'}",
     "1:42: 'token' must be printable ASCII without spaces or control characters (it is sent "
     "as 'Authorization: Bearer TOKEN')"},
    {"AdminTokenAndTokenFile",
     "admin:\n  listen: '127.0.0.1:9900'\n  token: 0123456789abcdef\n  token_file: admin.token",
     "4:3: 'token' and 'token_file' are both set (the other at line 3): keep one; token_file "
     "keeps the secret out of the config"},

    // Documents.
    {"YamlSyntaxError", "listeners: [a, b\nroutes: []",
     "2:7: YAML syntax error: end of sequence flow not found"},
    {"BadIndentation", "workers: 4\n  watch: true", "2:8: YAML syntax error: illegal map value"},
};

INSTANTIATE_TEST_SUITE_P(Table, RejectsInvalidConfig, ::testing::ValuesIn(kBadCases),
                         [](const auto& info) { return std::string(info.param.name); });

// Cases about one pool's keys: `yaml` is appended to a pool 'p' that has one backend, so the
// case's first line is line 4 of the file.
class RejectsInvalidPoolKeys : public ::testing::TestWithParam<BadCase> {};

TEST_P(RejectsInvalidPoolKeys, WithOneErrorAtItsPosition) {
  const BadCase& c = GetParam();
  const std::string pool = "pools:\n  p:\n    backends: [{name: a, address: 'h:1'}]\n";
  const LoadResult r = loadString(withDefaults(pool + std::string(c.yaml)), kFile);
  EXPECT_FALSE(r.config);
  EXPECT_EQ(errorStrings(r),
            std::vector<std::string>{std::string(kFile) + ":" + std::string(c.expect)});
}

const BadCase kBadPoolCases[] = {
    // Policies and stickiness.
    {"HashWithoutSticky", "    policy: hash",
     "4:13: policy 'hash' needs sticky.header, sticky.query or sticky.source_ip"},
    {"HashWithStickyCookie", "    policy: hash\n    sticky: {cookie: {name: s}}",
     "4:13: policy 'hash' needs sticky.header, sticky.query or sticky.source_ip, not "
     "sticky.cookie"},
    {"HashWithABrokenStickyReportsOnlyTheSticky",
     "    policy: hash\n    sticky: {header: 'X User'}",
     "5:22: invalid header name 'X User': use letters, digits and !#$%&'*+-.^_`|~ only"},
    {"StickyWithNoSource", "    sticky: {}",
     "4:13: 'sticky' needs one of cookie, header, query or source_ip (remove it for no "
     "stickiness)"},
    {"StickyLeftEmpty", "    sticky:\n    retries: 1",
     "4:5: 'sticky' needs one of cookie, header, query or source_ip (remove it for no "
     "stickiness)"},
    {"StickyNotAMap", "    sticky: source_ip", "4:13: 'sticky' must be a map, got 'source_ip'"},
    {"StickyWithTwoSources", "    sticky:\n      cookie: {}\n      header: X-User",
     "6:7: sticky has both 'cookie' and 'header': use exactly one of cookie, header, query or "
     "source_ip"},
    {"StickySourceIpBesideQuery", "    sticky: {query: room, source_ip: true}",
     "4:27: sticky has both 'query' and 'source_ip': use exactly one of cookie, header, query "
     "or source_ip"},
    {"StickyUnknownKeyAlone", "    sticky: {cokie: {}}",
     "4:14: unknown key 'cokie' in sticky, did you mean 'cookie'?"},
    {"StickySourceIpFalse", "    sticky: {source_ip: false}",
     "4:14: 'source_ip' can only be true: remove it to key on something else, or remove "
     "'sticky' for no stickiness"},
    {"StickySourceIpNotABoolean", "    sticky: {source_ip: yes}",
     "4:25: 'source_ip' must be true or false, got 'yes'"},
    {"StickyHeaderNotAToken", "    sticky: {header: 'x:user'}",
     "4:22: invalid header name 'x:user': use letters, digits and !#$%&'*+-.^_`|~ only"},
    {"StickyHeaderEmpty", "    sticky: {header: ''}",
     "4:22: invalid header name '': use letters, digits and !#$%&'*+-.^_`|~ only"},
    {"StickyHeaderNotAString", "    sticky: {header: [x-a]}",
     "4:22: 'header' must be a string, got a list"},
    {"StickyQueryNeedsEncoding", "    sticky: {query: 'room[id]'}",
     "4:21: invalid query parameter name 'room[id]': use 1 to 64 letters, digits, '-', '.', "
     "'_' or '~'"},
    {"StickyQueryEmpty", "    sticky: {query: ''}",
     "4:21: invalid query parameter name '': use 1 to 64 letters, digits, '-', '.', '_' or "
     "'~'"},
    {"StickyCookieNotAMap", "    sticky: {cookie: WSGATE}",
     "4:22: 'cookie' must be a map, got 'WSGATE'"},
    {"CookieUnknownKey", "    sticky: {cookie: {nam: s}}",
     "4:23: unknown key 'nam' in cookie, did you mean 'name'?"},
    {"CookieNameNotAToken", "    sticky: {cookie: {name: 'my=id'}}",
     "4:29: invalid cookie name 'my=id': use letters, digits and !#$%&'*+-.^_`|~ only"},
    {"CookieNameEmpty", "    sticky: {cookie: {name: ''}}",
     "4:29: invalid cookie name '': use letters, digits and !#$%&'*+-.^_`|~ only"},
    {"CookieInsertNotABoolean", "    sticky: {cookie: {insert: on}}",
     "4:31: 'insert' must be true or false, got 'on'"},
    {"CookieMaxAgeWithoutUnit", "    sticky: {cookie: {max_age: 3600}}",
     "4:32: invalid duration '3600' for 'max_age': needs a unit (ms, s, m or h), e.g. '10s'"},
    {"CookieMaxAgeOverCap", "    sticky: {cookie: {max_age: 25h}}",
     "4:32: 'max_age' must be between 0ms and 24h, got '25h'"},
    {"CookiePathWithoutSlash", "    sticky: {cookie: {path: ws}}",
     "4:29: 'path' must start with '/', got 'ws'"},
    {"CookiePathWithSemicolon", "    sticky: {cookie: {path: '/a;Domain=x'}}",
     "4:29: 'path' cannot contain ';', spaces, control or non-ASCII characters, got "
     "'/a;Domain=x'"},
    {"CookiePathWithSpace", "    sticky: {cookie: {path: '/a b'}}",
     "4:29: 'path' cannot contain ';', spaces, control or non-ASCII characters, got '/a b'"},
    {"CookieMaxAgeWithoutInsert", "    sticky:\n      cookie: {max_age: 1h, insert: false}",
     "5:16: 'max_age' only applies when wsgate sets the cookie (insert: true)"},
    {"CookiePathWithoutInsert",
     "    sticky:\n      cookie:\n        insert: false\n        path: /",
     "7:9: 'path' only applies when wsgate sets the cookie (insert: true)"},
    {"CookieIndirectWithoutInsert", "    sticky:\n      cookie: {insert: false, indirect: true}",
     "5:31: 'indirect' only applies when wsgate sets the cookie (insert: true)"},
    {"CookieIndirectNotABool", "    sticky: {cookie: {indirect: yes please}}",
     "4:33: 'indirect' must be true or false, got 'yes please'"},

    // Health checks.
    {"HealthLeftEmpty", "    health:\n    retries: 1",
     "4:5: 'health' is empty: write 'health: {}' for checks with the defaults, or remove it "
     "to turn them off"},
    {"HealthNotAMap", "    health: /health", "4:13: 'health' must be a map, got '/health'"},
    {"HealthUnknownKey", "    health: {intervall: 5s}",
     "4:14: unknown key 'intervall' in health, did you mean 'interval'?"},
    {"HealthPathWithoutSlash", "    health: {path: health}",
     "4:20: 'path' must start with '/', got 'health'"},
    {"HealthPathWithFragment", "    health: {path: '/health#x'}",
     "4:20: 'path' cannot contain '#', spaces, control or non-ASCII characters, got "
     "'/health#x'"},
    {"HealthPathNonAscii", "    health: {path: \"/sant\u00e9\"}",
     "4:20: 'path' cannot contain '#', spaces, control or non-ASCII characters, got "
     "'/sant\xc3\xa9'"},
    {"HealthWebsocketNotABoolean", "    health: {websocket: 1}",
     "4:25: 'websocket' must be true or false, got '1'"},
    {"HealthIntervalTooShort", "    health: {interval: 50ms, timeout: 10ms}",
     "4:24: 'interval' must be between 100ms and 24h, got '50ms'"},
    {"HealthZeroTimeout", "    health: {timeout: 0s}",
     "4:23: 'timeout' must be between 1ms and 24h, got '0s'"},
    {"HealthTimeoutNotBelowInterval", "    health:\n      interval: 2s\n      timeout: 2s",
     "6:16: 'timeout' (2s) must be shorter than 'interval' (2s)"},
    {"HealthIntervalBelowDefaultTimeout", "    health:\n      interval: 500ms",
     "5:17: 'timeout' (1s) must be shorter than 'interval' (500ms)"},
    {"HealthRiseZero", "    health: {rise: 0}", "4:20: 'rise' must be between 1 and 100, got 0"},
    {"HealthFallTooHigh", "    health: {fall: 101}",
     "4:20: 'fall' must be between 1 and 100, got 101"},

    // Slow start.
    {"SlowStartOverAnHour", "    slow_start: 2h",
     "4:17: 'slow_start' must be between 0ms and 1h, got '2h'"},
    {"SlowStartWithoutUnit", "    slow_start: 30",
     "4:17: invalid duration '30' for 'slow_start': needs a unit (ms, s, m or h), e.g. '10s'"},

    // Source addresses.
    {"SourceAddressWithPort", "    source_addresses: ['10.0.0.1:5000']",
     "4:24: '10.0.0.1:5000' is not an IP address (no port: the kernel picks one per "
     "connection)"},
    {"SourceAddressAName", "    source_addresses: [gateway.internal]",
     "4:24: 'gateway.internal' is not an IP address (write an IPv4 or IPv6 literal of this "
     "host)"},
    {"SourceAddressTwice", "    source_addresses: [10.0.0.1, 10.0.0.2, 10.0.0.1]",
     "4:44: '10.0.0.1' is listed twice in source_addresses"},
    {"SourceAddressesEmpty", "    source_addresses: []",
     "4:23: 'source_addresses' is empty: list this host's addresses, or leave it out"},
    {"SourceAddressesNotAList", "    source_addresses: 10.0.0.1",
     "4:23: 'source_addresses' must be a list, got '10.0.0.1'"},
};

INSTANTIATE_TEST_SUITE_P(Table, RejectsInvalidPoolKeys, ::testing::ValuesIn(kBadPoolCases),
                         [](const auto& info) { return std::string(info.param.name); });

// The admin listener without a token is accepted, with a warning when it is reachable from
// other hosts.
struct AdminWarningCase {
  std::string_view listen;
  bool warns;
};
void PrintTo(const AdminWarningCase& c, std::ostream* os) { *os << c.listen; }

class WarnsAboutAnOpenAdmin : public ::testing::TestWithParam<AdminWarningCase> {};

TEST_P(WarnsAboutAnOpenAdmin, OnlyOffLoopbackWithoutAToken) {
  const AdminWarningCase& c = GetParam();
  const LoadResult r =
      loadString(withDefaults("admin: {listen: '" + std::string(c.listen) + "'}"), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  ASSERT_TRUE(r.config->admin);
  EXPECT_EQ(r.config->admin->token, "");
  if (!c.warns) {
    EXPECT_TRUE(r.warnings.empty()) << r.warnings.front().str();
    return;
  }
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].str(), "t.yaml:1:17: admin listens on " + r.config->admin->listen.str() +
                                     " without a token: the admin API (reload, drain, status, "
                                     "metrics) would be open to the network; set "
                                     "admin.token_file, or listen on 127.0.0.1");
}

const AdminWarningCase kAdminWarnings[] = {
    {"0.0.0.0:9900", true},
    {"[::]:9900", true},
    {"10.0.0.5:9900", true},
    {"admin.internal:9900", true},
    {"[::ffff:10.0.0.1]:9900", true},
    {"127.0.0.1:9900", false},
    {"127.3.4.5:0", false},
    {"[::1]:9900", false},
    {"localhost:9900", false},
    {"LocalHost:9900", false},
    {"[::ffff:127.0.0.1]:9900", false},
};

INSTANTIATE_TEST_SUITE_P(Table, WarnsAboutAnOpenAdmin, ::testing::ValuesIn(kAdminWarnings));

TEST(Loader, AcceptsAnOpenAdminWithATokenWithoutAWarning) {
  const LoadResult r =
      loadString(withDefaults("admin: {listen: '0.0.0.0:9900', token: 'x7Gq-2mPz_9LwR4t'}"), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_TRUE(r.warnings.empty()) << r.warnings.front().str();
  EXPECT_EQ(r.config->admin->token, "x7Gq-2mPz_9LwR4t");
  EXPECT_EQ(r.config->admin->tokenFile, "");
}

TEST(Loader, KeepsWarningsBesideErrors) {
  const LoadResult r =
      loadString(withDefaults("workers: x\nadmin: {listen: '0.0.0.0:9900'}"), kFile);
  EXPECT_EQ(r.errors.size(), 1u);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].mark.str(), "t.yaml:2:17");
}

// token_file: read at each load from a fresh directory (relative paths, so the columns a case
// expects do not depend on where the directory is).
class TokenFiles : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    previous_ = std::filesystem::current_path();
    std::string dir = (std::filesystem::temp_directory_path() / "wsgate_token_XXXXXX").string();
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    std::ofstream(dir_ / "good.token") << "s3cr3t-0123456789abcdef\n";
    std::ofstream(dir_ / "crlf.token") << "s3cr3t-0123456789abcdef \t\r\n\r\n";
    std::ofstream(dir_ / "empty.token") << "";
    std::ofstream(dir_ / "blank.token") << " \n\n";
    std::ofstream(dir_ / "short.token") << "0123456789abcde\n";
    std::ofstream(dir_ / "two-lines.token") << "0123456789abcdef\n0123456789abcdef\n";
    std::ofstream(dir_ / "huge.token") << std::string(5000, 'a');
    std::filesystem::create_directory(dir_ / "dir.token");
    std::filesystem::current_path(dir_);
  }
  static void TearDownTestSuite() {
    std::filesystem::current_path(previous_);
    std::filesystem::remove_all(dir_);
  }

  // An admin whose `token_file` value follows "  token_file: " on line 3.
  static std::string adminWithTokenFile(std::string_view file) {
    return withDefaults("admin:\n  listen: '127.0.0.1:9900'\n  token_file: " + std::string(file));
  }

  static inline std::filesystem::path dir_;
  static inline std::filesystem::path previous_;
};

TEST_F(TokenFiles, ReadsTheTokenWithoutItsTrailingWhitespace) {
  for (const char* file : {"good.token", "crlf.token"}) {
    const LoadResult r = loadString(adminWithTokenFile(file), kFile);
    ASSERT_TRUE(r.ok()) << joined(r);
    EXPECT_EQ(r.config->admin->token, "s3cr3t-0123456789abcdef") << file;
    EXPECT_EQ(r.config->admin->tokenFile, file);
  }
}

TEST_F(TokenFiles, ReadsTheFileAgainAtEachLoad) {
  std::ofstream(dir_ / "rotated.token") << "first-0123456789abcdef\n";
  const std::string yaml = adminWithTokenFile("rotated.token");
  EXPECT_EQ(loadString(yaml, kFile).config->admin->token, "first-0123456789abcdef");
  std::ofstream(dir_ / "rotated.token") << "second-0123456789abcdef\n";
  EXPECT_EQ(loadString(yaml, kFile).config->admin->token, "second-0123456789abcdef");
}

TEST_F(TokenFiles, AnOpenAdminWithATokenFileIsNotWarnedAbout) {
  const LoadResult r =
      loadString(withDefaults("admin:\n  listen: '0.0.0.0:9900'\n  token_file: good.token"), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_TRUE(r.warnings.empty());
}

class RejectsInvalidTokenFile : public TokenFiles, public ::testing::WithParamInterface<BadCase> {};

TEST_P(RejectsInvalidTokenFile, WithOneErrorAtItsPosition) {
  const BadCase& c = GetParam();
  const LoadResult r = loadString(adminWithTokenFile(c.yaml), kFile);
  EXPECT_FALSE(r.config);
  EXPECT_EQ(errorStrings(r),
            std::vector<std::string>{std::string(kFile) + ":" + std::string(c.expect)});
}

const BadCase kBadTokenFiles[] = {
    {"Missing", "missing.token",
     "3:15: cannot read token file 'missing.token': No such file or directory"},
    {"Directory", "dir.token", "3:15: cannot read token file 'dir.token': it is a directory"},
    {"Empty", "empty.token", "3:15: token file 'empty.token' is empty"},
    {"OnlyWhitespace", "blank.token", "3:15: token file 'blank.token' is empty"},
    {"TooShort", "short.token",
     "3:15: the token in 'short.token' is 15 characters long: an admin token needs at least 16"},
    {"TwoLines", "two-lines.token",
     "3:15: the token in 'two-lines.token' must be printable ASCII without spaces or control "
     "characters (it is sent as 'Authorization: Bearer TOKEN')"},
    {"Huge", "huge.token",
     "3:15: the token in 'huge.token' is longer than 4096 characters: that is not a token"},
    {"NotAString", "[a.token]", "3:15: 'token_file' must be a string, got a list"},
    {"EmptyPath", "''", "3:15: 'token_file' must be a file path, got ''"},
    {"AlsoAToken", "good.token\n  token: 0123456789abcdef",
     "4:3: 'token' and 'token_file' are both set (the other at line 3): keep one; token_file "
     "keeps the secret out of the config"},
};

INSTANTIATE_TEST_SUITE_P(Table, RejectsInvalidTokenFile, ::testing::ValuesIn(kBadTokenFiles),
                         [](const auto& info) { return std::string(info.param.name); });

// TLS keys name files that the loader opens but does not parse (proxy/tls does). These tests
// run in a fresh directory that holds them, so the YAML names them by relative path and the
// columns a case expects do not depend on where the temporary directory is.
class TlsFiles : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    previous_ = std::filesystem::current_path();
    std::string dir = (std::filesystem::temp_directory_path() / "wsgate_tls_XXXXXX").string();
    ASSERT_NE(::mkdtemp(dir.data()), nullptr);
    dir_ = dir;
    for (const char* name : {"a.pem", "a.key", "b.pem", "b.key", "ca.pem", "clients.pem",
                             "client.pem", "client.key"}) {
      std::ofstream(dir_ / name) << "not parsed by the loader\n";
    }
    std::filesystem::create_directory(dir_ / "certs");
    std::filesystem::current_path(dir_);
  }
  static void TearDownTestSuite() {
    std::filesystem::current_path(previous_);
    std::filesystem::remove_all(dir_);
  }

  static inline std::filesystem::path dir_;
  static inline std::filesystem::path previous_;
};

// A listener 'a' whose `tls` value follows "    tls: " on line 4.
std::string listenerWithTls(std::string_view tls) {
  return withDefaults("listeners:\n  - name: a\n    listen: '127.0.0.1:0'\n    tls: " +
                      std::string(tls));
}

// A pool 'p' whose `tls` value follows "    tls: " on line 4.
std::string poolWithTls(std::string_view tls) {
  return withDefaults("pools:\n  p:\n    backends: [{name: a, address: 'h:1'}]\n    tls: " +
                      std::string(tls));
}

TEST_F(TlsFiles, ReadsEveryListenerAndPoolTlsKeyWithItsMarks) {
  const LoadResult r = loadString(R"(listeners:
  - name: public
    listen: 0.0.0.0:8443
    tls:
      certificates:
        - { cert: a.pem, key: a.key }
        - cert: b.pem
          key: b.key
      min_version: "1.3"
      alpn: [http/1.1]
      client_ca: clients.pem
      client_cert: required
      ktls: true
routes: [{pool: app}]
pools:
  app:
    backends: [{ name: a1, address: app.internal:443 }]
    tls:
      verify: true
      ca: ca.pem
      sni: App.Internal
      cert: client.pem
      key: client.key
      min_version: 1.3
)",
                                  kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  const auto& listener = r.config->listeners.at(0).tls;
  ASSERT_TRUE(listener);
  ASSERT_EQ(listener->certificates.size(), 2u);
  EXPECT_EQ(listener->certificates[0].cert, "a.pem");
  EXPECT_EQ(listener->certificates[0].key, "a.key");
  EXPECT_EQ(listener->certificates[0].mark.str(), "t.yaml:6:11");
  EXPECT_EQ(listener->certificates[1].cert, "b.pem");
  EXPECT_EQ(listener->certificates[1].key, "b.key");
  EXPECT_EQ(listener->certificates[1].mark.str(), "t.yaml:7:11");
  EXPECT_EQ(listener->minVersion, TlsVersion::V1_3);
  EXPECT_EQ(listener->alpn, std::vector<std::string>{"http/1.1"});
  EXPECT_EQ(listener->clientCa, "clients.pem");
  EXPECT_EQ(listener->clientCert, ClientCertMode::Required);
  EXPECT_TRUE(listener->ktls);
  EXPECT_EQ(listener->mark.str(), "t.yaml:4:5");

  const auto& pool = r.config->pools.at(0).tls;
  ASSERT_TRUE(pool);
  EXPECT_TRUE(pool->verify);
  EXPECT_EQ(pool->ca, "ca.pem");
  EXPECT_EQ(pool->sni, "app.internal") << "stored lower-cased";
  EXPECT_EQ(pool->cert, "client.pem");
  EXPECT_EQ(pool->key, "client.key");
  EXPECT_EQ(pool->minVersion, TlsVersion::V1_3);
  EXPECT_EQ(pool->mark.str(), "t.yaml:18:5");
}

TEST_F(TlsFiles, LeavesTlsOffWhereItIsNotWritten) {
  const LoadResult r =
      loadString(withDefaults("pools:\n  p:\n    backends: [{name: a, address: 'h:1'}]\n"), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_FALSE(r.config->listeners.at(0).tls);
  EXPECT_FALSE(r.config->pools.at(0).tls);
}

struct ListenerTlsCase {
  std::string_view name;
  std::string_view tls;  // the listener's `tls` value
  std::vector<std::pair<std::string, std::string>> certificates;
  TlsVersion minVersion = TlsVersion::V1_2;
  std::string clientCa;
  ClientCertMode clientCert = ClientCertMode::Off;
  bool ktls = false;
};

class AcceptsListenerTls : public TlsFiles,
                           public ::testing::WithParamInterface<ListenerTlsCase> {};

TEST_P(AcceptsListenerTls, AndReadsIt) {
  const ListenerTlsCase& c = GetParam();
  const LoadResult r = loadString(listenerWithTls(c.tls), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  const auto& tls = r.config->listeners.at(0).tls;
  ASSERT_TRUE(tls);
  std::vector<std::pair<std::string, std::string>> certificates;
  for (const auto& certificate : tls->certificates) {
    certificates.emplace_back(certificate.cert, certificate.key);
  }
  EXPECT_EQ(certificates, c.certificates);
  EXPECT_EQ(tls->minVersion, c.minVersion);
  EXPECT_EQ(tls->alpn, std::vector<std::string>{"http/1.1"});
  EXPECT_EQ(tls->clientCa, c.clientCa);
  EXPECT_EQ(tls->clientCert, c.clientCert);
  EXPECT_EQ(tls->ktls, c.ktls);
}

const ListenerTlsCase kGoodListenerTls[] = {
    {"OneCertificateWithEveryDefault",
     "{certificates: [{cert: a.pem, key: a.key}]}",
     {{"a.pem", "a.key"}}},
    {"SeveralCertificatesInFileOrder",
     "\n      certificates:\n        - {cert: b.pem, key: b.key}\n        - {key: a.key, cert: "
     "a.pem}",
     {{"b.pem", "b.key"}, {"a.pem", "a.key"}}},
    {"MinVersionAsAFloat",
     "{certificates: [{cert: a.pem, key: a.key}], min_version: 1.3}",
     {{"a.pem", "a.key"}},
     TlsVersion::V1_3},
    {"MinVersionAsAString",
     "{certificates: [{cert: a.pem, key: a.key}], min_version: '1.2'}",
     {{"a.pem", "a.key"}},
     TlsVersion::V1_2},
    {"AlpnHttp11",
     "{certificates: [{cert: a.pem, key: a.key}], alpn: [http/1.1]}",
     {{"a.pem", "a.key"}}},
    {"ClientCaMakesClientCertOptional",
     "{certificates: [{cert: a.pem, key: a.key}], client_ca: clients.pem}",
     {{"a.pem", "a.key"}},
     TlsVersion::V1_2,
     "clients.pem",
     ClientCertMode::Optional},
    {"ClientCertOptional",
     "{certificates: [{cert: a.pem, key: a.key}], client_ca: clients.pem, client_cert: "
     "optional}",
     {{"a.pem", "a.key"}},
     TlsVersion::V1_2,
     "clients.pem",
     ClientCertMode::Optional},
    {"ClientCertRequired",
     "{certificates: [{cert: a.pem, key: a.key}], client_ca: clients.pem, client_cert: "
     "required}",
     {{"a.pem", "a.key"}},
     TlsVersion::V1_2,
     "clients.pem",
     ClientCertMode::Required},
    {"ClientCertOffWithoutClientCa",
     "{certificates: [{cert: a.pem, key: a.key}], client_cert: off}",
     {{"a.pem", "a.key"}}},
    {"Ktls",
     "{certificates: [{cert: a.pem, key: a.key}], ktls: true}",
     {{"a.pem", "a.key"}},
     TlsVersion::V1_2,
     "",
     ClientCertMode::Off,
     true},
    {"KtlsFalse", "{certificates: [{cert: a.pem, key: a.key}], ktls: false}", {{"a.pem", "a.key"}}},
    {"PathWithDirectories",
     "{certificates: [{cert: ./certs/../a.pem, key: a.key}]}",
     {{"./certs/../a.pem", "a.key"}}},
};

INSTANTIATE_TEST_SUITE_P(Table, AcceptsListenerTls, ::testing::ValuesIn(kGoodListenerTls),
                         [](const auto& info) { return std::string(info.param.name); });

struct PoolTlsCase {
  std::string_view name;
  std::string_view tls;  // the pool's `tls` value
  bool verify = true;
  std::string ca;
  std::string sni;
  std::string cert;
  std::string key;
  TlsVersion minVersion = TlsVersion::V1_2;
};

class AcceptsPoolTls : public TlsFiles, public ::testing::WithParamInterface<PoolTlsCase> {};

TEST_P(AcceptsPoolTls, AndReadsIt) {
  const PoolTlsCase& c = GetParam();
  const LoadResult r = loadString(poolWithTls(c.tls), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  const auto& tls = r.config->pools.at(0).tls;
  ASSERT_TRUE(tls);
  EXPECT_EQ(tls->verify, c.verify);
  EXPECT_EQ(tls->ca, c.ca);
  EXPECT_EQ(tls->sni, c.sni);
  EXPECT_EQ(tls->cert, c.cert);
  EXPECT_EQ(tls->key, c.key);
  EXPECT_EQ(tls->minVersion, c.minVersion);
}

const PoolTlsCase kGoodPoolTls[] = {
    {"EmptyMapIsEveryDefault", "{}"},
    {"VerifyOff", "{verify: false}", false},
    {"OwnCa", "{ca: ca.pem}", true, "ca.pem"},
    {"SniLowerCased", "{sni: Chat.Internal}", true, "", "chat.internal"},
    {"ClientCertificate", "{cert: client.pem, key: client.key}", true, "", "", "client.pem",
     "client.key"},
    {"MinVersion13", "{min_version: 1.3}", true, "", "", "", "", TlsVersion::V1_3},
    {"SniWithoutVerify", "{verify: false, sni: app.internal}", false, "", "app.internal"},
};

INSTANTIATE_TEST_SUITE_P(Table, AcceptsPoolTls, ::testing::ValuesIn(kGoodPoolTls),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(TlsFiles, ReadsRelativePathsFromTheWorkingDirectoryNotTheConfigFiles) {
  // The config sits in certs/, the files beside the working directory.
  const std::filesystem::path config = dir_ / "certs" / "wsgate.yaml";
  std::ofstream(config) << listenerWithTls("{certificates: [{cert: a.pem, key: a.key}]}");
  LoadResult r = loadFile(config.string());
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_EQ(r.config->listeners.at(0).tls->certificates.at(0).cert, "a.pem");

  std::filesystem::current_path(dir_ / "certs");
  r = loadFile(config.string());
  std::filesystem::current_path(dir_);
  EXPECT_EQ(errorStrings(r).at(0), config.string() +
                                       ":4:33: cannot read certificate file 'a.pem': No such "
                                       "file or directory");
}

TEST_F(TlsFiles, AcceptsAbsolutePaths) {
  const std::string cert = (dir_ / "a.pem").string();
  const std::string key = (dir_ / "a.key").string();
  const LoadResult r = loadString(
      listenerWithTls("{certificates: [{cert: '" + cert + "', key: '" + key + "'}]}"), kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  EXPECT_EQ(r.config->listeners.at(0).tls->certificates.at(0).cert, cert);
  EXPECT_EQ(r.config->listeners.at(0).tls->certificates.at(0).key, key);
}

TEST_F(TlsFiles, ReportsAFileItCannotOpenForReading) {
  const std::filesystem::path locked = dir_ / "locked.key";
  std::ofstream(locked) << "secret\n";
  std::filesystem::permissions(locked, std::filesystem::perms::none);
  const std::string want =
      "t.yaml:4:45: cannot read certificate file 'locked.key': Permission denied";
  // Root reads a file whatever its mode (as CI runs): the load then runs in a child that
  // gave up root for nobody, and reports through its exit status.
  const bool asRoot = ::geteuid() == 0;
  const pid_t child = asRoot ? ::fork() : 0;
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (asRoot) {
      // nobody must reach the directory and the other files; only locked.key stays shut.
      namespace fs = std::filesystem;
      fs::permissions(dir_, fs::perms::all & ~fs::perms::others_write & ~fs::perms::group_write);
      for (const auto& f : fs::directory_iterator(dir_)) {
        if (f.path() != locked)
          fs::permissions(f.path(), fs::perms::others_read, fs::perm_options::add);
      }
      if (::setuid(65534) != 0) ::_exit(2);
    }
    const LoadResult r =
        loadString(listenerWithTls("{certificates: [{cert: a.pem, key: locked.key}]}"), kFile);
    const bool ok = errorStrings(r) == std::vector<std::string>{want};
    if (asRoot) ::_exit(ok ? 0 : 1);
    EXPECT_TRUE(ok) << (errorStrings(r).empty() ? "no error" : errorStrings(r).front());
  } else {
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "the child (uid nobody) did not get: " << want;
  }
  std::filesystem::remove(locked);
}

class RejectsInvalidListenerTls : public TlsFiles, public ::testing::WithParamInterface<BadCase> {};

TEST_P(RejectsInvalidListenerTls, WithOneErrorAtItsPosition) {
  const BadCase& c = GetParam();
  const LoadResult r = loadString(listenerWithTls(c.yaml), kFile);
  EXPECT_FALSE(r.config);
  EXPECT_EQ(errorStrings(r),
            std::vector<std::string>{std::string(kFile) + ":" + std::string(c.expect)});
}

// `yaml` is the listener's `tls` value; "    tls: " puts its first character at 4:10.
const BadCase kBadListenerTls[] = {
    // The block and its certificates.
    {"NotAMap", "true", "4:10: 'tls' must be a map, got 'true'"},
    {"LeftEmpty", "", "4:5: tls is missing 'certificates'"},
    {"WithoutCertificates", "{min_version: '1.3'}", "4:10: tls is missing 'certificates'"},
    {"EmptyCertificates", "{certificates: []}",
     "4:25: 'certificates' is empty: a TLS listener needs at least one cert and key"},
    {"CertificatesNotAList", "{certificates: {cert: a.pem, key: a.key}}",
     "4:25: 'certificates' must be a list, got a map"},
    {"CertificateNotAMap", "{certificates: [a.pem]}",
     "4:26: each certificate must be a map, got 'a.pem'"},
    {"CertificateMissingCert", "{certificates: [{key: a.key}]}",
     "4:26: certificate is missing 'cert'"},
    {"CertificateMissingKey", "{certificates: [{cert: a.pem}]}",
     "4:26: certificate is missing 'key'"},
    {"SecondCertificateMissingKey",
     "\n      certificates:\n        - {cert: a.pem, key: a.key}\n        - cert: b.pem",
     "7:11: certificate is missing 'key'"},
    {"UnknownCertificateKeyWithSuggestion", "{certificates: [{cert: a.pem, key: a.key, kye: x}]}",
     "4:52: unknown key 'kye' in certificate, did you mean 'key'?"},
    {"UnknownKeyWithSuggestion", "{certificates: [{cert: a.pem, key: a.key}], min_versoin: '1.3'}",
     "4:54: unknown key 'min_versoin' in tls, did you mean 'min_version'?"},

    // Files: opened, not parsed.
    {"CertFileMissing", "{certificates: [{cert: nowhere.pem, key: a.key}]}",
     "4:33: cannot read certificate file 'nowhere.pem': No such file or directory"},
    {"KeyFileMissing", "{certificates: [{cert: a.pem, key: nowhere.key}]}",
     "4:45: cannot read certificate file 'nowhere.key': No such file or directory"},
    {"CertInAMissingDirectory", "{certificates: [{cert: /nonexistent/a.pem, key: a.key}]}",
     "4:33: cannot read certificate file '/nonexistent/a.pem': No such file or directory"},
    {"CertIsADirectory", "{certificates: [{cert: certs, key: a.key}]}",
     "4:33: cannot read certificate file 'certs': it is a directory"},
    {"CertPathEmpty", "{certificates: [{cert: '', key: a.key}]}",
     "4:33: 'cert' must be a file path, got ''"},
    {"CertPathNotAString", "{certificates: [{cert: [a.pem], key: a.key}]}",
     "4:33: 'cert' must be a string, got a list"},
    {"ClientCaFileMissing", "{certificates: [{cert: a.pem, key: a.key}], client_ca: nowhere.pem}",
     "4:65: cannot read certificate file 'nowhere.pem': No such file or directory"},

    // Versions and ALPN.
    {"MinVersion11", "{certificates: [{cert: a.pem, key: a.key}], min_version: 1.1}",
     "4:67: 'min_version' must be '1.2' or '1.3', got '1.1': TLS versions older than 1.2 are "
     "not supported"},
    {"MinVersion10", "{certificates: [{cert: a.pem, key: a.key}], min_version: '1.0'}",
     "4:67: 'min_version' must be '1.2' or '1.3', got '1.0': TLS versions older than 1.2 are "
     "not supported"},
    {"MinVersionUnknown", "{certificates: [{cert: a.pem, key: a.key}], min_version: TLSv1.3}",
     "4:67: 'min_version' must be '1.2' or '1.3', got 'TLSv1.3'"},
    {"MinVersionNotAScalar", "{certificates: [{cert: a.pem, key: a.key}], min_version: [1.2]}",
     "4:67: 'min_version' must be '1.2' or '1.3', got a list"},
    {"AlpnH2", "{certificates: [{cert: a.pem, key: a.key}], alpn: [h2, http/1.1]}",
     "4:61: 'h2' is not supported; alpn may only list http/1.1"},
    {"AlpnEmpty", "{certificates: [{cert: a.pem, key: a.key}], alpn: []}",
     "4:60: 'alpn' is empty: write [http/1.1], or leave it out for the same"},
    {"AlpnNotAList", "{certificates: [{cert: a.pem, key: a.key}], alpn: http/1.1}",
     "4:60: 'alpn' must be a list, got 'http/1.1'"},

    // Client certificates.
    {"ClientCertRequiredWithoutClientCa",
     "{certificates: [{cert: a.pem, key: a.key}], client_cert: required}",
     "4:67: 'client_cert: required' needs 'client_ca', the CAs client certificates are "
     "verified against"},
    {"ClientCertOptionalWithoutClientCa",
     "{certificates: [{cert: a.pem, key: a.key}], client_cert: optional}",
     "4:67: 'client_cert: optional' needs 'client_ca', the CAs client certificates are "
     "verified against"},
    {"ClientCertOffWithClientCa",
     "{certificates: [{cert: a.pem, key: a.key}], client_ca: ca.pem, client_cert: off}",
     "4:54: 'client_ca' is unused with 'client_cert: off': remove one of them"},
    {"ClientCertUnknownModeWithSuggestion",
     "{certificates: [{cert: a.pem, key: a.key}], client_ca: ca.pem, client_cert: require}",
     "4:86: unknown client_cert mode 'require', did you mean 'required'? (optional, required "
     "or off)"},
    {"KtlsNotABoolean", "{certificates: [{cert: a.pem, key: a.key}], ktls: yes}",
     "4:60: 'ktls' must be true or false, got 'yes'"},
};

INSTANTIATE_TEST_SUITE_P(Table, RejectsInvalidListenerTls, ::testing::ValuesIn(kBadListenerTls),
                         [](const auto& info) { return std::string(info.param.name); });

class RejectsInvalidPoolTls : public TlsFiles, public ::testing::WithParamInterface<BadCase> {};

TEST_P(RejectsInvalidPoolTls, WithOneErrorAtItsPosition) {
  const BadCase& c = GetParam();
  const LoadResult r = loadString(poolWithTls(c.yaml), kFile);
  EXPECT_FALSE(r.config);
  EXPECT_EQ(errorStrings(r),
            std::vector<std::string>{std::string(kFile) + ":" + std::string(c.expect)});
}

// `yaml` is the pool's `tls` value; "    tls: " puts its first character at 4:10.
const BadCase kBadPoolTls[] = {
    {"NotAMap", "true", "4:10: 'tls' must be a map, got 'true'"},
    {"LeftEmpty", "",
     "4:5: 'tls' is empty: write 'tls: {}' for TLS with the defaults, or remove it for plain "
     "TCP"},
    {"UnknownKeyWithSuggestion", "{verfiy: false}",
     "4:11: unknown key 'verfiy' in tls, did you mean 'verify'?"},
    {"ListenerKeyOnAPool", "{certificates: [{cert: a.pem, key: a.key}]}",
     "4:11: unknown key 'certificates' in tls"},
    {"VerifyNotABoolean", "{verify: no}", "4:19: 'verify' must be true or false, got 'no'"},
    {"CertWithoutKey", "{cert: client.pem}",
     "4:11: 'cert' needs 'key', the client certificate's private key"},
    {"KeyWithoutCert", "{key: client.key}",
     "4:11: 'key' needs 'cert', the client certificate it belongs to"},
    {"CaUnusedWithoutVerify", "{verify: false, ca: ca.pem}",
     "4:26: 'ca' is unused with 'verify: false': remove one of them"},
    {"CaFileMissing", "{ca: nowhere.pem}",
     "4:15: cannot read certificate file 'nowhere.pem': No such file or directory"},
    {"ClientCertFileMissing", "{cert: nowhere.pem, key: client.key}",
     "4:17: cannot read certificate file 'nowhere.pem': No such file or directory"},
    {"ClientKeyIsADirectory", "{cert: client.pem, key: certs}",
     "4:34: cannot read certificate file 'certs': it is a directory"},
    {"SniIpv4", "{sni: 10.0.0.1}",
     "4:16: 'sni' must be a DNS name, got the IP address '10.0.0.1': leave it out to verify "
     "the backend's address"},
    {"SniIpv6", "{sni: '::1'}",
     "4:16: 'sni' must be a DNS name, got the IP address '::1': leave it out to verify the "
     "backend's address"},
    {"SniWithPort", "{sni: 'app.internal:443'}",
     "4:16: invalid 'sni' 'app.internal:443': expected a DNS name"},
    {"SniWildcard", "{sni: '*.internal'}", "4:16: invalid 'sni' '*.internal': expected a DNS name"},
    {"SniNotAString", "{sni: [a]}", "4:16: 'sni' must be a string, got a list"},
    {"MinVersion11", "{min_version: 1.1}",
     "4:24: 'min_version' must be '1.2' or '1.3', got '1.1': TLS versions older than 1.2 are "
     "not supported"},
};

INSTANTIATE_TEST_SUITE_P(Table, RejectsInvalidPoolTls, ::testing::ValuesIn(kBadPoolTls),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(Loader, ReportsEveryErrorOfAFileInFileOrder) {
  const LoadResult r = loadString(R"(workers: many
listeners:
  - {name: a, listen: '127.0.0.1:1', tls: {}}
  - {name: a, listen: 'nohost'}
routes:
  - pool: missing
pools:
  p:
    backends: [{name: b, address: 'h:1', weight: 0}]
timeouts: {idle: 10}
limits: {max_header_bytes: 10MiB}
)",
                                  kFile);
  EXPECT_FALSE(r.config);
  EXPECT_EQ(errorStrings(r),
            (std::vector<std::string>{
                "t.yaml:1:10: 'workers' must be 'auto' or an integer between 1 and 256, got 'many'",
                "t.yaml:3:43: tls is missing 'certificates'",
                "t.yaml:4:12: duplicate listener name 'a' (first at line 3)",
                "t.yaml:4:23: invalid address 'nohost' for 'listen': missing port (expected "
                "host:port or [v6]:port)",
                "t.yaml:6:11: unknown pool 'missing'",
                "t.yaml:9:50: 'weight' must be between 1 and 256, got 0",
                "t.yaml:10:18: invalid duration '10' for 'idle': needs a unit (ms, s, m or h), "
                "e.g. '10s'",
                "t.yaml:11:28: 'max_header_bytes' must be between 1KiB and 1MiB, got '10MiB'",
            }));
}

TEST(Loader, RejectsARootThatIsNotAMap) {
  const LoadResult r = loadString("- a\n- b\n", kFile);
  EXPECT_EQ(errorStrings(r), std::vector<std::string>{"t.yaml:1:1: the config must be a map of "
                                                      "keys (listeners, routes, pools, ...), got "
                                                      "a list"});
}

TEST(Loader, RejectsASecondDocumentEvenAfterAnEmptyOne) {
  const LoadResult r =
      loadString(withDefaults("workers: 4") + "---\n---\n# none\n---\nwatch: true\n", kFile);
  EXPECT_EQ(errorStrings(r),
            std::vector<std::string>{
                "t.yaml:7:1: only one YAML document is allowed, this is a second one"});
}

TEST(Loader, DoesNotHangOnInputThatMakesYamlCppLoadAllLoop) {
  // yaml-cpp issue #1040: YAML::LoadAll never returns on these.
  for (std::string_view text : {",", "[a],", "{a: 1},", "a: 1\n---\n,"}) {
    const LoadResult r = loadString(text, kFile);
    EXPECT_FALSE(r.ok()) << text;
  }
}

TEST(Loader, ReadsWatchTrue) {
  const LoadResult r = loadString(withDefaults("watch: true"), kFile);
  ASSERT_TRUE(r.ok()) << errorStrings(r).front();
  EXPECT_TRUE(r.config->watch);
}

TEST(Loader, RejectsASecondDocument) {
  const LoadResult r = loadString(withDefaults("workers: 4") + "---\nwatch: true\n", kFile);
  EXPECT_EQ(errorStrings(r),
            std::vector<std::string>{
                "t.yaml:4:1: only one YAML document is allowed, this is a second one"});
}

TEST(Loader, ReportsMissingListenersAndRoutesAtTheTop) {
  const LoadResult r = loadString("watch: false\n", kFile);
  EXPECT_EQ(errorStrings(r), (std::vector<std::string>{
                                 "t.yaml:1:1: no listeners: at least one is required",
                                 "t.yaml:1:1: no routes: at least one is required, or every "
                                 "request would be refused",
                             }));
}

TEST(Loader, ReportsAnEmptyFileWithoutAPosition) {
  for (std::string_view text : {"", "\n\n", "# only a comment\n", "---\n"}) {
    const LoadResult r = loadString(text, kFile);
    EXPECT_EQ(errorStrings(r), std::vector<std::string>{"t.yaml: the config is empty"}) << text;
  }
}

TEST(Loader, StopsListingAfterAHundredErrors) {
  std::string yaml;
  for (int i = 0; i < 150; ++i) yaml += "unknown" + std::to_string(i) + ": 1\n";
  const LoadResult r = loadString(withDefaults(yaml), kFile);
  ASSERT_EQ(r.errors.size(), 101u);
  EXPECT_EQ(r.errors.back().str(), "t.yaml: too many errors, only the first 100 are shown");
}

TEST(Loader, NamesATabInTheIndentation) {
  struct Case {
    std::string_view yaml;
    std::string_view expect;
  };
  const Case cases[] = {
      {"listeners:\n\t- {name: a, listen: '127.0.0.1:0'}\n",
       "t.yaml:2:1: this line is indented with a tab: YAML indents with spaces only (the parser "
       "said: illegal block entry)"},
      {"pools:\n  app:\n    policy: round_robin\n\tbackends: []\n",
       "t.yaml:4:1: this line is indented with a tab: YAML indents with spaces only (the parser "
       "said: illegal tab when looking for indentation)"},
  };
  for (const auto& c : cases) {
    const LoadResult r = loadString(c.yaml, kFile);
    EXPECT_EQ(errorStrings(r), std::vector<std::string>{std::string(c.expect)}) << c.yaml;
  }
}

TEST(Loader, SaysWhenAPoolKeyLostItsIndentation) {
  const LoadResult r =
      loadString(withDefaults("pools:\n  app:\n    policy: least_conn\n  backends:\n"
                              "    - {name: a, address: '127.0.0.1:9000'}\n"),
                 kFile);
  const std::string all = joined(r);
  EXPECT_NE(all.find("t.yaml:4:3: 'backends' is at the level of the pool names, so it reads as a "
                     "pool named 'backends': indent it under pool 'app'"),
            std::string::npos)
      << all;
  EXPECT_EQ(all.find("must be a map"), std::string::npos) << all;
}

TEST(Loader, QuotesControlCharactersInMessages) {
  const LoadResult r = loadString(withDefaults("log: {level: \"in\\nfo\\u0001\"}"), kFile);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].message,
            "unknown log level 'in\\nfo\\x01', expected trace, debug, info, warn, error or off");
}

TEST(Loader, NeverThrowsOnHostileInput) {
  const std::string nested(5000, '[');
  const std::string nestedMaps = [] {
    std::string s;
    for (int i = 0; i < 3000; ++i) s += "{a: ";
    return s;
  }();
  for (const std::string& text :
       {nested, nestedMaps, std::string("a: \0 b", 6), std::string("\xff\xfe\x00\x01", 4),
        std::string("&a [*a]"), std::string("listeners: *nowhere"), std::string("%YAML 9.9\n---\n"),
        std::string("!!binary x: 1")}) {
    LoadResult r;
    EXPECT_NO_THROW(r = loadString(text, kFile));
    EXPECT_FALSE(r.ok());
  }
}

TEST(ConfigError, PrintsFileLineColumnAndMessage) {
  EXPECT_EQ((ConfigError{Mark{"a.yaml", 3, 7}, "bad"}.str()), "a.yaml:3:7: bad");
  EXPECT_EQ((ConfigError{Mark{"a.yaml", 0, 0}, "empty"}.str()), "a.yaml: empty");
}

TEST(LoadFile, LoadsTheDemoConfig) {
  const std::filesystem::path path = sourceDir() / "conf" / "wsgate.yaml";
  const LoadResult r = loadFile(path.string());
  ASSERT_TRUE(r.ok()) << joined(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.file, path.string());
  EXPECT_EQ(c.log.level, LogLevel::Info);
  EXPECT_EQ(c.log.access, "stdout");
  EXPECT_EQ(c.log.format, LogFormat::Json);
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].name, "public");
  EXPECT_EQ(c.listeners[0].listen.str(), "127.0.0.1:8080");
  ASSERT_EQ(c.routes.size(), 2u);
  EXPECT_EQ(c.routes[0].match.pathPrefix, "/internal");
  ASSERT_TRUE(c.routes[0].respond);
  EXPECT_EQ(c.routes[0].respond->status, 403);
  EXPECT_EQ(c.routes[0].respond->body, "forbidden\n");
  EXPECT_EQ(c.routes[1].match.pathPrefix, "/");
  EXPECT_EQ(c.routes[1].pool, "echo");
  const PoolConfig* echo = c.findPool("echo");
  ASSERT_NE(echo, nullptr);
  EXPECT_EQ(echo->policy, Policy::RoundRobin);
  ASSERT_EQ(echo->backends.size(), 2u);
  EXPECT_EQ(echo->backends[0].name, "echo1");
  EXPECT_EQ(echo->backends[0].address.str(), "127.0.0.1:9001");
  EXPECT_EQ(echo->backends[1].name, "echo2");
  EXPECT_EQ(echo->backends[1].address.str(), "127.0.0.1:9002");
  EXPECT_EQ(c.timeouts.queue, 5s);
  EXPECT_EQ(c.limits.maxQueue, 1000u);
  EXPECT_FALSE(c.admin);
}

TEST(LoadFile, UsesThePathInMarks) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("wsgate_loader_test_" +
                     std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + ".yaml");
  {
    std::ofstream out(path);
    out << "workers: x\nlisteners: [{name: a, listen: '127.0.0.1:0'}]\nroutes: [{respond: {}}]\n";
  }
  const LoadResult r = loadFile(path.string());
  std::filesystem::remove(path);
  ASSERT_FALSE(r.errors.empty());
  EXPECT_EQ(r.errors.back().str(), path.string() +
                                       ":1:10: 'workers' must be 'auto' or an "
                                       "integer between 1 and 256, got 'x'");
}

TEST(LoadFile, FingerprintsTheBytesItRead) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("wsgate_sha256_" +
                     std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + ".yaml");
  const std::string text =
      "listeners: [{name: a, listen: '127.0.0.1:0'}]\nroutes: [{respond: {status: 200}}]\n";
  std::ofstream(path, std::ios::binary) << text;
  const LoadResult r = loadFile(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(r.ok()) << joined(r);
  // sha256sum of `text`.
  EXPECT_EQ(r.config->sha256, "56602068c5872345e9275f9446f5773b5d175f09e04eaf67d3440b01c36b32aa");
  EXPECT_EQ(loadString(text, kFile).config->sha256, "") << "no file, no fingerprint";
}

TEST(LoadFile, ReportsAMissingFile) {
  const LoadResult r = loadFile("/nonexistent/wsgate.yaml");
  EXPECT_EQ(
      errorStrings(r),
      std::vector<std::string>{"/nonexistent/wsgate.yaml: cannot open: No such file or directory"});
}

TEST(LoadFile, ReportsADirectory) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  const LoadResult r = loadFile(dir);
  EXPECT_EQ(errorStrings(r), std::vector<std::string>{dir + ": cannot read: it is a directory"});
}

// ---- PROXY protocol: listeners' proxy_protocol and proxy_protocol_from, pools' --------

TEST(ProxyProtocolKeys, ReadsTheListenerAndPoolKeys) {
  const LoadResult r = loadString(withDefaults(R"(listeners:
  - name: lb
    listen: 127.0.0.1:0
    proxy_protocol: true
    proxy_protocol_from: [10.0.0.0/8, 127.0.0.2, "2001:db8::/32", "::1"]
  - name: plain
    listen: 127.0.0.1:0
    proxy_protocol: false
pools:
  p:
    backends: [{name: a, address: 'h:1'}]
    proxy_protocol: true
  q:
    backends: [{name: a, address: 'h:1'}]
)"),
                                  kFile);
  ASSERT_TRUE(r.ok()) << joined(r);
  const auto& lb = r.config->listeners[0];
  EXPECT_TRUE(lb.proxyProtocol);
  std::vector<std::string> blocks;
  for (const Cidr& c : lb.proxyProtocolFrom) blocks.push_back(c.str());
  EXPECT_EQ(blocks,
            (std::vector<std::string>{"10.0.0.0/8", "127.0.0.2/32", "2001:db8::/32", "::1/128"}));
  EXPECT_FALSE(r.config->listeners[1].proxyProtocol);
  EXPECT_TRUE(r.config->listeners[1].proxyProtocolFrom.empty());
  EXPECT_TRUE(r.config->findPool("p")->proxyProtocol);
  EXPECT_FALSE(r.config->findPool("q")->proxyProtocol) << "off by default";
}

const BadCase kBadProxyProtocolCases[] = {
    {"TrueWithoutFrom", "listeners:\n  - {name: a, listen: '127.0.0.1:0', proxy_protocol: true}",
     "2:38: 'proxy_protocol: true' needs 'proxy_protocol_from', the addresses of the balancers "
     "trusted to send the header"},
    {"TrueWithEmptyFrom",
     "listeners:\n  - {name: a, listen: '127.0.0.1:0', proxy_protocol: true,\n"
     "     proxy_protocol_from: []}",
     "3:6: 'proxy_protocol_from' is empty: list the balancers' addresses"},
    {"FromWithoutTrue",
     "listeners:\n  - {name: a, listen: '127.0.0.1:0', proxy_protocol_from: [10.0.0.0/8]}",
     "2:38: 'proxy_protocol_from' is unused without 'proxy_protocol: true'"},
    {"FromWithFalse",
     "listeners:\n  - name: a\n    listen: '127.0.0.1:0'\n    proxy_protocol: false\n"
     "    proxy_protocol_from: [10.0.0.0/8]",
     "5:5: 'proxy_protocol_from' is unused without 'proxy_protocol: true'"},
    {"NotABoolean",
     "listeners:\n  - {name: a, listen: '127.0.0.1:0', proxy_protocol: yes,\n"
     "     proxy_protocol_from: [10.0.0.0/8]}",
     "2:54: 'proxy_protocol' must be true or false, got 'yes'"},
    {"FromNotAList",
     "listeners:\n  - name: a\n    listen: '127.0.0.1:0'\n    proxy_protocol: true\n"
     "    proxy_protocol_from: 10.0.0.0/8",
     "5:26: 'proxy_protocol_from' must be a list, got '10.0.0.0/8'"},
    {"FromHostName",
     "listeners:\n  - name: a\n    listen: '127.0.0.1:0'\n    proxy_protocol: true\n"
     "    proxy_protocol_from: [10.0.0.0/8, lb.example.com]",
     "5:39: 'lb.example.com' is not an IPv4 or IPv6 address: expected an address or "
     "ADDRESS/BITS"},
    {"FromPrefixTooLong",
     "listeners:\n  - name: a\n    listen: '127.0.0.1:0'\n    proxy_protocol: true\n"
     "    proxy_protocol_from:\n      - 10.0.0.0/33",
     "6:9: '10.0.0.0/33' has an invalid prefix length (0 to 32 for IPv4): expected an address "
     "or ADDRESS/BITS"},
    {"FromHostBitsSet",
     "listeners:\n  - name: a\n    listen: '127.0.0.1:0'\n    proxy_protocol: true\n"
     "    proxy_protocol_from: ['2001:db8::1/32']",
     "5:27: '2001:db8::1/32' has bits set past its prefix (the block is 2001:db8::/32): "
     "expected an address or ADDRESS/BITS"},
    {"FromItemNotAString",
     "listeners:\n  - name: a\n    listen: '127.0.0.1:0'\n    proxy_protocol: true\n"
     "    proxy_protocol_from: [{a: 1}]",
     "5:27: each address block must be a string, got a map"},
    {"PoolNotABoolean",
     "pools:\n  p:\n    backends: [{name: a, address: 'h:1'}]\n    proxy_protocol: v2",
     "4:21: 'proxy_protocol' must be true or false, got 'v2'"},
};

INSTANTIATE_TEST_SUITE_P(ProxyProtocol, RejectsInvalidConfig,
                         ::testing::ValuesIn(kBadProxyProtocolCases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace wsgate::conf
