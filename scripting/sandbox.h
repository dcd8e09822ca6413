#pragma once
// What a script can reach: base functions (without dofile, loadfile, and with `load` taking
// text chunks only), string, table, math, utf8, os.time/os.clock. No io, no os.execute, no
// debug, no package/require, no coroutine. Lua's pattern functions are guarded: a pattern
// whose worst-case backtracking over its subject exceeds the call's budget is refused up
// front, because the matcher runs in C where the instruction hook cannot stop it. For the
// same reason (Lua runs them with hooks off) setmetatable refuses __gc, and xpcall calls its
// handler after the error has unwound.

#include <cstddef>
#include <cstdint>
#include <string_view>

struct lua_State;

namespace wsgate::scripting {

// Worst-case steps of Lua's backtracking matcher for `pattern` over `subjectBytes` bytes:
// every start position (one when anchored with '^'), times up to subjectBytes+1 lengths
// for each variable-length item ('*', '+', '-', %b), times 2 for each '?'.
double patternSteps(std::string_view pattern, std::size_t subjectBytes);

// How many matcher steps a call may spend per instruction of its budget.
inline constexpr double kPatternStepsPerInstruction = 100;

// Opens the sandboxed libraries into L's globals. Meant to run under lua_pcall (it
// allocates); `instructionLimit` bounds the pattern guard.
void openSandbox(lua_State* L, uint64_t instructionLimit);
// The same, with the call's instruction budget (`*instructionsLeft`, reset by the caller for
// each call) charged for patterns too: each guarded call spends its worst case divided by
// kPatternStepsPerInstruction and is refused when that is more than is left, so a loop of
// patterns that each pass the guard cannot outrun the budget either.
void openSandbox(lua_State* L, uint64_t instructionLimit, int64_t* instructionsLeft);

}  // namespace wsgate::scripting
