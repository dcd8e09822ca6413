#pragma once
// The PROXY protocol at a listener's door, before any session exists: which peers may send
// the header (proxy_protocol_from), and how a refusal is counted and told (by reason in
// /metrics; in the log at most one line per listener per 10 s, with the count since the
// last). The session's own half (reading the header, sending one to backends) is in
// session_proxy.cpp.

#include <sys/socket.h>

#include <chrono>
#include <string_view>

#include "conf/config.h"
#include "proxy/control/runtime.h"
#include "proxy/stats.h"

namespace wsgate::proxy {

inline constexpr std::chrono::seconds kProxyRefusalLogWindow{10};

// True when `peer` lies in the listener's proxy_protocol_from.
bool trustedProxyPeer(const conf::ListenerConfig& listener, const sockaddr* peer);

// Counts a refused connection under `why` and logs it, rate-limited per listener.
// `peer`: the connection's own address; `detail`: what was wrong, for the log.
void noteProxyRefused(const ListenerEntry& listener, ProxyReject why, std::string_view peer,
                      std::string_view detail);

}  // namespace wsgate::proxy
