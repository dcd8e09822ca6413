// What each DNS answer does to a discover entry's set (Discovery::Target::apply): a new set is
// a change, the same one is not, a failure keeps the last set and is said once, an empty
// answer is held for hold_empty, and the recovery is said once.
#include "proxy/control/discovery.h"

#include <gtest/gtest.h>

namespace wsgate::proxy {
namespace {

using namespace std::chrono_literals;
using Outcome = Discovery::Outcome;
using Status = Resolution::Status;

const Endpoints kTwo{{"10.0.0.1", 9001, 0}, {"10.0.0.2", 9001, 0}};
const Endpoints kThree{{"10.0.0.1", 9001, 0}, {"10.0.0.2", 9001, 0}, {"10.0.0.3", 9001, 0}};

Resolution ok(Endpoints e) { return {Status::Ok, std::move(e), ""}; }
Resolution failed() { return {Status::Failed, {}, "SERVFAIL for A chat.svc from 127.0.0.1:53"}; }
Resolution empty() { return {Status::Empty, {}, "NXDOMAIN"}; }

Discovery::Target target(std::chrono::milliseconds holdEmpty = 30s) {
  Discovery::Target t;
  t.pool = "chat";
  t.config.dns = "chat.svc";
  t.config.port = 9001;
  t.config.holdEmpty = holdEmpty;
  return t;
}

const Discovery::Clock::time_point kT0{std::chrono::seconds(1000)};

TEST(DiscoveryTarget, TakesTheFirstAnswerAsAChange) {
  auto t = target();
  std::vector<Discovery::Note> notes;
  EXPECT_EQ(t.apply(ok(kTwo), kT0, notes), Outcome::Changed);
  EXPECT_EQ(t.current, kTwo);
  EXPECT_TRUE(t.resolved);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_FALSE(notes[0].warning);
  EXPECT_EQ(notes[0].text,
            "discovery pool=chat dns=chat.svc:9001: 2 backend(s): +10.0.0.1:9001 +10.0.0.2:9001");
  EXPECT_EQ(t.changed, 1u);
}

TEST(DiscoveryTarget, SaysNothingForTheSameSet) {
  auto t = target();
  std::vector<Discovery::Note> notes;
  t.apply(ok(kTwo), kT0, notes);
  notes.clear();
  EXPECT_EQ(t.apply(ok(kTwo), kT0 + 1s, notes), Outcome::Unchanged);
  EXPECT_TRUE(notes.empty());
  EXPECT_EQ(t.ok, 1u);
  EXPECT_EQ(t.lastSuccess, kT0 + 1s);
}

TEST(DiscoveryTarget, NamesWhatJoinedAndWhatLeft) {
  auto t = target();
  std::vector<Discovery::Note> notes;
  t.apply(ok(kTwo), kT0, notes);
  notes.clear();
  EXPECT_EQ(t.apply(ok({{"10.0.0.2", 9001, 0}, {"10.0.0.3", 9001, 0}}), kT0 + 1s, notes),
            Outcome::Changed);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].text,
            "discovery pool=chat dns=chat.svc:9001: 2 backend(s): +10.0.0.3:9001 -10.0.0.1:9001");
}

TEST(DiscoveryTarget, DropsAnAddressThatLeft) {
  auto t = target();
  std::vector<Discovery::Note> notes;
  t.apply(ok(kThree), kT0, notes);
  EXPECT_EQ(t.apply(ok(kTwo), kT0 + 1s, notes), Outcome::Changed);
  EXPECT_EQ(t.current, kTwo);
  EXPECT_EQ(notes.back().text,
            "discovery pool=chat dns=chat.svc:9001: 2 backend(s): -10.0.0.3:9001");
}

TEST(DiscoveryTarget, KeepsTheLastSetWhileTheResolverFailsAndSaysSoOnce) {
  auto t = target();
  std::vector<Discovery::Note> notes;
  t.apply(ok(kThree), kT0, notes);
  notes.clear();
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(t.apply(failed(), kT0 + i * 1s, notes), Outcome::Failed);
    EXPECT_EQ(t.current, kThree);
  }
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_TRUE(notes[0].warning);
  EXPECT_EQ(notes[0].text,
            "discovery pool=chat dns=chat.svc:9001: resolution failed: SERVFAIL for A chat.svc "
            "from 127.0.0.1:53; keeping its last 3 backend(s) (said once: the next line is when "
            "it answers again)");
  EXPECT_EQ(t.failed, 5u);
  EXPECT_TRUE(t.failing);
  EXPECT_EQ(t.lastSuccess, kT0);
}

TEST(DiscoveryTarget, SaysOnceWhenTheResolverAnswersAgain) {
  auto t = target();
  std::vector<Discovery::Note> notes;
  t.apply(ok(kTwo), kT0, notes);
  t.apply(failed(), kT0 + 1s, notes);
  t.apply(failed(), kT0 + 2s, notes);
  notes.clear();
  EXPECT_EQ(t.apply(ok(kTwo), kT0 + 3500ms, notes), Outcome::Unchanged);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_FALSE(notes[0].warning);
  EXPECT_EQ(notes[0].text,
            "discovery pool=chat dns=chat.svc:9001: answers again after 2 failed resolution(s) "
            "over 2.5s");
  EXPECT_FALSE(t.failing);
  notes.clear();
  t.apply(ok(kTwo), kT0 + 4s, notes);
  EXPECT_TRUE(notes.empty());
}

TEST(DiscoveryTarget, StartsWithoutBackendsWhenTheFirstResolutionFails) {
  auto t = target();
  std::vector<Discovery::Note> notes;
  EXPECT_EQ(t.apply(failed(), kT0, notes), Outcome::Failed);
  EXPECT_TRUE(t.current.empty());
  EXPECT_FALSE(t.resolved);
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_NE(notes[0].text.find("no backends from it until it answers"), std::string::npos);
}

TEST(DiscoveryTarget, HoldsTheLastSetOverAnEmptyAnswerForHoldEmpty) {
  auto t = target(10s);
  std::vector<Discovery::Note> notes;
  t.apply(ok(kTwo), kT0, notes);
  notes.clear();
  EXPECT_EQ(t.apply(empty(), kT0 + 1s, notes), Outcome::Held);
  EXPECT_EQ(t.apply(empty(), kT0 + 5s, notes), Outcome::Held);
  EXPECT_EQ(t.current, kTwo);
  ASSERT_EQ(notes.size(), 1u);  // said when the hold starts, not at every answer
  EXPECT_TRUE(notes[0].warning);
  EXPECT_EQ(t.apply(empty(), kT0 + 11s, notes), Outcome::Changed);
  EXPECT_TRUE(t.current.empty());
  EXPECT_EQ(notes.size(), 2u);
  EXPECT_EQ(t.held, 2u);
  notes.clear();
  EXPECT_EQ(t.apply(empty(), kT0 + 12s, notes), Outcome::Unchanged);
  EXPECT_TRUE(notes.empty());
}

TEST(DiscoveryTarget, AppliesAnEmptyAnswerAtOnceWithoutHold) {
  auto t = target(0s);
  std::vector<Discovery::Note> notes;
  t.apply(ok(kTwo), kT0, notes);
  EXPECT_EQ(t.apply(empty(), kT0 + 1s, notes), Outcome::Changed);
  EXPECT_TRUE(t.current.empty());
}

TEST(DiscoveryTarget, RecordsBackWithinTheHoldStartItOver) {
  auto t = target(10s);
  std::vector<Discovery::Note> notes;
  t.apply(ok(kTwo), kT0, notes);
  t.apply(empty(), kT0 + 1s, notes);
  EXPECT_EQ(t.apply(ok(kTwo), kT0 + 8s, notes), Outcome::Unchanged);
  EXPECT_EQ(t.apply(empty(), kT0 + 12s, notes), Outcome::Held);  // a new hold from 12s
  EXPECT_EQ(t.apply(empty(), kT0 + 21s, notes), Outcome::Held);
  EXPECT_EQ(t.apply(empty(), kT0 + 22s, notes), Outcome::Changed);
}

TEST(DiscoveryTarget, CountsAChangedWeightAsAChange) {
  auto t = target();
  std::vector<Discovery::Note> notes;
  t.apply(ok({{"10.0.0.1", 9001, 1}}), kT0, notes);
  EXPECT_EQ(t.apply(ok({{"10.0.0.1", 9001, 5}}), kT0 + 1s, notes), Outcome::Changed);
  EXPECT_EQ(notes.back().text, "discovery pool=chat dns=chat.svc:9001: 1 backend(s): (weights)");
}

}  // namespace
}  // namespace wsgate::proxy
