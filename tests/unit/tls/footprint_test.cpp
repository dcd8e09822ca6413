// The memory budget of an idle TLS connection, like footprint_test for the plain one: what
// a server tls::Stream holds after its handshake once its record buffers are given back
// (the session's one-second idle release). RSS per idle wss connection is measured by
// `make bench`; this keeps OpenSSL's share from creeping up unnoticed (a new option that
// keeps a buffer, a context per connection). Raising the budget is a decision: write why.

#include <event2/buffer.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <vector>

#include "proxy/tls/stream.h"
#include "tests/unit/tls/pki.h"

#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer's allocator (glibc's mallinfo does not see it); declared here because
// GCC does not ship the header.
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
#endif

namespace wsgate::tls {
namespace {

// Bytes the heap has handed out and not taken back.
std::size_t heapInUse() {
#if defined(__SANITIZE_ADDRESS__)
  return __sanitizer_get_current_allocated_bytes();
#else
  return mallinfo2().uordblks;
#endif
}

struct Contexts {
  SSL_CTX* server = SSL_CTX_new(TLS_server_method());
  SSL_CTX* client = SSL_CTX_new(TLS_client_method());
  Contexts() {
    static const testkit::Issued id = testkit::issue({.cn = "footprint.test"}, nullptr);
    SSL_CTX_use_certificate(server, id.cert.get());
    SSL_CTX_use_PrivateKey(server, id.key.get());
    // As listeners are built: no server session cache (tickets carry resumption).
    SSL_CTX_set_session_cache_mode(server, SSL_SESS_CACHE_OFF);
  }
  ~Contexts() {
    SSL_CTX_free(server);
    SSL_CTX_free(client);
  }
};

struct Bufs {
  evbuffer *toServer = evbuffer_new(), *toClient = evbuffer_new();
  evbuffer *plain = evbuffer_new(), *none = evbuffer_new();
  ~Bufs() {
    for (evbuffer* b : {toServer, toClient, plain, none}) evbuffer_free(b);
  }
};

// Heap held per idle server stream: `count` of them, each after a handshake and one
// message each way, with or without giving the record buffers back.
std::size_t perIdleServerStream(Contexts& ctx, int count, bool release) {
  std::vector<std::unique_ptr<Stream>> servers;
  servers.reserve(count);
  Bufs b;
  const std::size_t before = heapInUse();
  for (int i = 0; i < count; ++i) {
    SSL* s = SSL_new(ctx.server);
    SSL_set_accept_state(s);
    SSL* c = SSL_new(ctx.client);
    SSL_set_connect_state(c);
    auto server = std::make_unique<Stream>(SslPtr(s));
    Stream client{SslPtr(c)};
    for (int k = 0; k < 10 && !(server->handshakeDone() && client.handshakeDone()); ++k) {
      client.encrypt(b.none, b.toServer);
      server->decrypt(b.toServer, b.plain, b.toClient);
      client.decrypt(b.toClient, b.plain, b.toServer);
    }
    EXPECT_TRUE(server->handshakeDone());
    evbuffer_add(b.none, "ping", 4);
    client.encrypt(b.none, b.toServer);
    server->decrypt(b.toServer, b.plain, b.toClient);
    evbuffer_add(b.none, "pong", 4);
    server->encrypt(b.none, b.toClient);
    client.decrypt(b.toClient, b.plain, b.toServer);
    evbuffer_drain(b.plain, evbuffer_get_length(b.plain));
    if (release) server->releaseBuffers();
    servers.push_back(std::move(server));
  }
  const std::size_t after = heapInUse();
  return (after - before) / count;
}

TEST(TlsFootprint, IdleServerStreamWithinBudget) {
  Contexts ctx;
  perIdleServerStream(ctx, 10, true);  // warm-up: lazily built tables, the allocator's pools
  const std::size_t idle = perIdleServerStream(ctx, 200, true);
  // OpenSSL 3.0: SSL_new alone is ~8.5 KB; after a handshake, ~14.5 KB with the buffers
  // given back. HAProxy holds ~13.5 KB RSS per idle wss connection in all (same library).
  EXPECT_LE(idle, 16u * 1024) << "an idle TLS stream holds " << idle << " bytes";
}

TEST(TlsFootprint, ReleasingRecordBuffersSavesMostOfIt) {
  Contexts ctx;
  perIdleServerStream(ctx, 10, false);
  const std::size_t held = perIdleServerStream(ctx, 100, false);
  const std::size_t released = perIdleServerStream(ctx, 100, true);
  // The read and write record buffers (~33 KB) are what the idle timer gives back.
  EXPECT_GE(held, released + 24u * 1024) << "held " << held << ", released " << released;
}

}  // namespace
}  // namespace wsgate::tls
