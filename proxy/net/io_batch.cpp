#include "proxy/net/io_batch.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace wsgate::net {

IoBatch::IoBatch() {
  const char* env = std::getenv("WSGATE_IO_URING");
  if (env != nullptr && std::strcmp(env, "off") == 0) return;
  ring_ok_ = io_uring_queue_init(kRingEntries, &ring_, 0) == 0;
}

IoBatch::~IoBatch() {
  if (ring_ok_) io_uring_queue_exit(&ring_);
}

void IoBatch::runPlain(Op& op) {
  const ssize_t n = op.write ? send(op.fd, op.data, op.size, op.flags | MSG_DONTWAIT)
                             : recv(op.fd, op.data, op.size, MSG_DONTWAIT);
  op.result = n < 0 ? -errno : n;
  op.done = true;
  ++plain_ops_;
}

void IoBatch::disableRing(std::vector<Op>& ops, std::size_t from) {
  io_uring_queue_exit(&ring_);
  ring_ok_ = false;
  // Operations without the kernel's result, and the rest of the batch, run as plain calls.
  for (std::size_t i = from; i < ops.size(); ++i) {
    if (!ops[i].done) runPlain(ops[i]);
  }
}

void IoBatch::run(std::vector<Op>& ops) {
  if (!ring_ok_ || ops.size() < kMinRing) {
    for (Op& op : ops) runPlain(op);
    return;
  }
  for (std::size_t from = 0; from < ops.size(); from += kRingEntries) {
    const std::size_t to = std::min(ops.size(), from + kRingEntries);
    unsigned queued = 0;
    for (std::size_t i = from; i < to; ++i) {
      Op& op = ops[i];
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) {  // cannot happen with `to - from <= kRingEntries`; stay correct
        runPlain(op);
        continue;
      }
      if (op.write) {
        io_uring_prep_send(sqe, op.fd, op.data, op.size, op.flags | MSG_DONTWAIT);
      } else {
        io_uring_prep_recv(sqe, op.fd, op.data, op.size, MSG_DONTWAIT);
      }
      io_uring_sqe_set_data64(sqe, i);
      ++queued;
    }
    int rc;
    do {
      rc = io_uring_submit_and_wait(&ring_, queued);
    } while (rc == -EINTR);
    if (rc < 0 || static_cast<unsigned>(rc) != queued) {
      // The ring failed as a whole. Its queue may still hold these operations: it is torn
      // down (nothing is in flight: every operation completes at once), and what did not
      // report is done by hand. From now on this worker makes plain calls.
      disableRing(ops, from);
      return;
    }
    unsigned seen = 0;
    while (seen < queued) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe(&ring_, &cqe) != 0 || cqe == nullptr) break;
      ops[io_uring_cqe_get_data64(cqe)].result = cqe->res;
      ops[io_uring_cqe_get_data64(cqe)].done = true;
      io_uring_cqe_seen(&ring_, cqe);
      ++seen;
    }
    ring_ops_ += seen;
    if (seen != queued) {
      disableRing(ops, from);
      return;
    }
  }
}

}  // namespace wsgate::net
