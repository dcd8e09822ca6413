#pragma once
// One client connection and the backend connection serving it: the connection state
// machine. HTTP requests are proxied one exchange at a time (keep-alive, pipelining in
// order); a validated WebSocket upgrade turns the session into a tunnel.
//
// Life: [ReadingProxyHeader ->] ReadingHead -> (route) -> Connecting -> AwaitingResponse
//       -> RelayingResponse -> ReadingHead (keep-alive) | Tunnel (after a valid 101) | Closing.
// Every path out goes through close() or finishAndLinger(); the worker frees the object
// later (deferred delete), never inside one of its callbacks.
//
// I/O, in both phases, goes through two transports (net::Conn): each socket has one
// edge-triggered event added once for its whole life. A callback reads until a short read
// into the worker's scratch buffers, acts on the bytes, and ends its turn (endTurn) with one
// write per side that has output. Only what is left over moves into buffers of the
// connection's own, freed once empty: an idle connection holds no buffer.

#include <event2/event_struct.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "balancer/backend.h"
#include "proxy/control/runtime.h"
#include "proxy/http/chunked.h"
#include "proxy/http/head.h"
#include "proxy/net/conn.h"
#include "proxy/net/handles.h"
#include "proxy/net/io_batch.h"
#include "proxy/session/frame_relay.h"
#include "proxy/session/route_decision.h"
#include "proxy/stats.h"
#include "proxy/ws/handshake.h"

namespace wsgate::proxy {

class Worker;
struct BatchOwner;

class Session {
public:
  enum class State : uint8_t {
    // a proxy_protocol listener: the PROXY header comes first (before TLS)
    ReadingProxyHeader,
    ReadingHead,       // waiting for (the rest of) a request head
    Connecting,        // backend connect in progress
    AwaitingResponse,  // request forwarded, waiting for the response head
    RelayingResponse,  // response body on its way to the client
    Tunnel,            // WebSocket: bytes relayed both ways
    Lingering,         // final answer written; draining input until the client closes
    Closed,            // both sides released; waiting for deferred delete
  };

  // The two ends of a session; tunnel state is indexed by them.
  enum Side : uint8_t { kClient = 0, kBackend = 1 };

  // `listener`: the runtime's entry of the listener that accepted `fd`.
  Session(Worker& worker, RuntimePtr runtime, const ListenerEntry& listener, uint64_t id,
          evutil_socket_t fd, const sockaddr* peer, int peerLen);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Starts reading the first request.
  void start();

  // The fixed memory of a WebSocket tunnel, for the budget test: the Session (it embeds
  // its timer and both sockets' events) and the state only tunnels allocate.
  // An idle tunnel holds nothing else of its own but these two blocks (no buffer).
  struct Footprint {
    std::size_t session, tunnel;
  };
  static Footprint footprint();

  uint64_t id() const { return id_; }
  State state() const { return state_; }

  // Ends the session now (server shutdown); safe outside callbacks only.
  void abort(std::string_view reason) { close(reason); }

  // One of these backends is being drained (admin drain, removed by a reload): a tunnel on
  // it gets close 1012 after `delay` (and is cut at timeouts.drain); an idle kept-alive
  // connection to it is dropped. Other sessions and in-flight HTTP exchanges are left alone.
  void drainIfOn(const std::unordered_set<const balancer::Backend*>& backends,
                 std::chrono::milliseconds delay);
  // Why a session must go as a whole (not for its backend's sake).
  enum class Leave : uint8_t { No, Shutdown, ListenerClosed };
  // The session must go: a tunnel gets close 1012 after `delay`; an idle kept-alive
  // connection closes now; a request in flight gets its response with Connection: close,
  // then the connection closes.
  void drain(std::chrono::milliseconds delay, Leave why);
  // The key of the listener that accepted it.
  const std::string& listenerKey() const { return listener_->key; }

private:
  friend class Worker;  // links sessions into its list (hook_)

  enum class Timer : uint8_t {
    None,
    Handshake,
    KeepAlive,
    Connect,
    BackendResponse,
    Idle,
    Linger,
    Queue
  };

  static constexpr uint32_t kNoTime = UINT32_MAX;
  // Per-exchange facts that must outlive the request buffer.
  struct Exchange {
    std::string method, path, host;
    bool isHead = false;
    bool websocket = false;
    bool clientKeepAlive = true;
    // Microseconds since `started` (kNoTime: not yet) when the last backend connect began
    // and when the request head went to a connected backend; from them the access log's
    // connect and response times and the latency histograms. Kept in what was padding.
    uint32_t connectAtUs = kNoTime;
    // Allocated only by the requests that need them, so an Exchange stays small.
    std::unique_ptr<ws::Offer> offer;  // a WebSocket upgrade's offer, until the 101
    http::BodyKind requestBody = http::BodyKind::None;
    uint64_t requestRemaining = 0;
    std::unique_ptr<http::ChunkedDecoder> requestChunked;
    bool requestDone = false;
    http::BodyKind responseBody = http::BodyKind::None;
    uint64_t responseRemaining = 0;
    std::unique_ptr<http::ChunkedDecoder> responseChunked;
    int status = 0;
    uint32_t sentAtUs = kNoTime;
    std::string_view pool;      // routed pool (the name lives in the runtime's config)
    std::string forwardedHead;  // kept until the response head, for a retry
    std::chrono::steady_clock::time_point started;
    uint64_t bytesFromClient = 0;
    uint64_t bytesToClient = 0;
    std::vector<bool> tried;  // backends of the pool already tried
    uint32_t attempts = 0;
    uint32_t responseUs = kNoTime;  // head sent -> response head received
    int16_t route = -1;             // index of the matched route in `routes:`; -1: none
    bool reusedBackend = false;     // sent over a kept-alive backend connection
    bool usedBackend = false;       // a backend was picked (for the access log)
    bool backendKeepAlive = false;  // the response allows reusing the backend connection
    // Stickiness: the hashed key of the pool's header/query/source_ip source or Lua's
    // sticky_key, and the backend a valid cookie (or Lua's `backend`) names; `setCookie` is
    // the Set-Cookie line to add.
    std::optional<uint64_t> stickyKey;
    std::optional<std::size_t> preferredBackend;
    std::string setCookie;
    std::chrono::steady_clock::time_point queueDeadline{};  // set while queued
  };

  static Side other(Side s) { return s == kClient ? kBackend : kClient; }

  // libevent trampolines; both end the session's turn (endTurn), except that a tunnel's
  // socket events only queue it for the worker's batch (Worker::flushBatch).
  static void onIoCb(evutil_socket_t fd, short what, void* self) noexcept;
  static void onTimerCb(evutil_socket_t, short, void* self) noexcept;

  // Socket I/O shared by both phases.
  // `what` is libevent's: EV_READ/EV_CLOSED bring an edge; EV_TIMEOUT is the session's own
  // "resume" (input kept or a socket left readable, with no new edge to come).
  // An event of one of its sockets (or a resume, EV_TIMEOUT, from Worker::runResumes).
  void onEvent(Side side, short what);
  void onIo(Side side, short what);
  // What an event says about a socket: a new edge to read, a FIN queued, room to write.
  void noteEvent(Side side, short what);
  // The batched turn of a tunnel (Worker::flushBatch): one recv per readable side and one
  // send per side with output go into the worker's batches; their results come back here.
  void prepareBatchReads(std::vector<net::IoBatch::Op>& ops, std::vector<BatchOwner>& owners);
  void completeBatchRead(const BatchOwner& op, ssize_t result);
  // Between the batch's reads and writes: a side in a bulk transfer reads synchronously.
  void readStreaming();
  void prepareBatchWrites(std::vector<net::IoBatch::Op>& ops, std::vector<BatchOwner>& owners);
  void completeBatchWrite(const BatchOwner& op, ssize_t result);
  void openConn(Side side, evutil_socket_t fd);
  // Deletes a side's event, closes its socket and drops its buffered bytes (idempotent).
  void closeConn(Side side);
  // The worker's scratch buffers this turn lends to a side (its slot's).
  const net::Scratch& scratch(Side s) const;
  // Where a side's input is read to / its output is queued: the connection's own buffer
  // when it holds leftovers, else the worker's scratch buffer.
  evbuffer* input(Side s) const;
  evbuffer* output(Side s) const;
  // Bytes queued towards a side that its socket has not taken yet.
  std::size_t pendingOutput(Side s) const;
  // Reads `side` until a short read, EAGAIN, the end of the stream, a full buffer
  // (mayRead) or the per-turn budget, acting on each read (onInput).
  void readSide(Side side);
  bool mayRead(Side side) const;
  void onInput(Side side);
  void onEof(Side side, bool reset);
  void onClientEof(bool reset);
  void onBackendEof(bool reset);
  // Ends a turn: one write per side with output, FINs passed on, a stopped reader resumed,
  // leftovers kept in the session's own buffers (the worker's scratch left empty).
  void endTurn();
  void shutdownWrite(Side side);
  // True when the end of the turn sends `side` a FIN once its output is written.
  bool finFollows(Side side) const;
  void onTimeout();

  // PROXY protocol (session_proxy.cpp): the listener's header read before anything else,
  // and the one sent ahead of a backend connection's first bytes.
  void readProxyHeader();
  // Counts, logs (rate-limited) and closes, with no answer.
  void refuseProxyHeader(ProxyReject why, std::string_view detail);
  void queueBackendProxyHeader();

  // HTTP request side.
  void readHead();
  void onHeadComplete(const http::RequestHead& head, std::size_t headBytes);
  // Carries out what decideRoute chose: a local answer, or the request forwarded to a pool
  // (a kept-alive backend connection reused, or a backend picked and connected).
  void execute(RouteDecision decision, const http::RequestHead& head, std::size_t headBytes);
  void pumpRequestBody();
  // Backend side.
  void connectBackend();
  // A connect in progress: writing the queued request head tells whether it went through.
  void tryConnected();
  // Picks a backend of backendPool_ for this request: cookie, sticky key or policy.
  std::optional<std::size_t> pickBackend();
  // True when every untried backend of the pool is at max_connections.
  bool poolFull() const;
  void leaveQueue();
  void onBackendConnected();
  void onConnectFailed(std::string_view why);
  // socket() or connect() towards the backend failed at once. For want of descriptors,
  // memory or local ports the request waits like a queued one, then gets 503; otherwise
  // the backend failed (onConnectFailed).
  void onSocketError(std::string_view what, int error);
  // Waits for a place (a backend slot or a descriptor) up to timeouts.queue, polling every
  // 20 ms, within limits.max_queue per worker. False when the wait is over (left the queue).
  bool waitInQueue();
  // The rest of the request body is all in the client's input already.
  bool requestBodyBuffered();
  void readResponseHead();
  void onResponseHead(const http::ResponseHead& resp, std::size_t headBytes);
  void pumpResponseBody();
  void onExchangeDone();
  // Back to ReadingHead for the next request on a kept-alive client connection.
  void awaitNextRequest();
  void releaseBackend();
  // Tunnel (session_tunnel.cpp): the frame-aware WebSocket relay after a valid 101.
  void startTunnel(bool permessageDeflate);
  // Lua (session_script.cpp): on_request edits `d`; the conn hooks around a tunnel.
  void runOnRequest(RouteDecision& d, const http::RequestHead& head);
  void openScriptConn();
  // A message the relay collected from `from`: passed, dropped, replaced or the session
  // closed, as on_message says. False when the session is closing.
  bool onScriptMessage(Side from);
  void closeScriptConn();
  void logScriptError(LuaHook hook, std::string_view error);
  void pumpTunnel(Side from);
  void onTunnelViolation(Side from, const ws::Violation& v);
  void onTunnelEof(Side from, bool reset);
  void onTunnelTimeout();
  void drainTunnel(std::chrono::milliseconds delay);
  // When a request head is complete: the worker's current snapshot replaces the one the
  // session had (an idle backend connection is carried over when its backend is still in
  // the pool), so a kept-alive connection's next request follows the last reload.
  void adoptCurrentSnapshot();
  Leave leaving() const { return static_cast<Leave>(leaving_); }
  static std::string_view leaveReason(Leave why) {
    return why == Leave::Shutdown ? "shutdown" : "listener closed";
  }
  // Writes a Close frame toward `side` (once; skipped when a frame is half-written there).
  void sendClose(Side side, uint16_t code, std::string_view reason);
  // wsgate starts the closing handshake itself (idle, ping timeout, violation, drain).
  void originateClose(uint16_t toClient, uint16_t toBackend, std::string_view reason);
  void sendPing();
  void armTunnelTimer();
  void checkTunnelDone();

  // Answers the client with a response wsgate makes itself. With keepAlive the session
  // goes on reading requests; otherwise it lingers then closes.
  void answer(int status, std::string_view detail, std::string_view reason, bool keepAlive,
              std::string_view extraHeaders = {});
  void finishAndLinger(std::string_view reason);
  // The single exit: frees both connections, logs, hands the session to the worker.
  void close(std::string_view reason);
  void logExchange(std::string_view reason);
  // Microseconds from ex_.started to now (saturated below kNoTime).
  uint32_t sinceStartUs() const;
  // The client's TLS handshake, once: done, or (at the close, `closeReason` set) failed and
  // why.
  void countTlsHandshake(std::string_view closeReason);
  // A response head (101 or final) came: its latency and the backend's counters.
  void noteResponseHead(int status);

  void arm(Timer kind, std::chrono::milliseconds after);
  void disarm();

  Worker& worker_;
  RuntimePtr runtime_;
  const ListenerEntry* listener_;  // lives in runtime_
  const uint64_t id_;
  std::string clientAddr_;
  std::string clientIp_;
  // The small fields together, so they share one word.
  State state_ = State::ReadingHead;
  Timer timerKind_ = Timer::None;
  uint8_t slot_ = 0;        // the worker's scratch slot this turn uses
  bool batched_ = false;    // queued for the worker's batch
  bool clientEof_ = false;  // the client's stream ended (read 0 or an error)
  bool backendEof_ = false;
  // Three rarely written fields share one byte, so the small fields stay in one word.
  bool inExchange_ : 1 = false;
  bool backendIdle_ : 1 = false;  // the backend connection is kept alive between exchanges
  uint8_t leaving_ : 2 = 0;       // a Leave: drained, no further request on this connection
  bool tlsCounted_ : 1 = false;   // the client's TLS handshake is in /metrics already
  net::Conn conn_[2];             // the two transports, indexed by Side
  event timer_;                   // embedded: one allocation less per session
  std::chrono::steady_clock::time_point lastActivity_;

  struct TunnelState;  // only WebSocket sessions pay for it
  std::unique_ptr<TunnelState> tunnel_;

  Exchange ex_;
  // Parsed heads, reused across requests (they keep their headers' capacity); a tunnel
  // frees them.
  std::unique_ptr<http::RequestHead> head_;
  std::unique_ptr<http::ResponseHead> resp_;
  const PoolEntry* backendPool_ = nullptr;  // the pool the backend connection belongs to
  // 32 bits each, so that the script's pointer below costs an idle session nothing.
  uint32_t headScanned_ = 0;  // bytes of an incomplete head already parsed once
  uint32_t backendIndex_ = 0;
  struct ScriptState;  // only sessions on a route with `lua:` whose script has conn hooks
  std::unique_ptr<ScriptState> script_;
  balancer::BackendLease lease_;
  std::string backendName_;  // "pool/name" of the backend picked last, for logs
  std::string closeReason_;
  // The worker's list of its open sessions runs through here: no node allocated per session.
  struct Hook {
    Session* prev = nullptr;
    Session* next = nullptr;
    bool linked = false;
  } hook_;
};

// Who made an operation of the worker's batch, and for a read, the buffer space reserved.
struct BatchOwner {
  Session* session;
  Session::Side side;
  evbuffer_iovec space;
};

}  // namespace wsgate::proxy
