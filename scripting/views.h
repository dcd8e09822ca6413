#pragma once
// The plain values the hooks read and return: what a request looks like to on_request and
// what it may answer, a WebSocket message and what on_message makes of it. No proxy/http type
// appears here; the proxy copies its parsed head into these views (spans over its buffers,
// valid for the call) and carries the results out.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsgate::scripting {

struct Header {
  std::string_view name;  // as received; Lua sees it lower-cased
  std::string_view value;
};

// One request head, for on_request. Every view lives as long as the call.
struct Request {
  std::string_view method;
  std::string_view path;   // without the query
  std::string_view query;  // after '?', undecoded ("" when none)
  std::string_view host;
  std::string_view clientIp;
  std::string_view route;  // the matched route's pool
  bool isWebsocket = false;
  std::span<const Header> headers;
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// What on_request returned. `error` set: the hook failed (a Lua error, a limit, a return
// value that breaks a rule); the request gets 500. Otherwise `keep` (nil returned) or the
// fields the table set.
struct RequestResult {
  std::string error;
  bool keep = true;
  std::optional<std::string> pool;
  std::optional<std::string> backend;
  std::optional<std::string> stickyKey;
  // A local answer when status != 0: status, body and its headers (validated names/values).
  int status = 0;
  std::string body;
  HeaderList headers;
  // Edits of the forwarded request (names lower-cased, validated; values validated).
  HeaderList setHeaders;
  std::vector<std::string> removeHeaders;

  bool failed() const { return !error.empty(); }
};

// The session a connection hook runs for (on_open, on_message, on_close: the `conn` table).
struct ConnInfo {
  uint64_t id = 0;
  std::string_view pool;
  std::string_view backend;
  std::string_view clientIp;
};

enum class Direction : uint8_t { Client, Backend };  // where a message came from

struct Message {
  bool text = false;
  std::string_view data;  // unmasked payload of the whole message
};

struct MessageResult {
  enum class Action : uint8_t { Pass, Drop, Replace, Close, Error };
  Action action = Action::Pass;
  std::string data;    // Replace: the new payload (UTF-8 checked for a text message)
  uint16_t code = 0;   // Close: 1000 or 3000-4999
  std::string reason;  // Close: at most 123 bytes of UTF-8; Error: what failed
};

// The outcome of on_open / on_close: empty, or what failed.
struct HookError {
  std::string error;
  bool failed() const { return !error.empty(); }
};

}  // namespace wsgate::scripting
