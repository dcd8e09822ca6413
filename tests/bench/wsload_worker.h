#pragma once
// ClientWorker: one thread's event loop running a share of a scenario's connections (echo,
// idle, churn or handshakes), driven by commands from the main thread, and the Rendezvous where
// workers hand their reports back.

#include <event2/event.h>
#include <sys/uio.h>

#include <array>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/net/handles.h"
#include "tests/bench/wsload_client.h"
#include "tests/bench/wsload_histogram.h"

namespace wsgate::bench {

// What a worker counted. Summed over workers by the main thread.
struct Report {
  std::size_t open = 0;    // connections that completed the handshake
  std::size_t failed = 0;  // connections that did not
  // echo: round trips completed in the window; idle: probes echoed; churn: sessions;
  // handshakes: TLS handshakes closed cleanly.
  uint64_t completed = 0;
  uint64_t errors = 0;
  std::string firstError;
  Histogram latency;       // microseconds: echo round trips, churn and handshake sessions
  uint64_t elapsedNs = 0;  // churn, handshakes: from go to the end of the last session
  uint64_t resumed = 0;    // handshakes started after go that resumed a TLS session
  uint64_t tickets = 0;    // handshakes: sessions in which the server sent a session ticket
  TlsSummary tls;          // what the first TLS handshake negotiated (wss:// only)
  // Soak.
  uint64_t reopened = 0;     // sessions opened after the first (reconnects)
  uint64_t resets = 0;       // injected resets
  uint64_t stalls = 0;       // stalls started
  uint64_t stallsDone = 0;   // stalls whose whole burst came back
  uint64_t stallEchoes = 0;  // burst messages echoed

  void merge(const Report& other);
};

// Points where the main thread waits for every worker.
enum class Phase : uint8_t { SetupDone, Measured };
inline constexpr std::size_t kPhases = 2;

class Rendezvous {
public:
  explicit Rendezvous(std::size_t workers);
  void arrive(Phase phase, std::size_t worker, const Report& report);
  Report waitAll(Phase phase);  // the merged reports, once every worker arrived

private:
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::array<std::size_t, kPhases> count_{};
  std::array<std::vector<Report>, kPhases> reports_;
};

// Commands from the main thread. Go starts traffic (echo: count completions in
// [windowStart, windowEnd)); Probe sends one message per idle connection; Stop ends the run.
// Soak: Reset and Stall pick `count` quiet connections at random.
enum class CommandKind : uint8_t { Go, Probe, Stop, Reset, Stall };
struct Command {
  CommandKind kind = CommandKind::Stop;
  uint64_t windowStartNs = 0;
  uint64_t windowEndNs = 0;
  std::size_t count = 0;
  double seconds = 0;
};

inline constexpr int kMaxIov = 512;

class ClientWorker {
public:
  // `connections`: echo/idle connections or churn/handshake slots this worker runs.
  // connection ids (in error messages) run from firstId.
  ClientWorker(const Plan& plan, std::size_t index, std::size_t firstId, std::size_t connections,
               Rendezvous& rendezvous);
  ~ClientWorker();
  ClientWorker(const ClientWorker&) = delete;
  ClientWorker& operator=(const ClientWorker&) = delete;

  void run();                         // the thread body; returns when the run is over
  void post(const Command& command);  // from any thread

  // For the connections.
  event_base* base() const { return base_.get(); }
  const Plan& plan() const { return plan_; }
  const MessageTemplate& message() const { return message_; }
  const MessageTemplate& stallMessage() const { return stallMessage_; }
  char* scratch() { return scratch_.data(); }
  std::size_t scratchSize() const { return scratch_.size(); }
  iovec* iov() { return iov_.data(); }
  std::array<uint8_t, 16> randomBytes();

  void onTransportReady(const Transport& transport);  // connected (TLS: handshake done)
  void onConnOpen(ClientConn& conn, uint64_t now);
  ClientConn::Next onEcho(ClientConn& conn, uint64_t sentNs, uint64_t now);
  ClientConn::Next onMismatch(ClientConn& conn, std::string_view why);
  void onConnFailed(ClientConn& conn, std::string_view why, uint64_t now);
  void onConnClosed(ClientConn& conn, uint64_t now);
  void onStallEcho() { ++report_.stallEchoes; }
  void onStallDone(ClientConn& conn, uint64_t now);

private:
  // Setup (echo, idle: handshakes) -> Ready -> Running (traffic, probe, sessions) ->
  // Finishing (churn: in-flight sessions) -> Closing (Close handshakes) -> loop exit.
  enum class Stage : uint8_t { Setup, Ready, Running, Finishing, Closing };

  static void onCommandCb(evutil_socket_t, short, void* arg) noexcept;
  static void onDeadlineCb(evutil_socket_t, short, void* arg) noexcept;
  static void onTickCb(evutil_socket_t, short, void* arg) noexcept;
  void onTick();  // rate mode: sends what is due since go, round robin over free connections
  void onCommands();
  void onDeadline();

  void openMore(uint64_t now);
  void settleSetup();
  void go(const Command& command, uint64_t now);
  void probe(uint64_t now);
  void stop(uint64_t now);
  void probeAnswered();
  void finishChurn(uint64_t now);
  void closeAll();
  void closedOne();
  void noteError(const ClientConn& conn, std::string_view why);
  void injectFaults(const Command& command, uint64_t now);
  void printEvent(std::string_view event, const ClientConn& conn, uint64_t now,
                  std::string_view why = {});
  void armDeadline(double seconds);

  const Plan& plan_;
  const std::size_t index_;
  Rendezvous& rendezvous_;
  net::EventBasePtr base_;
  net::EventPtr command_, deadline_, tick_;
  std::mutex commandsMutex_;
  std::vector<Command> commands_;  // guarded by commandsMutex_

  std::mt19937_64 rng_;
  MessageTemplate message_;
  MessageTemplate stallMessage_;
  std::vector<char> scratch_;
  std::array<iovec, kMaxIov> iov_{};
  std::vector<std::unique_ptr<ClientConn>> conns_;

  Stage stage_ = Stage::Setup;
  Report report_;
  std::size_t nextToOpen_ = 0, handshaking_ = 0;
  bool opening_ = false;
  uint64_t windowStartNs_ = 0, windowEndNs_ = 0, goNs_ = 0;
  std::size_t probeLeft_ = 0;  // idle: probes not yet echoed or failed
  std::size_t active_ = 0;     // churn: slots with a session running or scheduled
  std::size_t closing_ = 0;    // Closing: connections still closing
  uint64_t rateSent_ = 0;      // rate mode: messages sent since go
  std::size_t rateNext_ = 0;   // rate mode: the connection to try first
};

}  // namespace wsgate::bench
