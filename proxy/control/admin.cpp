#include "proxy/control/admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "proxy/control/discovery.h"
#include "proxy/control/metrics.h"
#include "proxy/control/server.h"
#include "proxy/control/worker.h"
#include "proxy/log.h"
#include "proxy/net/acceptor.h"
#include "proxy/net/address.h"
#include "wsgate/version.h"

namespace wsgate::proxy {
namespace {

// When this process started, for /status: namespace-scope constants are initialised before
// main runs. The steady clock measures the uptime; the wall clock only names the moment.
const std::chrono::steady_clock::time_point kStartedSteady = std::chrono::steady_clock::now();
const std::chrono::system_clock::time_point kStartedWall = std::chrono::system_clock::now();

// A duration as JSON seconds, to the millisecond.
double seconds(std::chrono::steady_clock::duration d) {
  return std::round(std::chrono::duration<double>(d).count() * 1000.0) / 1000.0;
}

// RFC 3339 in UTC, to the second: "2026-11-25T10:00:00Z".
std::string rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm utc{};
  gmtime_r(&secs, &utc);
  char text[32];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(text, n);
}

std::array<unsigned char, 32> sha256(std::string_view bytes) {
  std::array<unsigned char, 32> digest{};
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr);
  return digest;
}

bool equalsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// The credentials of `Authorization: Bearer X` (RFC 6750 2.1; the scheme is
// case-insensitive, RFC 9110 11.1), or "" with `why` set.
std::string_view bearerCredentials(const char* header, std::string_view& why) {
  if (header == nullptr) {
    why = "no Authorization header";
    return {};
  }
  constexpr std::string_view kBlank = " \t";
  std::string_view value = header;
  const auto start = value.find_first_not_of(kBlank);
  value.remove_prefix(start == std::string_view::npos ? value.size() : start);
  const auto space = value.find_first_of(kBlank);
  if (space == std::string_view::npos || !equalsIgnoringCase(value.substr(0, space), "bearer")) {
    why = "not a Bearer authorization";
    return {};
  }
  value.remove_prefix(space);
  const auto first = value.find_first_not_of(kBlank);
  const auto last = value.find_last_not_of(kBlank);
  if (first == std::string_view::npos) {
    why = "an empty bearer token";
    return {};
  }
  return value.substr(first, last - first + 1);
}

// The peer of an admin request, for the log.
std::string peerOf(evhttp_request* req) {
  evhttp_connection* conn = evhttp_request_get_connection(req);
  const sockaddr* sa = conn != nullptr ? evhttp_connection_get_addr(conn) : nullptr;
  if (sa == nullptr) return "-";
  net::SocketAddress peer;
  peer.length = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  std::memcpy(&peer.storage, sa, peer.length);
  return peer.str();
}

void reply(evhttp_request* req, int code, std::string_view type, const std::string& body) {
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    std::string(type).c_str());
  evbuffer* out = evbuffer_new();
  evbuffer_add(out, body.data(), body.size());
  evhttp_send_reply(req, code, nullptr, out);
  evbuffer_free(out);
}

void replyJson(evhttp_request* req, int code, const nlohmann::json& j) {
  reply(req, code, "application/json", j.dump() + "\n");
}

// RFC 9110 15.5.6: a 405 lists the methods the resource takes.
void methodNotAllowed(evhttp_request* req, const char* allow) {
  evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
  replyJson(req, 405, {{"error", std::string("use ") + allow}});
}

std::vector<std::string> split(std::string_view path) {
  std::vector<std::string> parts;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    const auto end = path.find('/');
    parts.emplace_back(path.substr(0, end));
    path = end == std::string_view::npos ? std::string_view{} : path.substr(end);
  }
  return parts;
}

}  // namespace

AdminServer::AdminServer(RuntimePtr runtime, Server& server) : server_(server) {
  setRuntime(std::move(runtime));
}

void AdminServer::setRuntime(RuntimePtr runtime) {
  runtime_ = std::move(runtime);
  // A reload that removed `admin` leaves this server up until a restart (the reload says
  // so): it keeps the token it has rather than open up.
  const auto& admin = runtime_->config->admin;
  if (!admin) return;
  const bool had = token_.has_value();
  token_.reset();
  if (!admin->token.empty()) token_ = sha256(admin->token);
  if (had && !token_) {
    log().warn(
        "admin: the reloaded config sets no token: the admin API at {} now answers "
        "without one",
        address_);
  }
}

AdminServer* AdminServer::instance_ = nullptr;

AdminServer::~AdminServer() {
  if (instance_ == this) instance_ = nullptr;
  acceptRetry_.reset();
  if (http_ != nullptr) evhttp_free(http_);
}

void AdminServer::onAcceptErrorCb(evconnlistener* listener, void*) noexcept {
  // accept() failed for good (out of descriptors): evhttp's listener stays readable, so it
  // is paused for a moment instead of spinning, as net::Acceptor does for the workers.
  const int error = errno;
  evconnlistener_disable(listener);
  AdminServer* admin = instance_;
  if (admin == nullptr || admin->listener_ != listener) return;
  const timeval retry = net::toTimeval(net::Acceptor::kRetry);
  event_add(admin->acceptRetry_.get(), &retry);
  const auto now = std::chrono::steady_clock::now();
  if (now - admin->lastShortageLog_ < std::chrono::seconds(10)) return;
  admin->lastShortageLog_ = now;
  log().warn("admin: accept failed: {}; retrying every {} ms", std::strerror(error),
             net::Acceptor::kRetry.count());
}

void AdminServer::onAcceptRetryCb(int, short, void* self) noexcept {
  evconnlistener_enable(static_cast<AdminServer*>(self)->listener_);
}

std::unique_ptr<AdminServer> AdminServer::start(event_base* base, const conf::AdminConfig& cfg,
                                                RuntimePtr runtime, Server& server,
                                                std::string& error) {
  std::unique_ptr<AdminServer> admin(new AdminServer(std::move(runtime), server));
  admin->http_ = evhttp_new(base);
  // Every method reaches onRequest, so that a known path answers 405 with Allow (evhttp's
  // own 405 has none) and an unknown one 404.
  evhttp_set_allowed_methods(admin->http_, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                               EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                               EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
  evhttp_set_gencb(admin->http_, &AdminServer::onRequestCb, admin.get());
  // evhttp reads a whole request before onRequest (and the token check) sees it: bound what
  // an unauthenticated peer can make the main thread hold, and for how long.
  evhttp_set_max_headers_size(admin->http_, kMaxHeaderBytes);
  evhttp_set_max_body_size(admin->http_, kMaxBodyBytes);
  evhttp_set_timeout(admin->http_, kRequestTimeoutSeconds);
  evhttp_bound_socket* sock =
      evhttp_bind_socket_with_handle(admin->http_, cfg.listen.host.c_str(), cfg.listen.port);
  if (sock == nullptr) {
    error = cfg.mark.str() + ": admin: cannot listen on " + cfg.listen.str();
    return nullptr;
  }
  admin->listener_ = evhttp_bound_socket_get_listener(sock);
  admin->acceptRetry_.reset(evtimer_new(base, &AdminServer::onAcceptRetryCb, admin.get()));
  evconnlistener_set_error_cb(admin->listener_, &AdminServer::onAcceptErrorCb);
  instance_ = admin.get();
  auto bound = net::localAddress(evhttp_bound_socket_get_fd(sock));
  admin->address_ = bound ? bound->str() : cfg.listen.str();
  return admin;
}

void AdminServer::onRequestCb(evhttp_request* req, void* self) noexcept {
  static_cast<AdminServer*>(self)->onRequest(req);
}

bool AdminServer::authorize(evhttp_request* req) {
  if (!token_) return true;
  std::string_view why;
  const std::string_view presented = bearerCredentials(
      evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization"), why);
  // Digests of equal length, compared without an early exit: the time an answer takes says
  // nothing about how much of the token, or of its length, was right.
  const Digest digest = sha256(presented);
  const bool match = CRYPTO_memcmp(digest.data(), token_->data(), digest.size()) == 0;
  if (match && why.empty()) return true;
  logRefusal(req, why.empty() ? "wrong token" : why);
  evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                    "Bearer realm=\"wsgate\"");
  replyJson(req, 401, {{"error", "send the admin token as 'Authorization: Bearer TOKEN'"}});
  return false;
}

void AdminServer::logRefusal(evhttp_request* req, std::string_view why) {
  // Anyone who reaches the port can make refusals at will: a line per second at most.
  const auto now = std::chrono::steady_clock::now();
  if (lastRefusalLog_ != std::chrono::steady_clock::time_point{} &&
      now - lastRefusalLog_ < std::chrono::seconds(1)) {
    ++refusalsNotLogged_;
    return;
  }
  if (refusalsNotLogged_ == 0) {
    log().info("[admin] refused client={} reason={}", peerOf(req), why);
  } else {
    log().info("[admin] refused client={} reason={} ({} more refused since the last line)",
               peerOf(req), why, refusalsNotLogged_);
  }
  lastRefusalLog_ = now;
  refusalsNotLogged_ = 0;
}

void AdminServer::onRequest(evhttp_request* req) {
  // Before routing: without the token, even a 404 or a 405 would say what exists.
  if (!authorize(req)) return;
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* rawPath = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  const std::vector<std::string> parts = split(rawPath != nullptr ? rawPath : "/");
  const bool post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
  const bool get = evhttp_request_get_command(req) == EVHTTP_REQ_GET;

  if (parts.size() == 1 && parts[0] == "status") {
    if (!get) return methodNotAllowed(req, "GET");
    return reply(req, 200, "application/json", status());
  }
  if (parts.size() == 1 && parts[0] == "metrics") {
    if (!get) return methodNotAllowed(req, "GET");
    return reply(req, 200, "text/plain; version=0.0.4", renderMetrics(*runtime_, server_));
  }
  if (parts.size() == 1 && parts[0] == "reload") {
    if (!post) return methodNotAllowed(req, "POST");
    return reload(req);
  }
  if (parts.size() == 5 && parts[0] == "pools" && parts[2] == "backends" &&
      (parts[4] == "drain" || parts[4] == "enable")) {
    if (!post) return methodNotAllowed(req, "POST");
    return backendAction(req, parts[1], parts[3], parts[4]);
  }
  replyJson(req, 404, {{"error", "no such endpoint"}});
}

void AdminServer::backendAction(evhttp_request* req, const std::string& poolName,
                                const std::string& backendName, const std::string& action) {
  const PoolEntry* entry = runtime_->findPool(poolName);
  if (entry == nullptr) return replyJson(req, 404, {{"error", "no pool " + poolName}});
  const auto idx = entry->pool->find(backendName);
  if (!idx) {
    return replyJson(req, 404, {{"error", "no backend " + backendName + " in " + poolName}});
  }
  const balancer::BackendPtr& backend = entry->pool->backends()[*idx];
  if (action == "drain") {
    const bool changed = backend->drain();
    // Existing sessions are closed with 1012 spread over drain_spread, on their workers.
    for (const auto& w : server_.workers()) {
      w->post([backend](Worker& worker) { worker.drainBackends({backend}); });
    }
    log().info("[admin] drain b={}/{}{}", poolName, backendName, changed ? "" : " (again)");
  } else {
    const bool changed = backend->enable(std::chrono::steady_clock::now());
    log().info("[admin] enable b={}/{}{}", poolName, backendName, changed ? "" : " (already)");
  }
  replyJson(req, 200,
            {{"pool", poolName},
             {"backend", backendName},
             {"state", backend->draining() ? "draining" : "enabled"}});
}

void AdminServer::reload(evhttp_request* req) {
  // Answered when the reload thread is done. evhttp keeps the request meanwhile; if the
  // client went away, evhttp_send_reply frees it without writing.
  server_.requestReload("POST /reload", [req](const ReloadOutcome& o) {
    nlohmann::json j;
    j["result"] = o.ok ? "ok" : "failed";
    j["generation"] = o.generation;
    if (o.ok) j["changes"] = o.summary;
    if (!o.errors.empty()) j["errors"] = o.errors;
    if (!o.warnings.empty()) j["warnings"] = o.warnings;
    if (!o.needsRestart.empty()) j["needs_restart"] = o.needsRestart;
    replyJson(req, o.ok ? 200 : 400, j);
  });
}

std::size_t AdminServer::sessions() const {
  std::size_t n = 0;
  for (const auto& w : server_.workers()) n += w->sessionCount();
  return n;
}

std::string AdminServer::status() const {
  nlohmann::json j;
  j["version"] = WSGATE_VERSION;
  j["workers"] = server_.workers().size();
  j["sessions"] = sessions();
  const ReloadStats& r = server_.reloadStats();
  j["config"] = {{"file", runtime_->config->file},
                 {"generation", r.generation},
                 {"reloads_succeeded", r.succeeded},
                 {"reloads_failed", r.failed},
                 {"last_reload_error", r.lastError}};
  j["config"]["sha256"] = runtime_->config->sha256;
  j["config"]["reloads"] = r.succeeded + r.failed;  // every attempt, whatever its result
  const auto now = std::chrono::steady_clock::now();
  j["uptime_seconds"] = seconds(now - kStartedSteady);
  j["started_at"] = rfc3339(kStartedWall);
  j["listeners"] = nlohmann::json::array();
  for (const ListenerEntry& l : runtime_->listeners) {
    const net::SocketAddress* bound = server_.boundAddress(l.key);
    j["listeners"].push_back({{"name", l.config->name},
                              {"address", (bound != nullptr ? *bound : l.address).str()},
                              {"tls", l.tls != nullptr}});
  }
  for (const auto& [name, entry] : runtime_->pools) {
    nlohmann::json backends = nlohmann::json::array();
    // Without active checks, health_up is true by definition: `check` says so, and `passive`
    // what sessions saw (a backend that refuses connections is "ejected", not healthy).
    const bool checked = entry.config->health.has_value();
    for (const auto& b : entry.pool->backends()) {
      const balancer::PassiveState passive = b->passiveState(now);
      backends.push_back({{"name", b->spec().name},
                          {"address", b->spec().host + ":" + std::to_string(b->spec().port)},
                          {"active", b->active()},
                          {"available", b->available(now)},
                          {"health_up", b->activeUp()},
                          {"check", checked ? "active" : "none"},
                          {"passive", passive == balancer::PassiveState::Up        ? "up"
                                      : passive == balancer::PassiveState::Ejected ? "ejected"
                                                                                   : "half_open"},
                          {"draining", b->draining()}});
      // null: never failed (since it was created), or not kept out by passive health now.
      const auto failed = b->lastFailure();
      const auto ejectedUntil = b->ejectedUntil(now);
      backends.back()["last_failure_ago_seconds"] =
          failed ? nlohmann::json(seconds(now - *failed)) : nlohmann::json();
      backends.back()["ejected_for_seconds"] =
          ejectedUntil ? nlohmann::json(seconds(*ejectedUntil - now)) : nlohmann::json();
    }
    j["pools"][name] = {{"backends", backends}};
  }
  // Only with discover entries: without them /status reads as before discovery existed.
  for (const auto& d : server_.discovery().status()) {
    nlohmann::json e = {
        {"pool", d.pool},
        {"dns", d.config.dns},
        {"port", d.config.port},
        {"records", d.config.port != 0 ? "A/AAAA" : "SRV"},
        {"backends", d.backends},
        {"failing", d.failing},
        {"last_error", d.lastError},
        {"resolutions",
         {{"ok", d.ok}, {"changed", d.changed}, {"held", d.held}, {"failed", d.failed}}}};
    // null: no answer yet.
    e["last_success_ago_seconds"] =
        d.sinceSuccess ? nlohmann::json(seconds(*d.sinceSuccess)) : nlohmann::json();
    j["discovery"].push_back(std::move(e));
  }
  return j.dump(2) + "\n";
}

}  // namespace wsgate::proxy
