// ClientConn: connect, upgrade, send stamped messages from a shared template, check echoes
// as they stream in, close with a Close handshake.

#include "tests/bench/wsload_client.h"

#include <netinet/in.h>
#include <openssl/evp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "proxy/http/response_parser.h"
#include "tests/bench/wsload_tls.h"
#include "tests/bench/wsload_worker.h"

namespace wsgate::bench {

namespace {

constexpr std::string_view kStampAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::string_view kFill = "abcdefghijklmnopqrstuvwxyz0123456789";
constexpr std::size_t kMaxResponseHead = 16 * 1024;
constexpr std::size_t kMaxQueuedBehind = 64;  // compact the queue once this many chunks went

// Writes the low 48 bits of `v`, six bits per character, most significant first.
void putStampField(char* out, uint64_t v) noexcept {
  for (int i = 7; i >= 0; --i) {
    out[i] = kStampAlphabet[v & 63];
    v >>= 6;
  }
}

timeval toTimeval(double seconds) {
  const auto us = static_cast<int64_t>(seconds * 1e6);
  return timeval{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
}

}  // namespace

void writeStamp(char* out, std::size_t len, uint64_t seq, uint64_t sentUs) noexcept {
  std::array<char, kStampBytes> stamp;
  putStampField(stamp.data(), seq);
  putStampField(stamp.data() + 8, sentUs);
  std::memcpy(out, stamp.data(), std::min(len, kStampBytes));
}

MessageTemplate::MessageTemplate(ws::Opcode opcode, std::size_t size, std::array<uint8_t, 4> mask)
    : opcode(opcode), size(size), stampLength(std::min(size, kStampBytes)), mask(mask) {
  ws::appendFrameHeader(header, /*fin=*/true, opcode, size, mask.data());
  plain.resize(size);
  for (std::size_t i = 0; i < size; ++i) plain[i] = kFill[i % kFill.size()];
  masked = plain;
  ws::applyMask(masked.data(), masked.size(), mask);
}

ClientConn::ClientConn(ClientWorker& worker, std::size_t id) : worker_(worker), id_(id) {}

// --- session lifecycle ----------------------------------------------------------------

void ClientConn::start(uint64_t now) {
  const Plan& plan = worker_.plan();
  closeSocket();
  readEv_.reset();  // safe: start() never runs inside this connection's I/O callbacks
  writeEv_.reset();
  state_ = State::Connecting;
  opened_ = false;
  startedNs_ = now;
  headIn_.clear();
  rawOut_.clear();
  rawSent_ = 0;
  queue_.clear();
  const unsigned slots =
      plan.mode == Mode::Soak ? std::max(plan.pipeline, plan.stallBurst) : plan.pipeline;
  queue_.reserve(slots + 2);  // messages in flight plus a Close and a Pong
  queueHead_ = headSent_ = 0;
  sentAt_.assign(slots, 0);
  backend_.clear();
  localPort_ = 0;
  stalled_ = big_ = false;
  sendSeq_ = recvSeq_ = 0;
  inFlight_ = 0;
  frames_.reset();
  inMessage_ = false;

  if (!transport_) transport_ = plan.tls ? makeTlsTransport(*plan.tls) : makePlainTransport();
  const IoResult r = transport_->connect(plan.address);
  if (r.status == Io::Error) {
    fail(transportError("connect", r));
    return;
  }
  const int fd = transport_->fd();
  readEv_.reset(event_new(worker_.base(), fd, EV_READ | EV_PERSIST, &onReadCb, this));
  writeEv_.reset(event_new(worker_.base(), fd, EV_WRITE | EV_PERSIST, &onWriteCb, this));

  if (plan.mode != Mode::Handshakes) {
    const std::array<uint8_t, 16> nonce = worker_.randomBytes();
    std::array<unsigned char, 25> key{};  // 4 * ceil(16 / 3) characters and a NUL
    EVP_EncodeBlock(key.data(), nonce.data(), static_cast<int>(nonce.size()));
    offer_.key.assign(reinterpret_cast<const char*>(key.data()), 24);
    rawOut_ = "GET " + plan.path + " HTTP/1.1\r\nHost: " + plan.hostHeader +
              "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + offer_.key +
              "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  }

  armTimer(plan.handshakeTimeout);
  if (r.status == Io::Done) {
    onConnected();
  } else {
    armWrite(true);  // writable = the connect finished, one way or the other
  }
}

void ClientConn::startAfter(double seconds) {
  state_ = State::Scheduled;
  armTimer(seconds);
}

// Runs the transport's connect (TCP, then TLS) on, waiting for the direction it asks for.
void ClientConn::continueConnect() {
  const IoResult r = transport_->finishConnect();
  switch (r.status) {
    case Io::Done:
      onConnected();
      break;
    case Io::WouldBlock:
      armWrite(r.wantWrite);
      armRead(!r.wantWrite);
      break;
    case Io::Eof:
      onEof();
      break;
    case Io::Error:
      fail(transportError("connect", r));
      break;
  }
}

void ClientConn::onConnected() {
  sockaddr_storage local{};
  socklen_t localLen = sizeof local;
  if (getsockname(transport_->fd(), reinterpret_cast<sockaddr*>(&local), &localLen) == 0) {
    localPort_ = local.ss_family == AF_INET6
                     ? ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port)
                     : ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
  }
  worker_.onTransportReady(*transport_);
  armRead(true);
  if (worker_.plan().mode == Mode::Handshakes) {
    // With TLS 1.3 our side of the handshake ends first: the server's ends when it reads our
    // Finished. The close_notify behind it, answered by the server's close, proves that (and
    // is a close any server handles, with or without tickets to send).
    transport_->closeNotify();
    state_ = State::Confirming;
    armWrite(false);
    armTimer(worker_.plan().closeTimeout);
    return;
  }
  state_ = State::Handshaking;
  flush();
}

// Handshakes mode, close_notify sent: session tickets are taken inside the transport
// (WouldBlock); data is what a server says to a connection closed before any request
// (HAProxy: 400), not an error; the server's close ends the session.
void ClientConn::onConfirmingRead(const IoResult& r) {
  switch (r.status) {
    case Io::WouldBlock:
    case Io::Done:
      break;
    case Io::Eof:
      finishClean();
      break;
    case Io::Error:
      fail(transportError("read", r));
      break;
  }
}

std::string ClientConn::transportError(std::string_view what, const IoResult& r) const {
  return std::string(what) + ": " + transport_->errorText(r);
}

void ClientConn::close() {
  if (state_ == State::Closing || state_ == State::Draining) return;
  if (state_ != State::Open) {
    abort();
    return;
  }
  if (stalled_) {  // a stalled reader reads again: the Close handshake needs it
    stalled_ = false;
    armRead(true);
  }
  static constexpr char kNormalClosure[2] = {0x03, static_cast<char>(0xE8)};  // 1000
  queueControl(ws::Opcode::Close, kNormalClosure, sizeof kNormalClosure);
  state_ = State::Closing;
  armTimer(worker_.plan().closeTimeout);
  flush();
}

void ClientConn::abort() noexcept {
  closeSocket();
  disarmTimer();
  if (state_ != State::Failed) state_ = State::Done;
}

bool ClientConn::alive() const {
  return state_ == State::Connecting || state_ == State::Confirming ||
         state_ == State::Handshaking || state_ == State::Open || state_ == State::Closing ||
         state_ == State::Draining;
}

bool ClientConn::fail(std::string_view why) {
  if (!alive()) return false;
  closeSocket();
  disarmTimer();
  state_ = State::Failed;
  worker_.onConnFailed(*this, why, nowNs());
  return false;
}

void ClientConn::finishClean() {
  closeSocket();
  disarmTimer();
  state_ = State::Done;
  worker_.onConnClosed(*this, nowNs());
}

void ClientConn::closeSocket() noexcept {
  if (readEv_) event_del(readEv_.get());
  if (writeEv_) event_del(writeEv_.get());
  readArmed_ = writeArmed_ = false;
  if (transport_) transport_->close();
}

// --- events ----------------------------------------------------------------------------

void ClientConn::onReadCb(evutil_socket_t, short, void* arg) noexcept {
  static_cast<ClientConn*>(arg)->onReadable();
}

void ClientConn::onWriteCb(evutil_socket_t, short, void* arg) noexcept {
  static_cast<ClientConn*>(arg)->onWritable();
}

void ClientConn::onTimerCb(evutil_socket_t, short, void* arg) noexcept {
  static_cast<ClientConn*>(arg)->onTimeout();
}

void ClientConn::onReadable() {
  if (state_ == State::Connecting) {
    continueConnect();
    return;
  }
  char* buf = worker_.scratch();
  const IoResult r = transport_->read(buf, worker_.scratchSize());
  if (state_ == State::Confirming) {
    onConfirmingRead(r);
    return;
  }
  if (r.status == Io::WouldBlock) return;
  now_ = nowNs();  // one clock read per wakeup: receive time of every echo in it
  if (r.status == Io::Eof) {
    onEof();
    return;
  }
  if (r.status == Io::Error) {
    fail(transportError("read", r));
    return;
  }
  const bool ok = state_ == State::Handshaking ? onHandshakeBytes(buf, r.bytes)
                                               : frames_.feed(buf, r.bytes, *this);
  if (ok) flush();  // one write per wakeup for everything the echoes asked for
}

void ClientConn::onWritable() {
  if (state_ != State::Connecting) {
    flush();
    return;
  }
  continueConnect();
}

void ClientConn::onTimeout() {
  switch (state_) {
    case State::Scheduled:
      start(nowNs());
      break;
    case State::Connecting:
    case State::Handshaking:
      fail("handshake timeout");
      break;
    case State::Open:
      if (stalled_) {  // the stall is over: read what piled up, then echoes are due again
        stalled_ = false;
        armRead(true);
        armTimer(worker_.plan().echoTimeout > 0 ? worker_.plan().echoTimeout : 10);
        break;
      }
      fail("echo timeout");
      break;
    case State::Closing:
      fail("close timeout: no Close frame from the server");
      break;
    case State::Confirming:
      fail("close timeout: the server did not close within 1 s of our close_notify");
      break;
    case State::Draining:  // Close exchanged but the server keeps TCP open: close anyway
      finishClean();
      break;
    default:
      break;
  }
}

bool ClientConn::onEof() {
  switch (state_) {
    case State::Draining:  // RFC 6455 7.1.1: the server closed TCP first, as it should
      finishClean();
      return false;
    case State::Closing:
      return fail("connection closed by peer before its Close frame");
    case State::Connecting:
    case State::Handshaking:
      return fail("handshake: connection closed by peer");
    default:
      return fail("connection closed by peer");
  }
}

bool ClientConn::onHandshakeBytes(const char* data, std::size_t len) {
  headIn_.append(data, len);
  http::ResponseHead head;
  const http::ParseResult parsed =
      http::parseResponseHead(headIn_, http::ParseLimits{}, http::ResponseContext{}, head);
  if (parsed.status == http::ParseStatus::Incomplete) {
    if (headIn_.size() > kMaxResponseHead) return fail("handshake: response head too large");
    return true;
  }
  if (parsed.status == http::ParseStatus::Error) {
    return fail("handshake: invalid response (" + std::string(parsed.errorReason) + ")");
  }
  if (head.status != 101) return fail("handshake: status " + std::to_string(head.status));
  const ws::Verdict verdict = ws::checkUpgradeResponse(head, offer_);
  if (!verdict.ok) return fail("handshake: " + std::string(verdict.reason));

  state_ = State::Open;
  opened_ = true;
  disarmTimer();
  if (const http::Header* b = http::findHeader(head.headers, "X-Backend")) {
    backend_.assign(b->value.substr(0, 64));
  }
  std::string early = headIn_.substr(parsed.headBytes);  // frames right behind the 101
  std::string().swap(headIn_);
  worker_.onConnOpen(*this, now_);
  if (!alive()) return false;
  return early.empty() || frames_.feed(early.data(), early.size(), *this);
}

// --- output ----------------------------------------------------------------------------

void ClientConn::send(unsigned count, uint64_t now) {
  if (state_ != State::Open) return;
  queueMessages(count, now);
  flush();
}

void ClientConn::queueMessages(unsigned count, uint64_t now) {
  const double echoTimeout = worker_.plan().echoTimeout;
  if (inFlight_ == 0 && count > 0 && echoTimeout > 0) armTimer(echoTimeout);
  for (unsigned i = 0; i < count; ++i) queueMessage(now);
}

void ClientConn::queueMessage(uint64_t now) {
  const MessageTemplate& m = msg();
  Chunk& c = queue_.emplace_back();
  std::memcpy(c.bytes.data(), m.header.data(), m.header.size());
  char* stamp = c.bytes.data() + m.header.size();
  writeStamp(stamp, m.stampLength, sendSeq_, now / 1000);
  ws::applyMask(stamp, m.stampLength, m.mask);  // the stamp is payload[0, 16): mask offset 0
  c.length = static_cast<uint32_t>(m.header.size() + m.stampLength);
  c.tail = m.masked.data() + m.stampLength;
  c.tailLength = m.size - m.stampLength;
  sentAt_[sendSeq_ % sentAt_.size()] = now;
  ++sendSeq_;
  ++inFlight_;
}

void ClientConn::queueControl(ws::Opcode op, const char* payload, std::size_t len) {
  const MessageTemplate& m = msg();
  Chunk& c = queue_.emplace_back();
  c.bytes[0] = static_cast<char>(0x80 | static_cast<uint8_t>(op));
  c.bytes[1] = static_cast<char>(0x80 | len);  // control payloads are at most 125 bytes
  std::memcpy(c.bytes.data() + 2, m.mask.data(), 4);
  std::memcpy(c.bytes.data() + 6, payload, len);
  ws::applyMask(c.bytes.data() + 6, len, m.mask);
  c.length = static_cast<uint32_t>(6 + len);
}

bool ClientConn::flush() {
  iovec* iov = worker_.iov();
  int count = 0;
  if (rawSent_ < rawOut_.size()) {
    iov[count++] = {rawOut_.data() + rawSent_, rawOut_.size() - rawSent_};
  }
  std::size_t skip = headSent_;
  for (std::size_t i = queueHead_; i < queue_.size() && count + 2 <= kMaxIov; ++i) {
    Chunk& c = queue_[i];
    if (skip < c.length) iov[count++] = {c.bytes.data() + skip, c.length - skip};
    skip = skip > c.length ? skip - c.length : 0;
    if (skip < c.tailLength) {
      iov[count++] = {const_cast<char*>(c.tail) + skip, c.tailLength - skip};
    }
    skip = 0;
  }
  if (count == 0) {
    armWrite(false);
    return true;
  }
  const IoResult r = transport_->writev(iov, count);
  if (r.status == Io::Error) return fail(transportError("write", r));
  if (r.status == Io::Done) consume(r.bytes);
  armWrite(rawSent_ < rawOut_.size() || queueHead_ < queue_.size());
  return true;
}

void ClientConn::consume(std::size_t bytes) {
  const std::size_t raw = std::min(bytes, rawOut_.size() - rawSent_);
  rawSent_ += raw;
  bytes -= raw;
  if (rawSent_ == rawOut_.size()) {
    rawOut_.clear();
    rawSent_ = 0;
  }
  while (bytes > 0 && queueHead_ < queue_.size()) {
    const Chunk& c = queue_[queueHead_];
    const std::size_t left = c.length + c.tailLength - headSent_;
    if (bytes < left) {
      headSent_ += bytes;
      break;
    }
    bytes -= left;
    headSent_ = 0;
    ++queueHead_;
  }
  if (queueHead_ == queue_.size()) {
    queue_.clear();  // keeps its capacity: no allocation in steady state
    queueHead_ = 0;
  } else if (queueHead_ >= kMaxQueuedBehind && 2 * queueHead_ >= queue_.size()) {
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(queueHead_));
    queueHead_ = 0;
  }
}

void ClientConn::armRead(bool want) {
  if (want == readArmed_ || !readEv_) return;
  if (want) {
    event_add(readEv_.get(), nullptr);
  } else {
    event_del(readEv_.get());
  }
  readArmed_ = want;
}

void ClientConn::armWrite(bool want) {
  if (want == writeArmed_ || !writeEv_) return;
  if (want) {
    event_add(writeEv_.get(), nullptr);
  } else {
    event_del(writeEv_.get());
  }
  writeArmed_ = want;
}

void ClientConn::armTimer(double seconds) {
  if (!timer_) timer_.reset(evtimer_new(worker_.base(), &onTimerCb, this));
  const timeval tv = toTimeval(seconds);
  evtimer_add(timer_.get(), &tv);
}

void ClientConn::disarmTimer() {
  if (timer_) evtimer_del(timer_.get());
}

uint64_t ClientConn::oldestSentNs() const {
  return inFlight_ == 0 ? 0 : sentAt_[recvSeq_ % sentAt_.size()];
}

// --- input: the echoes -------------------------------------------------------------------

bool ClientConn::onFrameHeader(const ws::FrameHeader& h) {
  // RFC 6455 5.1-5.5: a server never masks; no extension was offered, so no RSV bit.
  if (h.masked) return fail("protocol: masked frame from the server");
  if (h.rsv != 0) return fail("protocol: RSV bit set");
  const auto op = static_cast<ws::Opcode>(h.opcode);
  control_ = h.opcode >= 0x8;
  if (control_) {
    if (op != ws::Opcode::Close && op != ws::Opcode::Ping && op != ws::Opcode::Pong) {
      return fail("protocol: reserved opcode");
    }
    if (!h.fin || h.payloadLength > controlPayload_.size()) {
      return fail("protocol: invalid control frame");
    }
    controlLength_ = 0;
    return true;
  }
  if (op == ws::Opcode::Continuation) {
    if (!inMessage_) return fail("protocol: continuation without a message");
  } else if (op == ws::Opcode::Text || op == ws::Opcode::Binary) {
    if (inMessage_) return fail("protocol: new message inside a fragmented one");
    beginMessage(h.opcode);
  } else {
    return fail("protocol: reserved opcode");
  }
  if (messageProblem_.empty() && messageOffset_ + h.payloadLength > msg().size) {
    messageProblem_ = "echo mismatch (longer than sent)";
  }
  return true;
}

void ClientConn::beginMessage(uint8_t opcode) {
  inMessage_ = true;
  messageOpcode_ = opcode;
  messageOffset_ = 0;
  messageProblem_ = {};
  if (inFlight_ == 0) {
    messageProblem_ = "unexpected message: nothing in flight";
    return;
  }
  const MessageTemplate& m = msg();
  if (opcode != static_cast<uint8_t>(m.opcode)) messageProblem_ = "echo mismatch (opcode)";
  const uint64_t sent = sentAt_[recvSeq_ % sentAt_.size()];
  writeStamp(expectedStamp_.data(), m.stampLength, recvSeq_, sent / 1000);
}

bool ClientConn::onPayload(char* data, std::size_t len) {
  if (control_) {
    std::memcpy(controlPayload_.data() + controlLength_, data, len);
    controlLength_ += len;
    return true;
  }
  if (messageProblem_.empty()) {
    const MessageTemplate& m = msg();
    std::size_t i = 0;
    if (messageOffset_ < m.stampLength) {
      i = std::min<std::size_t>(len, m.stampLength - messageOffset_);
      if (std::memcmp(data, expectedStamp_.data() + messageOffset_, i) != 0) {
        messageProblem_ = "echo mismatch (sequence number or timestamp)";
      }
    }
    if (messageProblem_.empty() && i < len &&
        std::memcmp(data + i, m.plain.data() + messageOffset_ + i, len - i) != 0) {
      messageProblem_ = "echo mismatch (payload)";
    }
  }
  messageOffset_ += len;
  return true;
}

bool ClientConn::onFrameEnd(const ws::FrameHeader& h) {
  if (control_) {
    const auto op = static_cast<ws::Opcode>(h.opcode);
    if (op == ws::Opcode::Ping)
      queueControl(ws::Opcode::Pong, controlPayload_.data(), controlLength_);
    if (op == ws::Opcode::Close) return onServerClose();
    return true;
  }
  return h.fin ? endMessage() : true;
}

void ClientConn::onFrameError(std::string_view why) { fail("protocol: " + std::string(why)); }

bool ClientConn::onServerClose() {
  if (state_ == State::Closing) {
    state_ = State::Draining;
    armTimer(worker_.plan().closeTimeout);
    return true;
  }
  if (state_ == State::Draining) return true;
  std::string why = "connection closed by peer (Close";
  if (controlLength_ >= 2) {
    const auto hi = static_cast<uint8_t>(controlPayload_[0]);
    const auto lo = static_cast<uint8_t>(controlPayload_[1]);
    why += " " + std::to_string((hi << 8) | lo);
  }
  return fail(why + ")");
}

bool ClientConn::endMessage() {
  inMessage_ = false;
  const MessageTemplate& m = msg();
  if (messageProblem_.empty() && messageOffset_ != m.size) {
    messageProblem_ = "echo mismatch (shorter than sent)";
  }
  if (inFlight_ == 0) {  // nothing was in flight: no sequence to advance
    if (worker_.onMismatch(*this, messageProblem_) == Next::Fail) return fail(messageProblem_);
    return alive();
  }
  const uint64_t sent = sentAt_[recvSeq_ % sentAt_.size()];
  ++recvSeq_;
  --inFlight_;
  if (big_) {  // a stall burst's echo: counted apart, never a latency sample
    if (!messageProblem_.empty()) return fail("stall burst " + std::string(messageProblem_));
    worker_.onStallEcho();
    if (inFlight_ == 0) {
      big_ = false;
      disarmTimer();
      worker_.onStallDone(*this, now_);
    }
    return alive();
  }
  if (inFlight_ == 0 && state_ == State::Open && worker_.plan().echoTimeout > 0) disarmTimer();
  const Next next = messageProblem_.empty() ? worker_.onEcho(*this, sent, now_)
                                            : worker_.onMismatch(*this, messageProblem_);
  if (state_ != State::Open) return alive();  // the worker may have started closing us
  switch (next) {
    case Next::SendAnother:
      queueMessages(1, now_);
      break;
    case Next::Close:
      close();
      break;
    case Next::Fail:
      return fail(messageProblem_);
    case Next::Nothing:
      break;
  }
  return alive();
}

}  // namespace wsgate::bench

namespace wsgate::bench {

// --- soak: injected faults -----------------------------------------------------------------

const MessageTemplate& ClientConn::msg() const {
  return big_ ? worker_.stallMessage() : worker_.message();
}

bool ClientConn::quiet() const {
  return state_ == State::Open && !stalled_ && !big_ && inFlight_ == 0 &&
         queueHead_ == queue_.size() && rawSent_ == rawOut_.size();
}

void ClientConn::injectReset() {
  const MessageTemplate& m = worker_.message();
  // The header (with its mask) and half the masked payload: the proxy holds a partial frame.
  const std::size_t half = std::max<std::size_t>(1, m.size / 2);
  std::string partial = m.header;
  partial.append(m.masked.data(), std::min(half, m.masked.size()));
  iovec iov{partial.data(), partial.size()};
  transport_->writev(&iov, 1);  // a short or failed write still leaves a partial frame
  const linger hard{1, 0};
  setsockopt(transport_->fd(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  closeSocket();
  disarmTimer();
  state_ = State::Done;
}

void ClientConn::stall(double seconds, uint64_t now) {
  const unsigned burst = worker_.plan().stallBurst;
  big_ = true;  // before queuing: the stamps follow the stall template's size
  queueMessages(burst, now);
  stalled_ = true;
  armRead(false);
  armTimer(seconds);  // replaces the echo timer queueMessages armed
  flush();
}

}  // namespace wsgate::bench
