#pragma once
// Many socket reads or writes in one system call: io_uring (liburing) used as a batched,
// synchronous syscall interface. Every operation carries MSG_DONTWAIT, so the kernel does
// it at once or fails it with EAGAIN; run() waits for all of them, so buffers need only
// live for the duration of the call. On this VM a system call costs about 1 us of entry and
// exit alone (page-table isolation): a loop turn with 20 sockets ready saves ~19 of them.
//
// Small batches go through plain recv/send (io_uring is no cheaper for one operation), and
// so does everything when io_uring is not available (old kernel, a seccomp profile that
// blocks it, io_uring_disabled, or WSGATE_IO_URING=off).

#include <liburing.h>
#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace wsgate::net {

class IoBatch {
public:
  // One operation: a recv into `data` (up to `size` bytes) or a send of `data`.
  struct Op {
    int fd = -1;
    bool write = false;
    int flags = 0;  // MSG_* for send (MSG_DONTWAIT is always added)
    void* data = nullptr;
    std::size_t size = 0;
    ssize_t result = -EAGAIN;  // what recv/send returned, or -errno
    bool done = false;         // result is the kernel's
  };

  // Below this many operations a batch is run as plain system calls.
  static constexpr std::size_t kMinRing = 3;
  // Operations per io_uring_enter; bigger batches take several calls.
  static constexpr unsigned kRingEntries = 256;

  IoBatch();
  ~IoBatch();
  IoBatch(const IoBatch&) = delete;
  IoBatch& operator=(const IoBatch&) = delete;

  // Whether io_uring is in use (else every batch runs as plain calls).
  bool ringEnabled() const { return ring_ok_; }

  // Runs every operation of `ops` and fills in its result.
  void run(std::vector<Op>& ops);

  // Counters, for tests and benchmarks: operations run through the ring / as plain calls.
  uint64_t ringOps() const { return ring_ops_; }
  uint64_t plainOps() const { return plain_ops_; }

private:
  void runPlain(Op& op);
  // After a failure of the ring as a whole: tears it down (nothing is in flight, every
  // operation completes at once) and runs ops[from...] that have no result as plain calls.
  void disableRing(std::vector<Op>& ops, std::size_t from);

  io_uring ring_{};
  bool ring_ok_ = false;
  uint64_t ring_ops_ = 0;
  uint64_t plain_ops_ = 0;
};

}  // namespace wsgate::net
