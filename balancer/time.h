#pragma once
// Time as the balancer sees it: always a parameter, never read here. steady_clock's types,
// so the proxy passes its loop's steady time and tests pass fixed instants.

#include <chrono>

namespace wsgate::balancer {

using TimePoint = std::chrono::steady_clock::time_point;
using Duration = std::chrono::steady_clock::duration;

}  // namespace wsgate::balancer
