#pragma once
// Socket addresses: resolving configured host:port pairs, printing peers, and the
// listening sockets workers share through SO_REUSEPORT.

#include <sys/socket.h>

#include <optional>
#include <string>

#include "conf/config.h"

namespace wsgate::net {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  uint16_t port() const;
  std::string str() const;  // "1.2.3.4:80" or "[::1]:80"
  std::string ip() const;   // without the port
};

// Resolves host:port (numeric, or a name through getaddrinfo, first result). Blocking:
// call it while loading a config, never on an event loop. nullopt with `error` set.
std::optional<SocketAddress> resolve(const conf::HostPort& hp, std::string& error);

// A non-blocking listening socket with SO_REUSEADDR and SO_REUSEPORT, bound and listening.
// Returns the fd, or -1 with `error` set.
int openListener(const SocketAddress& addr, std::string& error);

// The address a socket is bound to (to learn the port chosen for port 0).
std::optional<SocketAddress> localAddress(int fd);

}  // namespace wsgate::net
