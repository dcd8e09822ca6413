// The PROXY protocol in a session: on a proxy_protocol listener the header is read before
// anything else (before TLS, as HAProxy's accept-proxy does), and the address it carries
// becomes the session's client address for routing, Lua, stickiness, X-Forwarded-For and
// the logs; towards a pool with proxy_protocol, a v2 header goes ahead of every new backend
// connection's first bytes. Listeners without it never enter this file.

#include "proxy/session/session_proxy.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "proxy/control/worker.h"
#include "proxy/log.h"
#include "proxy/net/address.h"
#include "proxy/net/proxy_protocol.h"
#include "proxy/session/session.h"

namespace wsgate::proxy {
namespace {

using net::len;

ProxyReject rejectOf(net::ProxyError e) {
  switch (e) {
    case net::ProxyError::NotProxy:
      return ProxyReject::Missing;
    case net::ProxyError::Oversized:
      return ProxyReject::Oversized;
    default:
      return ProxyReject::Malformed;
  }
}

// The session's client address ("1.2.3.4", "1.2.3.4:5" / "::1", "[::1]:5") back in binary.
std::optional<net::ProxyAddress> binaryAddress(const std::string& ip, std::string_view withPort) {
  net::ProxyAddress a;
  a.v6 = ip.find(':') != std::string::npos;
  if (inet_pton(a.v6 ? AF_INET6 : AF_INET, ip.c_str(), a.ip.data()) != 1) return std::nullopt;
  const std::size_t colon = withPort.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  uint32_t port = 0;
  for (char c : withPort.substr(colon + 1)) port = port * 10 + static_cast<uint32_t>(c - '0');
  a.port = static_cast<uint16_t>(port);
  return a;
}

}  // namespace

bool trustedProxyPeer(const conf::ListenerConfig& listener, const sockaddr* peer) {
  const auto a = net::proxyAddressOf(peer);
  if (!a) return false;  // a Unix socket handed over by systemd: no address to trust
  return std::any_of(
      listener.proxyProtocolFrom.begin(), listener.proxyProtocolFrom.end(),
      [&](const conf::Cidr& block) { return conf::cidrContains(block, a->v6, a->ip.data()); });
}

void noteProxyRefused(const ListenerEntry& listener, ProxyReject why, std::string_view peer,
                      std::string_view detail) {
  ListenerCounters& c = *listener.counters;
  ListenerCounters::add(c.proxyRejects[static_cast<std::size_t>(why)]);
  uint64_t held = 0;
  if (!c.proxyRejectLog.admit(LogThrottle::Clock::now(), kProxyRefusalLogWindow, held)) return;
  // Any client can cause this at will: info, and one line per window however many come.
  log().info(
      "[listener {}] closed a connection from {} before its PROXY header was accepted: {} ({}); "
      "{} more refused since the last report",
      listener.config->name, peer, kProxyRejectNames[static_cast<std::size_t>(why)], detail, held);
}

void Session::readProxyHeader() {
  evbuffer* in = input(kClient);
  // The parser never needs more than a whole v2 header: a v1 line is shorter.
  const std::size_t n = std::min(len(in), net::kProxyV2MaxBytes);
  if (n == 0) return;
  const char* data = reinterpret_cast<const char*>(evbuffer_pullup(in, n));
  const net::ProxyHeader h = net::parseProxyHeader({data, n});
  if (h.status == net::ProxyParse::NeedMore) return;  // the handshake timer bounds the wait
  if (h.status == net::ProxyParse::Error) {
    refuseProxyHeader(rejectOf(h.error), h.reason);
    return;
  }
  ListenerCounters::add(listener_->counters->proxyHeaders[h.version == 1 ? 0 : 1]);
  if (!h.local) {  // LOCAL, UNKNOWN: the connection is its own client
    net::SocketAddress carried;
    carried.storage = net::toSockaddr(h.source, carried.length);
    clientAddr_ = carried.str();
    clientIp_ = carried.ip();
  }
  evbuffer_drain(in, h.consumed);
  state_ = State::ReadingHead;
  if (listener_->tls) {
    // What came behind the header in the same read is the start of the TLS handshake.
    if (!conn_[kClient].startTlsAfterReading(listener_->tls->newSsl(), scratch(kClient))) {
      onEof(kClient, true);
      return;
    }
  }
  readHead();  // the request may have come with the header
}

void Session::refuseProxyHeader(ProxyReject why, std::string_view detail) {
  noteProxyRefused(*listener_, why, clientAddr_, detail);
  close("PROXY header " + std::string(kProxyRejectNames[static_cast<std::size_t>(why)]));
}

void Session::queueBackendProxyHeader() {
  // From the client (as the listener's header named it, if it had one) to the address it
  // reached wsgate at.
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  std::optional<net::ProxyAddress> destination;
  if (getsockname(conn_[kClient].fd(), reinterpret_cast<sockaddr*>(&local), &length) == 0) {
    destination = net::proxyAddressOf(reinterpret_cast<const sockaddr*>(&local));
  }
  const auto source = binaryAddress(clientIp_, clientAddr_);
  const net::EncodedProxyHeader h =
      source && destination ? net::encodeProxyV2(*source, *destination) : net::encodeProxyV2Local();
  conn_[kBackend].queueRaw(scratch(kBackend), h.view());
}

}  // namespace wsgate::proxy
