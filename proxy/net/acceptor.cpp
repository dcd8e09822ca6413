#include "proxy/net/acceptor.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "proxy/net/errors.h"

namespace wsgate::net {
namespace {

// accept() errors that belong to one connection (it was reset while queued, a firewall
// refused it...): that connection is lost, the others still queued are fine.
bool isConnectionError(int error) {
  switch (error) {
    case ECONNABORTED:
    case EPROTO:
    case EPERM:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case ETIMEDOUT:
      return true;
    default:
      return false;
  }
}

}  // namespace

Acceptor::Acceptor(event_base* base, int fd, OnAccept onAccept, OnShortage onShortage, void* ctx,
                   const uint64_t* loopTurn)
    : fd_(fd),
      onAccept_(onAccept),
      onShortage_(onShortage),
      ctx_(ctx),
      loopTurn_(loopTurn),
      readable_(event_new(base, fd, EV_READ | EV_PERSIST, &Acceptor::onReadableCb, this)),
      retry_(evtimer_new(base, &Acceptor::onRetryCb, this)) {
  update();
}

Acceptor::~Acceptor() {
  readable_.reset();
  retry_.reset();
  ::close(fd_);
}

void Acceptor::setEnabled(bool enabled) {
  enabled_ = enabled;
  update();
}

void Acceptor::retry() {
  if (!shortage_) return;
  shortage_ = false;
  evtimer_del(retry_.get());
  update();
}

void Acceptor::update() {
  const bool want = enabled_ && !shortage_;
  if (want == listening_) return;
  listening_ = want;
  if (want) {
    event_add(readable_.get(), nullptr);
  } else {
    event_del(readable_.get());
  }
}

void Acceptor::onReadableCb(evutil_socket_t, short, void* self) noexcept {
  static_cast<Acceptor*>(self)->onReadable();
}

void Acceptor::onRetryCb(evutil_socket_t, short, void* self) noexcept {
  static_cast<Acceptor*>(self)->retry();
}

void Acceptor::onReadable() {
  if (loopTurn_ != nullptr) {
    // Readable again on the next turn (or within the same one): connections arrive faster
    // than one per turn.
    burst_ = *loopTurn_ - lastTurn_ <= 1 ? std::min(burst_ * 2, kMaxBurst) : 1;
    lastTurn_ = *loopTurn_;
  }
  for (int i = 0; i < burst_; ++i) {
    if (!acceptOne()) return;
  }
}

bool Acceptor::acceptOne() {
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  const int fd =
      accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) {
    onAccept_(ctx_, fd, reinterpret_cast<const sockaddr*>(&peer), len);
    return listening_;  // the owner may have paused accepting (max_connections)
  }
  const int error = errno;
  if (retriable(error)) {
    burst_ = 1;  // the queue is empty
    return false;
  }
  if (isConnectionError(error)) return true;
  // Out of descriptors (or worse): the socket stays readable, so polling it again now
  // would spin. Wait kRetry.
  shortage_ = true;
  update();
  const timeval retry = toTimeval(kRetry);
  evtimer_add(retry_.get(), &retry);
  onShortage_(ctx_, error);
  return false;
}

}  // namespace wsgate::net
