// DNS responses -> the backends discovery takes from them: records read (A, AAAA, SRV, glue),
// malformed messages refused, and the sets made from them sorted, deduplicated and capped.
#include "proxy/control/dns_answer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace wsgate::proxy {
namespace {

using Bytes = std::vector<unsigned char>;

constexpr uint16_t kA = 1, kAaaa = 28, kSrv = 33, kCname = 5;

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<unsigned char>(v >> 8));
  b.push_back(static_cast<unsigned char>(v));
}

void putName(Bytes& b, std::string_view name) {
  while (!name.empty()) {
    const auto dot = name.find('.');
    const std::string_view label = name.substr(0, dot);
    b.push_back(static_cast<unsigned char>(label.size()));
    b.insert(b.end(), label.begin(), label.end());
    name = dot == std::string_view::npos ? std::string_view{} : name.substr(dot + 1);
  }
  b.push_back(0);
}

struct Record {
  std::string name;  // "" writes a pointer to the question's name
  uint16_t type;
  Bytes rdata;
};

Bytes a(uint8_t w, uint8_t x, uint8_t y, uint8_t z) { return {w, x, y, z}; }
Bytes aaaaLoopbackish(uint8_t last) {
  Bytes b(16, 0);
  b[0] = 0xfd;
  b[15] = last;
  return b;
}
Bytes srv(uint16_t priority, uint16_t weight, uint16_t port, std::string_view target) {
  Bytes b;
  put16(b, priority);
  put16(b, weight);
  put16(b, port);
  putName(b, target);
  return b;
}
Bytes cname(std::string_view target) {
  Bytes b;
  putName(b, target);
  return b;
}

// A response to `question` (type qtype) with these sections; flags QR RD RA and `rcode`.
Bytes response(std::string_view question, uint16_t qtype, const std::vector<Record>& answers,
               const std::vector<Record>& additional = {}, int rcode = 0) {
  Bytes b;
  put16(b, 0x1234);
  put16(b, static_cast<uint16_t>(0x8180 | rcode));
  put16(b, 1);
  put16(b, static_cast<uint16_t>(answers.size()));
  put16(b, 0);
  put16(b, static_cast<uint16_t>(additional.size()));
  putName(b, question);
  put16(b, qtype);
  put16(b, 1);
  for (const auto* section : {&answers, &additional}) {
    for (const auto& r : *section) {
      if (r.name.empty()) {
        put16(b, 0xc00c);  // the question's name, at offset 12
      } else {
        putName(b, r.name);
      }
      put16(b, r.type);
      put16(b, 1);
      put16(b, 0);
      put16(b, 30);  // TTL
      put16(b, static_cast<uint16_t>(r.rdata.size()));
      b.insert(b.end(), r.rdata.begin(), r.rdata.end());
    }
  }
  return b;
}

DnsAnswer parsed(const Bytes& b) {
  std::string error;
  auto r = parseDnsAnswer(b, error);
  EXPECT_TRUE(r) << error;
  return r.value_or(DnsAnswer{});
}

TEST(DnsAnswer, ReadsARecords) {
  const DnsAnswer r = parsed(
      response("chat.svc", kA, {{"", kA, a(10, 0, 0, 2)}, {"chat.svc", kA, a(10, 0, 0, 1)}}));
  EXPECT_EQ(r.rcode, 0);
  EXPECT_EQ(r.addresses, (std::vector<std::string>{"10.0.0.2", "10.0.0.1"}));
  EXPECT_TRUE(r.srv.empty());
}

TEST(DnsAnswer, ReadsAaaaRecords) {
  const DnsAnswer r = parsed(response("chat.svc", kAaaa, {{"", kAaaa, aaaaLoopbackish(1)}}));
  EXPECT_EQ(r.addresses, std::vector<std::string>{"fd00::1"});
}

TEST(DnsAnswer, FollowsACnameChainToItsAddresses) {
  const DnsAnswer r = parsed(response(
      "chat.svc", kA, {{"", kCname, cname("pods.svc")}, {"pods.svc", kA, a(10, 0, 0, 7)}}));
  EXPECT_EQ(r.addresses, std::vector<std::string>{"10.0.0.7"});
}

TEST(DnsAnswer, ReadsSrvRecordsAndTheirGlue) {
  const DnsAnswer r = parsed(response(
      "_ws._tcp.chat.svc", kSrv,
      {{"", kSrv, srv(10, 5, 9001, "Pod-1.Chat.svc.")},
       {"", kSrv, srv(20, 1, 9002, "pod-2.chat.svc")}},
      {{"pod-1.chat.svc", kA, a(10, 0, 0, 1)}, {"pod-1.chat.svc", kAaaa, aaaaLoopbackish(1)}}));
  ASSERT_EQ(r.srv.size(), 2u);
  EXPECT_EQ(r.srv[0], (SrvRecord{10, 5, 9001, "pod-1.chat.svc"}));
  EXPECT_EQ(r.srv[1], (SrvRecord{20, 1, 9002, "pod-2.chat.svc"}));
  EXPECT_TRUE(r.addresses.empty());
  using Glue = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(r.glue, (Glue{{"pod-1.chat.svc", "10.0.0.1"}, {"pod-1.chat.svc", "fd00::1"}}));
}

TEST(DnsAnswer, ReadsACompressedSrvTarget) {
  // The target is a pointer to the question's name (offset 12).
  Bytes rdata;
  put16(rdata, 0);
  put16(rdata, 0);
  put16(rdata, 9001);
  put16(rdata, 0xc00c);
  const DnsAnswer r = parsed(response("chat.svc", kSrv, {{"", kSrv, rdata}}));
  ASSERT_EQ(r.srv.size(), 1u);
  EXPECT_EQ(r.srv[0].target, "chat.svc");
}

TEST(DnsAnswer, KeepsTheResponseCode) {
  EXPECT_EQ(parsed(response("chat.svc", kA, {}, {}, 3)).rcode, 3);  // NXDOMAIN
  EXPECT_EQ(parsed(response("chat.svc", kA, {}, {}, 2)).rcode, 2);  // SERVFAIL
}

struct MalformedCase {
  std::string_view name;
  Bytes message;
  std::string_view error;
};
void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }

Bytes truncatedAfter(Bytes b, std::size_t keep) {
  b.resize(keep);
  return b;
}

Bytes asQuery(Bytes b) {
  b[2] &= 0x7f;  // QR off
  return b;
}

Bytes srvRdata(std::size_t length) {
  Bytes b(length, 0);
  return b;
}

Bytes pointerPastTheEnd() {
  Bytes rdata;
  put16(rdata, 0);
  put16(rdata, 0);
  put16(rdata, 9001);
  put16(rdata, 0xc0ff);
  return rdata;
}

class RefusesMalformedAnswers : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(RefusesMalformedAnswers, SayingWhy) {
  std::string error;
  EXPECT_FALSE(parseDnsAnswer(GetParam().message, error));
  EXPECT_EQ(error, GetParam().error);
}

const Bytes kTwoAddresses =
    response("chat.svc", kA, {{"", kA, a(10, 0, 0, 1)}, {"", kA, a(10, 0, 0, 2)}});

const MalformedCase kMalformed[] = {
    {"Empty", {}, "malformed response (0 bytes)"},
    {"HeaderOnly", truncatedAfter(kTwoAddresses, 11), "malformed response (11 bytes)"},
    {"LastRecordCut", truncatedAfter(kTwoAddresses, kTwoAddresses.size() - 2),
     "malformed response (56 bytes)"},
    {"AQuery", asQuery(kTwoAddresses), "a query where a response was expected"},
    {"AOfFiveBytes", response("chat.svc", kA, {{"", kA, Bytes{10, 0, 0, 1, 9}}}),
     "an A record of 5 bytes"},
    {"AaaaOfFourBytes", response("chat.svc", kAaaa, {{"", kAaaa, a(10, 0, 0, 1)}}),
     "an AAAA record of 4 bytes"},
    {"SrvTooShort", response("chat.svc", kSrv, {{"", kSrv, srvRdata(6)}}),
     "a malformed SRV record"},
    {"SrvTargetPointsPastTheEnd", response("chat.svc", kSrv, {{"", kSrv, pointerPastTheEnd()}}),
     "a malformed SRV record"},
    {"SrvWithBytesAfterItsTarget",
     response("chat.svc", kSrv,
              {{"", kSrv,
                [] {
                  Bytes b = srv(0, 0, 9001, "a.svc");
                  b.push_back(7);
                  return b;
                }()}}),
     "a malformed SRV record"},
    // dn_expand writes such bytes as \DDD escapes (found by the dns_answer fuzz target: a
    // target of escapes longer than any host name).
    {"SrvTargetWithANonPrintableByte",
     response("chat.svc", kSrv, {{"", kSrv, srv(0, 0, 9001, "pod\xff.svc")}}),
     "a SRV record whose target is not a host name"},
    {"SrvTargetWithASpace", response("chat.svc", kSrv, {{"", kSrv, srv(0, 0, 9001, "a b.svc")}}),
     "a SRV record whose target is not a host name"},
};

INSTANTIATE_TEST_SUITE_P(Table, RefusesMalformedAnswers, ::testing::ValuesIn(kMalformed),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(AddressEndpoints, SortsAndDropsDuplicates) {
  const std::vector<std::string> addresses{"10.0.0.2", "10.0.0.1", "10.0.0.2", "fd00::1"};
  EXPECT_EQ(addressEndpoints(addresses, 9001),
            (Endpoints{{"10.0.0.1", 9001, 0}, {"10.0.0.2", 9001, 0}, {"fd00::1", 9001, 0}}));
}

TEST(AddressEndpoints, GivesTheSameSetInAnyOrder) {
  const std::vector<std::string> one{"10.0.0.3", "10.0.0.1", "10.0.0.2"};
  const std::vector<std::string> two{"10.0.0.2", "10.0.0.3", "10.0.0.1"};
  EXPECT_EQ(addressEndpoints(one, 80), addressEndpoints(two, 80));
}

TEST(AddressEndpoints, KeepsAtMostTheCap) {
  std::vector<std::string> addresses;
  for (int i = 0; i < 1200; ++i)
    addresses.push_back("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256));
  EXPECT_EQ(addressEndpoints(addresses, 80).size(), kMaxEndpoints);
}

TEST(SrvEndpoints, TakesTheLowestPriorityWithPortsAndWeights) {
  const std::vector<SrvRecord> records{
      {10, 5, 9001, "a.svc"}, {10, 0, 9002, "b.svc"}, {20, 1, 9003, "c.svc"}};
  const std::map<std::string, std::vector<std::string>> dns{
      {"a.svc", {"10.0.0.1"}}, {"b.svc", {"10.0.0.2", "fd00::2"}}, {"c.svc", {"10.0.0.3"}}};
  auto lookup = [&](const std::string& name) { return dns.at(name); };
  EXPECT_EQ(srvEndpoints(records, lookup),
            (Endpoints{{"10.0.0.1", 9001, 5}, {"10.0.0.2", 9002, 1}, {"fd00::2", 9002, 1}}));
}

TEST(SrvEndpoints, SkipsTheRootTargetAndUnknownHosts) {
  const std::vector<SrvRecord> records{
      {0, 1, 9001, ""}, {5, 1, 9001, "gone.svc"}, {5, 1, 9002, "here.svc"}};
  auto lookup = [](const std::string& name) {
    return name == "here.svc" ? std::vector<std::string>{"10.0.0.9"} : std::vector<std::string>{};
  };
  EXPECT_EQ(srvEndpoints(records, lookup), (Endpoints{{"10.0.0.9", 9002, 1}}));
}

TEST(EndpointName, BracketsIpv6) {
  EXPECT_EQ(endpointName({"10.1.2.3", 9001, 0}), "10.1.2.3:9001");
  EXPECT_EQ(endpointName({"fd00::1", 9001, 0}), "[fd00::1]:9001");
}

}  // namespace
}  // namespace wsgate::proxy
