// ClientWorker: the scenarios as one event loop sees them, and the Rendezvous with main.

#include "tests/bench/wsload_worker.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <utility>

namespace wsgate::bench {

namespace {

constexpr std::size_t kScratchBytes = 256 * 1024;
constexpr int kPrintedErrors = 5;             // per process, to stderr
constexpr uint64_t kStallNs = 5'000'000'000;  // echo: no echo for this long is an error
constexpr double kChurnRetryDelay = 0.01;     // after a failed session: no busy loop
constexpr double kChurnGrace = 2.0;           // churn: in-flight sessions after the end

// Shared by every worker; relaxed: it only bounds how many error lines get printed.
std::atomic<int> printedErrors{0};

std::array<uint8_t, 4> randomMask(std::mt19937_64& rng) {
  const uint64_t r = rng();
  return {static_cast<uint8_t>(r), static_cast<uint8_t>(r >> 8), static_cast<uint8_t>(r >> 16),
          static_cast<uint8_t>(r >> 24)};
}

uint64_t seedFor(std::size_t index) {
  std::random_device device;
  return (uint64_t{device()} << 32) ^ device() ^ index;
}

}  // namespace

void Report::merge(const Report& other) {
  open += other.open;
  failed += other.failed;
  completed += other.completed;
  errors += other.errors;
  if (firstError.empty()) firstError = other.firstError;
  resumed += other.resumed;
  reopened += other.reopened;
  resets += other.resets;
  stalls += other.stalls;
  stallsDone += other.stallsDone;
  stallEchoes += other.stallEchoes;
  tickets += other.tickets;
  if (tls.protocol.empty()) tls = other.tls;
  latency.merge(other.latency);
  elapsedNs = std::max(elapsedNs, other.elapsedNs);
}

Rendezvous::Rendezvous(std::size_t workers) {
  for (auto& reports : reports_) reports.resize(workers);
}

void Rendezvous::arrive(Phase phase, std::size_t worker, const Report& report) {
  const auto p = static_cast<std::size_t>(phase);
  {
    std::lock_guard lock(mutex_);
    reports_[p][worker] = report;
    ++count_[p];
  }
  arrived_.notify_all();
}

Report Rendezvous::waitAll(Phase phase) {
  const auto p = static_cast<std::size_t>(phase);
  std::unique_lock lock(mutex_);
  arrived_.wait(lock, [&] { return count_[p] == reports_[p].size(); });
  Report sum;
  for (const Report& r : reports_[p]) sum.merge(r);
  return sum;
}

ClientWorker::ClientWorker(const Plan& plan, std::size_t index, std::size_t firstId,
                           std::size_t connections, Rendezvous& rendezvous)
    : plan_(plan),
      index_(index),
      rendezvous_(rendezvous),
      base_(event_base_new()),
      rng_(seedFor(index)),
      message_(plan.opcode, plan.size, randomMask(rng_)),
      stallMessage_(plan.opcode, plan.mode == Mode::Soak ? plan.stallSize : 0, message_.mask),
      scratch_(kScratchBytes) {
  command_.reset(event_new(base_.get(), -1, 0, &onCommandCb, this));
  deadline_.reset(evtimer_new(base_.get(), &onDeadlineCb, this));
  tick_.reset(event_new(base_.get(), -1, EV_PERSIST, &onTickCb, this));
  for (std::size_t i = 0; i < connections; ++i) {
    conns_.push_back(std::make_unique<ClientConn>(*this, firstId + i));
  }
}

ClientWorker::~ClientWorker() = default;

std::array<uint8_t, 16> ClientWorker::randomBytes() {
  std::array<uint8_t, 16> out{};
  for (std::size_t i = 0; i < out.size(); i += 8) {
    const uint64_t r = rng_();
    for (std::size_t k = 0; k < 8; ++k) out[i + k] = static_cast<uint8_t>(r >> (8 * k));
  }
  return out;
}

void ClientWorker::run() {
  if (plan_.repeatsSessions() || conns_.empty()) {
    settleSetup();
  } else {
    openMore(nowNs());
  }
  event_base_loop(base_.get(), EVLOOP_NO_EXIT_ON_EMPTY);
}

void ClientWorker::post(const Command& command) {
  {
    std::lock_guard lock(commandsMutex_);
    commands_.push_back(command);
  }
  event_active(command_.get(), EV_READ, 0);  // thread-safe: evthread_use_pthreads() is on
}

void ClientWorker::onCommandCb(evutil_socket_t, short, void* arg) noexcept {
  static_cast<ClientWorker*>(arg)->onCommands();
}

void ClientWorker::onDeadlineCb(evutil_socket_t, short, void* arg) noexcept {
  static_cast<ClientWorker*>(arg)->onDeadline();
}

void ClientWorker::onCommands() {
  std::vector<Command> commands;
  {
    std::lock_guard lock(commandsMutex_);
    commands.swap(commands_);
  }
  for (const Command& command : commands) {
    const uint64_t now = nowNs();
    switch (command.kind) {
      case CommandKind::Go:
        go(command, now);
        break;
      case CommandKind::Probe:
        probe(now);
        break;
      case CommandKind::Stop:
        stop(now);
        break;
      case CommandKind::Reset:
      case CommandKind::Stall:
        injectFaults(command, now);
        break;
    }
  }
}

void ClientWorker::onTickCb(evutil_socket_t, short, void* arg) noexcept {
  static_cast<ClientWorker*>(arg)->onTick();
}

void ClientWorker::onTick() {
  if (stage_ != Stage::Running) return;
  const uint64_t now = nowNs();
  const auto due = static_cast<uint64_t>(static_cast<double>(now - goNs_) * plan_.rate / 1e9);
  // Connections with a free pipeline slot take the due messages in turn; when none is free
  // the proxy is behind, and the rest waits for the next tick (the rate is then not met,
  // which msgs_per_s shows).
  std::size_t tried = 0;
  while (rateSent_ < due && tried < conns_.size()) {
    ClientConn& conn = *conns_[rateNext_];
    rateNext_ = (rateNext_ + 1) % conns_.size();
    if (conn.state() == ClientConn::State::Open && conn.inFlight() < plan_.pipeline &&
        !conn.stalled()) {
      conn.send(1, now);
      ++rateSent_;
      tried = 0;
    } else {
      ++tried;
    }
  }
}

void ClientWorker::onDeadline() {
  if (stage_ == Stage::Finishing) finishChurn(nowNs());
  if (stage_ == Stage::Closing) event_base_loopexit(base_.get(), nullptr);
}

// --- setup: echo and idle open every connection first, a bounded number at a time ----------

void ClientWorker::openMore(uint64_t now) {
  if (opening_) return;  // a start() that failed at once re-enters through onConnFailed
  opening_ = true;
  while (stage_ == Stage::Setup && handshaking_ < plan_.handshakeLimit &&
         nextToOpen_ < conns_.size()) {
    ++handshaking_;
    conns_[nextToOpen_++]->start(now);
  }
  opening_ = false;
  if (stage_ == Stage::Setup && report_.open + report_.failed == conns_.size()) settleSetup();
}

void ClientWorker::settleSetup() {
  stage_ = Stage::Ready;
  rendezvous_.arrive(Phase::SetupDone, index_, report_);
}

void ClientWorker::onConnOpen(ClientConn& conn, uint64_t now) {
  if (plan_.mode == Mode::Churn) {
    conn.send(1, now);
    return;
  }
  if (plan_.mode == Mode::Soak && stage_ != Stage::Setup) {  // a reconnect
    ++report_.reopened;
    return;
  }
  ++report_.open;
  --handshaking_;
  openMore(now);
}

void ClientWorker::onTransportReady(const Transport& transport) {
  if (report_.tls.protocol.empty()) report_.tls = transport.summary();  // once: strings
  const bool measured = stage_ == Stage::Running || stage_ == Stage::Finishing;
  if (measured && transport.resumed()) ++report_.resumed;
}

// --- traffic ---------------------------------------------------------------------------

void ClientWorker::go(const Command& command, uint64_t now) {
  if (stage_ != Stage::Ready) return;
  stage_ = Stage::Running;
  goNs_ = now;
  if (plan_.mode == Mode::Echo || plan_.mode == Mode::Soak) {
    windowStartNs_ = command.windowStartNs;
    windowEndNs_ = command.windowEndNs;
    if (plan_.rate > 0) {
      const timeval every{0, 1000};  // 1 ms
      event_add(tick_.get(), &every);
    } else {
      for (auto& conn : conns_) conn->send(plan_.pipeline, now);
    }
  } else if (plan_.repeatsSessions()) {
    active_ = conns_.size();
    for (auto& conn : conns_) conn->start(now);
  }
}

void ClientWorker::probe(uint64_t now) {
  if (stage_ != Stage::Ready) return;
  stage_ = Stage::Running;
  probeLeft_ = 0;
  for (auto& conn : conns_) probeLeft_ += conn->state() == ClientConn::State::Open ? 1 : 0;
  if (probeLeft_ == 0) {
    rendezvous_.arrive(Phase::Measured, index_, report_);
    closeAll();
    return;
  }
  for (auto& conn : conns_) conn->send(1, now);  // send() skips connections not open
}

ClientConn::Next ClientWorker::onEcho(ClientConn& conn, uint64_t sentNs, uint64_t now) {
  (void)conn;
  switch (plan_.mode) {
    case Mode::Soak:
      ++report_.completed;
      report_.latency.record((now - sentNs) / 1000);
      return ClientConn::Next::Nothing;
    case Mode::Echo:
      if (now >= windowStartNs_ && now < windowEndNs_) {
        report_.latency.record((now - sentNs) / 1000);
        ++report_.completed;
      }
      return stage_ == Stage::Running && plan_.rate == 0 ? ClientConn::Next::SendAnother
                                                         : ClientConn::Next::Nothing;
    case Mode::Idle:
      ++report_.completed;
      probeAnswered();
      return ClientConn::Next::Nothing;
    case Mode::Churn:
      return ClientConn::Next::Close;
    case Mode::Handshakes:  // no WebSocket: never reached
      break;
  }
  return ClientConn::Next::Nothing;
}

ClientConn::Next ClientWorker::onMismatch(ClientConn& conn, std::string_view why) {
  if (plan_.repeatsSessions()) return ClientConn::Next::Fail;  // counted by onConnFailed
  noteError(conn, why);
  if (plan_.mode == Mode::Idle) {
    probeAnswered();
    return ClientConn::Next::Nothing;
  }
  // Echo: the sequence advanced with the bad echo, so the pipeline stays full and in step.
  return stage_ == Stage::Running && plan_.rate == 0 ? ClientConn::Next::SendAnother
                                                     : ClientConn::Next::Nothing;
}

void ClientWorker::probeAnswered() {
  if (stage_ != Stage::Running || probeLeft_ == 0 || --probeLeft_ > 0) return;
  rendezvous_.arrive(Phase::Measured, index_, report_);
  closeAll();
}

void ClientWorker::onConnFailed(ClientConn& conn, std::string_view why, uint64_t now) {
  noteError(conn, why);
  if (plan_.mode == Mode::Soak) {
    printEvent("fail", conn, now, why);
    if (stage_ == Stage::Running || (stage_ == Stage::Ready && conn.opened())) {
      conn.startAfter(plan_.reconnectDelay);
      return;
    }
  }
  if (plan_.repeatsSessions()) {
    if (stage_ == Stage::Running) {
      conn.startAfter(kChurnRetryDelay);
    } else if (stage_ == Stage::Finishing && --active_ == 0) {
      finishChurn(now);
    }
    return;
  }
  if (stage_ == Stage::Setup && !conn.opened()) {
    ++report_.failed;
    --handshaking_;
    openMore(now);
  } else if (stage_ == Stage::Running && plan_.mode == Mode::Idle && conn.inFlight() > 0) {
    probeAnswered();
  } else if (stage_ == Stage::Closing) {
    closedOne();
  }
}

void ClientWorker::onConnClosed(ClientConn& conn, uint64_t now) {
  if (!plan_.repeatsSessions()) {
    if (stage_ == Stage::Closing) closedOne();
    return;
  }
  ++report_.completed;
  if (conn.ticketReceived()) ++report_.tickets;
  report_.latency.record((now - conn.startedNs()) / 1000);
  if (stage_ == Stage::Running) {
    conn.startAfter(0);  // from the timer: this callback may be inside the socket's own
  } else if (stage_ == Stage::Finishing && --active_ == 0) {
    finishChurn(now);
  }
}

// --- the end -----------------------------------------------------------------------------

void ClientWorker::stop(uint64_t now) {
  if (plan_.repeatsSessions()) {
    if (stage_ != Stage::Running) {
      finishChurn(now);
      return;
    }
    stage_ = Stage::Finishing;
    for (auto& conn : conns_) {
      if (conn->state() == ClientConn::State::Scheduled) {  // between sessions: none to finish
        conn->abort();
        --active_;
      }
    }
    if (active_ == 0) {
      finishChurn(now);
    } else {
      armDeadline(kChurnGrace);
    }
    return;
  }
  if (plan_.mode == Mode::Soak) {  // between sessions: nothing to close
    for (auto& conn : conns_) {
      if (conn->state() == ClientConn::State::Scheduled) conn->abort();
    }
  }
  for (auto& conn : conns_) {
    if (plan_.mode == Mode::Echo && conn->state() == ClientConn::State::Open &&
        conn->inFlight() > 0 && now - conn->oldestSentNs() > kStallNs) {
      noteError(*conn, "echo timeout: no echo for 5 s");
    }
  }
  event_del(tick_.get());
  rendezvous_.arrive(Phase::Measured, index_, report_);
  closeAll();
}

void ClientWorker::finishChurn(uint64_t now) {
  if (stage_ == Stage::Finishing) {
    for (auto& conn : conns_) {
      if (conn->state() != ClientConn::State::Done && conn->state() != ClientConn::State::Failed &&
          conn->state() != ClientConn::State::Idle) {
        noteError(*conn, "session unfinished 2 s after the end");
        conn->abort();
      }
    }
  }
  report_.elapsedNs = goNs_ == 0 ? 0 : now - goNs_;
  stage_ = Stage::Closing;
  rendezvous_.arrive(Phase::Measured, index_, report_);
  event_base_loopexit(base_.get(), nullptr);
}

void ClientWorker::closeAll() {
  stage_ = Stage::Closing;
  closing_ = 0;
  for (auto& conn : conns_) closing_ += conn->state() == ClientConn::State::Open ? 1 : 0;
  for (auto& conn : conns_) conn->close();  // Close(1000) if open, else closes the socket
  if (closing_ == 0) {
    event_base_loopexit(base_.get(), nullptr);
  } else {
    armDeadline(plan_.closeTimeout);
  }
}

void ClientWorker::closedOne() {
  if (closing_ > 0 && --closing_ == 0) event_base_loopexit(base_.get(), nullptr);
}

void ClientWorker::noteError(const ClientConn& conn, std::string_view why) {
  ++report_.errors;
  if (report_.firstError.empty()) report_.firstError = why;
  if (printedErrors.fetch_add(1, std::memory_order_relaxed) < kPrintedErrors) {
    std::fprintf(stderr, "wsload: conn %zu: %.*s\n", conn.id(), static_cast<int>(why.size()),
                 why.data());
  }
}

void ClientWorker::armDeadline(double seconds) {
  const auto us = static_cast<int64_t>(seconds * 1e6);
  const timeval tv{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
  evtimer_add(deadline_.get(), &tv);
}

}  // namespace wsgate::bench

namespace wsgate::bench {

// --- soak ------------------------------------------------------------------------------------

void ClientWorker::onStallDone(ClientConn& conn, uint64_t now) {
  ++report_.stallsDone;
  printEvent("stall_done", conn, now);
}

// Picks `count` quiet connections at random (a partial shuffle of the quiet ones).
void ClientWorker::injectFaults(const Command& command, uint64_t now) {
  if (stage_ != Stage::Running) return;
  std::vector<ClientConn*> quiet;
  for (auto& conn : conns_) {
    if (conn->quiet()) quiet.push_back(conn.get());
  }
  const std::size_t count = std::min(command.count, quiet.size());
  for (std::size_t i = 0; i < count; ++i) {
    std::swap(quiet[i], quiet[i + rng_() % (quiet.size() - i)]);
    ClientConn& conn = *quiet[i];
    if (command.kind == CommandKind::Reset) {
      ++report_.resets;
      printEvent("reset", conn, now);
      conn.injectReset();
      conn.startAfter(plan_.reconnectDelay);
    } else {
      ++report_.stalls;
      printEvent("stall", conn, now);
      conn.stall(command.seconds, now);
    }
  }
}

// One JSON line per event, written with one printf (stdio locks the stream: lines from
// several workers never interleave). t: CLOCK_MONOTONIC seconds, the driver's clock too.
void ClientWorker::printEvent(std::string_view event, const ClientConn& conn, uint64_t now,
                              std::string_view why) {
  std::string reason;
  for (const char c : why) {
    if (c == '"' || c == '\\') reason += '\\';
    reason += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
  }
  std::printf(
      "{\"event\":\"%.*s\",\"t\":%.6f,\"conn\":%zu,\"port\":%d,\"backend\":\"%s\","
      "\"opened\":%s,\"why\":\"%s\"}\n",
      static_cast<int>(event.size()), event.data(), static_cast<double>(now) / 1e9, conn.id(),
      conn.localPort(), conn.backend().c_str(), conn.opened() ? "true" : "false", reason.c_str());
  std::fflush(stdout);
}

}  // namespace wsgate::bench
