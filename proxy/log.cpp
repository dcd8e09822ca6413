#include "proxy/log.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <limits.h>
#include <poll.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace wsgate::proxy {
namespace {

// ---- the error log ------------------------------------------------------------------------

std::shared_ptr<spdlog::logger> gErrorLog;

spdlog::level::level_enum toSpd(conf::LogLevel l) {
  switch (l) {
    case conf::LogLevel::Trace:
      return spdlog::level::trace;
    case conf::LogLevel::Debug:
      return spdlog::level::debug;
    case conf::LogLevel::Info:
      return spdlog::level::info;
    case conf::LogLevel::Warn:
      return spdlog::level::warn;
    case conf::LogLevel::Error:
      return spdlog::level::err;
    case conf::LogLevel::Off:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger> makeErrorLog() {
  auto l =
      std::make_shared<spdlog::logger>("wsgate", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  l->flush_on(spdlog::level::trace);  // stderr is read by people and tests as it happens
  return l;
}

// ---- access line formatting -----------------------------------------------------------------

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The length (2-4) of the well-formed UTF-8 character starting with the non-ASCII byte s[i],
// or 0 when there is none; then `skip` is the length of its maximal ill-formed prefix, which
// one U+FFFD replaces (Unicode's recommended practice, as WHATWG decoders do).
std::size_t utf8Char(std::string_view s, std::size_t i, std::size_t& skip) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the next byte; narrower after E0 ED F0 F4
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c == 0xE0) {
    need = 2, lo = 0xA0;  // no overlong forms
  } else if (c == 0xED) {
    need = 2, hi = 0x9F;  // no surrogates
  } else if (c >= 0xE1 && c <= 0xEF) {
    need = 2;
  } else if (c == 0xF0) {
    need = 3, lo = 0x90;
  } else if (c == 0xF4) {
    need = 3, hi = 0x8F;  // nothing above U+10FFFF
  } else if (c >= 0xF1 && c <= 0xF3) {
    need = 3;
  } else {
    skip = 1;
    return 0;
  }
  std::size_t k = 1;
  for (; k <= need && i + k < s.size(); ++k) {
    const auto next = static_cast<unsigned char>(s[i + k]);
    if (next < lo || next > hi) break;
    lo = 0x80, hi = 0xBF;
  }
  if (k > need) return need + 1;
  skip = k;
  return 0;
}

// Bytes that go into a JSON string or a bare text field as they are.
bool plain(unsigned char c) { return c >= 0x20 && c < 0x7F && c != '"' && c != '\\'; }

void appendJsonString(std::string& out, std::string_view s) {
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t run = i;
    while (run < s.size() && plain(static_cast<unsigned char>(s[run]))) ++run;
    out.append(s.data() + i, run - i);
    if (run == s.size()) break;
    i = run;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      std::size_t skip = 0;
      if (const std::size_t n = utf8Char(s, i, skip); n != 0) {
        out.append(s.data() + i, n);
        i += n;
      } else {
        out += kReplacement;
        i += skip;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:  // the other control characters and DEL
        fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
    }
    ++i;
  }
  out += '"';
}

// A text field: as it is when it is printable ASCII without spaces or quotes, `-` when
// empty, otherwise a JSON string (so `reason="idle timeout"` stays one field).
void appendTextField(std::string& out, std::string_view s) {
  if (s.empty()) {
    out += '-';
    return;
  }
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7F || c == '"') {
      appendJsonString(out, s);
      return;
    }
  }
  out += s;
}

// RFC 3339, UTC, milliseconds: 2026-12-05T23:59:01.123Z.
void appendTime(std::string& out, std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(t);
  const auto day = floor<days>(ms);
  const year_month_day ymd{day};
  const hh_mm_ss hms{ms - day};
  fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                 static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                 static_cast<unsigned>(ymd.day()), hms.hours().count(), hms.minutes().count(),
                 hms.seconds().count(), hms.subseconds().count());
}

// A duration in milliseconds with microsecond digits; `none` for a negative one (not
// measured).
void appendMs(std::string& out, double ms, std::string_view none, std::string_view unit = "") {
  if (!(ms >= 0) || !std::isfinite(ms)) {
    out += none;
    return;
  }
  fmt::format_to(std::back_inserter(out), "{:.3f}{}", ms, unit);
}

std::chrono::system_clock::time_point beganAt(const AccessRecord& r,
                                              std::chrono::system_clock::time_point now) {
  if (!(r.durationMs > 0) || !std::isfinite(r.durationMs)) return now;
  return now - std::chrono::duration_cast<std::chrono::system_clock::duration>(
                   std::chrono::duration<double, std::milli>(r.durationMs));
}

void appendJsonLine(std::string& out, const AccessRecord& r,
                    std::chrono::system_clock::time_point began) {
  auto put = [&out](std::string_view key) {
    out += ",\"";
    out += key;
    out += "\":";
  };
  auto str = [&](std::string_view key, std::string_view value) {
    put(key);
    appendJsonString(out, value);
  };
  auto strOrNull = [&](std::string_view key, std::string_view value) {
    put(key);
    if (value.empty()) {
      out += "null";
    } else {
      appendJsonString(out, value);
    }
  };
  auto num = [&](std::string_view key, auto value) {
    put(key);
    fmt::format_to(std::back_inserter(out), "{}", value);
  };
  auto ms = [&](std::string_view key, double value) {
    put(key);
    appendMs(out, value, "null");
  };
  out += "{\"time\":\"";
  appendTime(out, began);
  out += '"';
  num("session", r.session);
  str("kind", r.kind);
  str("client", r.client);
  str("listener", r.listener);
  put("route");
  if (r.route < 0) {
    out += "null";
  } else {
    fmt::format_to(std::back_inserter(out), "{}", r.route);
  }
  str("method", r.method);
  str("host", r.host);
  str("path", r.path);
  strOrNull("pool", r.pool);
  strOrNull("backend", r.backend);
  num("status", r.status);
  str("reason", r.reason);
  ms("duration_ms", r.durationMs < 0 ? 0 : r.durationMs);
  ms("connect_ms", r.connectMs);
  ms("response_ms", r.responseMs);
  num("bytes_from_client", r.bytesFromClient);
  num("bytes_to_client", r.bytesToClient);
  if (r.tunnel != nullptr) {
    const TunnelStats& t = *r.tunnel;
    num("frames_from_client", t.framesFromClient);
    num("frames_to_client", t.framesToClient);
    num("messages_from_client", t.messagesFromClient);
    num("messages_to_client", t.messagesToClient);
    num("close_code", t.closeCode);
    str("close_by", t.closeBy);
  }
  out += '}';
}

void appendTextLine(std::string& out, const AccessRecord& r,
                    std::chrono::system_clock::time_point began) {
  auto field = [&out](std::string_view key, std::string_view value) {
    out += ' ';
    out += key;
    appendTextField(out, value);
  };
  appendTime(out, began);
  fmt::format_to(std::back_inserter(out), " s{}", r.session);
  field("", r.kind);
  field("", r.client);
  field("listener=", r.listener);
  if (r.route < 0) {
    out += " route=-";
  } else {
    fmt::format_to(std::back_inserter(out), " route={}", r.route);
  }
  field("", r.method);
  field("", r.host);
  field("", r.path);
  field("pool=", r.pool);
  field("backend=", r.backend);
  fmt::format_to(std::back_inserter(out), " {}", r.status);
  field("reason=", r.reason);
  out += ' ';
  appendMs(out, r.durationMs < 0 ? 0 : r.durationMs, "-", "ms");
  out += " connect=";
  appendMs(out, r.connectMs, "-", "ms");
  out += " response=";
  appendMs(out, r.responseMs, "-", "ms");
  fmt::format_to(std::back_inserter(out), " in={} out={}", r.bytesFromClient, r.bytesToClient);
  if (r.tunnel != nullptr) {
    const TunnelStats& t = *r.tunnel;
    fmt::format_to(std::back_inserter(out), " frames={}/{} messages={}/{} close={}",
                   t.framesFromClient, t.framesToClient, t.messagesFromClient, t.messagesToClient,
                   t.closeCode);
    field("by=", t.closeBy);
  }
}

}  // namespace

void appendAccessLine(std::string& out, const AccessRecord& r, conf::LogFormat format,
                      std::chrono::system_clock::time_point now) {
  const std::chrono::system_clock::time_point began = beganAt(r, now);
  if (format == conf::LogFormat::Json) {
    appendJsonLine(out, r, began);
  } else {
    appendTextLine(out, r, began);
  }
}

// ---- the access log writer ------------------------------------------------------------------

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

// ---- the process's loggers ------------------------------------------------------------------

namespace {

enum class AccessMode { Off, Json, Text };

// The queue between the workers and the writer: about 4 s of a burst of 1,000 lines/s of
// 1 KiB, or a quarter of a second at 50,000 short lines/s.
constexpr std::size_t kAccessQueueBytes = 4 * 1024 * 1024;

std::atomic<AccessMode> gAccessMode{AccessMode::Off};
// Made on first use and never freed: a worker may still hold it while the process ends.
std::atomic<AccessLogWriter*> gAccessWriter{nullptr};

int openAccessFile(const std::string& path, std::string& error) {
  std::error_code ec;  // a missing directory is made, as for a first start; errors show below
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd < 0)
    error =
        fmt::format("cannot open access log {}: {}", path, std::generic_category().message(errno));
  return fd;
}

}  // namespace

bool initLogging(const conf::LogConfig& cfg, std::string& error) {
  if (!gErrorLog) gErrorLog = makeErrorLog();
  gErrorLog->set_level(toSpd(cfg.level));

  AccessLogWriter* writer = gAccessWriter.load(std::memory_order_acquire);
  if (cfg.access == "off") {
    gAccessMode.store(AccessMode::Off, std::memory_order_release);
    if (writer != nullptr) writer->setTarget(-1, false);  // what is queued is still written
    return true;
  }
  int fd = -1;
  bool owned = false;
  if (cfg.access == "stdout") {
    fd = STDOUT_FILENO;
  } else if (cfg.access == "stderr") {
    fd = STDERR_FILENO;
  } else {
    fd = openAccessFile(cfg.access, error);
    if (fd < 0) return false;
    owned = true;
  }
  if (writer == nullptr) {
    try {  // called from noexcept reload paths: a thread that cannot start is an error value
      writer = new AccessLogWriter(kAccessQueueBytes);
    } catch (const std::exception& e) {
      if (owned) ::close(fd);
      error = fmt::format("cannot start the access log writer: {}", e.what());
      return false;
    }
    gAccessWriter.store(writer, std::memory_order_release);
  }
  writer->setTarget(fd, owned);
  gAccessMode.store(cfg.format == conf::LogFormat::Json ? AccessMode::Json : AccessMode::Text,
                    std::memory_order_release);
  return true;
}

void shutdownLogging() {
  gAccessMode.store(AccessMode::Off, std::memory_order_release);
  if (AccessLogWriter* writer = gAccessWriter.load(std::memory_order_acquire)) writer->stop();
  if (gErrorLog) gErrorLog->flush();
}

spdlog::logger& log() {
  if (!gErrorLog) gErrorLog = makeErrorLog();
  return *gErrorLog;
}

void writeAccess(const AccessRecord& r) {
  const AccessMode mode = gAccessMode.load(std::memory_order_acquire);
  if (mode == AccessMode::Off) return;
  AccessLogWriter* writer = gAccessWriter.load(std::memory_order_acquire);
  if (writer == nullptr) return;
  thread_local std::string line;  // one per worker, reused: no allocation per line
  line.clear();
  appendAccessLine(line, r,
                   mode == AccessMode::Json ? conf::LogFormat::Json : conf::LogFormat::Text,
                   std::chrono::system_clock::now());
  writer->push(line);
}

uint64_t accessLogDropped() {
  const AccessLogWriter* writer = gAccessWriter.load(std::memory_order_acquire);
  return writer == nullptr ? 0 : writer->dropped();
}

}  // namespace wsgate::proxy
