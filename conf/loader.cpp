#include "conf/loader.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <span>
#include <sstream>
#include <utility>

#include "conf/units.h"

namespace wsgate::conf {
namespace {

using namespace std::chrono_literals;

// Past this many errors the rest is noise; it also bounds the work an alias-heavy document
// (one anchor referenced thousands of times) can cause.
constexpr std::size_t kMaxErrors = 100;
// A config is a few KiB; the cap keeps `-c /dev/zero` from reading forever.
constexpr std::size_t kMaxFileBytes = 16 * 1024 * 1024;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

// Typo guards: values outside these ranges are far more likely a slip ("10000h", "16GiB" of
// headers) than a need, and refusing them at load time beats discovering them under load.
constexpr Duration kMaxDuration = 24h;
constexpr Duration kMinPingInterval = 100ms;  // below this, pings are traffic, not keepalive
constexpr uint64_t kMaxWorkers = 256;
constexpr uint64_t kMaxLuaInstructions = 1'000'000'000;
constexpr uint64_t kMaxWeight = 256;
constexpr uint64_t kMaxRetries = 10;
constexpr uint64_t kMaxConnections = 10'000'000;
constexpr uint64_t kMaxHeaders = 10'000;
constexpr uint64_t kMaxRespondBody = 64 * kKiB;
constexpr std::size_t kMaxNameLength = 64;
constexpr Duration kMaxSlowStart = 1h;          // a ramp longer than this is an outage of its own
constexpr Duration kMinHealthInterval = 100ms;  // below this, probes are load, not checks
constexpr uint64_t kMaxHealthCount = 100;       // rise/fall: past this a state never changes
// DNS discovery: a name re-resolved more often than this is load on the resolver; one
// re-resolved less often than this misses a day of changes.
constexpr Duration kMinDiscoverInterval = 100ms;
constexpr Duration kMaxDiscoverInterval = 1h;
constexpr std::size_t kMaxResolvers = 3;  // libresolv asks at most MAXNS servers
// An admin token shorter than this is guessable; one longer is not a token (the file is
// probably the wrong one), and it must fit in a request header.
constexpr std::size_t kMinTokenLength = 16;
constexpr std::size_t kMaxTokenLength = 4096;

// One value being read, with the key it was found under, for messages and marks.
struct Entry {
  YAML::Node key;  // the key node; for a list item, the item itself
  YAML::Node value;
  std::string name;   // the key's text, or what a list item is ("listener")
  bool item = false;  // a list item rather than a map value
};

using Visit = std::function<void(const Entry&)>;

// A known key of a map section. An empty `read` marks a key that interface.md defines but
// this version does not implement: it is refused rather than ignored, because silently
// dropping a `scripting:` block or a route's `lua:` would run something other than what was
// asked for.
struct Field {
  std::string_view key;
  Visit read;
  bool required = false;
};

// A Lua identifier: what a global function can be named.
bool isLuaName(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// The keys of a pool (readPool), for the hint about one that lost its indentation.
bool isPoolKey(std::string_view key) {
  static constexpr std::array<std::string_view, 10> kKeys{
      "backends", "policy", "sticky",         "health",     "connect_timeout",
      "retries",  "tls",    "proxy_protocol", "slow_start", "source_addresses"};
  return std::find(kKeys.begin(), kKeys.end(), key) != kKeys.end();
}

// Whether map `node` has the scalar key `key` (false for anything but a map).
bool hasKey(const YAML::Node& node, std::string_view key) {
  if (!node.IsMap()) return false;
  for (const auto& kv : node) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) return true;
  }
  return false;
}

bool isIpv4Literal(const std::string& host) {
  in_addr v4{};
  return ::inet_pton(AF_INET, host.c_str(), &v4) == 1;
}

// The first line (0-based) whose indentation holds a tab, if any.
std::optional<int> tabIndentedLine(std::string_view text) {
  int line = 0;
  bool indent = true;
  for (char c : text) {
    if (c == '\n') {
      ++line;
      indent = true;
    } else if (indent && c == '\t') {
      return line;
    } else if (c != ' ') {
      indent = false;
    }
  }
  return std::nullopt;
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string toLower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

// Case-insensitive Levenshtein distance, for "did you mean" hints.
std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + cost});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The closest candidate within edit distance 2, as ", did you mean 'X'?", or "".
std::string suggestion(std::string_view word, std::span<const std::string_view> candidates) {
  constexpr std::size_t kMaxDistance = 2;
  std::string_view best;
  std::size_t bestDistance = kMaxDistance + 1;
  for (std::string_view candidate : candidates) {
    // The distance is at least the length difference: skip the quadratic work when it must
    // lose anyway (a fuzzer's megabyte-long key against every pool name).
    const std::size_t gap = word.size() > candidate.size() ? word.size() - candidate.size()
                                                           : candidate.size() - word.size();
    if (gap > kMaxDistance) continue;
    const std::size_t d = editDistance(word, candidate);
    if (d < bestDistance && d < word.size()) {
      best = candidate;
      bestDistance = d;
    }
  }
  if (best.empty()) return "";
  return ", did you mean '" + std::string(best) + "'?";
}

// A value quoted for a message: shortened, with control characters escaped so a stray
// newline cannot break the one-line-per-error output.
std::string quote(std::string_view text) {
  constexpr std::size_t kMaxShown = 40;
  std::string out = "'";
  for (std::size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      constexpr std::string_view kHex = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > kMaxShown) out += "...";
  return out + "'";
}

// A path the user must find, in full (quote() shortens), unless it is beyond what a file
// system takes. Control characters are refused before a path is read.
std::string quotePath(std::string_view path) {
  constexpr std::size_t kMaxPath = 4096;  // PATH_MAX
  return path.size() <= kMaxPath ? "'" + std::string(path) + "'" : quote(path);
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return quote(node.Scalar());
    default:
      return "nothing";
  }
}

std::string formatSize(uint64_t bytes) {
  if (bytes != 0 && bytes % kGiB == 0) return std::to_string(bytes / kGiB) + "GiB";
  if (bytes != 0 && bytes % kMiB == 0) return std::to_string(bytes / kMiB) + "MiB";
  if (bytes != 0 && bytes % kKiB == 0) return std::to_string(bytes / kKiB) + "KiB";
  return std::to_string(bytes);
}

std::string formatDuration(Duration d) {
  const auto ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

// "1m30s" as one duration, when `s` is a run of two or more number+unit parts (which the
// config does not take): for the hint that names the same time in one unit.
std::optional<Duration> compoundDuration(std::string_view s) {
  Duration total{0};
  int parts = 0;
  while (!s.empty()) {
    std::size_t digits = 0;
    while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
    std::size_t end = digits;
    while (end < s.size() &&
           ((s[end] >= 'a' && s[end] <= 'z') || (s[end] >= 'A' && s[end] <= 'Z'))) {
      ++end;
    }
    const auto part = digits == 0 ? std::nullopt : parseDuration(s.substr(0, end));
    if (!part) return std::nullopt;
    total += *part;
    ++parts;
    s.remove_prefix(end);
  }
  if (parts < 2) return std::nullopt;
  return total;
}

bool hasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && u != '\t') || u == 0x7f;
  });
}

// RFC 9110 token characters, the only ones a header name may hold.
bool isTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Visible US-ASCII except `excluded`: what a request target or a cookie attribute may carry
// as written, without quoting or encoding.
bool isVisibleAscii(std::string_view s, std::string_view excluded) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f && excluded.find(c) == std::string_view::npos;
  });
}

// RFC 3986 unreserved characters: a query parameter name made of them reads the same raw and
// percent-decoded, so matching it cannot depend on which of the two the proxy compares.
bool isValidQueryName(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameLength) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
  });
}

// Names show up in logs ("b=app/c1"), metrics labels and admin URLs
// (/pools/NAME/backends/NAME/drain), so they stay within a URL- and label-safe set.
bool isValidName(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameLength) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

// Where an admin listener is reachable from this host only: 127.0.0.0/8, ::1 (also as
// ::ffff:127.x.y.z) and the name localhost. Any other name may resolve to anything.
bool isLoopbackHost(std::string_view host) {
  if (toLower(host) == "localhost") return true;
  const std::string text(host);
  in_addr v4{};
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (::inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  }
  return false;
}

// What a bearer token may hold so that it travels as written in `Authorization: Bearer X`:
// visible US-ASCII, no spaces.
bool isTokenText(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;
  });
}

std::string sha256Hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1) {
    return "";
  }
  constexpr std::string_view kHex = "0123456789abcdef";
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

// Sees the events of each document without building it, to find a second document.
class DocumentProbe final : public YAML::EventHandler {
public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    start_ = mark;
    events_ = 0;
    onlyNull_ = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override { onlyNull_ = events_++ == 0; }
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { ++events_; }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {
    ++events_;
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    ++events_;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    ++events_;
  }
  void OnMapEnd() override {}

  bool empty() const { return events_ == 0 || (events_ == 1 && onlyNull_); }
  const YAML::Mark& start() const { return start_; }

private:
  YAML::Mark start_;
  int events_ = 0;
  bool onlyNull_ = false;
};

// Where a second, non-empty document starts, if there is one. Not YAML::LoadAll: in
// yaml-cpp 0.7 it loops forever, allocating, on some malformed input such as a lone ','
// (yaml-cpp issue #1040, fixed upstream by PR #1319): the parser reports the same empty
// document again and again without consuming input. Stopping when a document starts where
// the previous one did ends that loop. Throws YAML::Exception on a syntax error.
std::optional<YAML::Mark> secondDocument(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentProbe probe;
  int documents = 0;
  int previousStart = -1;
  while (parser.HandleNextDocument(probe)) {
    if (probe.start().pos <= previousStart) break;
    previousStart = probe.start().pos;
    if (!probe.empty() && ++documents == 2) return probe.start();
  }
  return std::nullopt;
}

template <class T, class U>
void assign(T& target, const std::optional<U>& value) {
  if (value) target = static_cast<T>(*value);
}

class Loader {
public:
  explicit Loader(std::string file) : file_(std::move(file)) { config_.file = file_; }

  LoadResult load(std::string_view yaml);

  // An error about the file as a whole (unreadable, empty): no position.
  void fileError(std::string message) {
    errors_.push_back({Mark{file_, 0, 0}, std::move(message)});
  }
  // The file's bytes as read, for Config::sha256.
  void fingerprint(std::string_view bytes) { config_.sha256 = sha256Hex(bytes); }
  LoadResult finish();

private:
  Mark toMark(const YAML::Mark& m) const {
    if (m.line < 0) return Mark{file_, 0, 0};
    return Mark{file_, m.line + 1, m.column + 1};
  }

  void error(const YAML::Mark& at, std::string message) {
    if (errors_.size() >= kMaxErrors) {
      tooMany_ = true;
      return;
    }
    errors_.push_back({toMark(at), std::move(message)});
  }

  // Accepted, but said: `wsgate --check`, the start and every reload print it.
  void warning(const YAML::Mark& at, std::string message) {
    warnings_.push_back({toMark(at), std::move(message)});
  }

  // yaml-cpp marks an empty value ("key:" then a newline) at the next token, often on a
  // later line; the key is where a reader looks, so errors about nothing point there.
  static YAML::Mark where(const Entry& e) {
    return e.value.IsNull() ? e.key.Mark() : e.value.Mark();
  }

  void typeError(const Entry& e, std::string_view expected) {
    if (e.item) {
      error(where(e),
            "each " + e.name + " must be " + std::string(expected) + ", got " + describe(e.value));
    } else {
      error(where(e),
            "'" + e.name + "' must be " + std::string(expected) + ", got " + describe(e.value));
    }
  }

  // Visits each key of a map whose keys are data (pool names, header names), after checking
  // that each key is a string and appears once. A null value counts as an empty map, so a
  // section whose every line is commented out still loads. False when not a map.
  bool forEachKey(const Entry& e, const Visit& visit) {
    if (e.value.IsNull() && !e.item) return true;
    if (!e.value.IsMap()) {
      typeError(e, "a map");
      return false;
    }
    std::vector<std::pair<std::string, int>> seen;  // key, line
    for (const auto& kv : e.value) {
      if (tooMany_) return true;
      const YAML::Node& key = kv.first;
      if (!key.IsScalar()) {
        error(key.Mark(), "keys in '" + e.name + "' must be strings, got " + describe(key));
        continue;
      }
      const std::string& name = key.Scalar();
      auto first = std::find_if(seen.begin(), seen.end(), [&](auto& s) { return s.first == name; });
      if (first != seen.end()) {
        error(key.Mark(), "duplicate key " + quote(name) + " (first at line " +
                              std::to_string(first->second) + ")");
        continue;
      }
      seen.emplace_back(name, toMark(key.Mark()).line);
      visit(Entry{key, kv.second, name});
    }
    return true;
  }

  // Reads a section with a fixed set of keys: unknown keys are errors (with a hint when a
  // known key is close), not-yet-supported keys are refused, required keys must be present.
  bool walkMap(const Entry& e, const std::string& what, std::initializer_list<Field> fields) {
    std::vector<std::string_view> present;
    const bool isMap = forEachKey(e, [&](const Entry& child) {
      const Field* field = nullptr;
      for (const auto& f : fields) {
        if (f.key == child.name) field = &f;
      }
      if (field == nullptr) {
        std::vector<std::string_view> known;
        for (const auto& f : fields) known.push_back(f.key);
        error(child.key.Mark(),
              "unknown key " + quote(child.name) + " in " + what + suggestion(child.name, known));
        return;
      }
      present.push_back(field->key);
      if (!field->read) {
        error(child.key.Mark(),
              "'" + child.name + "' is not supported yet by this version of wsgate");
        return;
      }
      field->read(child);
    });
    if (!isMap) return false;
    for (const auto& f : fields) {
      if (f.required && std::find(present.begin(), present.end(), f.key) == present.end()) {
        error(where(e), what + " is missing '" + std::string(f.key) + "'");
      }
    }
    return true;
  }

  // Visits each item of a list, named `itemName` in messages. Null counts as an empty list.
  // Returns the number of items, or nullopt when the value is not a list.
  std::optional<std::size_t> forEachItem(const Entry& e, const std::string& itemName,
                                         const Visit& visit) {
    if (e.value.IsNull()) return 0;
    if (!e.value.IsSequence()) {
      typeError(e, "a list");
      return std::nullopt;
    }
    for (const auto& item : e.value) {
      if (tooMany_) break;
      visit(Entry{item, item, itemName, true});
    }
    return e.value.size();
  }

  std::optional<std::string> text(const Entry& e) {
    if (!e.value.IsScalar()) {
      typeError(e, "a string");
      return std::nullopt;
    }
    return e.value.Scalar();
  }

  // Only YAML 1.2's true/false: 1.1's yes/no/on/off read as strings to most tools today, so
  // accepting them would make the file mean different things to different readers.
  std::optional<bool> boolean(const Entry& e) {
    if (e.value.IsScalar()) {
      const std::string& s = e.value.Scalar();
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    typeError(e, "true or false");
    return std::nullopt;
  }

  std::optional<uint64_t> integer(const Entry& e, uint64_t min, uint64_t max) {
    const std::string range = std::to_string(min) + " and " + std::to_string(max);
    if (!e.value.IsScalar()) {
      typeError(e, "an integer between " + range);
      return std::nullopt;
    }
    const std::string& s = e.value.Scalar();
    std::string_view digits = s;
    if (digits.starts_with('-')) digits.remove_prefix(1);
    const bool numeric = !digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) {
      return c >= '0' && c <= '9';
    });
    if (!numeric) {
      typeError(e, "an integer between " + range);
      return std::nullopt;
    }
    uint64_t value = 0;
    bool overflow = false;
    for (char c : digits) {
      const auto digit = static_cast<uint64_t>(c - '0');
      if (value > (UINT64_MAX - digit) / 10) overflow = true;
      value = value * 10 + digit;
    }
    if (s.starts_with('-') || overflow || value < min || value > max) {
      // Digits read best bare ("got 0"); a runaway number is cut short like any value.
      error(where(e), "'" + e.name + "' must be between " + range + ", got " +
                          (s.size() <= 20 ? s : quote(s)));
      return std::nullopt;
    }
    return value;
  }

  std::optional<Duration> duration(const Entry& e, Duration min, Duration max) {
    if (!e.value.IsScalar()) {
      typeError(e, "a duration such as 500ms, 10s, 5m or 1h");
      return std::nullopt;
    }
    const std::string& s = e.value.Scalar();
    std::string_view why;
    auto d = parseDuration(s, why);
    if (!d) {
      if (auto whole = compoundDuration(s)) {
        error(where(e), "invalid duration " + quote(s) + " for '" + e.name +
                            "': one number and one unit, write " + quote(formatDuration(*whole)));
      } else {
        error(where(e),
              "invalid duration " + quote(s) + " for '" + e.name + "': " + std::string(why));
      }
      return std::nullopt;
    }
    if (*d < min || *d > max) {
      error(where(e), "'" + e.name + "' must be between " + formatDuration(min) + " and " +
                          formatDuration(max) + ", got " + quote(s));
      return std::nullopt;
    }
    return d;
  }

  std::optional<uint64_t> size(const Entry& e, uint64_t min, uint64_t max) {
    if (!e.value.IsScalar()) {
      typeError(e, "a size such as 16384, 16KiB or 16MiB");
      return std::nullopt;
    }
    const std::string& s = e.value.Scalar();
    std::string_view why;
    auto bytes = parseSize(s, why);
    if (!bytes) {
      error(where(e), "invalid size " + quote(s) + " for '" + e.name + "': " + std::string(why));
      return std::nullopt;
    }
    if (*bytes < min || *bytes > max) {
      error(where(e), "'" + e.name + "' must be between " + formatSize(min) + " and " +
                          formatSize(max) + ", got " + quote(s));
      return std::nullopt;
    }
    return bytes;
  }

  std::optional<HostPort> address(const Entry& e, bool allowZeroPort) {
    auto s = text(e);
    if (!s) return std::nullopt;
    std::string_view why;
    auto hp = parseHostPort(*s, allowZeroPort, why);
    if (!hp) {
      std::string message =
          "invalid address " + quote(*s) + " for '" + e.name + "': " + std::string(why);
      if (const auto scheme = s->find("://"); scheme != std::string::npos) {
        message += ": write " + quote(s->substr(scheme + 3));
      }
      error(where(e), message);
    }
    return hp;
  }

  // A certificate, key or CA file. Opened here so that a typo is reported at its line by
  // `wsgate --check`; what it holds (PEM, a key matching its certificate) is checked in
  // proxy/tls, which knows what each file must contain. A relative path is relative to the
  // working directory, as `log.access` is, not to the config file.
  std::optional<std::string> readablePath(const Entry& e,
                                          std::string_view what = "certificate file") {
    auto s = text(e);
    if (!s) return std::nullopt;
    if (s->empty() || hasControl(*s)) {
      error(where(e), "'" + e.name + "' must be a file path, got " + quote(*s));
      return std::nullopt;
    }
    // O_NONBLOCK: a FIFO given by mistake must not stall the loader waiting for a writer.
    const int fd = ::open(s->c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
      const int err = errno;
      error(where(e),
            "cannot read " + std::string(what) + " " + quote(*s) + ": " + std::strerror(err));
      return std::nullopt;
    }
    struct stat st {};
    const bool isDirectory = ::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    ::close(fd);
    if (isDirectory) {
      error(where(e), "cannot read " + std::string(what) + " " + quote(*s) + ": it is a directory");
      return std::nullopt;
    }
    return s;
  }

  // Only 1.2 and 1.3. YAML reads `1.2` unquoted as a float, but the scalar's text is what
  // was written, so `1.2` and "1.2" both arrive here as "1.2".
  std::optional<TlsVersion> tlsVersion(const Entry& e) {
    if (!e.value.IsScalar()) {
      typeError(e, "'1.2' or '1.3'");
      return std::nullopt;
    }
    const std::string& s = e.value.Scalar();
    if (s == "1.2") return TlsVersion::V1_2;
    if (s == "1.3") return TlsVersion::V1_3;
    std::string message = "'" + e.name + "' must be '1.2' or '1.3', got " + quote(s);
    if (s == "1" || s == "1.0" || s == "1.1") {
      // Deprecated by RFC 8996, and none of their cipher suites is ECDHE with an AEAD, the
      // only kind wsgate offers.
      message += ": TLS versions older than 1.2 are not supported";
    }
    error(where(e), message);
    return std::nullopt;
  }

  // Listener, pool and backend names.
  std::optional<std::string> name(const Entry& e, std::string_view what) {
    auto s = text(e);
    if (!s) return std::nullopt;
    if (!isValidName(*s)) {
      error(where(e), "invalid " + std::string(what) + " name " + quote(*s) +
                          ": use 1 to 64 letters, digits, '_', '-' or '.'");
      return std::nullopt;
    }
    return s;
  }

  void readTop(const YAML::Node& root);
  void readLog(const Entry& e);
  void readListener(const Entry& e);
  void readListenerTls(const Entry& e, ListenerConfig& listener);
  // Where a key was read, and whether its value had errors of its own (the checks that pair
  // it with another key then stay quiet: one message per mistake).
  struct KeyRead {
    std::optional<YAML::Mark> at;
    bool broken = false;
  };
  // proxy_protocol, and proxy_protocol_from (the peers trusted to send the header).
  void readProxyProtocol(const Entry& e, ListenerConfig& listener, KeyRead& key);
  void readTrusted(const Entry& e, ListenerConfig& listener, KeyRead& key);
  // proxy_protocol: true and proxy_protocol_from go together.
  void checkProxyProtocol(const ListenerConfig& listener, const KeyRead& proxy,
                          const KeyRead& from);
  void readCertificate(const Entry& e, ListenerTls& tls);
  void readRoute(const Entry& e);
  void readMatch(const Entry& e, RouteMatch& match);
  void readRouteHost(const Entry& e, RouteMatch& match);
  void readHeaders(const Entry& e, RouteMatch& match);
  void readRespond(const Entry& e, Respond& respond);
  void readPool(const Entry& e);
  void readSticky(const Entry& e, PoolConfig& pool);
  void readStickyCookie(const Entry& e, StickyCookie& cookie);
  void readHealth(const Entry& e, PoolConfig& pool);
  void readBackendTls(const Entry& e, PoolConfig& pool);
  void readSourceAddresses(const Entry& e, PoolConfig& pool);
  void readBackend(const Entry& e, PoolConfig& pool,
                   std::vector<std::pair<std::string, int>>& names);
  void readDiscover(const Entry& e, PoolConfig& pool);
  void readTimeouts(const Entry& e);
  void readLimits(const Entry& e);
  void readAdmin(const Entry& e);
  std::optional<std::string> adminToken(const Entry& e, std::string token, std::string_view what);
  std::optional<std::string> readTokenFile(const Entry& e);
  void readScripting(const Entry& e);
  void crossCheck(const YAML::Node& root);

  std::string file_;
  Config config_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
  bool tooMany_ = false;

  // Gathered while reading, checked once everything is read (pools may follow routes).
  struct PoolRef {
    std::string name;
    YAML::Mark mark;
  };
  std::vector<PoolRef> poolRefs_;
  std::vector<std::string> poolNames_;                      // every pool defined, valid or not
  std::vector<std::pair<std::string, int>> listenerNames_;  // name, line
  std::optional<YAML::Mark> listenersMark_;
  std::optional<YAML::Mark> routesMark_;
  std::size_t listenerItems_ = 0;
  std::size_t routeItems_ = 0;
  std::optional<YAML::Mark> drainMark_;
  std::optional<YAML::Mark> drainSpreadMark_;
  std::optional<YAML::Mark> pingIntervalMark_;
  std::optional<YAML::Mark> maxUriMark_;
  std::optional<YAML::Mark> adminListenMark_;
  std::optional<YAML::Mark> luaRoute_;  // the last route's `lua:` (needs `scripting:`)
};

LoadResult Loader::load(std::string_view yaml) {
  const std::string text(yaml);
  YAML::Node root;
  std::optional<YAML::Mark> second;
  try {
    root = YAML::Load(text);
    second = secondDocument(text);
  } catch (const YAML::Exception& e) {
    if (auto tab = tabIndentedLine(text)) {
      // yaml-cpp's words for it ("illegal block entry", "end of map not found") do not say.
      YAML::Mark at = e.mark;
      at.line = *tab;
      at.column = 0;
      error(at,
            "this line is indented with a tab: YAML indents with spaces only (the parser "
            "said: " +
                e.msg + ")");
    } else {
      error(e.mark, "YAML syntax error: " + e.msg);
    }
    return finish();
  }
  if (root.IsNull()) {
    fileError("the config is empty");
    return finish();
  }
  if (second) error(*second, "only one YAML document is allowed, this is a second one");
  if (!root.IsMap()) {
    error(root.Mark(), "the config must be a map of keys (listeners, routes, pools, ...), got " +
                           describe(root));
    return finish();
  }
  readTop(root);
  crossCheck(root);
  return finish();
}

LoadResult Loader::finish() {
  const auto inFileOrder = [](const auto& a, const auto& b) {
    return std::pair(a.mark.line, a.mark.column) < std::pair(b.mark.line, b.mark.column);
  };
  std::stable_sort(errors_.begin(), errors_.end(), inFileOrder);
  std::stable_sort(warnings_.begin(), warnings_.end(), inFileOrder);
  if (tooMany_) {
    errors_.push_back({Mark{file_, 0, 0}, "too many errors, only the first " +
                                              std::to_string(kMaxErrors) + " are shown"});
  }
  LoadResult result;
  if (errors_.empty()) result.config = std::move(config_);
  result.errors = std::move(errors_);
  result.warnings = std::move(warnings_);
  return result;
}

void Loader::readTop(const YAML::Node& root) {
  walkMap(
      Entry{root, root, "config"}, "config",
      {
          {"workers",
           [&](const Entry& e) {
             if (e.value.IsScalar() && e.value.Scalar() == "auto") {
               config_.workers = 0;
               return;
             }
             const std::string s = e.value.IsScalar() ? e.value.Scalar() : "";
             const bool digits =
                 !s.empty() && s.size() <= 3 &&
                 std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
             const unsigned long n = digits ? std::stoul(s) : 0;
             if (n >= 1 && n <= kMaxWorkers) {
               config_.workers = static_cast<int>(n);
               return;
             }
             typeError(e, "'auto' or an integer between 1 and " + std::to_string(kMaxWorkers));
           }},
          {"watch",
           [&](const Entry& e) {
             if (auto v = boolean(e)) config_.watch = *v;
           }},
          {"log", [&](const Entry& e) { readLog(e); }},
          {"listeners",
           [&](const Entry& e) {
             listenersMark_ = where(e);
             auto n = forEachItem(e, "listener", [&](const Entry& l) { readListener(l); });
             listenerItems_ = n.value_or(1);  // a type error is reported already
           }},
          {"routes",
           [&](const Entry& e) {
             routesMark_ = where(e);
             auto n = forEachItem(e, "route", [&](const Entry& r) { readRoute(r); });
             routeItems_ = n.value_or(1);
           }},
          {"pools",
           [&](const Entry& e) {
             std::string previous;
             forEachKey(e, [&](const Entry& p) {
               if (!previous.empty() && isPoolKey(p.name)) {
                 // A pool's key that lost its indentation reads as a pool of that name.
                 error(p.key.Mark(), "'" + p.name +
                                         "' is at the level of the pool names, so it "
                                         "reads as a pool named '" +
                                         p.name +
                                         "': indent it under "
                                         "pool '" +
                                         previous + "'");
                 return;
               }
               readPool(p);
               previous = p.name;
             });
           }},
          {"timeouts", [&](const Entry& e) { readTimeouts(e); }},
          {"limits", [&](const Entry& e) { readLimits(e); }},
          {"websocket",
           [&](const Entry& e) {
             walkMap(
                 e, "websocket",
                 {
                     {"validate_utf8",
                      [&](const Entry& v) { assign(config_.websocket.validateUtf8, boolean(v)); }},
                 });
           }},
          {"admin", [&](const Entry& e) { readAdmin(e); }},
          {"scripting", [&](const Entry& e) { readScripting(e); }},
      });
}

void Loader::readLog(const Entry& e) {
  auto& log = config_.log;
  walkMap(e, "log",
          {
              {"level",
               [&](const Entry& v) {
                 static constexpr std::array<std::pair<std::string_view, LogLevel>, 6> kLevels{{
                     {"trace", LogLevel::Trace},
                     {"debug", LogLevel::Debug},
                     {"info", LogLevel::Info},
                     {"warn", LogLevel::Warn},
                     {"error", LogLevel::Error},
                     {"off", LogLevel::Off},
                 }};
                 auto s = text(v);
                 if (!s) return;
                 for (const auto& [n, level] : kLevels) {
                   if (n == *s) {
                     log.level = level;
                     return;
                   }
                 }
                 error(where(v), "unknown log level " + quote(*s) +
                                     ", expected trace, debug, info, warn, error or off");
               }},
              {"access",
               [&](const Entry& v) {
                 auto s = text(v);
                 if (!s) return;
                 if (s->empty() || hasControl(*s)) {
                   error(where(v),
                         "'access' must be stdout, stderr, off or a file path, got " + quote(*s));
                   return;
                 }
                 log.access = *s;
               }},
              {"format",
               [&](const Entry& v) {
                 auto s = text(v);
                 if (!s) return;
                 if (*s == "json") {
                   log.format = LogFormat::Json;
                 } else if (*s == "text") {
                   log.format = LogFormat::Text;
                 } else {
                   error(where(v), "unknown log format " + quote(*s) + ", expected json or text");
                 }
               }},
          });
}

void Loader::readListener(const Entry& e) {
  ListenerConfig listener;
  std::optional<std::string> name;
  std::optional<HostPort> listen;
  YAML::Mark nameMark;
  YAML::Mark listenMark;
  KeyRead proxyKey, fromKey;
  const bool isMap = walkMap(
      e, "listener",
      {
          {"name",
           [&](const Entry& v) {
             name = this->name(v, "listener");
             nameMark = where(v);
           },
           true},
          {"listen",
           [&](const Entry& v) {
             listen = address(v, /*allowZeroPort=*/true);  // port 0: ephemeral, for tests
             listenMark = where(v);
             listener.mark = toMark(listenMark);
           },
           true},
          {"tls", [&](const Entry& v) { readListenerTls(v, listener); }},
          {"proxy_protocol", [&](const Entry& v) { readProxyProtocol(v, listener, proxyKey); }},
          {"proxy_protocol_from", [&](const Entry& v) { readTrusted(v, listener, fromKey); }},
      });
  if (!isMap) return;
  checkProxyProtocol(listener, proxyKey, fromKey);
  if (name) {
    auto first = std::find_if(listenerNames_.begin(), listenerNames_.end(),
                              [&](const auto& n) { return n.first == *name; });
    if (first != listenerNames_.end()) {
      error(nameMark, "duplicate listener name " + quote(*name) + " (first at line " +
                          std::to_string(first->second) + ")");
    } else {
      listenerNames_.emplace_back(*name, toMark(nameMark).line);
    }
  }
  if (!name || !listen) return;
  // Port 0 asks the kernel for a fresh port each time, so two of them never collide.
  if (listen->port != 0) {
    for (const auto& other : config_.listeners) {
      if (other.listen.port == listen->port &&
          toLower(other.listen.host) == toLower(listen->host)) {
        error(listenMark, "duplicate listen address " + listen->str() +
                              " (also used by listener '" + other.name + "' at line " +
                              std::to_string(other.mark.line) + ")");
        break;
      }
    }
  }
  listener.name = std::move(*name);
  listener.listen = std::move(*listen);
  config_.listeners.push_back(std::move(listener));
}

void Loader::readProxyProtocol(const Entry& e, ListenerConfig& listener, KeyRead& key) {
  const auto on = boolean(e);
  assign(listener.proxyProtocol, on);
  key = {e.key.Mark(), !on.has_value()};
}

void Loader::readTrusted(const Entry& e, ListenerConfig& listener, KeyRead& key) {
  const std::size_t errorsBefore = errors_.size();
  forEachItem(e, "address block", [&](const Entry& item) {
    auto s = text(item);
    if (!s) return;
    std::string why;
    if (auto block = parseCidr(*s, why)) {
      listener.proxyProtocolFrom.push_back(*block);
    } else {
      error(where(item), quote(*s) + " " + why + ": expected an address or ADDRESS/BITS");
    }
  });
  key = {e.key.Mark(), errors_.size() != errorsBefore};
}

void Loader::checkProxyProtocol(const ListenerConfig& listener, const KeyRead& proxy,
                                const KeyRead& from) {
  if (proxy.broken || from.broken) return;
  // Trusting every peer would let any client claim any address: the list is required, and
  // a list that would go unused is refused, as a cookie's max_age without insert is.
  if (listener.proxyProtocol && !from.at) {
    error(*proxy.at,
          "'proxy_protocol: true' needs 'proxy_protocol_from', the addresses of the balancers "
          "trusted to send the header");
  } else if (listener.proxyProtocol && listener.proxyProtocolFrom.empty()) {
    error(*from.at, "'proxy_protocol_from' is empty: list the balancers' addresses");
  } else if (!listener.proxyProtocol && from.at) {
    error(*from.at, "'proxy_protocol_from' is unused without 'proxy_protocol: true'");
  }
}

void Loader::readListenerTls(const Entry& e, ListenerConfig& listener) {
  ListenerTls tls;
  tls.mark = toMark(e.key.Mark());
  std::optional<ClientCertMode> clientCert;
  std::optional<YAML::Mark> clientCertMark;
  std::optional<YAML::Mark> clientCaMark;  // set even when the file cannot be read
  walkMap(
      e, "tls",
      {
          {"certificates",
           [&](const Entry& v) {
             auto n =
                 forEachItem(v, "certificate", [&](const Entry& c) { readCertificate(c, tls); });
             if (n == 0u) {
               error(where(v),
                     "'certificates' is empty: a TLS listener needs at least one "
                     "cert and key");
             }
           },
           true},
          {"min_version", [&](const Entry& v) { assign(tls.minVersion, tlsVersion(v)); }},
          {"alpn",
           [&](const Entry& v) {
             // HTTP/1.1 is the only protocol wsgate speaks to clients; offering another
             // would let a client pick something the session cannot parse.
             auto n = forEachItem(v, "alpn protocol", [&](const Entry& p) {
               auto s = text(p);
               if (s && *s != "http/1.1") {
                 error(where(p), quote(*s) + " is not supported; alpn may only list http/1.1");
               }
             });
             if (n == 0u) {
               error(where(v), "'alpn' is empty: write [http/1.1], or leave it out for the same");
             }
           }},
          {"client_ca",
           [&](const Entry& v) {
             clientCaMark = v.key.Mark();
             assign(tls.clientCa, readablePath(v));
           }},
          {"client_cert",
           [&](const Entry& v) {
             static constexpr std::array<std::string_view, 3> kNames{"optional", "required", "off"};
             static constexpr std::array<ClientCertMode, 3> kModes{
                 ClientCertMode::Optional, ClientCertMode::Required, ClientCertMode::Off};
             auto s = text(v);
             if (!s) return;
             for (std::size_t i = 0; i < kNames.size(); ++i) {
               if (kNames[i] == *s) {
                 clientCert = kModes[i];
                 clientCertMark = where(v);
                 return;
               }
             }
             error(where(v), "unknown client_cert mode " + quote(*s) + suggestion(*s, kNames) +
                                 " (optional, required or off)");
           }},
          {"ktls", [&](const Entry& v) { assign(tls.ktls, boolean(v)); }},
      });
  if (clientCert && *clientCert != ClientCertMode::Off && !clientCaMark) {
    error(*clientCertMark,
          "'client_cert: " +
              std::string(*clientCert == ClientCertMode::Required ? "required" : "optional") +
              "' needs 'client_ca', the CAs client certificates are verified against");
  } else if (clientCert == ClientCertMode::Off && clientCaMark) {
    // As for a cookie's max_age with insert: false, a value that would go unused is refused.
    error(*clientCaMark, "'client_ca' is unused with 'client_cert: off': remove one of them");
  }
  tls.clientCert =
      clientCert.value_or(clientCaMark ? ClientCertMode::Optional : ClientCertMode::Off);
  listener.tls = std::move(tls);
}

void Loader::readCertificate(const Entry& e, ListenerTls& tls) {
  CertificateConfig certificate;
  certificate.mark = toMark(where(e));
  const bool isMap = walkMap(
      e, "certificate",
      {
          {"cert", [&](const Entry& v) { assign(certificate.cert, readablePath(v)); }, true},
          {"key", [&](const Entry& v) { assign(certificate.key, readablePath(v)); }, true},
      });
  if (isMap) tls.certificates.push_back(std::move(certificate));
}

void Loader::readRoute(const Entry& e) {
  RouteConfig route;
  route.mark = toMark(where(e));
  bool hasPool = false;
  bool hasRespond = false;
  const bool isMap = walkMap(e, "route",
                             {
                                 {"match", [&](const Entry& v) { readMatch(v, route.match); }},
                                 {"pool",
                                  [&](const Entry& v) {
                                    hasPool = true;
                                    if (auto s = text(v)) {
                                      route.pool = *s;
                                      poolRefs_.push_back({*s, where(v)});
                                    }
                                  }},
                                 {"respond",
                                  [&](const Entry& v) {
                                    hasRespond = true;
                                    readRespond(v, route.respond.emplace());
                                  }},
                                 {"lua",
                                  [&](const Entry& v) {
                                    auto s = text(v);
                                    if (!s) return;
                                    if (!isLuaName(*s)) {
                                      error(where(v),
                                            "'lua' must name a Lua function "
                                            "(letters, digits, '_'), got " +
                                                quote(*s));
                                      return;
                                    }
                                    route.lua = *s;
                                    route.luaMark = toMark(where(v));
                                    luaRoute_ = where(v);
                                  }},
                             });
  if (!isMap) return;
  if (hasRespond && !route.lua.empty()) {
    error(where(e),
          "route has both 'respond' and 'lua': a Lua hook needs a route with 'pool' "
          "(it can answer locally itself, with 'status')");
  }
  if (hasPool && hasRespond) {
    error(where(e), "route has both 'pool' and 'respond': it either forwards or answers, not both");
  } else if (!hasPool && !hasRespond) {
    error(where(e), "route needs 'pool' (forward to a pool) or 'respond' (answer directly)");
  }
  config_.routes.push_back(std::move(route));
}

void Loader::readMatch(const Entry& e, RouteMatch& match) {
  walkMap(e, "match",
          {
              {"host", [&](const Entry& v) { readRouteHost(v, match); }},
              {"path_prefix",
               [&](const Entry& v) {
                 auto s = text(v);
                 if (!s) return;
                 if (!s->starts_with('/')) {
                   error(where(v), "'path_prefix' must start with '/', got " + quote(*s));
                 } else if (s->find_first_of("?#") != std::string::npos) {
                   error(where(v),
                         "'path_prefix' cannot contain '?' or '#': only the path is "
                         "matched, not the query, got " +
                             quote(*s));
                 } else if (hasControl(*s) || s->find_first_of(" \t") != std::string::npos) {
                   error(where(v),
                         "'path_prefix' cannot contain spaces or control characters, "
                         "got " +
                             quote(*s));
                 } else {
                   match.pathPrefix = *s;
                 }
               }},
              {"header", [&](const Entry& v) { readHeaders(v, match); }},
          });
}

void Loader::readRouteHost(const Entry& e, RouteMatch& match) {
  auto s = text(e);
  if (!s) return;
  std::string_view host = *s;
  if (host.find('*') != std::string_view::npos) {
    error(where(e),
          "wildcard hosts are not supported: give each host its own route, got " + quote(*s));
    return;
  }
  bool valid = false;
  if (host.starts_with('[')) {
    // Kept with its brackets: that is how the Host header carries an IPv6 literal.
    valid = host.ends_with(']') && host.size() > 2 && host.find(':') != std::string_view::npos &&
            isValidHost(host.substr(1, host.size() - 2));
  } else if (isValidHost(host) && host.find(':') != std::string_view::npos) {
    error(where(e), "an IPv6 host needs brackets, as in the Host header: write '[" +
                        std::string(host) + "]'");
    return;
  } else if (host.find(':') != std::string_view::npos) {
    const auto colon = host.rfind(':');
    if (isValidHost(host.substr(0, colon)) && host.find(':') == colon) {
      error(where(e), "'host' is matched without the port: write " + quote(host.substr(0, colon)) +
                          ", got " + quote(*s));
      return;
    }
  } else {
    valid = isValidHost(host);
  }
  if (!valid) {
    error(where(e), "invalid host " + quote(*s) + ": expected a DNS name or an IP address");
    return;
  }
  match.host = toLower(host);
}

void Loader::readHeaders(const Entry& e, RouteMatch& match) {
  std::vector<std::pair<std::string, int>> seen;  // lower-cased name, line
  forEachKey(e, [&](const Entry& h) {
    const std::string& name = h.name;
    if (name.empty() || !std::all_of(name.begin(), name.end(), isTokenChar)) {
      error(h.key.Mark(), "invalid header name " + quote(name) +
                              ": use letters, digits and !#$%&'*+-.^_`|~ only");
      return;
    }
    std::string lowered = toLower(name);
    auto first =
        std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == lowered; });
    if (first != seen.end()) {
      error(h.key.Mark(), "header " + quote(name) + " is matched twice (first at line " +
                              std::to_string(first->second) +
                              "): header names are case-insensitive");
      return;
    }
    seen.emplace_back(lowered, toMark(h.key.Mark()).line);
    auto value = text(h);
    if (!value) return;
    if (hasControl(*value)) {
      error(where(h), "the value of header " + quote(name) +
                          " cannot contain control characters, got " + quote(*value));
      return;
    }
    match.headers.push_back({std::move(lowered), std::move(*value)});
  });
}

void Loader::readRespond(const Entry& e, Respond& respond) {
  std::optional<YAML::Mark> bodyMark;
  walkMap(e, "respond",
          {
              {"status",
               [&](const Entry& v) {
                 // 1xx are interim answers: sent as the only response they leave the client
                 // waiting for a final one.
                 assign(respond.status, integer(v, 200, 599));
               }},
              {"body",
               [&](const Entry& v) {
                 auto s = text(v);
                 if (!s) return;
                 if (s->size() > kMaxRespondBody) {
                   error(where(v), "'body' is larger than " + formatSize(kMaxRespondBody) +
                                       "; serve large content from a backend");
                   return;
                 }
                 respond.body = *s;
                 bodyMark = where(v);
               }},
          });
  if (bodyMark && !respond.body.empty() && (respond.status == 204 || respond.status == 304)) {
    error(*bodyMark, "a " + std::to_string(respond.status) + " response cannot have a body");
  }
}

void Loader::readPool(const Entry& e) {
  PoolConfig pool;
  pool.mark = toMark(e.key.Mark());
  poolNames_.push_back(e.name);
  if (!isValidName(e.name)) {
    error(e.key.Mark(),
          "invalid pool name " + quote(e.name) + ": use 1 to 64 letters, digits, '_', '-' or '.'");
  }
  pool.name = e.name;
  std::vector<std::pair<std::string, int>> backendNames;
  std::optional<YAML::Mark> policyMark;
  bool hasSticky = false;
  walkMap(
      e, "pool " + quote(e.name),
      {
          {"policy",
           [&](const Entry& v) {
             static constexpr std::array<std::string_view, 4> kNames{"round_robin", "least_conn",
                                                                     "random_two", "hash"};
             static constexpr std::array<Policy, 4> kPolicies{Policy::RoundRobin, Policy::LeastConn,
                                                              Policy::RandomTwo, Policy::Hash};
             auto s = text(v);
             if (!s) return;
             for (std::size_t i = 0; i < kNames.size(); ++i) {
               if (kNames[i] == *s) {
                 pool.policy = kPolicies[i];
                 policyMark = where(v);
                 return;
               }
             }
             error(where(v), "unknown policy " + quote(*s) + suggestion(*s, kNames) +
                                 " (round_robin, least_conn, random_two or hash)");
           }},
          {"backends",
           [&](const Entry& v) {
             auto n = forEachItem(v, "backend",
                                  [&](const Entry& b) { readBackend(b, pool, backendNames); });
             if (n == 0u) {
               error(where(v), "pool " + quote(e.name) + " has no backends");
             }
           },
           true},
          {"connect_timeout",
           [&](const Entry& v) { assign(pool.connectTimeout, duration(v, 1ms, kMaxDuration)); }},
          {"retries", [&](const Entry& v) { assign(pool.retries, integer(v, 0, kMaxRetries)); }},
          {"sticky",
           [&](const Entry& v) {
             hasSticky = true;
             readSticky(v, pool);
           }},
          {"health", [&](const Entry& v) { readHealth(v, pool); }},
          {"proxy_protocol", [&](const Entry& v) { assign(pool.proxyProtocol, boolean(v)); }},
          {"slow_start",
           [&](const Entry& v) { assign(pool.slowStart, duration(v, 0ms, kMaxSlowStart)); }},
          {"tls", [&](const Entry& v) { readBackendTls(v, pool); }},
          {"source_addresses", [&](const Entry& v) { readSourceAddresses(v, pool); }},
      });
  // Hash picks by the sticky key, so it needs one that every request carries. A sticky block
  // with errors of its own is reported already; adding this would be noise.
  if (policyMark && pool.policy == Policy::Hash) {
    const std::string needs = "policy 'hash' needs sticky.header, sticky.query or sticky.source_ip";
    if (!hasSticky) {
      error(*policyMark, needs);
    } else if (pool.sticky && pool.sticky->source == StickySource::Cookie) {
      error(*policyMark, needs + ", not sticky.cookie");
    }
  }
  config_.pools.push_back(std::move(pool));
}

void Loader::readSticky(const Entry& e, PoolConfig& pool) {
  constexpr std::string_view kSources = "cookie, header, query or source_ip";
  StickyConfig sticky;
  sticky.mark = toMark(e.key.Mark());
  std::optional<std::string> chosen;  // the first source key, for "has both" messages
  // True when `v` is the first source given; each later one is an error of its own.
  auto choose = [&](const Entry& v, StickySource source) {
    if (chosen) {
      error(v.key.Mark(), "sticky has both '" + *chosen + "' and '" + v.name +
                              "': use exactly one of " + std::string(kSources));
      return false;
    }
    chosen = v.name;
    sticky.source = source;
    return true;
  };
  const std::size_t errorsBefore = errors_.size();
  // A null block is refused, not read as the empty map it is elsewhere: there is no default
  // source, and "no stickiness" is written by leaving the key out.
  if (!e.value.IsNull()) {
    walkMap(e, "sticky",
            {
                {"cookie",
                 [&](const Entry& v) {
                   if (choose(v, StickySource::Cookie)) readStickyCookie(v, sticky.cookie);
                 }},
                {"header",
                 [&](const Entry& v) {
                   if (!choose(v, StickySource::Header)) return;
                   auto s = text(v);
                   if (!s) return;
                   if (s->empty() || !std::all_of(s->begin(), s->end(), isTokenChar)) {
                     error(where(v), "invalid header name " + quote(*s) +
                                         ": use letters, digits and !#$%&'*+-.^_`|~ only");
                     return;
                   }
                   sticky.header = toLower(*s);
                 }},
                {"query",
                 [&](const Entry& v) {
                   if (!choose(v, StickySource::Query)) return;
                   auto s = text(v);
                   if (!s) return;
                   if (!isValidQueryName(*s)) {
                     error(where(v), "invalid query parameter name " + quote(*s) +
                                         ": use 1 to 64 letters, digits, '-', '.', '_' or '~'");
                     return;
                   }
                   sticky.query = *s;
                 }},
                {"source_ip",
                 [&](const Entry& v) {
                   auto on = boolean(v);
                   if (!on) return;
                   if (!*on) {
                     error(v.key.Mark(),
                           "'source_ip' can only be true: remove it to key on "
                           "something else, or remove 'sticky' for no stickiness");
                     return;
                   }
                   choose(v, StickySource::SourceIp);
                 }},
            });
  }
  if (tooMany_ || errors_.size() != errorsBefore) return;
  if (!chosen) {
    error(where(e),
          "'sticky' needs one of " + std::string(kSources) + " (remove it for no stickiness)");
    return;
  }
  pool.sticky = std::move(sticky);
}

void Loader::readStickyCookie(const Entry& e, StickyCookie& cookie) {
  // Keys that mean something only when wsgate writes the Set-Cookie: name, where.
  std::vector<std::pair<std::string, YAML::Mark>> insertOnly;
  walkMap(e, "cookie",
          {
              {"name",
               [&](const Entry& v) {
                 auto s = text(v);
                 if (!s) return;
                 if (s->empty() || !std::all_of(s->begin(), s->end(), isTokenChar)) {
                   error(where(v), "invalid cookie name " + quote(*s) +
                                       ": use letters, digits and !#$%&'*+-.^_`|~ only");
                   return;
                 }
                 cookie.name = *s;
               }},
              {"insert", [&](const Entry& v) { assign(cookie.insert, boolean(v)); }},
              {"max_age",
               [&](const Entry& v) {
                 insertOnly.emplace_back(v.name, v.key.Mark());
                 assign(cookie.maxAge, duration(v, 0ms, kMaxDuration));
               }},
              {"path",
               [&](const Entry& v) {
                 insertOnly.emplace_back(v.name, v.key.Mark());
                 auto s = text(v);
                 if (!s) return;
                 if (!s->starts_with('/')) {
                   error(where(v), "'path' must start with '/', got " + quote(*s));
                 } else if (!isVisibleAscii(*s, ";")) {
                   error(where(v),
                         "'path' cannot contain ';', spaces, control or non-ASCII characters, "
                         "got " +
                             quote(*s));
                 } else {
                   cookie.path = *s;
                 }
               }},
              {"indirect",
               [&](const Entry& v) {
                 insertOnly.emplace_back(v.name, v.key.Mark());
                 assign(cookie.indirect, boolean(v));
               }},
          });
  if (cookie.insert) return;
  // With insert: false the application writes the cookie, attributes included; values here
  // would be silently unused (and `indirect` would hide the application's own cookie from it).
  for (const auto& [key, mark] : insertOnly) {
    error(mark, "'" + key + "' only applies when wsgate sets the cookie (insert: true)");
  }
}

void Loader::readHealth(const Entry& e, PoolConfig& pool) {
  // A null block is refused: "all defaults" would turn checks on, "as if absent" would leave
  // them off, and a reader of the file cannot tell which was meant.
  if (e.value.IsNull()) {
    error(e.key.Mark(),
          "'health' is empty: write 'health: {}' for checks with the defaults, or remove it to "
          "turn them off");
    return;
  }
  HealthConfig health;
  health.mark = toMark(e.key.Mark());
  std::optional<YAML::Mark> intervalMark;
  std::optional<YAML::Mark> timeoutMark;
  const std::size_t errorsBefore = errors_.size();
  walkMap(
      e, "health",
      {
          {"path",
           [&](const Entry& v) {
             auto s = text(v);
             if (!s) return;
             if (!s->starts_with('/')) {
               error(where(v), "'path' must start with '/', got " + quote(*s));
             } else if (!isVisibleAscii(*s, "#")) {
               error(where(v),
                     "'path' cannot contain '#', spaces, control or non-ASCII characters, "
                     "got " +
                         quote(*s));
             } else {
               health.path = *s;
             }
           }},
          {"websocket", [&](const Entry& v) { assign(health.websocket, boolean(v)); }},
          {"interval",
           [&](const Entry& v) {
             intervalMark = where(v);
             assign(health.interval, duration(v, kMinHealthInterval, kMaxDuration));
           }},
          {"timeout",
           [&](const Entry& v) {
             timeoutMark = where(v);
             assign(health.timeout, duration(v, 1ms, kMaxDuration));
           }},
          {"rise", [&](const Entry& v) { assign(health.rise, integer(v, 1, kMaxHealthCount)); }},
          {"fall", [&](const Entry& v) { assign(health.fall, integer(v, 1, kMaxHealthCount)); }},
      });
  if (tooMany_ || errors_.size() != errorsBefore) return;
  if (health.timeout >= health.interval) {
    // One probe at a time per backend: a probe still running when the next is due would
    // either overlap it or silently stretch the interval.
    error(timeoutMark.value_or(intervalMark.value_or(e.key.Mark())),
          "'timeout' (" + formatDuration(health.timeout) + ") must be shorter than 'interval' (" +
              formatDuration(health.interval) + ")");
    return;
  }
  pool.health = std::move(health);
}

// `source_addresses: [IP, ...]`: IP literals only (a name could resolve to an address this
// host does not have), each once, no port (the kernel picks one per connection).
void Loader::readSourceAddresses(const Entry& e, PoolConfig& pool) {
  const auto n = forEachItem(e, "source address", [&](const Entry& item) {
    const auto s = text(item);
    if (!s) return;
    in_addr v4{};
    in6_addr v6{};
    if (::inet_pton(AF_INET, s->c_str(), &v4) != 1 && ::inet_pton(AF_INET6, s->c_str(), &v6) != 1) {
      const bool hasPort = s->find(':') != std::string::npos && s->find('.') != std::string::npos;
      error(where(item), quote(*s) + " is not an IP address" +
                             (hasPort ? " (no port: the kernel picks one per connection)"
                                      : " (write an IPv4 or IPv6 literal of this host)"));
      return;
    }
    if (std::find(pool.sourceAddresses.begin(), pool.sourceAddresses.end(), *s) !=
        pool.sourceAddresses.end()) {
      error(where(item), quote(*s) + " is listed twice in source_addresses");
      return;
    }
    pool.sourceAddresses.push_back(*s);
    pool.sourceAddressMarks.push_back(toMark(where(item)));
  });
  if (n == 0u) {
    error(where(e), "'source_addresses' is empty: list this host's addresses, or leave it out");
  }
}

void Loader::readBackendTls(const Entry& e, PoolConfig& pool) {
  // A null block is refused as for `health`: "TLS with the defaults" and "as if absent" (plain
  // TCP) are both plausible readings, and they differ.
  if (e.value.IsNull()) {
    error(e.key.Mark(),
          "'tls' is empty: write 'tls: {}' for TLS with the defaults, or remove it for plain "
          "TCP");
    return;
  }
  BackendTls tls;
  tls.mark = toMark(e.key.Mark());
  std::optional<YAML::Mark> caMark;
  std::optional<YAML::Mark> certMark;
  std::optional<YAML::Mark> keyMark;
  walkMap(e, "tls",
          {
              {"verify", [&](const Entry& v) { assign(tls.verify, boolean(v)); }},
              {"ca",
               [&](const Entry& v) {
                 caMark = v.key.Mark();
                 assign(tls.ca, readablePath(v));
               }},
              {"sni",
               [&](const Entry& v) {
                 auto s = text(v);
                 if (!s) return;
                 // RFC 6066 3: SNI carries a DNS name only, never an address literal.
                 const bool ipLiteral =
                     s->find(':') != std::string::npos ||
                     (!s->empty() && std::all_of(s->begin(), s->end(), [](char c) {
                       return (c >= '0' && c <= '9') || c == '.';
                     }));
                 if (ipLiteral && isValidHost(*s)) {
                   error(where(v), "'sni' must be a DNS name, got the IP address " + quote(*s) +
                                       ": leave it out to verify the backend's address");
                   return;
                 }
                 if (s->find('*') != std::string::npos || !isValidHost(*s)) {
                   error(where(v), "invalid 'sni' " + quote(*s) + ": expected a DNS name");
                   return;
                 }
                 tls.sni = toLower(*s);
               }},
              {"cert",
               [&](const Entry& v) {
                 certMark = v.key.Mark();
                 assign(tls.cert, readablePath(v));
               }},
              {"key",
               [&](const Entry& v) {
                 keyMark = v.key.Mark();
                 assign(tls.key, readablePath(v));
               }},
              {"min_version", [&](const Entry& v) { assign(tls.minVersion, tlsVersion(v)); }},
          });
  if (certMark && !keyMark) {
    error(*certMark, "'cert' needs 'key', the client certificate's private key");
  } else if (keyMark && !certMark) {
    error(*keyMark, "'key' needs 'cert', the client certificate it belongs to");
  }
  if (caMark && !tls.verify) {
    error(*caMark, "'ca' is unused with 'verify: false': remove one of them");
  }
  pool.tls = std::move(tls);
}

void Loader::readBackend(const Entry& e, PoolConfig& pool,
                         std::vector<std::pair<std::string, int>>& names) {
  if (hasKey(e.value, "discover")) {
    // `{ discover: {...} }` stands for the backends DNS names: nothing may sit beside it.
    walkMap(e, "backend with 'discover'",
            {{"discover", [&](const Entry& v) { readDiscover(v, pool); }, true}});
    return;
  }
  BackendConfig backend;
  std::optional<std::string> name;
  YAML::Mark nameMark;
  const bool isMap = walkMap(
      e, "backend",
      {
          {"name",
           [&](const Entry& v) {
             name = this->name(v, "backend");
             nameMark = where(v);
           },
           true},
          {"address",
           [&](const Entry& v) {
             assign(backend.address, address(v, /*allowZeroPort=*/false));
             backend.mark = toMark(where(v));
           },
           true},
          {"weight", [&](const Entry& v) { assign(backend.weight, integer(v, 1, kMaxWeight)); }},
          {"max_connections",
           [&](const Entry& v) { assign(backend.maxConnections, integer(v, 0, kMaxConnections)); }},
      });
  if (!isMap) return;
  if (name) {
    auto first =
        std::find_if(names.begin(), names.end(), [&](const auto& n) { return n.first == *name; });
    if (first != names.end()) {
      error(nameMark, "duplicate backend name " + quote(*name) + " in pool " + quote(pool.name) +
                          " (first at line " + std::to_string(first->second) + ")");
    } else {
      names.emplace_back(*name, toMark(nameMark).line);
    }
    backend.name = std::move(*name);
  }
  pool.backends.push_back(std::move(backend));
}

// A DNS name to find backends by (docs/configuration.md, Backends from DNS): A/AAAA records
// on `port`, or SRV records (target and port from each) when `port` is left out.
void Loader::readDiscover(const Entry& e, PoolConfig& pool) {
  DiscoverConfig d;
  d.mark = toMark(e.key.Mark());
  std::optional<YAML::Mark> dnsMark, portMark;
  const bool isMap = walkMap(
      e, "discover",
      {
          {"dns",
           [&](const Entry& v) {
             auto s = text(v);
             if (!s) return;
             dnsMark = where(v);
             std::string name = toLower(*s);
             if (name.size() > 1 && name.ends_with('.')) name.pop_back();  // absolute anyway
             if (name.find(':') != std::string::npos || isIpv4Literal(name)) {
               error(where(v), "'dns' is an IP address (" + quote(*s) +
                                   "): write a backend with 'name' and 'address' instead");
             } else if (!isValidHost(name)) {
               error(where(v), "invalid 'dns' " + quote(*s) +
                                   ": expected a DNS name such as chat.default.svc.cluster.local");
             } else {
               d.dns = std::move(name);
             }
           },
           true},
          {"port",
           [&](const Entry& v) {
             portMark = where(v);
             assign(d.port, integer(v, 1, 65535));
           }},
          {"interval",
           [&](const Entry& v) {
             assign(d.interval, duration(v, kMinDiscoverInterval, kMaxDiscoverInterval));
           }},
          {"timeout", [&](const Entry& v) { assign(d.timeout, duration(v, 1s, 30s)); }},
          {"hold_empty", [&](const Entry& v) { assign(d.holdEmpty, duration(v, 0ms, 24h)); }},
          {"family",
           [&](const Entry& v) {
             static constexpr std::array<std::string_view, 3> kNames{"any", "ipv4", "ipv6"};
             static constexpr std::array<DiscoverFamily, 3> kFamilies{
                 DiscoverFamily::Any, DiscoverFamily::Ipv4, DiscoverFamily::Ipv6};
             auto s = text(v);
             if (!s) return;
             for (std::size_t i = 0; i < kNames.size(); ++i) {
               if (kNames[i] == *s) {
                 d.family = kFamilies[i];
                 return;
               }
             }
             error(where(v),
                   "unknown family " + quote(*s) + suggestion(*s, kNames) + " (any, ipv4 or ipv6)");
           }},
          {"resolvers",
           [&](const Entry& v) {
             auto n = forEachItem(v, "resolver", [&](const Entry& r) {
               auto hp = address(r, /*allowZeroPort=*/false);
               if (!hp) return;
               if (!isIpv4Literal(hp->host)) {
                 // libresolv's server list holds IPv4 addresses; an IPv6 nameserver still
                 // works from /etc/resolv.conf (resolvers left out).
                 error(where(r), "resolver " + quote(hp->host) +
                                     " must be an IPv4 address (host names would need a "
                                     "resolver themselves; for IPv6 leave 'resolvers' out "
                                     "and list it in /etc/resolv.conf)");
                 return;
               }
               d.resolvers.push_back(*hp);
             });
             if (n == 0u) {
               error(where(v), "'resolvers' is empty: leave it out to use /etc/resolv.conf");
             } else if (n && *n > kMaxResolvers) {
               error(where(v), "'resolvers' lists " + std::to_string(*n) + ", at most " +
                                   std::to_string(kMaxResolvers) + " are asked (MAXNS)");
             }
           }},
          {"weight", [&](const Entry& v) { assign(d.weight, integer(v, /*min=*/1, kMaxWeight)); }},
          {"max_connections",
           [&](const Entry& v) { assign(d.maxConnections, integer(v, 0u, kMaxConnections)); }},
      });
  // A port that was refused is reported already; judging the name without it would be noise.
  if (!isMap || d.dns.empty() || (portMark && d.port == 0)) return;
  // SRV names start with two underscore labels (_service._proto, RFC 2782); A/AAAA names of
  // hosts never do. A mix-up would ask for records that do not exist, quietly.
  const bool srvName = d.dns.starts_with('_') && d.dns.find("._") != std::string::npos;
  if (d.port == 0 && !srvName) {
    error(*dnsMark, "discover needs 'port' for the A/AAAA records of " + quote(d.dns) +
                        ", or an SRV name such as _http._tcp." + d.dns + " without 'port'");
    return;
  }
  if (d.port != 0 && srvName) {
    error(*portMark,
          quote(d.dns) + " is an SRV name: leave 'port' out, the SRV records give each port");
    return;
  }
  // One entry per name and pool: metrics and logs name an entry by pool and name.
  for (const auto& other : pool.discover) {
    if (other.dns == d.dns) {
      error(*dnsMark, "pool " + quote(pool.name) + " discovers " + quote(d.dns) +
                          " twice (first at line " + std::to_string(other.mark.line) + ")");
      return;
    }
  }
  pool.discover.push_back(std::move(d));
}

void Loader::readTimeouts(const Entry& e) {
  auto& t = config_.timeouts;
  // Timers that guard a wait must be positive: a zero timer would fire at once.
  walkMap(e, "timeouts",
          {
              {"handshake",
               [&](const Entry& v) { assign(t.handshake, duration(v, 1ms, kMaxDuration)); }},
              {"backend_response",
               [&](const Entry& v) { assign(t.backendResponse, duration(v, 1ms, kMaxDuration)); }},
              {"idle", [&](const Entry& v) { assign(t.idle, duration(v, 1ms, kMaxDuration)); }},
              {"ping_interval",
               [&](const Entry& v) {
                 auto d = duration(v, 0ms, kMaxDuration);
                 if (d && *d != 0ms && *d < kMinPingInterval) {
                   error(where(v), "'ping_interval' must be 0s (off) or at least " +
                                       formatDuration(kMinPingInterval) + ", got " +
                                       quote(v.value.Scalar()));
                   return;
                 }
                 pingIntervalMark_ = where(v);
                 assign(t.pingInterval, d);
               }},
              {"http_keepalive",
               [&](const Entry& v) { assign(t.httpKeepalive, duration(v, 1ms, kMaxDuration)); }},
              {"drain",
               [&](const Entry& v) {
                 drainMark_ = where(v);
                 assign(t.drain, duration(v, 0ms, kMaxDuration));
               }},
              {"drain_spread",
               [&](const Entry& v) {
                 drainSpreadMark_ = where(v);
                 assign(t.drainSpread, duration(v, 0ms, kMaxDuration));
               }},
              // wsgate sent a Close: how long the peer gets to answer it. 0 closes the TCP
              // connection at once, which RFC 6455 allows but does not recommend.
              {"close", [&](const Entry& v) { assign(t.close, duration(v, 0ms, kMaxDuration)); }},
              // Every backend of the pool is at max_connections: how long a request waits for
              // a slot before its 503. 0 answers 503 at once.
              {"queue", [&](const Entry& v) { assign(t.queue, duration(v, 0ms, kMaxDuration)); }},
          });
}

void Loader::readLimits(const Entry& e) {
  auto& l = config_.limits;
  walkMap(e, "limits",
          {
              {"max_connections",
               [&](const Entry& v) {
                 l.maxConnectionsSet = true;
                 assign(l.maxConnections, integer(v, 1, kMaxConnections));
               }},
              {"max_header_bytes",
               [&](const Entry& v) { assign(l.maxHeaderBytes, size(v, kKiB, kMiB)); }},
              {"max_headers",
               [&](const Entry& v) { assign(l.maxHeaders, integer(v, 1, kMaxHeaders)); }},
              {"max_uri_bytes",
               [&](const Entry& v) {
                 maxUriMark_ = where(v);
                 assign(l.maxUriBytes, size(v, 256, kMiB));
               }},
              {"max_message_bytes",
               [&](const Entry& v) { assign(l.maxMessageBytes, size(v, 1, kGiB)); }},
              {"max_buffer_bytes",
               [&](const Entry& v) { assign(l.maxBufferBytes, size(v, kKiB, kGiB)); }},
              {"max_queue",
               [&](const Entry& v) { assign(l.maxQueue, integer(v, 0, kMaxConnections)); }},
          });
}

void Loader::readScripting(const Entry& e) {
  ScriptingConfig scripting;
  bool hasFile = false;
  walkMap(e, "scripting",
          {
              {"file",
               [&](const Entry& v) {
                 auto path = readablePath(v, "Lua script");
                 if (!path) return;
                 scripting.file = std::move(*path);
                 scripting.mark = toMark(where(v));
                 hasFile = true;
               },
               true},
              {"instruction_limit",
               [&](const Entry& v) {
                 assign(scripting.instructionLimit, integer(v, 1000, kMaxLuaInstructions));
               }},
              {"memory_limit",
               [&](const Entry& v) { assign(scripting.memoryLimit, size(v, kMiB, kGiB)); }},
          });
  if (hasFile) config_.scripting = std::move(scripting);
}

void Loader::readAdmin(const Entry& e) {
  AdminConfig admin;
  bool hasListen = false;
  std::optional<Entry> tokenKey;  // the first of token and token_file
  // Both written is refused, at the second: which one was meant is not for wsgate to guess.
  const auto onlyOneToken = [&](const Entry& v) {
    if (!tokenKey) {
      tokenKey = v;
      return true;
    }
    error(v.key.Mark(), "'token' and 'token_file' are both set (the other at line " +
                            std::to_string(toMark(tokenKey->key.Mark()).line) +
                            "): keep one; token_file keeps the secret out of the config");
    return false;
  };
  walkMap(e, "admin",
          {
              {"listen",
               [&](const Entry& v) {
                 auto listen = address(v, /*allowZeroPort=*/true);  // port 0: for tests
                 if (!listen) return;
                 adminListenMark_ = where(v);
                 admin.listen = std::move(*listen);
                 admin.mark = toMark(where(v));
                 hasListen = true;
               },
               true},
              {"token",
               [&](const Entry& v) {
                 if (!onlyOneToken(v)) return;
                 auto written = text(v);
                 if (!written) return;
                 assign(admin.token, adminToken(v, *written, "'token'"));
               }},
              {"token_file",
               [&](const Entry& v) {
                 if (!onlyOneToken(v)) return;
                 auto content = readTokenFile(v);
                 if (!content) return;
                 admin.tokenFile = v.value.Scalar();
                 assign(admin.token, adminToken(v, std::move(*content),
                                                "the token in " + quotePath(admin.tokenFile)));
               }},
          });
  if (!hasListen) return;
  if (!tokenKey && !isLoopbackHost(admin.listen.host)) {
    warning(*adminListenMark_,
            "admin listens on " + admin.listen.str() +
                " without a token: the admin API (reload, drain, status, metrics) would be "
                "open to the network; set admin.token_file, or listen on 127.0.0.1");
  }
  config_.admin = std::move(admin);
}

// A token as written or as read from its file; never quoted in a message (it is a secret).
std::optional<std::string> Loader::adminToken(const Entry& e, std::string token,
                                              std::string_view what) {
  if (token.size() < kMinTokenLength) {
    error(where(e), std::string(what) + " is " + std::to_string(token.size()) +
                        " characters long: an admin token needs at least " +
                        std::to_string(kMinTokenLength));
    return std::nullopt;
  }
  if (token.size() > kMaxTokenLength) {
    error(where(e), std::string(what) + " is longer than " + std::to_string(kMaxTokenLength) +
                        " characters: that is not a token");
    return std::nullopt;
  }
  if (!isTokenText(token)) {
    error(where(e), std::string(what) +
                        " must be printable ASCII without spaces or control characters (it is "
                        "sent as 'Authorization: Bearer TOKEN')");
    return std::nullopt;
  }
  return token;
}

// `token_file`: read whole at each (re)load, trailing whitespace (the newline an editor or
// `echo` adds) trimmed. A relative path is relative to the working directory, as
// certificates are.
std::optional<std::string> Loader::readTokenFile(const Entry& e) {
  auto path = text(e);
  if (!path) return std::nullopt;
  if (path->empty() || hasControl(*path)) {
    error(where(e), "'" + e.name + "' must be a file path, got " + quote(*path));
    return std::nullopt;
  }
  const std::string cannot = "cannot read token file " + quotePath(*path) + ": ";
  // O_NONBLOCK: a FIFO given by mistake must not stall the loader waiting for a writer.
  const int fd = ::open(path->c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    error(where(e), cannot + std::strerror(err));
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    error(where(e), cannot + (S_ISDIR(st.st_mode) ? "it is a directory" : "not a regular file"));
    return std::nullopt;
  }
  std::string content;
  std::array<char, 1024> buf{};
  ssize_t n = 0;
  // One byte past the longest token is enough to know the file holds something else.
  while (content.size() <= kMaxTokenLength + 64 && (n = ::read(fd, buf.data(), buf.size())) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      error(where(e), cannot + std::strerror(err));
      return std::nullopt;
    }
    content.append(buf.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  while (!content.empty() &&
         std::string_view(" \t\r\n\v\f").find(content.back()) != std::string_view::npos) {
    content.pop_back();
  }
  if (content.empty()) {
    error(where(e), "token file " + quotePath(*path) + " is empty");
    return std::nullopt;
  }
  return content;
}

void Loader::crossCheck(const YAML::Node& root) {
  if (listenerItems_ == 0) {
    error(listenersMark_.value_or(root.Mark()), "no listeners: at least one is required");
  }
  if (routeItems_ == 0) {
    error(routesMark_.value_or(root.Mark()),
          "no routes: at least one is required, or every request would be refused");
  }
  std::vector<std::string_view> defined(poolNames_.begin(), poolNames_.end());
  for (const auto& ref : poolRefs_) {
    if (std::find(defined.begin(), defined.end(), ref.name) != defined.end()) continue;
    error(ref.mark, "unknown pool " + quote(ref.name) +
                        (defined.empty() ? std::string(" (no pools are defined)")
                                         : suggestion(ref.name, defined)));
  }
  if (luaRoute_ && !config_.scripting) {
    error(*luaRoute_,
          "a route has 'lua' but there is no 'scripting' section naming the file "
          "that defines it");
  }
  if (config_.admin && adminListenMark_ && config_.admin->listen.port != 0) {
    const HostPort& admin = config_.admin->listen;
    for (const auto& listener : config_.listeners) {
      if (listener.listen.port == admin.port &&
          toLower(listener.listen.host) == toLower(admin.host)) {
        error(*adminListenMark_, "admin listen address " + admin.str() +
                                     " is also used by listener '" + listener.name + "' at line " +
                                     std::to_string(listener.mark.line));
        break;
      }
    }
  }
  const auto& t = config_.timeouts;
  if (t.drainSpread > t.drain) {
    // Sessions must get their 1012 before the drain deadline closes them without one.
    error(drainSpreadMark_.value_or(drainMark_.value_or(root.Mark())),
          "'drain_spread' (" + formatDuration(t.drainSpread) + ") must not exceed 'drain' (" +
              formatDuration(t.drain) + ")");
  }
  if (pingIntervalMark_ && t.pingInterval.count() > 0 && t.pingInterval >= t.idle) {
    // The idle timeout closes a silent client before the first ping could go out.
    error(*pingIntervalMark_, "'ping_interval' (" + formatDuration(t.pingInterval) +
                                  ") must be shorter than 'idle' (" + formatDuration(t.idle) +
                                  "): the idle timeout would close a silent client before the "
                                  "first ping");
  }
  const auto& l = config_.limits;
  // Only when set explicitly: the default URI limit under a small header limit is simply
  // capped by the header limit, which is not worth an error.
  if (maxUriMark_ && l.maxUriBytes > l.maxHeaderBytes) {
    error(*maxUriMark_, "'max_uri_bytes' (" + formatSize(l.maxUriBytes) +
                            ") must not exceed 'max_header_bytes' (" +
                            formatSize(l.maxHeaderBytes) + "): the URI is part of the head");
  }
}

LoadResult internalError(const std::string& file, std::string_view what) {
  LoadResult result;
  result.errors.push_back({Mark{file, 0, 0}, "internal error while loading: " + std::string(what)});
  return result;
}

}  // namespace

std::string ConfigError::str() const { return mark.str() + ": " + message; }

LoadResult loadString(std::string_view yaml, const std::string& fileName) {
  try {
    Loader loader(fileName);
    return loader.load(yaml);
  } catch (const std::exception& e) {
    return internalError(fileName, e.what());
  } catch (...) {
    return internalError(fileName, "unknown exception");
  }
}

LoadResult loadFile(const std::string& path) {
  try {
    Loader loader(path);
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      loader.fileError("cannot read: it is a directory");
      return loader.finish();
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      loader.fileError(std::string("cannot open: ") + std::strerror(errno));
      return loader.finish();
    }
    std::string text;
    std::array<char, 64 * 1024> buf{};
    while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
      text.append(buf.data(), static_cast<std::size_t>(in.gcount()));
      if (text.size() > kMaxFileBytes) {
        loader.fileError("file is larger than " + formatSize(kMaxFileBytes) +
                         "; that is not a config");
        return loader.finish();
      }
    }
    if (in.bad()) {
      loader.fileError(std::string("cannot read: ") + std::strerror(errno));
      return loader.finish();
    }
    loader.fingerprint(text);
    return loader.load(text);
  } catch (const std::exception& e) {
    return internalError(path, e.what());
  } catch (...) {
    return internalError(path, "unknown exception");
  }
}

}  // namespace wsgate::conf
