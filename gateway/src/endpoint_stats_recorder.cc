#include "endpoint_stats_recorder.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "natsgw/service_error.h"

namespace natsgw::internal {

// Values below 2^kSubBits get a bucket each; above, a value with highest bit
// e falls in octave e and sub-bucket given by the next kSubBits bits.
int LatencyHistogram::BucketOf(int64_t nanos) {
  if (nanos < 0) nanos = 0;
  const uint64_t v = static_cast<uint64_t>(nanos);
  if (v < (uint64_t{1} << kSubBits)) return static_cast<int>(v);
  int e = std::bit_width(v) - 1;  // >= kSubBits
  if (e > kMaxExponent) return kBuckets - 1;
  const int sub =
      static_cast<int>((v >> (e - kSubBits)) & ((uint64_t{1} << kSubBits) - 1));
  return ((e - kSubBits + 1) << kSubBits) + sub;
}

int64_t LatencyHistogram::BucketLow(int bucket) {
  if (bucket < (1 << kSubBits)) return bucket;
  const int e = (bucket >> kSubBits) + kSubBits - 1;
  const int sub = bucket & ((1 << kSubBits) - 1);
  return static_cast<int64_t>((uint64_t{1} << e) +
                              (static_cast<uint64_t>(sub) << (e - kSubBits)));
}

int64_t LatencyHistogram::BucketHigh(int bucket) {
  if (bucket < (1 << kSubBits)) return bucket + 1;
  const int e = (bucket >> kSubBits) + kSubBits - 1;
  return BucketLow(bucket) + (int64_t{1} << (e - kSubBits));
}

void LatencyHistogram::Record(int64_t nanos) {
  buckets_[BucketOf(nanos)].fetch_add(1, std::memory_order_relaxed);
}

int64_t LatencyHistogram::count() const {
  uint64_t total = 0;
  for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
  return static_cast<int64_t>(total);
}

int64_t LatencyHistogram::Quantile(double q) const {
  std::array<uint64_t, kBuckets> snapshot;
  uint64_t total = 0;
  for (int i = 0; i < kBuckets; ++i) {
    snapshot[i] = buckets_[i].load(std::memory_order_relaxed);
    total += snapshot[i];
  }
  if (total == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // The rank of the wanted value, 1-based ("nearest rank" definition).
  const uint64_t rank = std::max<uint64_t>(
      1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(total))));
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += snapshot[i];
    if (seen >= rank) return (BucketLow(i) + BucketHigh(i) - 1) / 2;
  }
  return BucketLow(kBuckets - 1);
}

void LatencyHistogram::Reset() {
  for (auto& b : buckets_) b.store(0, std::memory_order_relaxed);
}

void EndpointStatsRecorder::SetLastErrorLocked(const absl::Status& status) {
  ++num_errors_;
  // "<code>:<description>", as nats.go formats service errors.
  last_error_ = absl::StrCat(ServiceErrorCodeFromStatusCode(status.code()), ":",
                             status.message());
}

void EndpointStatsRecorder::RecordHandled(absl::Duration duration,
                                          const absl::Status& status) {
  const int64_t ns = absl::ToInt64Nanoseconds(duration);
  std::lock_guard<std::mutex> lock(mu_);
  ++num_requests_;
  processing_ns_ += ns;
  histogram_.Record(ns);
  if (!status.ok()) SetLastErrorLocked(status);
}

void EndpointStatsRecorder::RecordShed(const absl::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++shed_;
  SetLastErrorLocked(status);
}

void EndpointStatsRecorder::RecordExpired(const absl::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++expired_;
  SetLastErrorLocked(status);
}

void EndpointStatsRecorder::RecordError(const absl::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  SetLastErrorLocked(status);
}

EndpointStats EndpointStatsRecorder::Snapshot() const {
  EndpointStats s;
  std::lock_guard<std::mutex> lock(mu_);
  s.num_requests = num_requests_;
  s.num_errors = num_errors_;
  s.processing_time = absl::Nanoseconds(processing_ns_);
  s.shed = shed_;
  s.expired = expired_;
  s.p50 = absl::Nanoseconds(histogram_.Quantile(0.5));
  s.p90 = absl::Nanoseconds(histogram_.Quantile(0.9));
  s.p99 = absl::Nanoseconds(histogram_.Quantile(0.99));
  s.p999 = absl::Nanoseconds(histogram_.Quantile(0.999));
  s.last_error = last_error_;
  return s;
}

void EndpointStatsRecorder::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  num_requests_ = 0;
  num_errors_ = 0;
  processing_ns_ = 0;
  shed_ = 0;
  expired_ = 0;
  histogram_.Reset();
  last_error_.clear();
}

}  // namespace natsgw::internal
