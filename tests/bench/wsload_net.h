#pragma once
// wsload's network plumbing: addresses and the ws:// URL, the clock every timestamp comes
// from, and the Transport each connection reads and writes through (plain TCP here, TLS in
// wsload_tls.h).

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

// ws://host[:port][/path] or wss://...; `tls` is set for wss://.
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
  std::size_t bytes = 0;   // with Done: bytes moved
  int error = 0;           // with Error: errno (or 0: the transport's errorText() says why)
  bool wantWrite = false;  // with WouldBlock from finishConnect(): wait to write, not to read
};

// What a TLS handshake settled on, for the report; empty for plain TCP.
struct TlsSummary {
  std::string protocol;  // "TLSv1.3"
  std::string cipher;    // "TLS_AES_256_GCM_SHA384"
  std::string group;     // key exchange: "x25519"
  std::string cert;      // the server certificate's key: "ECDSA P-256", "RSA 2048"
};

// A byte stream over one non-blocking socket. The plain one is recv/sendmsg; the TLS one holds
// an SSL* and runs its handshake inside finishConnect() (reporting WouldBlock, with the
// direction to wait for, until it is done), behind the same calls.
class Transport {
public:
  virtual ~Transport() = default;
  // Starts a connect. Done: connected; WouldBlock: call finishConnect() once the socket turns
  // writable; Error: nothing to wait for.
  virtual IoResult connect(const SocketAddress& to) = 0;
  // Done once the stream is ready to carry the upgrade request; WouldBlock: call again when
  // the socket turns writable (wantWrite) or readable; Eof: the peer closed before the end.
  virtual IoResult finishConnect() = 0;
  virtual IoResult read(char* buf, std::size_t len) = 0;
  virtual IoResult writev(const iovec* iov, int count) = 0;
  virtual void close() noexcept = 0;
  virtual int fd() const noexcept = 0;

  // Why `r` (an Error from this transport) failed.
  virtual std::string errorText(const IoResult& r) const;
  // Ends our direction of a TLS stream (close_notify); nothing for plain TCP.
  virtual void closeNotify() noexcept {}
  // After finishConnect() is Done: whether TLS resumed a session, and what it negotiated.
  virtual bool resumed() const noexcept { return false; }
  // Whether the server sent a session ticket on this connection (kept after close()).
  virtual bool ticketReceived() const noexcept { return false; }
  virtual TlsSummary summary() const { return {}; }
};
using TransportPtr = std::unique_ptr<Transport>;

// Plain TCP; adopts `fd` when given one (an accepted socket), else connect() makes one.
TransportPtr makePlainTransport(int fd = -1);

// The TCP part of every client transport: a non-blocking socket with TCP_NODELAY, connecting
// to `to` (Done, WouldBlock or Error, as Transport::connect). `fd` is -1 on Error.
IoResult connectTcp(const SocketAddress& to, int& fd);
// Whether the connect started by connectTcp() succeeded, once the socket is writable.
IoResult connectOutcome(int fd);
bool wouldBlock(int err) noexcept;

}  // namespace wsgate::bench
