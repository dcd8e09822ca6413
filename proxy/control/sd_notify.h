#pragma once
// systemd's readiness protocol (sd_notify(3)) without libsystemd: datagrams of "KEY=VALUE"
// lines sent to the unix socket NOTIFY_SOCKET names. wsgate says READY=1 once its listeners
// are open, RELOADING=1 (with MONOTONIC_USEC) when a reload starts and READY=1 when it is
// done, STOPPING=1 when a drain begins, and MAINPID=<pid> when a new binary it started takes
// over (SIGUSR2), so a unit with Type=notify follows the process that serves.

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsgate::proxy {

// Where NOTIFY_SOCKET points: an absolute path, or "@name" for the abstract namespace.
// nullopt for anything else (empty, relative, too long for sun_path).
struct NotifyAddress {
  sockaddr_un addr{};
  socklen_t length = 0;
};
std::optional<NotifyAddress> notifyAddress(std::string_view value);

// The messages, as sd_notify(3) spells them.
std::string readyMessage(std::string_view status);
std::string reloadingMessage(uint64_t monotonicUsec, std::string_view status);
std::string stoppingMessage(std::string_view status);
std::string mainPidMessage(pid_t pid, std::string_view status);

class SystemdNotifier {
public:
  // Reads NOTIFY_SOCKET once; without it (not started by systemd) every call does nothing.
  // The variable stays set: a successor started by SIGUSR2 tells the same manager.
  static SystemdNotifier fromEnvironment();

  bool enabled() const { return address_.has_value(); }
  void ready(std::string_view status) { send(readyMessage(status)); }
  void reloading(std::string_view status);
  void stopping(std::string_view status) { send(stoppingMessage(status)); }
  void mainPid(pid_t pid, std::string_view status) { send(mainPidMessage(pid, status)); }

private:
  // One datagram; false (logged at debug) when it could not be sent. Never blocks.
  bool send(const std::string& message);

  std::optional<NotifyAddress> address_;
};

}  // namespace wsgate::proxy
