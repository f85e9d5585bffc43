// load.h: running one operation many times from several threads, for
// `natsgw call --count/--concurrency` and `natsgw bench`: a latency
// histogram, the progress bar, and the summary (text or JSON).
//
//   LoadOptions options{.count = 1000, .concurrency = 8};
//   LoadResult result = RunLoad(options, [&]() -> absl::Status {
//     return conn.Request(subject, payload, timeout).status();
//   });
//   Out(FormatSummary(result, options));
//
// Thread-safety: LatencyHistogram is thread-compatible (one per worker,
// merged at the end); RunLoad calls `operation` from `concurrency` threads
// at once, so it must be thread-safe.
#ifndef NATSGW_SDK_TOOLS_NATSGW_LOAD_H_
#define NATSGW_SDK_TOOLS_NATSGW_LOAD_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

namespace natsgw::cli {

// Durations in log-linear buckets: 64 per power of two, so a percentile is
// off by at most 1/64 (1.6 %) of its value, in constant memory however
// many operations are recorded.
class LatencyHistogram {
 public:
  LatencyHistogram();
  void Record(absl::Duration d);
  void Merge(const LatencyHistogram& other);

  int64_t count() const { return count_; }
  absl::Duration min() const;
  absl::Duration max() const;
  absl::Duration mean() const;
  // The `q` quantile (0..1): the middle of the bucket holding it, within
  // [min, max]. Zero when empty.
  absl::Duration Quantile(double q) const;

 private:
  std::vector<int64_t> buckets_;
  int64_t count_ = 0;
  int64_t min_ns_ = 0;
  int64_t max_ns_ = 0;
  double sum_ns_ = 0;
};

struct LoadOptions {
  // Stop after this many operations; 0: no limit (then `duration` ends it).
  int64_t count = 0;
  // Stop starting operations after this long.
  absl::Duration duration = absl::InfiniteDuration();
  int concurrency = 1;
  // Draw a progress bar on stderr.
  bool progress = false;
  // What one operation is called in output ("calls", "publishes").
  std::string unit = "calls";
};

struct LoadResult {
  int64_t done = 0;
  int64_t ok = 0;
  // Failed operations by status code name, and one message of each code.
  std::map<std::string, int64_t> errors;
  std::map<std::string, absl::Status> first_error;
  LatencyHistogram latency;
  absl::Duration elapsed;
  // Ctrl-C ended the run early.
  bool interrupted = false;
};

// Runs `operation` from options.concurrency threads until options.count
// operations have been started, options.duration has passed or Ctrl-C
// arrives (graceful interrupts must be enabled); operations in flight are
// finished. Every thread it starts is joined before it returns.
LoadResult RunLoad(const LoadOptions& options,
                   absl::FunctionRef<absl::Status()> operation);

// One line per kind of failure on stderr:
//   natsgw: ALREADY_EXISTS: 19 calls, the first: <message> (trace <id>)
void PrintFailures(const LoadResult& result, const LoadOptions& options);

// The summary for people:
//   calls       20 (ok 19, failed 1: ALREADY_EXISTS 1)
//   latency     min 180 us  p50 320 us  p90 610 us  p99 1.2 ms  max 1.3 ms
//   throughput  2345 calls/s (20 in 8.5 ms, concurrency 4)
std::string FormatSummary(const LoadResult& result, const LoadOptions& options);
// The same as one JSON object (one line), with `extra` members (already
// JSON-encoded values by name) first.
std::string FormatSummaryJson(
    const LoadResult& result, const LoadOptions& options,
    const std::vector<std::pair<std::string, std::string>>& extra);

}  // namespace natsgw::cli

#endif  // NATSGW_SDK_TOOLS_NATSGW_LOAD_H_
