#include "proxy/control/admin.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "proxy/control/metrics.h"
#include "proxy/control/server.h"
#include "proxy/control/worker.h"
#include "proxy/log.h"
#include "proxy/net/acceptor.h"
#include "proxy/net/address.h"
#include "wsgate/version.h"

namespace wsgate::proxy {
namespace {

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

AdminServer::AdminServer(RuntimePtr runtime, Server& server)
    : runtime_(std::move(runtime)), server_(server) {}

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

void AdminServer::onRequest(evhttp_request* req) {
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
  const auto now = std::chrono::steady_clock::now();
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
    }
    j["pools"][name] = {{"backends", backends}};
  }
  return j.dump(2) + "\n";
}

}  // namespace wsgate::proxy
