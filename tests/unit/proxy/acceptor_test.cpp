// net::Acceptor on a real loopback listener and a real event loop: one accept per loop pass,
// a pause (not a spin) when the process is out of descriptors, and the two ways out of it.

#include "proxy/net/acceptor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "proxy/net/errors.h"

namespace wsgate::net {
namespace {

struct Counts {
  std::vector<int> accepted;
  std::vector<int> shortages;
};

void onAccept(void* ctx, int fd, const sockaddr*, socklen_t) noexcept {
  static_cast<Counts*>(ctx)->accepted.push_back(fd);
}
void onShortage(void* ctx, int error) noexcept {
  static_cast<Counts*>(ctx)->shortages.push_back(error);
}

class AcceptorTest : public ::testing::Test {
protected:
  void SetUp() override {
    base_.reset(event_base_new());
    listenFd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(listenFd_, 256), 0);
    socklen_t len = sizeof addr_;
    getsockname(listenFd_, reinterpret_cast<sockaddr*>(&addr_), &len);
    acceptor_ = std::make_unique<Acceptor>(base_.get(), listenFd_, &onAccept, &onShortage, &counts_,
                                           &turn_);
  }
  void TearDown() override {
    for (int fd : counts_.accepted) close(fd);
    for (int fd : clients_) close(fd);
    acceptor_.reset();
  }

  // A client whose connection is complete and queued on the listener.
  void connectClient() {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(connect(fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof addr_), 0);
    clients_.push_back(fd);
  }
  // Waits (bounded) until the listener's accept queue holds `n` connections: for a
  // listening socket, TCP_INFO's tcpi_unacked is the accept queue's length.
  void expectQueued(unsigned n) {
    tcp_info info{};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    do {
      socklen_t len = sizeof info;
      getsockopt(listenFd_, IPPROTO_TCP, TCP_INFO, &info, &len);
    } while (info.tcpi_unacked != n && std::chrono::steady_clock::now() < deadline);
    ASSERT_EQ(info.tcpi_unacked, n);
  }
  // One turn of the loop, as a worker runs it: waits for events, runs the callbacks of
  // one poll (EVLOOP_ONCE). Only when something is ready. `gap` turns without the
  // listener come first (other sockets' turns).
  void pass(uint64_t gap = 0) {
    turn_ += 1 + gap;
    event_base_loop(base_.get(), EVLOOP_ONCE);
  }
  // Polls until nothing is ready, without waiting (EVLOOP_NONBLOCK).
  void drain() {
    turn_ += 2;
    event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  }

  EventBasePtr base_;
  int listenFd_ = -1;
  sockaddr_in addr_{};
  Counts counts_;
  uint64_t turn_ = 100;
  std::vector<int> clients_;
  std::unique_ptr<Acceptor> acceptor_;
};

TEST_F(AcceptorTest, AcceptsOneConnectionPerReadinessAtAnOrdinaryRate) {
  // Readiness reports with other turns in between: one accept each, even with two
  // connections queued, so no accept fails with EAGAIN to learn the queue is empty.
  connectClient();
  connectClient();
  expectQueued(2);
  pass(/*gap=*/3);
  EXPECT_EQ(counts_.accepted.size(), 1u);
  pass(/*gap=*/3);
  EXPECT_EQ(counts_.accepted.size(), 2u);
  drain();  // the queue is empty: nothing happens, nothing fails
  EXPECT_EQ(counts_.accepted.size(), 2u);
  EXPECT_TRUE(counts_.shortages.empty());
}

TEST_F(AcceptorTest, ABacklogDoublesTheBurstEachTurnUpToTheMaximum) {
  constexpr int kQueued = 150;
  for (int i = 0; i < kQueued; ++i) connectClient();
  expectQueued(kQueued);
  std::vector<std::size_t> perTurn;
  while (counts_.accepted.size() < kQueued && perTurn.size() < 20) {
    const std::size_t before = counts_.accepted.size();
    pass();
    perTurn.push_back(counts_.accepted.size() - before);
  }
  // 1, 2, 4, 8, 16, 32, 64, then the 23 left.
  EXPECT_EQ(perTurn, (std::vector<std::size_t>{1, 2, 4, 8, 16, 32, 64, 23}));
  // The queue emptied (an accept met EAGAIN): after a few quiet turns two new connections
  // are taken one per turn again.
  connectClient();
  connectClient();
  expectQueued(2);
  pass(/*gap=*/3);
  EXPECT_EQ(counts_.accepted.size(), static_cast<std::size_t>(kQueued) + 1);
}

TEST_F(AcceptorTest, AcceptedSocketsAreNonBlockingAndCloseOnExec) {
  connectClient();
  pass();
  ASSERT_EQ(counts_.accepted.size(), 1u);
  EXPECT_TRUE(fcntl(counts_.accepted[0], F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(fcntl(counts_.accepted[0], F_GETFD) & FD_CLOEXEC);
}

TEST_F(AcceptorTest, DisabledAcceptorLeavesConnectionsQueuedUntilEnabled) {
  acceptor_->setEnabled(false);
  connectClient();
  drain();
  EXPECT_TRUE(counts_.accepted.empty());
  acceptor_->setEnabled(true);
  pass();
  EXPECT_EQ(counts_.accepted.size(), 1u);
}

// Runs the process out of descriptors: lowers the soft limit to what is open plus `spare`
// and fills the spare ones with duplicates. Restores everything on destruction.
class DescriptorShortage {
public:
  DescriptorShortage() {
    getrlimit(RLIMIT_NOFILE, &saved_);
    int highest = dup(0);
    close(highest);
    rlimit low = saved_;
    low.rlim_cur = static_cast<rlim_t>(highest + 4);
    setrlimit(RLIMIT_NOFILE, &low);
    for (int fd; (fd = dup(0)) >= 0;) filler_.push_back(fd);
    error_ = errno;
  }
  ~DescriptorShortage() {
    for (int fd : filler_) close(fd);
    setrlimit(RLIMIT_NOFILE, &saved_);
  }
  int error() const { return error_; }
  void freeOne() {
    close(filler_.back());
    filler_.pop_back();
  }

private:
  rlimit saved_{};
  std::vector<int> filler_;
  int error_ = 0;
};

TEST_F(AcceptorTest, OutOfDescriptorsPausesOnceThenRetriesAfterThePause) {
  connectClient();
  DescriptorShortage shortage;
  ASSERT_EQ(shortage.error(), EMFILE);
  pass();
  EXPECT_TRUE(counts_.accepted.empty());
  ASSERT_EQ(counts_.shortages, std::vector<int>{EMFILE});
  EXPECT_TRUE(acceptor_->shortagePaused());
  drain();  // paused: the still-readable listener is not polled, so no second failure
  EXPECT_EQ(counts_.shortages.size(), 1u);

  shortage.freeOne();
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = started + 20 * Acceptor::kRetry;
  while (counts_.accepted.empty() && std::chrono::steady_clock::now() < deadline) {
    pass(/*gap=*/3);  // wakes for the retry timer
  }
  EXPECT_EQ(counts_.accepted.size(), 1u);
  EXPECT_EQ(counts_.shortages.size(), 1u);
  EXPECT_FALSE(acceptor_->shortagePaused());
  EXPECT_GE(std::chrono::steady_clock::now() - started, Acceptor::kRetry / 2)
      << "accepting resumed before the pause was over";
}

TEST(SocketErrors, SortTheProcessesShortagesFromThePeersFaults) {
  struct Case {
    int error;
    bool resource;  // isResourceShortage: accept, socket, connect
    bool local;     // isLocalShortage: socket, connect towards a backend
  };
  for (const Case& c :
       {Case{EMFILE, true, true}, Case{ENFILE, true, true}, Case{ENOBUFS, true, true},
        Case{ENOMEM, true, true}, Case{EADDRNOTAVAIL, false, true}, Case{EAGAIN, false, true},
        Case{ECONNREFUSED, false, false}, Case{ECONNABORTED, false, false},
        Case{EAFNOSUPPORT, false, false}, Case{EACCES, false, false}, Case{EPERM, false, false},
        Case{EINTR, false, false}}) {
    EXPECT_EQ(isResourceShortage(c.error), c.resource) << "errno " << c.error;
    EXPECT_EQ(isLocalShortage(c.error), c.local) << "errno " << c.error;
  }
}

}  // namespace
}  // namespace wsgate::net
