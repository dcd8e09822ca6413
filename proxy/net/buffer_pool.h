#pragma once
// Per-thread pools for libevent's buffer memory.
//
// libevent allocates every evbuffer chain with a power-of-two size (1 KiB and up) and frees
// it as soon as it is drained, so a relayed message costs a malloc and a free per chain.
// installBufferPool() routes libevent's allocations through this module: blocks of the
// pooled sizes go back to a free list of the freeing thread (a worker) and the next chain
// of that size reuses one, without touching malloc. Connections keep no buffer when idle;
// the pool is the worker's, bounded per size, and returns what it does not keep to malloc.
//
// Every block carries a 16-byte header with its size, so libevent's realloc and free need
// no lookup. Under AddressSanitizer the pool is off (blocks go straight to malloc), so
// use-after-free in buffer code stays visible to the sanitizer.

#include <cstddef>
#include <cstdint>

namespace wsgate::net {

struct BufferPoolLimits {
  static constexpr std::size_t kMinPooled = 1024;          // smallest pooled block (bytes asked)
  static constexpr std::size_t kMaxPooled = 65536;         // largest pooled block
  static constexpr std::size_t kBytesPerThread = 4 << 20;  // kept at most, per thread
};

// Counters of the calling thread's pool.
struct BufferPoolStats {
  uint64_t hits = 0;    // pooled-size allocations served from the free lists
  uint64_t misses = 0;  // pooled-size allocations that went to malloc
  std::size_t cachedBytes = 0;
};

// Makes libevent allocate through the pool. Call once, before any libevent object exists
// (event_set_mem_functions' rule). Returns false when the pool is compiled out (ASan).
bool installBufferPool();

// False when compiled out (AddressSanitizer builds): every block then goes to malloc.
bool bufferPoolEnabled();

// The allocator itself, usable directly (tests, or other buffer users).
void* poolAlloc(std::size_t bytes);
void* poolRealloc(void* p, std::size_t bytes);
void poolFree(void* p);

BufferPoolStats bufferPoolStats();

}  // namespace wsgate::net
