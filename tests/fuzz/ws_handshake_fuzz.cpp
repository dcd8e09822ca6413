// libFuzzer: the WebSocket opening handshake (RFC 6455 4.1, 4.2) against reference models:
// the header-list parsing of Connection, Upgrade, Sec-WebSocket-Protocol and
// Sec-WebSocket-Extensions (tokens, parameters, quoted-strings, repeated fields) by a
// grammar-driven parser (model/http_lists.h), the key rule and the accept value by a
// hand-written base64 and SHA-1 (model/sha1_base64.h). Checked:
//   - http::hasToken, and the request parser's upgradeWebsocket flag across repeated
//     Upgrade/Connection fields, agree with the model on well-formed lists;
//   - checkUpgradeRequest's verdict and status, offerOf's joined lists;
//   - checkUpgradeResponse's verdict on the response in the input, exactly when every list
//     involved is well-formed, and one way on malformed ones (an accepted 101 never uses
//     an extension name that was not offered);
//   - round trips: a 101 choosing any offered subprotocol, or echoing the offered
//     extensions with parameters full of quoted commas, is accepted; one adding an
//     extension that was not offered, or missing Connection: upgrade, is refused;
//   - isValidKey and computeAccept on every request field value.
//
// WSGATE_FUZZ_STRICT in the environment turns off the tolerance for known product bugs
// (README.md, "Findings"); replay_main sets it for inputs kept as known failures.
//
// Input: text. The request head (request line, then "Name: value" lines) up to a line
// "--", then the response head (status line, fields). Lines end in "\n" (sent as CRLF). A
// response field "Sec-WebSocket-Accept: *" gets the correct accept for the request's key.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/http_lists.h"
#include "model/sha1_base64.h"
#include "proxy/http/head.h"
#include "proxy/http/request_parser.h"
#include "proxy/http/response_parser.h"
#include "proxy/ws/handshake.h"

namespace {

using namespace wsgate;
namespace m = wsgate::fuzz::model;

void check(bool ok) {
  if (!ok) std::abort();
}

std::vector<const http::Header*> fields(const std::vector<http::Header>& headers,
                                        std::string_view name) {
  std::vector<const http::Header*> out;
  for (const http::Header& h : headers) {
    if (m::sameToken(h.name, name)) out.push_back(&h);
  }
  return out;
}

bool containsToken(const std::vector<std::string>& list, std::string_view token) {
  return std::any_of(list.begin(), list.end(),
                     [&](const std::string& e) { return m::sameToken(e, token); });
}

// "a\nb\n" -> "a\r\nb\r\n\r\n": a head whose lines are the input's.
std::string head(std::string_view lines) {
  std::string out;
  for (const char c : lines) {
    if (c == '\n') out += '\r';
    out += c;
  }
  if (!out.empty() && out.back() != '\n') out += "\r\n";
  out += "\r\n";
  return out;
}

// hasToken on a value the model can parse as #token.
void checkHasToken(std::string_view value) {
  const auto tokens = m::ListParser::tokens(value);
  if (!tokens) return;
  std::vector<std::string> probes = {"upgrade", "websocket", "close", "keep-alive", "Upgrade"};
  for (const std::string& t : *tokens) probes.push_back(t);
  for (const std::string& t : probes) check(http::hasToken(value, t) == containsToken(*tokens, t));
}

void checkKey(std::string_view value) {
  check(ws::isValidKey(value) == m::isValidWebSocketKey(value));
  check(ws::computeAccept(value) == m::webSocketAccept(value));
}

// What the model says of a request the parser completed.
void checkRequest(const http::RequestHead& req) {
  // upgradeWebsocket: HTTP/1.1, some Upgrade holds "websocket", some Connection "upgrade".
  bool allWellFormed = true, upgrade = false, connection = false;
  for (const http::Header* h : fields(req.headers, "Upgrade")) {
    const auto protocols = m::ListParser::protocols(h->value);
    if (!protocols)
      allWellFormed = false;
    else if (containsToken(*protocols, "websocket"))
      upgrade = true;
  }
  for (const http::Header* h : fields(req.headers, "Connection")) {
    const auto options = m::ListParser::tokens(h->value);
    if (!options)
      allWellFormed = false;
    else if (containsToken(*options, "upgrade"))
      connection = true;
  }
  const bool want = req.version == http::Version::Http11 && upgrade && connection;
  if (want) check(req.upgradeWebsocket);
  if (allWellFormed) check(req.upgradeWebsocket == want);

  // checkUpgradeRequest, rule by rule in the documented order (the status tells which).
  int status = 0;
  const auto keys = fields(req.headers, "Sec-WebSocket-Key");
  const auto versions = fields(req.headers, "Sec-WebSocket-Version");
  if (!req.upgradeWebsocket || req.method != "GET" || req.version != http::Version::Http11) {
    status = 400;
  } else if (keys.size() != 1 || !m::isValidWebSocketKey(keys[0]->value)) {
    status = 400;
  } else if (versions.size() != 1 || versions[0]->value != "13") {
    status = 426;
  } else if (req.body == http::BodyKind::Chunked ||
             (req.body == http::BodyKind::ContentLength && req.contentLength > 0)) {
    status = 400;
  }
  const ws::Verdict v = ws::checkUpgradeRequest(req);
  check(v.ok == (status == 0));
  if (!v.ok) check(v.status == status && !v.reason.empty());
}

std::string joined(const std::vector<http::Header>& headers, std::string_view name) {
  std::string out;
  for (const http::Header* h : fields(headers, name)) {
    if (h->value.empty()) continue;
    if (!out.empty()) out += ", ";
    out += h->value;
  }
  return out;
}

struct ModelVerdict {
  bool ok = true;
  bool sure = true;  // every list involved is well-formed
};

// RFC 6455 4.1, items 1-6, as docs/protocol.md states them for a backend's 101.
ModelVerdict judgeResponse(const http::ResponseHead& resp, const ws::Offer& offer) {
  ModelVerdict v;
  auto refuse = [&v] { v.ok = false; };
  if (resp.status != 101 || resp.version != http::Version::Http11) refuse();
  const auto upgrades = fields(resp.headers, "Upgrade");
  if (upgrades.size() != 1 || !m::sameToken(upgrades[0]->value, "websocket")) refuse();

  bool connection = false;
  for (const http::Header* h : fields(resp.headers, "Connection")) {
    const auto options = m::ListParser::tokens(h->value);
    if (!options)
      v.sure = false;
    else if (containsToken(*options, "upgrade"))
      connection = true;
  }
  if (!connection) refuse();

  const auto accepts = fields(resp.headers, "Sec-WebSocket-Accept");
  if (accepts.size() != 1 || accepts[0]->value != m::webSocketAccept(offer.key)) refuse();

  const auto protocols = fields(resp.headers, "Sec-WebSocket-Protocol");
  if (protocols.size() > 1) refuse();
  if (protocols.size() == 1) {
    const auto offered = m::ListParser::tokens(offer.protocols);
    if (!offered) v.sure = false;
    // Compared exactly, as browsers do (a case variant is not what was offered).
    else if (std::find(offered->begin(), offered->end(), protocols[0]->value) == offered->end())
      refuse();
    if (offer.protocols.empty()) refuse();
  }

  const auto offered = m::ListParser::extensions(offer.extensions);
  if (!offered) v.sure = false;
  for (const http::Header* h : fields(resp.headers, "Sec-WebSocket-Extensions")) {
    const auto used = m::ListParser::extensions(h->value);
    if (!used) {
      v.sure = false;
      continue;
    }
    for (const m::Extension& e : *used) {
      if (!offered) continue;
      const bool found = std::any_of(offered->begin(), offered->end(), [&](const m::Extension& o) {
        return m::sameToken(o.name, e.name);
      });
      if (!found) refuse();
    }
  }
  return v;
}

void checkResponse(const http::ResponseHead& resp, const ws::Offer& offer) {
  const ws::Verdict got = ws::checkUpgradeResponse(resp, offer);
  if (!got.ok) check(got.status == 502 && !got.reason.empty());
  const ModelVerdict want = judgeResponse(resp, offer);
  if (want.sure) check(got.ok == want.ok);
  if (!got.ok || !m::ListParser::extensions(offer.extensions)) return;
  // Accepted: whatever the syntax, every extension name the 101 announces was offered.
  const auto offered = m::ListParser::extensions(offer.extensions);
  for (const http::Header* h : fields(resp.headers, "Sec-WebSocket-Extensions")) {
    for (const std::string& name : m::ListParser::leadingNames(h->value)) {
      check(std::any_of(offered->begin(), offered->end(),
                        [&](const m::Extension& o) { return m::sameToken(o.name, name); }));
    }
  }
}

// A 101 built from parts (values kept alive by the caller's strings).
http::ResponseHead response101(const std::vector<std::pair<std::string, std::string>>& parts) {
  http::ResponseHead r;
  r.status = 101;
  r.version = http::Version::Http11;
  for (const auto& [name, value] : parts) r.headers.push_back({name, value});
  return r;
}

// Responses derived from the offer, whose verdict follows from the offer alone.
void roundTrips(const ws::Offer& offer) {
  const auto protocols = m::ListParser::tokens(offer.protocols);
  const auto extensions = m::ListParser::extensions(offer.extensions);
  if (!protocols || !extensions) return;
  const std::string accept = m::webSocketAccept(offer.key);
  using Parts = std::vector<std::pair<std::string, std::string>>;
  const Parts base = {
      {"Upgrade", "websocket"}, {"Connection", "Upgrade"}, {"Sec-WebSocket-Accept", accept}};

  check(ws::checkUpgradeResponse(response101(base), offer).ok);
  check(!ws::checkUpgradeResponse(response101({base[0], base[2]}), offer).ok);
  for (const std::string& p : *protocols) {
    Parts parts = base;
    parts.emplace_back("Sec-WebSocket-Protocol", p);
    check(ws::checkUpgradeResponse(response101(parts), offer).ok);
  }

  // Echo every offered extension, each with a parameter holding quoted commas, escaped
  // quotes and semicolons, over one field or one field each.
  std::string echo;
  Parts perField = base;
  for (const m::Extension& e : *extensions) {
    const std::string element = e.name + "; x=\"a, b\\\" ;c\"; y=1";
    echo += (echo.empty() ? "" : " ,  ") + element;
    perField.emplace_back("Sec-WebSocket-Extensions", element);
  }
  Parts oneField = base;
  oneField.emplace_back("Sec-WebSocket-Extensions", echo);
  check(ws::checkUpgradeResponse(response101(oneField), offer).ok);
  check(ws::checkUpgradeResponse(response101(perField), offer).ok);

  // One more extension, under a name no offered extension has.
  std::string stranger = "x-unoffered";
  while (std::any_of(extensions->begin(), extensions->end(),
                     [&](const m::Extension& e) { return m::sameToken(e.name, stranger); })) {
    stranger += "-x";
  }
  oneField.back().second = echo + ", " + stranger + "; z=\",\"";
  check(!ws::checkUpgradeResponse(response101(oneField), offer).ok);
  perField.emplace_back("Sec-WebSocket-Extensions", stranger);
  check(!ws::checkUpgradeResponse(response101(perField), offer).ok);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::size_t sep = in.find("\n--\n");
  const std::string requestText = head(in.substr(0, sep));
  const std::string responseText =
      sep == std::string_view::npos ? std::string() : head(in.substr(sep + 4));

  http::RequestHead req;
  const http::ParseLimits roomy{1 << 16, 1000, 1 << 16};
  if (http::parseRequestHead(requestText, roomy, req).status != http::ParseStatus::Complete) {
    return 0;
  }
  for (const http::Header& h : req.headers) {
    checkHasToken(h.value);
    checkKey(h.value);
  }
  checkRequest(req);

  const ws::Offer offer = ws::offerOf(req);
  const auto keys = fields(req.headers, "Sec-WebSocket-Key");
  check(offer.key == (keys.empty() ? std::string() : std::string(keys[0]->value)));
  check(offer.protocols == joined(req.headers, "Sec-WebSocket-Protocol"));
  check(offer.extensions == joined(req.headers, "Sec-WebSocket-Extensions"));
  roundTrips(offer);

  if (responseText.empty()) return 0;
  // "Sec-WebSocket-Accept: *" stands for the right value.
  std::string text = responseText;
  const std::string placeholder = "\r\nSec-WebSocket-Accept: *\r\n";
  if (const std::size_t at = text.find(placeholder); at != std::string::npos) {
    text.replace(at, placeholder.size(),
                 "\r\nSec-WebSocket-Accept: " + m::webSocketAccept(offer.key) + "\r\n");
  }
  http::ResponseHead resp;
  const http::ParseResult r = http::parseResponseHead(text, roomy, http::ResponseContext{}, resp);
  if (r.status != http::ParseStatus::Complete) return 0;
  for (const http::Header& h : resp.headers) checkHasToken(h.value);
  checkResponse(resp, offer);
  return 0;
}
