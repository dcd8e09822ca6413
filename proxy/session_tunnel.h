#pragma once
// The state a Session keeps only while it is a WebSocket tunnel: the two sockets on plain
// edge-triggered events, the two frame relays, the closing handshake and keepalive pings.
// Private to session*.cpp.
//
// I/O: after the 101 the session's bufferevents are freed and each socket gets one event,
// EV_READ|EV_WRITE|EV_ET, added once: no epoll_ctl per message. A callback reads until a
// short read (or EAGAIN), relays through the worker's scratch buffers, and ends its turn
// with one write per side that has output. Only what is left over (a partial frame, bytes
// the socket did not take) moves into buffers of the tunnel's own, freed once empty again:
// an idle tunnel holds no buffer.

#include <event2/event_struct.h>

#include <chrono>
#include <cstdint>
#include <string_view>

#include "proxy/frame_relay.h"
#include "proxy/session.h"

namespace wsgate::proxy {

struct Session::TunnelState {
  TunnelState(const FrameRelay::Options& up, const FrameRelay::Options& down)
      : relay{FrameRelay(up), FrameRelay(down)} {}
  ~TunnelState() { release(); }
  TunnelState(const TunnelState&) = delete;
  TunnelState& operator=(const TunnelState&) = delete;

  // One socket of the tunnel.
  struct Conn {
    evutil_socket_t fd = -1;  // -1: closed; otherwise `ev` is assigned and added
    event ev{};               // EV_READ | EV_WRITE | EV_CLOSED | EV_ET | EV_PERSIST, added once
    evbuffer* in = nullptr;   // a partial frame kept between reads (null: none)
    evbuffer* out = nullptr;  // bytes the socket has not taken yet (null: none)
    bool readable = true;     // not read down to a short read since the last edge
    bool finQueued = false;   // EPOLLRDHUP seen: the peer's FIN waits behind its data
  };

  // Deletes a side's event, closes its socket, frees its buffers (idempotent).
  void closeConn(int side);
  // Both sides (idempotent).
  void release();

  Conn conn[2];
  // relay[kClient] carries client -> backend, relay[kBackend] backend -> client: each is
  // indexed by the side its frames come from.
  FrameRelay relay[2];
  bool closeFrom[2] = {};  // a Close (or the end of the stream) came from that side
  bool closeTo[2] = {};    // a Close went (or can no longer go) toward that side
  bool eof[2] = {};
  bool finPending[2] = {};        // pass a FIN toward that side once its output is written
  uint16_t closeCode = 0;         // the first close code seen or sent (0: none yet)
  std::string_view closeBy = "";  // "client", "backend" or "wsgate"
  std::chrono::steady_clock::time_point closeDeadline{};  // set once closing started
  std::chrono::steady_clock::time_point nextPing{};
  std::chrono::steady_clock::time_point drainAt{};  // set when its backend is drained
  uint64_t pingSeq = 0;
  int missedPongs = 0;
  bool pingOutstanding = false;
  bool lingering = false;  // both closes done: FIN sent to the client, waiting for its FIN

  bool closing() const { return closeDeadline != std::chrono::steady_clock::time_point{}; }
  bool sideDone(int s) const { return closeFrom[s] && (closeTo[s] || eof[s]); }
};

}  // namespace wsgate::proxy
