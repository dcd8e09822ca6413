// Opening handshake rules (RFC 6455 4.1, 4.2): accept keys, key syntax, request and 101 checks.

#include "proxy/ws/handshake.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace wsgate::ws {
namespace {

using http::Header;
using http::RequestHead;
using http::ResponseHead;

// The expected values were computed outside this code base:
//   printf '%s' "${KEY}258EAFA5-E914-47DA-95CA-C5AB0DC85B11" | openssl sha1 -binary | base64
TEST(ComputeAccept, MatchesRfcAndIndependentVectors) {
  struct Case {
    std::string_view key;
    std::string_view accept;
  };
  const Case cases[] = {
      {"dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},  // RFC 6455 1.3
      {"AAAAAAAAAAAAAAAAAAAAAA==", "ICX+Yqv66kxgM0FcWaLWlFLwTAI="},
      {"x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="},
      {"////////////////////8A==", "5d455YB168wG9rQFBROCng2eUZA="},
  };
  for (const Case& c : cases) EXPECT_EQ(computeAccept(c.key), c.accept) << c.key;
}

TEST(IsValidKey, AcceptsOnlyBase64OfExactlySixteenBytes) {
  struct Case {
    std::string_view key;
    bool valid;
    std::string_view why;
  };
  const Case cases[] = {
      {"dGhlIHNhbXBsZSBub25jZQ==", true, "RFC example"},
      {"AAAAAAAAAAAAAAAAAAAAAA==", true, "all zero bytes"},
      {"////////////////////8A==", true, "high bytes, '/' and digits"},
      {"+/+/+/+/+/+/+/+/+/+/+w==", true, "'+' and lowercase last char"},
      {"", false, "empty"},
      {"dGhlIHNhbXBsZSBub25jZQ=", false, "23 characters"},
      {"dGhlIHNhbXBsZSBub25jZQ===", false, "25 characters"},
      {"AdGhlIHNhbXBsZSBub25jZQ==", false, "25 characters, 23 data"},
      {"dGhlIHNhbXBsZSBub25j*Q==", false, "'*' is not base64"},
      {"dGhlIHNhbX.sZSBub25jZQ==", false, "'.' is not base64"},
      {"dGhlIHNhbXBs ZSBub25jZQ=", false, "space inside"},
      {"dGhlIHNhbXBsZSBub25jZ-==", false, "base64url '-' is not base64"},
      {"dGhlIHNhbXBsZSBub25jZ_==", false, "base64url '_' is not base64"},
      {"dGhlIHNhbXBsZSBub25jZQ=A", false, "data after padding"},
      {"dGhlIHNhbXBsZSBub25jZQAA", false, "no padding"},
      {"dGhlIHNhbXBsZSBub25jZ===", false, "three padding characters"},
      {"dGhlIHNhbXBsZSBub25jZR==", false, "stray bit in last data character (R)"},
      {"dGhlIHNhbXBsZSBub25jZf==", false, "stray bits in last data character (f)"},
      {"AAAAAAAAAAAAAAAAAAAA", false, "15 bytes"},
      {"AAAAAAAAAAAAAAAAAAAAAAA=", false, "17 bytes"},
      {"AAAAAAAAAAAAAAAAAAAAAAAA", false, "18 bytes"},
      {std::string_view("dGhlIHNhbXBsZSBub25j\0Q==", 24), false, "NUL inside"},
      {"dGhlIHNhbXBsZSBub25j\xc3\xa9==", false, "non-ASCII"},
  };
  for (const Case& c : cases) EXPECT_EQ(isValidKey(c.key), c.valid) << c.why << ": " << c.key;
}

RequestHead validRequest() {
  RequestHead req;
  req.method = "GET";
  req.target = "/chat";
  req.path = "/chat";
  req.version = http::Version::Http11;
  req.host = "server.example.com";
  req.upgradeWebsocket = true;
  req.hasUpgrade = true;
  req.headers = {
      {"Host", "server.example.com"},  {"Upgrade", "websocket"},
      {"Connection", "Upgrade"},       {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
      {"Sec-WebSocket-Version", "13"},
  };
  return req;
}

void removeHeader(RequestHead& req, std::string_view name) {
  std::erase_if(req.headers, [&](const Header& h) { return http::iequals(h.name, name); });
}

TEST(CheckUpgradeRequest, AppliesRfc6455Section421) {
  struct Case {
    std::string_view name;
    void (*edit)(RequestHead&);
    int status;  // 0: accepted
  };
  const Case cases[] = {
      {"valid request", [](RequestHead&) {}, 0},
      {"header names in any case",
       [](RequestHead& r) {
         r.headers = {{"host", "h"},
                      {"upgrade", "websocket"},
                      {"connection", "upgrade"},
                      {"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="},
                      {"SEC-WEBSOCKET-VERSION", "13"}};
       },
       0},
      {"protocol and extension offers",
       [](RequestHead& r) {
         r.headers.push_back({"Sec-WebSocket-Protocol", "chat, superchat"});
         r.headers.push_back({"Sec-WebSocket-Extensions", "permessage-deflate"});
       },
       0},
      {"Content-Length: 0 is no body",
       [](RequestHead& r) {
         r.body = http::BodyKind::ContentLength;
         r.contentLength = 0;
       },
       0},
      {"not flagged as an upgrade", [](RequestHead& r) { r.upgradeWebsocket = false; }, 400},
      {"method POST", [](RequestHead& r) { r.method = "POST"; }, 400},
      {"method get in lowercase", [](RequestHead& r) { r.method = "get"; }, 400},
      {"HTTP/1.0", [](RequestHead& r) { r.version = http::Version::Http10; }, 400},
      {"missing key", [](RequestHead& r) { removeHeader(r, "Sec-WebSocket-Key"); }, 400},
      {"two keys",
       [](RequestHead& r) {
         r.headers.push_back({"Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA=="});
       },
       400},
      {"two identical keys",
       [](RequestHead& r) {
         r.headers.push_back({"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="});
       },
       400},
      {"invalid key",
       [](RequestHead& r) {
         removeHeader(r, "Sec-WebSocket-Key");
         r.headers.push_back({"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZR=="});
       },
       400},
      {"version 8",
       [](RequestHead& r) {
         removeHeader(r, "Sec-WebSocket-Version");
         r.headers.push_back({"Sec-WebSocket-Version", "8"});
       },
       426},
      {"version list 13, 8",
       [](RequestHead& r) {
         removeHeader(r, "Sec-WebSocket-Version");
         r.headers.push_back({"Sec-WebSocket-Version", "13, 8"});
       },
       426},
      {"missing version", [](RequestHead& r) { removeHeader(r, "Sec-WebSocket-Version"); }, 426},
      {"two versions",
       [](RequestHead& r) {
         r.headers.push_back({"Sec-WebSocket-Version", "13"});
       },
       426},
      {"Content-Length body",
       [](RequestHead& r) {
         r.body = http::BodyKind::ContentLength;
         r.contentLength = 5;
       },
       400},
      {"chunked body", [](RequestHead& r) { r.body = http::BodyKind::Chunked; }, 400},
  };
  for (const Case& c : cases) {
    RequestHead req = validRequest();
    c.edit(req);
    const Verdict v = checkUpgradeRequest(req);
    EXPECT_EQ(v.ok, c.status == 0) << c.name;
    if (c.status != 0) {
      EXPECT_EQ(v.status, c.status) << c.name;
      EXPECT_FALSE(v.reason.empty()) << c.name;
    }
  }
}

TEST(OfferOf, CopiesKeyAndJoinsRepeatedOffers) {
  RequestHead req = validRequest();
  req.headers.push_back({"Sec-WebSocket-Protocol", "chat"});
  req.headers.push_back({"sec-websocket-protocol", "superchat, v2"});
  req.headers.push_back({"Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"});
  req.headers.push_back({"Sec-WebSocket-Extensions", "x-foo"});
  const Offer offer = offerOf(req);
  EXPECT_EQ(offer.key, "dGhlIHNhbXBsZSBub25jZQ==");
  EXPECT_EQ(offer.protocols, "chat, superchat, v2");
  EXPECT_EQ(offer.extensions, "permessage-deflate; client_max_window_bits, x-foo");
}

TEST(OfferOf, LeavesOffersEmptyWhenNoneSent) {
  const Offer offer = offerOf(validRequest());
  EXPECT_TRUE(offer.protocols.empty());
  EXPECT_TRUE(offer.extensions.empty());
}

constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

ResponseHead validResponse() {
  ResponseHead resp;
  resp.version = http::Version::Http11;
  resp.status = 101;
  resp.reason = "Switching Protocols";
  resp.headers = {
      {"Upgrade", "websocket"},
      {"Connection", "Upgrade"},
      {"Sec-WebSocket-Accept", kAccept},
  };
  return resp;
}

void removeHeader(ResponseHead& resp, std::string_view name) {
  std::erase_if(resp.headers, [&](const Header& h) { return http::iequals(h.name, name); });
}

TEST(CheckUpgradeResponse, AppliesRfc6455Section41) {
  struct Case {
    std::string_view name;
    std::string_view protocols;   // offered
    std::string_view extensions;  // offered
    void (*edit)(ResponseHead&);
    std::string_view reasonHas;  // empty: accepted
  };
  const Case cases[] = {
      {"valid 101", "", "", [](ResponseHead&) {}, ""},
      {"header names and Upgrade value in any case", "", "",
       [](ResponseHead& r) {
         r.headers = {{"upgrade", "WebSocket"},
                      {"CONNECTION", "upgrade"},
                      {"sec-websocket-accept", kAccept}};
       },
       ""},
      {"Connection holds upgrade among other tokens", "", "",
       [](ResponseHead& r) {
         removeHeader(r, "Connection");
         r.headers.push_back({"Connection", "keep-alive"});
         r.headers.push_back({"Connection", "foo, Upgrade"});
       },
       ""},
      {"offered subprotocol echoed", "superchat, chat", "",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Protocol", "chat"});
       },
       ""},
      {"offered subprotocol not chosen", "chat", "", [](ResponseHead&) {}, ""},
      {"offered extension echoed with parameters", "",
       "permessage-deflate; client_max_window_bits, x-foo",
       [](ResponseHead& r) {
         r.headers.push_back(
             {"Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"});
       },
       ""},
      {"two offered extensions over two fields", "", "x-foo; a=\"1,2\", permessage-deflate",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Extensions", "permessage-deflate"});
         r.headers.push_back({"Sec-WebSocket-Extensions", "x-foo; a=\"1,2\""});
       },
       ""},
      {"status 200", "", "", [](ResponseHead& r) { r.status = 200; }, "101"},
      {"status 426", "", "", [](ResponseHead& r) { r.status = 426; }, "101"},
      {"101 in HTTP/1.0", "", "", [](ResponseHead& r) { r.version = http::Version::Http10; },
       "HTTP/1.0"},
      {"missing Accept", "", "", [](ResponseHead& r) { removeHeader(r, "Sec-WebSocket-Accept"); },
       "Accept"},
      {"duplicate Accept", "", "",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Accept", kAccept});
       },
       "Accept"},
      {"incorrect Accept", "", "",
       [](ResponseHead& r) {
         removeHeader(r, "Sec-WebSocket-Accept");
         r.headers.push_back({"Sec-WebSocket-Accept", "ICX+Yqv66kxgM0FcWaLWlFLwTAI="});
       },
       "Accept"},
      {"Accept in the wrong case", "", "",
       [](ResponseHead& r) {
         removeHeader(r, "Sec-WebSocket-Accept");
         r.headers.push_back({"Sec-WebSocket-Accept", "S3PPLMBITXAQ9KYGZZHZRBK+XOO="});
       },
       "Accept"},
      {"missing Upgrade", "", "", [](ResponseHead& r) { removeHeader(r, "Upgrade"); }, "Upgrade"},
      {"Upgrade h2c", "", "",
       [](ResponseHead& r) {
         removeHeader(r, "Upgrade");
         r.headers.push_back({"Upgrade", "h2c"});
       },
       "Upgrade"},
      {"Upgrade list holding websocket", "", "",
       [](ResponseHead& r) {
         removeHeader(r, "Upgrade");
         r.headers.push_back({"Upgrade", "websocket, h2c"});
       },
       "Upgrade"},
      {"missing Connection", "", "", [](ResponseHead& r) { removeHeader(r, "Connection"); },
       "Connection"},
      {"Connection without upgrade", "", "",
       [](ResponseHead& r) {
         removeHeader(r, "Connection");
         r.headers.push_back({"Connection", "keep-alive"});
       },
       "Connection"},
      {"subprotocol not offered", "chat", "",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Protocol", "superchat"});
       },
       "subprotocol"},
      {"subprotocol differing in case", "chat", "",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Protocol", "Chat"});
       },
       "subprotocol"},
      {"subprotocol when none offered", "", "",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Protocol", "chat"});
       },
       "subprotocol"},
      {"two subprotocols in one field", "chat, superchat", "",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Protocol", "chat, superchat"});
       },
       "subprotocol"},
      {"two subprotocol fields", "chat, superchat", "",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Protocol", "chat"});
         r.headers.push_back({"Sec-WebSocket-Protocol", "chat"});
       },
       "Protocol"},
      {"extension not offered", "", "permessage-deflate",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Extensions", "x-webkit-deflate-frame"});
       },
       "extension"},
      {"one of two extensions not offered", "", "permessage-deflate",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Extensions", "permessage-deflate, x-foo"});
       },
       "extension"},
      {"extension when none offered", "", "",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Extensions", "permessage-deflate"});
       },
       "extension"},
      {"extension name only inside a parameter of the offer", "", "x-foo; permessage-deflate",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Extensions", "permessage-deflate"});
       },
       "extension"},
      // The fuzz finding unoffered_extension_hidden_by_trailing_backslash: a backslash
      // ending an unterminated quoted-string must not hide the last element.
      {"unoffered extension whose quote ends in a backslash", "", "permessage-deflate",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Extensions", "evil; p=\"\\"});
       },
       "extension"},
      {"unoffered extension after an offered one ending in a backslash", "", "permessage-deflate",
       [](ResponseHead& r) {
         r.headers.push_back({"Sec-WebSocket-Extensions", "permessage-deflate, evil; x=\"a\\"});
       },
       "extension"},
  };
  for (const Case& c : cases) {
    ResponseHead resp = validResponse();
    c.edit(resp);
    const Offer offer{std::string(kKey), std::string(c.protocols), std::string(c.extensions)};
    const Verdict v = checkUpgradeResponse(resp, offer);
    EXPECT_EQ(v.ok, c.reasonHas.empty()) << c.name << ": " << v.reason;
    if (!c.reasonHas.empty()) {
      EXPECT_NE(v.reason.find(c.reasonHas), std::string_view::npos) << c.name << ": " << v.reason;
    }
  }
}

TEST(CheckUpgradeResponse, RejectsAcceptForAnotherKey) {
  const Offer offer{"AAAAAAAAAAAAAAAAAAAAAA==", "", ""};
  EXPECT_FALSE(checkUpgradeResponse(validResponse(), offer).ok);
}

// RFC 7692: permessage-deflate is in use when a Sec-WebSocket-Extensions element is named so
// (a token, any case); the text elsewhere (another name, a parameter) does not count.
TEST(NegotiatesDeflate, FindsTheExtensionByItsNameOnly) {
  struct Case {
    std::string_view name;
    std::vector<std::string_view> fields;
    bool deflate;
  };
  const Case cases[] = {
      {"no extensions field", {}, false},
      {"the name alone", {"permessage-deflate"}, true},
      {"with parameters", {"permessage-deflate; client_max_window_bits=10"}, true},
      {"in another case", {"PerMessage-Deflate"}, true},
      {"second of a list", {"x-foo, permessage-deflate"}, true},
      {"in a second field", {"x-foo", "permessage-deflate"}, true},
      {"inside a longer name", {"x-permessage-deflate-foo"}, false},
      {"as a parameter name", {"x-foo; permessage-deflate"}, false},
      {"inside a quoted parameter", {"x-foo; a=\"permessage-deflate\""}, false},
      {"another deflate", {"x-webkit-deflate-frame"}, false},
  };
  for (const Case& c : cases) {
    ResponseHead resp = validResponse();
    for (std::string_view f : c.fields) resp.headers.push_back({"Sec-WebSocket-Extensions", f});
    EXPECT_EQ(negotiatesDeflate(resp), c.deflate) << c.name;
  }
}

}  // namespace
}  // namespace wsgate::ws
