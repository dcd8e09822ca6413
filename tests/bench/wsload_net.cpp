// The ws:// URL, the clock, socket options, the TCP connect and the plain TCP transport.

#include "tests/bench/wsload_net.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace wsgate::bench {

uint64_t nowNs() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

bool parsePort(std::string_view text, uint16_t& out) {
  if (text.empty() || text.size() > 5) return false;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return false;
  out = static_cast<uint16_t>(value);
  return true;
}

// Splits "host", "host:port", "[v6]" or "[v6]:port"; `hasPort` says whether a port was given.
bool splitAuthority(std::string_view text, std::string& host, std::string_view& port,
                    bool& hasPort) {
  hasPort = false;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return false;
    host.assign(text.substr(1, close - 1));
    text.remove_prefix(close + 1);
    if (text.empty()) return !host.empty();
    if (text.front() != ':') return false;
    port = text.substr(1);
    hasPort = true;
    return !host.empty();
  }
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    host.assign(text);
  } else {
    host.assign(text.substr(0, colon));
    port = text.substr(colon + 1);
    hasPort = true;
  }
  return !host.empty() && host.find(':') == std::string::npos;
}

}  // namespace

std::string parseUrl(std::string_view text, Url& out) {
  const std::string bad = "expected ws://HOST:PORT/PATH, got \"" + std::string(text) + "\"";
  constexpr std::string_view kWs = "ws://";
  constexpr std::string_view kWss = "wss://";
  std::string_view rest;
  if (text.starts_with(kWs)) {
    out.tls = false;
    rest = text.substr(kWs.size());
  } else if (text.starts_with(kWss)) {
    out.tls = true;
    rest = text.substr(kWss.size());
  } else {
    return bad;
  }
  const std::size_t end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, end);
  std::string_view target = end == std::string_view::npos ? "" : rest.substr(end);
  target = target.substr(0, target.find('#'));  // a fragment is never sent (RFC 6455 3)

  std::string_view port;
  bool hasPort = false;
  if (!splitAuthority(authority, out.endpoint.host, port, hasPort)) return bad;
  out.endpoint.port = out.tls ? 443 : 80;
  if (hasPort && !parsePort(port, out.endpoint.port)) return bad;
  out.hostHeader.assign(authority);
  out.path.clear();
  if (target.empty() || target.front() != '/') out.path = "/";
  out.path.append(target);
  return {};
}

void raiseFileLimit() noexcept {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

void setNoDelay(int fd) noexcept {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

bool wouldBlock(int err) noexcept { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

std::string Transport::errorText(const IoResult& r) const { return std::strerror(r.error); }

namespace {

IoResult failure() noexcept { return {Io::Error, 0, errno}; }

}  // namespace

IoResult connectTcp(const SocketAddress& to, int& fd) {
  fd = ::socket(to.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return failure();
  setNoDelay(fd);
  if (::connect(fd, to.get(), to.length) == 0) return {};
  if (errno == EINPROGRESS) return {Io::WouldBlock};
  const IoResult r = failure();
  ::close(fd);
  fd = -1;
  return r;
}

IoResult connectOutcome(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return failure();
  if (err == 0) return {};
  return {Io::Error, 0, err};
}

namespace {

class PlainTransport final : public Transport {
public:
  explicit PlainTransport(int fd) : fd_(fd) {}
  ~PlainTransport() override { close(); }
  PlainTransport(const PlainTransport&) = delete;
  PlainTransport& operator=(const PlainTransport&) = delete;

  IoResult connect(const SocketAddress& to) override {
    close();
    return connectTcp(to, fd_);
  }

  IoResult finishConnect() override { return connectOutcome(fd_); }

  IoResult read(char* buf, std::size_t len) override {
    const ssize_t n = ::recv(fd_, buf, len, 0);
    if (n > 0) return {Io::Done, static_cast<std::size_t>(n)};
    if (n == 0) return {Io::Eof};
    if (wouldBlock(errno)) return {Io::WouldBlock};
    return failure();
  }

  IoResult writev(const iovec* iov, int count) override {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<std::size_t>(count);
    // MSG_NOSIGNAL: a peer that went away is an error to count, not a SIGPIPE.
    const ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n >= 0) return {Io::Done, static_cast<std::size_t>(n)};
    if (wouldBlock(errno)) return {Io::WouldBlock};
    return failure();
  }

  void close() noexcept override {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd() const noexcept override { return fd_; }

private:
  int fd_ = -1;
};

}  // namespace

TransportPtr makePlainTransport(int fd) { return std::make_unique<PlainTransport>(fd); }

}  // namespace wsgate::bench
