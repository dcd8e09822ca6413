#pragma once
// Removing one cookie from a request's Cookie field, as `sticky.cookie.indirect` does with
// wsgate's own before the request reaches the backend (HAProxy's `cookie ... insert indirect`).

#include <optional>
#include <string>
#include <string_view>

namespace wsgate::http {

// The Cookie field value `value` ("a=1; NAME=x; b=2", RFC 6265 5.4) without the pairs named
// `name` (compared as findCookie does: exactly, spaces around the name ignored; a pair without
// '=' is named by all of its text). nullopt when there is none: forward the field untouched.
// Otherwise the other pairs, each byte for byte with the spaces that preceded it, separated by
// ';', without empty pairs or spaces at either end: "a=1; NAME=x; b=2" -> "a=1; b=2". An empty
// result means nothing is left: drop the field. Splits at every ';', quoted values included,
// as findCookie does, so the pairs removed are the ones a lookup would have read.
std::optional<std::string> cookieWithout(std::string_view value, std::string_view name);

}  // namespace wsgate::http
