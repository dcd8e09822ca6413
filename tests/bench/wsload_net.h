#pragma once
// wsload's network plumbing: addresses and the ws:// URL, the clock every timestamp comes
// from, and the Transport each connection reads and writes through (plain TCP today).

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "conf/config.h"
#include "conf/units.h"
#include "proxy/net/address.h"

namespace wsgate::bench {

// Nanoseconds of CLOCK_MONOTONIC; comparable across threads.
uint64_t nowNs() noexcept;

// Addresses are the proxy's own: conf::parseHostPort reads "127.0.0.1:8080", "[::1]:0" or
// "localhost:80"; net::resolve turns one into a socket address.
using conf::HostPort;
using net::SocketAddress;

// ws://host[:port][/path]. `tls` is set for wss://, which callers refuse for now.
struct Url {
  bool tls = false;
  HostPort endpoint;
  std::string hostHeader;  // the URL's authority, as the Host field
  std::string path;        // request target: starts with '/', query included
};
std::string parseUrl(std::string_view text, Url& out);

// Raises the soft open-file limit to the hard one: every connection costs a descriptor.
void raiseFileLimit() noexcept;

void setNoDelay(int fd) noexcept;

// The outcome of one non-blocking socket call.
enum class Io : uint8_t { Done, WouldBlock, Eof, Error };
struct IoResult {
  Io status = Io::Done;
  std::size_t bytes = 0;  // with Done: bytes moved
  int error = 0;          // with Error: errno
};

// A byte stream over one non-blocking socket. The plain one is recv/sendmsg; a TLS one would
// hold an SSL* and run its handshake inside finishConnect() (reporting WouldBlock until it is
// done), behind the same calls, so nothing above it changes when wss:// arrives.
class Transport {
public:
  virtual ~Transport() = default;
  // Starts a connect. Done: connected; WouldBlock: call finishConnect() once the socket turns
  // writable; Error: nothing to wait for.
  virtual IoResult connect(const SocketAddress& to) = 0;
  // Done once the stream is ready to carry the upgrade request.
  virtual IoResult finishConnect() = 0;
  virtual IoResult read(char* buf, std::size_t len) = 0;
  virtual IoResult writev(const iovec* iov, int count) = 0;
  virtual void close() noexcept = 0;
  virtual int fd() const noexcept = 0;
};
using TransportPtr = std::unique_ptr<Transport>;

// Plain TCP; adopts `fd` when given one (an accepted socket), else connect() makes one.
TransportPtr makePlainTransport(int fd = -1);

}  // namespace wsgate::bench
