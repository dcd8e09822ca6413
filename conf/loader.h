#pragma once
// YAML -> Config with validation. Errors (and warnings) are values carrying FILE:LINE:COL.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"

namespace wsgate::conf {

struct ConfigError {
  Mark mark;                // line/column 0 when the error is about the whole file
  std::string message;      // what is wrong, e.g. "unknown key 'listn' in listener"
  std::string str() const;  // "FILE:LINE:COL: message" (or "FILE: message")
};

struct LoadResult {
  std::optional<Config> config;       // set when errors is empty
  std::vector<ConfigError> errors;    // every problem found, in file order
  std::vector<ConfigError> warnings;  // accepted but probably unwise, in file order
  bool ok() const { return errors.empty(); }
};

// Reads and validates `path`. Never throws.
LoadResult loadFile(const std::string& path);

// Validates YAML text; `fileName` is used in marks. Never throws.
LoadResult loadString(std::string_view yaml, const std::string& fileName);

}  // namespace wsgate::conf
