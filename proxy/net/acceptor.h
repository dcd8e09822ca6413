#pragma once
// A listening socket on an event loop. It accepts one connection each time the loop reports
// the socket readable (level-triggered: the loop's next poll reports the connections still
// queued), so no accept() fails with EAGAIN just to learn that the queue is empty; nginx
// does the same with multi_accept off. When the process is out of file descriptors or
// memory it stops accepting for a moment (kRetry, or earlier through resume()) instead of
// spinning on a socket that stays readable: connections wait in the kernel's queue, none
// is refused.

#include <sys/socket.h>

#include <chrono>

#include "proxy/net/handles.h"

namespace wsgate::net {

class Acceptor {
public:
  // A new connection: a non-blocking, close-on-exec socket the callee now owns.
  using OnAccept = void (*)(void* ctx, int fd, const sockaddr* peer, socklen_t len);
  // accept() failed for want of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM) or for a
  // reason that is not the connection's (EBADF, EINVAL...): accepting waits kRetry.
  using OnShortage = void (*)(void* ctx, int error);

  static constexpr std::chrono::milliseconds kRetry{100};

  // Takes ownership of `fd`, a listening socket; accepting starts at once.
  Acceptor(event_base* base, int fd, OnAccept onAccept, OnShortage onShortage, void* ctx);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  // Stops or restarts accepting for the owner's reasons (max_connections). Independent of
  // a shortage pause: accepting runs when neither holds it.
  void setEnabled(bool enabled);
  // A descriptor was freed (a connection closed): a shortage pause ends now, not at kRetry.
  void retryNow();
  bool shortagePaused() const { return shortage_; }
  int fd() const { return fd_; }

private:
  static void onReadableCb(evutil_socket_t, short, void* self) noexcept;
  static void onRetryCb(evutil_socket_t, short, void* self) noexcept;
  void acceptOne();
  void update();

  int fd_;
  OnAccept onAccept_;
  OnShortage onShortage_;
  void* ctx_;
  EventPtr readable_;
  EventPtr retry_;
  bool enabled_ = true;
  bool shortage_ = false;
  bool listening_ = false;  // readable_ is added
};

// accept() errors that say the process (not the connection) lacks something.
bool isResourceShortage(int error);

}  // namespace wsgate::net
