// The per-thread pool behind libevent's buffer chains: which sizes it keeps, that a freed
// block is reused by the next allocation of its size, that it stays bounded, and that
// realloc keeps contents. Under ASan the pool is compiled out and only pass-through holds.

#include "proxy/net/buffer_pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <vector>

namespace wsgate::net {
namespace {

using Limits = BufferPoolLimits;

struct SizeCase {
  std::size_t bytes;
  bool pooled;
};

class PooledSizes : public ::testing::TestWithParam<SizeCase> {};

TEST_P(PooledSizes, FreedBlockIsReusedOnlyForPooledSizes) {
  const auto [bytes, pooled] = GetParam();
  void* a = poolAlloc(bytes);
  ASSERT_NE(a, nullptr);
  std::memset(a, 0xab, bytes);  // the whole block is usable
  poolFree(a);
  const BufferPoolStats before = bufferPoolStats();
  void* b = poolAlloc(bytes);
  const BufferPoolStats after = bufferPoolStats();
  if (pooled && bufferPoolEnabled()) {
    EXPECT_EQ(b, a);  // the block just freed, from the free list
    EXPECT_EQ(after.hits, before.hits + 1);
    EXPECT_EQ(after.cachedBytes + bytes, before.cachedBytes);
  } else {
    EXPECT_EQ(after.hits, before.hits);
    EXPECT_EQ(after.cachedBytes, before.cachedBytes);
  }
  poolFree(b);
}

INSTANTIATE_TEST_SUITE_P(Sizes, PooledSizes,
                         ::testing::Values(SizeCase{1, false}, SizeCase{128, false},
                                           SizeCase{1023, false}, SizeCase{1024, true},
                                           SizeCase{1025, false}, SizeCase{2048, true},
                                           SizeCase{4096, true}, SizeCase{6000, false},
                                           SizeCase{16384, true}, SizeCase{65536, true},
                                           SizeCase{131072, false}));

TEST(BufferPool, KeepsAtMostItsBudgetPerThread) {
  if (!bufferPoolEnabled()) GTEST_SKIP() << "pool compiled out (sanitizer build)";
  std::thread([] {
    constexpr std::size_t kBlock = Limits::kMaxPooled;
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < 2 * Limits::kBytesPerThread / kBlock; ++i) {
      blocks.push_back(poolAlloc(kBlock));
    }
    for (void* b : blocks) poolFree(b);
    EXPECT_EQ(bufferPoolStats().cachedBytes, Limits::kBytesPerThread);
  }).join();
}

TEST(BufferPool, EachThreadHasItsOwnPool) {
  if (!bufferPoolEnabled()) GTEST_SKIP() << "pool compiled out (sanitizer build)";
  void* mine = poolAlloc(8192);
  poolFree(mine);  // cached in this thread's pool
  std::thread([mine] {
    EXPECT_EQ(bufferPoolStats().cachedBytes, 0u);
    void* theirs = poolAlloc(8192);
    EXPECT_NE(theirs, mine);  // not handed another thread's cached block
    poolFree(theirs);
  }).join();
  void* again = poolAlloc(8192);
  EXPECT_EQ(again, mine);
  poolFree(again);
}

TEST(BufferPool, ReallocKeepsContentsAcrossPooledAndUnpooledSizes) {
  for (auto [from, to] : std::vector<std::pair<std::size_t, std::size_t>>{
           {100, 300}, {300, 100}, {100, 4096}, {4096, 16384}, {16384, 1000}, {4096, 4096}}) {
    auto* p = static_cast<unsigned char*>(poolAlloc(from));
    ASSERT_NE(p, nullptr);
    for (std::size_t i = 0; i < from; ++i) p[i] = static_cast<unsigned char>(i * 7);
    auto* q = static_cast<unsigned char*>(poolRealloc(p, to));
    ASSERT_NE(q, nullptr);
    for (std::size_t i = 0; i < std::min(from, to); ++i) {
      ASSERT_EQ(q[i], static_cast<unsigned char>(i * 7)) << from << " -> " << to << " at " << i;
    }
    poolFree(q);
  }
}

TEST(BufferPool, NullAndZeroFollowReallocRules) {
  void* p = poolRealloc(nullptr, 2048);  // realloc(NULL, n) allocates
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(poolRealloc(p, 0), nullptr);  // realloc(p, 0) frees
  poolFree(nullptr);                      // free(NULL) does nothing
}

}  // namespace
}  // namespace wsgate::net
