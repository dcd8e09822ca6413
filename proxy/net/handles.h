#pragma once
// Owning handles for libevent objects: each C handle is wrapped once, here.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <chrono>
#include <memory>

namespace wsgate::net {

template <auto Fn>
struct Deleter {
  template <class T>
  void operator()(T* p) const {
    Fn(p);
  }
};

using EventBasePtr = std::unique_ptr<event_base, Deleter<event_base_free>>;
using EventPtr = std::unique_ptr<event, Deleter<event_free>>;
using BufferEventPtr = std::unique_ptr<bufferevent, Deleter<bufferevent_free>>;
using EvBufferPtr = std::unique_ptr<evbuffer, Deleter<evbuffer_free>>;

// Short names for the buffer calls the session code makes on every event.
inline evbuffer* in(bufferevent* b) { return bufferevent_get_input(b); }
inline evbuffer* out(bufferevent* b) { return bufferevent_get_output(b); }
inline std::size_t len(evbuffer* e) { return evbuffer_get_length(e); }

// A duration as the timeval libevent's timers take.
inline timeval toTimeval(std::chrono::microseconds d) {
  return {static_cast<time_t>(d.count() / 1000000), static_cast<suseconds_t>(d.count() % 1000000)};
}

}  // namespace wsgate::net
