// WebSocket opening handshake checks (RFC 6455 4.1 client side, 4.2 server side).

#include "proxy/ws/handshake.h"

#include <openssl/evp.h>

#include <array>
#include <cstddef>

namespace wsgate::ws {

namespace {

using http::Header;
using http::iequals;

constexpr std::string_view kKeyField = "Sec-WebSocket-Key";
constexpr std::string_view kVersionField = "Sec-WebSocket-Version";
constexpr std::string_view kAcceptField = "Sec-WebSocket-Accept";
constexpr std::string_view kProtocolField = "Sec-WebSocket-Protocol";
constexpr std::string_view kExtensionsField = "Sec-WebSocket-Extensions";

bool isBase64Char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// The 6-bit value of a base64 alphabet character (RFC 4648 table 1).
unsigned base64Value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return static_cast<unsigned>(c - 'A');
  if (c >= 'a' && c <= 'z') return static_cast<unsigned>(c - 'a') + 26;
  if (c >= '0' && c <= '9') return static_cast<unsigned>(c - '0') + 52;
  return c == '+' ? 62 : 63;
}

// Fields named `name`, and the last one seen: duplicates of the single-valued
// Sec-WebSocket-* fields are refused rather than resolved by picking one.
struct FieldCount {
  std::size_t count = 0;
  const Header* last = nullptr;
};

FieldCount countFields(const std::vector<Header>& headers, std::string_view name) noexcept {
  FieldCount fc;
  for (const Header& h : headers) {
    if (iequals(h.name, name)) {
      ++fc.count;
      fc.last = &h;
    }
  }
  return fc;
}

std::string_view trimOws(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls fn(element) for each non-empty element of a comma-separated list (RFC 9110 5.6.1),
// OWS trimmed. Commas inside a quoted-string (extension parameters may carry one, RFC 6455
// 9.1) do not split. Stops early and returns false when fn returns false.
template <class Fn>
bool forEachElement(std::string_view list, Fn&& fn) {
  std::size_t start = 0;
  bool quoted = false;
  for (std::size_t i = 0; i <= list.size(); ++i) {
    if (i < list.size()) {
      const char c = list[i];
      if (quoted && c == '\\' && i + 1 < list.size()) {
        ++i;  // quoted-pair: the next character is literal
        continue;
      }
      // (A backslash that ends the list quotes nothing: stepping over it would also step
      // over the end, and the last element, maybe an unoffered extension, would go unchecked.)
      if (c == '"') quoted = !quoted;
      if (c != ',' || quoted) continue;
    }
    const std::string_view element = trimOws(list.substr(start, i - start));
    if (!element.empty() && !fn(element)) return false;
    start = i + 1;
  }
  return true;
}

// An extension element's name: the token before its parameters ("name; p=v").
std::string_view extensionName(std::string_view element) noexcept {
  return trimOws(element.substr(0, element.find(';')));
}

// RFC 6455 4.2.1 / 4.3: Sec-WebSocket-Protocol and -Extensions may be repeated in a request;
// their values form one list.
std::string joinFields(const std::vector<Header>& headers, std::string_view name) {
  std::string joined;
  for (const Header& h : headers) {
    if (!iequals(h.name, name) || h.value.empty()) continue;
    if (!joined.empty()) joined += ", ";
    joined += h.value;
  }
  return joined;
}

}  // namespace

bool isValidKey(std::string_view key) noexcept {
  // RFC 6455 4.1 step 7 / 4.2.1 item 5: a base64-encoded 16-byte nonce. 16 bytes encode to
  // 22 data characters (132 bits, 4 of them padding) followed by "==".
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
  for (std::size_t i = 0; i < 22; ++i) {
    if (!isBase64Char(key[i])) return false;
  }
  // The last data character carries the final 2 bits of byte 16; its 4 low bits are
  // padding and must be zero (RFC 4648 3.5), or the text is not a canonical 16-byte value.
  return (base64Value(key[21]) & 0x0F) == 0;
}

std::string computeAccept(std::string_view key) {
  // RFC 6455 4.2.2 item 5.4: base64(SHA-1(key + GUID)). SHA-1 is used as a fingerprint
  // here, not for security, which is why it is acceptable.
  std::string input;
  input.reserve(key.size() + kAcceptGuid.size());
  input.append(key);
  input.append(kAcceptGuid);

  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int digestLen = 0;
  if (EVP_Digest(input.data(), input.size(), digest.data(), &digestLen, EVP_sha1(), nullptr) != 1) {
    // Only a broken crypto library gets here; an empty accept matches no response, so the
    // handshake fails closed.
    return {};
  }
  // EVP_EncodeBlock writes 4 characters per 3 input bytes plus a terminating NUL.
  std::array<unsigned char, 4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1> encoded{};
  const int n = EVP_EncodeBlock(encoded.data(), digest.data(), static_cast<int>(digestLen));
  return {reinterpret_cast<const char*>(encoded.data()), static_cast<std::size_t>(n)};
}

Verdict checkUpgradeRequest(const http::RequestHead& req) noexcept {
  // RFC 6455 4.2.1 items 1-6. The parser already required Host, Upgrade: websocket and
  // Connection: upgrade before flagging the request; a head that was not flagged is not a
  // WebSocket handshake at all.
  if (!req.upgradeWebsocket) return Verdict::reject(400, "not a websocket upgrade");
  if (req.method != "GET") return Verdict::reject(400, "websocket upgrade method not GET");
  if (req.version != http::Version::Http11) {
    return Verdict::reject(400, "websocket upgrade needs HTTP/1.1");
  }

  const FieldCount key = countFields(req.headers, kKeyField);
  if (key.count == 0) return Verdict::reject(400, "missing Sec-WebSocket-Key");
  if (key.count > 1) return Verdict::reject(400, "duplicate Sec-WebSocket-Key");
  if (!isValidKey(key.last->value)) return Verdict::reject(400, "invalid Sec-WebSocket-Key");

  // RFC 6455 4.2.2 item 1.4 / 4.4: a version the server does not speak is answered 426
  // with the versions it does speak, so the client can retry.
  const FieldCount version = countFields(req.headers, kVersionField);
  if (version.count == 0) return Verdict::reject(426, "missing Sec-WebSocket-Version");
  if (version.count > 1) return Verdict::reject(426, "duplicate Sec-WebSocket-Version");
  if (version.last->value != "13") return Verdict::reject(426, "unsupported Sec-WebSocket-Version");

  // A GET upgrade carries no body (RFC 9110 9.3.1 gives it no meaning). Bytes after the
  // head belong to the tunnel, so a declared body would make the frame stream ambiguous.
  if (req.body == http::BodyKind::Chunked ||
      (req.body == http::BodyKind::ContentLength && req.contentLength > 0)) {
    return Verdict::reject(400, "websocket upgrade with a body");
  }
  return Verdict::accept();
}

Offer offerOf(const http::RequestHead& req) {
  Offer offer;
  if (const Header* key = http::findHeader(req.headers, kKeyField)) offer.key = key->value;
  offer.protocols = joinFields(req.headers, kProtocolField);
  offer.extensions = joinFields(req.headers, kExtensionsField);
  return offer;
}

Verdict checkUpgradeResponse(const http::ResponseHead& resp, const Offer& offer) {
  // RFC 6455 4.1, "the client MUST validate the server's response". The proxy is the
  // backend's client; every failure here is a 502, never a tunnel (see protocol-notes:
  // tunnelling after a failed upgrade is the smuggling hole).
  constexpr int kBadGateway = 502;
  if (resp.status != 101) return Verdict::reject(kBadGateway, "backend status not 101");
  // RFC 9110 15.2: a 1xx is not sent to an HTTP/1.0 client, and we asked in HTTP/1.1.
  if (resp.version != http::Version::Http11) {
    return Verdict::reject(kBadGateway, "101 in HTTP/1.0");
  }

  // 4.1 item 2: Upgrade must be "websocket" (case-insensitive), not merely contain it.
  const FieldCount upgrade = countFields(resp.headers, "Upgrade");
  if (upgrade.count != 1 || !iequals(trimOws(upgrade.last->value), "websocket")) {
    return Verdict::reject(kBadGateway, "101 without Upgrade: websocket");
  }

  // 4.1 item 3: some Connection field must hold the token "upgrade".
  bool connectionUpgrade = false;
  for (const Header& h : resp.headers) {
    if (iequals(h.name, "Connection") && http::hasToken(h.value, "upgrade")) {
      connectionUpgrade = true;
      break;
    }
  }
  if (!connectionUpgrade) return Verdict::reject(kBadGateway, "101 without Connection: upgrade");

  // 4.1 item 4: exactly one Sec-WebSocket-Accept, equal to the value derived from our key.
  // Compared exactly: base64 is case-sensitive.
  const FieldCount accept = countFields(resp.headers, kAcceptField);
  if (accept.count == 0) return Verdict::reject(kBadGateway, "101 without Sec-WebSocket-Accept");
  if (accept.count > 1) return Verdict::reject(kBadGateway, "duplicate Sec-WebSocket-Accept");
  const std::string expected = computeAccept(offer.key);
  if (expected.empty() || accept.last->value != expected) {
    return Verdict::reject(kBadGateway, "incorrect Sec-WebSocket-Accept");
  }

  // 4.1 item 6 and 11.3.4: at most one Sec-WebSocket-Protocol in a response, holding a
  // single value the client offered. Compared exactly, as browsers do: a case variant would
  // be refused by the client anyway.
  const FieldCount protocol = countFields(resp.headers, kProtocolField);
  if (protocol.count > 1) return Verdict::reject(kBadGateway, "duplicate Sec-WebSocket-Protocol");
  if (protocol.count == 1) {
    if (offer.protocols.empty()) {
      return Verdict::reject(kBadGateway, "subprotocol chosen but none offered");
    }
    const std::string_view chosen = trimOws(protocol.last->value);
    const bool offered = !forEachElement(offer.protocols, [&](std::string_view p) {
      return p != chosen;  // false stops the walk: found
    });
    if (!offered) return Verdict::reject(kBadGateway, "subprotocol not offered");
  }

  // 4.1 item 5: every extension in use must have been requested by the client. Only names
  // are compared; parameters are the peers' business (RFC 7692 negotiation passes through).
  bool extensionsOk = true;
  for (const Header& h : resp.headers) {
    if (!iequals(h.name, kExtensionsField)) continue;
    extensionsOk = forEachElement(h.value, [&](std::string_view element) {
      const std::string_view name = extensionName(element);
      if (name.empty()) return false;
      return !forEachElement(offer.extensions, [&](std::string_view offered) {
        return !iequals(extensionName(offered), name);
      });
    });
    if (!extensionsOk) break;
  }
  if (!extensionsOk) return Verdict::reject(kBadGateway, "extension not offered");

  return Verdict::accept();
}

bool negotiatesDeflate(const http::ResponseHead& resp) {
  for (const Header& h : resp.headers) {
    if (!iequals(h.name, kExtensionsField)) continue;
    const bool found = !forEachElement(h.value, [](std::string_view element) {
      return !iequals(extensionName(element), "permessage-deflate");  // false stops: found
    });
    if (found) return true;
  }
  return false;
}

}  // namespace wsgate::ws
