#include "proxy/control/listen_fds.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "proxy/net/handles.h"

extern char** environ;

namespace wsgate::proxy {
namespace {

constexpr int kFirstFd = 3;  // SD_LISTEN_FDS_START
constexpr std::string_view kPidKey = "LISTEN_PID=";
constexpr std::size_t kPidRoom = 20;  // digits of any pid_t, written by the child

using DirPtr = std::unique_ptr<DIR, net::Deleter<closedir>>;

// A whole, unsigned decimal (or hex) number: no sign, no spaces, nothing after it.
template <class Int>
std::optional<Int> parseNumber(std::string_view text, int base = 10) {
  if (text.empty() || text.front() == '-' || text.front() == '+') return std::nullopt;
  Int value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Reads and unsets one variable, so that nothing we start inherits it.
std::optional<std::string> takeVariable(const char* name) {
  const char* value = std::getenv(name);
  std::optional<std::string> out;
  if (value != nullptr) out = value;
  unsetenv(name);
  return out;
}

std::vector<std::string> splitNames(const std::string& joined) {
  std::vector<std::string> names;
  std::string::size_type start = 0;
  for (;;) {
    const auto colon = joined.find(':', start);
    names.push_back(joined.substr(start, colon - start));
    if (colon == std::string::npos) return names;
    start = colon + 1;
  }
}

std::optional<int> intOption(int fd, int name) {
  int value = 0;
  socklen_t length = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, name, &value, &length) != 0) return std::nullopt;
  return value;
}

// Why `fd` cannot serve as a listener, or nullptr when it can.
const char* whyNotListeningTcp(int fd) {
  const auto domain = intOption(fd, SO_DOMAIN);
  if (!domain) return "not a socket";
  if (*domain != AF_INET && *domain != AF_INET6) return "not an IPv4 or IPv6 socket";
  if (intOption(fd, SO_TYPE) != SOCK_STREAM || intOption(fd, SO_PROTOCOL) != IPPROTO_TCP) {
    return "not a TCP socket";
  }
  if (intOption(fd, SO_ACCEPTCONN).value_or(0) == 0) return "not listening";
  return nullptr;
}

bool setNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// The variables of a handover, which a successor must get from us and not from our parent.
bool isHandoverVariable(std::string_view entry) {
  for (std::string_view key :
       {"LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES=", "WSGATE_READY_FD="}) {
    if (entry.starts_with(key)) return true;
  }
  return false;
}

// Everything the child of fork needs, laid out before the fork: the parent is multi-threaded,
// so until execve the child may only make async-signal-safe calls (no allocation, no locks).
struct ChildPlan {
  const char* path;
  char* const* argv;
  char* const* envp;
  char* pidDigits;     // inside envp's LISTEN_PID= entry, kPidRoom + 1 bytes
  const int* sources;  // sources[i] becomes fd kFirstFd + i
  int* moved;          // scratch, one per source
  int count;
  int errorFd;  // O_CLOEXEC: EOF there tells the parent that execve succeeded
  sigset_t noSignals;
  struct sigaction defaultAction;
};

enum ChildStep : int { kMoveStep = 1, kPlaceStep, kExecStep };

struct ChildFailure {
  int step;
  int error;
};

std::string_view stepName(int step) {
  switch (step) {
    case kMoveStep:
      return "moving descriptors";
    case kPlaceStep:
      return "placing descriptors";
    default:
      return "exec";
  }
}

// A pid in decimal without locale or allocation: snprintf is not async-signal-safe.
void writeDecimal(char* out, pid_t value) noexcept {
  char reversed[kPidRoom];
  std::size_t length = 0;
  do {
    reversed[length++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0 && length < kPidRoom);
  for (std::size_t i = 0; i < length; ++i) out[i] = reversed[length - 1 - i];
  out[length] = '\0';
}

[[noreturn]] void failChild(int errorFd, int step) noexcept {
  const ChildFailure failure{step, errno};
  [[maybe_unused]] const ssize_t written = write(errorFd, &failure, sizeof failure);
  _exit(127);
}

[[noreturn]] void becomeSuccessor(const ChildPlan& plan) noexcept {
  // The caller's thread may block signals or the process ignore SIGPIPE (wsgate does): both
  // survive execve, and the successor should start as any fresh process does.
  sigprocmask(SIG_SETMASK, &plan.noSignals, nullptr);
  sigaction(SIGPIPE, &plan.defaultAction, nullptr);
  writeDecimal(plan.pidDigits, getpid());

  // Every source (and the error pipe) first moves above the target range, since one may sit
  // on another's target number; the copies are O_CLOEXEC and vanish at exec.
  const int above = kFirstFd + plan.count;
  const int errorFd = fcntl(plan.errorFd, F_DUPFD_CLOEXEC, above);
  if (errorFd < 0) failChild(plan.errorFd, kMoveStep);
  for (int i = 0; i < plan.count; ++i) {
    plan.moved[i] = fcntl(plan.sources[i], F_DUPFD_CLOEXEC, above);
    if (plan.moved[i] < 0) failChild(errorFd, kMoveStep);
  }
  // dup2 clears FD_CLOEXEC on its target: that is what carries the sockets across execve. (Not
  // when source and target are one number, as a socket already on its target would be: another
  // reason for the move above.)
  for (int i = 0; i < plan.count; ++i) {
    if (dup2(plan.moved[i], kFirstFd + i) < 0) failChild(errorFd, kPlaceStep);
  }
  // Descriptors opened without O_CLOEXEC (by a library, or inherited by us) must not reach the
  // successor: an accepted connection kept open there would never see its close. (Kernels
  // before 5.11 lack CLOSE_RANGE_CLOEXEC; there such descriptors are still inherited.)
  close_range(static_cast<unsigned>(above), ~0U, CLOSE_RANGE_CLOEXEC);
  execve(plan.path, plan.argv, plan.envp);
  failChild(errorFd, kExecStep);
}

// /proc/net/tcp{,6} endpoints and socket addresses, in one comparable form.
struct Endpoint {
  int family = AF_UNSPEC;
  std::array<unsigned char, 16> ip{};  // IPv4 in the first four bytes
  uint16_t port = 0;
};

// ::ffff:a.b.c.d is the IPv4 address a.b.c.d as far as a bind is concerned.
Endpoint unmapped(Endpoint e) {
  static constexpr unsigned char kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (e.family == AF_INET6 && std::memcmp(e.ip.data(), kMappedPrefix, 12) == 0) {
    std::memmove(e.ip.data(), e.ip.data() + 12, 4);
    std::fill(e.ip.begin() + 4, e.ip.end(), 0);
    e.family = AF_INET;
  }
  return e;
}

std::optional<Endpoint> endpointOf(const net::SocketAddress& address) {
  Endpoint e;
  e.port = address.port();
  if (address.storage.ss_family == AF_INET) {
    e.family = AF_INET;
    std::memcpy(e.ip.data(), &reinterpret_cast<const sockaddr_in*>(&address.storage)->sin_addr, 4);
  } else if (address.storage.ss_family == AF_INET6) {
    e.family = AF_INET6;
    std::memcpy(e.ip.data(), &reinterpret_cast<const sockaddr_in6*>(&address.storage)->sin6_addr,
                16);
  } else {
    return std::nullopt;
  }
  return unmapped(e);
}

// "0100007F:1F90" (tcp) or "00000000000000000000000001000000:1F90" (tcp6): the kernel prints
// each 32-bit word of the address as a native-endian integer, and the port in host order.
std::optional<Endpoint> parseProcEndpoint(std::string_view text) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string_view hex = text.substr(0, colon);
  const auto port = parseNumber<uint16_t>(text.substr(colon + 1), 16);
  if (!port || (hex.size() != 8 && hex.size() != 32)) return std::nullopt;
  Endpoint e;
  e.family = hex.size() == 8 ? AF_INET : AF_INET6;
  e.port = *port;
  for (std::size_t word = 0; word < hex.size() / 8; ++word) {
    const auto value = parseNumber<uint32_t>(hex.substr(word * 8, 8), 16);
    if (!value) return std::nullopt;
    std::memcpy(e.ip.data() + word * 4, &*value, 4);
  }
  return unmapped(e);
}

bool isWildcard(const Endpoint& e) {
  return std::all_of(e.ip.begin(), e.ip.end(), [](unsigned char b) { return b == 0; });
}

// Whether a listener on `held` keeps a bind of `wanted` out. A dual-stack [::] listener also
// holds IPv4; an IPv4 listener cannot hold our IPv6 probe, which is IPV6_V6ONLY.
bool collides(const Endpoint& held, const Endpoint& wanted) {
  if (held.port != wanted.port) return false;
  if (held.family == wanted.family) {
    return isWildcard(held) || isWildcard(wanted) || held.ip == wanted.ip;
  }
  return held.family == AF_INET6 && wanted.family == AF_INET && isWildcard(held);
}

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The processes with an fd on one of these socket inodes; what cannot be read is skipped.
std::vector<pid_t> processesHolding(const std::vector<unsigned long>& inodes) {
  std::set<std::string> links;
  for (unsigned long inode : inodes) links.insert("socket:[" + std::to_string(inode) + "]");
  std::vector<pid_t> pids;
  DirPtr proc(opendir("/proc"));
  if (!proc) return pids;
  while (const dirent* entry = readdir(proc.get())) {
    const auto pid = parseNumber<pid_t>(entry->d_name);
    if (!pid) continue;
    DirPtr fds(opendir(("/proc/" + std::to_string(*pid) + "/fd").c_str()));
    if (!fds) continue;  // exited, or not ours to read
    while (const dirent* fd = readdir(fds.get())) {
      char target[64];
      const ssize_t length = readlinkat(dirfd(fds.get()), fd->d_name, target, sizeof target);
      if (length > 0 && links.count(std::string(target, static_cast<std::size_t>(length)))) {
        pids.push_back(*pid);
        break;
      }
    }
  }
  std::sort(pids.begin(), pids.end());
  return pids;
}

std::string describeProcess(pid_t pid) {
  std::string comm;
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::getline(in, comm);
  return std::to_string(pid) + (comm.empty() ? "" : " (" + comm + ")");
}

}  // namespace

std::vector<InheritedSocket> takeInheritedSockets(std::vector<std::string>& problems) {
  const auto pidText = takeVariable("LISTEN_PID");
  const auto countText = takeVariable("LISTEN_FDS");
  const auto namesText = takeVariable("LISTEN_FDNAMES");
  if (!pidText || !countText) return {};
  // Another pid: they were meant for a process that exec'd us, and the fds are not ours.
  if (parseNumber<pid_t>(*pidText) != getpid()) return {};
  const auto count = parseNumber<int>(*countText);
  if (!count) {
    problems.push_back("LISTEN_FDS=" + *countText + " is not a number of descriptors");
    return {};
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
      static_cast<rlim_t>(*count) + kFirstFd > limit.rlim_cur) {
    problems.push_back("LISTEN_FDS=" + *countText + " is beyond the descriptor limit of " +
                       std::to_string(limit.rlim_cur));
    return {};
  }
  if (*count == 0) return {};

  std::vector<std::string> names(static_cast<std::size_t>(*count));
  if (namesText) {
    auto given = splitNames(*namesText);
    if (given.size() == names.size()) {
      names = std::move(given);
    } else {
      // Names that do not pair up with the fds would label the wrong sockets.
      problems.push_back("LISTEN_FDNAMES has " + std::to_string(given.size()) + " names for " +
                         std::to_string(*count) + " descriptors; names ignored");
    }
  }

  std::vector<InheritedSocket> sockets;
  for (int i = 0; i < *count; ++i) {
    const int fd = kFirstFd + i;
    auto& name = names[static_cast<std::size_t>(i)];
    const std::string label =
        "inherited fd " + std::to_string(fd) + (name.empty() ? "" : " (" + name + ")");
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
      problems.push_back(label + ": not open");
      continue;
    }
    const char* why = whyNotListeningTcp(fd);
    const auto address = why == nullptr ? net::localAddress(fd) : std::nullopt;
    if (why == nullptr && !address) why = "no local address";
    if (why == nullptr && !setNonBlocking(fd)) why = "cannot be made non-blocking";
    if (why != nullptr) {
      problems.push_back(label + ": " + why + ", closed");
      close(fd);
      continue;
    }
    sockets.push_back({fd, *address, std::move(name)});
  }
  return sockets;
}

pid_t spawnSuccessor(const std::vector<std::string>& argv, const std::vector<InheritedSocket>& fds,
                     int& readyFd, std::string& error) {
  readyFd = -1;
  if (argv.empty() || !argv[0].starts_with('/')) {
    error = "successor: argv[0] must be an absolute path";
    return -1;
  }
  std::string names;
  for (const auto& socket : fds) {
    if (fcntl(socket.fd, F_GETFD) < 0) {
      error = "successor: fd " + std::to_string(socket.fd) + " is not open";
      return -1;
    }
    if (socket.name.find(':') != std::string::npos) {
      error = "successor: socket name '" + socket.name + "' contains ':'";
      return -1;
    }
    names += (&socket == &fds.front() ? "" : ":") + socket.name;
  }
  const int count = static_cast<int>(fds.size());

  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (!isHandoverVariable(*entry)) env.emplace_back(*entry);
  }
  env.push_back("LISTEN_FDS=" + std::to_string(count));
  env.push_back("LISTEN_FDNAMES=" + names);
  env.push_back("WSGATE_READY_FD=" + std::to_string(kFirstFd + count));
  env.push_back(std::string(kPidKey) + std::string(kPidRoom, '0'));
  // Pointers only now: until the vectors stop growing their strings may move.
  std::vector<char*> envp;
  for (auto& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (auto& arg : args) argp.push_back(arg.data());
  argp.push_back(nullptr);

  int ready[2];
  int errors[2];
  if (pipe2(ready, O_CLOEXEC) != 0) {
    error = std::string("successor: pipe: ") + std::strerror(errno);
    return -1;
  }
  if (pipe2(errors, O_CLOEXEC) != 0) {
    error = std::string("successor: pipe: ") + std::strerror(errno);
    close(ready[0]);
    close(ready[1]);
    return -1;
  }
  std::vector<int> sources;
  for (const auto& socket : fds) sources.push_back(socket.fd);
  sources.push_back(ready[1]);  // becomes WSGATE_READY_FD, right after the sockets
  std::vector<int> moved(sources.size());

  ChildPlan plan{.path = args[0].c_str(),
                 .argv = argp.data(),
                 .envp = envp.data(),
                 .pidDigits = env.back().data() + kPidKey.size(),
                 .sources = sources.data(),
                 .moved = moved.data(),
                 .count = static_cast<int>(sources.size()),
                 .errorFd = errors[1]};
  sigemptyset(&plan.noSignals);
  plan.defaultAction.sa_handler = SIG_DFL;
  sigemptyset(&plan.defaultAction.sa_mask);

  const pid_t pid = fork();
  if (pid == 0) becomeSuccessor(plan);
  const int forkError = errno;
  close(ready[1]);
  close(errors[1]);
  if (pid < 0) {
    close(ready[0]);
    close(errors[0]);
    error = std::string("successor: fork: ") + std::strerror(forkError);
    return -1;
  }

  ChildFailure failure{};
  ssize_t got;
  do {
    got = read(errors[0], &failure, sizeof failure);
  } while (got < 0 && errno == EINTR);
  close(errors[0]);
  if (got > 0) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    close(ready[0]);
    error = "cannot start " + argv[0] + ": " + std::string(stepName(failure.step)) + ": " +
            std::strerror(failure.error);
    return -1;
  }
  setNonBlocking(ready[0]);
  readyFd = ready[0];
  return pid;
}

bool signalReady() {
  const auto value = takeVariable("WSGATE_READY_FD");
  if (!value) return false;
  const auto fd = parseNumber<int>(*value);
  struct stat st {};
  // The number may be stale (the variable leaked past a process that did not take it, and the
  // fd was reused): only a pipe can be the one spawnSuccessor made.
  if (!fd || fstat(*fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return false;

  // A predecessor that gave up and closed its end must not kill us with SIGPIPE: block it on
  // this thread for the write, and take back the one the write raised.
  sigset_t pipeOnly;
  sigset_t previous;
  sigset_t pending;
  sigemptyset(&pipeOnly);
  sigaddset(&pipeOnly, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipeOnly, &previous);
  sigpending(&pending);
  const bool alreadyPending = sigismember(&pending, SIGPIPE) == 1;
  static constexpr std::string_view kReady = "ready\n";
  ssize_t written;
  do {
    written = write(*fd, kReady.data(), kReady.size());
  } while (written < 0 && errno == EINTR);
  if (written < 0 && errno == EPIPE && !alreadyPending) {
    const timespec now{};
    sigtimedwait(&pipeOnly, nullptr, &now);
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  close(*fd);
  return written == static_cast<ssize_t>(kReady.size());
}

std::vector<unsigned long> listeningSocketInodes(std::string_view procNetTcp,
                                                 const net::SocketAddress& address) {
  std::vector<unsigned long> inodes;
  const auto wanted = endpointOf(address);
  if (!wanted) return inodes;
  while (!procNetTcp.empty()) {
    const auto newline = procNetTcp.find('\n');
    const std::string_view line = procNetTcp.substr(0, newline);
    procNetTcp.remove_prefix(newline == std::string_view::npos ? procNetTcp.size() : newline + 1);
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    const auto f = fields(line);
    if (f.size() < 10 || f[3] != "0A") continue;  // 0A is TCP_LISTEN
    const auto held = parseProcEndpoint(f[1]);
    const auto inode = parseNumber<unsigned long>(f[9]);
    if (held && inode && *inode != 0 && collides(*held, *wanted)) inodes.push_back(*inode);
  }
  return inodes;
}

std::optional<std::string> addressHolder(const net::SocketAddress& address) {
  if (address.port() == 0) return std::nullopt;
  const int family = address.storage.ss_family;
  const int probe = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return std::nullopt;
  // SO_REUSEADDR, so that TIME_WAIT left by an earlier run does not count (those sockets carry
  // it too: openListener sets it and accepted sockets inherit it). No SO_REUSEPORT, so that a
  // listener which has it collides instead of letting us join its group.
  const int one = 1;
  setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family == AF_INET6) setsockopt(probe, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  const bool inUse = bind(probe, address.get(), address.length) != 0 && errno == EADDRINUSE;
  close(probe);
  if (!inUse) return std::nullopt;

  std::vector<unsigned long> inodes;
  for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    const auto found = listeningSocketInodes(readFile(path), address);
    inodes.insert(inodes.end(), found.begin(), found.end());
  }
  const auto pids = inodes.empty() ? std::vector<pid_t>{} : processesHolding(inodes);
  std::string message = "address already in use: " + address.str() + " is held by ";
  if (pids.empty()) return message + "another process";
  message += pids.size() == 1 ? "pid " : "pids ";
  for (std::size_t i = 0; i < pids.size(); ++i) {
    message += (i == 0 ? "" : ", ") + describeProcess(pids[i]);
  }
  return message;
}

}  // namespace wsgate::proxy
