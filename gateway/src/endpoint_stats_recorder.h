// Per-endpoint statistics of a served endpoint (natsgw::EndpointStats).
//
// Handler times go into a log-linear histogram (32 sub-buckets per power of
// two of nanoseconds, i.e. within ~3%), from which percentiles are read.
//
// Thread-safety: thread-safe. Recording one request, Reset() and Snapshot()
// are atomic with respect to each other (one uncontended mutex per request,
// next to a NATS round trip): a snapshot never shows half a request, and a
// reset never leaves half of one behind.
#ifndef NATSGW_GATEWAY_SRC_ENDPOINT_STATS_RECORDER_H_
#define NATSGW_GATEWAY_SRC_ENDPOINT_STATS_RECORDER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "natsgw/endpoint_stats.h"

namespace natsgw::internal {

// Log-linear histogram of non-negative nanosecond values.
class LatencyHistogram {
 public:
  static constexpr int kSubBits = 5;       // 32 sub-buckets per octave
  static constexpr int kMaxExponent = 42;  // ~73 minutes; larger values clamp
  static constexpr int kBuckets = (kMaxExponent - kSubBits + 2) << kSubBits;

  void Record(int64_t nanos);
  // The value at quantile `q` (0..1): midpoint of the bucket holding it; 0
  // if empty.
  int64_t Quantile(double q) const;
  int64_t count() const;
  void Reset();

  // Exposed for tests.
  static int BucketOf(int64_t nanos);
  static int64_t BucketLow(int bucket);
  static int64_t BucketHigh(int bucket);  // exclusive

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
};

class EndpointStatsRecorder {
 public:
  // A handler ran for `duration` and the request ended with `status`.
  void RecordHandled(absl::Duration duration, const absl::Status& status);
  // The request was answered with `status` without running the handler
  // (shed, expired, or the reply could not be sent).
  void RecordShed(const absl::Status& status);
  void RecordExpired(const absl::Status& status);
  void RecordError(const absl::Status& status);

  EndpointStats Snapshot() const;
  void Reset();

 private:
  void SetLastErrorLocked(const absl::Status& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable std::mutex mu_;
  int64_t num_requests_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t num_errors_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t processing_ns_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t shed_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t expired_ ABSL_GUARDED_BY(mu_) = 0;
  LatencyHistogram histogram_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_ENDPOINT_STATS_RECORDER_H_
