#include "proxy/control/sd_notify.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "proxy/log.h"

namespace wsgate::proxy {
namespace {

// STATUS= is one line: a newline would start another assignment.
std::string statusLine(std::string_view status) {
  std::string line;
  if (status.empty()) return line;
  line = "\nSTATUS=";
  for (char c : status) line += c == '\n' ? ' ' : c;
  return line;
}

}  // namespace

std::optional<NotifyAddress> notifyAddress(std::string_view value) {
  if (value.size() < 2 || (value[0] != '/' && value[0] != '@')) return std::nullopt;
  NotifyAddress a;
  a.addr.sun_family = AF_UNIX;
  // A path needs its terminating NUL inside sun_path; an abstract name does not.
  const std::size_t room = sizeof a.addr.sun_path - (value[0] == '/' ? 1 : 0);
  if (value.size() > room) return std::nullopt;
  std::memcpy(a.addr.sun_path, value.data(), value.size());
  if (value[0] == '@') a.addr.sun_path[0] = '\0';  // the abstract namespace
  a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + value.size() +
                                    (value[0] == '/' ? 1 : 0));
  return a;
}

std::string readyMessage(std::string_view status) { return "READY=1" + statusLine(status); }

std::string reloadingMessage(uint64_t monotonicUsec, std::string_view status) {
  return fmt::format("RELOADING=1\nMONOTONIC_USEC={}{}", monotonicUsec, statusLine(status));
}

std::string stoppingMessage(std::string_view status) { return "STOPPING=1" + statusLine(status); }

std::string mainPidMessage(pid_t pid, std::string_view status) {
  return fmt::format("MAINPID={}\nREADY=1{}", pid, statusLine(status));
}

SystemdNotifier SystemdNotifier::fromEnvironment() {
  SystemdNotifier n;
  const char* value = std::getenv("NOTIFY_SOCKET");
  if (value != nullptr && *value != '\0') {
    n.address_ = notifyAddress(value);
    if (!n.address_) log().warn("NOTIFY_SOCKET={} is not a socket path: not notifying", value);
  }
  return n;
}

void SystemdNotifier::reloading(std::string_view status) {
  if (!enabled()) return;
  // systemd (Type=notify-reload) wants CLOCK_MONOTONIC at the time the reload began.
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  send(reloadingMessage(
      static_cast<uint64_t>(now.tv_sec) * 1000000u + static_cast<uint64_t>(now.tv_nsec) / 1000u,
      status));
}

bool SystemdNotifier::send(const std::string& message) {
  if (!address_) return false;
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  const ssize_t sent =
      ::sendto(fd, message.data(), message.size(), MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&address_->addr), address_->length);
  const int error = errno;
  ::close(fd);
  if (sent < 0) {
    log().debug("NOTIFY_SOCKET: {} not sent: {}", message.substr(0, message.find('\n')),
                std::strerror(error));
    return false;
  }
  return true;
}

}  // namespace wsgate::proxy
