#include "proxy/session/route_decision.h"

#include <algorithm>

#include "balancer/hash.h"
#include "proxy/http/head.h"

namespace wsgate::proxy {
namespace {

RouteDecision refuse(int status, std::string_view detail, std::string_view reason,
                     bool keepAliveAllowed = false, std::string_view extraHeaders = {}) {
  RouteDecision d;
  d.kind = RouteDecision::Kind::Refuse;
  d.status = status;
  d.detail = detail;
  d.reason = reason;
  d.keepAliveAllowed = keepAliveAllowed;
  d.extraHeaders = extraHeaders;
  return d;
}

// The stickiness of d.pool for `head`: a key from its header/query/source_ip, or the backend
// a valid cookie names.
void applySticky(RouteDecision& d, const http::RequestHead& head, std::string_view clientIp) {
  d.stickyKey.reset();
  d.preferredBackend.reset();
  if (const auto& sticky = d.pool->config->sticky) {
    std::optional<std::string_view> value;
    switch (sticky->source) {
      case conf::StickySource::Cookie:
        if (auto c = http::findCookie(head.headers, sticky->cookie.name)) {
          d.preferredBackend = d.pool->pool->findByCookie(*c);
        }
        break;
      case conf::StickySource::Header:
        if (const http::Header* h = http::findHeader(head.headers, sticky->header)) {
          value = h->value;
        }
        break;
      case conf::StickySource::Query:
        value = http::findQueryParam(head.query, sticky->query);
        break;
      case conf::StickySource::SourceIp:
        value = clientIp;
        break;
    }
    if (value && !value->empty()) d.stickyKey = balancer::stickyKeyHash(*value);
  }
}

RouteDecision scriptFailure(const RouteDecision& d, std::string error) {
  RouteDecision f = refuse(500, "a Lua hook failed", "lua error");
  f.route = d.route;
  f.scriptError = std::move(error);
  return f;
}

}  // namespace

RouteDecision decideRoute(const Runtime& runtime, const http::RequestHead& head,
                          std::string_view clientIp) {
  const conf::RouteConfig* route = runtime.router.match(head);
  if (route == nullptr) return refuse(404, "no route for this request", "no route", true);
  if (route->respond) {
    RouteDecision d;
    d.kind = RouteDecision::Kind::Respond;
    d.route = route;  // for the access log's route
    d.status = route->respond->status;
    d.body = route->respond->body;
    d.reason = "respond";
    return d;
  }
  RouteDecision d;
  d.kind = RouteDecision::Kind::Forward;
  d.route = route;
  if (head.upgradeWebsocket) {
    const ws::Verdict v = ws::checkUpgradeRequest(head);
    if (!v.ok) {
      return refuse(v.status, v.reason, v.reason, false,
                    v.status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "");
    }
    d.websocket = true;
    d.offer = ws::offerOf(head);
  }
  d.pool = runtime.findPool(route->pool);
  if (d.pool == nullptr) {  // conf validation makes this unreachable; answer rather than crash
    return refuse(500, "route names an unknown pool", "unknown pool");
  }
  d.poolName = route->pool;
  applySticky(d, head, clientIp);
  return d;
}

void applyScriptResult(const Runtime& runtime, RouteDecision& d, scripting::RequestResult&& r,
                       const http::RequestHead& head, std::string_view clientIp) {
  if (r.failed()) {
    d = scriptFailure(d, std::move(r.error));
    return;
  }
  if (r.keep) return;
  if (r.status != 0) {
    const conf::RouteConfig* route = d.route;
    d = RouteDecision{};
    d.kind = RouteDecision::Kind::Respond;
    d.route = route;
    d.status = r.status;
    d.scripted = true;
    d.scriptBody = std::move(r.body);
    for (const auto& [name, value] : r.headers) {
      if (name == "content-type") {
        d.scriptContentType = value;
        continue;
      }
      d.scriptHeaders.append(name).append(": ").append(value).append("\r\n");
    }
    d.reason = "lua respond";
    return;
  }
  if (r.pool) {
    const PoolEntry* pool = runtime.findPool(*r.pool);
    if (pool == nullptr) {
      d = scriptFailure(d, "on_request returned pool '" + *r.pool + "', which is not defined");
      return;
    }
    if (pool != d.pool) {
      d.pool = pool;
      d.poolName = pool->config->name;
      applySticky(d, head, clientIp);
    }
  }
  if (r.backend) {
    const auto& backends = d.pool->config->backends;
    const auto it =
        std::find_if(backends.begin(), backends.end(),
                     [&](const conf::BackendConfig& b) { return b.name == *r.backend; });
    if (it == backends.end()) {
      d = scriptFailure(d, "on_request returned backend '" + *r.backend + "', which pool '" +
                               std::string(d.poolName) + "' does not have");
      return;
    }
    d.preferredBackend = static_cast<std::size_t>(it - backends.begin());
  }
  if (r.stickyKey) d.stickyKey = balancer::stickyKeyHash(*r.stickyKey);
  d.setHeaders = std::move(r.setHeaders);
  d.removeHeaders = std::move(r.removeHeaders);
}

void withoutExtensions(RouteDecision& d) {
  if (!d.websocket) return;
  d.offer.extensions.clear();
  d.removeHeaders.emplace_back("sec-websocket-extensions");
}

}  // namespace wsgate::proxy
