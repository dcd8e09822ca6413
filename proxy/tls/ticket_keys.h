#pragma once
// The process-wide ring of session-ticket keys. It lives outside the config snapshot so that
// a reload (new SSL_CTXs) keeps resuming the tickets handed out before it.

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <shared_mutex>

namespace wsgate::tls {

// Time is cut into periods of kRotation. The key of the current period seals new tickets;
// the keys of the kPreviousKeys periods before it still open tickets (and ask for a fresh
// one). A ticket therefore opens for at least kTicketLifetime after it was sealed, which is
// what the server contexts announce as the session timeout.
class TicketKeys {
public:
  static constexpr std::chrono::seconds kRotation{3600};
  static constexpr int kPreviousKeys = 2;
  static constexpr std::chrono::seconds kTicketLifetime = kRotation * kPreviousKeys;
  static constexpr std::size_t kNameBytes = 16;  // fixed by OpenSSL's callback
  static constexpr std::size_t kIvBytes = 16;    // AES-CBC

  // The ring every server context uses; created on first use, never destroyed (worker
  // threads may still finish handshakes while static destructors run).
  static TicketKeys& instance();

  // For SSL_CTX_set_tlsext_ticket_key_evp_cb, on instance(). enc 1: seal (returns 1, or 0
  // to send no ticket); enc 0: open (2: opened, send a fresh ticket; 0: unknown or too old).
  static int callback(SSL* ssl, unsigned char* keyName, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                      EVP_MAC_CTX* mac, int enc) noexcept;

  TicketKeys();
  ~TicketKeys();
  TicketKeys(const TicketKeys&) = delete;
  TicketKeys& operator=(const TicketKeys&) = delete;

  // Fills keyName and iv and keys cipher/mac for sealing; rotates first when a new period
  // began. 1 on success, 0 when no ticket should be sent (randomness or cipher failure).
  int seal(unsigned char* keyName, unsigned char* iv, EVP_CIPHER_CTX* cipher,
           EVP_MAC_CTX* mac) noexcept;
  // Keys cipher/mac to open a ticket sealed under keyName: 1 (current key), 2 (a previous
  // key: the caller issues a new ticket), 0 (unknown or too old: full handshake).
  int open(const unsigned char* keyName, const unsigned char* iv, EVP_CIPHER_CTX* cipher,
           EVP_MAC_CTX* mac) noexcept;

  // Tests move the ring's clock forward instead of waiting for hours.
  void advanceClockForTesting(std::chrono::seconds by);

private:
  struct Key {
    std::array<unsigned char, kNameBytes> name{};
    std::array<unsigned char, 32> aes{};   // AES-256-CBC
    std::array<unsigned char, 32> hmac{};  // HMAC-SHA256
    int64_t period = 0;
  };

  int64_t currentPeriod() const;
  // The key sealing in `period`, made (and the ring aged) when missing; false when no
  // random bytes could be had.
  bool sealingKey(int64_t period, Key& out);
  bool keyMac(EVP_MAC_CTX* mac, const Key& key) const;

  const std::chrono::steady_clock::time_point origin_ = std::chrono::steady_clock::now();
  std::atomic<int64_t> offsetSeconds_{0};  // relaxed: only tests move it, between handshakes

  // Read on every handshake by every worker, written once a period: a reader/writer lock
  // keeps the readers from serialising on each other.
  mutable std::shared_mutex mutex_;
  std::array<Key, kPreviousKeys + 1> ring_{};  // newest first
  std::size_t count_ = 0;

  // Fetched once: EVP_aes_256_cbc() would look the implementation up again on every
  // handshake, which OpenSSL 3.0 does under a lock.
  EVP_CIPHER* aes_ = nullptr;
};

}  // namespace wsgate::tls
