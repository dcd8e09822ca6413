// Backend state machines with an injected clock: passive backoff and the half-open retry,
// active rise/fall, drain/enable, and when slow start begins.

#include "balancer/backend.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "test_backends.h"

namespace wsgate::balancer {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::at;

Backend makeBackend(uint32_t maxConnections = 0) {
  return Backend(BackendSpec{"app", "a", "10.0.0.1", 80, 1, maxConnections});
}

TEST(PassiveBackoff, DoublesFromOneSecondAndCapsAtThirty) {
  const PassiveBackoff backoff;
  const std::vector<Duration> want = {seconds(0), seconds(1),  seconds(2),  seconds(4),
                                      seconds(8), seconds(16), seconds(30), seconds(30)};
  for (uint32_t strikes = 0; strikes < want.size(); ++strikes) {
    EXPECT_EQ(backoff.after(strikes), want[strikes]) << strikes << " strikes";
  }
  EXPECT_EQ(backoff.after(63), seconds(30));
}

TEST(PassiveBackoff, HonoursOtherLimits) {
  const PassiveBackoff backoff{milliseconds(250), seconds(1)};
  EXPECT_EQ(backoff.after(1), milliseconds(250));
  EXPECT_EQ(backoff.after(3), seconds(1));
  EXPECT_EQ(backoff.after(40), seconds(1));
  EXPECT_EQ((PassiveBackoff{seconds(5), seconds(1)}).after(1), seconds(5));   // max < first
  EXPECT_EQ((PassiveBackoff{seconds(0), seconds(30)}).after(4), seconds(0));  // off
}

TEST(Backend, StartsUpActiveEnabledAndNeverCameBack) {
  Backend b = makeBackend();
  EXPECT_EQ(b.passiveState(at(milliseconds(0))), PassiveState::Up);
  EXPECT_TRUE(b.activeUp());
  EXPECT_FALSE(b.draining());
  EXPECT_TRUE(b.available(at(milliseconds(0))));
  EXPECT_EQ(b.upSince(), std::nullopt);
}

// The sequence: each failed half-open retry doubles the ejection, 1s 2s 4s ... 30s.
TEST(Backend, FailedRetriesDoubleTheEjectionUpToThirtySeconds) {
  Backend b = makeBackend();
  auto now = at(milliseconds(0));
  const std::vector<Duration> want = {seconds(1),  seconds(2),  seconds(4), seconds(8),
                                      seconds(16), seconds(30), seconds(30)};
  for (std::size_t k = 0; k < want.size(); ++k) {
    ASSERT_EQ(b.markDown(now), want[k]) << "failure " << k;
    EXPECT_FALSE(b.available(now));
    EXPECT_FALSE(b.available(now + want[k] - milliseconds(1)));
    EXPECT_FALSE(b.tryAdmit(now + want[k] - milliseconds(1)));
    now += want[k];
    EXPECT_EQ(b.passiveState(now), PassiveState::HalfOpen);
    EXPECT_TRUE(b.available(now));
    ASSERT_TRUE(b.tryAdmit(now));  // the retry, which fails again at the top of the loop
  }
}

TEST(Backend, ASuccessEndsTheEjectionAndResetsTheBackoff) {
  Backend b = makeBackend();
  b.markDown(at(seconds(0)));
  b.tryAdmit(at(seconds(1)));
  b.markDown(at(seconds(1)));  // 2s now
  EXPECT_TRUE(b.markUp(at(milliseconds(1500))));
  EXPECT_EQ(b.passiveState(at(milliseconds(1500))), PassiveState::Up);
  EXPECT_EQ(b.upSince(), at(milliseconds(1500)));
  EXPECT_FALSE(b.markUp(at(seconds(2))));  // already up: nothing changes
  EXPECT_EQ(b.upSince(), at(milliseconds(1500)));
  EXPECT_EQ(b.markDown(at(seconds(3))), seconds(1));  // starts over
}

TEST(Backend, HalfOpenAdmitsExactlyOneRetry) {
  Backend b = makeBackend();
  b.markDown(at(seconds(0)));
  EXPECT_TRUE(b.tryAdmit(at(seconds(1))));
  // The retry is out: nobody else gets in while it runs.
  EXPECT_EQ(b.passiveState(at(seconds(1))), PassiveState::Ejected);
  EXPECT_FALSE(b.available(at(milliseconds(1500))));
  EXPECT_FALSE(b.tryAdmit(at(milliseconds(1500))));
}

TEST(Backend, ARetryThatNeverReportsIsHandedOutAgainAfterTheSameStep) {
  Backend b = makeBackend();
  b.markDown(at(seconds(0)));
  EXPECT_TRUE(b.tryAdmit(at(seconds(1))));  // its client went away mid-connect
  EXPECT_FALSE(b.tryAdmit(at(milliseconds(1999))));
  EXPECT_TRUE(b.tryAdmit(at(seconds(2))));
  EXPECT_EQ(b.markDown(at(seconds(2))), seconds(2));  // the retry's failure escalates once
}

TEST(Backend, FailuresDuringAnEjectionAreTheSameOutage) {
  // Sessions that picked the backend just before it was ejected fail one after another.
  Backend b = makeBackend();
  EXPECT_EQ(b.markDown(at(milliseconds(0))), seconds(1));
  for (int k = 1; k < 10; ++k) EXPECT_EQ(b.markDown(at(milliseconds(k * 50))), std::nullopt);
  EXPECT_EQ(b.passiveState(at(milliseconds(999))), PassiveState::Ejected);
  EXPECT_EQ(b.passiveState(at(seconds(1))), PassiveState::HalfOpen);
}

TEST(Backend, AFailureAfterTheBackoffEscalatesEvenWithoutTheRetry) {
  Backend b = makeBackend();
  b.markDown(at(seconds(0)));
  EXPECT_EQ(b.markDown(at(seconds(5))), seconds(2));
}

TEST(Backend, ManyWorkersFailingAtOnceEjectOnce) {
  constexpr int kThreads = 4;
  Backend b = makeBackend();
  std::atomic<int> started{0};
  std::vector<int> ejections(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ++started;
      while (started.load() < kThreads) {
      }
      for (int k = 0; k < 1000; ++k) ejections[t] += b.markDown(at(milliseconds(k % 7))) ? 1 : 0;
    });
  }
  for (auto& th : threads) th.join();
  int total = 0;
  for (int e : ejections) total += e;
  EXPECT_EQ(total, 1);
  EXPECT_EQ(b.markDown(at(seconds(1))), seconds(2));  // and one strike
}

TEST(Backend, OneOfManyConcurrentPickersGetsTheRetry) {
  constexpr int kThreads = 4;
  Backend b = makeBackend();
  b.markDown(at(seconds(0)));
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int k = 0; k < 1000; ++k) admitted += b.tryAdmit(at(seconds(1))) ? 1 : 0;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), 1);
}

TEST(Backend, ZeroFirstBackoffMakesPassiveEjectionAFormality) {
  Backend b = makeBackend();
  const PassiveBackoff off{seconds(0), seconds(0)};
  EXPECT_EQ(b.markDown(at(seconds(0)), off), seconds(0));
  EXPECT_TRUE(b.available(at(seconds(0))));
  EXPECT_TRUE(b.tryAdmit(at(seconds(0)), off));
  EXPECT_TRUE(b.tryAdmit(at(seconds(0)), off));
}

// What the admin's status reads: the last failure (kept after a success) and the end of the
// ejection in force, after a sequence of passive events on the injected clock.
struct PassiveStatusCase {
  const char* name;
  // at ms: 'd' markDown, 'u' markUp, 'a' tryAdmit, 'f' / 'p' a failed / good probe (1 of 1)
  std::vector<std::pair<char, int>> events;
  int queryMs;
  std::optional<int> lastFailureMs;
  std::optional<int> ejectedUntilMs;
};

TEST(Backend, StatusAccessorsFollowPassiveHealth) {
  const PassiveStatusCase cases[] = {
      {"NeverFailed", {}, 0, std::nullopt, std::nullopt},
      {"EjectedAfterAFailure", {{'d', 100}}, 500, 100, 1100},
      {"NotEjectedOnceTheBackoffIsOver", {{'d', 100}}, 1100, 100, std::nullopt},
      {"ALaterFailureInTheSameOutageMovesOnlyTheLastFailure",
       {{'d', 100}, {'d', 400}},
       500,
       400,
       1100},
      {"ASuccessEndsTheEjectionButTheFailureIsRemembered",
       {{'d', 0}, {'u', 300}},
       400,
       0,
       std::nullopt},
      {"TheHalfOpenRetryOutCountsAsEjected", {{'d', 0}, {'a', 1000}}, 1500, 0, 2000},
      {"AFailedRetryEjectsForTheNextStep", {{'d', 0}, {'a', 1000}, {'d', 1000}}, 1500, 1000, 3000},
      {"ComingUpByProbeLeavesTheLastFailure",
       {{'f', 0}, {'d', 0}, {'p', 200}},
       300,
       0,
       std::nullopt},
  };
  for (const auto& c : cases) {
    Backend b = makeBackend();
    for (const auto& [what, ms] : c.events) {
      const auto t = at(milliseconds(ms));
      if (what == 'd') b.markDown(t);
      if (what == 'u') b.markUp(t);
      if (what == 'a') b.tryAdmit(t);
      if (what == 'f') b.reportProbe(false, 1, 1, t);
      if (what == 'p') b.reportProbe(true, 1, 1, t);
    }
    const auto query = at(milliseconds(c.queryMs));
    const auto want = [](std::optional<int> ms) -> std::optional<TimePoint> {
      if (!ms) return std::nullopt;
      return at(milliseconds(*ms));
    };
    EXPECT_EQ(b.lastFailure(), want(c.lastFailureMs)) << c.name;
    EXPECT_EQ(b.ejectedUntil(query), want(c.ejectedUntilMs)) << c.name;
  }
}

struct ProbeCase {
  const char* results;  // '+' success, '-' failure, in order
  uint32_t rise, fall;
  const char* states;       // 'U' up / 'D' down after each result
  const char* transitions;  // '.' none, 'u' went up, 'd' went down
};

TEST(Backend, ActiveChecksRiseAndFall) {
  const ProbeCase cases[] = {
      {"---", 2, 3, "UUD", "..d"},
      {"--+---", 2, 3, "UUUUUD", ".....d"},  // a success resets the failure streak
      {"---++", 2, 3, "UUDDU", "..d.u"},
      {"----+-++", 2, 3, "UUDDDDDU", "..d....u"},  // a failure resets the success streak
      {"-+-+", 1, 1, "DUDU", "dudu"},
      {"-+", 0, 0, "DU", "du"},  // 0 counts as 1
      {"+++", 2, 3, "UUU", "..."},
  };
  for (const auto& c : cases) {
    Backend b = makeBackend();
    const std::string results = c.results;
    for (std::size_t k = 0; k < results.size(); ++k) {
      const auto t = b.reportProbe(results[k] == '+', c.rise, c.fall, at(seconds(int(k))));
      const char want = c.transitions[k];
      EXPECT_EQ(t, want == 'u'   ? ProbeTransition::WentUp
                   : want == 'd' ? ProbeTransition::WentDown
                                 : ProbeTransition::None)
          << c.results << " result " << k;
      EXPECT_EQ(b.activeUp(), c.states[k] == 'U') << c.results << " result " << k;
      EXPECT_EQ(b.available(at(seconds(int(k)))), c.states[k] == 'U');
    }
  }
}

TEST(Backend, ComingUpByProbeEndsAPassiveEjectionAndStartsSlowStart) {
  Backend b = makeBackend();
  b.reportProbe(false, 1, 1, at(seconds(0)));
  b.markDown(at(seconds(0)));
  b.reportProbe(true, 1, 1, at(milliseconds(300)));
  EXPECT_EQ(b.passiveState(at(milliseconds(300))), PassiveState::Up);
  EXPECT_TRUE(b.available(at(milliseconds(300))));
  EXPECT_EQ(b.upSince(), at(milliseconds(300)));
}

TEST(Backend, ActivelyDownIsUnavailableWhateverPassiveHealthSays) {
  Backend b = makeBackend();
  b.reportProbe(false, 2, 1, at(seconds(0)));
  b.markUp(at(seconds(0)));
  EXPECT_FALSE(b.available(at(seconds(0))));
}

TEST(Backend, DrainAndEnable) {
  Backend b = makeBackend();
  EXPECT_TRUE(b.drain());
  EXPECT_FALSE(b.drain());  // already draining
  EXPECT_TRUE(b.draining());
  EXPECT_FALSE(b.available(at(seconds(0))));
  EXPECT_EQ(b.upSince(), std::nullopt);
  EXPECT_TRUE(b.enable(at(seconds(7))));
  EXPECT_FALSE(b.enable(at(seconds(8))));  // already enabled: slow start is not restarted
  EXPECT_TRUE(b.available(at(seconds(8))));
  EXPECT_EQ(b.upSince(), at(seconds(7)));
}

TEST(Backend, FullAtItsConnectionLimitOnly) {
  auto b = std::make_shared<Backend>(BackendSpec{"app", "a", "h", 1, 1, 2});
  auto unlimited = std::make_shared<Backend>(BackendSpec{"app", "u", "h", 1, 1, 0});
  BackendLease one(b), two(b);
  EXPECT_TRUE(b->full());
  EXPECT_FALSE(b->available(at(seconds(0))));
  std::vector<BackendLease> many;
  for (int k = 0; k < 1000; ++k) many.emplace_back(unlimited);
  EXPECT_FALSE(unlimited->full());
}

}  // namespace
}  // namespace wsgate::balancer
