// net::Acceptor on a real loopback listener and a real event loop: one accept per loop pass,
// a pause (not a spin) when the process is out of descriptors, and the two ways out of it.

#include "proxy/net/acceptor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <vector>

namespace wsgate::net {
namespace {

struct Counts {
  std::vector<int> accepted;
  std::vector<int> shortages;
};

void onAccept(void* ctx, int fd, const sockaddr*, socklen_t) {
  static_cast<Counts*>(ctx)->accepted.push_back(fd);
}
void onShortage(void* ctx, int error) { static_cast<Counts*>(ctx)->shortages.push_back(error); }

class AcceptorTest : public ::testing::Test {
protected:
  void SetUp() override {
    base_.reset(event_base_new());
    listenFd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(listenFd_, 16), 0);
    socklen_t len = sizeof addr_;
    getsockname(listenFd_, reinterpret_cast<sockaddr*>(&addr_), &len);
    acceptor_ =
        std::make_unique<Acceptor>(base_.get(), listenFd_, &onAccept, &onShortage, &counts_);
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
  // One turn of the loop, as a worker runs it: waits for events, runs the callbacks of
  // one poll (EVLOOP_ONCE). Only when something is ready.
  void pass() { event_base_loop(base_.get(), EVLOOP_ONCE); }
  // Polls until nothing is ready, without waiting (EVLOOP_NONBLOCK).
  void drain() { event_base_loop(base_.get(), EVLOOP_NONBLOCK); }

  EventBasePtr base_;
  int listenFd_ = -1;
  sockaddr_in addr_{};
  Counts counts_;
  std::vector<int> clients_;
  std::unique_ptr<Acceptor> acceptor_;
};

TEST_F(AcceptorTest, AcceptsOneQueuedConnectionPerLoopPass) {
  for (int i = 0; i < 3; ++i) connectClient();
  for (std::size_t expected = 1; expected <= 3; ++expected) {
    pass();
    EXPECT_EQ(counts_.accepted.size(), expected);
  }
  drain();  // the queue is empty: nothing happens, nothing fails
  EXPECT_EQ(counts_.accepted.size(), 3u);
  EXPECT_TRUE(counts_.shortages.empty());
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

TEST_F(AcceptorTest, OutOfDescriptorsPausesOnceThenAcceptsWhenOneIsFreed) {
  connectClient();
  DescriptorShortage shortage;
  ASSERT_EQ(shortage.error(), EMFILE);
  pass();
  EXPECT_TRUE(counts_.accepted.empty());
  ASSERT_EQ(counts_.shortages, std::vector<int>{EMFILE});
  EXPECT_TRUE(acceptor_->shortagePaused());
  drain();  // paused: the still-readable listener is not polled
  EXPECT_EQ(counts_.shortages.size(), 1u);

  shortage.freeOne();
  acceptor_->retryNow();  // what the worker does when one of its sessions closes
  EXPECT_FALSE(acceptor_->shortagePaused());
  pass();
  EXPECT_EQ(counts_.accepted.size(), 1u);
}

TEST_F(AcceptorTest, OutOfDescriptorsRetriesByItselfAfterThePause) {
  connectClient();
  DescriptorShortage shortage;
  pass();
  ASSERT_EQ(counts_.shortages.size(), 1u);
  shortage.freeOne();  // freed elsewhere in the process: no retryNow()
  const auto deadline = std::chrono::steady_clock::now() + 20 * Acceptor::kRetry;
  while (counts_.accepted.empty() && std::chrono::steady_clock::now() < deadline) {
    event_base_loop(base_.get(), EVLOOP_ONCE);  // wakes for the retry timer
  }
  EXPECT_EQ(counts_.accepted.size(), 1u);
  EXPECT_EQ(counts_.shortages.size(), 1u);
}

TEST(IsResourceShortage, NamesTheProcessesShortagesOnly) {
  struct Case {
    int error;
    bool shortage;
  };
  for (const Case& c :
       {Case{EMFILE, true}, Case{ENFILE, true}, Case{ENOBUFS, true}, Case{ENOMEM, true},
        Case{EAGAIN, false}, Case{ECONNABORTED, false}, Case{EPERM, false}, Case{EINTR, false}}) {
    EXPECT_EQ(isResourceShortage(c.error), c.shortage) << "errno " << c.error;
  }
}

}  // namespace
}  // namespace wsgate::net
