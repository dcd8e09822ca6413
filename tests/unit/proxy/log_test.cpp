// The access log: its lines (field order, time, nulls, escaping, the text form) and its
// writer (order, a target switch, a reader that stops reading: drops counted, never a wait).
#include "proxy/log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace wsgate::proxy {
namespace {

using std::chrono::milliseconds;
using std::chrono::system_clock;
using namespace std::string_view_literals;

// 2026-12-05T23:59:01.123Z
const system_clock::time_point kNow = system_clock::time_point{} + milliseconds(1796515141123);

AccessRecord httpRecord() {
  return {.session = 7,
          .client = "127.0.0.1:5312",
          .kind = "http",
          .listener = "public",
          .route = 1,
          .method = "GET",
          .path = "/page",
          .host = "example.test",
          .status = 200,
          .pool = "app",
          .backend = "app/c1",
          .reason = "ok",
          .durationMs = 12.5,
          .connectMs = 0.25,
          .responseMs = 10.125,
          .bytesFromClient = 65,
          .bytesToClient = 363};
}

std::string line(const AccessRecord& r, conf::LogFormat format = conf::LogFormat::Json,
                 system_clock::time_point now = kNow) {
  std::string out;
  appendAccessLine(out, r, format, now);
  return out;
}

std::vector<std::string> keysOf(const std::string& jsonLine) {
  const nlohmann::ordered_json j = nlohmann::ordered_json::parse(jsonLine);
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  return keys;
}

const std::vector<std::string> kHttpKeys{
    "time",   "session",     "kind",       "client",      "listener",          "route",
    "method", "host",        "path",       "pool",        "backend",           "status",
    "reason", "duration_ms", "connect_ms", "response_ms", "bytes_from_client", "bytes_to_client"};

TEST(AccessLine, HttpFieldsComeInTheDocumentedOrder) {
  EXPECT_EQ(keysOf(line(httpRecord())), kHttpKeys);
}

TEST(AccessLine, WebSocketFieldsFollowTheHttpOnesInTheDocumentedOrder) {
  const TunnelStats t{4, 3, 2, 2, 1000, "client"};
  AccessRecord r = httpRecord();
  r.kind = "websocket";
  r.status = 101;
  r.tunnel = &t;
  std::vector<std::string> expected = kHttpKeys;
  for (const char* key : {"frames_from_client", "frames_to_client", "messages_from_client",
                          "messages_to_client", "close_code", "close_by"}) {
    expected.emplace_back(key);
  }
  EXPECT_EQ(keysOf(line(r)), expected);
  const auto j = nlohmann::json::parse(line(r));
  EXPECT_EQ(j["frames_from_client"], 4);
  EXPECT_EQ(j["frames_to_client"], 3);
  EXPECT_EQ(j["messages_from_client"], 2);
  EXPECT_EQ(j["messages_to_client"], 2);
  EXPECT_EQ(j["close_code"], 1000);
  EXPECT_EQ(j["close_by"], "client");
}

TEST(AccessLine, JsonCarriesEveryValue) {
  EXPECT_EQ(line(httpRecord()),
            R"({"time":"2026-12-05T23:59:01.110Z","session":7,"kind":"http",)"
            R"("client":"127.0.0.1:5312","listener":"public","route":1,"method":"GET",)"
            R"("host":"example.test","path":"/page","pool":"app","backend":"app/c1",)"
            R"("status":200,"reason":"ok","duration_ms":12.500,"connect_ms":0.250,)"
            R"("response_ms":10.125,"bytes_from_client":65,"bytes_to_client":363})");
}

TEST(AccessLine, WhatWasNotThereIsNull) {
  AccessRecord r = httpRecord();
  r.route = -1;
  r.pool = "";
  r.backend = "";
  r.connectMs = -1;
  r.responseMs = -1;
  const auto j = nlohmann::json::parse(line(r));
  for (const char* key : {"route", "pool", "backend", "connect_ms", "response_ms"}) {
    EXPECT_TRUE(j[key].is_null()) << key;
  }
  EXPECT_EQ(j["route"], nullptr);
  r.route = 0;  // the first route is a route
  EXPECT_EQ(nlohmann::json::parse(line(r))["route"], 0);
}

TEST(AccessLine, TimeIsWhenTheRequestBeganInUtcWithMilliseconds) {
  struct Case {
    int64_t nowMs;
    double durationMs;
    std::string_view time;
  };
  const Case cases[] = {
      {1796515141123, 0, "2026-12-05T23:59:01.123Z"},
      {1796515141123, 123.9, "2026-12-05T23:59:00.999Z"},  // 23:59:00.9991: floored
      {1796515141123, 86400000, "2026-12-04T23:59:01.123Z"},
      {0, 0, "1970-01-01T00:00:00.000Z"},
      {1709251199999, 0, "2024-02-29T23:59:59.999Z"},  // a leap day
      {1798761600000, 1, "2026-12-31T23:59:59.999Z"},  // over the new year
  };
  for (const Case& c : cases) {
    AccessRecord r = httpRecord();
    r.durationMs = c.durationMs;
    const auto now = system_clock::time_point{} + milliseconds(c.nowMs);
    EXPECT_EQ(nlohmann::json::parse(line(r, conf::LogFormat::Json, now))["time"], c.time)
        << c.nowMs << " - " << c.durationMs;
    EXPECT_TRUE(line(r, conf::LogFormat::Text, now).starts_with(c.time)) << c.time;
  }
}

TEST(AccessLine, StringsAreEscapedAndInvalidUtf8Replaced) {
  struct Case {
    std::string_view path;
    std::string_view json;  // as written between the quotes
  };
  const Case cases[] = {
      {"/plain", "/plain"},
      {"/a\"b\\c", R"(/a\"b\\c)"},
      {"/\r\n\t\x01\x7f", R"(/\r\n\t\u0001\u007f)"},
      {"/caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80", "/caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80"},
      {"/\xff", "/\xef\xbf\xbd"},                                  // never a UTF-8 byte
      {"/\xc0\xaf", "/\xef\xbf\xbd\xef\xbf\xbd"},                  // overlong: each byte
      {"/\xe0\x80\xaf", "/\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},  // overlong: each byte
      {"/\xe2\x82", "/\xef\xbf\xbd"},                              // cut short: one for the prefix
      {"/\xe2\x82x", "/\xef\xbf\xbdx"},                            // interrupted
      {"/\xed\xa0\x80", "/\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},  // a surrogate
      {"/\xf4\x90\x80\x80", "/\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},  // > 10FFFF
      {std::string_view("/\0/", 3), R"(/\u0000/)"},
  };
  for (const Case& c : cases) {
    AccessRecord r = httpRecord();
    r.path = c.path;
    const std::string l = line(r);
    EXPECT_NE(l.find("\"path\":\"" + std::string(c.json) + "\""), std::string::npos) << l;
    EXPECT_TRUE(nlohmann::json::accept(l)) << l;
  }
}

TEST(AccessLine, TextHasTheSameFieldsInTheSameOrder) {
  EXPECT_EQ(line(httpRecord(), conf::LogFormat::Text),
            "2026-12-05T23:59:01.110Z s7 http 127.0.0.1:5312 listener=public route=1 GET "
            "example.test /page pool=app backend=app/c1 200 reason=ok 12.500ms "
            "connect=0.250ms response=10.125ms in=65 out=363");
}

TEST(AccessLine, TextOfAWebSocketSessionEndsWithFramesMessagesAndTheClose) {
  const TunnelStats t{4, 3, 2, 1, 1006, "backend"};
  AccessRecord r = httpRecord();
  r.kind = "websocket";
  r.status = 101;
  r.reason = "backend vanished";
  r.connectMs = -1;
  r.tunnel = &t;
  EXPECT_EQ(line(r, conf::LogFormat::Text),
            "2026-12-05T23:59:01.110Z s7 websocket 127.0.0.1:5312 listener=public route=1 GET "
            "example.test /page pool=app backend=app/c1 101 reason=\"backend vanished\" "
            "12.500ms connect=- response=10.125ms in=65 out=363 frames=4/3 messages=2/1 "
            "close=1006 by=backend");
}

TEST(AccessLine, TextMarksMissingFieldsAndQuotesOddOnes) {
  AccessRecord r = httpRecord();
  r.route = -1;
  r.method = "";
  r.host = "";
  r.path = "/a b\xff";
  r.pool = "";
  r.backend = "";
  r.status = 0;
  r.reason = "handshake timeout";
  r.connectMs = -1;
  r.responseMs = -1;
  EXPECT_EQ(line(r, conf::LogFormat::Text),
            "2026-12-05T23:59:01.110Z s7 http 127.0.0.1:5312 listener=public route=- - - "
            "\"/a b\xef\xbf\xbd\" pool=- backend=- 0 reason=\"handshake timeout\" 12.500ms "
            "connect=- response=- in=65 out=363");
}

// ---- the writer ---------------------------------------------------------------------------

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
  // Reads until `bytes` arrived or the pipe ends (the write end closed); 5 s at most.
  std::string read(std::size_t bytes = SIZE_MAX) const {
    std::string got;
    char buf[65536];
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (got.size() < bytes && std::chrono::steady_clock::now() < end) {
      pollfd p{r, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::read(r, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
  }
};

std::string numbered(int from, int to, std::size_t width = 0) {
  std::string all;
  for (int i = from; i < to; ++i) {
    std::string l = "line " + std::to_string(i);
    l.resize(std::max(width, l.size()), '.');
    all += l + "\n";
  }
  return all;
}

TEST(AccessLogWriter, WritesEveryLineInOrder) {
  Pipe p;
  AccessLogWriter w(1 << 20);
  w.setTarget(p.w, false);
  const std::string expected = numbered(0, 2000);
  for (int i = 0; i < 2000; ++i) EXPECT_TRUE(w.push("line " + std::to_string(i)));
  EXPECT_EQ(p.read(expected.size()), expected);
  EXPECT_EQ(w.dropped(), 0u);
}

TEST(AccessLogWriter, LinesBeforeASwitchGoToTheOldTargetWhichIsThenClosed) {
  Pipe before, after;
  AccessLogWriter w(1 << 20);
  w.setTarget(before.w, true);  // owned: the writer closes it once its lines are out
  before.w = -1;
  for (int i = 0; i < 500; ++i) w.push("line " + std::to_string(i));
  w.setTarget(after.w, false);
  for (int i = 500; i < 1000; ++i) w.push("line " + std::to_string(i));
  EXPECT_EQ(before.read(), numbered(0, 500));  // read to its end: closed
  const std::string rest = numbered(500, 1000);
  EXPECT_EQ(after.read(rest.size()), rest);
}

TEST(AccessLogWriter, ManyWritersAndTargetSwitchesLoseAndRepeatNoLine) {
  // Four workers push while the target changes seven times (SIGUSR1 under load): each
  // worker's lines, read back over the targets in order, are all there, once, in order.
  constexpr int kWorkers = 4, kLines = 5000, kTargets = 8;
  std::vector<std::unique_ptr<Pipe>> pipes;
  for (int i = 0; i < kTargets; ++i) pipes.push_back(std::make_unique<Pipe>());
  std::vector<std::string> got(kTargets);
  std::vector<std::thread> readers;
  for (int i = 0; i < kTargets; ++i) readers.emplace_back([&, i] { got[i] = pipes[i]->read(); });
  AccessLogWriter w(64 << 20);
  auto switchTo = [&](int i) {
    w.setTarget(pipes[i]->w, true);  // closed by the writer once its lines are out
    pipes[i]->w = -1;
  };
  switchTo(0);
  std::atomic<int> pushed{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < kWorkers; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < kLines; ++i) {
        EXPECT_TRUE(w.push(std::to_string(t) + " " + std::to_string(i)));
        pushed.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }
  for (int k = 1; k < kTargets; ++k) {
    while (pushed.load(std::memory_order_relaxed) < k * kWorkers * kLines / kTargets) {
      std::this_thread::yield();
    }
    switchTo(k);
  }
  for (auto& t : workers) t.join();
  w.stop();
  for (auto& r : readers) r.join();

  std::vector<int> next(kWorkers, 0);
  std::size_t lines = 0;
  for (const std::string& text : got) {
    std::size_t at = 0;
    while (at < text.size()) {
      const std::size_t end = text.find('\n', at);
      ASSERT_NE(end, std::string::npos);
      const std::string line = text.substr(at, end - at);
      const int worker = std::stoi(line.substr(0, line.find(' ')));
      ASSERT_EQ(std::stoi(line.substr(line.find(' ') + 1)), next[worker]++) << line;
      ++lines;
      at = end + 1;
    }
  }
  EXPECT_EQ(lines, static_cast<std::size_t>(kWorkers * kLines));
  EXPECT_EQ(w.dropped(), 0u);
}

TEST(AccessLogWriter, AReaderThatStopsReadingCostsDroppedLinesNeverAWait) {
  Pipe p;
  AccessLogWriter w(64 * 1024);
  w.setTarget(p.w, false);
  // Lines of 1 KiB: the pipe (64 KiB) and the queue (64 KiB) hold about 128 of them.
  std::string accepted;
  int queued = 0;
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) {
    const std::string l = numbered(i, i + 1, 1023);
    if (w.push(std::string_view(l).substr(0, 1023))) {
      accepted += l;
      ++queued;
    }
  }
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, std::chrono::milliseconds(500));
  EXPECT_GE(queued, 64);
  EXPECT_LE(queued, 200);
  EXPECT_EQ(w.dropped(), static_cast<uint64_t>(1000 - queued));
  // Once the reader reads again, what was queued arrives, whole and in order.
  EXPECT_EQ(p.read(accepted.size()), accepted);
  // And the queue takes lines again.
  EXPECT_TRUE(w.push("after"));
  EXPECT_EQ(p.read(6), "after\n");
}

TEST(AccessLogWriter, StopWritesOutWhatIsQueued) {
  Pipe p;
  const std::string expected = numbered(0, 100);
  {
    AccessLogWriter w(1 << 20);
    w.setTarget(p.w, true);
    p.w = -1;
    for (int i = 0; i < 100; ++i) w.push("line " + std::to_string(i));
    w.stop();
    EXPECT_FALSE(w.push("after the stop"));
  }
  EXPECT_EQ(p.read(), expected);
}

TEST(AccessLogWriter, StopGivesUpOnAReaderThatTakesNothing) {
  Pipe p;
  AccessLogWriter w(1 << 20);
  w.setTarget(p.w, false);
  int queued = 0;
  for (int i = 0; i < 200; ++i) {
    queued += w.push(std::string_view(numbered(i, i + 1, 1023)).substr(0, 1023));
  }
  const auto started = std::chrono::steady_clock::now();
  w.stop(milliseconds(300));
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, std::chrono::seconds(2));  // 300 ms after the pipe last took something
  EXPECT_EQ(queued, 200);
  EXPECT_GT(w.dropped(), 0u);  // what the pipe could not take
  EXPECT_LT(w.dropped(), 200u);
}

TEST(AccessLogWriter, LinesLongerThanAPipeWriteDoNotHoldUpTheStop) {
  // A write over PIPE_BUF into a pipe with one free page would wait for the reader: such a
  // line goes in pieces, each after poll(2) said there was room.
  Pipe p;
  AccessLogWriter w(1 << 20);
  w.setTarget(p.w, false);
  const std::string longLine(10000, 'x');
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(w.push(longLine));
  const auto started = std::chrono::steady_clock::now();
  w.stop(milliseconds(300));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  EXPECT_GT(w.dropped(), 40u);  // the pipe holds six and a half of them
  EXPECT_LT(w.dropped(), 50u);
}

TEST(AccessLogWriter, AFailedWriteIsCounted) {
  Pipe p;
  ::close(p.r);  // nobody will ever read: EPIPE (SIGPIPE is ignored below)
  p.r = -1;
  signal(SIGPIPE, SIG_IGN);
  AccessLogWriter w(1 << 20);
  w.setTarget(p.w, false);
  for (int i = 0; i < 10; ++i) w.push("line " + std::to_string(i));
  w.stop();
  EXPECT_EQ(w.dropped(), 10u);
}

TEST(AccessLogWriter, NoTargetDiscardsWithoutCounting) {
  AccessLogWriter w(1 << 20);
  w.setTarget(-1, false);  // access: off
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(w.push("line"));
  w.stop();
  EXPECT_EQ(w.dropped(), 0u);
}

}  // namespace
}  // namespace wsgate::proxy
