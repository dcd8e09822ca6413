#pragma once
// Shared by the balancer tests: backends built from weights and limits, and fixed instants.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "balancer/backend.h"
#include "balancer/time.h"

namespace wsgate::balancer::testing {

struct BackendDef {
  uint32_t weight = 1;
  uint32_t maxConnections = 0;
};

inline std::vector<BackendPtr> makeBackends(const std::vector<BackendDef>& defs,
                                            const std::string& pool = "app") {
  std::vector<BackendPtr> backends;
  for (std::size_t i = 0; i < defs.size(); ++i) {
    backends.push_back(std::make_shared<Backend>(
        BackendSpec{pool, "b" + std::to_string(i), "10.0.0." + std::to_string(i + 1), 8080,
                    defs[i].weight, defs[i].maxConnections}));
  }
  return backends;
}

inline std::vector<BackendPtr> makeBackends(std::size_t n) {
  return makeBackends(std::vector<BackendDef>(n));
}

inline std::vector<uint32_t> weightsOf(const std::vector<BackendPtr>& backends) {
  std::vector<uint32_t> weights;
  for (const auto& b : backends) weights.push_back(b->spec().weight);
  return weights;
}

// An arbitrary fixed origin for injected clocks, far from the epoch.
inline TimePoint at(std::chrono::milliseconds offset) {
  return TimePoint(std::chrono::hours(1000)) + offset;
}

// |share - want| for counts against weights, the largest over the backends.
inline double worstShareError(const std::vector<uint64_t>& counts,
                              const std::vector<uint32_t>& weights) {
  uint64_t total = 0, weightSum = 0;
  for (uint64_t c : counts) total += c;
  for (uint32_t w : weights) weightSum += w;
  double worst = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const double share = static_cast<double>(counts[i]) / static_cast<double>(total);
    const double want = static_cast<double>(weights[i]) / static_cast<double>(weightSum);
    worst = std::max(worst, share > want ? share - want : want - share);
  }
  return worst;
}

}  // namespace wsgate::balancer::testing
