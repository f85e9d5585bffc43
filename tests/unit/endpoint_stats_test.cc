#include <random>

#include "endpoint_stats_recorder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace natsgw::internal {
namespace {

using ::testing::HasSubstr;

TEST(LatencyHistogramTest, BucketsCoverEveryValueContiguously) {
  for (int b = 0; b + 1 < LatencyHistogram::kBuckets; ++b) {
    ASSERT_EQ(LatencyHistogram::BucketHigh(b),
              LatencyHistogram::BucketLow(b + 1))
        << "bucket " << b;
  }
  for (int64_t v :
       {0ll, 1ll, 31ll, 32ll, 33ll, 1000ll, 123456789ll, (1ll << 40) + 12345}) {
    const int b = LatencyHistogram::BucketOf(v);
    EXPECT_LE(LatencyHistogram::BucketLow(b), v);
    EXPECT_GT(LatencyHistogram::BucketHigh(b), v);
  }
  // Clamped, not out of range.
  EXPECT_EQ(LatencyHistogram::BucketOf(INT64_MAX),
            LatencyHistogram::kBuckets - 1);
  EXPECT_EQ(LatencyHistogram::BucketOf(-5), 0);
}

TEST(LatencyHistogramTest, QuantilesAreWithinThreePercent) {
  LatencyHistogram h;
  EXPECT_EQ(h.Quantile(0.5), 0);
  std::vector<int64_t> values;
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> dist(11.0, 1.0);  // ~60 us median
  for (int i = 0; i < 20000; ++i) {
    values.push_back(static_cast<int64_t>(dist(rng)));
    h.Record(values.back());
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const int64_t exact = values[static_cast<size_t>(q * values.size()) - 1];
    const int64_t approx = h.Quantile(q);
    EXPECT_NEAR(static_cast<double>(approx), static_cast<double>(exact),
                0.03 * static_cast<double>(exact))
        << "q=" << q;
  }
  EXPECT_EQ(h.count(), 20000);
  h.Reset();
  EXPECT_EQ(h.count(), 0);
}

TEST(EndpointStatsRecorderTest, CountsAndFormatsLastError) {
  EndpointStatsRecorder r;
  r.RecordHandled(absl::Microseconds(100), absl::OkStatus());
  r.RecordHandled(absl::Microseconds(300), absl::NotFoundError("no such user"));
  r.RecordShed(absl::ResourceExhaustedError("full"));
  r.RecordExpired(absl::DeadlineExceededError("late"));
  EndpointStats s = r.Snapshot();
  EXPECT_EQ(s.num_requests, 2);
  EXPECT_EQ(s.num_errors, 3);
  EXPECT_EQ(s.shed, 1);
  EXPECT_EQ(s.expired, 1);
  EXPECT_EQ(s.processing_time, absl::Microseconds(400));
  EXPECT_EQ(s.average_processing_time(), absl::Microseconds(200));
  EXPECT_EQ(s.last_error, "504:late");
  EXPECT_GT(s.p50, absl::Microseconds(95));
  EXPECT_LT(s.p99, absl::Microseconds(310));
  r.Reset();
  s = r.Snapshot();
  EXPECT_EQ(s.num_requests, 0);
  EXPECT_EQ(s.last_error, "");
  EXPECT_EQ(s.p50, absl::ZeroDuration());
}

}  // namespace
}  // namespace natsgw::internal
