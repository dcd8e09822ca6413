#include "proxy/session/route_decision.h"

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

}  // namespace

RouteDecision decideRoute(const Runtime& runtime, const http::RequestHead& head,
                          std::string_view clientIp) {
  const conf::RouteConfig* route = runtime.router.match(head);
  if (route == nullptr) return refuse(404, "no route for this request", "no route", true);
  if (route->respond) {
    RouteDecision d;
    d.kind = RouteDecision::Kind::Respond;
    d.status = route->respond->status;
    d.body = route->respond->body;
    d.reason = "respond";
    return d;
  }
  RouteDecision d;
  d.kind = RouteDecision::Kind::Forward;
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
  if (const auto& sticky = d.pool->config->sticky) {
    std::optional<std::string_view> value;
    switch (sticky->source) {
      case conf::StickySource::Cookie:
        if (auto c = http::findCookie(head.headers, sticky->cookie.name)) {
          d.cookieBackend = d.pool->pool->findByCookie(*c);
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
  return d;
}

}  // namespace wsgate::proxy
