#include "conf/units.h"

#include <arpa/inet.h>

#include <array>
#include <cstring>
#include <limits>

namespace wsgate::conf {
namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isAlnum(char c) { return isDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Leading decimal digits of `text` as a number; `text` is advanced past them. False on
// overflow, so "99999999999999999999s" is "too large" rather than silently wrapped.
bool takeNumber(std::string_view& text, uint64_t& out) {
  out = 0;
  while (!text.empty() && isDigit(text.front())) {
    const uint64_t digit = static_cast<uint64_t>(text.front() - '0');
    if (out > (std::numeric_limits<uint64_t>::max() - digit) / 10) return false;
    out = out * 10 + digit;
    text.remove_prefix(1);
  }
  return true;
}

struct Unit {
  std::string_view name;
  uint64_t factor;
};

constexpr std::array<Unit, 4> kDurationUnits{{
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
}};

constexpr std::array<Unit, 6> kSizeUnits{{
    {"KiB", uint64_t{1} << 10},
    {"MiB", uint64_t{1} << 20},
    {"GiB", uint64_t{1} << 30},
    {"KB", 1000},
    {"MB", 1000 * 1000},
    {"GB", 1000 * 1000 * 1000},
}};

template <std::size_t N>
const Unit* findUnit(const std::array<Unit, N>& units, std::string_view name) {
  for (const auto& u : units) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

// Shared shape of durations and sizes: digits, then a unit from `units` (or none).
template <std::size_t N>
std::optional<uint64_t> parseScaled(std::string_view text, const std::array<Unit, N>& units,
                                    bool unitRequired, std::string_view unknownUnit,
                                    std::string_view fraction, std::string_view& why) {
  if (text.empty()) {
    why = "empty value";
    return std::nullopt;
  }
  if (text.front() == '-') {
    why = "must not be negative";
    return std::nullopt;
  }
  if (!isDigit(text.front())) {
    why = "does not start with a number";
    return std::nullopt;
  }
  uint64_t value = 0;
  if (!takeNumber(text, value)) {
    why = "too large";
    return std::nullopt;
  }
  if (!text.empty() && (text.front() == '.' || text.front() == ',')) {
    why = fraction;
    return std::nullopt;
  }
  if (text.empty()) {
    // Zero is zero in any unit, so only a non-zero bare number is ambiguous.
    if (unitRequired && value != 0) {
      why = "needs a unit (ms, s, m or h), e.g. '10s'";
      return std::nullopt;
    }
    return value;
  }
  const Unit* unit = findUnit(units, text);
  if (unit == nullptr) {
    why = unknownUnit;
    return std::nullopt;
  }
  if (value > std::numeric_limits<uint64_t>::max() / unit->factor) {
    why = "too large";
    return std::nullopt;
  }
  return value * unit->factor;
}

bool isValidIpv4(std::string_view host) {
  std::array<char, INET_ADDRSTRLEN + 1> buf{};
  if (host.size() >= buf.size()) return false;
  std::memcpy(buf.data(), host.data(), host.size());
  in_addr out{};
  return inet_pton(AF_INET, buf.data(), &out) == 1;
}

// An IPv6 literal, optionally with a %zone (link-local addresses need one to be usable).
bool isValidIpv6(std::string_view host) {
  const auto percent = host.find('%');
  if (percent != std::string_view::npos) {
    const std::string_view zone = host.substr(percent + 1);
    if (zone.empty() || zone.size() > 15) return false;  // IFNAMSIZ - 1
    for (char c : zone) {
      if (!isAlnum(c) && c != '.' && c != '-' && c != '_') return false;
    }
    host = host.substr(0, percent);
  }
  std::array<char, INET6_ADDRSTRLEN + 1> buf{};
  if (host.size() >= buf.size()) return false;
  std::memcpy(buf.data(), host.data(), host.size());
  in6_addr out{};
  return inet_pton(AF_INET6, buf.data(), &out) == 1;
}

// RFC 1123 names; '_' is allowed too because container and service-discovery names use it.
bool isValidDnsName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  std::size_t labelStart = 0;
  for (std::size_t i = 0; i <= host.size(); ++i) {
    if (i == host.size() || host[i] == '.') {
      const std::string_view label = host.substr(labelStart, i - labelStart);
      if (label.empty() || label.size() > 63) return false;
      if (label.front() == '-' || label.back() == '-') return false;
      labelStart = i + 1;
      continue;
    }
    const char c = host[i];
    if (!isAlnum(c) && c != '-' && c != '_') return false;
  }
  return true;
}

bool looksLikeIpv4(std::string_view host) {
  for (char c : host) {
    if (!isDigit(c) && c != '.') return false;
  }
  return true;
}

std::optional<uint16_t> parsePort(std::string_view text, bool allowZeroPort,
                                  std::string_view& why) {
  if (text.empty()) {
    why = "missing port (expected host:port or [v6]:port)";
    return std::nullopt;
  }
  const std::string_view range =
      allowZeroPort ? "port must be between 0 and 65535" : "port must be between 1 and 65535";
  if (text.size() > 5) {
    why = range;
    return std::nullopt;
  }
  uint32_t port = 0;
  for (char c : text) {
    if (!isDigit(c)) {
      why = "port is not a number";
      return std::nullopt;
    }
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port > 65535) {
    why = range;
    return std::nullopt;
  }
  if (port == 0 && !allowZeroPort) {
    why = "port 0 is only allowed for listeners";
    return std::nullopt;
  }
  return static_cast<uint16_t>(port);
}

}  // namespace

std::optional<Duration> parseDuration(std::string_view text, std::string_view& why) noexcept {
  auto ms =
      parseScaled(text, kDurationUnits, /*unitRequired=*/true, "unknown unit (use ms, s, m or h)",
                  "fractions are not supported (write 1500ms, not 1.5s)", why);
  if (!ms) return std::nullopt;
  if (*ms > static_cast<uint64_t>(std::numeric_limits<Duration::rep>::max())) {
    why = "too large";
    return std::nullopt;
  }
  return Duration{static_cast<Duration::rep>(*ms)};
}

std::optional<uint64_t> parseSize(std::string_view text, std::string_view& why) noexcept {
  return parseScaled(text, kSizeUnits, /*unitRequired=*/false,
                     "unknown unit (use KiB, MiB, GiB, or KB, MB, GB)",
                     "fractions are not supported (write 1536KiB, not 1.5MiB)", why);
}

std::optional<HostPort> parseHostPort(std::string_view text, bool allowZeroPort,
                                      std::string_view& why) noexcept {
  if (text.empty()) {
    why = "empty address";
    return std::nullopt;
  }
  if (text.find("://") != std::string_view::npos) {
    why = "an address is host:port, without a scheme";
    return std::nullopt;
  }
  std::string_view host;
  std::string_view port;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      why = "missing ']' after the IPv6 address";
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      why = "missing port (expected host:port or [v6]:port)";
      return std::nullopt;
    }
    port = rest.substr(1);
    if (!isValidIpv6(host)) {
      why = "invalid IPv6 address";
      return std::nullopt;
    }
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      why = "missing port (expected host:port or [v6]:port)";
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      why = "an IPv6 address needs brackets, e.g. [::1]:8080";
      return std::nullopt;
    }
    if (host.empty()) {
      why = "missing host (use 0.0.0.0 or [::] for every address)";
      return std::nullopt;
    }
    if (looksLikeIpv4(host) ? !isValidIpv4(host) : !isValidDnsName(host)) {
      why = looksLikeIpv4(host) ? "invalid IPv4 address" : "invalid host name";
      return std::nullopt;
    }
  }
  auto number = parsePort(port, allowZeroPort, why);
  if (!number) return std::nullopt;
  try {
    return HostPort{std::string(host), *number};
  } catch (...) {  // bad_alloc: keep the noexcept promise
    why = "out of memory";
    return std::nullopt;
  }
}

bool isValidHost(std::string_view host) noexcept {
  if (host.find(':') != std::string_view::npos) return isValidIpv6(host);
  return looksLikeIpv4(host) ? isValidIpv4(host) : isValidDnsName(host);
}

std::optional<Duration> parseDuration(std::string_view text) noexcept {
  std::string_view why;
  return parseDuration(text, why);
}

std::optional<uint64_t> parseSize(std::string_view text) noexcept {
  std::string_view why;
  return parseSize(text, why);
}

std::optional<HostPort> parseHostPort(std::string_view text, bool allowZeroPort) noexcept {
  std::string_view why;
  return parseHostPort(text, allowZeroPort, why);
}

}  // namespace wsgate::conf
