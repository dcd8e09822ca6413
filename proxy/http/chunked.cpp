// Chunked body validator (RFC 9112 7.1). A byte-at-a-time state machine for the framing and a
// bulk skip over chunk data, so any split of the input gives the same answer.
//
//   chunked-body = *chunk last-chunk trailer-section CRLF
//   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//   chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//
// Extensions are not interpreted, only bounded and kept free of control characters: they pass
// through verbatim. Line ends are CRLF only; a bare LF or CR is an error, because parsers that
// accept one disagree about where a chunk ends (request smuggling).

#include "proxy/http/chunked.h"

#include "proxy/http/field_parser.h"

namespace wsgate::http {
namespace {

using detail::CharClass;
using detail::is;

constexpr uint64_t kMaxChunkSize = static_cast<uint64_t>(INT64_MAX);

constexpr uint64_t hexValue(char c) noexcept {
  return c <= '9' ? static_cast<uint64_t>(c - '0') : static_cast<uint64_t>((c | 0x20) - 'a' + 10);
}

}  // namespace

ChunkedDecoder::Result ChunkedDecoder::feed(std::string_view data) noexcept {
  if (state_ == State::Done) return {Status::Done, 0, {}};
  if (state_ == State::Failed) return {Status::Error, 0, error_};

  const std::size_t n = data.size();
  std::size_t i = 0;
  const auto fail = [&](std::string_view why) noexcept {
    state_ = State::Failed;
    error_ = why;
    return Result{Status::Error, i, why};
  };

  while (i < n) {
    if (state_ == State::Data) {
      const uint64_t avail = n - i;
      const uint64_t take = remaining_ < avail ? remaining_ : avail;
      i += static_cast<std::size_t>(take);
      remaining_ -= take;
      payload_ += take;
      if (remaining_ == 0) state_ = State::DataCr;
      continue;
    }

    const char c = data[i];
    switch (state_) {
      case State::Size:
      case State::SizeBws:
      case State::SizeExt:
        // The line is bounded without its CRLF (the CR ends it; a LF here is an error anyway).
        if (c != '\r' && ++lineBytes_ > kMaxLineBytes) return fail("chunk size line too long");
        if (c == '\r' && sawDigit_ && state_ != State::SizeBws) {
          state_ = State::SizeLf;
        } else if (c == '\n') {
          return fail("bare LF in chunk size line");
        } else if (state_ == State::Size) {
          if (is(c, CharClass::kHexDigit)) {
            const uint64_t d = hexValue(c);
            if (remaining_ > (kMaxChunkSize - d) / 16) return fail("chunk size too large");
            remaining_ = remaining_ * 16 + d;
            sawDigit_ = true;
          } else if (!sawDigit_) {
            return fail("invalid chunk size");
          } else if (c == ';') {
            state_ = State::SizeExt;
          } else if (detail::isOws(c)) {
            state_ = State::SizeBws;
          } else {
            return fail("invalid chunk size");
          }
        } else if (state_ == State::SizeBws) {
          // BWS is only allowed before ';' (HAProxy also tolerates it before CRLF; we do not).
          if (c == ';') {
            state_ = State::SizeExt;
          } else if (!detail::isOws(c)) {
            return fail("invalid chunk extension");
          }
        } else if (!is(c, CharClass::kValueChar)) {
          return fail("control character in chunk extension");
        }
        break;
      case State::SizeLf:
        if (c != '\n') return fail("bare CR in chunk size line");
        state_ = remaining_ == 0 ? State::TrailerStart : State::Data;
        break;
      case State::DataCr:
        if (c != '\r') return fail("missing CRLF after chunk data");
        state_ = State::DataLf;
        break;
      case State::DataLf:
        if (c != '\n') return fail("bare CR after chunk data");
        sawDigit_ = false;
        lineBytes_ = 0;
        state_ = State::Size;
        break;
      // Trailer fields follow the rules of header fields (RFC 9112 7.1.2, 5). Each line is
      // bounded without its CRLF, the whole section with every CRLF.
      case State::TrailerStart:
        if (++trailerBytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        if (c == '\r') {
          state_ = State::FinalLf;
        } else if (is(c, CharClass::kTchar)) {
          lineBytes_ = 1;
          state_ = State::TrailerLine;
        } else {
          return fail(detail::isOws(c) ? "obs-fold in trailer" : "invalid trailer field name");
        }
        break;
      case State::TrailerLine:
        if (++trailerBytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        if (++lineBytes_ > kMaxLineBytes) return fail("trailer line too long");
        if (c == ':') {
          state_ = State::TrailerValue;
        } else if (!is(c, CharClass::kTchar)) {
          return fail("invalid trailer field name");
        }
        break;
      case State::TrailerValue:
        if (++trailerBytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        if (c == '\r') {
          state_ = State::TrailerLf;
        } else if (++lineBytes_ > kMaxLineBytes) {
          return fail("trailer line too long");
        } else if (!is(c, CharClass::kValueChar)) {
          return fail(c == '\n' ? "bare LF in trailer" : "control character in trailer");
        }
        break;
      case State::TrailerLf:
        if (++trailerBytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        if (c != '\n') return fail("bare CR in trailer");
        state_ = State::TrailerStart;
        break;
      case State::FinalLf:
        if (++trailerBytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        if (c != '\n') return fail("bare CR after trailers");
        state_ = State::Done;
        return {Status::Done, i + 1, {}};
      case State::Data:
      case State::Done:
      case State::Failed:
        break;  // handled above the switch
    }
    ++i;
  }
  return {Status::NeedMore, n, {}};
}

}  // namespace wsgate::http
