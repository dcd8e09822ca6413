// net::IoBatch over real socket pairs: a batch through io_uring behaves exactly like the
// same calls made one by one (results in order, EAGAIN instead of waiting, EOF, errors), and
// small batches or a disabled ring take the plain path.

#include "proxy/net/io_batch.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
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

TEST(IoBatch, TheSameWithoutTheRing) {
  setenv("WSGATE_IO_URING", "off", 1);
  IoBatch io;
  unsetenv("WSGATE_IO_URING");
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
