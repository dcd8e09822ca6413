// CIDR blocks for proxy_protocol_from: what parses (and how it prints back), what is
// refused and why, and which addresses a block contains.
#include "conf/cidr.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <array>
#include <string>

namespace wsgate::conf {
namespace {

TEST(Cidr, ParsesBlocksAndBareAddresses) {
  struct Case {
    std::string_view text, printed;
  };
  const Case cases[] = {
      {"10.0.0.0/8", "10.0.0.0/8"},
      {"127.0.0.2", "127.0.0.2/32"},
      {"0.0.0.0/0", "0.0.0.0/0"},
      {"192.168.1.128/25", "192.168.1.128/25"},
      {"::1", "::1/128"},
      {"2001:db8::/32", "2001:db8::/32"},
      {"::/0", "::/0"},
      {"fe80::/10", "fe80::/10"},
      {"::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104"},
  };
  for (const Case& c : cases) {
    std::string why;
    const auto cidr = parseCidr(c.text, why);
    ASSERT_TRUE(cidr.has_value()) << c.text << ": " << why;
    EXPECT_EQ(cidr->str(), c.printed);
  }
}

TEST(Cidr, RefusesWhatIsNotABlock) {
  struct Case {
    std::string_view text, why;
  };
  const Case cases[] = {
      {"", "is not an IPv4 or IPv6 address"},
      {"10.0.0/8", "is not an IPv4 or IPv6 address"},
      {"010.0.0.0/8", "is not an IPv4 or IPv6 address"},
      {"example.com", "is not an IPv4 or IPv6 address"},
      {"fe80::1%eth0", "is not an IPv4 or IPv6 address"},
      {"/8", "is not an IPv4 or IPv6 address"},
      {"10.0.0.0/", "has an invalid prefix length (0 to 32 for IPv4)"},
      {"10.0.0.0/33", "has an invalid prefix length (0 to 32 for IPv4)"},
      {"10.0.0.0/08", "has an invalid prefix length (0 to 32 for IPv4)"},
      {"10.0.0.0/-8", "has an invalid prefix length (0 to 32 for IPv4)"},
      {"10.0.0.0/8/8", "has an invalid prefix length (0 to 32 for IPv4)"},
      {"::/129", "has an invalid prefix length (0 to 128 for IPv6)"},
      {"10.0.0.1/8", "has bits set past its prefix (the block is 10.0.0.0/8)"},
      {"192.168.1.129/25", "has bits set past its prefix (the block is 192.168.1.128/25)"},
      {"2001:db8::1/32", "has bits set past its prefix (the block is 2001:db8::/32)"},
  };
  for (const Case& c : cases) {
    std::string why;
    EXPECT_FALSE(parseCidr(c.text, why).has_value()) << c.text;
    EXPECT_EQ(why, c.why) << c.text;
  }
}

std::array<uint8_t, 16> ip(const char* text, bool& v6) {
  std::array<uint8_t, 16> out{};
  v6 = std::string_view(text).find(':') != std::string_view::npos;
  EXPECT_EQ(inet_pton(v6 ? AF_INET6 : AF_INET, text, out.data()), 1) << text;
  return out;
}

TEST(Cidr, ContainsExactlyTheAddressesOfItsPrefix) {
  struct Case {
    std::string_view block;
    const char* address;
    bool inside;
  };
  const Case cases[] = {
      {"127.0.0.2", "127.0.0.2", true},
      {"127.0.0.2", "127.0.0.1", false},
      {"10.0.0.0/8", "10.255.255.255", true},
      {"10.0.0.0/8", "11.0.0.0", false},
      {"192.168.1.128/25", "192.168.1.128", true},
      {"192.168.1.128/25", "192.168.1.127", false},
      {"192.168.1.128/25", "192.168.1.255", true},
      {"0.0.0.0/0", "203.0.113.9", true},
      {"0.0.0.0/0", "::1", false},              // IPv4 blocks hold no IPv6 address
      {"10.0.0.0/8", "::ffff:10.1.2.3", true},  // but do hold IPv4-mapped ones
      {"10.0.0.0/8", "::ffff:11.1.2.3", false},
      {"10.0.0.0/8", "::10.1.2.3", false},  // IPv4-compatible is not mapped
      {"::/0", "10.1.2.3", false},
      {"::1", "::1", true},
      {"::1", "::2", false},
      {"fe80::/10", "febf::1", true},
      {"fe80::/10", "fec0::1", false},
      {"2001:db8::/32", "2001:db8:ffff::1", true},
      {"2001:db8::/32", "2001:db9::1", false},
  };
  for (const Case& c : cases) {
    std::string why;
    const auto block = parseCidr(c.block, why);
    ASSERT_TRUE(block.has_value()) << c.block;
    bool v6 = false;
    const auto address = ip(c.address, v6);
    EXPECT_EQ(cidrContains(*block, v6, address.data()), c.inside) << c.block << " " << c.address;
  }
}

}  // namespace
}  // namespace wsgate::conf
