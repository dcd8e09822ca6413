#pragma once
// A log-linear latency histogram (HdrHistogram's layout, no dependency): exact below 128,
// then 64 linear steps per power of two, so a value and its bucket differ by under 1.6%.
// Plain counters: one per worker thread, merged when read.

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace wsgate::bench {

class Histogram {
public:
  // Microseconds: values from 2^24 (16.7 s) on land in the last bucket.
  static constexpr uint64_t kMaxValue = (uint64_t{1} << 24) - 1;

  void record(uint64_t value) noexcept {
    value = std::min(value, kMaxValue);
    ++counts_[indexOf(value)];
    ++total_;
    max_ = std::max(max_, value);
  }

  void merge(const Histogram& other) noexcept {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    max_ = std::max(max_, other.max_);
  }

  uint64_t count() const noexcept { return total_; }

  // The value at quantile `q` (0.5, 0.99, ...): the highest value of the bucket holding that
  // rank, capped at the largest value recorded. 0 when empty. Monotonic in q.
  uint64_t percentile(double q) const noexcept {
    if (total_ == 0) return 0;
    const auto wanted = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_)));
    const uint64_t rank = std::clamp<uint64_t>(wanted, 1, total_);
    uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(highestOf(i), max_);
    }
    return max_;
  }

private:
  static constexpr unsigned kSubBits = 6;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;  // linear steps per power of two
  // Index = shift * kSub + (value >> shift), shift = floor(log2 value) - kSubBits; the largest
  // value (2^24 - 1) has shift 17 and lands on index 17 * 64 + 127.
  static constexpr std::size_t kBuckets = (24 - kSubBits + 1) * kSub;

  static std::size_t indexOf(uint64_t value) noexcept {
    if (value < 2 * kSub) return static_cast<std::size_t>(value);
    const unsigned shift = static_cast<unsigned>(std::bit_width(value)) - 1 - kSubBits;
    return static_cast<std::size_t>(shift * kSub + (value >> shift));
  }

  static uint64_t highestOf(std::size_t index) noexcept {
    if (index < 2 * kSub) return index;
    const uint64_t shift = index / kSub - 1;
    const uint64_t sub = index % kSub + kSub;
    return ((sub + 1) << shift) - 1;
  }

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
};

}  // namespace wsgate::bench
