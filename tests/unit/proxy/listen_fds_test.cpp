// Sockets from outside the process, on real 127.0.0.1 sockets: the sd_listen_fds protocol
// (checked in a forked child, since fds 3.. of the test process are not ours to rearrange), a
// successor started with its sockets and ready pipe, the ready signal, and who holds an address.

#include "proxy/control/listen_fds.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::proxy {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(10);

net::SocketAddress addressOf(const std::string& host, uint16_t port) {
  std::string error;
  auto address = net::resolve(conf::HostPort{host, port}, error);
  EXPECT_TRUE(address) << error;
  return address.value_or(net::SocketAddress{});
}

uint16_t portOf(int fd) { return net::localAddress(fd).value_or(net::SocketAddress{}).port(); }

// A TCP socket on `host`:`port` (0: the kernel picks), listening if asked; blocking and without
// FD_CLOEXEC, as a process that hands it over would leave it.
int tcpSocket(const std::string& host, uint16_t port, bool listening, bool reuseAddress = true) {
  const auto address = addressOf(host, port);
  const int fd = socket(address.storage.ss_family, SOCK_STREAM, 0);
  const int one = 1;
  if (reuseAddress) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  EXPECT_EQ(bind(fd, address.get(), address.length), 0) << std::strerror(errno);
  if (listening) {
    EXPECT_EQ(listen(fd, 16), 0);
  }
  return fd;
}

std::string processName(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string comm;
  std::getline(in, comm);
  return comm;
}

std::string heldBy(const net::SocketAddress& address, pid_t pid) {
  return "address already in use: " + address.str() + " is held by pid " + std::to_string(pid) +
         " (" + processName(pid) + ")";
}

// "open,cloexec,nonblock", "open" or "closed": what became of a descriptor.
std::string fdState(int fd) {
  const int fdFlags = fcntl(fd, F_GETFD);
  if (fdFlags < 0) return "closed";
  const int statusFlags = fcntl(fd, F_GETFL);
  return std::string("open") + ((fdFlags & FD_CLOEXEC) ? ",cloexec" : "") +
         ((statusFlags & O_NONBLOCK) ? ",nonblock" : "");
}

// Reads until EOF or the deadline; "" plus what arrived if the deadline passed first.
std::string readUntilEof(int fd) {
  std::string text;
  const auto until = Clock::now() + kDeadline;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) == 0) {
      return text + "<deadline>";
    }
    char buf[512];
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      text.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      return text;
    }
  }
}

std::string exitDescription(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return "not reaped";
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

// Runs `body` in a forked child where fds 3.. are free (new sockets land on 3, 4, ... in
// order), and returns what it returned, or how the child died. The child leaves with _exit, so
// gtest's state there never runs; EXPECTs inside it would be lost, hence the returned text.
std::string inChild(const std::function<std::string()>& body) {
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) return "pipe failed";
  const pid_t pid = fork();
  if (pid == 0) {
    const int out = fcntl(report[1], F_DUPFD_CLOEXEC, 64);
    close_range(3, static_cast<unsigned>(out) - 1, 0);
    close_range(static_cast<unsigned>(out) + 1, ~0U, 0);
    const std::string text = body();
    std::size_t sent = 0;
    while (sent < text.size()) {
      const ssize_t n = write(out, text.data() + sent, text.size() - sent);
      if (n <= 0) _exit(2);
      sent += static_cast<std::size_t>(n);
    }
    _exit(0);
  }
  close(report[1]);
  std::string text = readUntilEof(report[0]);
  close(report[0]);
  const std::string how = exitDescription(pid);
  return how == "exit 0" ? text : text + "[child: " + how + "]";
}

// --- takeInheritedSockets -------------------------------------------------------------------

enum class Kind { Listener, Bound, Udp, Pipe, UnixListener };

// Creates a descriptor of `kind`; in inChild's child it lands on the lowest free number.
int makeFd(Kind kind) {
  switch (kind) {
    case Kind::Listener:
      return tcpSocket("127.0.0.1", 0, true);
    case Kind::Bound:
      return tcpSocket("127.0.0.1", 0, false);
    case Kind::Udp:
      return socket(AF_INET, SOCK_DGRAM, 0);
    case Kind::Pipe: {
      int p[2];
      if (pipe(p) != 0) return -1;
      close(p[1]);
      return p[0];
    }
    case Kind::UnixListener: {
      const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un address{};
      address.sun_family = AF_UNIX;  // autobind: an abstract name of the kernel's choosing
      bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(sa_family_t));
      listen(fd, 1);
      return fd;
    }
  }
  return -1;
}

struct TakeCase {
  std::string name;
  std::vector<Kind> fds;             // placed on 3, 4, ...
  std::optional<std::string> pid;    // "self": the process that takes them
  std::optional<std::string> count;  // LISTEN_FDS
  std::optional<std::string> names;  // LISTEN_FDNAMES
  std::string expect;
};
void PrintTo(const TakeCase& c, std::ostream* os) { *os << c.name; }

// In the child: sets the case up, takes, and says what happened, one line each: the sockets
// taken (port "same" when it is the listener placed there), the problems, then what became of
// every placed fd that was not taken, and any variable left behind.
std::string runTake(const TakeCase& c) {
  std::map<int, uint16_t> ports;
  for (Kind kind : c.fds) {
    const int fd = makeFd(kind);
    ports[fd] = kind == Kind::Listener ? portOf(fd) : 0;
  }
  const auto set = [](const char* name, const std::optional<std::string>& value) {
    if (value)
      setenv(name, *value == "self" ? std::to_string(getpid()).c_str() : value->c_str(), 1);
  };
  set("LISTEN_PID", c.pid);
  set("LISTEN_FDS", c.count);
  set("LISTEN_FDNAMES", c.names);

  std::vector<std::string> problems;
  const auto sockets = takeInheritedSockets(problems);
  std::ostringstream out;
  for (const auto& s : sockets) {
    out << "take " << s.fd << " name=" << s.name
        << " port=" << (s.address.port() == ports[s.fd] ? "same" : "other") << " " << fdState(s.fd)
        << "\n";
    ports.erase(s.fd);
  }
  for (const auto& p : problems) out << "problem: " << p << "\n";
  for (const auto& [fd, port] : ports) out << "fd " << fd << " " << fdState(fd) << "\n";
  for (const char* name : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) {
    if (std::getenv(name) != nullptr) out << "left in environment: " << name << "\n";
  }
  return out.str();
}

class ListenFdsTake : public ::testing::TestWithParam<TakeCase> {};

TEST_P(ListenFdsTake, Case) {
  EXPECT_EQ(inChild([] { return runTake(GetParam()); }), GetParam().expect);
}

const std::string kTaken = "open,cloexec,nonblock";

INSTANTIATE_TEST_SUITE_P(
    ListenFds, ListenFdsTake,
    ::testing::Values(
        TakeCase{"ReturnsNothingWithoutListenPid",
                 {Kind::Listener},
                 std::nullopt,
                 "1",
                 "web",
                 "fd 3 open\n"},
        TakeCase{"LeavesSocketsMeantForAnotherProcessAlone",
                 {Kind::Listener},
                 "1",
                 "1",
                 std::nullopt,
                 "fd 3 open\n"},
        TakeCase{"TakesListeningSocketsFromFdThreeOn",
                 {Kind::Listener, Kind::Listener},
                 "self",
                 "2",
                 std::nullopt,
                 "take 3 name= port=same " + kTaken + "\ntake 4 name= port=same " + kTaken + "\n"},
        TakeCase{"NamesThemFromListenFdnames",
                 {Kind::Listener, Kind::Listener},
                 "self",
                 "2",
                 "web:admin",
                 "take 3 name=web port=same " + kTaken + "\ntake 4 name=admin port=same " + kTaken +
                     "\n"},
        TakeCase{"IgnoresNamesThatDoNotPairUpWithTheFds",
                 {Kind::Listener, Kind::Listener},
                 "self",
                 "2",
                 "web",
                 "take 3 name= port=same " + kTaken + "\ntake 4 name= port=same " + kTaken +
                     "\nproblem: LISTEN_FDNAMES has 1 names for 2 descriptors; names ignored\n"},
        TakeCase{"ClosesAndReportsWhatIsNotAListeningTcpSocket",
                 {Kind::Listener, Kind::Bound, Kind::Udp, Kind::Pipe, Kind::UnixListener},
                 "self",
                 "5",
                 "web:bound::pipe:unix",
                 "take 3 name=web port=same " + kTaken +
                     "\n"
                     "problem: inherited fd 4 (bound): not listening, closed\n"
                     "problem: inherited fd 5: not a TCP socket, closed\n"
                     "problem: inherited fd 6 (pipe): not a socket, closed\n"
                     "problem: inherited fd 7 (unix): not an IPv4 or IPv6 socket, closed\n"
                     "fd 4 closed\nfd 5 closed\nfd 6 closed\nfd 7 closed\n"},
        TakeCase{"ReportsFdsThatAreNotOpen",
                 {Kind::Listener},
                 "self",
                 "2",
                 std::nullopt,
                 "take 3 name= port=same " + kTaken + "\nproblem: inherited fd 4: not open\n"},
        TakeCase{"RefusesAListenFdsThatIsNotANumber",
                 {Kind::Listener},
                 "self",
                 "two",
                 std::nullopt,
                 "problem: LISTEN_FDS=two is not a number of descriptors\nfd 3 open\n"}),
    [](const ::testing::TestParamInfo<TakeCase>& info) { return info.param.name; });

// Outside the table because the limit in the message depends on the machine.
TEST(ListenFdsTakeLimit, RefusesMoreFdsThanTheProcessMayHold) {
  const std::string said = inChild([] {
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    setenv("LISTEN_FDS", "2147483000", 1);
    std::vector<std::string> problems;
    const auto sockets = takeInheritedSockets(problems);
    return std::to_string(sockets.size()) + " " + (problems.empty() ? "" : problems[0]) +
           (std::getenv("LISTEN_PID") || std::getenv("LISTEN_FDS") ? " (left in environment)" : "");
  });
  EXPECT_TRUE(said.starts_with("0 LISTEN_FDS=2147483000 is beyond the descriptor limit of "))
      << said;
  EXPECT_FALSE(said.ends_with("(left in environment)")) << said;
}

// --- spawnSuccessor -------------------------------------------------------------------------

// The successor: a shell that writes its handover variables, its own pid and its fd table to
// the file in $1, then says ready through the pipe, as signalReady would. `exec >` moves stdout
// for good: a per-command redirection would have dash keep a saved copy open while ls looks.
const std::string kSuccessorScript =
    "exec >\"$1\" && echo \"$LISTEN_FDS $LISTEN_PID $$ $LISTEN_FDNAMES $WSGATE_READY_FD\" && "
    "ls -l /proc/$$/fd && printf 'ready\\n' >&\"$WSGATE_READY_FD\"";

ino_t inodeOf(int fd) {
  struct stat st {};
  fstat(fd, &st);
  return st.st_ino;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Starts the script as the successor of `fds` and describes what it saw, with the inodes of
// `known` (a socket or pipe) replaced by their labels:
//   "LISTEN_FDS=2 LISTEN_PID=self LISTEN_FDNAMES=a:b WSGATE_READY_FD=5\n"
//   "fds 3=a 4=b 5=ready\n" "ready\n" "exit 0\n"
std::string runSuccessor(const std::vector<InheritedSocket>& fds,
                         std::map<ino_t, std::string> known) {
  char path[] = "/tmp/wsgate-listen-fds-XXXXXX";
  const int file = mkstemp(path);
  if (file < 0) return "mkstemp failed";
  close(file);
  int readyFd = -1;
  std::string error;
  const pid_t pid =
      spawnSuccessor({"/bin/sh", "-c", kSuccessorScript, "sh", path}, fds, readyFd, error);
  if (pid < 0) return "spawn failed: " + error;
  known[inodeOf(readyFd)] = "ready";
  const std::string signalled = readUntilEof(readyFd);
  const std::string how = exitDescription(pid);
  close(readyFd);
  std::istringstream seen(readFile(path));
  unlink(path);

  std::ostringstream out;
  std::string count, listenPid, shellPid, names, readyNumber;
  for (std::string* field : {&count, &listenPid, &shellPid, &names})
    std::getline(seen, *field, ' ');
  std::getline(seen, readyNumber);
  const bool self = listenPid == shellPid && listenPid == std::to_string(pid);
  out << "LISTEN_FDS=" << count << " LISTEN_PID=" << (self ? "self" : listenPid + "/" + shellPid)
      << " LISTEN_FDNAMES=" << names << " WSGATE_READY_FD=" << readyNumber << "\nfds";
  for (std::string line; std::getline(seen, line);) {
    // "lrwx------ 1 root root 64 Jan  1 00:00 3 -> socket:[1234]"
    const auto arrow = line.find(" -> ");
    if (arrow == std::string::npos) continue;
    const std::string fd =
        line.substr(line.rfind(' ', arrow - 1) + 1, arrow - line.rfind(' ', arrow - 1) - 1);
    if (std::stoi(fd) < 3) continue;
    std::string target = line.substr(arrow + 4);
    const auto open = target.find('[');
    if (open != std::string::npos) {
      const auto it = known.find(std::stoul(target.substr(open + 1)));
      if (it != known.end()) target = it->second;
    }
    out << " " << fd << "=" << target;
  }
  out << "\n" << signalled << how << "\n";
  return out.str();
}

TEST(ListenFdsSpawn, HandsTheSocketsAndTheReadyPipeToTheSuccessor) {
  const int a = tcpSocket("127.0.0.1", 0, true);
  const int b = tcpSocket("127.0.0.1", 0, true);
  const int stray = open("/dev/null", O_RDONLY);  // no O_CLOEXEC: must not reach the successor
  const std::vector<InheritedSocket> fds = {{a, *net::localAddress(a), "a"},
                                            {b, *net::localAddress(b), "b"}};
  EXPECT_EQ(runSuccessor(fds, {{inodeOf(a), "a"}, {inodeOf(b), "b"}}),
            "LISTEN_FDS=2 LISTEN_PID=self LISTEN_FDNAMES=a:b WSGATE_READY_FD=5\n"
            "fds 3=a 4=b 5=ready\n"
            "ready\n"
            "exit 0\n");
  close(a);
  close(b);
  close(stray);
}

// Sockets already on each other's target numbers (a on 3 must go to 4, b on 4 to 3), and the
// parent's end of the ready pipe on the ready fd's number (5): nothing may be clobbered.
TEST(ListenFdsSpawn, MovesSocketsThatSitOnEachOthersNumbers) {
  EXPECT_EQ(inChild([] {
              const int a = tcpSocket("127.0.0.1", 0, true);
              const int b = tcpSocket("127.0.0.1", 0, true);
              if (a != 3 || b != 4) return std::string("sockets not on 3 and 4");
              return runSuccessor(
                  {{b, *net::localAddress(b), "b"}, {a, *net::localAddress(a), "a"}},
                  {{inodeOf(a), "a"}, {inodeOf(b), "b"}});
            }),
            "LISTEN_FDS=2 LISTEN_PID=self LISTEN_FDNAMES=b:a WSGATE_READY_FD=5\n"
            "fds 3=b 4=a 5=ready\n"
            "ready\n"
            "exit 0\n");
}

TEST(ListenFdsSpawn, StartsWithNoSocketsAtAll) {
  EXPECT_EQ(runSuccessor({}, {}),
            "LISTEN_FDS=0 LISTEN_PID=self LISTEN_FDNAMES= WSGATE_READY_FD=3\n"
            "fds 3=ready\n"
            "ready\n"
            "exit 0\n");
}

TEST(ListenFdsSpawn, ClosesTheReadyPipeWithoutReadyWhenTheSuccessorExits) {
  int readyFd = -1;
  std::string error;
  const pid_t pid = spawnSuccessor({"/bin/sh", "-c", "exit 3"}, {}, readyFd, error);
  ASSERT_GT(pid, 0) << error;
  EXPECT_EQ(readUntilEof(readyFd), "");
  EXPECT_EQ(exitDescription(pid), "exit 3");
  close(readyFd);
}

// What a successor started as `argv` printed, then how it ended. Points this process's stdout
// at a file for the spawn: call it only in inChild's child.
std::string successorOutput(const std::vector<std::string>& argv) {
  char path[] = "/tmp/wsgate-listen-fds-XXXXXX";
  const int file = mkstemp(path);
  if (file < 0) return "mkstemp failed";
  dup2(file, STDOUT_FILENO);
  close(file);
  int readyFd = -1;
  std::string error;
  const pid_t pid = spawnSuccessor(argv, {}, readyFd, error);
  if (pid < 0) return "spawn failed: " + error;
  readUntilEof(readyFd);
  const std::string how = exitDescription(pid);
  close(readyFd);
  const std::string printed = readFile(path);
  unlink(path);
  return printed + how;
}

// wsgate ignores SIGPIPE and the calling thread may block signals; both survive execve, and a
// successor started with SIGTERM blocked could not be stopped the ordinary way. grep runs as the
// successor itself: a shell would hide the mask, since dash clears it when it starts.
TEST(ListenFdsSpawn, StartsTheSuccessorWithNoSignalBlockedOrIgnored) {
  // What this test process ignores before wsgate's SIGPIPE (whoever started it may ignore
  // some, e.g. glibc's internal real-time signals 32 and 33): the successor gets just that.
  std::string inheritedIgnored;
  {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
      if (line.starts_with("SigIgn:\t")) inheritedIgnored = line.substr(8);
    }
  }
  ASSERT_EQ(inheritedIgnored.size(), 16u);
  // Less SIGPIPE, which an earlier test of this process may have ignored: the successor
  // gets it back at its default.
  char expectedIgnored[17];
  std::snprintf(expectedIgnored, sizeof expectedIgnored, "%016llx",
                std::stoull(inheritedIgnored, nullptr, 16) & ~(1ULL << (SIGPIPE - 1)));
  EXPECT_EQ(inChild([] {
              signal(SIGPIPE, SIG_IGN);
              sigset_t term;
              sigemptyset(&term);
              sigaddset(&term, SIGTERM);
              sigprocmask(SIG_BLOCK, &term, nullptr);
              return successorOutput({"/usr/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"});
            }),
            "SigBlk:\t0000000000000000\nSigIgn:\t" + std::string(expectedIgnored) + "\nexit 0");
}

struct RefusalCase {
  std::string name;
  std::vector<std::string> argv;
  std::string socketName;
  std::string expect;
};
void PrintTo(const RefusalCase& c, std::ostream* os) { *os << c.name; }

class ListenFdsSpawnRefusal : public ::testing::TestWithParam<RefusalCase> {};

TEST_P(ListenFdsSpawnRefusal, Case) {
  const int listener = tcpSocket("127.0.0.1", 0, true);
  int readyFd = 99;
  std::string error;
  const pid_t pid = spawnSuccessor(
      GetParam().argv, {{listener, *net::localAddress(listener), GetParam().socketName}}, readyFd,
      error);
  EXPECT_EQ(pid, -1);
  EXPECT_EQ(readyFd, -1);
  EXPECT_EQ(error, GetParam().expect);
  close(listener);
}

INSTANTIATE_TEST_SUITE_P(
    ListenFds, ListenFdsSpawnRefusal,
    ::testing::Values(
        RefusalCase{"ReportsABinaryThatIsNotThere",
                    {"/nonexistent/wsgate", "-c", "x"},
                    "web",
                    "cannot start /nonexistent/wsgate: exec: No such file or directory"},
        RefusalCase{"RefusesARelativePath",
                    {"wsgate"},
                    "web",
                    "successor: argv[0] must be an absolute path"},
        RefusalCase{"RefusesANameWithAColon",
                    {"/bin/true"},
                    "a:b",
                    "successor: socket name 'a:b' contains ':'"}),
    [](const ::testing::TestParamInfo<RefusalCase>& info) { return info.param.name; });

// --- signalReady ----------------------------------------------------------------------------

TEST(ListenFdsReady, WritesReadyToThePipeNamedByTheEnvironmentAndClosesIt) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  setenv("WSGATE_READY_FD", std::to_string(p[1]).c_str(), 1);
  EXPECT_TRUE(signalReady());
  EXPECT_EQ(readUntilEof(p[0]), "ready\n");  // EOF: the only write end is closed
  EXPECT_EQ(std::getenv("WSGATE_READY_FD"), nullptr);
  close(p[0]);
}

TEST(ListenFdsReady, DoesNothingWithoutTheEnvironment) {
  unsetenv("WSGATE_READY_FD");
  EXPECT_FALSE(signalReady());
}

TEST(ListenFdsReady, LeavesAnFdThatIsNotAPipeAlone) {
  const int listener = tcpSocket("127.0.0.1", 0, true);
  setenv("WSGATE_READY_FD", std::to_string(listener).c_str(), 1);
  EXPECT_FALSE(signalReady());
  EXPECT_EQ(fdState(listener), "open");
  EXPECT_EQ(std::getenv("WSGATE_READY_FD"), nullptr);
  close(listener);
}

// The predecessor gave up and closed its end: SIGPIPE, at its default, must not kill us.
TEST(ListenFdsReady, SurvivesAPredecessorThatStoppedWaiting) {
  EXPECT_EQ(inChild([] {
              signal(SIGPIPE, SIG_DFL);
              int p[2];
              if (pipe(p) != 0) return std::string("pipe failed");
              close(p[0]);
              setenv("WSGATE_READY_FD", std::to_string(p[1]).c_str(), 1);
              const bool told = signalReady();
              sigset_t pending;
              sigpending(&pending);
              return std::string(told ? "told" : "not told") +
                     (sigismember(&pending, SIGPIPE) ? " SIGPIPE pending" : "");
            }),
            "not told");
}

// --- addressHolder --------------------------------------------------------------------------

TEST(ListenFdsHolder, SaysPortZeroIsFree) {
  EXPECT_EQ(addressHolder(addressOf("127.0.0.1", 0)), std::nullopt);
}

TEST(ListenFdsHolder, SaysAPortNobodyListensOnIsFree) {
  const int reserved = tcpSocket("127.0.0.1", 0, false);
  const uint16_t port = portOf(reserved);
  close(reserved);
  EXPECT_EQ(addressHolder(addressOf("127.0.0.1", port)), std::nullopt);
}

struct HeldCase {
  std::string name;
  std::string listenOn;
  std::string ask;
  std::function<int(const net::SocketAddress&)> open;
};
void PrintTo(const HeldCase& c, std::ostream* os) { *os << c.name; }

int plainListener(const net::SocketAddress& address) {
  return tcpSocket(address.ip(), address.port(), true, false);
}

int reusePortListener(const net::SocketAddress& address) {
  std::string error;
  const int fd = net::openListener(address, error);
  EXPECT_GE(fd, 0) << error;
  return fd;
}

class ListenFdsHeld : public ::testing::TestWithParam<HeldCase> {};

TEST_P(ListenFdsHeld, Case) {
  const auto& c = GetParam();
  const int listener = c.open(addressOf(c.listenOn, 0));
  const auto asked = addressOf(c.ask, portOf(listener));
  EXPECT_EQ(addressHolder(asked), heldBy(asked, getpid()));
  close(listener);
}

INSTANTIATE_TEST_SUITE_P(
    ListenFds, ListenFdsHeld,
    ::testing::Values(
        HeldCase{"NamesThisProcessForAPlainListener", "127.0.0.1", "127.0.0.1", plainListener},
        // The product's case: without the probe a second wsgate would quietly join the group.
        HeldCase{"NamesThisProcessForAReusePortListener", "127.0.0.1", "127.0.0.1",
                 reusePortListener},
        HeldCase{"CountsALoopbackListenerAsHoldingTheWildcard", "127.0.0.1", "0.0.0.0",
                 reusePortListener}),
    [](const ::testing::TestParamInfo<HeldCase>& info) { return info.param.name; });

TEST(ListenFdsHolder, NamesAnotherProcessAndItsCommand) {
  const int listener = reusePortListener(addressOf("127.0.0.1", 0));
  const auto address = *net::localAddress(listener);
  int readyFd = -1;
  std::string error;
  const pid_t pid = spawnSuccessor({"/bin/sh", "-c", "exec sleep 600"},
                                   {{listener, address, "held"}}, readyFd, error);
  ASSERT_GT(pid, 0) << error;
  close(listener);  // the successor is now the only holder
  const auto until = Clock::now() + kDeadline;
  while (processName(pid) != "sleep" && Clock::now() < until) {
  }
  EXPECT_EQ(addressHolder(address), "address already in use: " + address.str() +
                                        " is held by pid " + std::to_string(pid) + " (sleep)");
  kill(pid, SIGKILL);
  EXPECT_EQ(exitDescription(pid), "killed by signal 9");
  close(readyFd);
}

// A bound socket that does not listen keeps the probe out but is no listener to name.
TEST(ListenFdsHolder, SaysAnotherProcessWhenNoListenerCanBeNamed) {
  const int bound = tcpSocket("127.0.0.1", 0, false, false);
  const auto address = *net::localAddress(bound);
  EXPECT_EQ(addressHolder(address),
            "address already in use: " + address.str() + " is held by another process");
  close(bound);
}

bool hasTimeWait(uint16_t port) {
  char local[16];
  std::snprintf(local, sizeof local, ":%04X ", port);
  std::istringstream table(readFile("/proc/net/tcp"));
  for (std::string line; std::getline(table, line);) {
    // "sl local rem st ...": the local address is the second field, the state the fourth
    std::istringstream f(line);
    std::string sl, localAddress, remote, state;
    f >> sl >> localAddress >> remote >> state;
    if ((localAddress + " ").ends_with(local) && state == "06") return true;
  }
  return false;
}

// What a restart leaves behind: the server closed first, so the server side of the connection
// sits in TIME_WAIT on the listening port after the listener is gone.
TEST(ListenFdsHolder, SaysAPortWithOnlyTimeWaitLeftIsFree) {
  const int listener = reusePortListener(addressOf("127.0.0.1", 0));
  const auto address = *net::localAddress(listener);
  const int client = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(connect(client, address.get(), address.length), 0);
  pollfd p{listener, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  const int accepted = accept(listener, nullptr, nullptr);
  ASSERT_GE(accepted, 0);
  close(accepted);
  char byte;
  EXPECT_EQ(read(client, &byte, 1), 0);  // the server's FIN
  close(client);
  close(listener);
  const auto until = Clock::now() + kDeadline;
  while (!hasTimeWait(address.port()) && Clock::now() < until) {
  }
  ASSERT_TRUE(hasTimeWait(address.port()));
  // The leftover is real: a bind without SO_REUSEADDR still fails.
  const int strict = socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_NE(bind(strict, address.get(), address.length), 0);
  EXPECT_EQ(errno, EADDRINUSE);
  close(strict);

  EXPECT_EQ(addressHolder(address), std::nullopt);
}

// --- listeningSocketInodes ------------------------------------------------------------------

// The kernel prints each 32-bit word of an address as a native integer: these lines are what
// a little-endian machine shows. Port 1F90 is 8080.
constexpr std::string_view kTcp =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
    "inode\n"
    "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 "
    "11 1 0000000000000000 100 0 0 10 0\n"
    "   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 "
    "12 1 0000000000000000 100 0 0 10 0\n"
    "   2: 0200007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 "
    "13 1 0000000000000000 100 0 0 10 0\n"
    "   3: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 "
    "14 1 0000000000000000 100 0 0 10 0\n"
    "   4: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 "
    "15 1 0000000000000000 20 4 30 10 -1\n";

constexpr std::string_view kTcp6 =
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000  1000        0 21 1 0000000000000000 100 0 0 10 0\n"
    "   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000  1000        0 22 1 0000000000000000 100 0 0 10 0\n"
    "   2: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000  1000        0 23 1 0000000000000000 100 0 0 10 0\n"
    "   3: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000  1000        0 24 1 0000000000000000 100 0 0 10 0\n";

struct InodeCase {
  std::string name;
  std::string_view table;
  std::string ask;
  std::vector<unsigned long> expect;
};
void PrintTo(const InodeCase& c, std::ostream* os) { *os << c.name; }

class ListenFdsProcNet : public ::testing::TestWithParam<InodeCase> {};

TEST_P(ListenFdsProcNet, Case) {
  if constexpr (std::endian::native != std::endian::little) GTEST_SKIP() << "little-endian lines";
  const auto& c = GetParam();
  EXPECT_EQ(listeningSocketInodes(c.table, addressOf(c.ask, 8080)), c.expect);
}

INSTANTIATE_TEST_SUITE_P(
    ListenFds, ListenFdsProcNet,
    ::testing::Values(
        InodeCase{"FindsTheSameAddressAndTheWildcard", kTcp, "127.0.0.1", {11, 12}},
        InodeCase{"FindsEveryListenerOnThePortForTheWildcard", kTcp, "0.0.0.0", {11, 12, 13}},
        InodeCase{"FindsOnlyTheWildcardForAnotherAddress", kTcp, "10.0.0.1", {12}},
        InodeCase{"ReadsIpv6Words", kTcp6, "::1", {21, 22}},
        InodeCase{"CountsDualStackAndMappedListenersForIpv4", kTcp6, "127.0.0.1", {22, 23}},
        InodeCase{"LeavesIpv4ListenersOutForIpv6", kTcp, "::", {}}),
    [](const ::testing::TestParamInfo<InodeCase>& info) { return info.param.name; });

}  // namespace
}  // namespace wsgate::proxy
