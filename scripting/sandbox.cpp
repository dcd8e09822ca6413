#include "scripting/sandbox.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

namespace wsgate::scripting {
namespace {

// Skips one single-character class of a pattern at p[i] ('.', a literal, %x, [set]);
// returns the index after it.
std::size_t skipClass(std::string_view p, std::size_t i) {
  if (p[i] == '%') return std::min(p.size(), i + 2);
  if (p[i] != '[') return i + 1;
  ++i;
  if (i < p.size() && p[i] == '^') ++i;
  if (i < p.size() && p[i] == ']') ++i;  // a ']' first is a literal
  while (i < p.size() && p[i] != ']') i += p[i] == '%' ? 2 : 1;
  return std::min(p.size(), i + 1);
}

// Which pattern function a guard stands in front of: what its third and fourth arguments are.
enum PatternFunction : lua_Integer {
  kFind,   // (s, pattern, init, plain)
  kMatch,  // match and gmatch: (s, pattern, init)
  kGsub,   // (s, pattern, repl, n): the third argument is no start position
};

// The guard in front of string.find/match/gmatch/gsub: upvalue 1 is the original function,
// upvalue 2 the instruction limit, upvalue 3 the PatternFunction, upvalue 4 the call's budget
// left (a light userdata, int64_t*, or NULL). find with `plain` skips it (no pattern).
int guardedPattern(lua_State* L) {
  std::size_t n = 0;
  luaL_checklstring(L, 1, &n);
  std::size_t plen = 0;
  const char* pattern = luaL_checklstring(L, 2, &plen);
  const lua_Integer kind = lua_tointeger(L, lua_upvalueindex(3));
  const bool plain = kind == kFind && lua_toboolean(L, 4);
  if (!plain) {
    lua_Integer init = 1;
    if (kind != kGsub && lua_isinteger(L, 3)) init = lua_tointeger(L, 3);
    if (init < 0) init = static_cast<lua_Integer>(n) + init + 1;
    if (init < 1) init = 1;
    const std::size_t from = static_cast<std::size_t>(init) - 1;
    const std::size_t subject = from >= n ? 0 : n - from;
    const double limit =
        static_cast<double>(lua_tointeger(L, lua_upvalueindex(2))) * kPatternStepsPerInstruction;
    const double steps = patternSteps({pattern, plen}, subject);
    auto* left = static_cast<int64_t*>(lua_touserdata(L, lua_upvalueindex(4)));
    const double cost = steps / kPatternStepsPerInstruction;
    if (steps > limit || (left != nullptr && cost >= static_cast<double>(*left))) {
      char stepsText[32];  // lua_pushfstring knows no precision ("%.3g")
      std::snprintf(stepsText, sizeof stepsText, "%.3g", steps);
      return luaL_error(L,
                        "pattern '%s' may take up to %s steps on %I bytes, over the call's "
                        "budget: anchor it with '^', use fewer '*', '+', '-', or a plain find",
                        pattern, stepsText, static_cast<lua_Integer>(subject));
    }
    if (left != nullptr) *left -= static_cast<int64_t>(cost);
  }
  const int nargs = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, nargs, LUA_MULTRET);
  return lua_gettop(L);
}

// load(chunk [, chunkname [, mode [, env]]]) for text chunks given as strings only.
int textLoad(lua_State* L) {
  std::size_t n = 0;
  const char* chunk = luaL_checklstring(L, 1, &n);
  const char* name = luaL_optstring(L, 2, "=(load)");
  const int env = lua_isnone(L, 4) ? 0 : 4;
  if (luaL_loadbufferx(L, chunk, n, name, "t") != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;  // nil, message (as load does)
  }
  if (env != 0) {
    lua_pushvalue(L, env);
    if (lua_setupvalue(L, -2, 1) == nullptr) lua_pop(L, 1);
  }
  return 1;
}

// xpcall(f, msgh, ...) calling msgh after the error has unwound rather than at the error: Lua
// runs a message handler with hooks off when the error came from a hook (the instruction
// limit), so a handler could loop for ever. Without the debug library a handler cannot look at
// the failed stack anyway; what it returns is still xpcall's second result.
int unwoundXpcall(lua_State* L) {
  const int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_rotate(L, 2, -1);  // f, args..., msgh
  lua_insert(L, 1);      // msgh, f, args...
  if (lua_pcall(L, n - 2, LUA_MULTRET, 0) == LUA_OK) {
    lua_pushboolean(L, 1);
    lua_replace(L, 1);
    return lua_gettop(L);  // true, results...
  }
  lua_pcall(L, 1, 1, 0);  // msgh(error), or what msgh raised
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

// setmetatable refusing a __gc field: Lua runs finalizers with hooks off, where no instruction
// limit can stop one, and marks a table for finalization only when its metatable has __gc as
// it is set, so a field added later is never called. Upvalue 1: the original setmetatable.
int setmetatableWithoutGc(lua_State* L) {
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL) {
      return luaL_error(L, "setmetatable: __gc metamethods are not available to scripts");
    }
    lua_pop(L, 1);
  }
  const int nargs = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, nargs, LUA_MULTRET);
  return lua_gettop(L);
}

void requireLib(lua_State* L, const char* name, lua_CFunction open) {
  luaL_requiref(L, name, open, 1);
  lua_pop(L, 1);
}

void clearGlobal(lua_State* L, const char* name) {
  lua_pushnil(L);
  lua_setglobal(L, name);
}

}  // namespace

double patternSteps(std::string_view p, std::size_t subjectBytes) {
  const double lengths = static_cast<double>(subjectBytes) + 1;
  double steps = 1;
  std::size_t i = 0;
  if (!p.empty() && p[0] == '^') {
    i = 1;
  } else {
    steps = lengths;  // every start position
  }
  while (i < p.size()) {
    const char c = p[i];
    if (c == '(' || c == ')') {
      ++i;
      continue;
    }
    if (c == '%' && i + 1 < p.size() && p[i + 1] == 'b') {  // %bxy scans to its match
      steps *= lengths;
      i += 4;
      continue;
    }
    if (c == '%' && i + 1 < p.size() && p[i + 1] == 'f') {  // %f[set]: one position
      i = skipClass(p, i + 2);
      continue;
    }
    if (c == '%' && i + 1 < p.size() && p[i + 1] >= '1' && p[i + 1] <= '9') {
      steps *= lengths;  // a back-reference compares up to the whole capture
      i += 2;
      continue;
    }
    if (c == '$' && i + 1 == p.size()) break;
    i = skipClass(p, i);
    if (i < p.size()) {
      if (p[i] == '*' || p[i] == '+' || p[i] == '-') {
        steps *= lengths;
        ++i;
      } else if (p[i] == '?') {
        steps *= 2;
        ++i;
      }
    }
  }
  return steps;
}

void openSandbox(lua_State* L, uint64_t instructionLimit) {
  openSandbox(L, instructionLimit, nullptr);
}

void openSandbox(lua_State* L, uint64_t instructionLimit, int64_t* instructionsLeft) {
  requireLib(L, LUA_GNAME, luaopen_base);
  requireLib(L, LUA_STRLIBNAME, luaopen_string);
  requireLib(L, LUA_TABLIBNAME, luaopen_table);
  requireLib(L, LUA_MATHLIBNAME, luaopen_math);
  requireLib(L, LUA_UTF8LIBNAME, luaopen_utf8);

  // os: time and clock only.
  luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
  lua_createtable(L, 0, 2);
  lua_getfield(L, -2, "time");
  lua_setfield(L, -2, "time");
  lua_getfield(L, -2, "clock");
  lua_setfield(L, -2, "clock");
  lua_setglobal(L, LUA_OSLIBNAME);
  lua_pop(L, 1);

  clearGlobal(L, "dofile");
  clearGlobal(L, "loadfile");
  lua_pushcfunction(L, textLoad);
  lua_setglobal(L, "load");
  lua_pushcfunction(L, unwoundXpcall);
  lua_setglobal(L, "xpcall");
  lua_getglobal(L, "setmetatable");
  lua_pushcclosure(L, setmetatableWithoutGc, 1);
  lua_setglobal(L, "setmetatable");

  lua_getglobal(L, LUA_STRLIBNAME);
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");  // binary chunks cannot be loaded anyway
  const std::pair<const char*, PatternFunction> guarded[] = {
      {"find", kFind}, {"match", kMatch}, {"gmatch", kMatch}, {"gsub", kGsub}};
  for (const auto& [name, kind] : guarded) {
    lua_getfield(L, -1, name);
    lua_pushinteger(L, static_cast<lua_Integer>(instructionLimit));
    lua_pushinteger(L, kind);
    lua_pushlightuserdata(L, instructionsLeft);
    lua_pushcclosure(L, guardedPattern, 4);
    lua_setfield(L, -2, name);
  }
  lua_pop(L, 1);
}

}  // namespace wsgate::scripting
