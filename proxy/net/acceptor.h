#pragma once
// A listening socket on an event loop. Each time the loop reports the socket readable
// (level-triggered) it accepts one connection, or more while a backlog builds up: when the
// socket was readable on the previous loop turn too, the burst doubles, up to kMaxBurst,
// and it falls back to one at the first EAGAIN. So at an ordinary rate no accept() fails
// with EAGAIN just to find the queue empty (nginx's multi_accept off), and a reconnect storm
// is still drained at up to kMaxBurst connections per turn (HAProxy's tune.maxaccept).
//
// When the process is out of file descriptors or memory it stops polling the socket for
// kRetry instead of spinning on a socket that stays readable: connections wait in the
// kernel's queue, none is refused. (Not earlier when a connection closes: requests already
// accepted and waiting for a backend socket retry every 20 ms and should get the freed
// descriptors before new clients do.)

#include <sys/socket.h>

#include <chrono>
#include <cstdint>

#include "proxy/net/handles.h"

namespace wsgate::net {

class Acceptor {
public:
  // A new connection: a non-blocking, close-on-exec socket the callee now owns.
  using OnAccept = void (*)(void* ctx, int fd, const sockaddr* peer, socklen_t len) noexcept;
  // accept() failed for want of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM) or for a
  // reason that is not the connection's (EBADF, EINVAL...): accepting waits kRetry.
  using OnShortage = void (*)(void* ctx, int error) noexcept;

  static constexpr std::chrono::milliseconds kRetry{100};
  static constexpr int kMaxBurst = 64;

  // Takes ownership of `fd`, a listening socket; accepting starts at once. `loopTurn`
  // counts the owner's loop turns (null: one connection per readiness report, always).
  Acceptor(event_base* base, int fd, OnAccept onAccept, OnShortage onShortage, void* ctx,
           const uint64_t* loopTurn = nullptr);
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  // Stops or restarts accepting for the owner's reasons (max_connections). Independent of
  // a shortage pause: accepting runs when neither holds it.
  void setEnabled(bool enabled);
  bool shortagePaused() const { return shortage_; }
  int fd() const { return fd_; }

private:
  static void onReadableCb(evutil_socket_t, short, void* self) noexcept;
  static void onRetryCb(evutil_socket_t, short, void* self) noexcept;
  void onReadable();
  void retry();  // the shortage pause is over
  // One accept(); false when accepting should stop for this turn.
  bool acceptOne();
  void update();

  int fd_;
  OnAccept onAccept_;
  OnShortage onShortage_;
  void* ctx_;
  const uint64_t* loopTurn_;
  uint64_t lastTurn_ = UINT64_MAX / 2;  // the loop turn of the last readiness report
  int burst_ = 1;
  EventPtr readable_;
  EventPtr retry_;
  bool enabled_ = true;
  bool shortage_ = false;
  bool listening_ = false;  // readable_ is added
};

}  // namespace wsgate::net
