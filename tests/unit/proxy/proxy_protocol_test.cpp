// The PROXY protocol codec: v1 and v2 headers read from the start of a byte span, each
// rejection with its kind, every cut of a valid header asking for more, and the v2 encoder
// read back by the parser.
#include "proxy/net/proxy_protocol.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace wsgate::net {
namespace {

using namespace std::string_literals;

ProxyAddress addr(const char* text, uint16_t port) {
  ProxyAddress a;
  a.v6 = std::string_view(text).find(':') != std::string_view::npos;
  EXPECT_EQ(inet_pton(a.v6 ? AF_INET6 : AF_INET, text, a.ip.data()), 1) << text;
  a.port = port;
  return a;
}

const std::string kSig = "\r\n\r\n\0\r\nQUIT\n"s;

// A v2 header: version/command byte, family byte, then `body` with its length.
std::string v2(uint8_t verCmd, uint8_t fam, const std::string& body) {
  std::string h = kSig;
  h += static_cast<char>(verCmd);
  h += static_cast<char>(fam);
  h += static_cast<char>(body.size() >> 8);
  h += static_cast<char>(body.size() & 0xFF);
  return h + body;
}
std::string v2Length(uint8_t verCmd, uint8_t fam, uint16_t length) {
  std::string h = kSig;
  h += static_cast<char>(verCmd);
  h += static_cast<char>(fam);
  h += static_cast<char>(length >> 8);
  h += static_cast<char>(length & 0xFF);
  return h;
}
// 1.2.3.4:80 -> 5.6.7.8:443 as a v2 address block.
const std::string kInetBlock = "\x01\x02\x03\x04\x05\x06\x07\x08\x00\x50\x01\xbb"s;
std::string inet6Block() {
  std::string b(32, '\0');
  b[15] = 1;       // ::1
  b[16] = '\x20';  // 2001:db8::2
  b[17] = '\x01';
  b[18] = '\x0d';
  b[19] = '\xb8';
  b[31] = 2;
  return b + "\x30\x39\x00\x50"s;  // 12345 -> 80
}

struct Accept {
  std::string_view name;
  std::string header;  // the header alone; cases also run with bytes after it
  int version;
  bool local;
  std::optional<ProxyAddress> source, destination;
};

std::vector<Accept> accepted() {
  return {
      {"V1Tcp4", "PROXY TCP4 192.168.0.1 10.0.0.1 56324 443\r\n", 1, false,
       addr("192.168.0.1", 56324), addr("10.0.0.1", 443)},
      {"V1Tcp6", "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n", 1, false, addr("2001:db8::1", 1),
       addr("::1", 65535)},
      {"V1Tcp6MappedV4", "PROXY TCP6 ::ffff:10.0.0.1 ::1 0 8080\r\n", 1, false,
       addr("::ffff:10.0.0.1", 0), addr("::1", 8080)},
      {"V1Tcp6Longest",
       "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:"
       "ffff 65535 65535\r\n",
       1, false, addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
       addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)},
      {"V1UnknownBare", "PROXY UNKNOWN\r\n", 1, true, std::nullopt, std::nullopt},
      {"V1UnknownWithAddresses", "PROXY UNKNOWN ffff::1 ::2 1 2\r\n", 1, true, std::nullopt,
       std::nullopt},
      {"V1UnknownOf107Bytes", "PROXY UNKNOWN " + std::string(107 - 16, 'x') + "\r\n", 1, true,
       std::nullopt, std::nullopt},
      {"V2Inet", v2(0x21, 0x11, kInetBlock), 2, false, addr("1.2.3.4", 80), addr("5.6.7.8", 443)},
      {"V2Inet6", v2(0x21, 0x21, inet6Block()), 2, false, addr("::1", 12345),
       addr("2001:db8::2", 80)},
      {"V2InetWithTlvs", v2(0x21, 0x11, kInetBlock + "\x04\x00\x03xyz\xEE\x00\x00"s), 2, false,
       addr("1.2.3.4", 80), addr("5.6.7.8", 443)},
      {"V2InetWithTlvsUpToTheCap",
       v2(0x21, 0x11, kInetBlock + "\x04\x0f\xe1"s + std::string(4065, 'a')), 2, false,
       addr("1.2.3.4", 80), addr("5.6.7.8", 443)},
      {"V2Local", v2(0x20, 0x00, ""), 2, true, std::nullopt, std::nullopt},
      {"V2LocalIgnoresFamilyAndBlock", v2(0x20, 0xFF, "anything"), 2, true, std::nullopt,
       std::nullopt},
      {"V2ProxyUnspecKeepsTheConnection", v2(0x21, 0x00, ""), 2, true, std::nullopt, std::nullopt},
      {"V2ProxyUnixKeepsTheConnection", v2(0x21, 0x31, std::string(216, '/')), 2, true,
       std::nullopt, std::nullopt},
  };
}

TEST(ProxyProtocol, ParsesEveryAcceptedForm) {
  for (const Accept& c : accepted()) {
    for (const std::string& after : {""s, "GET / HTTP/1.1\r\n\r\n"s, "\x16\x03\x01"s}) {
      SCOPED_TRACE(std::string(c.name) + " + " + std::to_string(after.size()) + " bytes");
      const ProxyHeader r = parseProxyHeader(c.header + after);
      ASSERT_EQ(r.status, ProxyParse::Done) << r.reason;
      EXPECT_EQ(r.consumed, c.header.size());
      EXPECT_EQ(r.version, c.version);
      EXPECT_EQ(r.local, c.local);
      if (c.source) {
        EXPECT_EQ(r.source, *c.source);
      }
      if (c.destination) {
        EXPECT_EQ(r.destination, *c.destination);
      }
    }
  }
}

TEST(ProxyProtocol, EveryCutOfAValidHeaderAsksForMore) {
  for (const Accept& c : accepted()) {
    for (std::size_t n = 0; n < c.header.size(); ++n) {
      const ProxyHeader r = parseProxyHeader(std::string_view(c.header).substr(0, n));
      ASSERT_EQ(r.status, ProxyParse::NeedMore) << c.name << " cut at " << n << ": " << r.reason;
    }
  }
}

struct Reject {
  std::string_view name;
  std::string input;
  ProxyError error;
};

std::vector<Reject> rejected() {
  const std::string tcp4 = "PROXY TCP4 1.2.3.4 5.6.7.8 ";
  return {
      // Not a PROXY header at all: told by the first byte that differs.
      {"HttpRequest", "GET / HTTP/1.1\r\n", ProxyError::NotProxy},
      {"OneByteOfHttp", "G", ProxyError::NotProxy},
      {"PutRequestAtItsSecondByte", "PU", ProxyError::NotProxy},
      {"TlsClientHello", "\x16\x03\x01\x02\x00"s, ProxyError::NotProxy},
      {"LowerCaseProxy", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::NotProxy},
      {"BlankLineThenRequest", "\r\nGET / HTTP/1.1\r\n", ProxyError::NotProxy},
      {"V2SignatureWrongAtItsLastByte", "\r\n\r\n\0\r\nQUIT\r"s, ProxyError::NotProxy},
      // v1, broken.
      {"V1NoSpaceAfterProxy", "PROXY\r\n", ProxyError::Malformed},
      {"V1TabAfterProxy", "PROXY\tTCP4", ProxyError::Malformed},
      {"V1UnknownProtocol", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::Malformed},
      {"V1ProtocolInLowerCase", "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::Malformed},
      {"V1GarbageProtocolBeforeTheLineEnds", "PROXY HTTP", ProxyError::Malformed},
      {"V1DoubleSpace", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", ProxyError::Malformed},
      {"V1ProtocolThenCrLf", "PROXY TCP4\r\n", ProxyError::Malformed},
      {"V1AddressLeadingZero", "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", ProxyError::Malformed},
      {"V1AddressThreeParts", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", ProxyError::Malformed},
      {"V1AddressOctetOver255", "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", ProxyError::Malformed},
      {"V1Ipv6OnTcp4", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", ProxyError::Malformed},
      {"V1Ipv4OnTcp6", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", ProxyError::Malformed},
      {"V1Ipv6WithZone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", ProxyError::Malformed},
      {"V1HostName", "PROXY TCP4 localhost 5.6.7.8 1 2\r\n", ProxyError::Malformed},
      {"V1GarbageAddressBeforeTheLineEnds", "PROXY TCP4 1.2.3.4x", ProxyError::Malformed},
      {"V1AddressTooLongBeforeTheLineEnds", "PROXY TCP4 1111.2222.3333.4444",
       ProxyError::Malformed},
      {"V1PortOver65535", tcp4 + "65536 2\r\n", ProxyError::Malformed},
      {"V1PortLeadingZero", tcp4 + "080 2\r\n", ProxyError::Malformed},
      {"V1PortLeadingZeroBeforeTheLineEnds", tcp4 + "08", ProxyError::Malformed},
      {"V1PortSixDigits", tcp4 + "000001 2\r\n", ProxyError::Malformed},
      {"V1PortNegative", tcp4 + "-1 2\r\n", ProxyError::Malformed},
      {"V1PortHex", tcp4 + "1 0x50\r\n", ProxyError::Malformed},
      {"V1EmptyPort", tcp4 + " 2\r\n", ProxyError::Malformed},
      {"V1MissingDestinationPort", tcp4 + "1\r\n", ProxyError::Malformed},
      {"V1ExtraField", tcp4 + "1 2 3\r\n", ProxyError::Malformed},
      {"V1SpaceBeforeCrLf", tcp4 + "1 2 \r\n", ProxyError::Malformed},
      {"V1BareLf", tcp4 + "1 2\n", ProxyError::Malformed},
      {"V1CrWithoutLf", tcp4 + "1 2\rX", ProxyError::Malformed},
      {"V1UnknownBareLf", "PROXY UNKNOWN\n", ProxyError::Malformed},
      {"V1UnknownBareLfAfterText", "PROXY UNKNOWN abc\n", ProxyError::Malformed},
      {"V1UnknownOf108Bytes", "PROXY UNKNOWN " + std::string(108 - 16, 'x') + "\r\n",
       ProxyError::Oversized},
      {"V1NoLineEndIn107Bytes", "PROXY UNKNOWN " + std::string(93, 'x'), ProxyError::Oversized},
      {"V1Tcp6MappedAddressesOver107Bytes",
       "PROXY TCP6 0000:0000:0000:0000:0000:ffff:255.255.255.255 "
       "0000:0000:0000:0000:0000:ffff:255.255.255.255 65535 65535\r\n",
       ProxyError::Oversized},
      // v2, broken.
      {"V2Version1", v2(0x11, 0x11, kInetBlock), ProxyError::Malformed},
      {"V2Version3", v2(0x31, 0x11, kInetBlock), ProxyError::Malformed},
      {"V2UnknownCommand", v2(0x22, 0x11, kInetBlock), ProxyError::Malformed},
      {"V2Datagram", v2(0x21, 0x12, kInetBlock), ProxyError::Malformed},
      {"V2Datagram6", v2(0x21, 0x22, inet6Block()), ProxyError::Malformed},
      {"V2UnixDatagram", v2(0x21, 0x32, std::string(216, '/')), ProxyError::Malformed},
      {"V2UnknownFamily", v2(0x21, 0x41, kInetBlock), ProxyError::Malformed},
      {"V2InetWithoutTransport", v2(0x21, 0x10, kInetBlock), ProxyError::Malformed},
      {"V2UnspecFamilyWithStream", v2(0x21, 0x01, ""), ProxyError::Malformed},
      {"V2InetLengthShort", v2(0x21, 0x11, kInetBlock.substr(0, 11)), ProxyError::Malformed},
      {"V2Inet6LengthOfInet", v2(0x21, 0x21, kInetBlock), ProxyError::Malformed},
      {"V2UnixLengthShort", v2(0x21, 0x31, std::string(215, '/')), ProxyError::Malformed},
      {"V2TlvOverruns", v2(0x21, 0x11, kInetBlock + "\x04\x00\x05xyz"s), ProxyError::Malformed},
      {"V2TlvHeaderCut", v2(0x21, 0x11, kInetBlock + "\x04\x00"s), ProxyError::Malformed},
      {"V2OneByteOver4096", v2Length(0x21, 0x11, 4081), ProxyError::Oversized},
      {"V2LargestLength", v2Length(0x21, 0x11, 65535), ProxyError::Oversized},
      {"V2LocalOver4096", v2Length(0x20, 0x00, 4081), ProxyError::Oversized},
  };
}

TEST(ProxyProtocol, RejectsEachBrokenOrForeignHeaderWithItsKind) {
  for (const Reject& c : rejected()) {
    const ProxyHeader r = parseProxyHeader(c.input);
    EXPECT_EQ(r.status, ProxyParse::Error) << c.name;
    EXPECT_EQ(r.error, c.error) << c.name << ": " << r.reason;
    EXPECT_FALSE(r.reason.empty()) << c.name;
  }
}

TEST(ProxyProtocol, TellsAForeignFirstByteAtOnce) {
  for (char c = 1; c < 127; ++c) {
    const ProxyHeader r = parseProxyHeader(std::string(1, c));
    if (c == 'P' || c == '\r') {
      EXPECT_EQ(r.status, ProxyParse::NeedMore) << int(c);
    } else {
      EXPECT_EQ(r.error, ProxyError::NotProxy) << int(c);
    }
  }
  EXPECT_EQ(parseProxyHeader("").status, ProxyParse::NeedMore);
}

TEST(ProxyProtocol, OversizedV2IsToldFromItsFixedPartAlone) {
  const ProxyHeader r = parseProxyHeader(v2Length(0x21, 0x11, 4081));
  EXPECT_EQ(r.error, ProxyError::Oversized);
  // At the cap: a valid length, so the rest is awaited.
  EXPECT_EQ(parseProxyHeader(v2Length(0x21, 0x11, 4080)).status, ProxyParse::NeedMore);
}

TEST(ProxyProtocol, EncodedV2ReadsBackToTheSameAddresses) {
  struct Case {
    ProxyAddress source, destination;
    ProxyAddress readSource, readDestination;
    std::size_t size;
  };
  const Case cases[] = {
      {addr("10.1.2.3", 40000), addr("127.0.0.1", 8080), addr("10.1.2.3", 40000),
       addr("127.0.0.1", 8080), 28},
      {addr("2001:db8::7", 1), addr("::1", 65535), addr("2001:db8::7", 1), addr("::1", 65535), 52},
      // One family for both: the IPv4 side is sent mapped.
      {addr("10.1.2.3", 5), addr("::1", 6), addr("::ffff:10.1.2.3", 5), addr("::1", 6), 52},
      {addr("::1", 5), addr("10.1.2.3", 0), addr("::1", 5), addr("::ffff:10.1.2.3", 0), 52},
  };
  for (const Case& c : cases) {
    const EncodedProxyHeader h = encodeProxyV2(c.source, c.destination);
    EXPECT_EQ(h.size, c.size);
    const ProxyHeader r = parseProxyHeader(std::string(h.view()) + "GET");
    ASSERT_EQ(r.status, ProxyParse::Done) << r.reason;
    EXPECT_EQ(r.version, 2);
    EXPECT_EQ(r.consumed, h.size);
    EXPECT_FALSE(r.local);
    EXPECT_EQ(r.source, c.readSource);
    EXPECT_EQ(r.destination, c.readDestination);
  }
}

TEST(ProxyProtocol, EncodedLocalIsSixteenBytesWithNoAddress) {
  const EncodedProxyHeader h = encodeProxyV2Local();
  EXPECT_EQ(h.view(), kSig + "\x20\x00\x00\x00"s);
  const ProxyHeader r = parseProxyHeader(h.view());
  ASSERT_EQ(r.status, ProxyParse::Done);
  EXPECT_TRUE(r.local);
  EXPECT_EQ(r.consumed, 16u);
}

TEST(ProxyProtocol, SocketAddressesConvertBothWays) {
  for (const ProxyAddress& a : {addr("192.0.2.9", 443), addr("2001:db8::9", 0)}) {
    socklen_t length = 0;
    const sockaddr_storage s = toSockaddr(a, length);
    EXPECT_EQ(length, a.v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
    const auto back = proxyAddressOf(reinterpret_cast<const sockaddr*>(&s));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, a);
  }
  sockaddr_storage unix{};
  unix.ss_family = AF_UNIX;
  EXPECT_FALSE(proxyAddressOf(reinterpret_cast<const sockaddr*>(&unix)).has_value());
}

}  // namespace
}  // namespace wsgate::net
