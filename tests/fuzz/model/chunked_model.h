#pragma once
// Reference decoder for the chunked transfer coding (RFC 9112 7.1), for the fuzz oracle of
// http::ChunkedDecoder. Deliberately unlike the product: it sees the whole input at once and
// walks the grammar top-down with a cursor, so it shares no state machine with chunked.cpp.
//
//   chunked-body   = *chunk last-chunk trailer-section CRLF
//   chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//   chunk-size     = 1*HEXDIG
//   last-chunk     = 1*("0") [ chunk-ext ] CRLF
//   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//   trailer-section = *( field-line CRLF )
//   field-line     = field-name ":" OWS field-value OWS          (RFC 9112 5)
//
// Where wsgate's documented rules (proxy/http/chunked.h) differ from the bare grammar, the
// model says so at the rule:
//   - CRLF only: a bare LF or CR anywhere is an error (RFC 9112 2.2 allows rejecting it);
//   - chunk-size at most 2^63-1;
//   - chunk-ext is not parsed into names and values (laxer than the grammar): after the
//     first ';' any field-value characters (HTAB, SP, VCHAR, obs-text) up to the CR;
//   - whitespace after the size only before a ';' (as the grammar says: BWS belongs to
//     chunk-ext), never before the CRLF;
//   - a line (size line or trailer field line, CRLF excluded) of at most kMaxLine bytes;
//   - the trailer section, every CRLF included (the final one too), at most kMaxTrailer;
//   - trailer fields: non-empty token name, no whitespace before ':', no obs-fold.
//
// The answer is the one a streaming decoder must give: Done with the body's length, Error
// at the first byte after which no continuation could make the body valid, or NeedMore when
// the input is a proper prefix of some valid body. `payload` is the chunk data seen before
// the stop, partial chunks included.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wsgate::fuzz::model {

struct ChunkedAnswer {
  enum class Kind { NeedMore, Done, Error };
  Kind kind = Kind::NeedMore;
  std::size_t at = 0;  // Done: bytes of the body; Error: offset of the offending byte
  std::string payload;
};

class ChunkedModel {
public:
  static constexpr std::size_t kMaxLine = 4096;
  static constexpr std::size_t kMaxTrailer = 16 * 1024;
  static constexpr uint64_t kMaxChunkSize = (uint64_t{1} << 63) - 1;

  static ChunkedAnswer decode(std::string_view in) {
    ChunkedModel m(in);
    m.body();
    return m.answer_;
  }

private:
  explicit ChunkedModel(std::string_view in) : in_(in) {}

  // RFC 5234 core rules and RFC 9110 5.6.2 / 5.5 character sets, spelled out.
  static bool isHex(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  }
  static unsigned hexValue(unsigned char c) {
    if (c <= '9') return c - '0';
    if (c <= 'F') return c - 'A' + 10;
    return c - 'a' + 10;
  }
  static bool isTchar(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
  }
  // field-vchar / SP / HTAB: what a field value (and, in wsgate, a chunk-ext) may hold.
  static bool isValueChar(unsigned char c) {
    return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7F);
  }

  // The stop conditions. Each returns false so callers can write `return fail(i)`.
  bool fail(std::size_t at) {
    answer_.kind = ChunkedAnswer::Kind::Error;
    answer_.at = at;
    return false;
  }
  bool needMore() {
    answer_.kind = ChunkedAnswer::Kind::NeedMore;
    answer_.at = in_.size();
    return false;
  }
  bool more(std::size_t i) const { return i < in_.size(); }
  unsigned char at(std::size_t i) const { return static_cast<unsigned char>(in_[i]); }

  // CRLF at i (the CR already seen there): true and i past it, or a stop.
  bool lf(std::size_t& i) {
    if (!more(i + 1)) {
      i = in_.size();
      return needMore();
    }
    if (at(i + 1) != '\n') return fail(i + 1);
    i += 2;
    return true;
  }

  // chunk-size [ chunk-ext ] CRLF, from pos_. Sets size.
  bool sizeLine(uint64_t& size) {
    const std::size_t start = pos_;
    std::size_t i = pos_;
    // Every byte of the line before its CR counts toward kMaxLine.
    auto overLong = [&](std::size_t j) { return j - start >= kMaxLine; };
    size = 0;
    while (more(i) && isHex(at(i))) {
      if (overLong(i)) return fail(i);
      const uint64_t d = hexValue(at(i));
      if (size > (kMaxChunkSize - d) / 16) return fail(i);  // size * 16 + d > 2^63-1
      size = size * 16 + d;
      ++i;
    }
    if (!more(i)) return needMore();
    if (i == start) return fail(i);  // 1*HEXDIG
    if (at(i) == '\r') {
      pos_ = i;
      if (!lf(pos_)) return false;
      return true;
    }
    if (overLong(i)) return fail(i);
    if (at(i) == ' ' || at(i) == '\t') {
      // BWS, which must lead to a ';'.
      while (more(i) && (at(i) == ' ' || at(i) == '\t')) {
        if (overLong(i)) return fail(i);
        ++i;
      }
      if (!more(i)) return needMore();
      if (overLong(i)) return fail(i);
      if (at(i) != ';') return fail(i);
    } else if (at(i) != ';') {
      return fail(i);
    }
    ++i;  // the ';'
    // wsgate: the extension text is bounded and free of controls, not parsed further.
    while (more(i) && at(i) != '\r') {
      if (overLong(i)) return fail(i);
      if (!isValueChar(at(i))) return fail(i);
      ++i;
    }
    if (!more(i)) return needMore();
    pos_ = i;
    return lf(pos_);
  }

  // chunk-data CRLF, from pos_, for `size` bytes.
  bool data(uint64_t size) {
    const std::size_t avail = in_.size() - pos_;
    if (size > avail) {
      answer_.payload.append(in_.substr(pos_));
      return needMore();
    }
    answer_.payload.append(in_.substr(pos_, static_cast<std::size_t>(size)));
    std::size_t i = pos_ + static_cast<std::size_t>(size);
    if (!more(i)) return needMore();
    if (at(i) != '\r') return fail(i);
    pos_ = i;
    return lf(pos_);
  }

  // trailer-section CRLF, from pos_.
  bool trailers() {
    const std::size_t start = pos_;
    // Every byte of the section, CRLFs included, counts toward kMaxTrailer.
    auto overSection = [&](std::size_t j) { return j - start >= kMaxTrailer; };
    std::size_t i = pos_;
    for (;;) {
      if (!more(i)) return needMore();
      if (overSection(i)) return fail(i);
      const std::size_t lineStart = i;
      if (at(i) == '\r') {
        if (!more(i + 1)) return needMore();
        if (overSection(i + 1)) return fail(i + 1);
        if (at(i + 1) != '\n') return fail(i + 1);
        answer_.kind = ChunkedAnswer::Kind::Done;
        answer_.at = i + 2;
        return true;
      }
      // field-name: a non-empty token; whitespace here would be obs-fold (RFC 9112 5.2).
      if (!isTchar(at(i))) return fail(i);
      while (more(i) && isTchar(at(i))) {
        if (overSection(i)) return fail(i);
        if (i - lineStart >= kMaxLine) return fail(i);
        ++i;
      }
      if (!more(i)) return needMore();
      if (overSection(i)) return fail(i);
      if (i - lineStart >= kMaxLine) return fail(i);
      if (at(i) != ':') return fail(i);  // includes whitespace before the colon (5.1)
      ++i;
      // OWS field-value OWS: any value characters up to the CR.
      while (more(i) && at(i) != '\r') {
        if (overSection(i)) return fail(i);
        if (i - lineStart >= kMaxLine) return fail(i);
        if (!isValueChar(at(i))) return fail(i);
        ++i;
      }
      if (!more(i)) return needMore();
      if (overSection(i)) return fail(i);
      if (!more(i + 1)) return needMore();
      if (overSection(i + 1)) return fail(i + 1);
      if (at(i + 1) != '\n') return fail(i + 1);
      i += 2;
    }
  }

  void body() {
    for (;;) {
      uint64_t size = 0;
      if (!sizeLine(size)) return;
      if (size == 0) {
        trailers();
        return;
      }
      if (!data(size)) return;
    }
  }

  std::string_view in_;
  std::size_t pos_ = 0;
  ChunkedAnswer answer_;
};

}  // namespace wsgate::fuzz::model
