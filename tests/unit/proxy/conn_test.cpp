// net::Conn over real sockets and a real event_base: the short-read rule, writes and
// blocking, leftovers kept between turns, FINs and closes, connects, the io_uring batch
// hooks (the kernel's part played by the test), and TLS through read()/write() against a
// plain OpenSSL peer on the other end of the socket.

#include "proxy/net/conn.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/net/handles.h"
#include "proxy/net/io_batch.h"
#include "proxy/tls/context.h"
#include "tests/unit/tls/pki.h"

namespace wsgate::net {
namespace {

using std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(5);

std::string text(evbuffer* b) {
  std::string s(len(b), '\0');
  if (!s.empty()) evbuffer_copyout(b, s.data(), s.size());
  return s;
}

void add(evbuffer* b, std::string_view s) { evbuffer_add(b, s.data(), s.size()); }

// Appends `pieces` to `b` as one chain each (evbuffer_add would pack them into one).
void addChains(evbuffer* b, const std::vector<std::string>& pieces) {
  for (const std::string& p : pieces) {
    EvBufferPtr one(evbuffer_new());
    add(one.get(), p);
    evbuffer_add_buffer(b, one.get());
  }
}

int chainCount(evbuffer* b) { return evbuffer_peek(b, -1, nullptr, nullptr, 0); }

std::vector<std::string> numberedPieces(int count, std::size_t size) {
  std::vector<std::string> pieces;
  for (int i = 0; i < count; ++i) pieces.emplace_back(size, static_cast<char>('a' + i % 26));
  return pieces;
}

std::string joined(const std::vector<std::string>& pieces) {
  std::string all;
  for (const std::string& p : pieces) all += p;
  return all;
}

bool waitFor(int fd, short events) {
  pollfd p{.fd = fd, .events = events, .revents = 0};
  return poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kDeadline).count())) == 1;
}

// A descriptor the test holds itself.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// What a peer that reads until `want` bytes, EOF or the deadline sees.
struct Received {
  std::string bytes;
  bool eof = false;
};

Received receive(int fd, std::size_t want) {
  Received r;
  const auto until = steady_clock::now() + kDeadline;
  char buf[64 * 1024];
  while (r.bytes.size() < want && !r.eof && steady_clock::now() < until) {
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      r.bytes.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0) {
      r.eof = true;
    } else if (errno == EAGAIN) {
      waitFor(fd, POLLIN);
    } else {
      break;
    }
  }
  return r;
}

// Reads everything up to the FIN.
Received receiveToEof(int fd) { return receive(fd, static_cast<std::size_t>(-1)); }

void sendAll(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN && waitFor(fd, POLLOUT)) continue;
    ASSERT_GT(n, 0) << std::strerror(errno);
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

// The worker's four scratch buffers, owned by the test.
struct Buffers {
  EvBufferPtr in{evbuffer_new()}, out{evbuffer_new()}, rawIn{evbuffer_new()},
      rawOut{evbuffer_new()};
  Scratch scratch() const { return {in.get(), out.get(), rawIn.get(), rawOut.get()}; }
};

// The events the Conn's callback was given.
struct Events {
  std::vector<short> seen;
  static void record(evutil_socket_t, short what, void* self) noexcept {
    static_cast<Events*>(self)->seen.push_back(what);
  }
};

// --- Sockets ------------------------------------------------------------------------------

int tcpSocket() { return socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0); }

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  return a;
}

uint16_t portOf(int fd) {
  sockaddr_in a{};
  socklen_t n = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  return ntohs(a.sin_port);
}

// A socket bound to a free loopback port: listening with `backlog`, or (backlog < 0) bound
// only, which holds the port closed (a connect to it is refused).
int boundLoopback(int backlog) {
  const int fd = tcpSocket();
  const sockaddr_in a = loopback(0);
  EXPECT_EQ(bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
  if (backlog >= 0) {
    EXPECT_EQ(listen(fd, backlog), 0);
  }
  return fd;
}

// A non-blocking connect: 0 or -1 with EINPROGRESS.
int startConnect(int fd, uint16_t port) {
  const sockaddr_in a = loopback(port);
  return connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
}

int acceptOne(int listener) {
  if (!waitFor(listener, POLLIN)) return -1;
  return accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
}

// Bytes the kernel holds for this TCP socket that it has not sent yet.
int unsentBytes(int fd) {
  int n = -1;
  ioctl(fd, SIOCOUTQNSD, &n);
  return n;
}

// --- The fixture: a Conn on one end of a socket, the test on the other -----------------

class ConnTest : public ::testing::Test {
protected:
  ~ConnTest() override {
    conn_.close();
    if (peer_ >= 0) ::close(peer_);
    if (listener_ >= 0) ::close(listener_);
  }

  void openConn(int fd) { conn_.open(base_.get(), fd, &Events::record, &events_); }

  // An AF_UNIX stream pair: the Conn takes one end, peer_ is the other.
  void openUnixPair() {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    peer_ = fds[1];
    openConn(fds[0]);
  }

  // A loopback TCP connection: the Conn has the connecting side, peer_ the accepted one.
  void openTcpPair() {
    listener_ = boundLoopback(8);
    const int fd = tcpSocket();
    const int r = startConnect(fd, portOf(listener_));
    ASSERT_TRUE(r == 0 || errno == EINPROGRESS) << std::strerror(errno);
    peer_ = acceptOne(listener_);
    ASSERT_GE(peer_, 0);
    ASSERT_TRUE(waitFor(fd, POLLOUT));
    openConn(fd);
  }

  // One loop iteration without waiting: the events now pending, if any.
  std::vector<short> pollEvents() {
    events_.seen.clear();
    event_base_loop(base_.get(), EVLOOP_NONBLOCK | EVLOOP_ONCE);
    return events_.seen;
  }

  EventBasePtr base_{event_base_new()};  // before conn_: its event is deleted first
  Events events_;
  Buffers buffers_;
  const Scratch s_ = buffers_.scratch();
  Conn conn_;
  int peer_ = -1;
  int listener_ = -1;
};

// --- Events -------------------------------------------------------------------------------

TEST_F(ConnTest, ReportsAReadEdgeWhenThePeerWrites) {
  openUnixPair();
  pollEvents();  // the state at the time of adding (writable)
  sendAll(peer_, "ping");
  short all = 0;
  for (short what : pollEvents()) all |= what;
  EXPECT_TRUE(all & EV_READ);
  EXPECT_FALSE(all & EV_CLOSED);
}

TEST_F(ConnTest, DoesNotReportAnUnreadEdgeAgain) {
  openUnixPair();
  pollEvents();
  sendAll(peer_, "ping");
  ASSERT_FALSE(pollEvents().empty());
  EXPECT_TRUE(pollEvents().empty());  // edge-triggered: the unread bytes bring no new event
}

TEST_F(ConnTest, ReportsThePeersFinAsClosed) {
  openUnixPair();
  pollEvents();
  ASSERT_EQ(shutdown(peer_, SHUT_WR), 0);
  short all = 0;
  for (short what : pollEvents()) all |= what;
  EXPECT_TRUE(all & EV_CLOSED);
}

// --- noteEvent ----------------------------------------------------------------------------

struct Flags {
  bool readable, finQueued, blocked;
  bool operator==(const Flags&) const = default;
};

struct NoteCase {
  const char* name;
  short what;
  Flags before, after;
};

class ConnNoteEventTest : public ConnTest, public ::testing::WithParamInterface<NoteCase> {};

TEST_P(ConnNoteEventTest, SetsTheSocketStateTheEventSays) {
  const NoteCase& c = GetParam();
  conn_.readable = c.before.readable;
  conn_.finQueued = c.before.finQueued;
  conn_.blocked = c.before.blocked;
  conn_.noteEvent(c.what);
  EXPECT_EQ((Flags{conn_.readable, conn_.finQueued, conn_.blocked}), c.after);
}

INSTANTIATE_TEST_SUITE_P(
    ConnEvents, ConnNoteEventTest,
    ::testing::Values(
        NoteCase{"WriteClearsBlocked", EV_WRITE, {false, false, true}, {false, false, false}},
        NoteCase{"WriteLeavesReadableAlone", EV_WRITE, {true, false, true}, {true, false, false}},
        NoteCase{"ReadSetsReadableOnly", EV_READ, {false, false, true}, {true, false, true}},
        NoteCase{"ClosedSetsFinQueuedAndReadable",
                 EV_CLOSED,
                 {false, false, false},
                 {true, true, false}},
        NoteCase{
            "ReadAndWriteTogether", EV_READ | EV_WRITE, {false, false, true}, {true, false, false}},
        NoteCase{"TimeoutChangesNothing", EV_TIMEOUT, {false, false, true}, {false, false, true}}),
    [](const auto& info) { return std::string(info.param.name); });

// --- read() -------------------------------------------------------------------------------

TEST_F(ConnTest, ReadAppendsTheSocketsBytesToTheScratchInput) {
  openUnixPair();
  sendAll(peer_, "first ");
  EXPECT_EQ(conn_.read(s_), 6);
  sendAll(peer_, "second");
  EXPECT_EQ(conn_.read(s_), 6);
  EXPECT_EQ(conn_.input(s_), s_.in);
  EXPECT_EQ(text(s_.in), "first second");
}

constexpr ssize_t kFull = -2;  // ReadCase::result: at least kReadSize bytes

struct ReadCase {
  const char* name;
  std::size_t sent;  // bytes the peer wrote before the read
  bool peerFin;      // and then shut down its side
  bool finQueued;    // the Conn had seen EV_CLOSED
  ssize_t result;    // read()'s return, or kFull
  int error;         // errno when result is -1
  bool readableAfter;
};

class ConnReadTest : public ConnTest, public ::testing::WithParamInterface<ReadCase> {};

TEST_P(ConnReadTest, FollowsTheShortReadRule) {
  const ReadCase& c = GetParam();
  openUnixPair();
  sendAll(peer_, std::string(c.sent, 'x'));
  if (c.peerFin) {
    ASSERT_EQ(shutdown(peer_, SHUT_WR), 0);
  }
  conn_.readable = true;
  conn_.finQueued = c.finQueued;
  errno = 0;
  const ssize_t n = conn_.read(s_);
  const int error = errno;
  if (c.result == kFull) {
    EXPECT_GE(n, static_cast<ssize_t>(Conn::kReadSize));
  } else {
    EXPECT_EQ(n, c.result);
  }
  if (c.result == -1) {
    EXPECT_EQ(error, c.error);
  }
  if (n > 0) {
    EXPECT_EQ(len(s_.in), static_cast<std::size_t>(n));
  }
  EXPECT_EQ(conn_.readable, c.readableAfter);
}

INSTANTIATE_TEST_SUITE_P(
    ConnShortReadRule, ConnReadTest,
    ::testing::Values(
        ReadCase{"ShortReadClearsReadable", 100, false, false, 100, 0, false},
        // Longer than kReadSize but shorter than the block libevent offered: still short.
        ReadCase{"ReadShorterThanTheOfferClearsReadable", 20000, false, false, 20000, 0, false},
        ReadCase{"FullReadLeavesReadableSet", 3 * Conn::kReadSize, false, false, kFull, 0, true},
        ReadCase{"ShortReadWithFinQueuedLeavesReadableSet", 100, true, true, 100, 0, true},
        ReadCase{"EofReturnsZeroAndClearsReadable", 0, true, true, 0, 0, false},
        ReadCase{"EmptySocketReturnsEagain", 0, false, false, -1, EAGAIN, false}),
    [](const auto& info) { return std::string(info.param.name); });

// --- write() ------------------------------------------------------------------------------

TEST_F(ConnTest, WriteSendsTheOutputAndDrainsIt) {
  openUnixPair();
  add(conn_.output(s_), "hello");
  EXPECT_EQ(conn_.write(s_, false), 5);
  EXPECT_EQ(len(s_.out), 0u);
  EXPECT_EQ(receive(peer_, 5).bytes, "hello");
}

struct ChainsCase {
  const char* name;
  int chains;
};

class ConnWriteChainsTest : public ConnTest, public ::testing::WithParamInterface<ChainsCase> {};

TEST_P(ConnWriteChainsTest, DeliversEveryChainInOrder) {
  openUnixPair();
  const std::vector<std::string> pieces = numberedPieces(GetParam().chains, 100);
  addChains(s_.out, pieces);
  ASSERT_EQ(chainCount(s_.out), GetParam().chains);
  for (int i = 0; i < 10 && len(s_.out) > 0; ++i) ASSERT_GT(conn_.write(s_, false), 0);
  EXPECT_EQ(len(s_.out), 0u);
  EXPECT_EQ(receive(peer_, joined(pieces).size()).bytes, joined(pieces));
}

INSTANTIATE_TEST_SUITE_P(ConnChains, ConnWriteChainsTest,
                         ::testing::Values(ChainsCase{"Three", 3},
                                           ChainsCase{"MoreThanOneSendmsgTakes", 100}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(ConnTest, WriteToAPeerThatDoesNotReadEndsInEagainAndBlocked) {
  openUnixPair();
  const std::string chunk(64 * 1024, 'x');
  ssize_t n = 0;
  int error = 0;
  for (int i = 0; i < 1000 && n >= 0; ++i) {
    if (len(s_.out) < chunk.size()) add(s_.out, chunk);
    n = conn_.write(s_, false);
    error = errno;
  }
  EXPECT_EQ(n, -1);
  EXPECT_EQ(error, EAGAIN);
  EXPECT_TRUE(conn_.blocked);
  EXPECT_GT(conn_.pendingOutput(s_), 0u);  // nothing is lost: it waits for EV_WRITE
}

// MSG_MORE when a FIN follows: the last segment waits for the FIN instead of going alone.
struct CorkCase {
  const char* name;
  bool finFollows;
  int unsent;  // bytes the kernel still holds right after the write
};

class ConnCorkTest : public ConnTest, public ::testing::WithParamInterface<CorkCase> {};

TEST_P(ConnCorkTest, HoldsTheLastSegmentOnlyWhenAFinFollows) {
  openTcpPair();
  add(s_.out, "last words");
  ASSERT_EQ(conn_.write(s_, GetParam().finFollows), 10);
  EXPECT_EQ(unsentBytes(conn_.fd()), GetParam().unsent);
  conn_.shutdownWrite();
  const Received r = receiveToEof(peer_);
  EXPECT_EQ(r.bytes, "last words");
  EXPECT_TRUE(r.eof);
}

INSTANTIATE_TEST_SUITE_P(ConnMsgMore, ConnCorkTest,
                         ::testing::Values(CorkCase{"WithoutFinGoesAtOnce", false, 0},
                                           CorkCase{"WithFinWaitsForIt", true, 10}),
                         [](const auto& info) { return std::string(info.param.name); });

// --- Leftovers ----------------------------------------------------------------------------

TEST_F(ConnTest, KeepLeftoversMovesScratchBytesIntoOwnBuffers) {
  add(s_.in, "unparsed");
  add(s_.out, "unsent");
  conn_.keepLeftovers(s_);
  EXPECT_EQ(len(s_.in), 0u);
  EXPECT_EQ(len(s_.out), 0u);
  EXPECT_NE(conn_.input(s_), s_.in);
  EXPECT_NE(conn_.output(s_), s_.out);
  EXPECT_EQ(text(conn_.input(s_)), "unparsed");
  EXPECT_EQ(text(conn_.output(s_)), "unsent");
}

TEST_F(ConnTest, KeepLeftoversOfEmptyScratchKeepsNoBuffer) {
  conn_.keepLeftovers(s_);
  EXPECT_EQ(conn_.input(s_), s_.in);
  EXPECT_EQ(conn_.output(s_), s_.out);
}

TEST_F(ConnTest, OwnBuffersAreFreedOnceDrained) {
  add(s_.in, "unparsed");
  add(s_.out, "unsent");
  conn_.keepLeftovers(s_);
  evbuffer_drain(conn_.input(s_), 8);
  evbuffer_drain(conn_.output(s_), 6);
  conn_.keepLeftovers(s_);
  EXPECT_EQ(conn_.input(s_), s_.in);
  EXPECT_EQ(conn_.output(s_), s_.out);
}

TEST_F(ConnTest, ReadAppendsBehindLeftovers) {
  openUnixPair();
  add(s_.in, "kept ");
  conn_.keepLeftovers(s_);
  sendAll(peer_, "new");
  EXPECT_EQ(conn_.read(s_), 3);
  EXPECT_EQ(len(s_.in), 0u);
  EXPECT_EQ(text(conn_.input(s_)), "kept new");
}

TEST_F(ConnTest, WriteSendsLeftoverOutputFirst) {
  openUnixPair();
  add(s_.out, "kept ");
  conn_.keepLeftovers(s_);
  add(conn_.output(s_), "new");
  EXPECT_EQ(conn_.write(s_, false), 8);
  EXPECT_EQ(receive(peer_, 8).bytes, "kept new");
  conn_.keepLeftovers(s_);
  EXPECT_EQ(conn_.output(s_), s_.out);
}

TEST_F(ConnTest, PendingOutputCountsLeftoverAndScratchOutput) {
  add(s_.out, "12345");
  EXPECT_EQ(conn_.pendingOutput(s_), 5u);
  conn_.keepLeftovers(s_);
  EXPECT_EQ(conn_.pendingOutput(s_), 5u);
}

TEST_F(ConnTest, PendingOutputOfAPlainConnIgnoresTheRawBuffers) {
  add(s_.out, "12345");
  add(s_.rawOut, "1234567");
  EXPECT_EQ(conn_.pendingOutput(s_), 5u);
}

TEST_F(ConnTest, DropOutputDropsLeftoverOutput) {
  add(s_.out, "unsent");
  conn_.keepLeftovers(s_);
  conn_.dropOutput(s_);
  EXPECT_EQ(conn_.pendingOutput(s_), 0u);
  conn_.keepLeftovers(s_);
  EXPECT_EQ(conn_.output(s_), s_.out);
}

// --- FIN and close ------------------------------------------------------------------------

TEST_F(ConnTest, ShutdownWriteSendsAFinOnce) {
  openUnixPair();
  conn_.shutdownWrite();
  conn_.shutdownWrite();
  EXPECT_TRUE(conn_.shutWr);
  EXPECT_TRUE(conn_.isOpen());
  EXPECT_TRUE(receiveToEof(peer_).eof);
}

TEST_F(ConnTest, ShutdownWriteLeavesTheReadSideOpen) {
  openUnixPair();
  conn_.shutdownWrite();
  sendAll(peer_, "still here");
  EXPECT_EQ(conn_.read(s_), 10);
  EXPECT_EQ(text(s_.in), "still here");
}

TEST_F(ConnTest, CloseClosesTheSocketAndIsIdempotent) {
  openUnixPair();
  const int fd = conn_.fd();
  conn_.close();
  EXPECT_FALSE(conn_.isOpen());
  EXPECT_EQ(conn_.fd(), -1);
  EXPECT_EQ(fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_TRUE(receiveToEof(peer_).eof);
  conn_.close();
  EXPECT_FALSE(conn_.isOpen());
}

TEST_F(ConnTest, CloseFreesLeftovers) {
  openUnixPair();
  add(s_.in, "unparsed");
  add(s_.out, "unsent");
  conn_.keepLeftovers(s_);
  conn_.close();
  EXPECT_EQ(conn_.input(s_), s_.in);
  EXPECT_EQ(conn_.output(s_), s_.out);
  EXPECT_EQ(conn_.pendingOutput(s_), 0u);
}

TEST_F(ConnTest, OpenStartsFromAFreshSocketState) {
  openUnixPair();
  conn_.readable = conn_.finQueued = conn_.shutWr = conn_.blocked = conn_.streaming = true;
  ::close(peer_);
  openUnixPair();
  EXPECT_FALSE(conn_.readable || conn_.finQueued || conn_.shutWr || conn_.blocked ||
               conn_.streaming || conn_.connecting);
}

// --- tryConnected() -----------------------------------------------------------------------

TEST_F(ConnTest, TryConnectedToAListeningSocketSendsTheFirstChain) {
  listener_ = boundLoopback(8);
  const int fd = tcpSocket();
  const int r = startConnect(fd, portOf(listener_));
  ASSERT_TRUE(r == 0 || errno == EINPROGRESS) << std::strerror(errno);
  openConn(fd);
  conn_.connecting = true;
  addChains(s_.out, {"GET / HTTP/1.1\r\n", "Host: a\r\n\r\n"});
  ASSERT_TRUE(waitFor(fd, POLLOUT));
  EXPECT_EQ(conn_.tryConnected(s_), 1);
  EXPECT_FALSE(conn_.connecting);
  EXPECT_EQ(text(s_.out), "Host: a\r\n\r\n");  // the end of the turn writes the rest
  peer_ = acceptOne(listener_);
  ASSERT_GE(peer_, 0);
  EXPECT_EQ(receive(peer_, 16).bytes, "GET / HTTP/1.1\r\n");
}

TEST_F(ConnTest, TryConnectedToAClosedPortFailsWithEconnrefused) {
  listener_ = boundLoopback(-1);  // bound, not listening: the port refuses
  const int fd = tcpSocket();
  const int r = startConnect(fd, portOf(listener_));
  ASSERT_TRUE(r == -1 && errno == EINPROGRESS) << std::strerror(errno);
  openConn(fd);
  conn_.connecting = true;
  add(s_.out, "GET / HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(waitFor(fd, POLLOUT));  // the connect has failed by then
  errno = 0;
  EXPECT_EQ(conn_.tryConnected(s_), -1);
  EXPECT_EQ(errno, ECONNREFUSED);
  EXPECT_TRUE(conn_.connecting);
}

TEST_F(ConnTest, TryConnectedWhileTheConnectIsInProgressReturnsZero) {
  // A listener whose accept queue is full drops further SYNs: the connect stays in progress.
  listener_ = boundLoopback(0);
  const Fd first{tcpSocket()};
  startConnect(first.fd, portOf(listener_));
  ASSERT_TRUE(waitFor(first.fd, POLLOUT));
  const int fd = tcpSocket();
  const int r = startConnect(fd, portOf(listener_));
  ASSERT_TRUE(r == -1 && errno == EINPROGRESS) << std::strerror(errno);
  openConn(fd);
  conn_.connecting = true;
  add(s_.out, "GET / HTTP/1.1\r\n\r\n");
  pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
  if (poll(&p, 1, 0) != 0) {
    GTEST_SKIP() << "the kernel completed the connect despite the full accept queue";
  }
  EXPECT_EQ(conn_.tryConnected(s_), 0);
  EXPECT_TRUE(conn_.connecting);
  EXPECT_EQ(len(s_.out), 18u);
}

// --- The batch hooks ----------------------------------------------------------------------

TEST_F(ConnTest, PrepareReadGivesAnOpIntoReservedInputSpace) {
  openUnixPair();
  IoBatch::Op op;
  evbuffer_iovec space{};
  ASSERT_TRUE(conn_.prepareRead(s_, op, space));
  EXPECT_EQ(op.fd, conn_.fd());
  EXPECT_FALSE(op.write);
  EXPECT_EQ(op.data, space.iov_base);
  EXPECT_EQ(op.size, space.iov_len);
  EXPECT_GE(op.size, Conn::kReadSize);
  EXPECT_EQ(len(s_.in), 0u);  // reserved, not committed
}

constexpr ssize_t kWholeSpace = -1000;  // CompleteReadCase::result: fill the reserved space

struct CompleteReadCase {
  const char* name;
  ssize_t result;  // what the kernel reported: bytes (kWholeSpace: all of them) or -errno
  ssize_t returns;
  int error;
  bool readableAfter, streamingAfter;
};

class ConnCompleteReadTest : public ConnTest,
                             public ::testing::WithParamInterface<CompleteReadCase> {};

TEST_P(ConnCompleteReadTest, ReportsTheResultAsReadWould) {
  const CompleteReadCase& c = GetParam();
  openUnixPair();
  IoBatch::Op op;
  evbuffer_iovec space{};
  ASSERT_TRUE(conn_.prepareRead(s_, op, space));
  const ssize_t result = c.result == kWholeSpace ? static_cast<ssize_t>(op.size) : c.result;
  if (result > 0) std::memset(op.data, 'k', static_cast<std::size_t>(result));
  conn_.readable = true;
  conn_.streaming = !c.streamingAfter;
  errno = 0;
  const ssize_t n = conn_.completeRead(s_, space, result);
  const int error = errno;
  EXPECT_EQ(n, c.returns == kWholeSpace ? result : c.returns);
  if (n < 0) {
    EXPECT_EQ(error, c.error);
  }
  EXPECT_EQ(text(conn_.input(s_)), std::string(result > 0 ? result : 0, 'k'));
  EXPECT_EQ(conn_.readable, c.readableAfter);
  EXPECT_EQ(conn_.streaming, c.streamingAfter);
}

INSTANTIATE_TEST_SUITE_P(
    ConnBatch, ConnCompleteReadTest,
    ::testing::Values(
        CompleteReadCase{"ShortReadLandsInInputAndClearsReadable", 7, 7, 0, false, false},
        CompleteReadCase{"FullReadSetsStreaming", kWholeSpace, kWholeSpace, 0, true, true},
        CompleteReadCase{"EagainReturnsMinusOneWithErrno", -EAGAIN, -1, EAGAIN, false, false},
        CompleteReadCase{"ResetReturnsMinusOneWithErrno", -ECONNRESET, -1, ECONNRESET, false,
                         false},
        CompleteReadCase{"EofReturnsZero", 0, 0, 0, false, false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(ConnTest, BatchedReadThroughIoBatchLandsInInput) {
  openUnixPair();
  sendAll(peer_, "through the ring");
  IoBatch::Op op;
  evbuffer_iovec space{};
  ASSERT_TRUE(conn_.prepareRead(s_, op, space));
  IoBatch io;
  std::vector<IoBatch::Op> ops{op};
  io.run(ops);
  EXPECT_EQ(conn_.completeRead(s_, space, ops[0].result), 16);
  EXPECT_EQ(text(s_.in), "through the ring");
}

struct PrepareWriteCase {
  const char* name;
  int chains;
  bool finFollows;
  bool more;  // MSG_MORE expected
};

class ConnPrepareWriteTest : public ConnTest,
                             public ::testing::WithParamInterface<PrepareWriteCase> {};

TEST_P(ConnPrepareWriteTest, GivesTheFirstChainWithMsgMoreWhenMoreFollows) {
  const PrepareWriteCase& c = GetParam();
  openUnixPair();
  addChains(s_.out, numberedPieces(c.chains, 10));
  evbuffer_iovec first{};
  ASSERT_EQ(chainCount(s_.out), c.chains);
  ASSERT_EQ(evbuffer_peek(s_.out, -1, nullptr, &first, 1), 1);
  IoBatch::Op op;
  ASSERT_TRUE(conn_.prepareWrite(s_, c.finFollows, op));
  EXPECT_EQ(op.fd, conn_.fd());
  EXPECT_TRUE(op.write);
  EXPECT_EQ(op.data, first.iov_base);
  EXPECT_EQ(op.size, 10u);
  EXPECT_TRUE(op.flags & MSG_NOSIGNAL);
  EXPECT_EQ((op.flags & MSG_MORE) != 0, c.more);
}

INSTANTIATE_TEST_SUITE_P(ConnBatch, ConnPrepareWriteTest,
                         ::testing::Values(PrepareWriteCase{"LastChainWithoutFin", 1, false, false},
                                           PrepareWriteCase{"LastChainWithFin", 1, true, true},
                                           PrepareWriteCase{"MoreChainsWithoutFin", 3, false, true},
                                           PrepareWriteCase{"MoreChainsWithFin", 3, true, true}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(ConnTest, PrepareWriteWithNothingQueuedMakesNoOp) {
  openUnixPair();
  IoBatch::Op op;
  EXPECT_FALSE(conn_.prepareWrite(s_, true, op));
}

TEST_F(ConnTest, CompleteWriteDrainsTheBytesWritten) {
  openUnixPair();
  add(s_.out, "abcdef");
  conn_.completeWrite(s_, 4);
  EXPECT_EQ(text(s_.out), "ef");
  EXPECT_FALSE(conn_.blocked);
}

TEST_F(ConnTest, CompleteWriteWithEagainSetsBlocked) {
  openUnixPair();
  add(s_.out, "abcdef");
  conn_.completeWrite(s_, -EAGAIN);
  EXPECT_EQ(text(s_.out), "abcdef");
  EXPECT_TRUE(conn_.blocked);
}

// --- TLS ----------------------------------------------------------------------------------

using tls::SslCtxPtr;
using tls::SslPtr;

SSL_CTX* serverContext() {
  static const SslCtxPtr ctx = [] {
    tls::testkit::Issued cert = tls::testkit::issue({.cn = "conn.test"}, nullptr);  // P-256
    SslCtxPtr c(SSL_CTX_new(TLS_server_method()));
    tls::testkit::check(SSL_CTX_use_certificate(c.get(), cert.cert.get()) == 1 &&
                            SSL_CTX_use_PrivateKey(c.get(), cert.key.get()) == 1,
                        "server certificate");
    return c;
  }();
  return ctx.get();
}

SSL_CTX* clientContext() {
  static const SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));  // verifies nothing
  return ctx.get();
}

// The SSL_get_error of a plain OpenSSL call on the test's side of the socket.
int sslError(SSL* ssl, int r) {
  const int e = SSL_get_error(ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ERR_clear_error();
  return e;
}

// A server Conn (or a client one, startClient) on one end of an AF_UNIX pair; on the other
// a plain OpenSSL peer on the fd.
class ConnTlsTest : public ConnTest {
protected:
  // The peer's SSL writes with write(2): an alert to a closed socket must not kill the test.
  ConnTlsTest() { signal(SIGPIPE, SIG_IGN); }
  ~ConnTlsTest() override { ERR_clear_error(); }

  // `version`: the newest the peer offers (0: TLS 1.3).
  void startServer(int version = 0) {
    openUnixPair();
    SslPtr ssl(SSL_new(serverContext()));
    SSL_set_accept_state(ssl.get());
    conn_.startTls(std::move(ssl));
    peerSsl_.reset(SSL_new(clientContext()));
    SSL_set_max_proto_version(peerSsl_.get(), version);
    SSL_set_fd(peerSsl_.get(), peer_);
    SSL_set_connect_state(peerSsl_.get());
  }

  void startClient() {
    openUnixPair();
    SslPtr ssl(SSL_new(clientContext()));
    SSL_set_connect_state(ssl.get());
    conn_.startTls(std::move(ssl));
    peerSsl_.reset(SSL_new(serverContext()));
    SSL_set_fd(peerSsl_.get(), peer_);
    SSL_set_accept_state(peerSsl_.get());
  }

  // One session turn on the Conn's side: read until the socket has no more, write once,
  // keep the leftovers.
  void turn() {
    if (!conn_.isOpen()) return;
    ssize_t n = 1;
    for (int i = 0; i < 100 && n > 0; ++i) n = conn_.read(s_);
    if (conn_.pendingOutput(s_) > 0) conn_.write(s_, false);
    conn_.keepLeftovers(s_);
  }

  // Both sides' handshakes, in turns.
  bool handshake() {
    for (int i = 0; i < 20; ++i) {
      const int r = SSL_do_handshake(peerSsl_.get());
      if (r != 1) {
        EXPECT_EQ(sslError(peerSsl_.get(), r), SSL_ERROR_WANT_READ);
      }
      turn();
      if (r == 1 && conn_.tls()->handshakeDone()) return true;
      if (r != 1) waitFor(peer_, POLLIN);
    }
    return false;
  }

  // What the OpenSSL peer reads until `want` bytes, the stream's end or an error; `end` is
  // the SSL_get_error that stopped it (SSL_ERROR_NONE: `want` reached).
  std::string peerRead(std::size_t want, int* end = nullptr) {
    std::string got;
    int last = SSL_ERROR_NONE;
    const auto until = steady_clock::now() + kDeadline;
    char buf[16 * 1024];
    while (got.size() < want && steady_clock::now() < until) {
      std::size_t n = 0;
      const int r = SSL_read_ex(peerSsl_.get(), buf, sizeof buf, &n);
      if (r == 1) {
        got.append(buf, n);
        continue;
      }
      last = sslError(peerSsl_.get(), r);
      if (last != SSL_ERROR_WANT_READ) break;
      turn();  // what the Conn still has to write
      waitFor(peer_, POLLIN);
      last = SSL_ERROR_NONE;
    }
    if (end != nullptr) *end = last;
    return got;
  }

  // The OpenSSL peer's read once every byte is in: the stream's end (ZERO_RETURN), or more.
  int peerReadsTheEnd(const std::string& before) {
    int end = SSL_ERROR_NONE;
    EXPECT_EQ(peerRead(before.size() + 1, &end), before);
    return end;
  }

  void peerWrite(std::string_view s) {
    std::size_t n = 0;
    ASSERT_EQ(SSL_write_ex(peerSsl_.get(), s.data(), s.size(), &n), 1);
    ASSERT_EQ(n, s.size());
  }

  // What the Conn's input holds, taken out.
  std::string takeInput() {
    std::string s = text(conn_.input(s_));
    evbuffer_drain(conn_.input(s_), s.size());
    conn_.keepLeftovers(s_);
    return s;
  }

  // Reads turns until `want` bytes of plaintext came in.
  std::string serverReceive(std::size_t want) {
    std::string got;
    for (int i = 0; i < 100 && got.size() < want; ++i) {
      turn();
      got += takeInput();
      if (got.size() < want) waitFor(conn_.fd(), POLLIN);
    }
    return got;
  }

  SslPtr peerSsl_;
};

TEST_F(ConnTlsTest, HandshakeCompletesThroughReadAndWrite) {
  startServer();
  ASSERT_TRUE(handshake());
  EXPECT_TRUE(SSL_is_init_finished(peerSsl_.get()));
  EXPECT_TRUE(conn_.tlsError().empty());
  EXPECT_EQ(conn_.pendingOutput(s_), 0u);
}

TEST_F(ConnTlsTest, PlaintextFromThePeerArrivesInInput) {
  startServer();
  ASSERT_TRUE(handshake());
  peerWrite("hello through TLS");
  EXPECT_EQ(serverReceive(17), "hello through TLS");
}

TEST_F(ConnTlsTest, DataRightBehindThePeersFinishedArrivesWithIt) {
  startServer();
  int r = -1;
  for (int i = 0; i < 20 && r != 1; ++i) {  // the peer's side of the handshake only
    r = SSL_do_handshake(peerSsl_.get());
    if (r != 1) {
      ASSERT_EQ(sslError(peerSsl_.get(), r), SSL_ERROR_WANT_READ);
      turn();
      waitFor(peer_, POLLIN);
    }
  }
  ASSERT_EQ(r, 1);
  ASSERT_FALSE(conn_.tls()->handshakeDone());  // its Finished not read yet
  peerWrite("GET / HTTP/1.1\r\n\r\n");         // the request, in the same flight
  turn();
  EXPECT_TRUE(conn_.tls()->handshakeDone());
  EXPECT_EQ(takeInput(), "GET / HTTP/1.1\r\n\r\n");
}

TEST_F(ConnTlsTest, PlaintextQueuedInOutputReachesThePeer) {
  startServer();
  ASSERT_TRUE(handshake());
  add(conn_.output(s_), "answer");
  EXPECT_GT(conn_.write(s_, false), 0);
  EXPECT_EQ(len(conn_.output(s_)), 0u);
  EXPECT_EQ(peerRead(6), "answer");
}

TEST_F(ConnTlsTest, ALargeTransferArrivesWholeBothWays) {
  startServer();
  ASSERT_TRUE(handshake());
  std::string big(300 * 1024, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 % 251);
  add(conn_.output(s_), big);
  turn();
  EXPECT_EQ(peerRead(big.size()), big);
  std::string back = big.substr(0, 100 * 1024);
  peerWrite(back);
  EXPECT_EQ(serverReceive(back.size()), back);
}

TEST_F(ConnTlsTest, PendingOutputCountsCiphertextTheSocketDidNotTake) {
  startServer();
  ASSERT_TRUE(handshake());
  const std::string big(1024 * 1024, 'z');
  add(conn_.output(s_), big);
  EXPECT_EQ(conn_.pendingOutput(s_), big.size());
  ASSERT_GT(conn_.write(s_, false), 0);
  EXPECT_EQ(len(s_.out), 0u);  // all encrypted; the socket took only part of it
  EXPECT_GT(len(s_.rawOut), 0u);
  EXPECT_EQ(conn_.pendingOutput(s_), len(s_.rawOut));
  const std::size_t pending = conn_.pendingOutput(s_);
  conn_.keepLeftovers(s_);
  EXPECT_EQ(len(s_.rawOut), 0u);
  EXPECT_EQ(conn_.pendingOutput(s_), pending);
  EXPECT_EQ(peerRead(big.size()), big);
  EXPECT_EQ(conn_.pendingOutput(s_), 0u);
}

TEST_F(ConnTlsTest, PendingOutputOfATlsConnCountsPlaintextAndCiphertext) {
  startServer();
  add(s_.out, "12345");
  add(s_.rawOut, "1234567");
  EXPECT_EQ(conn_.pendingOutput(s_), 12u);
}

// Every way the Conn ends its sending side sends close_notify behind the last data.
enum class Ending { WriteWithFin, ShutdownWrite, Close };

struct EndingCase {
  const char* name;
  std::string_view lastData;
  Ending ending;
};

class ConnTlsEndingTest : public ConnTlsTest, public ::testing::WithParamInterface<EndingCase> {};

TEST_P(ConnTlsEndingTest, SendsCloseNotifyAfterTheLastData) {
  const EndingCase& c = GetParam();
  startServer();
  ASSERT_TRUE(handshake());
  add(conn_.output(s_), c.lastData);
  EXPECT_GT(conn_.write(s_, c.ending == Ending::WriteWithFin), 0);
  EXPECT_EQ(conn_.pendingOutput(s_), 0u);
  if (c.ending == Ending::ShutdownWrite) conn_.shutdownWrite();
  if (c.ending == Ending::Close) conn_.close(&s_);
  EXPECT_EQ(peerReadsTheEnd(std::string(c.lastData)), SSL_ERROR_ZERO_RETURN);
}

INSTANTIATE_TEST_SUITE_P(
    ConnCloseNotify, ConnTlsEndingTest,
    ::testing::Values(EndingCase{"WriteWithFinAndNothingQueued", "", Ending::WriteWithFin},
                      EndingCase{"WriteWithFinBehindData", "bye", Ending::WriteWithFin},
                      EndingCase{"ShutdownWrite", "bye", Ending::ShutdownWrite},
                      EndingCase{"Close", "bye", Ending::Close}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(ConnTlsTest, WriteWithoutFinSendsNoCloseNotify) {
  startServer();
  ASSERT_TRUE(handshake());
  add(conn_.output(s_), "more to come");
  ASSERT_GT(conn_.write(s_, false), 0);
  ASSERT_EQ(conn_.pendingOutput(s_), 0u);  // every byte the Conn sent is in the socket
  EXPECT_EQ(peerRead(12), "more to come");
  char byte;
  std::size_t n = 0;
  EXPECT_EQ(sslError(peerSsl_.get(), SSL_read_ex(peerSsl_.get(), &byte, 1, &n)),
            SSL_ERROR_WANT_READ);
}

TEST_F(ConnTlsTest, ACloseNotifyEndsTheStreamAfterTheDataBeforeIt) {
  startServer();
  ASSERT_TRUE(handshake());
  peerWrite("last words");
  ASSERT_EQ(SSL_shutdown(peerSsl_.get()), 0);  // close_notify sent, the answer not read
  ASSERT_TRUE(waitFor(conn_.fd(), POLLIN));
  EXPECT_GT(conn_.read(s_), 0);
  EXPECT_EQ(text(conn_.input(s_)), "last words");
  EXPECT_TRUE(conn_.readable);  // the end is reported by the next read
  EXPECT_EQ(conn_.read(s_), 0);
  EXPECT_FALSE(conn_.readable);
  EXPECT_TRUE(conn_.tlsError().empty());
}

TEST_F(ConnTlsTest, ABatchedReadDecryptsLikeARead) {
  startServer();
  ASSERT_TRUE(handshake());
  peerWrite("batched");
  ASSERT_TRUE(waitFor(conn_.fd(), POLLIN));
  IoBatch::Op op;
  evbuffer_iovec space{};
  ASSERT_TRUE(conn_.prepareRead(s_, op, space));
  const ssize_t n = recv(op.fd, op.data, op.size, MSG_DONTWAIT);
  ASSERT_GT(n, 0);
  EXPECT_EQ(conn_.completeRead(s_, space, n), n);
  EXPECT_EQ(text(conn_.input(s_)), "batched");
}

TEST_F(ConnTlsTest, ARecordSplitAcrossReadsIsDecryptedOnceWhole) {
  startServer();
  ASSERT_TRUE(handshake());
  BIO* captured = BIO_new(BIO_s_mem());  // the peer's next record, before the socket
  SSL_set0_wbio(peerSsl_.get(), captured);
  peerWrite("split record");
  char* data = nullptr;
  const std::string record(data, static_cast<std::size_t>(BIO_get_mem_data(captured, &data)));
  ASSERT_GT(record.size(), 12u);
  sendAll(peer_, record.substr(0, record.size() / 2));
  turn();
  EXPECT_EQ(takeInput(), "");
  conn_.releaseIdleBuffers();  // holds a partial record: must not lose it
  sendAll(peer_, record.substr(record.size() / 2));
  turn();
  EXPECT_EQ(takeInput(), "split record");
  EXPECT_TRUE(conn_.tlsError().empty());
}

// However the sending side ends, one close_notify goes out, then the FIN, nothing after.
struct TwoEndingsCase {
  const char* name;
  Ending first, second;
};

class ConnTlsTwoEndingsTest : public ConnTlsTest,
                              public ::testing::WithParamInterface<TwoEndingsCase> {};

TEST_P(ConnTlsTwoEndingsTest, SendsExactlyOneCloseNotify) {
  const TwoEndingsCase& c = GetParam();
  startServer();
  ASSERT_TRUE(handshake());
  add(conn_.output(s_), "bye");
  ASSERT_GT(conn_.write(s_, c.first == Ending::WriteWithFin), 0);
  for (Ending e : {c.first, c.second}) {
    if (e == Ending::WriteWithFin) conn_.write(s_, true);
    if (e == Ending::ShutdownWrite) conn_.shutdownWrite();
    if (e == Ending::Close) conn_.close(&s_);
  }
  conn_.close(&s_);  // the FIN, if neither ending sent it
  EXPECT_EQ(peerReadsTheEnd("bye"), SSL_ERROR_ZERO_RETURN);
  const Received after = receiveToEof(peer_);  // past the close_notify record
  EXPECT_EQ(after.bytes.size(), 0u);
  EXPECT_TRUE(after.eof);
}

INSTANTIATE_TEST_SUITE_P(
    ConnCloseNotify, ConnTlsTwoEndingsTest,
    ::testing::Values(
        TwoEndingsCase{"WriteWithFinTwice", Ending::WriteWithFin, Ending::WriteWithFin},
        TwoEndingsCase{"WriteWithFinThenShutdownWrite", Ending::WriteWithFin,
                       Ending::ShutdownWrite},
        TwoEndingsCase{"WriteWithFinThenClose", Ending::WriteWithFin, Ending::Close},
        TwoEndingsCase{"ShutdownWriteTwice", Ending::ShutdownWrite, Ending::ShutdownWrite},
        TwoEndingsCase{"ShutdownWriteThenClose", Ending::ShutdownWrite, Ending::Close}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(ConnTlsTest, CloseBehindUnwrittenCiphertextSendsNoCloseNotify) {
  startServer();
  ASSERT_TRUE(handshake());
  add(conn_.output(s_), std::string(1024 * 1024, 'z'));
  ASSERT_GT(conn_.write(s_, false), 0);
  ASSERT_GT(len(s_.rawOut), 0u);  // the socket took only part of it
  conn_.close(&s_);
  int end = SSL_ERROR_NONE;
  peerRead(1024 * 1024, &end);
  // The stream is cut short: no close_notify claims it ended cleanly, and none is sent
  // behind a gap (which the peer would fail to decrypt).
  EXPECT_EQ(end, SSL_ERROR_SSL);
  EXPECT_EQ(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_UNEXPECTED_EOF_WHILE_READING);
}

struct VersionCase {
  const char* name;
  int version;
};

class ConnTlsVersionTest : public ConnTlsTest, public ::testing::WithParamInterface<VersionCase> {};

TEST_P(ConnTlsVersionTest, CarriesAnExchangeAndItsEnd) {
  startServer(GetParam().version);
  ASSERT_TRUE(handshake());
  EXPECT_EQ(SSL_version(peerSsl_.get()), GetParam().version);
  peerWrite("request");
  EXPECT_EQ(serverReceive(7), "request");
  add(conn_.output(s_), "response");
  conn_.write(s_, true);
  EXPECT_EQ(peerReadsTheEnd("response"), SSL_ERROR_ZERO_RETURN);
  SSL_shutdown(peerSsl_.get());
  ASSERT_TRUE(waitFor(conn_.fd(), POLLIN));
  EXPECT_GT(conn_.read(s_), 0);  // the close_notify record, no plaintext before it
  EXPECT_EQ(len(conn_.input(s_)), 0u);
  EXPECT_EQ(conn_.read(s_), 0);
  EXPECT_TRUE(conn_.tlsError().empty());
}

INSTANTIATE_TEST_SUITE_P(ConnVersions, ConnTlsVersionTest,
                         ::testing::Values(VersionCase{"Tls12", TLS1_2_VERSION},
                                           VersionCase{"Tls13", TLS1_3_VERSION}),
                         [](const auto& info) { return std::string(info.param.name); });

struct GarbageCase {
  const char* name;
  bool afterHandshake;
};

class ConnTlsGarbageTest : public ConnTlsTest, public ::testing::WithParamInterface<GarbageCase> {};

TEST_P(ConnTlsGarbageTest, FailsTheReadWithEproto) {
  startServer();
  if (GetParam().afterHandshake) {
    ASSERT_TRUE(handshake());
  }
  sendAll(peer_, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  conn_.readable = true;
  errno = 0;
  EXPECT_EQ(conn_.read(s_), -1);
  EXPECT_EQ(errno, EPROTO);
  EXPECT_FALSE(conn_.readable);
  EXPECT_FALSE(conn_.tlsError().empty());
  EXPECT_EQ(len(conn_.input(s_)), 0u);
}

INSTANTIATE_TEST_SUITE_P(ConnBadRecords, ConnTlsGarbageTest,
                         ::testing::Values(GarbageCase{"InsteadOfAClientHello", false},
                                           GarbageCase{"AfterTheHandshake", true}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(ConnTlsTest, ReleaseIdleBuffersKeepsTheNextExchangeWorking) {
  startServer();
  ASSERT_TRUE(handshake());
  for (int round = 0; round < 2; ++round) {
    conn_.releaseIdleBuffers();
    peerWrite("ping");
    EXPECT_EQ(serverReceive(4), "ping");
    conn_.releaseIdleBuffers();
    add(conn_.output(s_), "pong");
    turn();
    EXPECT_EQ(peerRead(4), "pong");
  }
}

TEST_F(ConnTlsTest, AClientConnSendsItsClientHelloFirstAndTheRequestAfterTheHandshake) {
  startClient();
  conn_.connecting = true;
  add(conn_.output(s_), "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(conn_.tryConnected(s_), 1);
  EXPECT_EQ(len(s_.out), 18u);  // the request waits for the handshake
  conn_.keepLeftovers(s_);
  std::string got;
  for (int i = 0; i < 20 && got.size() < 18; ++i) {
    char buf[64];
    std::size_t n = 0;
    if (SSL_read_ex(peerSsl_.get(), buf, sizeof buf, &n) == 1) {
      got.append(buf, n);
    } else {
      ASSERT_EQ(sslError(peerSsl_.get(), 0), SSL_ERROR_WANT_READ);
    }
    turn();
    if (got.size() < 18) waitFor(peer_, POLLIN);
  }
  EXPECT_EQ(got, "GET / HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(conn_.tls()->handshakeDone());
}

}  // namespace
}  // namespace wsgate::net
