// wsload: the project's load generator and echo backend. The command line, the scenarios as
// the main thread runs them (start workers, wait, print), and the JSON lines other scripts read.
//
//   wsload serve --listen HOST:PORT [--threads T]
//   wsload echo  --url ws://HOST:PORT/PATH --connections N [--size BYTES] [--pipeline P]
//                [--rate MSGS_PER_S] [--duration SEC] [--warmup SEC] [--threads T]
//                [--binary|--text]
//   wsload idle  --url ws://HOST:PORT/PATH --connections N [--hold SEC] [--size BYTES]
//   wsload churn --url ws://HOST:PORT/PATH --concurrency C [--duration SEC] [--size BYTES]
//   wsload handshakes --url wss://HOST:PORT --concurrency C [--duration SEC] [--threads T]
//                [--resume]
//   wsload soak  --url ws://HOST:PORT/PATH --connections N --rate MSGS_PER_S [--size BYTES]
//                [--threads T] [--echo-timeout SEC] [--reconnect-delay SEC]
//                [--stall-size BYTES] [--stall-burst N]
//     Echo at a fixed rate until stdin says `stop` (or closes); connections that fail print a
//     JSON event line and reconnect. Stdin commands inject faults: `reset K` (K connections
//     send half a frame, then RST), `stall K SEC` (K connections stop reading for SEC while
//     a burst of stall-burst x stall-size bytes is echoed back at them).
// Every client command takes wss:// URLs too, and --sni NAME (the TLS server name to send;
// by default the URL's host unless it is an IP address).
//
// Exit codes: 0 success, 1 errors (reported in the result's "error"), 2 bad usage.

#include <arpa/inet.h>
#include <event2/thread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/bench/wsload_client.h"
#include "tests/bench/wsload_net.h"
#include "tests/bench/wsload_server.h"
#include "tests/bench/wsload_tls.h"
#include "tests/bench/wsload_worker.h"

namespace wsgate::bench {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitErrors = 1;
constexpr int kExitUsage = 2;
constexpr std::size_t kHandshakesInFlight = 256;  // per process: stays under listen backlogs
constexpr double kIdleEchoTimeout = 10;
constexpr double kChurnEchoTimeout = 5;
// handshakes --resume: runs of full handshakes until one brings a ticket.
constexpr double kPrimeSeconds = 0.2;
constexpr int kPrimeRuns = 10;
constexpr std::size_t kMaxSize = std::size_t{1} << 30;

constexpr std::string_view kUsage =
    "usage:\n"
    "  wsload serve --listen HOST:PORT [--threads T]\n"
    "  wsload echo  --url ws://HOST:PORT/PATH --connections N [--size BYTES] [--pipeline P]\n"
    "               [--rate MSGS_PER_S] [--duration SEC] [--warmup SEC] [--threads T]\n"
    "               [--binary|--text]\n"
    "  wsload idle  --url ws://HOST:PORT/PATH --connections N [--hold SEC] [--size BYTES]\n"
    "  wsload churn --url ws://HOST:PORT/PATH --concurrency C [--duration SEC] [--size BYTES]\n"
    "  wsload handshakes --url wss://HOST:PORT --concurrency C [--duration SEC] [--threads T]\n"
    "               [--resume]\n"
    "  wsload soak  --url ws://HOST:PORT/PATH --connections N --rate MSGS_PER_S [--size BYTES]\n"
    "               [--threads T] [--echo-timeout SEC] [--reconnect-delay SEC]\n"
    "               [--stall-size BYTES] [--stall-burst N]\n"
    "               (stdin: `reset K`, `stall K SEC`, `stop`)\n"
    "  client commands take wss:// URLs and --sni NAME (default: the URL's host name)\n";

// --- command line ------------------------------------------------------------------------

struct Options {
  std::string command;
  std::map<std::string, std::string, std::less<>> values;  // "--name" -> value ("" for flags)

  bool has(std::string_view name) const { return values.find(name) != values.end(); }
  std::string_view get(std::string_view name) const { return values.find(name)->second; }
};

struct CommandSpec {
  std::set<std::string, std::less<>> valued;
  std::set<std::string, std::less<>> flags;
  std::vector<std::string> required;
};

const std::map<std::string, CommandSpec, std::less<>>& commandSpecs() {
  static const std::map<std::string, CommandSpec, std::less<>> specs = {
      {"serve", {{"--listen", "--threads", "--name"}, {}, {"--listen"}}},
      {"soak",
       {{"--url", "--connections", "--size", "--rate", "--threads", "--sni", "--echo-timeout",
         "--reconnect-delay", "--stall-size", "--stall-burst"},
        {"--binary", "--text"},
        {"--url", "--connections", "--rate"}}},
      {"echo",
       {{"--url", "--connections", "--size", "--pipeline", "--rate", "--duration", "--warmup",
         "--threads", "--sni"},
        {"--binary", "--text"},
        {"--url", "--connections"}}},
      {"idle",
       {{"--url", "--connections", "--hold", "--size", "--sni"}, {}, {"--url", "--connections"}}},
      {"churn",
       {{"--url", "--concurrency", "--duration", "--size", "--sni"},
        {},
        {"--url", "--concurrency"}}},
      {"handshakes",
       {{"--url", "--concurrency", "--duration", "--threads", "--sni"},
        {"--resume"},
        {"--url", "--concurrency"}}},
  };
  return specs;
}

struct UsageError {
  std::string message;
};

// Parses "COMMAND --name value --flag --name=value ...": names must belong to the command.
Options parseCommandLine(int argc, char** argv) {
  if (argc < 2) throw UsageError{"missing command"};
  Options options;
  options.command = argv[1];
  const auto spec = commandSpecs().find(options.command);
  if (spec == commandSpecs().end()) throw UsageError{"unknown command " + options.command};
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    std::optional<std::string> value;
    if (const std::size_t eq = arg.find('='); eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg.resize(eq);
    }
    if (spec->second.flags.contains(arg) && !value) {
      options.values[arg] = "";
    } else if (spec->second.valued.contains(arg)) {
      if (!value) {
        if (i + 1 >= argc) throw UsageError{arg + " needs a value"};
        value = argv[++i];
      }
      options.values[arg] = *value;
    } else {
      throw UsageError{"unknown option " + arg + " for " + options.command};
    }
  }
  for (const std::string& name : spec->second.required) {
    if (!options.has(name)) throw UsageError{options.command + " needs " + name};
  }
  if (options.has("--binary") && options.has("--text")) {
    throw UsageError{"--binary and --text exclude each other"};
  }
  return options;
}

uint64_t integerOption(const Options& o, std::string_view name, uint64_t fallback, uint64_t min,
                       uint64_t max) {
  if (!o.has(name)) return fallback;
  const std::string_view text = o.get(name);
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < min || value > max) {
    throw UsageError{std::string(name) + ": expected an integer in [" + std::to_string(min) + ", " +
                     std::to_string(max) + "], got \"" + std::string(text) + "\""};
  }
  return value;
}

double secondsOption(const Options& o, std::string_view name, double fallback, bool allowZero) {
  if (!o.has(name)) return fallback;
  const std::string text(o.get(name));
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(value >= 0) || value > 1e6 || (!allowZero && value == 0)) {
    throw UsageError{std::string(name) + ": expected seconds, got \"" + text + "\""};
  }
  return value;
}

// --- output ------------------------------------------------------------------------------

// One JSON object on one line, fields in the order added.
class JsonLine {
public:
  JsonLine& add(std::string_view key, std::string_view value) {
    field(key);
    text_ += '"';
    for (const char c : value) {
      if (c == '"' || c == '\\') {
        text_ += '\\';
        text_ += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char escaped[8];
        std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
        text_ += escaped;
      } else {
        text_ += c;
      }
    }
    text_ += '"';
    return *this;
  }
  JsonLine& add(std::string_view key, uint64_t value) {
    field(key);
    text_ += std::to_string(value);
    return *this;
  }
  JsonLine& add(std::string_view key, double value, int decimals) {
    field(key);
    char number[64];
    std::snprintf(number, sizeof number, "%.*f", decimals, value);
    text_ += number;
    return *this;
  }
  // Prints and flushes at once: another process times its samples by these lines.
  void print() {
    std::printf("%s}\n", text_.c_str());
    std::fflush(stdout);
  }

private:
  void field(std::string_view key) {
    text_ += text_.empty() ? "{\"" : ",\"";
    text_.append(key);
    text_ += "\":";
  }
  std::string text_;
};

// The count of what a run completed (`countKey`), its rate per second (`rateKey`) and the
// median and p99 latency: the figures every client command reports.
void addThroughput(JsonLine& line, std::string_view countKey, std::string_view rateKey,
                   const Report& report, double seconds) {
  line.add(countKey, report.completed)
      .add(rateKey, seconds > 0 ? static_cast<double>(report.completed) / seconds : 0.0, 1)
      .add("p50_us", report.latency.percentile(0.50))
      .add("p99_us", report.latency.percentile(0.99));
}

void addError(JsonLine& line, const std::string& error) {
  if (!error.empty()) line.add("error", error);
}

// With every TLS figure: what was negotiated, the server's certificate, our OpenSSL.
void addTls(JsonLine& line, const Plan& plan, const Report& report) {
  if (!plan.tls) return;
  const TlsSummary& s = report.tls;
  if (!s.protocol.empty()) {  // else no handshake completed
    line.add("tls", s.protocol + " " + s.cipher + " " + s.group).add("cert", s.cert);
  }
  line.add("openssl", plan.tls->version());
}

// --- scenarios ---------------------------------------------------------------------------

void sleepUntil(uint64_t deadlineNs) {
  for (uint64_t now = nowNs(); now < deadlineNs; now = nowNs()) {
    std::this_thread::sleep_for(std::chrono::nanoseconds(deadlineNs - now));
  }
}

uint64_t toNs(double seconds) { return static_cast<uint64_t>(seconds * 1e9); }

// Workers on their own threads, sharing `count` connections; joined on destruction.
class Crew {
public:
  Crew(const Plan& plan, std::size_t threads, std::size_t count) : rendezvous_(threads) {
    std::size_t firstId = 0;
    for (std::size_t i = 0; i < threads; ++i) {
      const std::size_t share = count / threads + (i < count % threads ? 1 : 0);
      workers_.push_back(std::make_unique<ClientWorker>(plan, i, firstId, share, rendezvous_));
      firstId += share;
    }
    for (auto& worker : workers_) threads_.emplace_back([w = worker.get()] { w->run(); });
  }
  ~Crew() {
    for (auto& thread : threads_) thread.join();
  }
  Crew(const Crew&) = delete;
  Crew& operator=(const Crew&) = delete;

  void post(const Command& command) {
    for (auto& worker : workers_) worker->post(command);
  }
  Report waitAll(Phase phase) { return rendezvous_.waitAll(phase); }

private:
  Rendezvous rendezvous_;
  std::vector<std::unique_ptr<ClientWorker>> workers_;
  std::vector<std::thread> threads_;
};

int runEcho(const Options& o, Plan plan) {
  const uint64_t connections = integerOption(o, "--connections", 0, 1, 1'000'000);
  plan.pipeline = static_cast<unsigned>(integerOption(o, "--pipeline", 1, 1, 4096));
  const uint64_t rate = integerOption(o, "--rate", 0, 0, 100'000'000);
  const double duration = secondsOption(o, "--duration", 5, false);
  const double warmup = secondsOption(o, "--warmup", 1, true);
  const auto threads = static_cast<std::size_t>(
      std::min<uint64_t>(integerOption(o, "--threads", 1, 1, 256), connections));
  plan.opcode = o.has("--text") ? ws::Opcode::Text : ws::Opcode::Binary;
  plan.handshakeLimit = std::max<std::size_t>(1, kHandshakesInFlight / threads);
  plan.rate = static_cast<double>(rate) / static_cast<double>(threads);

  Crew crew(plan, threads, connections);
  const Report setup = crew.waitAll(Phase::SetupDone);
  Report result;
  if (setup.failed > 0) {
    crew.post({CommandKind::Stop});
    result = crew.waitAll(Phase::Measured);
  } else {
    const uint64_t windowStart = nowNs() + toNs(warmup);
    const uint64_t windowEnd = windowStart + toNs(duration);
    crew.post({CommandKind::Go, windowStart, windowEnd});
    sleepUntil(windowStart);
    JsonLine().add("event", "start").print();
    sleepUntil(windowEnd);
    crew.post({CommandKind::Stop});
    result = crew.waitAll(Phase::Measured);
  }
  const double seconds = setup.failed > 0 ? 0 : duration;
  JsonLine line;
  line.add("mode", "echo")
      .add("connections", connections)
      .add("size", static_cast<uint64_t>(plan.size))
      .add("pipeline", static_cast<uint64_t>(plan.pipeline))
      .add("rate", rate)
      .add("seconds", seconds, 3);
  addThroughput(line, "messages", "msgs_per_s", result, seconds);
  line.add("p999_us", result.latency.percentile(0.999)).add("errors", result.errors);
  addError(line, result.firstError);
  Report summary = result;
  if (summary.tls.protocol.empty()) summary.tls = setup.tls;  // echo handshakes in setup
  addTls(line, plan, summary);
  line.print();
  return result.errors == 0 && result.open == connections ? kExitOk : kExitErrors;
}

// Returns after a line (or end of file) on stdin.
void waitForStdin() {
  char c = 0;
  while (true) {
    const ssize_t n = ::read(STDIN_FILENO, &c, 1);
    if (n <= 0 || c == '\n') return;
  }
}

int runIdle(const Options& o, Plan plan) {
  const uint64_t connections = integerOption(o, "--connections", 0, 1, 1'000'000);
  const double hold = secondsOption(o, "--hold", 0, true);
  plan.echoTimeout = kIdleEchoTimeout;

  const uint64_t startNs = nowNs();
  Crew crew(plan, 1, connections);
  const Report setup = crew.waitAll(Phase::SetupDone);
  const double setupSeconds = static_cast<double>(nowNs() - startNs) / 1e9;
  JsonLine()
      .add("event", "ready")
      .add("open", static_cast<uint64_t>(setup.open))
      .add("failed", static_cast<uint64_t>(setup.failed))
      .add("setup_s", setupSeconds, 3)
      .print();
  if (hold > 0) {
    sleepUntil(nowNs() + toNs(hold));
  } else {
    waitForStdin();
  }
  crew.post({CommandKind::Probe});
  const Report result = crew.waitAll(Phase::Measured);
  JsonLine line;
  line.add("mode", "idle")
      .add("connections", connections)
      .add("open", static_cast<uint64_t>(setup.open))
      .add("echoed", result.completed)
      .add("errors", result.errors)
      .add("setup_s", setupSeconds, 3);
  addError(line, result.firstError);
  addTls(line, plan, setup);
  line.print();
  const bool ok = setup.open == connections && result.completed == connections;
  return ok && result.errors == 0 ? kExitOk : kExitErrors;
}

// Soak: the connections open, echo at the rate; the driver injects faults through stdin and
// ends the run with `stop`. Every failure was printed as an event line when it happened.
int runSoak(const Options& o, Plan plan) {
  const uint64_t connections = integerOption(o, "--connections", 0, 1, 1'000'000);
  const uint64_t rate = integerOption(o, "--rate", 0, 1, 100'000'000);
  const auto threads = static_cast<std::size_t>(
      std::min<uint64_t>(integerOption(o, "--threads", 1, 1, 256), connections));
  plan.opcode = o.has("--text") ? ws::Opcode::Text : ws::Opcode::Binary;
  plan.handshakeLimit = std::max<std::size_t>(1, kHandshakesInFlight / threads);
  plan.rate = static_cast<double>(rate) / static_cast<double>(threads);
  plan.echoTimeout = secondsOption(o, "--echo-timeout", 15, false);
  plan.handshakeTimeout = plan.echoTimeout;
  plan.closeTimeout = plan.echoTimeout;
  plan.reconnectDelay = secondsOption(o, "--reconnect-delay", 0.5, true);
  plan.stallSize = static_cast<std::size_t>(integerOption(o, "--stall-size", 65536, 16, 1 << 24));
  plan.stallBurst = static_cast<unsigned>(integerOption(o, "--stall-burst", 64, 1, 4096));

  const uint64_t startNs = nowNs();
  Crew crew(plan, threads, connections);
  const Report setup = crew.waitAll(Phase::SetupDone);
  JsonLine()
      .add("event", "ready")
      .add("open", static_cast<uint64_t>(setup.open))
      .add("failed", static_cast<uint64_t>(setup.failed))
      .add("setup_s", static_cast<double>(nowNs() - startNs) / 1e9, 3)
      .print();
  const uint64_t goNs = nowNs();
  if (setup.failed == 0) {
    crew.post({CommandKind::Go, goNs, ~uint64_t{0}});
    JsonLine().add("event", "start").add("t", static_cast<double>(goNs) / 1e9, 6).print();
    // Commands, one a line, until `stop` or the end of stdin (the driver went away).
    std::string line;
    for (char c = 0;;) {
      const ssize_t n = ::read(STDIN_FILENO, &c, 1);
      if (n <= 0) break;
      if (c != '\n') {
        line += c;
        continue;
      }
      char word[16] = {};
      std::size_t count = 0;
      double seconds = 0;
      const int fields = std::sscanf(line.c_str(), "%15s %zu %lf", word, &count, &seconds);
      line.clear();
      if (fields >= 1 && std::string_view(word) == "stop") break;
      const bool reset = fields == 2 && std::string_view(word) == "reset";
      const bool stall = fields == 3 && std::string_view(word) == "stall" && seconds > 0;
      if (!reset && !stall) {
        std::fprintf(stderr, "wsload: soak: ignored command line\n");
        continue;
      }
      // Spread over the workers: worker i takes its share of `count`.
      Command command{reset ? CommandKind::Reset : CommandKind::Stall};
      command.count = (count + threads - 1) / threads;
      command.seconds = seconds;
      crew.post(command);
    }
  }
  const double seconds = static_cast<double>(nowNs() - goNs) / 1e9;
  crew.post({CommandKind::Stop});
  const Report result = crew.waitAll(Phase::Measured);
  JsonLine line;
  line.add("mode", "soak")
      .add("connections", connections)
      .add("size", static_cast<uint64_t>(plan.size))
      .add("rate", rate)
      .add("seconds", seconds, 3);
  addThroughput(line, "messages", "msgs_per_s", result, seconds);
  line.add("p999_us", result.latency.percentile(0.999))
      .add("failures", result.errors)
      .add("reopened", result.reopened)
      .add("resets", result.resets)
      .add("stalls", result.stalls)
      .add("stalls_done", result.stallsDone)
      .add("stall_echoes", result.stallEchoes)
      .add("open_at_start", static_cast<uint64_t>(setup.open))
      .add("failed_at_start", static_cast<uint64_t>(setup.failed));
  addError(line, result.firstError);
  line.print();
  return setup.failed == 0 ? kExitOk : kExitErrors;
}

// Runs `plan` (churn or handshakes) in `concurrency` slots over `threads` for `seconds`.
Report runSessions(const Plan& plan, std::size_t threads, std::size_t concurrency, double seconds,
                   bool printStart) {
  Crew crew(plan, threads, concurrency);
  crew.waitAll(Phase::SetupDone);
  const uint64_t start = nowNs();
  if (printStart) JsonLine().add("event", "start").print();
  crew.post({CommandKind::Go, start, start + toNs(seconds)});
  sleepUntil(start + toNs(seconds));
  crew.post({CommandKind::Stop});
  return crew.waitAll(Phase::Measured);
}

int runChurn(const Options& o, Plan plan) {
  const uint64_t concurrency = integerOption(o, "--concurrency", 0, 1, 100'000);
  const double duration = secondsOption(o, "--duration", 5, false);
  plan.echoTimeout = kChurnEchoTimeout;
  plan.handshakeTimeout = kChurnEchoTimeout;

  const Report result = runSessions(plan, 1, concurrency, duration, /*printStart=*/false);
  const double seconds = static_cast<double>(result.elapsedNs) / 1e9;
  JsonLine line;
  line.add("mode", "churn").add("concurrency", concurrency).add("seconds", seconds, 3);
  addThroughput(line, "sessions", "sessions_per_s", result, seconds);
  line.add("errors", result.errors);
  addError(line, result.firstError);
  addTls(line, plan, result);
  line.print();
  return result.errors == 0 ? kExitOk : kExitErrors;
}

// TLS handshakes as fast as `concurrency` slots make them: connect, handshake, close_notify,
// the server's close. With --resume every one offers the latest ticket, which a short run of
// full handshakes first obtains (before the "start" line, outside the measurement).
int runHandshakes(const Options& o, Plan plan) {
  const uint64_t concurrency = integerOption(o, "--concurrency", 0, 1, 100'000);
  const double duration = secondsOption(o, "--duration", 5, false);
  const auto threads = static_cast<std::size_t>(
      std::min<uint64_t>(integerOption(o, "--threads", 1, 1, 256), concurrency));
  plan.handshakeTimeout = kChurnEchoTimeout;
  const bool resume = o.has("--resume");

  if (resume) {
    Report primed;
    for (int i = 0; i < kPrimeRuns && !plan.tls->hasSession(); ++i) {
      primed = runSessions(plan, 1, 1, kPrimeSeconds, /*printStart=*/false);
    }
    if (!plan.tls->hasSession()) {
      const std::string why = primed.firstError.empty()
                                  ? "no session ticket from the server in 2 s of handshakes"
                                  : "no session ticket: " + primed.firstError;
      JsonLine line;
      line.add("mode", "handshakes").add("errors", uint64_t{1}).add("error", why);
      line.print();
      return kExitErrors;
    }
  }
  const Report result = runSessions(plan, threads, concurrency, duration, /*printStart=*/true);
  const double seconds = static_cast<double>(result.elapsedNs) / 1e9;
  JsonLine line;
  line.add("mode", "handshakes")
      .add("concurrency", concurrency)
      .add("resume", resume ? "yes" : "no")
      .add("seconds", seconds, 3)
      .add("resumed", result.resumed)
      .add("tickets", result.tickets);
  addThroughput(line, "handshakes", "handshakes_per_s", result, seconds);
  line.add("errors", result.errors);
  addError(line, result.firstError);
  addTls(line, plan, result);
  line.print();
  return result.errors == 0 ? kExitOk : kExitErrors;
}

int runServeCommand(const Options& o) {
  ServeOptions serve;
  std::string_view why;
  const auto listen = conf::parseHostPort(o.get("--listen"), /*allowZeroPort=*/true, why);
  if (!listen) throw UsageError{"--listen: " + std::string(why)};
  serve.listen = *listen;
  serve.threads = static_cast<unsigned>(integerOption(o, "--threads", 1, 1, 256));
  if (o.has("--name")) serve.name = std::string(o.get("--name")).substr(0, 64);
  return runServe(serve);
}

bool isIpAddress(const std::string& host) {
  in6_addr address{};
  return inet_pton(AF_INET, host.c_str(), &address) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &address) == 1;
}

// What every client scenario shares: the target (and its TLS) and the message size.
int runClientCommand(const Options& o) {
  Url url;
  if (std::string err = parseUrl(o.get("--url"), url); !err.empty()) {
    throw UsageError{"--url: " + err};
  }
  const bool handshakes = o.command == "handshakes";
  if (handshakes && !url.tls) throw UsageError{"handshakes needs a wss:// URL"};
  if (o.has("--sni") && !url.tls) throw UsageError{"--sni needs a wss:// URL"};
  Plan plan;
  if (url.tls) {
    TlsClientOptions tls;
    // RFC 6066 3: SNI carries a host name, never an address.
    const bool ip = isIpAddress(url.endpoint.host);
    tls.sni = o.has("--sni") ? std::string(o.get("--sni")) : ip ? "" : url.endpoint.host;
    tls.resume = o.has("--resume");
    std::string err;
    plan.tls = TlsClient::create(tls, err);
    if (!plan.tls) {
      std::fprintf(stderr, "wsload: %s\n", err.c_str());
      return kExitErrors;
    }
  }
  plan.size = static_cast<std::size_t>(integerOption(o, "--size", 64, 0, kMaxSize));
  plan.hostHeader = url.hostHeader;
  plan.path = url.path;
  std::string err;
  if (auto address = net::resolve(url.endpoint, err)) plan.address = *address;
  if (!err.empty()) {
    std::fprintf(stderr, "wsload: %s\n", err.c_str());
    JsonLine().add("mode", o.command).add("errors", uint64_t{1}).add("error", err).print();
    return kExitErrors;
  }
  if (o.command == "echo") {
    plan.mode = Mode::Echo;
    return runEcho(o, plan);
  }
  if (o.command == "soak") {
    plan.mode = Mode::Soak;
    return runSoak(o, plan);
  }
  if (o.command == "idle") {
    plan.mode = Mode::Idle;
    return runIdle(o, plan);
  }
  if (handshakes) {
    plan.mode = Mode::Handshakes;
    return runHandshakes(o, plan);
  }
  plan.mode = Mode::Churn;
  return runChurn(o, plan);
}

}  // namespace
}  // namespace wsgate::bench

int main(int argc, char** argv) {
  using namespace wsgate::bench;
  signal(SIGPIPE, SIG_IGN);
  raiseFileLimit();
  evthread_use_pthreads();  // the main thread posts commands into the workers' loops
  try {
    const Options options = parseCommandLine(argc, argv);
    return options.command == "serve" ? runServeCommand(options) : runClientCommand(options);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "wsload: %s\n%.*s", e.message.c_str(), static_cast<int>(kUsage.size()),
                 kUsage.data());
    return kExitUsage;
  }
}
