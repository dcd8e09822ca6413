#pragma once
// One log line per window for an event any client can repeat at will (a refused PROXY
// header): the first event of a window is written with the count of those held back since
// the last line; the others are only counted. Shared by every worker through atomics; the
// caller passes the time, so tests drive it exactly.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace wsgate::proxy {

class LogThrottle {
public:
  using Clock = std::chrono::steady_clock;

  // True when the caller may write its line now; `held` is then set to the events held back
  // since the previous line. False: counted, to be told with the next line.
  bool admit(Clock::time_point now, Clock::duration window, uint64_t& held) noexcept {
    const int64_t t = now.time_since_epoch().count();
    int64_t last = last_.load(std::memory_order_relaxed);
    // One winner per window among racing workers: the compare-exchange.
    if ((last == kNever || t - last >= window.count()) &&
        last_.compare_exchange_strong(last, t, std::memory_order_relaxed)) {
      held = held_.exchange(0, std::memory_order_relaxed);
      return true;
    }
    held_.fetch_add(1, std::memory_order_relaxed);  // relaxed: only a count for a log line
    return false;
  }

private:
  static constexpr int64_t kNever = INT64_MIN;
  std::atomic<int64_t> last_{kNever};  // steady-clock ticks of the last line written
  std::atomic<uint64_t> held_{0};
};

}  // namespace wsgate::proxy
