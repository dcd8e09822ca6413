// tls::Stream back to back: a server stream and a client stream joined by nothing but
// evbuffers (no socket), as the transport joins a stream to its socket.

#include "proxy/tls/stream.h"

#include <event2/buffer.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

#include "tests/unit/tls/pki.h"

namespace wsgate::tls {
namespace {

using BufPtr = std::unique_ptr<evbuffer, net::Deleter<evbuffer_free>>;
using CtxPtr = std::unique_ptr<SSL_CTX, net::Deleter<SSL_CTX_free>>;

BufPtr newBuf() { return BufPtr(evbuffer_new()); }

std::string drainString(evbuffer* b) {
  std::string s(evbuffer_get_length(b), '\0');
  evbuffer_remove(b, s.data(), s.size());
  return s;
}

// A self-signed ECDSA P-256 certificate for "stream.test", made once per process.
const testkit::Issued& identity() {
  static const testkit::Issued id =
      testkit::issue({.cn = "stream.test", .san = "DNS:stream.test"}, nullptr);
  return id;
}

CtxPtr serverCtx(int maxVersion = 0) {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  SSL_CTX_use_certificate(ctx.get(), identity().cert.get());
  SSL_CTX_use_PrivateKey(ctx.get(), identity().key.get());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  if (maxVersion != 0) SSL_CTX_set_max_proto_version(ctx.get(), maxVersion);
  SSL_CTX_set_options(ctx.get(), SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  return ctx;
}

CtxPtr clientCtx(bool verify) {
  CtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (verify) {
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), identity().cert.get());
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  }
  return ctx;
}

SslPtr newSsl(SSL_CTX* ctx, bool server, const char* host = "stream.test") {
  SslPtr ssl(SSL_new(ctx));
  if (server) {
    SSL_set_accept_state(ssl.get());
  } else {
    SSL_set_connect_state(ssl.get());
    SSL_set_tlsext_host_name(ssl.get(), host);
    SSL_set1_host(ssl.get(), host);
  }
  return ssl;
}

// Two streams and the four buffers between them: what one side's encrypt writes is what
// the other side's decrypt reads.
struct Pair {
  explicit Pair(const char* clientHost = "stream.test", int serverMaxVersion = 0)
      : sctx(serverCtx(serverMaxVersion)),
        cctx(clientCtx(true)),
        server(newSsl(sctx.get(), true)),
        client(newSsl(cctx.get(), false, clientHost)) {}
  CtxPtr sctx, cctx;
  Stream server;
  Stream client;
  BufPtr toServer = newBuf(), toClient = newBuf();        // ciphertext on the "wire"
  BufPtr serverPlain = newBuf(), clientPlain = newBuf();  // plaintext received
  Stream::Status lastServer = Stream::Status::Ok, lastClient = Stream::Status::Ok;

  // Moves records both ways until neither side has anything more to say.
  void pump() {
    for (int i = 0; i < 20; ++i) {
      auto empty = newBuf();
      lastClient = client.encrypt(empty.get(), toServer.get());
      lastServer = server.decrypt(toServer.get(), serverPlain.get(), toClient.get());
      lastClient = client.decrypt(toClient.get(), clientPlain.get(), toServer.get());
      if (evbuffer_get_length(toServer.get()) == 0 && evbuffer_get_length(toClient.get()) == 0) {
        break;
      }
    }
  }
  void handshake() {
    pump();
    ASSERT_TRUE(server.handshakeDone());
    ASSERT_TRUE(client.handshakeDone());
  }
};

TEST(TlsStream, HandshakesAndEchoesBothWays) {
  Pair p;
  p.handshake();
  auto msg = newBuf();
  evbuffer_add(msg.get(), "hello server", 12);
  EXPECT_EQ(p.client.encrypt(msg.get(), p.toServer.get()), Stream::Status::Ok);
  EXPECT_EQ(evbuffer_get_length(msg.get()), 0u);
  EXPECT_EQ(p.server.decrypt(p.toServer.get(), p.serverPlain.get(), p.toClient.get()),
            Stream::Status::Ok);
  EXPECT_EQ(drainString(p.serverPlain.get()), "hello server");
  evbuffer_add(msg.get(), "hello client", 12);
  EXPECT_EQ(p.server.encrypt(msg.get(), p.toClient.get()), Stream::Status::Ok);
  EXPECT_EQ(p.client.decrypt(p.toClient.get(), p.clientPlain.get(), p.toServer.get()),
            Stream::Status::Ok);
  EXPECT_EQ(drainString(p.clientPlain.get()), "hello client");
}

TEST(TlsStream, PlaintextWaitsForTheHandshake) {
  Pair p;
  auto msg = newBuf();
  evbuffer_add(msg.get(), "early", 5);
  // The client's first encrypt starts the handshake and keeps the request for later.
  EXPECT_EQ(p.client.encrypt(msg.get(), p.toServer.get()), Stream::Status::Ok);
  EXPECT_EQ(evbuffer_get_length(msg.get()), 5u);
  EXPECT_GT(evbuffer_get_length(p.toServer.get()), 0u);  // the ClientHello
  p.handshake();
  EXPECT_EQ(p.client.encrypt(msg.get(), p.toServer.get()), Stream::Status::Ok);
  p.server.decrypt(p.toServer.get(), p.serverPlain.get(), p.toClient.get());
  EXPECT_EQ(drainString(p.serverPlain.get()), "early");
}

TEST(TlsStream, RecordSplitAtEveryByteStillDecrypts) {
  Pair p;
  p.handshake();
  const std::string text(3000, 'x');
  auto msg = newBuf();
  evbuffer_add(msg.get(), text.data(), text.size());
  p.client.encrypt(msg.get(), p.toServer.get());
  const std::string wire = drainString(p.toServer.get());
  auto trickle = newBuf();
  for (char c : wire) {  // one byte of ciphertext per read
    evbuffer_add(trickle.get(), &c, 1);
    ASSERT_EQ(p.server.decrypt(trickle.get(), p.serverPlain.get(), p.toClient.get()),
              Stream::Status::Ok);
  }
  EXPECT_EQ(drainString(p.serverPlain.get()), text);
}

TEST(TlsStream, ManyRecordsInOneReadAllComeOut) {
  Pair p;
  p.handshake();
  std::string expect;
  for (int i = 0; i < 50; ++i) {
    auto msg = newBuf();
    const std::string m = "message " + std::to_string(i) + ";";
    evbuffer_add(msg.get(), m.data(), m.size());
    p.client.encrypt(msg.get(), p.toServer.get());  // one record each
    expect += m;
  }
  p.server.decrypt(p.toServer.get(), p.serverPlain.get(), p.toClient.get());
  EXPECT_EQ(drainString(p.serverPlain.get()), expect);
  EXPECT_EQ(evbuffer_get_length(p.toServer.get()), 0u);
}

TEST(TlsStream, LargeWritesBecomeFullRecords) {
  Pair p;
  p.handshake();
  std::string big(100 * 1024, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(big.data()), static_cast<int>(big.size()));
  auto msg = newBuf();
  evbuffer_add(msg.get(), big.data(), big.size());
  EXPECT_EQ(p.server.encrypt(msg.get(), p.toClient.get()), Stream::Status::Ok);
  EXPECT_EQ(evbuffer_get_length(msg.get()), 0u);
  p.client.decrypt(p.toClient.get(), p.clientPlain.get(), p.toServer.get());
  EXPECT_EQ(drainString(p.clientPlain.get()), big);
}

TEST(TlsStream, CloseNotifyEndsTheStream) {
  Pair p;
  p.handshake();
  p.client.shutdown(p.toServer.get());
  EXPECT_EQ(p.server.decrypt(p.toServer.get(), p.serverPlain.get(), p.toClient.get()),
            Stream::Status::Closed);
}

TEST(TlsStream, GarbageFailsWithAReason) {
  struct Case {
    const char* name;
    std::string bytes;
  } cases[] = {
      {"plaintext HTTP", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
      {"zeros", std::string(64, '\0')},
      {"bad record type", std::string("\x63\x03\x03\x00\x05hello", 10)},
      {"oversized record", std::string("\x16\x03\x01\xff\xff", 5) + std::string(200, 'a')},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Pair p;
    auto in = newBuf();
    evbuffer_add(in.get(), c.bytes.data(), c.bytes.size());
    EXPECT_EQ(p.server.decrypt(in.get(), p.serverPlain.get(), p.toClient.get()),
              Stream::Status::Failed);
    EXPECT_FALSE(p.server.error().empty());
    EXPECT_EQ(evbuffer_get_length(p.serverPlain.get()), 0u);
  }
}

TEST(TlsStream, TruncatedClientHelloWaitsWithoutFailing) {
  Pair p;
  auto empty = newBuf();
  p.client.encrypt(empty.get(), p.toServer.get());
  const std::string hello = drainString(p.toServer.get());
  auto part = newBuf();
  evbuffer_add(part.get(), hello.data(), hello.size() / 2);
  EXPECT_EQ(p.server.decrypt(part.get(), p.serverPlain.get(), p.toClient.get()),
            Stream::Status::Ok);
  EXPECT_FALSE(p.server.handshakeDone());
  EXPECT_EQ(evbuffer_get_length(p.toClient.get()), 0u);
}

TEST(TlsStream, ClientVerificationFailureNamesTheReason) {
  Pair p("other.test");
  p.pump();
  EXPECT_EQ(p.lastClient, Stream::Status::Failed);
  EXPECT_NE(p.client.error().find("certificate verify failed"), std::string::npos)
      << p.client.error();
}

TEST(TlsStream, ReleasedBuffersComeBackForTheNextRecord) {
  Pair p;
  p.handshake();
  p.server.releaseBuffers();
  p.client.releaseBuffers();
  auto msg = newBuf();
  evbuffer_add(msg.get(), "after idle", 10);
  p.client.encrypt(msg.get(), p.toServer.get());
  p.server.decrypt(p.toServer.get(), p.serverPlain.get(), p.toClient.get());
  EXPECT_EQ(drainString(p.serverPlain.get()), "after idle");
}

TEST(TlsStream, Tls12HandshakeWorksToo) {
  Pair p("stream.test", TLS1_2_VERSION);
  p.handshake();
  EXPECT_EQ(SSL_version(p.server.ssl()), TLS1_2_VERSION);
}

}  // namespace
}  // namespace wsgate::tls
