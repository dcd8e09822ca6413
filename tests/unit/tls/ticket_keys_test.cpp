// The ticket key ring on its own: what seals, what still opens after each rotation, and that
// readers on many threads meet rotations safely. Each test has a ring of its own; the
// process-wide one is exercised through real handshakes in context_test.cpp.
#include "proxy/tls/ticket_keys.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <atomic>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "proxy/net/handles.h"

namespace wsgate::tls {
namespace {

using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, net::Deleter<EVP_CIPHER_CTX_free>>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, net::Deleter<EVP_MAC_CTX_free>>;

// What OpenSSL hands the callback: a fresh cipher context and an HMAC context.
struct Contexts {
  CipherCtxPtr cipher{EVP_CIPHER_CTX_new()};
  MacCtxPtr mac;
  Contexts() {
    EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    mac.reset(EVP_MAC_CTX_new(hmac));
    EVP_MAC_free(hmac);  // the context keeps its own reference
  }
};

using Name = std::array<unsigned char, TicketKeys::kNameBytes>;

struct Sealed {
  int rc = 0;
  Name name{};
  std::array<unsigned char, TicketKeys::kIvBytes> iv{};
  std::vector<unsigned char> ciphertext;
  std::vector<unsigned char> tag;
};

std::vector<unsigned char> macOf(EVP_MAC_CTX* mac, const std::vector<unsigned char>& data) {
  std::vector<unsigned char> tag(EVP_MAX_MD_SIZE);
  std::size_t len = 0;
  EVP_MAC_update(mac, data.data(), data.size());
  EVP_MAC_final(mac, tag.data(), &len, tag.size());
  tag.resize(len);
  return tag;
}

// Seals `plaintext` the way OpenSSL seals a ticket with the parameters the ring gives.
Sealed seal(TicketKeys& keys, std::string_view plaintext = "session state") {
  Contexts ctx;
  Sealed s;
  s.rc = keys.seal(s.name.data(), s.iv.data(), ctx.cipher.get(), ctx.mac.get());
  if (s.rc != 1) return s;
  s.ciphertext.resize(plaintext.size() + EVP_MAX_BLOCK_LENGTH);
  int len = 0;
  int tail = 0;
  EVP_EncryptUpdate(ctx.cipher.get(), s.ciphertext.data(), &len,
                    reinterpret_cast<const unsigned char*>(plaintext.data()),
                    static_cast<int>(plaintext.size()));
  EVP_EncryptFinal_ex(ctx.cipher.get(), s.ciphertext.data() + len, &tail);
  s.ciphertext.resize(static_cast<std::size_t>(len) + static_cast<std::size_t>(tail));
  s.tag = macOf(ctx.mac.get(), s.ciphertext);
  return s;
}

struct Opened {
  int rc = 0;
  bool authentic = false;  // the tag checked out
  std::string plaintext;
};

Opened open(TicketKeys& keys, const Sealed& s) {
  Contexts ctx;
  Opened o;
  o.rc = keys.open(s.name.data(), s.iv.data(), ctx.cipher.get(), ctx.mac.get());
  if (o.rc == 0) return o;
  o.authentic = macOf(ctx.mac.get(), s.ciphertext) == s.tag;
  std::vector<unsigned char> out(s.ciphertext.size() + EVP_MAX_BLOCK_LENGTH);
  int len = 0;
  int tail = 0;
  EVP_DecryptUpdate(ctx.cipher.get(), out.data(), &len, s.ciphertext.data(),
                    static_cast<int>(s.ciphertext.size()));
  if (EVP_DecryptFinal_ex(ctx.cipher.get(), out.data() + len, &tail) == 1) {
    o.plaintext.assign(reinterpret_cast<const char*>(out.data()),
                       static_cast<std::size_t>(len) + static_cast<std::size_t>(tail));
  }
  return o;
}

TEST(TicketKeys, OpensWhatItSealedWithTheCurrentKey) {
  TicketKeys keys;
  Sealed s = seal(keys, "the session");
  ASSERT_EQ(s.rc, 1);
  Opened o = open(keys, s);
  EXPECT_EQ(o.rc, 1);
  EXPECT_TRUE(o.authentic);
  EXPECT_EQ(o.plaintext, "the session");
}

TEST(TicketKeys, SealsWithOneKeyAndFreshIvsWithinAPeriod) {
  TicketKeys keys;
  Sealed first = seal(keys);
  keys.advanceClockForTesting(TicketKeys::kRotation - std::chrono::seconds(1));
  Sealed second = seal(keys);
  EXPECT_EQ(first.name, second.name);
  EXPECT_NE(first.iv, second.iv);
}

TEST(TicketKeys, RotatesTheSealingKeyEveryPeriod) {
  TicketKeys keys;
  Sealed first = seal(keys);
  keys.advanceClockForTesting(TicketKeys::kRotation);
  Sealed second = seal(keys);
  EXPECT_NE(first.name, second.name);
}

// Opened with rc per number of periods elapsed since sealing: 2 asks OpenSSL for a new ticket.
TEST(TicketKeys, PreviousKeysOpenForTwoPeriodsAndAskForRenewal) {
  TicketKeys keys;
  Sealed s = seal(keys, "kept");
  for (int periods = 1; periods <= 4; ++periods) {
    keys.advanceClockForTesting(TicketKeys::kRotation);
    seal(keys);  // rotate, as handshakes in between would
    Opened o = open(keys, s);
    if (periods <= TicketKeys::kPreviousKeys) {
      EXPECT_EQ(o.rc, 2) << periods;
      EXPECT_TRUE(o.authentic) << periods;
      EXPECT_EQ(o.plaintext, "kept") << periods;
    } else {
      EXPECT_EQ(o.rc, 0) << periods;
    }
  }
}

// No handshake for a while means no rotation; the old key must still stop opening tickets.
TEST(TicketKeys, AgedKeysStopOpeningEvenWithoutRotation) {
  TicketKeys keys;
  Sealed s = seal(keys);
  keys.advanceClockForTesting(TicketKeys::kRotation * 3);
  EXPECT_EQ(open(keys, s).rc, 0);
}

TEST(TicketKeys, OpensOnlyTheLastThreeKeys) {
  TicketKeys keys;
  std::vector<Sealed> sealed;
  for (int i = 0; i < 4; ++i) {
    if (i > 0) keys.advanceClockForTesting(TicketKeys::kRotation);
    sealed.push_back(seal(keys));
  }
  EXPECT_EQ(open(keys, sealed[0]).rc, 0);
  EXPECT_EQ(open(keys, sealed[1]).rc, 2);
  EXPECT_EQ(open(keys, sealed[2]).rc, 2);
  EXPECT_EQ(open(keys, sealed[3]).rc, 1);
}

TEST(TicketKeys, RefusesAnUnknownKeyName) {
  TicketKeys keys;
  Sealed s = seal(keys);
  ASSERT_EQ(RAND_bytes(s.name.data(), s.name.size()), 1);
  EXPECT_EQ(open(keys, s).rc, 0);
}

TEST(TicketKeys, RefusesEverythingBeforeTheFirstSeal) {
  TicketKeys keys;
  Sealed s;
  EXPECT_EQ(open(keys, s).rc, 0);
}

TEST(TicketKeys, RingsDoNotShareKeys) {
  TicketKeys one;
  TicketKeys other;
  EXPECT_EQ(open(other, seal(one)).rc, 0);
}

TEST(TicketKeys, InstanceIsOneRingForTheProcess) {
  EXPECT_EQ(&TicketKeys::instance(), &TicketKeys::instance());
  EXPECT_EQ(open(TicketKeys::instance(), seal(TicketKeys::instance())).rc, 1);
}

// What OpenSSL is told: every ticket the ring opens is renewed (2), so a TLS 1.3 client,
// which uses a ticket once, always has a fresh one; an unknown one is refused (0).
TEST(TicketKeys, CallbackAsksForAFreshTicketOnEveryResumption) {
  TicketKeys& keys = TicketKeys::instance();
  Contexts seal;
  Sealed s;
  ASSERT_EQ(TicketKeys::callback(nullptr, s.name.data(), s.iv.data(), seal.cipher.get(),
                                 seal.mac.get(), 1),
            1);
  EXPECT_EQ(open(keys, s).rc, 1);  // sealed under the current key...
  Contexts reopen;
  EXPECT_EQ(TicketKeys::callback(nullptr, s.name.data(), s.iv.data(), reopen.cipher.get(),
                                 reopen.mac.get(), 0),
            2);  // ...and still renewed
  Name unknown{};
  Contexts refuse;
  EXPECT_EQ(TicketKeys::callback(nullptr, unknown.data(), s.iv.data(), refuse.cipher.get(),
                                 refuse.mac.get(), 0),
            0);
}

// Workers seal and open on every handshake while the clock moves: a ticket sealed a moment
// ago always opens (the clock moves two periods in all, within what the ring keeps). "A
// moment": the clock moves again only once every worker has started a round since the last
// move, so no seal-and-open pair spans two moves, however the threads are scheduled (a
// worker descheduled between its seal and its open while the others ran on made one fail
// on a loaded CI machine).
TEST(TicketKeys, ManyThreadsSealAndOpenAcrossRotations) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 500;
  TicketKeys keys;
  std::atomic<int> failures{0};
  std::array<std::atomic<int>, kThreads> rounds{};
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        Sealed s = seal(keys, "x");
        Opened o = open(keys, s);
        if (s.rc != 1 || o.rc == 0 || !o.authentic || o.plaintext != "x") ++failures;
        rounds[t].fetch_add(1, std::memory_order_acq_rel);
      }
    });
  }
  // Each worker's count read just after the last move: two more rounds done since means one
  // started after the move, so the pair it has in flight did too.
  std::array<int, kThreads> afterMove{};
  for (int step = 1; step <= TicketKeys::kPreviousKeys; ++step) {
    for (int t = 0; t < kThreads; ++t) {
      const int until = std::min(kRounds, std::max(afterMove[t] + 2, step * 100));
      while (rounds[t].load(std::memory_order_acquire) < until) std::this_thread::yield();
    }
    keys.advanceClockForTesting(TicketKeys::kRotation);
    for (int t = 0; t < kThreads; ++t) afterMove[t] = rounds[t].load(std::memory_order_acquire);
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace wsgate::tls
