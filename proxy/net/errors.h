#pragma once
// What a failed socket call means for the caller: try again on the next edge, the process
// (not the peer) lacks something, or the peer is at fault.

#include <cerrno>

namespace wsgate::net {

// A non-blocking socket call that failed only for now (try again on the next edge).
inline bool retriable(int error) {
  return error == EAGAIN || error == EWOULDBLOCK || error == EINTR;
}

// The process or the host is out of descriptors or memory (accept, socket, connect).
inline bool isResourceShortage(int error) {
  return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

// A socket() or connect() towards a backend failed for a shortage of this host's (also no
// free local port: EADDRNOTAVAIL, or EAGAIN on older kernels), not for the backend's fault.
inline bool isLocalShortage(int error) {
  return isResourceShortage(error) || error == EADDRNOTAVAIL || error == EAGAIN;
}

}  // namespace wsgate::net
