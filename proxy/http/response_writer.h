#pragma once
// Responses that wsgate answers itself (errors, `respond` routes): pure formatting.

#include <string>
#include <string_view>

namespace wsgate::http {

struct LocalResponse {
  int status = 200;
  std::string_view body;  // sent with Content-Length
  std::string_view contentType = "text/plain; charset=utf-8";
  std::string_view extraHeaders;  // "Name: value\r\n" lines, may be empty
  bool keepAlive = false;         // false -> "Connection: close"
  bool headOnly = false;          // answer to HEAD: Content-Length but no body bytes
};

// Appends a complete HTTP/1.1 response to `out`.
void appendLocalResponse(const LocalResponse& r, std::string& out);

// The short text body wsgate sends with an error status: "<code> <reason>: <detail>\n".
std::string errorBody(int status, std::string_view detail);

}  // namespace wsgate::http
