#pragma once
// The access log's writer thread: workers hand it whole lines through a bounded queue and
// never wait on I/O; it writes them in order to the current target (a file, stdout, stderr),
// switching targets in line order on a reload or SIGUSR1, and drops and counts what does not
// fit or cannot be written.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace wsgate::proxy {

// The access log's writer: a bounded queue of whole lines, drained in order by one thread
// into the current target. Producers never wait on I/O: a line that does not fit in
// `capacityBytes` (queued plus being written) is dropped and counted.
class AccessLogWriter {
public:
  static constexpr std::chrono::milliseconds kStopStall{2000};

  explicit AccessLogWriter(std::size_t capacityBytes);
  ~AccessLogWriter();  // stop()
  AccessLogWriter(const AccessLogWriter&) = delete;
  AccessLogWriter& operator=(const AccessLogWriter&) = delete;

  // Queues `line` and a newline; false when it was dropped (queue full, or stopped).
  bool push(std::string_view line);
  // Lines pushed from now on go to `fd` (-1: nowhere); the ones before still go to the
  // previous target, which is closed, when `owned`, once they are written.
  void setTarget(int fd, bool owned);
  // Writes out what is queued and stops the thread. A target that takes no byte for `stall`
  // is given up on and what is left is counted as dropped. Idempotent.
  void stop(std::chrono::milliseconds stall = kStopStall);

  uint64_t dropped() const noexcept;

private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace wsgate::proxy
