#pragma once
// Backend discovery: one thread that re-resolves every `discover` entry of the running config
// each `interval` (dns_resolver.h, blocking, so never on an event loop), keeps each entry's
// last good set, and tells the Server when a set changed; the Server then publishes a
// snapshot built from the file's config and the sets (discovered_backends.h), as a reload
// does but without reading the file. What an answer does to an entry's set (Target::apply)
// is a pure function of the answer and the time, unit-tested.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "conf/config.h"
#include "proxy/control/discovered_backends.h"
#include "proxy/control/dns_resolver.h"

namespace wsgate::proxy {

class Discovery {
public:
  using Clock = std::chrono::steady_clock;

  // What one resolution did to an entry's set.
  enum class Outcome {
    Unchanged,  // an answer with the same set (or none, for a set already empty)
    Changed,    // a new set: the Server publishes it
    Held,       // an empty answer (NXDOMAIN, no records) within hold_empty: the set stays
    Failed,     // no usable answer: the set stays
  };

  // A line for the error log, when a resolution is worth one: a change, the first failure,
  // the recovery, an empty answer held or applied. Not one per failed interval.
  struct Note {
    bool warning = false;
    std::string text;
  };

  // One discover entry and what its resolutions left.
  struct Target {
    std::string key;   // discoverKey()
    std::string pool;  // pool name
    conf::DiscoverConfig config;
    Endpoints current;      // the set in use
    bool resolved = false;  // an answer has come (the set is the DNS's, not a default)
    bool failing = false;   // the last resolution failed
    uint64_t failuresInRow = 0;
    std::optional<Clock::time_point> failingSince;
    std::optional<Clock::time_point> emptySince;   // first of the empty answers being held
    std::optional<Clock::time_point> lastSuccess;  // last answer, records or not
    std::string lastError;
    uint64_t ok = 0, changed = 0, held = 0, failed = 0;  // resolutions by outcome
    Clock::time_point due{};                             // the next resolution

    // Applies resolution `r`, finished at `now`; appends what to log to `notes`.
    Outcome apply(const Resolution& r, Clock::time_point now, std::vector<Note>& notes);
  };

  // For /metrics and /status (a copy taken under the lock).
  struct Status {
    std::string pool;
    conf::DiscoverConfig config;
    std::size_t backends = 0;
    bool failing = false;
    std::string lastError;
    std::optional<Clock::duration> sinceSuccess;  // nullopt: no answer yet
    uint64_t ok = 0, changed = 0, held = 0, failed = 0;
  };

  // `changed` runs on the discovery thread after a set changed (it posts to the main loop).
  explicit Discovery(std::function<void()> changed);
  ~Discovery();  // stops the thread; a resolution in progress is waited for (bounded)
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;

  // Resolves, blocking, every discover entry of `source` that has no target yet: what a
  // reload (on its thread) and the start do before they publish. By discoverKey.
  std::map<std::string, Resolution> resolveNew(const conf::Config& source) const;

  // The current set of every target, by discoverKey. Any thread.
  DiscoveredSets sets() const;

  // Main thread, when a snapshot built from `source` is published: targets follow its
  // discover entries (kept ones keep their set, state and schedule, with the new interval
  // and weights; `fresh` gives new ones their first result; gone ones stop).
  void update(const conf::Config& source, const std::map<std::string, Resolution>& fresh);

  // Starts the thread (after the first update).
  void start();

  std::vector<Status> status() const;

private:
  void run();

  const std::function<void()> changed_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, Target> targets_;  // guarded by mu_
  bool stop_ = false;                      // guarded by mu_
  std::thread thread_;
};

}  // namespace wsgate::proxy
