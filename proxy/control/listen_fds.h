#pragma once
// Listening sockets that come from outside this process (systemd socket activation, or an old
// wsgate handing its sockets to its successor), and who else holds an address we want to bind.

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/net/address.h"

namespace wsgate::proxy {

struct InheritedSocket {
  int fd;
  net::SocketAddress address;
  std::string name;  // from LISTEN_FDNAMES; empty when none was given
};

// Takes the listening sockets passed by the sd_listen_fds(3) protocol: when LISTEN_PID is this
// process and LISTEN_FDS=N, fds 3..3+N-1. Each is made FD_CLOEXEC and O_NONBLOCK; an fd that is
// not a listening IPv4/IPv6 TCP socket is closed and described by one line in `problems`.
// LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are unset in every case, so that children never
// mistake them for their own. Empty when nothing was passed. Call it before starting threads:
// it edits the environment.
std::vector<InheritedSocket> takeInheritedSockets(std::vector<std::string>& problems);

// Starts `argv` (argv[0] an absolute path) as a successor that inherits `fds` as 3..3+n-1, with
// LISTEN_FDS=n, LISTEN_PID=<its own pid>, LISTEN_FDNAMES=<names joined by ':'> and
// WSGATE_READY_FD=3+n, the write end of a pipe whose read end is returned in `readyFd`
// (O_CLOEXEC|O_NONBLOCK). The successor writes "ready\n" there (signalReady); EOF without it
// means the successor exited first. The call returns once the exec has succeeded or failed, so
// a missing binary is an error here, not an exit status later. Returns the successor's pid, or
// -1 with `error` set; the caller reaps the successor.
pid_t spawnSuccessor(const std::vector<std::string>& argv, const std::vector<InheritedSocket>& fds,
                     int& readyFd, std::string& error);

// For a successor: when WSGATE_READY_FD names a pipe, writes "ready\n" to it and closes it.
// Unsets WSGATE_READY_FD either way. Returns true if the predecessor was told.
bool signalReady();

// Who else holds a listening TCP socket on `address`, asked before binding it with
// SO_REUSEPORT: such a bind would silently join another process's accept group (any process
// of the same user may) instead of failing. nullopt when the address is free (or when the
// question cannot be answered: the real bind will then report its own error); otherwise
// "address already in use: 127.0.0.1:8080 is held by pid 1234 (wsgate)", or "... is held by
// another process" when no process can be named. Port 0 is always free.
std::optional<std::string> addressHolder(const net::SocketAddress& address);

// The inodes of the LISTEN sockets in `procNetTcp` (the text of /proc/net/tcp or
// /proc/net/tcp6) that would collide with `address`, wildcards counted both ways. Part of
// addressHolder, separate so that its parsing can be tested on lines of either format.
std::vector<unsigned long> listeningSocketInodes(std::string_view procNetTcp,
                                                 const net::SocketAddress& address);

}  // namespace wsgate::proxy
