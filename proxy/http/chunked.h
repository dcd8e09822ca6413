#pragma once
// Incremental validator of a chunked body (RFC 9112 7.1): finds where the body ends
// without copying it, so the proxy can forward the bytes verbatim as they arrive.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace wsgate::http {

class ChunkedDecoder {
public:
  enum class Status : uint8_t { NeedMore, Done, Error };

  struct Result {
    Status status = Status::NeedMore;
    std::size_t consumed = 0;  // bytes of `data` that belong to the body (all, unless Done)
    std::string_view errorReason{};
  };

  // Feeds the next bytes. With NeedMore all of `data` was consumed; with Done the body
  // ended after `consumed` bytes (what follows is the next message); with Error the body is
  // invalid (bad chunk size, missing CRLF, size over 2^63-1, chunk-ext or trailer line
  // longer than kMaxLineBytes, bare LF, trailer section over kMaxTrailerBytes) and `consumed`
  // is the offset of the offending byte in `data`. After Done or Error the decoder stays
  // there: later calls consume nothing and repeat the status.
  Result feed(std::string_view data) noexcept;

  // Payload bytes seen so far (chunk data only, framing excluded).
  uint64_t payloadBytes() const noexcept { return payload_; }

  static constexpr std::size_t kMaxLineBytes = 4096;
  static constexpr std::size_t kMaxTrailerBytes = 16 * 1024;

private:
  enum class State : uint8_t {
    Size,
    SizeExt,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
    SizeBws,       // whitespace after the size: only ';' may follow (RFC 9112 7.1.1 BWS)
    TrailerValue,  // past the ':' of a trailer field
    Failed,        // an error was reported; every later feed() reports it again
  };
  State state_ = State::Size;
  uint64_t remaining_ = 0;  // bytes of chunk data left in the current chunk
  uint64_t payload_ = 0;
  std::size_t lineBytes_ = 0;
  std::size_t trailerBytes_ = 0;
  bool sawDigit_ = false;
  std::string_view error_{};  // static text, with State::Failed
};

}  // namespace wsgate::http
