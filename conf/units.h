#pragma once
// Parsing of the config's units: durations ("500ms", "10s", "5m", "1h") and sizes
// (integers in bytes, or "16KiB", "16MiB", "1GiB", "1KB"=1000, "1MB", "1GB"). Pure.

#include <cstdint>
#include <optional>
#include <string_view>

#include "conf/config.h"

namespace wsgate::conf {

// "0" and "0s" are zero; a number without a unit is an error (ambiguous). nullopt on error.
std::optional<Duration> parseDuration(std::string_view text) noexcept;

// A plain integer is bytes. nullopt on error or overflow.
std::optional<uint64_t> parseSize(std::string_view text) noexcept;

// "host:port" or "[v6]:port"; port 0..65535 (0 only when allowZeroPort). nullopt on error.
std::optional<HostPort> parseHostPort(std::string_view text, bool allowZeroPort) noexcept;

// The same three, also saying why on error: `why` is set to a static, human-readable reason
// (e.g. "needs a unit (ms, s, m or h)") so config messages can be specific.
std::optional<Duration> parseDuration(std::string_view text, std::string_view& why) noexcept;
std::optional<uint64_t> parseSize(std::string_view text, std::string_view& why) noexcept;
std::optional<HostPort> parseHostPort(std::string_view text, bool allowZeroPort,
                                      std::string_view& why) noexcept;

// A DNS name, a dotted-quad IPv4 literal, or an IPv6 literal (no brackets, optional %zone).
bool isValidHost(std::string_view host) noexcept;

}  // namespace wsgate::conf
