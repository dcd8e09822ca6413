#pragma once
// A backend server: its identity from the config plus live counters shared by every
// worker thread. A Backend outlives config snapshots while its identity is unchanged.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace wsgate::balancer {

struct BackendSpec {
  std::string pool;
  std::string name;
  std::string host;  // numeric address or name, as configured
  uint16_t port = 0;
  uint32_t weight = 1;
  uint32_t maxConnections = 0;  // 0 = unlimited

  // pool/name@host:port: two specs with the same identity share one Backend across reloads.
  std::string identity() const;
};

class Backend {
public:
  explicit Backend(BackendSpec spec) : spec_(std::move(spec)) {}
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const BackendSpec& spec() const noexcept { return spec_; }

  // Sessions (and in-flight HTTP exchanges) currently using this backend, all workers.
  // Relaxed: the count steers choices, it orders no other memory.
  uint32_t active() const noexcept { return active_.load(std::memory_order_relaxed); }
  void acquire() noexcept { active_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept { active_.fetch_sub(1, std::memory_order_relaxed); }

  // Passive health: a failed connect marks the backend down, a success marks it up.
  bool up() const noexcept { return up_.load(std::memory_order_relaxed); }
  void markDown() noexcept { up_.store(false, std::memory_order_relaxed); }
  void markUp() noexcept { up_.store(true, std::memory_order_relaxed); }

  // Eligible for a new session: up and under its connection limit.
  bool available() const noexcept {
    return up() && (spec_.maxConnections == 0 || active() < spec_.maxConnections);
  }

private:
  const BackendSpec spec_;
  std::atomic<uint32_t> active_{0};
  std::atomic<bool> up_{true};
};

using BackendPtr = std::shared_ptr<Backend>;

// RAII share of a backend's active count: acquired on construction, given back when the
// lease is destroyed or reset. Move-only.
class BackendLease {
public:
  BackendLease() = default;
  explicit BackendLease(BackendPtr b) : backend_(std::move(b)) {
    if (backend_) backend_->acquire();
  }
  BackendLease(BackendLease&& o) noexcept : backend_(std::move(o.backend_)) {}
  BackendLease& operator=(BackendLease&& o) noexcept {
    if (this != &o) {
      reset();
      backend_ = std::move(o.backend_);
    }
    return *this;
  }
  BackendLease(const BackendLease&) = delete;
  BackendLease& operator=(const BackendLease&) = delete;
  ~BackendLease() { reset(); }

  void reset() noexcept {
    if (backend_) backend_->release();
    backend_.reset();
  }
  Backend* get() const noexcept { return backend_.get(); }
  Backend* operator->() const noexcept { return backend_.get(); }
  explicit operator bool() const noexcept { return backend_ != nullptr; }

private:
  BackendPtr backend_;
};

}  // namespace wsgate::balancer
