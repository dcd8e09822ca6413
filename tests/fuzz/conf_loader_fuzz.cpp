// conf::loadString on arbitrary bytes: it never crashes, throws, hangs or reports an
// internal error, and its result keeps the promises of conf/loader.h and
// docs/configuration.md:
//   - a config exactly when there are no errors, and a config that is safe to run (every
//     route forwards to an existing pool or answers, every pool has backends, ...);
//   - every error is "FILE:LINE:COL: message" with a line and column inside the text (or
//     "FILE: message" about the whole file), errors come in file order, at most 100 of them
//     plus one note saying the rest were cut;
//   - the same text under three more leading blank lines gives the same verdict and the
//     same errors three lines further down (marks follow the text, not the parser's
//     internals; this also shows loading is deterministic).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "conf/loader.h"

namespace {

using wsgate::conf::ConfigError;
using wsgate::conf::LoadResult;

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr std::string_view kFile = "fuzz.yaml";
constexpr std::size_t kMaxErrors = 100;  // docs/configuration.md, "Every error at once"

// A text whose lines and columns a reader counts the way the loader does: no NUL (which
// makes yaml-cpp guess UTF-16/32), no BOM, no CR or Unicode line breaks.
bool plainText(std::string_view text) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") return false;
  if (!text.empty() && (static_cast<unsigned char>(text[0]) >= 0xFE)) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == 0 || c == '\r') return false;
    if (c == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) == 0x85) {
      return false;  // NEL
    }
    if (c == 0xE2 && text.substr(i, 3) >= "\xE2\x80\xA8" && text.substr(i, 3) <= "\xE2\x80\xA9") {
      return false;  // LS, PS
    }
  }
  return true;
}

std::vector<std::size_t> lineLengths(std::string_view text) {
  std::vector<std::size_t> lengths;
  std::size_t start = 0;
  for (;;) {
    const std::size_t nl = text.find('\n', start);
    lengths.push_back((nl == std::string_view::npos ? text.size() : nl) - start);
    if (nl == std::string_view::npos) return lengths;
    start = nl + 1;
  }
}

void checkErrors(const LoadResult& result, std::string_view text) {
  const bool plain = plainText(text);
  const std::vector<std::size_t> lines = lineLengths(text);
  std::size_t positioned = 0;
  for (std::size_t i = 0; i < result.errors.size(); ++i) {
    const ConfigError& e = result.errors[i];
    check(!e.message.empty());
    check(e.message.rfind("internal error while loading", 0) != 0);  // nothing escaped
    check(e.mark.file == kFile);
    const std::string str = e.str();
    if (e.mark.line == 0) {
      check(e.mark.column == 0);
      check(str == std::string(kFile) + ": " + e.message);
      continue;
    }
    ++positioned;
    check(e.mark.line >= 1 && e.mark.column >= 1);
    check(str == std::string(kFile) + ":" + std::to_string(e.mark.line) + ":" +
                     std::to_string(e.mark.column) + ": " + e.message);
    if (plain) {
      // 1-based, on a line of the text, at most one past its last character.
      check(static_cast<std::size_t>(e.mark.line) <= lines.size());
      check(static_cast<std::size_t>(e.mark.column) <= lines[e.mark.line - 1] + 1);
    } else {
      check(static_cast<std::size_t>(e.mark.line) <= text.size() + 1);
      check(static_cast<std::size_t>(e.mark.column) <= 3 * text.size() + 1);
    }
  }
  check(positioned <= kMaxErrors);
  // File order (whole-file errors first), except the closing "too many errors" note.
  std::size_t sorted = result.errors.size();
  if (result.errors.size() > kMaxErrors) {
    check(result.errors.size() == kMaxErrors + 1 && result.errors.back().mark.line == 0);
    check(result.errors.back().message.find("too many errors") != std::string::npos);
    sorted = kMaxErrors;
  }
  check(std::is_sorted(result.errors.begin(), result.errors.begin() + static_cast<long>(sorted),
                       [](const ConfigError& a, const ConfigError& b) {
                         return std::pair(a.mark.line, a.mark.column) <
                                std::pair(b.mark.line, b.mark.column);
                       }));
}

void checkConfig(const LoadResult& result) {
  check(result.ok() == result.config.has_value());
  if (!result.config) return;
  // What the proxy relies on once a config is accepted.
  const auto& config = *result.config;
  check(!config.listeners.empty() && !config.routes.empty());
  for (const auto& route : config.routes) {
    check(route.respond.has_value() != !route.pool.empty());
    if (!route.respond) check(config.findPool(route.pool) != nullptr);
    check(!route.match.pathPrefix.empty() && route.match.pathPrefix[0] == '/');
  }
  for (const auto& pool : config.pools) {
    check(!pool.backends.empty());
    for (const auto& backend : pool.backends) {
      check(backend.weight != 0 && backend.address.port != 0);
    }
  }
}

// "... (first at line 12)" names a line: it moves with the text.
std::string withoutLineNumbers(const std::string& message) {
  std::string out;
  for (std::size_t i = 0; i < message.size(); ++i) {
    out += message[i];
    if (message.compare(i, 5, "line ") == 0) {
      out += "ine ";
      i += 5;
      while (i < message.size() && message[i] >= '0' && message[i] <= '9') ++i;
      out += '#';
      --i;
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const LoadResult result = wsgate::conf::loadString(text, std::string(kFile));
  checkConfig(result);
  checkErrors(result, text);

  if (!plainText(text) || text.substr(0, 1) == "%") return 0;  // directives must come first
  constexpr int kShift = 3;
  const LoadResult shifted =
      wsgate::conf::loadString(std::string(kShift, '\n') + std::string(text), std::string(kFile));
  check(shifted.ok() == result.ok());
  check(shifted.errors.size() == result.errors.size());
  for (std::size_t i = 0; i < result.errors.size(); ++i) {
    const ConfigError& a = result.errors[i];
    const ConfigError& b = shifted.errors[i];
    check(b.mark.line == (a.mark.line == 0 ? 0 : a.mark.line + kShift));
    check(b.mark.column == a.mark.column);
    check(withoutLineNumbers(b.message) == withoutLineNumbers(a.message));
  }
  return 0;
}
