#include "proxy/net/buffer_pool.h"

#include <event2/event.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
#define WSGATE_POOL_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WSGATE_POOL_ENABLED 0
#endif
#endif
#ifndef WSGATE_POOL_ENABLED
#define WSGATE_POOL_ENABLED 1
#endif

namespace wsgate::net {
namespace {

using Limits = BufferPoolLimits;

// 16 bytes before every block: keeps the block 16-byte aligned, as malloc's are.
struct alignas(16) Header {
  std::size_t bytes;  // what the caller asked for
  int sizeClass;      // index into the free lists, or -1: not pooled
};
static_assert(sizeof(Header) == 16);

constexpr int kClasses = 7;  // 1 KiB .. 64 KiB, powers of two

// The class of a request of `bytes`, -1 for sizes that are not a pooled power of two.
int classOf(std::size_t bytes) {
  if (bytes < Limits::kMinPooled || bytes > Limits::kMaxPooled) return -1;
  if ((bytes & (bytes - 1)) != 0) return -1;
  int c = 0;
  for (std::size_t s = Limits::kMinPooled; s < bytes; s <<= 1) ++c;
  return c;
}

struct FreeBlock {
  FreeBlock* next;
};

// One thread's free lists; blocks left at thread exit go back to malloc.
struct ThreadPool {
  std::array<FreeBlock*, kClasses> heads{};
  BufferPoolStats stats;

  ~ThreadPool() {
    for (FreeBlock*& head : heads) {
      while (head != nullptr) {
        FreeBlock* next = head->next;
        std::free(reinterpret_cast<Header*>(head) - 1);
        head = next;
      }
    }
  }
};

thread_local ThreadPool tPool;

Header* headerOf(void* p) { return static_cast<Header*>(p) - 1; }

void* rawAlloc(std::size_t bytes, int sizeClass) {
  auto* h = static_cast<Header*>(std::malloc(sizeof(Header) + bytes));
  if (h == nullptr) return nullptr;
  h->bytes = bytes;
  h->sizeClass = sizeClass;
  return h + 1;
}

void* libeventMalloc(std::size_t bytes) { return poolAlloc(bytes); }
void* libeventRealloc(void* p, std::size_t bytes) { return poolRealloc(p, bytes); }
void libeventFree(void* p) { poolFree(p); }

}  // namespace

void* poolAlloc(std::size_t bytes) {
  const int c = WSGATE_POOL_ENABLED ? classOf(bytes) : -1;
  if (c >= 0) {
    ThreadPool& pool = tPool;
    if (FreeBlock* b = pool.heads[c]) {
      pool.heads[c] = b->next;
      pool.stats.cachedBytes -= bytes;
      ++pool.stats.hits;
      headerOf(b)->bytes = bytes;
      return b;
    }
    ++pool.stats.misses;
  }
  return rawAlloc(bytes, c);
}

void poolFree(void* p) {
  if (p == nullptr) return;
  Header* h = headerOf(p);
  if (h->sizeClass >= 0) {
    ThreadPool& pool = tPool;
    const std::size_t bytes = Limits::kMinPooled << h->sizeClass;
    if (pool.stats.cachedBytes + bytes <= Limits::kBytesPerThread) {
      auto* b = static_cast<FreeBlock*>(p);
      b->next = pool.heads[h->sizeClass];
      pool.heads[h->sizeClass] = b;
      pool.stats.cachedBytes += bytes;
      return;
    }
  }
  std::free(h);
}

void* poolRealloc(void* p, std::size_t bytes) {
  if (p == nullptr) return poolAlloc(bytes);
  if (bytes == 0) {
    poolFree(p);
    return nullptr;
  }
  Header* h = headerOf(p);
  if (h->sizeClass < 0 && classOf(bytes) < 0) {
    // Neither size is pooled: let malloc grow the block in place when it can.
    auto* grown = static_cast<Header*>(std::realloc(h, sizeof(Header) + bytes));
    if (grown == nullptr) return nullptr;
    grown->bytes = bytes;
    return grown + 1;
  }
  void* q = poolAlloc(bytes);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, std::min(h->bytes, bytes));
  poolFree(p);
  return q;
}

BufferPoolStats bufferPoolStats() { return tPool.stats; }

bool bufferPoolEnabled() { return WSGATE_POOL_ENABLED != 0; }

bool installBufferPool() {
  if (!WSGATE_POOL_ENABLED) return false;
  event_set_mem_functions(&libeventMalloc, &libeventRealloc, &libeventFree);
  return true;
}

}  // namespace wsgate::net
