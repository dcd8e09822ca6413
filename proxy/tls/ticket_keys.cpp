#include "proxy/tls/ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace wsgate::tls {

TicketKeys& TicketKeys::instance() {
  static auto* keys = new TicketKeys();
  return *keys;
}

int TicketKeys::callback(SSL* /*ssl*/, unsigned char* keyName, unsigned char* iv,
                         EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) noexcept {
  if (enc == 1) return instance().seal(keyName, iv, cipher, mac);
  // Every resumption gets a fresh ticket (2), even under the current key: a TLS 1.3 client
  // uses each ticket once (RFC 8446 C.4), and OpenSSL sends none after a resumption unless
  // asked, so such a client would fall back to a full handshake every other connection.
  return instance().open(keyName, iv, cipher, mac) == 0 ? 0 : 2;
}

TicketKeys::TicketKeys() : aes_(EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr)) {}

TicketKeys::~TicketKeys() {
  for (auto& key : ring_) OPENSSL_cleanse(&key, sizeof key);
  EVP_CIPHER_free(aes_);
}

void TicketKeys::advanceClockForTesting(std::chrono::seconds by) {
  offsetSeconds_.fetch_add(by.count(), std::memory_order_relaxed);
}

int64_t TicketKeys::currentPeriod() const {
  // steady_clock: a wall-clock step (NTP, an operator) must neither age keys early nor keep
  // them past their period.
  auto elapsed = std::chrono::steady_clock::now() - origin_ +
                 std::chrono::seconds(offsetSeconds_.load(std::memory_order_relaxed));
  return std::chrono::duration_cast<std::chrono::seconds>(elapsed) / kRotation;
}

bool TicketKeys::sealingKey(int64_t period, Key& out) {
  {
    std::shared_lock lock(mutex_);
    if (count_ > 0 && ring_[0].period == period) {
      out = ring_[0];
      return true;
    }
  }
  std::unique_lock lock(mutex_);
  if (count_ > 0 && ring_[0].period == period) {  // another thread rotated meanwhile
    out = ring_[0];
    return true;
  }
  Key fresh;
  fresh.period = period;
  if (RAND_bytes(fresh.name.data(), fresh.name.size()) != 1 ||
      RAND_priv_bytes(fresh.aes.data(), fresh.aes.size()) != 1 ||
      RAND_priv_bytes(fresh.hmac.data(), fresh.hmac.size()) != 1) {
    OPENSSL_cleanse(&fresh, sizeof fresh);
    return false;
  }
  // The oldest key falls off the end; open() also refuses keys older than kPreviousKeys
  // periods, so a ring that was not rotated for a while (no handshakes) is still right.
  OPENSSL_cleanse(&ring_.back(), sizeof(Key));
  std::move_backward(ring_.begin(), ring_.end() - 1, ring_.end());
  ring_[0] = fresh;
  count_ = std::min(count_ + 1, ring_.size());
  out = fresh;
  OPENSSL_cleanse(&fresh, sizeof fresh);
  return true;
}

bool TicketKeys::keyMac(EVP_MAC_CTX* mac, const Key& key) const {
  Key copy = key;  // OSSL_PARAM wants non-const buffers
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, copy.hmac.data(), copy.hmac.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  bool ok = EVP_MAC_CTX_set_params(mac, params) == 1;
  OPENSSL_cleanse(&copy, sizeof copy);
  return ok;
}

int TicketKeys::seal(unsigned char* keyName, unsigned char* iv, EVP_CIPHER_CTX* cipher,
                     EVP_MAC_CTX* mac) noexcept {
  // Returning 0 sends no ticket: the connection goes on, only its resumption is lost.
  if (aes_ == nullptr) return 0;
  Key key;
  if (!sealingKey(currentPeriod(), key)) return 0;
  bool ok = RAND_bytes(iv, kIvBytes) == 1 &&
            EVP_EncryptInit_ex(cipher, aes_, nullptr, key.aes.data(), iv) == 1 && keyMac(mac, key);
  if (ok) std::memcpy(keyName, key.name.data(), kNameBytes);
  OPENSSL_cleanse(&key, sizeof key);
  return ok ? 1 : 0;
}

int TicketKeys::open(const unsigned char* keyName, const unsigned char* iv, EVP_CIPHER_CTX* cipher,
                     EVP_MAC_CTX* mac) noexcept {
  if (aes_ == nullptr) return 0;
  const int64_t now = currentPeriod();
  Key key;
  bool found = false;
  {
    std::shared_lock lock(mutex_);
    for (std::size_t i = 0; i < count_; ++i) {
      const Key& k = ring_[i];
      if (k.period >= now - kPreviousKeys && k.period <= now &&
          std::memcmp(k.name.data(), keyName, kNameBytes) == 0) {
        key = k;
        found = true;
        break;
      }
    }
  }
  if (!found) return 0;
  bool ok = EVP_DecryptInit_ex(cipher, aes_, nullptr, key.aes.data(), iv) == 1 && keyMac(mac, key);
  const bool current = key.period == now;
  OPENSSL_cleanse(&key, sizeof key);
  if (!ok) return 0;
  return current ? 1 : 2;
}

}  // namespace wsgate::tls
