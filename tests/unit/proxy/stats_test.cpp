// The pure parts of /metrics' counting: which bucket a latency lands in, which slot a close
// code counts in, and how OpenSSL's reasons sort into the bounded TLS failure labels.

#include "proxy/stats.h"

#include <gtest/gtest.h>

#include <string_view>

namespace wsgate::proxy {
namespace {

uint64_t bucketOf(uint32_t us) {
  Histogram h;
  h.observe(us);
  for (std::size_t b = 0; b <= kLatencyBuckets; ++b) {
    if (h.buckets[b].get() == 1) return b;
  }
  return ~0ull;
}

TEST(Histogram, ABoundItselfCountsInItsBucket) {
  // Prometheus buckets are "less than or equal": 500 us is in le=0.0005.
  struct Case {
    uint32_t us;
    std::size_t bucket;
  };
  const Case cases[] = {{0, 0},         {1, 0},         {500, 0},        {501, 1},
                        {1000, 1},      {1001, 2},      {9999, 4},       {10000, 4},
                        {10000000, 13}, {10000001, 14}, {UINT32_MAX, 14}};
  for (const Case& c : cases) EXPECT_EQ(bucketOf(c.us), c.bucket) << c.us << " us";
}

TEST(Histogram, SumsMicrosecondsAndCountsEachObservationOnce) {
  Histogram h;
  for (uint32_t us : {100u, 2000u, 2000u, 30000000u}) h.observe(us);
  uint64_t count = 0;
  for (const Counter& b : h.buckets) count += b.get();
  EXPECT_EQ(count, 4u);
  EXPECT_EQ(h.sumUs.get(), 30004100u);
  EXPECT_EQ(h.buckets[kLatencyBuckets].get(), 1u);  // +Inf: above 10 s
}

TEST(Histogram, BoundsRise) {
  for (std::size_t b = 1; b < kLatencyBuckets; ++b) {
    EXPECT_LT(kLatencyBucketsUs[b - 1], kLatencyBucketsUs[b]);
  }
}

TEST(CloseCodeSlot, NamedCodesHaveTheirOwnSlotAndTheRestShareOther) {
  for (std::size_t i = 0; i < std::size(kCountedCloseCodes); ++i) {
    EXPECT_EQ(closeCodeSlot(kCountedCloseCodes[i]), i);
  }
  for (uint16_t code : {999, 1004, 1010, 1015, 3000, 4000, 4999, 65535}) {
    EXPECT_EQ(closeCodeSlot(code), std::size(kCountedCloseCodes)) << code;
  }
}

TEST(CloseSide, NamesMapToSidesAndAnythingElseIsNone) {
  EXPECT_EQ(closeSideOf("client"), CloseSide::Client);
  EXPECT_EQ(closeSideOf("backend"), CloseSide::Backend);
  EXPECT_EQ(closeSideOf("wsgate"), CloseSide::Wsgate);
  EXPECT_EQ(closeSideOf(""), CloseSide::None);
  EXPECT_EQ(closeSideOf("Client"), CloseSide::None);
}

TEST(TlsFailure, OpenSslReasonsSortIntoBoundedLabels) {
  struct Case {
    std::string_view error;
    bool timedOut;
    TlsFailure expect;
  };
  // The reasons as ERR_reason_error_string gives them (OpenSSL 3).
  const Case cases[] = {
      {"unsupported protocol", false, TlsFailure::Protocol},
      {"no shared cipher", false, TlsFailure::Protocol},
      {"wrong version number", false, TlsFailure::Protocol},
      {"no application protocol", false, TlsFailure::Protocol},
      {"no suitable signature algorithm", false, TlsFailure::Protocol},
      {"no shared signature algorithms", false, TlsFailure::Protocol},
      {"peer did not return a certificate", false, TlsFailure::Certificate},
      {"certificate verify failed", false, TlsFailure::Certificate},
      {"tlsv1 alert unknown ca", false, TlsFailure::Certificate},
      {"tlsv1 unrecognized name", false, TlsFailure::Sni},
      {"http request", false, TlsFailure::PlainHttp},
      {"unexpected eof while reading", false, TlsFailure::Other},
      {"TLS error", false, TlsFailure::Other},
      {"", true, TlsFailure::Timeout},
      {"", false, TlsFailure::Closed},
      // A reason wins over the timeout that ended the connection afterwards.
      {"no shared cipher", true, TlsFailure::Protocol},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(tlsFailureOf(c.error, c.timedOut), c.expect)
        << "'" << c.error << "' timedOut=" << c.timedOut;
  }
  EXPECT_EQ(std::size(kTlsFailureNames), kTlsFailures);
}

}  // namespace
}  // namespace wsgate::proxy
