// Cookie fields without wsgate's own cookie.

#include "proxy/http/cookie_strip.h"

namespace wsgate::http {
namespace {

bool isSpace(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trimLeft(std::string_view s) noexcept {
  while (!s.empty() && isSpace(s.front())) s.remove_prefix(1);
  return s;
}

std::string_view trim(std::string_view s) noexcept {
  s = trimLeft(s);
  while (!s.empty() && isSpace(s.back())) s.remove_suffix(1);
  return s;
}

// The name of the pair `pair` (the text before its '=', trimmed).
std::string_view pairName(std::string_view pair) noexcept {
  return trim(pair.substr(0, pair.find('=')));
}

// Calls visit(pair) for each ';'-separated piece of `list`, spaces included.
template <class Visit>
void forEachPair(std::string_view list, Visit visit) {
  while (true) {
    const std::size_t end = list.find(';');
    visit(list.substr(0, end));
    if (end == std::string_view::npos) return;
    list.remove_prefix(end + 1);
  }
}

}  // namespace

std::optional<std::string> cookieWithout(std::string_view value, std::string_view name) {
  bool found = false;
  forEachPair(value, [&](std::string_view pair) { found = found || pairName(pair) == name; });
  if (!found) return std::nullopt;
  std::string out;
  out.reserve(value.size());
  forEachPair(value, [&](std::string_view pair) {
    if (trim(pair).empty() || pairName(pair) == name) return;
    if (out.empty()) {
      out += trimLeft(pair);
    } else {
      out += ';';
      out += pair;
    }
  });
  while (!out.empty() && isSpace(out.back())) out.pop_back();
  return out;
}

}  // namespace wsgate::http
