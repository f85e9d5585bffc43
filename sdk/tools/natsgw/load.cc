#include "load.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli.h"
#include "natsgw/service_error.h"

namespace natsgw::cli {
namespace {

// Values below 128 ns have a bucket each; above, 64 buckets per power of two
// up to 2^63 ns.
constexpr int kSubBits = 6;
constexpr int kSubBuckets = 1 << kSubBits;
constexpr int kLinear = 2 * kSubBuckets;
constexpr int kBuckets = kLinear + (62 - kSubBits) * kSubBuckets;

int BucketOf(int64_t ns) {
  if (ns < kLinear) return static_cast<int>(std::max<int64_t>(ns, 0));
  const int msb = 63 - __builtin_clzll(static_cast<uint64_t>(ns));
  const int shift = msb - kSubBits;
  const int sub = static_cast<int>((ns >> shift) & (kSubBuckets - 1));
  return kLinear + (msb - kSubBits - 1) * kSubBuckets + sub;
}

// The middle of bucket `index`, in nanoseconds.
double BucketMiddle(int index) {
  if (index < kLinear) return index;
  const int msb = (index - kLinear) / kSubBuckets + kSubBits + 1;
  const int sub = (index - kLinear) % kSubBuckets;
  const int shift = msb - kSubBits;
  const double lower = std::ldexp(kSubBuckets + sub, shift);
  return lower + std::ldexp(1, shift) / 2;
}

double Micros(absl::Duration d) { return absl::ToDoubleMicroseconds(d); }

// One worker's share of the result, merged at the end (no shared counters
// on the hot path but the two atomics the progress bar reads).
struct WorkerResult {
  LatencyHistogram latency;
  int64_t ok = 0;
  std::map<std::string, int64_t> errors;
  std::map<std::string, absl::Status> first_error;
};

// Draws the bar in place ("\r"); the caller ends the line.
void DrawProgress(const LoadOptions& options, int64_t finished, int64_t failed,
                  absl::Duration elapsed) {
  constexpr int kWidth = 30;
  const double seconds = absl::ToDoubleSeconds(elapsed);
  double fraction = 0;
  std::string position;
  if (options.count > 0) {
    fraction = static_cast<double>(finished) / options.count;
    position = absl::StrFormat("%d/%d %3.0f%%", finished, options.count,
                               100 * fraction);
  } else {
    const double total = absl::ToDoubleSeconds(options.duration);
    fraction = total > 0 ? seconds / total : 0;
    position = absl::StrFormat("%.1f/%.1f s  %d %s", std::min(seconds, total),
                               total, finished, options.unit);
  }
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int filled = static_cast<int>(fraction * kWidth);
  const double rate = seconds > 0 ? finished / seconds : 0;
  Err(absl::StrFormat(
      "\r[%s%s] %s  %.0f %s/s  errors %d", std::string(filled, '#'),
      std::string(kWidth - filled, '-'), position, rate, options.unit, failed));
}

}  // namespace

LatencyHistogram::LatencyHistogram() : buckets_(kBuckets, 0) {}

void LatencyHistogram::Record(absl::Duration d) {
  const int64_t ns = std::max<int64_t>(absl::ToInt64Nanoseconds(d), 0);
  ++buckets_[BucketOf(ns)];
  if (count_ == 0 || ns < min_ns_) min_ns_ = ns;
  if (count_ == 0 || ns > max_ns_) max_ns_ = ns;
  ++count_;
  sum_ns_ += static_cast<double>(ns);
}

void LatencyHistogram::Merge(const LatencyHistogram& other) {
  if (other.count_ == 0) return;
  for (int i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  if (count_ == 0 || other.min_ns_ < min_ns_) min_ns_ = other.min_ns_;
  if (count_ == 0 || other.max_ns_ > max_ns_) max_ns_ = other.max_ns_;
  count_ += other.count_;
  sum_ns_ += other.sum_ns_;
}

absl::Duration LatencyHistogram::min() const {
  return absl::Nanoseconds(min_ns_);
}
absl::Duration LatencyHistogram::max() const {
  return absl::Nanoseconds(max_ns_);
}
absl::Duration LatencyHistogram::mean() const {
  return count_ == 0 ? absl::ZeroDuration()
                     : absl::Nanoseconds(sum_ns_ / count_);
}

absl::Duration LatencyHistogram::Quantile(double q) const {
  if (count_ == 0) return absl::ZeroDuration();
  const int64_t rank = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * count_)));
  int64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) {
      const double ns =
          std::clamp(BucketMiddle(i), static_cast<double>(min_ns_),
                     static_cast<double>(max_ns_));
      return absl::Nanoseconds(ns);
    }
  }
  return max();
}

LoadResult RunLoad(const LoadOptions& options,
                   absl::FunctionRef<absl::Status()> operation) {
  using Clock = std::chrono::steady_clock;
  const int concurrency = std::max(options.concurrency, 1);
  std::vector<WorkerResult> results(concurrency);
  std::atomic<int64_t> started{0};
  std::atomic<int64_t> finished{0};
  std::atomic<int64_t> failed{0};
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline =
      options.duration == absl::InfiniteDuration()
          ? Clock::time_point::max()
          : start + absl::ToChronoNanoseconds(options.duration);

  auto work = [&](WorkerResult& result) {
    for (;;) {
      if (Interrupted() || Clock::now() >= deadline) return;
      if (options.count > 0 && started.fetch_add(1) >= options.count) return;
      const Clock::time_point begin = Clock::now();
      const absl::Status status = operation();
      result.latency.Record(absl::FromChrono(Clock::now() - begin));
      if (status.ok()) {
        ++result.ok;
      } else {
        const std::string code = absl::StatusCodeToString(status.code());
        ++result.errors[code];
        result.first_error.emplace(code, status);
        failed.fetch_add(1, std::memory_order_relaxed);
      }
      finished.fetch_add(1, std::memory_order_relaxed);
    }
  };

  std::mutex mu;
  std::condition_variable cv;
  bool workers_done = false;
  std::thread progress;
  if (options.progress) {
    progress = std::thread([&] {
      std::unique_lock<std::mutex> lock(mu);
      while (!workers_done) {
        DrawProgress(options, finished.load(), failed.load(),
                     absl::FromChrono(Clock::now() - start));
        cv.wait_for(lock, std::chrono::milliseconds(200));
      }
    });
  }
  {
    std::vector<std::thread> workers;
    workers.reserve(concurrency);
    for (int i = 0; i < concurrency; ++i) {
      workers.emplace_back(work, std::ref(results[i]));
    }
    for (std::thread& worker : workers) worker.join();
  }
  LoadResult result;
  result.elapsed = absl::FromChrono(Clock::now() - start);
  if (progress.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mu);
      workers_done = true;
    }
    cv.notify_all();
    progress.join();
    DrawProgress(options, finished.load(), failed.load(), result.elapsed);
    Err("\n");
  }
  for (WorkerResult& worker : results) {
    result.latency.Merge(worker.latency);
    result.ok += worker.ok;
    for (const auto& [code, n] : worker.errors) result.errors[code] += n;
    for (auto& [code, status] : worker.first_error) {
      result.first_error.emplace(code, status);
    }
  }
  result.done = result.latency.count();
  result.interrupted = Interrupted();
  return result;
}

void PrintFailures(const LoadResult& result, const LoadOptions& options) {
  for (const auto& [code, first] : result.first_error) {
    auto n = result.errors.find(code);
    absl::Status status(
        first.code(),
        absl::StrCat(n == result.errors.end() ? 0 : n->second, " ",
                     options.unit, ", the first: ", first.message()));
    if (std::optional<std::string> trace = TraceIdFromStatus(first)) {
      status = WithTraceId(status, *trace);
    }
    PrintError(status);
  }
}

std::string FormatSummary(const LoadResult& result,
                          const LoadOptions& options) {
  const int64_t failed = result.done - result.ok;
  std::string out = absl::StrFormat("%-11s %d (ok %d, failed %d", options.unit,
                                    result.done, result.ok, failed);
  if (!result.errors.empty()) {
    std::vector<std::string> parts;
    for (const auto& [code, n] : result.errors) {
      parts.push_back(absl::StrCat(code, " ", n));
    }
    absl::StrAppend(&out, ": ", absl::StrJoin(parts, ", "));
  }
  absl::StrAppend(&out, ")\n");
  const LatencyHistogram& l = result.latency;
  if (l.count() > 0) {
    absl::StrAppend(
        &out,
        absl::StrFormat(
            "latency     min %s  p50 %s  p90 %s  p99 %s  max %s  mean %s\n",
            HumanDuration(l.min()), HumanDuration(l.Quantile(0.5)),
            HumanDuration(l.Quantile(0.9)), HumanDuration(l.Quantile(0.99)),
            HumanDuration(l.max()), HumanDuration(l.mean())));
  }
  const double seconds = absl::ToDoubleSeconds(result.elapsed);
  absl::StrAppend(
      &out,
      absl::StrFormat("throughput  %.0f %s/s (%d in %s, concurrency %d)\n",
                      seconds > 0 ? result.done / seconds : 0, options.unit,
                      result.done, HumanDuration(result.elapsed),
                      std::max(options.concurrency, 1)));
  if (result.interrupted) absl::StrAppend(&out, "interrupted (Ctrl-C)\n");
  return out;
}

std::string FormatSummaryJson(
    const LoadResult& result, const LoadOptions& options,
    const std::vector<std::pair<std::string, std::string>>& extra) {
  std::string out = "{";
  for (const auto& [name, value] : extra) {
    absl::StrAppend(&out, JsonString(name), ":", value, ",");
  }
  const LatencyHistogram& l = result.latency;
  std::vector<std::string> errors;
  for (const auto& [code, n] : result.errors) {
    errors.push_back(absl::StrCat(JsonString(code), ":", n));
  }
  const double seconds = absl::ToDoubleSeconds(result.elapsed);
  absl::StrAppend(
      &out, "\"unit\":", JsonString(options.unit), ",\"count\":", result.done,
      ",\"ok\":", result.ok, ",\"errors\":{", absl::StrJoin(errors, ","), "}",
      absl::StrFormat(",\"latency_us\":{\"min\":%.1f,\"p50\":%.1f,\"p90\":%.1f,"
                      "\"p99\":%.1f,\"max\":%.1f,\"mean\":%.1f}",
                      Micros(l.min()), Micros(l.Quantile(0.5)),
                      Micros(l.Quantile(0.9)), Micros(l.Quantile(0.99)),
                      Micros(l.max()), Micros(l.mean())),
      absl::StrFormat(",\"elapsed_s\":%.6f,\"throughput_per_s\":%.1f", seconds,
                      seconds > 0 ? result.done / seconds : 0),
      ",\"concurrency\":", std::max(options.concurrency, 1),
      ",\"interrupted\":", result.interrupted ? "true" : "false", "}\n");
  return out;
}

}  // namespace natsgw::cli
