#include "scripting/engine.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "scripting/sandbox.h"

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

namespace wsgate::scripting {
namespace {

// Registry keys (their addresses).
const char kRequestMeta = 0;  // the metatable of request tables (lazy headers/query/cookies)
const char kSeqKey = 0;       // in a request table: the on_request call it belongs to
const char kHeadersMeta = 0;  // the metatable of req.headers (one header looked up per read)
const char kConnsKey = 0;     // the conn tables by handle (luaL_ref), apart from the registry's
                              // own slots so that no handle can name the globals or a thread
const char kBuiltinsKey = 0;  // the sandbox's globals before the script ran: name -> value

Engine* engineOf(lua_State* L) {
  void* ud = nullptr;
  lua_getallocf(L, &ud);
  return static_cast<Engine*>(ud);
}

bool isTchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool validName(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(),
                                   [](char c) { return isTchar(static_cast<unsigned char>(c)); });
}

// RFC 9110 5.5: field-value bytes are VCHAR, obs-text, SP and HTAB: no CR, LF, NUL or
// other control character, so a value can never end a field or a head early.
bool validValue(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return (c < 0x20 && c != '\t') || c == 0x7f;
  });
}

// RFC 3629: no overlong form, no surrogate, nothing above U+10FFFF.
bool validUtf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    uint32_t cp = 0;
    uint32_t min = 0;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (s.size() - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// "not enough memory", as Lua raises it or as a script re-raised it with a position.
bool isMemoryMessage(std::string_view s) { return s.ends_with("not enough memory"); }

char lowerChar(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool equalsLower(std::string_view a, std::string_view lower) {
  return a.size() == lower.size() && std::equal(a.begin(), a.end(), lower.begin(),
                                                [](char x, char y) { return lowerChar(x) == y; });
}

// Fields a script may not set or remove on the forwarded request: framing and hop-by-hop
// fields (a changed length would split the request), the WebSocket handshake wsgate
// validates, and the X-Forwarded-* fields wsgate sets itself.
bool managedRequestField(std::string_view name) {
  static constexpr std::array<std::string_view, 14> kManaged = {
      "content-length",   "transfer-encoding",
      "connection",       "upgrade",
      "keep-alive",       "te",
      "trailer",          "proxy-connection",
      "x-forwarded-for",  "x-forwarded-proto",
      "x-forwarded-host", "x-forwarded-client-cert",
      "http2-settings",   "expect"};
  if (name.starts_with("sec-websocket-")) return true;
  return std::find(kManaged.begin(), kManaged.end(), name) != kManaged.end();
}

// Fields of a local answer wsgate writes itself.
bool managedResponseField(std::string_view name) {
  return name == "content-length" || name == "transfer-encoding" || name == "connection" ||
         name == "keep-alive" || name == "upgrade";
}

std::string_view toView(lua_State* L, int idx) {
  std::size_t n = 0;
  const char* s = lua_tolstring(L, idx, &n);
  return {s, n};
}

// Pushes `s` lower-cased.
void pushLower(lua_State* L, std::string_view s) {
  luaL_Buffer b;
  char* out = luaL_buffinitsize(L, &b, s.size());
  for (std::size_t i = 0; i < s.size(); ++i) out[i] = lowerChar(s[i]);
  luaL_pushresultsize(&b, s.size());
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = lowerChar(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Pushes a query component percent-decoded, '+' as a space.
void pushDecoded(lua_State* L, std::string_view s) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      luaL_addchar(&b, ' ');
    } else if (s[i] == '%' && i + 2 < s.size() && hexValue(s[i + 1]) >= 0 &&
               hexValue(s[i + 2]) >= 0) {
      luaL_addchar(&b, static_cast<char>(hexValue(s[i + 1]) * 16 + hexValue(s[i + 2])));
      i += 2;
    } else {
      luaL_addchar(&b, s[i]);
    }
  }
  luaL_pushresult(&b);
}

// t[key] = value unless t already has key (the first occurrence wins).
void setFirst(lua_State* L, int t) {
  lua_pushvalue(L, -2);
  if (lua_rawget(L, t) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_rawset(L, t);
  } else {
    lua_pop(L, 3);
  }
}

// Fills the table at `t` with every header (names lower-cased).
void fillHeaders(lua_State* L, int t, const Request& req) {
  for (const Header& h : req.headers) {
    pushLower(L, h.name);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, t) == LUA_TSTRING) {  // repeated: joined as RFC 9110 5.3 allows
      lua_pushstring(L, equalsLower(h.name, "cookie") ? "; " : ", ");
      lua_pushlstring(L, h.value.data(), h.value.size());
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, h.value.data(), h.value.size());
    }
    lua_rawset(L, t);
  }
}

void pushQuery(lua_State* L, std::string_view query) {
  lua_newtable(L);
  const int t = lua_gettop(L);
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (part.empty()) continue;
    const std::size_t eq = part.find('=');
    pushDecoded(L, part.substr(0, eq));
    pushDecoded(L, eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1));
    setFirst(L, t);
  }
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void pushCookies(lua_State* L, const Request& req) {
  lua_newtable(L);
  const int t = lua_gettop(L);
  for (const Header& h : req.headers) {
    if (!equalsLower(h.name, "cookie")) continue;
    std::string_view rest = h.value;
    while (!rest.empty()) {
      const std::size_t semi = rest.find(';');
      const std::string_view pair = trim(rest.substr(0, semi));
      rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
      const std::size_t eq = pair.find('=');
      if (eq == std::string_view::npos || eq == 0) continue;
      std::string_view value = trim(pair.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      const std::string_view name = trim(pair.substr(0, eq));
      lua_pushlstring(L, name.data(), name.size());
      lua_pushlstring(L, value.data(), value.size());
      setFirst(L, t);
    }
  }
}

void pushView(lua_State* L, std::string_view value) {
  lua_pushlstring(L, value.data(), value.size());
}

void pushField(lua_State* L, const char* key, std::string_view value) {
  lua_pushlstring(L, value.data(), value.size());
  lua_setfield(L, -2, key);
}

}  // namespace

// The C-style side: functions Lua calls, and the bodies the engine runs under lua_pcall.
// Their frames hold no C++ object with a destructor: a Lua error longjmps through them.
struct Engine::Glue {
  struct RequestCall {
    const std::string* function;
    const Request* req;
    RequestResult* out;
  };
  struct OpenCall {
    const ConnInfo* info;
    int ref;
  };
  struct MessageCall {
    int conn;
    Direction dir;
    const Message* msg;
    MessageResult* out;
  };
  struct CloseCall {
    int conn;
    uint16_t code;
  };

  static void countHook(lua_State* L, lua_Debug*) {
    Engine* e = engineOf(L);
    e->budgetLeft_ -= e->hookStep_;
    if (e->budgetLeft_ > 0) return;
    // Spent: from now on every instruction fails, so a script's pcall may catch the error
    // but cannot run on after it (armBudget restores the step for the next call).
    if (e->hookStep_ != 1) {
      e->hookStep_ = 1;
      lua_sethook(L, &countHook, LUA_MASKCOUNT, 1);
    }
    // Level 0 is the interrupted function (a hook has no frame of its own): FILE:LINE.
    luaL_where(L, 0);
    lua_pushfstring(L, "instruction limit (%I) exceeded",
                    static_cast<lua_Integer>(
                        std::min<uint64_t>(e->script_->limits.instructions, LUA_MAXINTEGER)));
    lua_concat(L, 2);
    lua_error(L);
  }

  static void warn(void* self, const char* msg, int toContinue) {
    auto* e = static_cast<Engine*>(self);
    if (msg[0] == '@' && e->warning_.empty() && !toContinue) return;  // control messages
    e->warning_ += msg;
    if (toContinue) return;
    if (e->log_) e->log_(LogLevel::Warn, "Lua warning: " + e->warning_);
    e->warning_.clear();
  }

  static int panic(lua_State* L) {
    const char* msg = lua_tostring(L, -1);
    Engine* e = engineOf(L);
    if (e->log_) e->log_(LogLevel::Error, std::string("Lua panic: ") + (msg ? msg : "?"));
    std::abort();
  }

  // wsgate.log(level, ...): the arguments as tostring() would show them, space-separated.
  static int log(lua_State* L) {
    static const char* const kLevels[] = {"debug", "info", "warn", "error", nullptr};
    const int level = luaL_checkoption(L, 1, nullptr, kLevels);
    const int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 2; i <= n; ++i) {
      if (i > 2) luaL_addchar(&b, ' ');
      luaL_tolstring(L, i, nullptr);
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    Engine* e = engineOf(L);
    if (e->log_) e->log_(static_cast<LogLevel>(level), toView(L, -1));
    return 0;
  }

  // print(...) logs at info, as wsgate.log("info", ...).
  static int print(lua_State* L) {
    lua_pushstring(L, "info");
    lua_insert(L, 1);
    return log(L);
  }

  static int now(lua_State* L) {
    const auto t = std::chrono::system_clock::now().time_since_epoch();
    lua_pushnumber(L, std::chrono::duration<double>(t).count());
    return 1;
  }

  // Runs the script's top level in a fresh sandbox. Arg 1: the Engine.
  static int boot(lua_State* L) {
    auto* e = static_cast<Engine*>(lua_touserdata(L, 1));
    openSandbox(L, e->script_->limits.instructions, &e->budgetLeft_);
    lua_pushcfunction(L, print);
    lua_setglobal(L, "print");
    lua_createtable(L, 0, 4);
    lua_pushcfunction(L, log);
    lua_setfield(L, -2, "log");
    lua_pushcfunction(L, now);
    lua_setfield(L, -2, "now");
    lua_newtable(L);
    lua_setfield(L, -2, "shared");
    lua_setglobal(L, "wsgate");

    lua_createtable(L, 0, 2);  // the request metatable, out of the script's reach
    lua_pushcfunction(L, requestIndex);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &kRequestMeta);
    lua_createtable(L, 0, 3);  // req.headers' metatable, as much out of reach
    lua_pushcfunction(L, headerIndex);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, headerPairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &kHeadersMeta);
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &kConnsKey);

    lua_newtable(L);  // what the sandbox defines, so listFunctions can leave it out
    lua_pushglobaltable(L);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -5);
    }
    lua_pop(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &kBuiltinsKey);

    const std::string& src = e->script_->source;
    const char* chunk = lua_pushfstring(L, "@%s", e->chunkName_.c_str());
    const int loaded = luaL_loadbufferx(L, src.data(), src.size(), chunk, "t");
    if (loaded != LUA_OK) return lua_error(L);
    e->armBudget();
    lua_call(L, 0, 0);
    e->hasOnMessage_ = lua_getglobal(L, "on_message") == LUA_TFUNCTION;
    e->hasOnOpen_ = lua_getglobal(L, "on_open") == LUA_TFUNCTION;
    e->hasOnClose_ = lua_getglobal(L, "on_close") == LUA_TFUNCTION;
    return 0;
  }

  // Lists the global functions the script defined (Script::functions): not the sandbox's own,
  // unless the script replaced one, so a route's `lua: print` is refused at load.
  static int listFunctions(lua_State* L) {
    auto* names = static_cast<std::vector<std::string>*>(lua_touserdata(L, 1));
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kBuiltinsKey);
    const int builtins = lua_gettop(L);
    lua_pushglobaltable(L);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TFUNCTION) {
        lua_pushvalue(L, -2);
        lua_rawget(L, builtins);
        if (!lua_rawequal(L, -1, -2)) names->emplace_back(toView(L, -3));
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    return 0;
  }

  // __index of a request table: builds headers, query and cookies on first use, during the
  // call only (the views behind them end with it).
  static int requestIndex(lua_State* L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    const std::string_view key = lua_type(L, 2) == LUA_TSTRING ? toView(L, 2) : "";
    // Every field is made when first read: a hook that reads one header pays for that alone.
    static constexpr std::string_view kFields[] = {"method",    "path",  "host",
                                                   "client_ip", "route", "is_websocket",
                                                   "headers",   "query", "cookies"};
    if (std::find(std::begin(kFields), std::end(kFields), key) == std::end(kFields)) return 0;
    Engine* e = engineOf(L);
    lua_rawgetp(L, 1, &kSeqKey);
    const bool live = e->currentRequest_ != nullptr &&
                      lua_tointeger(L, -1) == static_cast<lua_Integer>(e->requestSeq_);
    lua_pop(L, 1);
    if (!live) return luaL_error(L, "req.%s read after on_request returned", key.data());
    const Request& req = *e->currentRequest_;
    if (key == "method") {
      pushView(L, req.method);
    } else if (key == "path") {
      pushView(L, req.path);
    } else if (key == "host") {
      pushView(L, req.host);
    } else if (key == "client_ip") {
      pushView(L, req.clientIp);
    } else if (key == "route") {
      pushView(L, req.route);
    } else if (key == "is_websocket") {
      lua_pushboolean(L, req.isWebsocket);
    } else if (key == "headers") {
      // Empty: each read looks up its one header in the parsed head (building a table of
      // every header to read one cost more than the rest of a routing hook).
      lua_createtable(L, 0, 2);
      lua_rawgetp(L, LUA_REGISTRYINDEX, &kHeadersMeta);
      lua_setmetatable(L, -2);
      e->currentHeaders_ = lua_topointer(L, -1);
    } else if (key == "query") {
      pushQuery(L, req.query);
    } else {
      pushCookies(L, req);
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);  // the next read finds it directly
    return 1;
  }

  // The call's own req.headers, while the call lasts; else null.
  static const Request* liveHeaders(lua_State* L, Engine* e) {
    return e->currentRequest_ != nullptr && e->currentHeaders_ == lua_topointer(L, 1)
               ? e->currentRequest_
               : nullptr;
  }

  // req.headers[name]: the header's value (repeated ones joined), cached in the table.
  static int headerIndex(lua_State* L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    const Request* req = liveHeaders(L, engineOf(L));
    if (req == nullptr) return luaL_error(L, "req.headers read after on_request returned");
    const std::string_view name = toView(L, 2);
    int found = 0;
    for (const Header& h : req->headers) {
      if (!equalsLower(h.name, name)) continue;
      if (found++ > 0) lua_pushstring(L, name == "cookie" ? "; " : ", ");
      lua_pushlstring(L, h.value.data(), h.value.size());
    }
    if (found == 0) return 0;
    if (found > 1) lua_concat(L, 2 * found - 1);  // RFC 9110 5.3: one list
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
  }

  // pairs(req.headers): every header, filled in on the first pairs of the call.
  static int headerPairs(lua_State* L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    const Request* req = liveHeaders(L, engineOf(L));
    if (req == nullptr) return luaL_error(L, "req.headers read after on_request returned");
    lua_settop(L, 1);
    // Cached lookups hold joined values: start over, so repeated fields are joined once.
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushnil(L);
      lua_rawset(L, 1);
    }
    fillHeaders(L, 1, *req);
    lua_pushcfunction(L, rawNext);  // not the global `next`, which a script may replace
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
  }

  static int rawNext(lua_State* L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    if (lua_next(L, 1) != 0) return 2;
    lua_pushnil(L);
    return 1;
  }

  static void pushRequest(lua_State* L, Engine* e, const Request& req) {
    (void)req;  // its fields are made when read (requestIndex)
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, static_cast<lua_Integer>(e->requestSeq_));
    lua_rawsetp(L, -2, &kSeqKey);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kRequestMeta);
    lua_setmetatable(L, -2);
  }

  // A non-empty string field of the returned table, or an error naming it.
  static std::string_view stringField(lua_State* L, const char* hook, std::string_view key) {
    if (lua_type(L, -1) != LUA_TSTRING) {
      luaL_error(L, "%s: '%s' must be a string, got %s", hook, key.data(), luaL_typename(L, -1));
    }
    return toView(L, -1);
  }

  // Reads a { name = value } table at the top into `out` (names lower-cased).
  static void readHeaderTable(lua_State* L, const char* what, bool request, HeaderList& out) {
    if (lua_type(L, -1) != LUA_TTABLE) {
      luaL_error(L, "on_request: '%s' must be a table, got %s", what, luaL_typename(L, -1));
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
        luaL_error(L, "on_request: '%s' must map header names to string values", what);
      }
      const std::string_view name = toView(L, -2);
      const std::string_view value = toView(L, -1);
      if (!validName(name)) {
        luaL_error(L, "on_request: %s: invalid header name '%s'", what, name.data());
      }
      if (!validValue(value)) {
        luaL_error(L,
                   "on_request: %s: the value of '%s' holds a control character (CR, LF, "
                   "NUL...)",
                   what, name.data());
      }
      pushLower(L, name);
      const std::string_view lower = toView(L, -1);
      if (request ? managedRequestField(lower) : managedResponseField(lower)) {
        luaL_error(L, "on_request: %s: '%s' is managed by wsgate", what, lower.data());
      }
      out.emplace_back(lower, value);
      lua_pop(L, 2);
    }
  }

  static void readRemoveList(lua_State* L, std::vector<std::string>& out) {
    if (lua_type(L, -1) != LUA_TTABLE) {
      luaL_error(L, "on_request: 'remove_headers' must be a list, got %s", luaL_typename(L, -1));
    }
    // Keys 1..n and no other: a map such as { ["x-b"] = true } would otherwise remove nothing
    // without a word.
    lua_Integer n = 0;
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      lua_pop(L, 1);
      if (!lua_isinteger(L, -1)) {
        luaL_error(L, "on_request: 'remove_headers' must be a list, got a table with a %s key",
                   luaL_typename(L, -1));
      }
      ++n;
    }
    for (lua_Integer i = 1; i <= n; ++i) {
      const int type = lua_rawgeti(L, -1, i);
      if (type == LUA_TNIL) {
        luaL_error(L, "on_request: 'remove_headers' must be a list, got a table with a hole");
      }
      if (type != LUA_TSTRING) {
        luaL_error(L, "on_request: 'remove_headers' must list header names (strings)");
      }
      const std::string_view name = toView(L, -1);
      if (!validName(name)) {
        luaL_error(L, "on_request: remove_headers: invalid header name '%s'", name.data());
      }
      pushLower(L, name);
      const std::string_view lower = toView(L, -1);
      if (managedRequestField(lower)) {
        luaL_error(L, "on_request: remove_headers: '%s' is managed by wsgate", lower.data());
      }
      out.emplace_back(lower);
      lua_pop(L, 2);
    }
  }

  static void readRequestResult(lua_State* L, RequestResult& out) {
    if (lua_isnil(L, -1)) return;
    if (lua_type(L, -1) != LUA_TTABLE) {
      luaL_error(L, "on_request must return nil or a table, got %s", luaL_typename(L, -1));
    }
    out.keep = false;
    bool hasBody = false;
    bool hasHeaders = false;
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING) {
        luaL_error(L, "on_request returned a table with a %s key", luaL_typename(L, -2));
      }
      const std::string_view key = toView(L, -2);
      if (key == "pool") {
        out.pool.emplace(stringField(L, "on_request", key));
      } else if (key == "backend") {
        out.backend.emplace(stringField(L, "on_request", key));
      } else if (key == "sticky_key") {
        out.stickyKey.emplace(stringField(L, "on_request", key));
      } else if (key == "status") {
        if (!lua_isinteger(L, -1)) luaL_error(L, "on_request: 'status' must be an integer");
        const lua_Integer s = lua_tointeger(L, -1);
        if (s < 200 || s > 599) {
          luaL_error(L, "on_request: 'status' must be 200-599, got %I", s);
        }
        out.status = static_cast<int>(s);
      } else if (key == "body") {
        out.body = stringField(L, "on_request", key);
        hasBody = true;
      } else if (key == "headers") {
        readHeaderTable(L, "headers", false, out.headers);
        hasHeaders = true;
      } else if (key == "set_headers") {
        readHeaderTable(L, "set_headers", true, out.setHeaders);
      } else if (key == "remove_headers") {
        readRemoveList(L, out.removeHeaders);
      } else {
        luaL_error(L, "on_request returned an unknown key '%s'", key.data());
      }
      lua_pop(L, 1);
    }
    const bool routes = out.pool || out.backend || out.stickyKey || !out.setHeaders.empty() ||
                        !out.removeHeaders.empty();
    if (out.status != 0 && routes) {
      luaL_error(L, "on_request returned both a local answer ('status') and routing fields");
    }
    if (out.status == 0 && (hasBody || hasHeaders)) {
      luaL_error(L, "on_request: 'body' and 'headers' answer locally and need 'status'");
    }
  }

  static int request(lua_State* L) {
    auto* call = static_cast<RequestCall*>(lua_touserdata(L, 1));
    Engine* e = engineOf(L);
    if (lua_getglobal(L, call->function->c_str()) != LUA_TFUNCTION) {
      return luaL_error(L, "'%s' is not a function of %s", call->function->c_str(),
                        e->script_->file.c_str());
    }
    pushRequest(L, e, *call->req);
    lua_call(L, 1, 1);
    readRequestResult(L, *call->out);
    return 0;
  }

  // Pushes the conn table of handle `ref`; an error when no open connection has it.
  static void pushConn(lua_State* L, int ref) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kConnsKey);
    const int type = lua_rawgeti(L, -1, ref);
    lua_remove(L, -2);
    if (type != LUA_TTABLE) {
      luaL_error(L, "%s: no connection %d", engineOf(L)->script_->file.c_str(), ref);
    }
  }

  static int open(lua_State* L) {
    auto* call = static_cast<OpenCall*>(lua_touserdata(L, 1));
    Engine* e = engineOf(L);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kConnsKey);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, static_cast<lua_Integer>(call->info->id));
    lua_setfield(L, -2, "id");
    pushField(L, "pool", call->info->pool);
    pushField(L, "backend", call->info->backend);
    pushField(L, "client_ip", call->info->clientIp);
    lua_newtable(L);
    lua_setfield(L, -2, "vars");
    lua_pushvalue(L, -1);
    call->ref = luaL_ref(L, -3);
    if (!e->hasOnOpen_) return 0;
    lua_getglobal(L, "on_open");
    lua_insert(L, -2);
    lua_call(L, 1, 0);
    return 0;
  }

  static int message(lua_State* L) {
    auto* call = static_cast<MessageCall*>(lua_touserdata(L, 1));
    MessageResult& out = *call->out;
    lua_getglobal(L, "on_message");
    pushConn(L, call->conn);
    lua_pushstring(L, call->dir == Direction::Client ? "client" : "backend");
    lua_createtable(L, 0, 2);
    lua_pushstring(L, call->msg->text ? "text" : "binary");
    lua_setfield(L, -2, "opcode");
    pushField(L, "data", call->msg->data);
    lua_call(L, 3, 1);
    switch (lua_type(L, -1)) {
      case LUA_TNIL:
        out.action = MessageResult::Action::Pass;
        return 0;
      case LUA_TSTRING: {
        const std::string_view s = toView(L, -1);
        if (s == "pass") {
          out.action = MessageResult::Action::Pass;
        } else if (s == "drop") {
          out.action = MessageResult::Action::Drop;
        } else {
          out.action = MessageResult::Action::Replace;
          out.data = s;
        }
        return 0;
      }
      case LUA_TTABLE: {
        if (lua_getfield(L, -1, "close") != LUA_TNUMBER || !lua_isinteger(L, -1)) {
          return luaL_error(L, "on_message: a returned table needs 'close' = a close code");
        }
        const lua_Integer code = lua_tointeger(L, -1);
        if (code != 1000 && (code < 3000 || code > 4999)) {
          return luaL_error(L, "on_message: close code must be 1000 or 3000-4999, got %I", code);
        }
        const int reasonType = lua_getfield(L, -2, "reason");
        if (reasonType != LUA_TNIL && reasonType != LUA_TSTRING) {
          return luaL_error(L, "on_message: 'reason' must be a string");
        }
        const std::string_view reason = reasonType == LUA_TSTRING ? toView(L, -1) : "";
        if (reason.size() > 123) {
          return luaL_error(L, "on_message: close reason over 123 bytes");
        }
        if (!validUtf8(reason)) {  // RFC 6455 5.5.1: the reason is UTF-8
          return luaL_error(L, "on_message: close reason is not valid UTF-8");
        }
        out.action = MessageResult::Action::Close;
        out.code = static_cast<uint16_t>(code);
        out.reason = reason;
        return 0;
      }
      default:
        return luaL_error(L,
                          "on_message must return nil, \"pass\", \"drop\", a string or "
                          "{ close = code }, got %s",
                          luaL_typename(L, -1));
    }
  }

  static int close(lua_State* L) {
    auto* call = static_cast<CloseCall*>(lua_touserdata(L, 1));
    lua_getglobal(L, "on_close");
    pushConn(L, call->conn);
    lua_pushinteger(L, call->code);
    lua_call(L, 2, 0);
    return 0;
  }

  static int unref(lua_State* L) {
    const int ref = static_cast<int>(reinterpret_cast<intptr_t>(lua_touserdata(L, 1)));
    pushConn(L, ref);  // a second unref of one handle would corrupt the free list
    lua_rawgetp(L, LUA_REGISTRYINDEX, &kConnsKey);
    luaL_unref(L, -1, ref);
    return 0;
  }
};

Engine::Engine(ScriptPtr script, LogFn log) : script_(std::move(script)), log_(std::move(log)) {
  // Lua shortens chunk names past LUA_IDSIZE ("...tail of the path") in every position it
  // reports; a long path is loaded under its base name and put back whole in errors.
  const std::string& file = script_->file;
  const std::size_t slash = file.rfind('/');
  chunkName_ =
      file.size() <= kChunkNameMax || slash == std::string::npos ? file : file.substr(slash + 1);
}

Engine::~Engine() {
  if (L_ == nullptr) return;
  // __gc metamethods run now: under a budget, so an endless one ends (as a warning).
  armBudget();
  lua_close(L_);
}

std::unique_ptr<Engine> Engine::create(ScriptPtr script, LogFn log, std::string& error) {
  std::unique_ptr<Engine> e(new Engine(std::move(script), std::move(log)));
  e->L_ = lua_newstate(&Engine::allocate, e.get());
  if (e->L_ == nullptr) {
    error = e->script_->file + ": cannot create a Lua state";
    return nullptr;
  }
  lua_atpanic(e->L_, &Glue::panic);
  lua_setwarnf(e->L_, &Glue::warn, e.get());
  error = e->protectedCall(&Glue::boot, e.get());
  if (!error.empty()) return nullptr;
  return e;
}

void* Engine::allocate(void* self, void* ptr, std::size_t osize, std::size_t nsize) noexcept {
  auto* e = static_cast<Engine*>(self);
  const std::size_t old = ptr != nullptr ? osize : 0;
  if (nsize == 0) {
    e->memoryUsed_ -= old;
    std::free(ptr);
    return nullptr;
  }
  if (nsize > old && e->memoryUsed_ - old + nsize > e->script_->limits.memoryBytes) {
    e->memoryRefused_ = true;
    return nullptr;  // Lua raises "not enough memory" in the call
  }
  void* p = std::realloc(ptr, nsize);
  if (p == nullptr) return nullptr;
  e->memoryUsed_ = e->memoryUsed_ - old + nsize;
  return p;
}

void Engine::armBudget() {
  const uint64_t limit = std::max<uint64_t>(script_->limits.instructions, 1);
  budgetLeft_ = static_cast<int64_t>(std::min<uint64_t>(limit, INT64_MAX));
  hookStep_ = static_cast<int>(std::min<uint64_t>(limit, 1u << 30));
  memoryRefused_ = false;
  lua_sethook(L_, &Glue::countHook, LUA_MASKCOUNT, hookStep_);
}

std::string Engine::protectedCall(int (*fn)(lua_State*), void* arg) {
  armBudget();
  lua_pushcfunction(L_, fn);
  lua_pushlightuserdata(L_, arg);
  const int status = lua_pcall(L_, 1, 0, 0);
  if (status == LUA_OK) return {};
  std::string error;
  // A refusal the script caught (pcall) must not label a later, unrelated error.
  if (status == LUA_ERRMEM ||
      (memoryRefused_ && lua_type(L_, -1) == LUA_TSTRING && isMemoryMessage(toView(L_, -1)))) {
    error = script_->file + ": memory limit (" + std::to_string(script_->limits.memoryBytes) +
            " bytes) reached";
  } else if (lua_type(L_, -1) == LUA_TSTRING) {
    error = lua_tostring(L_, -1);
  } else {
    error = script_->file + ": error object is a " + luaL_typename(L_, -1) + " value";
  }
  lua_settop(L_, 0);
  if (error.empty()) error = script_->file + ": error with an empty message";
  // Positions name the chunk; a long path was loaded under its base name: named whole here.
  if (chunkName_ != script_->file) {
    const std::string shortName = chunkName_ + ":";
    for (std::size_t at = error.find(shortName); at != std::string::npos;
         at = error.find(shortName, at + script_->file.size() + 1)) {
      error.replace(at, chunkName_.size(), script_->file);
    }
  }
  return error;
}

RequestResult Engine::onRequest(const std::string& function, const Request& req) {
  RequestResult out;
  ++requestSeq_;
  currentRequest_ = &req;
  Glue::RequestCall call{&function, &req, &out};
  std::string error = protectedCall(&Glue::request, &call);
  currentRequest_ = nullptr;
  currentHeaders_ = nullptr;
  if (!error.empty()) {
    out = RequestResult{};
    out.error = std::move(error);
  }
  return out;
}

int Engine::openConn(const ConnInfo& info, HookError& err) {
  Glue::OpenCall call{&info, 0};
  err.error = protectedCall(&Glue::open, &call);
  return call.ref > 0 ? call.ref : 0;
}

MessageResult Engine::onMessage(int conn, Direction dir, const Message& msg) {
  MessageResult out;
  Glue::MessageCall call{conn, dir, &msg, &out};
  std::string error = protectedCall(&Glue::message, &call);
  if (!error.empty()) {
    out = MessageResult{};
    out.action = MessageResult::Action::Error;
    out.reason = std::move(error);
  }
  return out;
}

HookError Engine::closeConn(int conn, uint16_t code) {
  HookError err;
  if (conn <= 0) return err;
  if (hasOnClose_) {
    Glue::CloseCall call{conn, code};
    err.error = protectedCall(&Glue::close, &call);
  }
  std::string unrefError =
      protectedCall(&Glue::unref, reinterpret_cast<void*>(static_cast<intptr_t>(conn)));
  if (err.error.empty()) err.error = std::move(unrefError);
  return err;
}

std::vector<std::string> Engine::globalFunctions(std::string& error) {
  std::vector<std::string> names;
  error = protectedCall(&Glue::listFunctions, &names);
  std::sort(names.begin(), names.end());
  return names;
}

bool Script::defines(std::string_view name) const {
  return std::binary_search(functions.begin(), functions.end(), name);
}

ScriptPtr loadScript(const std::string& file, const Limits& limits, std::string& error) {
  // stdio rather than a stream: a read error (a directory opens, then fails with EISDIR) must
  // not read as an empty script.
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> in(std::fopen(file.c_str(), "rb"), &std::fclose);
  if (!in) {
    const int why = errno;
    error = file + ": cannot read the script: " + std::strerror(why);
    return nullptr;
  }
  std::string text;
  char buf[16384];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, in.get())) > 0) text.append(buf, n);
  if (std::ferror(in.get())) {
    const int why = errno;
    error = file + ": cannot read the script: " + std::strerror(why);
    return nullptr;
  }
  return checkScript(file, std::move(text), limits, error);
}

ScriptPtr checkScript(std::string file, std::string source, const Limits& limits,
                      std::string& error) {
  auto script = std::make_shared<Script>();
  script->file = std::move(file);
  script->source = std::move(source);
  script->limits = limits;
  if (!script->source.empty() && script->source[0] == LUA_SIGNATURE[0]) {
    error = script->file + ": a binary (precompiled) chunk; only Lua source is loaded";
    return nullptr;
  }
  auto engine = Engine::create(script, nullptr, error);
  if (!engine) return nullptr;
  std::vector<std::string> names = engine->globalFunctions(error);
  if (!error.empty()) return nullptr;
  engine.reset();
  script->functions = std::move(names);
  return script;
}

}  // namespace wsgate::scripting
