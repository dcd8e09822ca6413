// net::IoBatch over real socket pairs: a batch through io_uring behaves exactly like the
// same calls made one by one (results in order, EAGAIN instead of waiting, EOF, errors), and
// small batches or a disabled ring take the plain path. Whether the ring is used at all is
// checked against the kernel itself, not against what IoBatch says of itself.

#include "proxy/net/io_batch.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::net {
namespace {

using Op = IoBatch::Op;

struct Pair {
  int a = -1, b = -1;
  Pair() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    a = fds[0];
    b = fds[1];
  }
  ~Pair() {
    if (a >= 0) close(a);
    if (b >= 0) close(b);
  }
};

Op sendOp(int fd, const std::string& text) {
  return {.fd = fd, .write = true, .data = const_cast<char*>(text.data()), .size = text.size()};
}
Op recvOp(int fd, char* buf, std::size_t size) { return {.fd = fd, .data = buf, .size = size}; }

// Four pairs: sends on two, then reads on all four (two with data, two without), in one
// batch each; every result lands on its own operation.
void expectBatchSemantics(IoBatch& io) {
  Pair p[4];
  const std::string hello = "hello", world = "world!";
  std::vector<Op> sends = {sendOp(p[0].a, hello), sendOp(p[2].a, world), sendOp(p[3].a, hello)};
  io.run(sends);
  EXPECT_EQ(sends[0].result, 5);
  EXPECT_EQ(sends[1].result, 6);
  EXPECT_EQ(sends[2].result, 5);

  char buf[4][64];
  std::vector<Op> reads;
  for (int i = 0; i < 4; ++i) reads.push_back(recvOp(p[i].b, buf[i], sizeof buf[i]));
  io.run(reads);
  EXPECT_EQ(reads[0].result, 5);
  EXPECT_EQ(std::string(buf[0], 5), hello);
  EXPECT_EQ(reads[1].result, -EAGAIN) << "an empty socket must fail at once, not wait";
  EXPECT_EQ(reads[2].result, 6);
  EXPECT_EQ(std::string(buf[2], 6), world);
  EXPECT_EQ(reads[3].result, 5);

  // The end of a stream reads as 0, a send to a closed peer as EPIPE.
  shutdown(p[0].a, SHUT_WR);
  close(p[1].b);
  p[1].b = -1;
  std::vector<Op> last = {recvOp(p[0].b, buf[0], sizeof buf[0]), sendOp(p[1].a, hello),
                          recvOp(p[2].b, buf[2], sizeof buf[2])};
  last[1].flags = MSG_NOSIGNAL;
  io.run(last);
  EXPECT_EQ(last[0].result, 0);
  EXPECT_EQ(last[1].result, -EPIPE);
  EXPECT_EQ(last[2].result, -EAGAIN);
}

TEST(IoBatch, ABatchGivesEachOperationItsOwnResult) {
  IoBatch io;
  expectBatchSemantics(io);
  if (io.ringEnabled()) {
    EXPECT_GT(io.ringOps(), 0u) << "batches of 3 or more go through the ring";
  } else {
    EXPECT_EQ(io.ringOps(), 0u);
  }
}

// Sets an environment variable for one scope and puts back what was there.
class ScopedEnv {
public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

private:
  const char* name_;
  std::optional<std::string> old_;
};

// Asks the kernel directly, with the raw system call rather than liburing or IoBatch, whether
// this process may create an io_uring. An old kernel (ENOSYS), io_uring_disabled (EPERM) or a
// seccomp profile that blocks it all answer no here.
bool kernelOffersIoUring() {
  io_uring_params params{};
  const long fd = syscall(__NR_io_uring_setup, 4, &params);
  if (fd < 0) return false;
  close(static_cast<int>(fd));
  return true;
}

// The product's switch: WSGATE_IO_URING=off means plain calls whatever the kernel offers.
bool switchedOff() {
  const char* env = std::getenv("WSGATE_IO_URING");
  return env != nullptr && std::string_view(env) == "off";
}

// The descriptors of this process that are io_uring instances, as the kernel names them.
std::set<int> ringDescriptors() {
  std::set<int> fds;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  while (const dirent* e = readdir(dir)) {
    const std::string path = std::string("/proc/self/fd/") + e->d_name;
    char target[64];
    const ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
    if (n > 0 && std::string_view(target, static_cast<std::size_t>(n)) == "anon_inode:[io_uring]") {
      fds.insert(std::atoi(e->d_name));
    }
  }
  closedir(dir);
  return fds;
}

// The ring created while `make` ran, or -1 when it created none (or more than one).
template <class Make>
int ringCreatedBy(Make make) {
  const std::set<int> before = ringDescriptors();
  make();
  int created = -1;
  for (int fd : ringDescriptors()) {
    if (before.count(fd) != 0) continue;
    if (created != -1) return -1;
    created = fd;
  }
  return created;
}

// Completions the kernel has posted on ring `fd` (CqTail in its fdinfo), if it reports them.
std::optional<unsigned long> completionsPosted(int fd) {
  std::ifstream info("/proc/self/fdinfo/" + std::to_string(fd));
  std::string key;
  unsigned long value = 0;
  while (info >> key) {
    if (key == "CqTail:" && info >> value) return value;
  }
  return std::nullopt;
}

// Four sends and four reads, each batch big enough for the ring.
void runFourSendsAndFourReads(IoBatch& io) {
  Pair p[4];
  const std::string text = "ring";
  std::vector<Op> sends;
  for (Pair& pair : p) sends.push_back(sendOp(pair.a, text));
  io.run(sends);
  for (const Op& op : sends) EXPECT_EQ(op.result, 4);
  char buf[4][8];
  std::vector<Op> reads;
  for (int i = 0; i < 4; ++i) reads.push_back(recvOp(p[i].b, buf[i], sizeof buf[i]));
  io.run(reads);
  for (const Op& op : reads) EXPECT_EQ(op.result, 4);
}

TEST(IoBatch, UsesTheRingWhereverTheKernelOffersIt) {
  const bool expectRing = kernelOffersIoUring() && !switchedOff();
  std::optional<IoBatch> io;
  const int ring = ringCreatedBy([&] { io.emplace(); });
  if (!expectRing) {
    EXPECT_FALSE(io->ringEnabled()) << "no io_uring here (or WSGATE_IO_URING=off)";
    EXPECT_EQ(ring, -1);
    runFourSendsAndFourReads(*io);
    EXPECT_EQ(io->ringOps(), 0u);
    EXPECT_EQ(io->plainOps(), 8u);
    return;
  }
  ASSERT_TRUE(io->ringEnabled()) << "the kernel offers io_uring, yet IoBatch makes plain calls";
  ASSERT_NE(ring, -1) << "IoBatch says it uses a ring, but the kernel shows none it created";
  const std::optional<unsigned long> before = completionsPosted(ring);
  runFourSendsAndFourReads(*io);
  EXPECT_EQ(io->ringOps(), 8u);
  EXPECT_EQ(io->plainOps(), 0u);
  // The kernel's own count: the eight operations completed on this ring, not as plain calls.
  if (before) {
    EXPECT_EQ(completionsPosted(ring).value_or(0) - *before, 8u);
  }
}

TEST(IoBatch, CreatesNoRingWhenSwitchedOff) {
  const ScopedEnv off("WSGATE_IO_URING", "off");
  std::optional<IoBatch> io;
  EXPECT_EQ(ringCreatedBy([&] { io.emplace(); }), -1);
  EXPECT_FALSE(io->ringEnabled());
  runFourSendsAndFourReads(*io);
  EXPECT_EQ(io->ringOps(), 0u);
  EXPECT_EQ(io->plainOps(), 8u);
}

TEST(IoBatch, TheSameWithoutTheRing) {
  std::optional<IoBatch> made;
  {
    const ScopedEnv off("WSGATE_IO_URING", "off");
    made.emplace();
  }
  IoBatch& io = *made;
  EXPECT_FALSE(io.ringEnabled());
  expectBatchSemantics(io);
  EXPECT_EQ(io.ringOps(), 0u);
  EXPECT_GT(io.plainOps(), 0u);
}

TEST(IoBatch, SmallBatchesArePlainCalls) {
  IoBatch io;
  Pair p;
  const std::string one = "1";
  std::vector<Op> ops = {sendOp(p.a, one), sendOp(p.a, one)};
  io.run(ops);
  EXPECT_EQ(ops[0].result, 1);
  EXPECT_EQ(ops[1].result, 1);
  EXPECT_EQ(io.ringOps(), 0u);
  EXPECT_EQ(io.plainOps(), 2u);
}

TEST(IoBatch, MoreOperationsThanRingEntriesTakeSeveralCalls) {
  IoBatch io;
  constexpr std::size_t kPairs = 8;
  Pair p[kPairs];
  const std::string byte = "x";
  std::vector<Op> ops;
  for (std::size_t i = 0; i < IoBatch::kRingEntries * 2 + 5; ++i) {
    ops.push_back(sendOp(p[i % kPairs].a, byte));
  }
  io.run(ops);
  for (const Op& op : ops) ASSERT_EQ(op.result, 1);
  std::size_t got = 0;
  for (Pair& pair : p) {
    char buf[1024];
    for (ssize_t n; (n = recv(pair.b, buf, sizeof buf, MSG_DONTWAIT)) > 0;) got += n;
  }
  EXPECT_EQ(got, ops.size());
}

}  // namespace
}  // namespace wsgate::net
