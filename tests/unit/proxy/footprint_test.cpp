// The memory budget of an idle WebSocket: what one tunnel holds of its own, block by
// block. RSS per idle connection is measured by `make bench`; this test keeps the fixed
// part from creeping up unnoticed. Raising a budget is a decision: write why in the commit
// and in docs/benchmarks.md.

#include <event2/event.h>
#include <gtest/gtest.h>

#include "proxy/session/session.h"

namespace wsgate::proxy {
namespace {

// glibc rounds every block up to 16 bytes and adds 8 of its own.
std::size_t heapBlock(std::size_t bytes) { return (bytes + 8 + 15) / 16 * 16; }

TEST(Footprint, SessionStaysWithinBudget) {
  // It embeds its timer and both sockets' events (libevent's struct event: 128 bytes each),
  // so no bufferevent or event is allocated per connection, and the links of the worker's
  // session list (24 bytes, instead of a 48-byte hash-table node).
  EXPECT_EQ(event_get_struct_event_size(), 128u);
  EXPECT_LE(Session::footprint().session, 1088u)
      << "Session grew: move what only some requests need behind a pointer";
}

TEST(Footprint, TunnelStateStaysWithinBudget) {
  // Two FrameRelays dominate it; the sockets stay the Session's.
  EXPECT_LE(Session::footprint().tunnel, 480u);
}

TEST(Footprint, IdleTunnelHeapWithinBudget) {
  // Session + TunnelState, as glibc allocates them. Per-fd bookkeeping in libevent adds
  // about 100 bytes more; the target for the whole idle
  // connection (RSS, measured by make bench) is half of HAProxy's in the same run.
  const auto f = Session::footprint();
  const std::size_t heap = heapBlock(f.session) + heapBlock(f.tunnel);
  EXPECT_LE(heap, 1600u) << "session " << f.session << " + tunnel " << f.tunnel;
}

}  // namespace
}  // namespace wsgate::proxy
