// The pure half of the systemd notification protocol: where NOTIFY_SOCKET points and what
// each message says (sd_notify(3)).

#include "proxy/control/sd_notify.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <string>

namespace wsgate::proxy {
namespace {

TEST(NotifyAddress, AnAbsolutePathIsAPathnameSocketWithItsNul) {
  const auto a = notifyAddress("/run/systemd/notify");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->addr.sun_family, AF_UNIX);
  EXPECT_STREQ(a->addr.sun_path, "/run/systemd/notify");
  EXPECT_EQ(a->length, offsetof(sockaddr_un, sun_path) + 19 + 1);
}

TEST(NotifyAddress, AnAtSignIsTheAbstractNamespaceWithoutANul) {
  const auto a = notifyAddress("@wsgate/notify");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->addr.sun_path[0], '\0');
  EXPECT_EQ(std::string(a->addr.sun_path + 1, 13), "wsgate/notify");
  EXPECT_EQ(a->length, offsetof(sockaddr_un, sun_path) + 14);
}

TEST(NotifyAddress, RefusesWhatIsNoSocketAddress) {
  const std::string longest(sizeof(sockaddr_un::sun_path) - 1, 'x');
  struct Case {
    std::string value;
    bool ok;
  };
  const Case cases[] = {
      {"", false},
      {"/", false},           // nothing after the slash
      {"@", false},           // an empty abstract name
      {"run/notify", false},  // relative
      {"notify", false},
      {"/" + longest, false},  // no room for the NUL
      {"/" + longest.substr(1), true},
      {"@" + longest, true},  // an abstract name needs no NUL
      {"@" + longest + "y", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(notifyAddress(c.value).has_value(), c.ok) << "'" << c.value << "'";
  }
}

TEST(NotifyMessages, AreTheAssignmentsSystemdReads) {
  EXPECT_EQ(readyMessage(""), "READY=1");
  EXPECT_EQ(readyMessage("serving"), "READY=1\nSTATUS=serving");
  EXPECT_EQ(reloadingMessage(123456789, "reloading (SIGHUP)"),
            "RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=reloading (SIGHUP)");
  EXPECT_EQ(stoppingMessage("draining 3 session(s)"), "STOPPING=1\nSTATUS=draining 3 session(s)");
  EXPECT_EQ(mainPidMessage(4242, ""), "MAINPID=4242\nREADY=1");
}

TEST(NotifyMessages, AStatusStaysOneLine) {
  // A newline in STATUS would start an assignment of its own ("READY=1" from a file name).
  EXPECT_EQ(readyMessage("a\nREADY=0"), "READY=1\nSTATUS=a READY=0");
}

}  // namespace
}  // namespace wsgate::proxy
