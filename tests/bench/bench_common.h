// What every natsgw-bench scenario shares: the run's configuration, a
// scenario's result, the measuring loops, a raw nats.c connection, a natsgw
// Connection with default options, and the table that names a scenario and
// says how its rounds are compared.
//
// A scenario is a function from Config to Result; a file of scenarios
// exports them as a list of Scenario (see CoreScenarios() and its peers at
// the end of this header), and natsgw_bench.cc runs the lists in order.
//
// Thread-safety: the functions are thread-compatible; RawConnection and
// CountingSink say their own.
#ifndef NATSGW_TESTS_BENCH_BENCH_COMMON_H_
#define NATSGW_TESTS_BENCH_BENCH_COMMON_H_

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "natsgw/connection.h"
#include "natsgw/span_sink.h"

namespace natsgw::bench {

using Clock = std::chrono::steady_clock;

// One measurement of one scenario.
struct Result {
  std::string scenario;
  int64_t ops = 0;
  double p50_us = 0;
  double p90_us = 0;
  double p99_us = 0;
  double max_us = 0;
  double ops_per_s = 0;
  // Further named figures (nanoseconds per call, bytes, allocations per
  // message, ratios against other scenarios), printed after the standard
  // fields.
  std::map<std::string, double> figures;
};

// The run's configuration, from the command line.
struct Config {
  std::string url;           // the nats-server every scenario uses
  std::string payload;       // every message's payload (--payload bytes)
  int requests = 0;          // measured calls of a sequential request scenario
  int publishes = 0;         // messages of a core publish scenario
  int async_calls = 0;       // measured calls of an rpc_async_* scenario
  int js_requests = 0;       // publishes of a synchronous JetStream scenario
  int js_messages = 0;       // messages of the other JetStream scenarios
  int js_prefetch = 0;       // js_consume's StreamConsumerOptions::prefetch
  int64_t overhead_ops = 0;  // calls per figure of an overhead_* scenario
  int warmup = 0;            // unmeasured operations before each scenario
  absl::Duration max;        // upper bound on each scenario's duration
};

// Latency percentiles of `latencies_ns` (sorted in place) and the
// throughput of its operations over `wall`.
Result Summarize(const std::string& scenario,
                 std::vector<int64_t>& latencies_ns, Clock::duration wall);

// A throughput-only result (latency fields 0).
Result Throughput(const std::string& scenario, int64_t ops,
                  Clock::duration wall);

// OK for NATS_OK, else UNAVAILABLE naming `what` and nats.c's text.
absl::Status Check(natsStatus s, absl::string_view what);

// Runs `op` `warmup` times, then up to `count` times or until `max` elapsed,
// recording each call's duration.
absl::StatusOr<Result> Measure(const std::string& scenario, int warmup,
                               int count, absl::Duration max,
                               const std::function<absl::Status()>& op);

// Measure() for publishes: throughput counts until `flush` confirms the
// server has every message (for JetStream: every ack arrived), not just
// until the last call returned.
absl::StatusOr<Result> MeasureThrough(
    const std::string& scenario, int warmup, int count, absl::Duration max,
    const std::function<absl::Status()>& op,
    const std::function<absl::Status()>& flush);

// MeasureThrough() sized by the core publish settings.
absl::StatusOr<Result> MeasurePublish(
    const std::string& scenario, const Config& cfg,
    const std::function<absl::Status()>& op,
    const std::function<absl::Status()>& flush);

// One raw nats.c connection, closed and destroyed with the object.
//
// Thread-safety: nc() may be used from any thread, as nats.c allows; the
// object itself is thread-compatible.
class RawConnection {
 public:
  // `send_asap`: natsOptions_SetSendAsap (every publish is written at once
  // instead of by nats.c's flusher thread within about 1 ms).
  static absl::StatusOr<std::unique_ptr<RawConnection>> Connect(
      const std::string& url, bool send_asap);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  natsConnection* nc() { return nc_; }

  // Answers every request on `subject` with its own payload (one
  // subscription; at most one per connection).
  absl::Status Echo(const std::string& subject);

 private:
  RawConnection() = default;
  static void OnEcho(natsConnection* nc, natsSubscription*, natsMsg* msg,
                     void*);
  natsConnection* nc_ = nullptr;
  natsSubscription* sub_ = nullptr;
};

// A SpanSink that counts the spans it is given and drops them: what natsgw
// itself spends on a span, without an exporter's.
//
// Thread-safety: thread-safe (one atomic counter).
class CountingSink final : public SpanSink {
 public:
  void OnEnd(const SpanData&) override {
    ended_.fetch_add(1, std::memory_order_relaxed);
  }
  int64_t ended() const { return ended_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> ended_{0};
};

// A Connection to cfg.url with default options; reporting spans to `sink`
// if set.
absl::StatusOr<std::unique_ptr<Connection>> Gateway(
    const Config& cfg, std::shared_ptr<SpanSink> sink = nullptr);

// How a scenario's rounds are compared to pick the one it reports.
enum class Pick {
  kP50,         // the median round by p50 latency (sequential calls)
  kThroughput,  // the median round by ops_per_s (everything else)
};

// A ratio reported beside a scenario: its figure over the same figure of
// `baseline` measured in the same run (with the same payload), printed as
// "<figure>_vs_<baseline>".
struct Comparison {
  enum class Figure { kP50, kP99, kOpsPerS };
  Figure figure;
  std::string baseline;
};

// One scenario of the table.
struct Scenario {
  std::string name;  // stable: results are compared across runs by name
  Pick pick = Pick::kP50;
  // True when the payload size does not matter (the in-process overhead
  // scenarios): run once, with the first --payload size.
  bool payload_independent = false;
  std::vector<Comparison> compare;
  std::function<absl::StatusOr<Result>(const Config&)> run;
};

// The reported (median) results of one payload size, in table order, with
// their ratios in Result::figures.
struct SizeResults {
  int payload_bytes = 0;
  std::vector<Result> results;
};

// The scenario lists, in the order they run (natsgw_bench.cc joins them).
std::vector<Scenario> CoreScenarios();       // natsgw_bench.cc
std::vector<Scenario> JetStreamScenarios();  // jetstream_bench.cc
std::vector<Scenario> GrpcScenarios();       // grpc_bench.cc, if gRPC is found
std::vector<Scenario> ScalingScenarios();    // scaling_bench.cc
std::vector<Scenario> OverheadScenarios();   // overhead_bench.cc

}  // namespace natsgw::bench

#endif  // NATSGW_TESTS_BENCH_BENCH_COMMON_H_
