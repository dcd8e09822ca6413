#pragma once
// The client side of wsload: what a run sends (Plan, MessageTemplate) and ClientConn, one
// WebSocket connection that handshakes, keeps messages in flight and checks every echo.

#include <event2/event.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/net/handles.h"
#include "proxy/ws/frame.h"
#include "proxy/ws/handshake.h"
#include "tests/bench/wsload_frame_stream.h"
#include "tests/bench/wsload_net.h"

namespace wsgate::bench {

// Handshakes: TCP connect, TLS handshake, our close_notify, the server's close; no HTTP.
// Soak: echo at a rate on connections that reconnect after any failure, each failure printed
// as a JSON event line; faults (resets mid-frame, stalled readers) injected on command.
enum class Mode : uint8_t { Echo, Idle, Churn, Handshakes, Soak };

class TlsClient;

// Everything a worker needs to run its share of a scenario; immutable once workers start.
struct Plan {
  Mode mode = Mode::Echo;
  SocketAddress address;
  std::shared_ptr<const TlsClient> tls;  // wss://; null for ws://
  std::string hostHeader;
  std::string path;
  ws::Opcode opcode = ws::Opcode::Binary;
  std::size_t size = 64;  // payload bytes per message
  unsigned pipeline = 1;  // messages in flight per connection
  // Echo: messages per second this worker offers (0: the next goes as soon as an echo is
  // back). With a rate the load is the same whatever the proxy, so CPU per message compares.
  double rate = 0;
  std::size_t handshakeLimit = 256;  // handshakes in flight per worker
  // Seconds; an echo timeout of 0 means none (echo mode checks stalls when it stops instead).
  double handshakeTimeout = 10;
  double echoTimeout = 0;
  double closeTimeout = 1;
  // Soak: seconds before a failed or reset connection reconnects; a stalled reader's burst
  // (stallBurst messages of stallSize bytes, sent while it does not read).
  double reconnectDelay = 0.5;
  std::size_t stallSize = 64 * 1024;
  unsigned stallBurst = 64;

  // Churn and handshakes run sessions one after another in each slot, for a duration.
  bool repeatsSessions() const { return mode == Mode::Churn || mode == Mode::Handshakes; }
};

// Every payload starts with a 16-byte stamp: the message's sequence number on its connection
// and its send time in microseconds, each as 8 characters of a 64-letter alphabet (48 bits),
// so that text messages stay valid UTF-8. A payload shorter than 16 bytes holds a prefix.
constexpr std::size_t kStampBytes = 16;
void writeStamp(char* out, std::size_t len, uint64_t seq, uint64_t sentUs) noexcept;

// The frame every message of a worker is sent as: a constant masked header, the stamp (masked
// per message), then a constant masked tail written straight from `masked`. Queuing a message
// copies 30 bytes whatever its size.
struct MessageTemplate {
  MessageTemplate(ws::Opcode opcode, std::size_t size, std::array<uint8_t, 4> mask);

  ws::Opcode opcode;
  std::size_t size;
  std::size_t stampLength;  // min(size, kStampBytes)
  std::array<uint8_t, 4> mask;
  std::string header;  // the masked frame header for `size` bytes
  std::string plain;   // the payload as the echo must bring it back (stamp bytes aside)
  std::string masked;  // `plain` masked: the tail of every message is sent from here
};

// A frame waiting to be written: its first bytes inline (header and stamp, or a whole control
// frame), then for a message the shared tail.
struct Chunk {
  std::array<char, 2 + 4 + 125> bytes;  // fits a masked control frame
  uint32_t length = 0;
  const char* tail = nullptr;
  std::size_t tailLength = 0;
};

class ClientWorker;

// One client connection, reusable for another session once it ended (churn, handshakes):
//   Idle/Scheduled -> Connecting -> Handshaking -> Open -> Closing -> Draining -> Done
// Connecting includes the TLS handshake, which in handshakes mode is followed by Confirming,
// then Done. Failed is reached from any state through fail(), the single error exit, which
// closes the socket and tells the worker once. Events are never freed inside their own
// callbacks: a new session (start) replaces them from the worker or from the timer.
class ClientConn {
public:
  enum class State : uint8_t {
    Idle,         // never started
    Scheduled,    // start() due when the timer fires
    Connecting,   // TCP connect (and TLS handshake) in progress
    Confirming,   // handshakes mode: close_notify sent, waiting for the server's close
    Handshaking,  // upgrade request sent, reading the 101
    Open,
    Closing,   // our Close sent, waiting for the server's
    Draining,  // Close exchanged, waiting for the server to close TCP
    Done,
    Failed,
  };
  // The worker's answer to an echo: Fail ends the session with the echo's problem as reason.
  enum class Next : uint8_t { Nothing, SendAnother, Close, Fail };

  ClientConn(ClientWorker& worker, std::size_t id);
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;

  void start(uint64_t now);                 // connect and handshake (a new session)
  void startAfter(double seconds);          // start() from the timer
  void send(unsigned count, uint64_t now);  // queue `count` messages, write once
  void close();                             // Close(1000) after what is queued; abort() if not open
  void abort() noexcept;                    // close the socket now, no callback

  std::size_t id() const { return id_; }
  State state() const { return state_; }
  unsigned inFlight() const { return inFlight_; }
  uint64_t oldestSentNs() const;  // send time of the oldest message awaiting its echo
  uint64_t startedNs() const { return startedNs_; }
  bool opened() const { return opened_; }  // this session completed its handshake
  bool ticketReceived() const { return transport_ && transport_->ticketReceived(); }

  // Soak. The backend that answered the upgrade (its `X-Backend` header, "" if none).
  const std::string& backend() const { return backend_; }
  int localPort() const { return localPort_; }
  bool stalled() const { return stalled_ || big_; }
  // Open, nothing queued or in flight, not stalled: a fault can be injected now.
  bool quiet() const;
  // Writes the first half of a message frame, then closes with SO_LINGER 0 (a TCP RST).
  // The connection is left closed (state Done); the worker schedules its next session.
  void injectReset();
  // Stops reading, sends the stall burst, resumes reading after `seconds`; every echo of the
  // burst must still come back intact (the worker hears of it through onStallDone).
  void stall(double seconds, uint64_t now);

private:
  friend class wsgate::bench::FrameStream;

  static void onReadCb(evutil_socket_t, short, void* arg) noexcept;
  static void onWriteCb(evutil_socket_t, short, void* arg) noexcept;
  static void onTimerCb(evutil_socket_t, short, void* arg) noexcept;
  void onReadable();
  void onWritable();
  void onTimeout();
  void continueConnect();
  void onConnected();
  void onConfirmingRead(const IoResult& r);
  std::string transportError(std::string_view what, const IoResult& r) const;
  bool onHandshakeBytes(const char* data, std::size_t len);
  bool onEof();

  bool alive() const;
  void queueMessages(unsigned count, uint64_t now);
  void queueMessage(uint64_t now);
  void queueControl(ws::Opcode op, const char* payload, std::size_t len);
  bool flush();
  void consume(std::size_t bytes);
  void armRead(bool want);
  void armWrite(bool want);
  void armTimer(double seconds);
  void disarmTimer();
  void closeSocket() noexcept;
  bool fail(std::string_view why);  // always returns false, for `return fail(...)`
  void finishClean();
  const MessageTemplate& msg() const;  // what the next echo must be: the stall's or the usual

  // FrameStream sink: checks each echo as it streams in.
  bool onFrameHeader(const ws::FrameHeader& h);
  bool onPayload(char* data, std::size_t len);
  bool onFrameEnd(const ws::FrameHeader& h);
  void onFrameError(std::string_view why);
  void beginMessage(uint8_t opcode);
  bool endMessage();
  bool onServerClose();

  ClientWorker& worker_;
  const std::size_t id_;
  State state_ = State::Idle;
  TransportPtr transport_;
  net::EventPtr readEv_, writeEv_, timer_;
  bool readArmed_ = false, writeArmed_ = false;
  bool opened_ = false;
  uint64_t startedNs_ = 0;
  uint64_t now_ = 0;  // the time of the read being processed

  ws::Offer offer_;     // our Sec-WebSocket-Key, to check the 101's accept against
  std::string headIn_;  // the 101 as it arrives

  // Output: the upgrade request, then frames.
  std::string rawOut_;
  std::size_t rawSent_ = 0;
  std::vector<Chunk> queue_;
  std::size_t queueHead_ = 0;  // first chunk not fully written
  std::size_t headSent_ = 0;   // bytes of queue_[queueHead_] already written

  // Messages in flight: echoes come back in order, so slot seq % pipeline holds the send time.
  std::vector<uint64_t> sentAt_;
  uint64_t sendSeq_ = 0, recvSeq_ = 0;
  unsigned inFlight_ = 0;

  // The echo being read.
  FrameStream frames_;
  bool control_ = false;
  std::array<char, 125> controlPayload_{};
  std::size_t controlLength_ = 0;
  bool inMessage_ = false;
  uint8_t messageOpcode_ = 0;
  uint64_t messageOffset_ = 0;
  std::string_view messageProblem_;  // why the echo differs, empty while it matches
  std::array<char, kStampBytes> expectedStamp_{};

  // Soak.
  std::string backend_;
  int localPort_ = 0;
  bool stalled_ = false;  // not reading until the timer fires
  bool big_ = false;      // the stall burst's echoes are in flight
};

}  // namespace wsgate::bench
