#include "proxy/access_log_writer.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <limits.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "proxy/log.h"

namespace wsgate::proxy {

namespace {

// A pipe (or a terminal, or a socket) takes whole lines of at most PIPE_BUF bytes per
// write(2), a longer line in pieces of that size: such a write is atomic, so access lines on
// stderr never cut into the error log's, and once poll(2) says the pipe has room it does
// not block. A file takes more at a time.
constexpr std::size_t kFileChunk = 256 * 1024;
// The writer looks up from a write that does not go through this often: to report drops,
// and to give up on a reader that takes nothing once the process is stopping.
constexpr int kPollMs = 100;
// At most one warning about dropped lines this often.
constexpr std::chrono::seconds kReportEvery{10};
// A buffer grown by a burst is given back once it has been written out.
constexpr std::size_t kKeepBuffer = 256 * 1024;

std::size_t chunkFor(int fd) {
  struct stat st {};
  if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) return kFileChunk;
  return PIPE_BUF;
}

// How many bytes of `bytes` (lines, each ending in '\n') the next write takes: whole lines
// up to `max`, or the first `max` bytes of a line longer than that. Never more than `max`:
// a write over PIPE_BUF to a pipe with one free page would wait for the reader.
std::size_t nextChunk(std::string_view bytes, std::size_t max) {
  if (bytes.size() <= max) return bytes.size();
  const std::size_t last = bytes.rfind('\n', max - 1);
  return last != std::string_view::npos ? last + 1 : max;
}

uint64_t linesIn(std::string_view bytes) {
  return static_cast<uint64_t>(std::count(bytes.begin(), bytes.end(), '\n'));
}

}  // namespace

struct AccessLogWriter::State {
  struct Target {
    int fd = -1;
    bool owned = false;  // closed once its lines are written (a file; not stdout/stderr)
    std::size_t chunk = PIPE_BUF;
  };
  struct Switch {
    std::size_t at;  // offset in the queued bytes from which `to` takes the lines
    Target to;
  };
  enum class Wrote { All, Failed, GaveUp };

  explicit State(std::size_t capacityBytes) : capacity(capacityBytes) {}

  void run();
  void writeOut(std::string_view bytes);
  Wrote writeChunk(std::string_view& chunk);
  void switchTo(const Target& to);
  void release(std::size_t bytes);
  void drop(std::string_view bytes, std::atomic<uint64_t>& counter);
  void reportDrops(bool now);

  const std::size_t capacity;
  std::mutex mu;
  std::condition_variable wake;
  std::string queued;            // whole lines; by mu
  std::vector<Switch> switches;  // by mu
  std::size_t held = 0;          // queued or being written, what `capacity` bounds; by mu
  // Set under mu (the writer waits on it) and read without it while a write waits.
  std::atomic<bool> stopping{false};
  // A new target waits (a SIGUSR1, a reload): a target that takes nothing is given up on at
  // once, or a stuck pipe would keep every later line from the new file. Set under mu with
  // the switch; `switchesInTurn` counts the taken ones not yet applied (writer only).
  std::atomic<bool> switchPending{false};
  std::size_t switchesInTurn = 0;
  std::chrono::milliseconds stall{kStopStall};  // written before `stopping` is set
  bool finished = false;                        // run() returned; by mu
  std::condition_variable done;                 // finished
  bool abandoned = false;  // the thread was left in a write that never returned; by mu
  // Counters only (nothing is published through them): relaxed.
  std::atomic<uint64_t> droppedFull{0};    // the queue was full
  std::atomic<uint64_t> droppedFailed{0};  // a write failed, or the reader was given up on

  // The writer thread's own.
  Target current;
  std::string spare;  // the buffer swapped with `queued`, kept for the next turn
  bool givenUp = false;
  int lastErrno = 0;
  uint64_t reportedFull = 0, reportedFailed = 0;
  std::chrono::steady_clock::time_point lastReport{};

  std::thread thread;
};

AccessLogWriter::AccessLogWriter(std::size_t capacityBytes)
    : state_(std::make_unique<State>(capacityBytes)) {
  state_->thread = std::thread([s = state_.get()] { s->run(); });
}

AccessLogWriter::~AccessLogWriter() {
  stop();
  if (state_->abandoned) (void)state_.release();  // still used by the thread left behind
}

bool AccessLogWriter::push(std::string_view line) {
  State& s = *state_;
  bool wasIdle = false;
  {
    const std::lock_guard lock(s.mu);
    const std::size_t size = line.size() + 1;
    if (s.stopping.load(std::memory_order_relaxed) || s.held + size > s.capacity) {
      s.droppedFull.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    wasIdle = s.queued.empty() && s.switches.empty();
    s.queued.append(line);
    s.queued += '\n';
    s.held += size;
  }
  // Only an idle writer may be asleep; a busy one looks at the queue before it waits.
  if (wasIdle) s.wake.notify_one();
  return true;
}

void AccessLogWriter::setTarget(int fd, bool owned) {
  State& s = *state_;
  const State::Target target{fd, owned, chunkFor(fd)};
  {
    const std::lock_guard lock(s.mu);
    if (!s.stopping.load(std::memory_order_relaxed)) {
      s.switches.push_back({s.queued.size(), target});
      s.switchPending.store(true, std::memory_order_release);
      s.wake.notify_one();
      return;
    }
  }
  if (owned) ::close(fd);
}

void AccessLogWriter::stop(std::chrono::milliseconds stall) {
  State& s = *state_;
  std::unique_lock lock(s.mu);
  if (!s.stopping.load(std::memory_order_relaxed)) {
    s.stall = stall;
    s.stopping.store(true, std::memory_order_release);
  }
  s.wake.notify_one();
  // The writer gives up on a reader that takes nothing for `stall`. Should a write(2) still
  // never return (another writer filled the pipe between poll and write), the process must
  // exit all the same: the thread is left behind once nothing has moved for a while longer.
  std::size_t held = s.held;
  auto moved = std::chrono::steady_clock::now();
  while (!s.finished && !s.abandoned) {
    if (s.done.wait_for(lock, std::chrono::milliseconds(250), [&s] { return s.finished; })) break;
    const auto now = std::chrono::steady_clock::now();
    if (s.held != held) {
      held = s.held;
      moved = now;
    } else if (now - moved > s.stall + std::chrono::seconds(1)) {
      s.abandoned = true;
    }
  }
  const bool abandoned = s.abandoned;
  lock.unlock();
  if (!s.thread.joinable()) return;
  if (abandoned) {
    s.thread.detach();
  } else {
    s.thread.join();
  }
}

uint64_t AccessLogWriter::dropped() const noexcept {
  return state_->droppedFull.load(std::memory_order_relaxed) +
         state_->droppedFailed.load(std::memory_order_relaxed);
}

void AccessLogWriter::State::run() {
  std::unique_lock lock(mu);
  for (;;) {
    // Woken by the first line after a quiet spell; otherwise once in a while, to report
    // the drops a warning held back.
    wake.wait_for(lock, std::chrono::seconds(1), [this] {
      return !queued.empty() || !switches.empty() || stopping.load(std::memory_order_relaxed);
    });
    if (queued.empty() && switches.empty()) {
      if (stopping.load(std::memory_order_relaxed)) break;
      lock.unlock();
      reportDrops(false);
      lock.lock();
      continue;
    }
    std::swap(queued, spare);  // `queued` gets the emptied buffer back, with its capacity
    std::vector<Switch> turn;
    turn.swap(switches);
    switchPending.store(false, std::memory_order_relaxed);
    lock.unlock();

    const std::string_view batch = spare;
    std::size_t at = 0;
    switchesInTurn = turn.size();
    for (const Switch& sw : turn) {
      writeOut(batch.substr(at, sw.at - at));
      at = sw.at;
      switchTo(sw.to);
      --switchesInTurn;
    }
    writeOut(batch.substr(at));
    if (spare.capacity() > kKeepBuffer) {
      spare = std::string();
    } else {
      spare.clear();
    }
    reportDrops(false);
    lock.lock();
  }
  lock.unlock();
  switchTo({});
  reportDrops(true);
  lock.lock();
  finished = true;
  done.notify_all();
}

void AccessLogWriter::State::writeOut(std::string_view bytes) {
  if (current.fd < 0) {  // access logging is off: nothing to write, nothing lost
    release(bytes.size());
    return;
  }
  while (!bytes.empty()) {
    if (givenUp) {
      drop(bytes, droppedFailed);
      return;
    }
    const std::size_t size = nextChunk(bytes, current.chunk);
    std::string_view chunk = bytes.substr(0, size);
    const Wrote wrote = writeChunk(chunk);
    bytes.remove_prefix(size - chunk.size());
    if (wrote == Wrote::All) continue;
    // The line that was being written is lost from where it stopped, and the rest of the
    // chunk with it; the next chunk may go through (or, given up on, is dropped too).
    std::size_t lost = chunk.size();
    if (lost != 0 && bytes[lost - 1] != '\n') {
      const std::size_t end = bytes.find('\n', lost);
      lost = end == std::string_view::npos ? bytes.size() : end + 1;
    }
    drop(bytes.substr(0, lost), droppedFailed);
    bytes.remove_prefix(lost);
    if (wrote == Wrote::GaveUp) givenUp = true;
  }
}

// Writes `chunk`, removing from it what went out; what is left is what a failure left.
AccessLogWriter::State::Wrote AccessLogWriter::State::writeChunk(std::string_view& chunk) {
  auto progress = std::chrono::steady_clock::now();
  while (!chunk.empty()) {
    pollfd p{current.fd, POLLOUT, 0};
    const int ready = ::poll(&p, 1, kPollMs);
    if (ready <= 0) {  // no room yet (or EINTR): meanwhile, say what the queue drops
      reportDrops(false);
      if (stopping.load(std::memory_order_acquire) &&
          std::chrono::steady_clock::now() - progress >= stall) {
        return Wrote::GaveUp;
      }
      if (switchesInTurn > 0 || switchPending.load(std::memory_order_acquire)) {
        lastErrno = EAGAIN;    // "write failed: Resource temporarily unavailable"
        return Wrote::GaveUp;  // its lines are dropped and counted; the new target gets on
      }
      continue;
    }
    const ssize_t n = ::write(current.fd, chunk.data(), chunk.size());
    if (n > 0) {
      release(static_cast<std::size_t>(n));
      chunk.remove_prefix(static_cast<std::size_t>(n));
      progress = std::chrono::steady_clock::now();
    } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
      lastErrno = errno;
      return Wrote::Failed;
    }
  }
  return Wrote::All;
}

void AccessLogWriter::State::switchTo(const Target& to) {
  if (current.owned && current.fd >= 0) ::close(current.fd);
  current = to;
  givenUp = false;
}

void AccessLogWriter::State::release(std::size_t bytes) {
  const std::lock_guard lock(mu);
  held -= bytes;
}

void AccessLogWriter::State::drop(std::string_view bytes, std::atomic<uint64_t>& counter) {
  counter.fetch_add(linesIn(bytes), std::memory_order_relaxed);
  release(bytes.size());
}

void AccessLogWriter::State::reportDrops(bool now) {
  const uint64_t full = droppedFull.load(std::memory_order_relaxed);
  const uint64_t failed = droppedFailed.load(std::memory_order_relaxed);
  if (full == reportedFull && failed == reportedFailed) return;
  const auto at = std::chrono::steady_clock::now();
  if (!now && lastReport != std::chrono::steady_clock::time_point{} &&
      at - lastReport < kReportEvery) {
    return;
  }
  lastReport = at;
  if (full != reportedFull) {
    log().warn("access log: {} lines dropped (writer too slow); {} since start",
               full - reportedFull, full + failed);
  }
  if (failed != reportedFailed) {
    log().warn("access log: {} lines dropped ({}); {} since start", failed - reportedFailed,
               lastErrno != 0 ? "write failed: " + std::generic_category().message(lastErrno)
                              : fmt::format("nothing written for {}ms at exit", stall.count()),
               full + failed);
  }
  reportedFull = full;
  reportedFailed = failed;
}

}  // namespace wsgate::proxy
