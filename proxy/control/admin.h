#pragma once
// The admin endpoint (admin.listen): GET /status (JSON), GET /metrics (Prometheus text),
// POST /pools/NAME/backends/NAME/drain and .../enable, POST /reload. Served by libevent's
// evhttp on the main thread's loop: it is a management plane, never on a worker's path.
// It reads the Server's current snapshot, set again by every reload. With admin.token, every
// request must carry `Authorization: Bearer TOKEN`, checked before anything else.

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "conf/config.h"
#include "proxy/control/runtime.h"
#include "proxy/net/handles.h"

struct evhttp;
struct evhttp_request;
struct event_base;
struct evconnlistener;

namespace wsgate::proxy {

class Server;
struct ReloadOutcome;

class AdminServer {
public:
  // Binds admin.listen; nullptr with `error` set when it cannot.
  static std::unique_ptr<AdminServer> start(event_base* base, const conf::AdminConfig& cfg,
                                            RuntimePtr runtime, Server& server, std::string& error);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  const std::string& address() const { return address_; }
  // A reload published a new snapshot; its admin.token (re-read from token_file) is the one
  // requests need from now on.
  void setRuntime(RuntimePtr runtime);

private:
  // What one admin request may be (the API's requests have no body to speak of).
  static constexpr long kMaxHeaderBytes = 8 * 1024;
  static constexpr long kMaxBodyBytes = 4 * 1024;
  static constexpr int kRequestTimeoutSeconds = 10;
  using Digest = std::array<unsigned char, 32>;  // SHA-256

  AdminServer(RuntimePtr runtime, Server& server);
  static void onRequestCb(evhttp_request* req, void* self) noexcept;
  // accept() failed for a reason other than EAGAIN (out of descriptors): evhttp's listener
  // stays readable, so it is paused for a moment instead of spinning (as net::Acceptor).
  // Its argument is evhttp's, not ours: the admin server is found through instance_.
  static void onAcceptErrorCb(evconnlistener* listener, void*) noexcept;
  static void onAcceptRetryCb(int, short, void* self) noexcept;
  static AdminServer* instance_;  // the process's one admin server (main thread only)
  void onRequest(evhttp_request* req);
  // True when no token is configured or the request carries it; otherwise answers 401.
  bool authorize(evhttp_request* req);
  // One info line per second at most; the refusals left out are counted in the next one.
  void logRefusal(evhttp_request* req, std::string_view why);
  void backendAction(evhttp_request* req, const std::string& pool, const std::string& backend,
                     const std::string& action);
  void reload(evhttp_request* req);
  std::size_t sessions() const;
  std::string status() const;

  RuntimePtr runtime_;
  Server& server_;
  evhttp* http_ = nullptr;
  evconnlistener* listener_ = nullptr;  // evhttp's, freed with it
  net::EventPtr acceptRetry_;
  std::chrono::steady_clock::time_point lastShortageLog_{};
  std::string address_;
  // The token's digest, not the token: requests are compared to it digest to digest, in
  // constant time whatever their length. nullopt: no token asked for.
  std::optional<Digest> token_;
  std::chrono::steady_clock::time_point lastRefusalLog_{};
  uint64_t refusalsNotLogged_ = 0;
};

}  // namespace wsgate::proxy
