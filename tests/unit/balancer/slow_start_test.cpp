// Slow start's ramp as a table of (weight, time since coming back, window) -> weight.

#include "balancer/slow_start.h"

#include <gtest/gtest.h>

#include <chrono>

#include "test_backends.h"

namespace wsgate::balancer {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::at;

struct RampCase {
  uint32_t weight;
  std::optional<milliseconds> sinceUp;  // nullopt: never went away
  milliseconds window;
  uint64_t want;
};

TEST(SlowStart, RampsLinearlyFromATenthToTheFullWeight) {
  constexpr uint64_t U = kWeightUnit;
  const RampCase cases[] = {
      {1, std::nullopt, seconds(30), U},  // in rotation since created: full weight
      {1, seconds(0), seconds(30), U / 10},
      {1, seconds(15), seconds(30), U / 10 + (U - U / 10) / 2},
      {1, seconds(3), seconds(30), U / 10 + (U - U / 10) / 10},
      {1, milliseconds(29'999), seconds(30), U / 10 + (U - U / 10) * 29'999 / 30'000},
      {1, seconds(30), seconds(30), U},
      {1, seconds(3600), seconds(30), U},
      {10, seconds(0), seconds(30), 10 * U / 10},
      {10, seconds(10), seconds(30), U + (10 * U - U) / 3},
      {256, seconds(24), seconds(30), 256 * U / 10 + (256 * U - 256 * U / 10) * 4 / 5},
      {0, seconds(0), seconds(30), U / 10},  // weight 0 counts as 1
      {1, seconds(0), seconds(0), U},        // window 0: slow start is off
      {4, seconds(1), seconds(0), 4 * U},
      {1, -seconds(5), seconds(30), U / 10},  // a clock before upSince: the start
      {4'000'000'000u, seconds(0), seconds(30), 400'000'000'000ull},
      {4'000'000'000u, seconds(30), seconds(30), 4'000'000'000'000ull},
  };
  const TimePoint up = at(milliseconds(0));
  for (const auto& c : cases) {
    const std::optional<TimePoint> upSince =
        c.sinceUp ? std::optional<TimePoint>(up) : std::nullopt;
    const TimePoint now = up + c.sinceUp.value_or(seconds(0));
    EXPECT_EQ(slowStartWeight(c.weight, upSince, now, c.window), c.want)
        << "weight " << c.weight << " after " << c.sinceUp.value_or(milliseconds(-1)).count()
        << "ms of " << c.window.count() << "ms";
  }
}

TEST(SlowStart, NeverDecreasesAlongTheRamp) {
  const TimePoint up = at(milliseconds(0));
  uint64_t last = 0;
  for (int ms = 0; ms <= 31'000; ms += 7) {
    const uint64_t w = slowStartWeight(3, up, up + milliseconds(ms), seconds(30));
    ASSERT_GE(w, last) << ms;
    ASSERT_GE(w, 3 * kWeightUnit / 10);
    ASSERT_LE(w, 3 * kWeightUnit);
    last = w;
  }
  EXPECT_EQ(last, 3 * kWeightUnit);
}

}  // namespace
}  // namespace wsgate::balancer
