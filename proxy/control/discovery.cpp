#include "proxy/control/discovery.h"

#include <fmt/format.h>

#include <algorithm>

#include "proxy/log.h"

namespace wsgate::proxy {
namespace {

std::string what(const Discovery::Target& t) {
  return fmt::format("discovery pool={} dns={}{}", t.pool, t.config.dns,
                     t.config.port != 0 ? ":" + std::to_string(t.config.port) : " (SRV)");
}

// "+10.0.0.3:9001 -10.0.0.1:9001", at most a few of each (a large change is counted).
std::string changes(const Endpoints& was, const Endpoints& now) {
  constexpr std::size_t kShown = 8;
  std::string out;
  std::size_t shown = 0, more = 0;
  auto list = [&](const Endpoints& a, const Endpoints& b, char sign) {
    for (const auto& e : a) {
      const bool kept = std::any_of(b.begin(), b.end(), [&](const Endpoint& o) {
        return o.host == e.host && o.port == e.port;
      });
      if (kept) continue;
      if (shown++ < kShown) {
        out += fmt::format(" {}{}", sign, endpointName(e));
      } else {
        ++more;
      }
    }
  };
  list(now, was, '+');
  list(was, now, '-');
  if (more > 0) out += fmt::format(" and {} more", more);
  if (out.empty()) out = " (weights)";
  return out;
}

}  // namespace

Discovery::Outcome Discovery::Target::apply(const Resolution& r, Clock::time_point now,
                                            std::vector<Note>& notes) {
  if (r.status == Resolution::Status::Failed) {
    ++failed;
    ++failuresInRow;
    lastError = r.detail;
    if (!failing) {
      failing = true;
      failingSince = now;
      notes.push_back(
          {true,
           fmt::format("{}: resolution failed: {}; {} (said once: the next line is when "
                       "it answers again)",
                       what(*this), r.detail,
                       resolved ? fmt::format("keeping its last {} backend(s)", current.size())
                                : std::string("no backends from it until it answers"))});
    }
    return Outcome::Failed;
  }
  if (failing) {
    const auto seconds =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - *failingSince).count() / 1e3;
    notes.push_back({false, fmt::format("{}: answers again after {} failed resolution(s) over "
                                        "{:.1f}s",
                                        what(*this), failuresInRow, seconds)});
    failing = false;
    failuresInRow = 0;
    failingSince.reset();
  }
  lastError.clear();
  lastSuccess = now;
  const bool first = !resolved;
  resolved = true;
  if (r.status == Resolution::Status::Empty && !current.empty()) {
    if (!emptySince) emptySince = now;
    if (now - *emptySince < config.holdEmpty) {
      if (*emptySince == now) {
        notes.push_back(
            {true, fmt::format("{}: {}: keeping its {} backend(s) for hold_empty "
                               "{}ms unless records come back",
                               what(*this), r.detail, current.size(), config.holdEmpty.count())});
      }
      ++held;
      return Outcome::Held;
    }
    notes.push_back({true, fmt::format("{}: {} for hold_empty {}ms: its {} backend(s) leave and "
                                       "drain:{}",
                                       what(*this), r.detail, config.holdEmpty.count(),
                                       current.size(), changes(current, {}))});
    current.clear();
    emptySince.reset();
    ++changed;
    return Outcome::Changed;
  }
  emptySince.reset();
  if (r.endpoints == current) {
    ++ok;
    if (first) {
      notes.push_back({false, fmt::format("{}: {}", what(*this),
                                          current.empty() ? r.detail + ": no backends"
                                                          : "resolved, same backends")});
    }
    return Outcome::Unchanged;
  }
  notes.push_back({false, fmt::format("{}: {} backend(s):{}", what(*this), r.endpoints.size(),
                                      changes(current, r.endpoints))});
  current = r.endpoints;
  ++changed;
  return Outcome::Changed;
}

Discovery::Discovery(std::function<void()> changed) : changed_(std::move(changed)) {}

Discovery::~Discovery() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::map<std::string, Resolution> Discovery::resolveNew(const conf::Config& source) const {
  std::map<std::string, Resolution> fresh;
  for (const auto& pool : source.pools) {
    for (const auto& d : pool.discover) {
      const std::string key = discoverKey(pool, d);
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (targets_.contains(key)) continue;
      }
      fresh.emplace(key, resolveDiscover(d));
    }
  }
  return fresh;
}

DiscoveredSets Discovery::sets() const {
  std::lock_guard<std::mutex> lock(mu_);
  DiscoveredSets out;
  for (const auto& [key, t] : targets_) out.emplace(key, t.current);
  return out;
}

void Discovery::update(const conf::Config& source, const std::map<std::string, Resolution>& fresh) {
  std::vector<Note> notes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = Clock::now();
    std::map<std::string, Target> next;
    for (const auto& pool : source.pools) {
      for (const auto& d : pool.discover) {
        const std::string key = discoverKey(pool, d);
        Target t;
        t.config = d;
        if (auto kept = targets_.find(key); kept != targets_.end()) {
          t = std::move(kept->second);
          t.config = d;
          // A shorter interval takes effect now rather than after the old, longer one.
          t.due = std::min(t.due, now + d.interval);
        } else {
          t.key = key;
          t.pool = pool.name;
          t.due = now + d.interval;
          // Its first result, which the snapshot being published was built with. Without
          // one (cannot happen: the publisher resolved it) it is resolved at once.
          if (auto r = fresh.find(key); r != fresh.end()) {
            t.apply(r->second, now, notes);
          } else {
            t.due = now;
          }
        }
        next.emplace(key, std::move(t));
      }
    }
    targets_ = std::move(next);
  }
  for (const auto& n : notes) {
    if (n.warning) {
      log().warn("{}", n.text);
    } else {
      log().info("{}", n.text);
    }
  }
  wake_.notify_all();
}

void Discovery::start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
}

std::vector<Discovery::Status> Discovery::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = Clock::now();
  std::vector<Status> out;
  for (const auto& [key, t] : targets_) {
    Status s;
    s.pool = t.pool;
    s.config = t.config;
    s.backends = t.current.size();
    s.failing = t.failing;
    s.lastError = t.lastError;
    if (t.lastSuccess) s.sinceSuccess = now - *t.lastSuccess;
    s.ok = t.ok;
    s.changed = t.changed;
    s.held = t.held;
    s.failed = t.failed;
    out.push_back(std::move(s));
  }
  return out;
}

void Discovery::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const Target* next = nullptr;
    for (const auto& [key, t] : targets_) {
      if (next == nullptr || t.due < next->due) next = &t;
    }
    if (next == nullptr) {
      wake_.wait(lock);
      continue;
    }
    if (const Clock::time_point due = next->due; Clock::now() < due) {
      // A copy: wait_until reads its deadline again after waking, and an update meanwhile
      // replaces the targets. Woken early (an update, a stop), the loop looks again.
      wake_.wait_until(lock, due);
      continue;
    }
    const std::string key = next->key;
    const conf::DiscoverConfig config = next->config;
    lock.unlock();
    const Resolution r = resolveDiscover(config);  // blocking: never under the lock
    lock.lock();
    auto it = targets_.find(key);
    if (it == targets_.end()) continue;  // a reload removed it meanwhile
    std::vector<Note> notes;
    const auto now = Clock::now();
    const Outcome outcome = it->second.apply(r, now, notes);
    // From the end of this resolution: a slow resolver is not asked again at once.
    it->second.due = now + it->second.config.interval;
    lock.unlock();
    for (const auto& n : notes) {
      if (n.warning) {
        log().warn("{}", n.text);
      } else {
        log().info("{}", n.text);
      }
    }
    if (outcome == Outcome::Changed && changed_) changed_();
    lock.lock();
  }
}

}  // namespace wsgate::proxy
