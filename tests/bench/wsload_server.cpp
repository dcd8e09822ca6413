// `wsload serve`: accept, HTTP head (upgrade or health check), then a streaming frame echo.

#include "tests/bench/wsload_server.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proxy/http/request_parser.h"
#include "proxy/net/handles.h"
#include "proxy/ws/frame.h"
#include "proxy/ws/handshake.h"
#include "tests/bench/wsload_frame_stream.h"

namespace wsgate::bench {

namespace {

using net::EventBasePtr;
using net::EventPtr;

// `serve --name`: set by runServe before the workers start, read-only after.
std::string& backendName() {
  static std::string name;
  return name;
}

constexpr std::size_t kScratchBytes = 256 * 1024;
constexpr int kAcceptsPerWakeup = 64;
// Output beyond this pauses reading until it drains: a client that does not read its echoes
// cannot make the server buffer without bound.
constexpr std::size_t kOutputHighWater = 4 << 20;
// Emptied output buffers larger than this are released: memory follows traffic.
constexpr std::size_t kKeptOutputCapacity = 4 << 20;
constexpr uint16_t kCloseProtocolError = 1002;

class ServerWorker;

// Adds or removes a persistent I/O event, remembering which in `armed`.
void setInterest(event* ev, bool& armed, bool want) {
  if (want == armed) return;
  if (want) {
    event_add(ev, nullptr);
  } else {
    event_del(ev);
  }
  armed = want;
}

// One accepted connection: Http (reading request heads) -> WebSocket (echoing frames) ->
// Closing (flushing the last bytes, then closing). finish() is the single exit.
class ServerConn {
public:
  ServerConn(ServerWorker& worker, int fd, std::size_t index);
  ServerConn(const ServerConn&) = delete;
  ServerConn& operator=(const ServerConn&) = delete;

  void start();
  std::size_t index = 0;  // position in the worker's list, for O(1) removal

private:
  friend class wsgate::bench::FrameStream;
  enum class State : uint8_t { Http, WebSocket, Closing, Dead };

  static void onReadCb(evutil_socket_t, short, void* arg) noexcept;
  static void onWriteCb(evutil_socket_t, short, void* arg) noexcept;
  void onReadable();
  void onHttpBytes(const char* data, std::size_t len);
  void onRequest(const http::RequestHead& head, std::size_t headBytes);
  void reply(int status, std::string_view body, bool keepAlive, bool withBody = true);
  void closeAfterFlush();
  void flush();
  void finish();

  // FrameStream sink.
  bool onFrameHeader(const ws::FrameHeader& h);
  bool onPayload(char* data, std::size_t len);
  bool onFrameEnd(const ws::FrameHeader& h);
  void onFrameError(std::string_view why);
  bool failProtocol();

  ServerWorker& worker_;
  TransportPtr transport_;
  EventPtr readEv_, writeEv_;
  bool reading_ = false, writing_ = false;
  State state_ = State::Http;
  std::string headIn_;  // Http state: request bytes not yet answered
  std::string out_;     // bytes to send; out_[0, sent_) already went
  std::size_t sent_ = 0;

  FrameStream frames_;
  bool inMessage_ = false;  // a fragmented data message is open
  bool control_ = false;    // the current frame is a control frame
  std::array<uint8_t, 4> mask_{};
  std::size_t maskOffset_ = 0;
  std::array<char, 125> controlPayload_{};
  std::size_t controlLength_ = 0;
};

// One thread's event loop: accepts from the shared listening socket and owns its connections.
// Finished connections wait in dead_ until the reaper runs, never freed inside their callback.
class ServerWorker {
public:
  explicit ServerWorker(int listenFd)
      : base_(event_base_new()), listenFd_(listenFd), scratch_(kScratchBytes) {
    acceptEv_.reset(event_new(base_.get(), listenFd_, EV_READ | EV_PERSIST, &onAcceptCb, this));
    resumeEv_.reset(evtimer_new(base_.get(), &onResumeCb, this));
    reapEv_.reset(event_new(base_.get(), -1, 0, &onReapCb, this));
    event_add(acceptEv_.get(), nullptr);
  }
  ~ServerWorker() {
    conns_.clear();  // before the events and base they use
    dead_.clear();
  }
  ServerWorker(const ServerWorker&) = delete;
  ServerWorker& operator=(const ServerWorker&) = delete;

  void run() { event_base_loop(base_.get(), EVLOOP_NO_EXIT_ON_EMPTY); }
  void stop() { event_base_loopbreak(base_.get()); }  // from another thread (evthread locks)

  event_base* base() const { return base_.get(); }
  char* scratch() { return scratch_.data(); }
  std::size_t scratchSize() const { return scratch_.size(); }

  void retire(ServerConn& conn) {
    const std::size_t i = conn.index;
    dead_.push_back(std::move(conns_[i]));
    if (i + 1 != conns_.size()) {
      conns_[i] = std::move(conns_.back());
      conns_[i]->index = i;
    }
    conns_.pop_back();
    event_active(reapEv_.get(), EV_TIMEOUT, 0);
  }

private:
  static void onAcceptCb(evutil_socket_t, short, void* arg) noexcept {
    static_cast<ServerWorker*>(arg)->onAcceptable();
  }
  static void onResumeCb(evutil_socket_t, short, void* arg) noexcept {
    auto* self = static_cast<ServerWorker*>(arg);
    event_add(self->acceptEv_.get(), nullptr);
  }
  static void onReapCb(evutil_socket_t, short, void* arg) noexcept {
    static_cast<ServerWorker*>(arg)->dead_.clear();
  }

  void onAcceptable() {
    for (int i = 0; i < kAcceptsPerWakeup; ++i) {
      const int fd = accept4(listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: the listening socket stays readable, so stop polling it for a
          // moment instead of spinning.
          if (!warnedFull_) std::fprintf(stderr, "wsload serve: accept: %s\n", strerror(errno));
          warnedFull_ = true;
          event_del(acceptEv_.get());
          const timeval pause{0, 100'000};
          evtimer_add(resumeEv_.get(), &pause);
        }
        return;  // EAGAIN (another thread took it), ECONNABORTED, EINTR: nothing to do
      }
      setNoDelay(fd);
      conns_.push_back(std::make_unique<ServerConn>(*this, fd, conns_.size()));
      conns_.back()->start();
    }
  }

  EventBasePtr base_;
  int listenFd_;
  EventPtr acceptEv_, resumeEv_, reapEv_;
  std::vector<char> scratch_;
  bool warnedFull_ = false;
  std::vector<std::unique_ptr<ServerConn>> conns_;
  std::vector<std::unique_ptr<ServerConn>> dead_;
};

ServerConn::ServerConn(ServerWorker& worker, int fd, std::size_t index)
    : index(index), worker_(worker), transport_(makePlainTransport(fd)) {
  readEv_.reset(event_new(worker.base(), fd, EV_READ | EV_PERSIST, &onReadCb, this));
  writeEv_.reset(event_new(worker.base(), fd, EV_WRITE | EV_PERSIST, &onWriteCb, this));
}

void ServerConn::start() { setInterest(readEv_.get(), reading_, true); }

void ServerConn::onReadCb(evutil_socket_t, short, void* arg) noexcept {
  static_cast<ServerConn*>(arg)->onReadable();
}

void ServerConn::onWriteCb(evutil_socket_t, short, void* arg) noexcept {
  static_cast<ServerConn*>(arg)->flush();
}

void ServerConn::onReadable() {
  char* buf = worker_.scratch();
  const IoResult r = transport_->read(buf, worker_.scratchSize());
  if (r.status == Io::WouldBlock) return;
  if (r.status != Io::Done) {  // EOF or reset: nothing more to echo to
    finish();
    return;
  }
  if (state_ == State::Http) {
    onHttpBytes(buf, r.bytes);
  } else if (state_ == State::WebSocket) {
    frames_.feed(buf, r.bytes, *this);
  }
  flush();  // one write per wakeup, whatever the read held
}

void ServerConn::onHttpBytes(const char* data, std::size_t len) {
  headIn_.append(data, len);
  while (state_ == State::Http && !headIn_.empty()) {
    http::RequestHead head;
    const http::ParseResult parsed = http::parseRequestHead(headIn_, http::ParseLimits{}, head);
    if (parsed.status == http::ParseStatus::Incomplete) return;
    if (parsed.status == http::ParseStatus::Error) {
      reply(400, parsed.errorReason, false);
      return;
    }
    onRequest(head, parsed.headBytes);
  }
}

void ServerConn::onRequest(const http::RequestHead& head, std::size_t headBytes) {
  const bool hasBody = head.body == http::BodyKind::Chunked ||
                       (head.body == http::BodyKind::ContentLength && head.contentLength > 0);
  if (head.upgradeWebsocket) {
    const ws::Verdict verdict = ws::checkUpgradeRequest(head);
    if (!verdict.ok) {
      reply(verdict.status, verdict.reason, false);
      return;
    }
    const http::Header* key = http::findHeader(head.headers, "Sec-WebSocket-Key");
    out_ += "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    out_ += "Sec-WebSocket-Accept: " + ws::computeAccept(key->value) + "\r\n";
    if (!backendName().empty()) out_ += "X-Backend: " + backendName() + "\r\n";
    out_ += "\r\n";
    state_ = State::WebSocket;
    std::string early = headIn_.substr(headBytes);  // frames sent right behind the request
    std::string().swap(headIn_);
    if (!early.empty()) frames_.feed(early.data(), early.size(), *this);
    return;
  }
  if (head.hasUpgrade) {
    reply(400, "Upgrade without a valid websocket upgrade", false);
  } else if ((head.method != "GET" && head.method != "HEAD") || hasBody) {
    reply(400, "only GET and HEAD without a body are served", false);
  } else {
    const bool keepAlive = head.keepAlive;
    reply(200, "ok", keepAlive, head.method == "GET");
    if (keepAlive) headIn_.erase(0, headBytes);
  }
}

void ServerConn::reply(int status, std::string_view text, bool keepAlive, bool withBody) {
  const std::string body = std::string(text) + "\n";
  out_ += "HTTP/1.1 " + std::to_string(status) + " " + std::string(http::reasonPhrase(status));
  out_ += "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size());
  if (status == 426) out_ += "\r\nSec-WebSocket-Version: 13";  // RFC 6455 4.4
  if (!keepAlive) out_ += "\r\nConnection: close";
  out_ += "\r\n\r\n";
  if (withBody) out_ += body;
  if (!keepAlive) closeAfterFlush();
}

void ServerConn::closeAfterFlush() {
  state_ = State::Closing;
  setInterest(readEv_.get(), reading_, false);
}

void ServerConn::flush() {
  if (state_ == State::Dead) return;
  if (sent_ < out_.size()) {
    const iovec iov{out_.data() + sent_, out_.size() - sent_};
    const IoResult r = transport_->writev(&iov, 1);
    if (r.status == Io::Error) {
      finish();
      return;
    }
    if (r.status == Io::Done) sent_ += r.bytes;
  }
  const std::size_t pending = out_.size() - sent_;
  if (pending == 0) {
    sent_ = 0;
    if (out_.capacity() > kKeptOutputCapacity) {
      std::string().swap(out_);
    } else {
      out_.clear();
    }
    if (state_ == State::Closing) {  // RFC 6455 7.1.1: the server closes TCP first
      finish();
      return;
    }
  } else if (sent_ > pending) {
    out_.erase(0, sent_);  // keep the unsent tail at the front: the buffer stops growing
    sent_ = 0;
  }
  setInterest(writeEv_.get(), writing_, pending > 0);
  setInterest(readEv_.get(), reading_, state_ != State::Closing && pending < kOutputHighWater);
}

void ServerConn::finish() {
  if (state_ == State::Dead) return;
  state_ = State::Dead;
  if (readEv_) event_del(readEv_.get());
  if (writeEv_) event_del(writeEv_.get());
  transport_->close();
  worker_.retire(*this);
}

bool ServerConn::onFrameHeader(const ws::FrameHeader& h) {
  // RFC 6455 5.1-5.5: clients mask; no extension was negotiated, so no RSV bit; control
  // frames are final and at most 125 bytes; continuations only inside a fragmented message.
  if (!h.masked || h.rsv != 0) return failProtocol();
  const auto op = static_cast<ws::Opcode>(h.opcode);
  control_ = h.opcode >= 0x8;
  mask_ = h.mask;
  maskOffset_ = 0;
  if (control_) {
    if (!h.fin || h.payloadLength > controlPayload_.size()) return failProtocol();
    if (op != ws::Opcode::Close && op != ws::Opcode::Ping && op != ws::Opcode::Pong) {
      return failProtocol();
    }
    controlLength_ = 0;
    return true;
  }
  const bool starts = op == ws::Opcode::Text || op == ws::Opcode::Binary;
  const bool continues = op == ws::Opcode::Continuation;
  if ((!starts && !continues) || starts == inMessage_) return failProtocol();
  inMessage_ = !h.fin;
  ws::appendFrameHeader(out_, h.fin, op, h.payloadLength);  // the echo: same opcode and fin
  return true;
}

bool ServerConn::onPayload(char* data, std::size_t len) {
  maskOffset_ = ws::applyMask(data, len, mask_, maskOffset_);
  if (control_) {
    std::memcpy(controlPayload_.data() + controlLength_, data, len);
    controlLength_ += len;
  } else {
    out_.append(data, len);
  }
  return true;
}

bool ServerConn::onFrameEnd(const ws::FrameHeader& h) {
  const auto op = static_cast<ws::Opcode>(h.opcode);
  if (op == ws::Opcode::Ping) {
    ws::appendFrameHeader(out_, true, ws::Opcode::Pong, controlLength_);
    out_.append(controlPayload_.data(), controlLength_);
  } else if (op == ws::Opcode::Close) {
    // RFC 6455 5.5.1: answer with the same status code, then close.
    if (controlLength_ == 1) return failProtocol();
    if (controlLength_ == 0) {
      ws::appendFrameHeader(out_, true, ws::Opcode::Close, 0);
    } else {
      const auto hi = static_cast<uint8_t>(controlPayload_[0]);
      const auto lo = static_cast<uint8_t>(controlPayload_[1]);
      out_ += ws::closeFrame(static_cast<uint16_t>((hi << 8) | lo), "");
    }
    closeAfterFlush();
    return false;
  }
  return true;
}

void ServerConn::onFrameError(std::string_view) { failProtocol(); }

bool ServerConn::failProtocol() {
  out_ += ws::closeFrame(kCloseProtocolError, "protocol error");
  closeAfterFlush();
  return false;
}

// The proxy's own listener code: non-blocking, SO_REUSEADDR/SO_REUSEPORT, a deep backlog.
int openListener(const HostPort& where, std::string& boundText) {
  std::string error;
  const auto addr = net::resolve(where, error);
  const int fd = addr ? net::openListener(*addr, error) : -1;
  if (fd < 0) {
    std::fprintf(stderr, "wsload serve: listen on %s: %s\n", where.str().c_str(), error.c_str());
    return -1;
  }
  const auto bound = net::localAddress(fd);
  boundText = bound ? bound->str() : where.str();
  return fd;
}

}  // namespace

int runServe(const ServeOptions& options) {
  backendName() = options.name;  // before any worker thread starts; read-only after
  std::string bound;
  const int listenFd = openListener(options.listen, bound);
  if (listenFd < 0) return 1;

  // Signals go to the main thread's sigwait only: the workers inherit the blocked mask.
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGTERM);
  sigaddset(&stopSignals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);

  std::vector<std::unique_ptr<ServerWorker>> workers;
  for (unsigned i = 0; i < options.threads; ++i) {
    workers.push_back(std::make_unique<ServerWorker>(listenFd));
  }
  std::vector<std::thread> threads;
  for (auto& worker : workers) threads.emplace_back([w = worker.get()] { w->run(); });

  std::printf("listening %s\n", bound.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stopSignals, &sig);

  for (auto& worker : workers) worker->stop();
  for (auto& thread : threads) thread.join();
  workers.clear();
  ::close(listenFd);
  return 0;
}

}  // namespace wsgate::bench
