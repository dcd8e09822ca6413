// One line per window: the first event of each window is let through with the count held
// back since the last line; the rest are only counted, whichever thread reports them.
#include "proxy/log_throttle.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace wsgate::proxy {
namespace {

using namespace std::chrono_literals;
using Clock = LogThrottle::Clock;

TEST(LogThrottle, LetsTheFirstEventThroughThenOnePerWindowWithTheCountHeldBack) {
  LogThrottle t;
  const Clock::time_point t0{1h};
  uint64_t held = 99;
  ASSERT_TRUE(t.admit(t0, 10s, held));
  EXPECT_EQ(held, 0u);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(t.admit(t0 + 1s * i, 10s, held));
  EXPECT_FALSE(t.admit(t0 + 10s - 1ns, 10s, held)) << "the window is not over yet";
  ASSERT_TRUE(t.admit(t0 + 10s, 10s, held));
  EXPECT_EQ(held, 6u);
  // The window runs from the last line written, not on a fixed grid.
  EXPECT_FALSE(t.admit(t0 + 19s, 10s, held));
  ASSERT_TRUE(t.admit(t0 + 25s, 10s, held));
  EXPECT_EQ(held, 1u);
  ASSERT_TRUE(t.admit(t0 + 1h, 10s, held));
  EXPECT_EQ(held, 0u) << "a quiet spell holds nothing back";
}

TEST(LogThrottle, OneLinePerWindowWhenManyThreadsReportAtOnce) {
  LogThrottle t;
  const Clock::time_point t0{1h};
  constexpr int kThreads = 4, kEach = 10'000;
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      uint64_t held = 0;
      for (int k = 0; k < kEach; ++k) admitted += t.admit(t0, 10s, held) ? 1 : 0;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), 1);
  uint64_t held = 0;
  ASSERT_TRUE(t.admit(t0 + 10s, 10s, held));
  EXPECT_EQ(held, uint64_t{kThreads * kEach - 1}) << "every event held back is told";
}

}  // namespace
}  // namespace wsgate::proxy
