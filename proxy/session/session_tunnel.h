#pragma once
// The state a Session keeps only while it is a WebSocket tunnel: the two frame relays, the
// closing handshake and keepalive pings. The sockets and their buffers stay the Session's
// (net::Conn). Private to session*.cpp.

#include <chrono>
#include <cstdint>
#include <string_view>

#include "proxy/session/frame_relay.h"
#include "proxy/session/session.h"

namespace wsgate::proxy {

struct Session::TunnelState {
  TunnelState(const FrameRelay::Options& up, const FrameRelay::Options& down)
      : relay{FrameRelay(up), FrameRelay(down)} {}
  TunnelState(const TunnelState&) = delete;
  TunnelState& operator=(const TunnelState&) = delete;

  // relay[kClient] carries client -> backend, relay[kBackend] backend -> client: each is
  // indexed by the side its frames come from.
  FrameRelay relay[2];
  bool closeFrom[2] = {};         // a Close (or the end of the stream) came from that side
  bool closeTo[2] = {};           // a Close went (or can no longer go) toward that side
  bool eof[2] = {};               // that side's stream ended, or its socket closed
  bool finPending[2] = {};        // pass a FIN toward that side once its output is written
  uint16_t closeCode = 0;         // the first close code seen or sent (0: none yet)
  uint32_t drainCutMs = 0;        // drained: from drainAt to the cut at timeouts.drain
  std::string_view closeBy = "";  // "client", "backend" or "wsgate"
  std::chrono::steady_clock::time_point closeDeadline{};  // set once closing started
  std::chrono::steady_clock::time_point nextPing{};
  std::chrono::steady_clock::time_point drainAt{};  // when close 1012 goes (set by a drain)
  uint64_t pingSeq = 0;
  int missedPongs = 0;
  bool pingOutstanding = false;
  bool lingering = false;        // both closes done: FIN sent to the client, waiting for its FIN
  bool clientSentClose = false;  // a Close frame (not a violation, not EOF) came from it
  // TLS: OpenSSL's record buffers may be held (traffic since they were last given back);
  // they go back after kTlsIdleRelease without traffic.
  bool tlsBuffersHeld = true;

  bool closing() const { return closeDeadline != std::chrono::steady_clock::time_point{}; }
  bool sideDone(int s) const { return closeFrom[s] && (closeTo[s] || eof[s]); }
  bool bothDone() const { return sideDone(0) && sideDone(1); }
};

}  // namespace wsgate::proxy
