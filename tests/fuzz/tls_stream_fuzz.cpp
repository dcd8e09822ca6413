// libFuzzer: tls::Stream (the TLS filter over a connection's buffers) fed what a client on
// the internet may send: garbage and truncated records before any handshake, and, after a
// real handshake, the client's own records cut, altered or followed by garbage. Checked:
// no crash, no leak (ASan), and the integrity rule a proxy relies on: whatever plaintext
// the server stream hands out is a prefix of what the client sent, whatever the bytes on
// the wire; a stream that failed stays failed and hands out nothing more.
//
// Input: byte 0 selects the mode; the rest is, in mode 0, the ciphertext fed to a fresh
// server stream in pieces (sizes taken from the input), and in the other modes a list of
// edits applied to the client's records after the handshake.

#include <event2/buffer.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "proxy/tls/stream.h"
#include "tests/unit/tls/pki.h"

namespace {

using wsgate::tls::SslPtr;
using wsgate::tls::Stream;

void check(bool ok) {
  if (!ok) std::abort();
}

struct Buf {
  evbuffer* b = evbuffer_new();
  ~Buf() { evbuffer_free(b); }
  std::size_t size() const { return evbuffer_get_length(b); }
  std::string take() {
    std::string s(size(), '\0');
    evbuffer_remove(b, s.data(), s.size());
    return s;
  }
};

// One ECDSA P-256 identity and the two contexts, made once per process.
struct Contexts {
  SSL_CTX* server = SSL_CTX_new(TLS_server_method());
  SSL_CTX* client = SSL_CTX_new(TLS_client_method());
  Contexts() {
    static const wsgate::tls::testkit::Issued id =
        wsgate::tls::testkit::issue({.cn = "fuzz.test", .validToDays = 3650}, nullptr);
    SSL_CTX_use_certificate(server, id.cert.get());
    SSL_CTX_use_PrivateKey(server, id.key.get());
    SSL_CTX_set_options(server, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_min_proto_version(server, TLS1_2_VERSION);
  }
};

Contexts& contexts() {
  static Contexts c;
  return c;
}

SslPtr newSsl(SSL_CTX* ctx, bool server) {
  SslPtr ssl(SSL_new(ctx));
  if (server) {
    SSL_set_accept_state(ssl.get());
  } else {
    SSL_set_connect_state(ssl.get());
  }
  return ssl;
}

// Reads the input front to back; zeros once it runs out.
struct Reader {
  const uint8_t* p;
  std::size_t n;
  uint8_t byte() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  bool done() const { return n == 0; }
};

// Feeds `wire` to `server` in pieces; returns the plaintext it handed out. Once the stream
// failed (or closed) it must not hand out anything more.
std::string feed(Stream& server, const std::string& wire, Reader& sizes) {
  Buf in, plain, out;
  std::string got;
  bool ended = false;
  for (std::size_t at = 0; at < wire.size();) {
    const std::size_t piece = std::min<std::size_t>(wire.size() - at, 1 + sizes.byte() * 4);
    evbuffer_add(in.b, wire.data() + at, piece);
    at += piece;
    const Stream::Status st = server.decrypt(in.b, plain.b, out.b);
    const std::string now = plain.take();
    if (ended) check(now.empty());
    got += now;
    if (st != Stream::Status::Ok) ended = true;
    out.take();  // what the server answers goes nowhere
  }
  return got;
}

void garbageBeforeHandshake(Reader& r) {
  Stream server(newSsl(contexts().server, true));
  const std::string wire(reinterpret_cast<const char*>(r.p), r.n);
  Reader sizes{r.p, r.n};
  check(feed(server, wire, sizes).empty());  // no handshake, no plaintext
}

void editedAfterHandshake(Reader& r) {
  Stream server(newSsl(contexts().server, true));
  Stream client(newSsl(contexts().client, false));
  Buf toServer, toClient, plain, none;
  for (int i = 0; i < 10 && !(server.handshakeDone() && client.handshakeDone()); ++i) {
    client.encrypt(none.b, toServer.b);
    server.decrypt(toServer.b, plain.b, toClient.b);
    client.decrypt(toClient.b, plain.b, toServer.b);
  }
  check(server.handshakeDone() && client.handshakeDone());
  // What the client says: a few records of known plaintext.
  std::string sent;
  for (int i = 0; i < 3; ++i) {
    Buf msg;
    const std::string text = "record " + std::to_string(i) + std::string(r.byte(), 'x');
    evbuffer_add(msg.b, text.data(), text.size());
    client.encrypt(msg.b, toServer.b);
    sent += text;
  }
  std::string wire = toServer.take();
  // Edits: flip a byte, cut the tail, or append garbage.
  while (!r.done()) {
    const uint8_t op = r.byte() % 3;
    const std::size_t pos = wire.empty() ? 0 : ((r.byte() << 8) | r.byte()) % wire.size();
    if (op == 0 && !wire.empty()) wire[pos] = static_cast<char>(wire[pos] ^ (r.byte() | 1));
    if (op == 1) wire.resize(pos);
    if (op == 2) wire += std::string(1 + r.byte() % 32, static_cast<char>(r.byte()));
  }
  Reader sizes{r.p, r.n};
  const std::string got = feed(server, wire, sizes);
  check(sent.compare(0, got.size(), got) == 0);  // a prefix of what was sent, never more
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  Reader r{data + 1, size - 1};
  if (data[0] % 2 == 0) {
    garbageBeforeHandshake(r);
  } else {
    editedAfterHandshake(r);
  }
  return 0;
}
