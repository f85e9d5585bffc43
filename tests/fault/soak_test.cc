// soak_test.cc: the bounded soak (ctest label `soak`, outside the default
// run). A 3-node JetStream cluster carries a mixed, moderate load for a few
// minutes while a fault is injected every ~30 s, rotating through: kill -9
// of the stream leader (restarted a few seconds later), SIGSTOP for 10 s (of
// the server the RPC callers use, then of the stream leader, alternately),
// and a stream leader step-down through the JetStream API.
//
// Load:
//   RPC        an echo endpoint (natsgw::Connection::Serve, two workers) on
//              its own connection; three synchronous callers and one
//              asynchronous caller (RequestAsync, a few calls in flight) on
//              another, each call with a 1 s deadline.
//   JetStream  two sequential producers publishing through one
//              StreamPublisher to an R3 stream with deterministic message
//              IDs (LossChecker::MessageIdFor); a StreamConsumer whose
//              handler is the side effect (LossChecker::Processed); at the
//              end every stored message is read back by sequence
//              ($JS.API.STREAM.MSG.GET) into LossChecker::Read.
//
// Asserted:
//   - LossChecker::Verify(): nothing acknowledged lost, nothing unexpected,
//     no stored duplicate, no duplicate side effect, per-producer order; and
//     every stored message processed once the consumer has caught up.
//   - Every RPC ended exactly once, with OK (and its own payload echoed) or a
//     clear status (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, with
//     a message), no later than its deadline plus kCallMargin.
//   - Flat resident memory: after the warm-up (the first quarter of the
//     load), no sample of VmRSS exceeds the warm-up baseline by more than 10%
//     plus kRssAllowanceKib (8 MiB) for allocator noise and for the test's
//     own per-message bookkeeping (the loss checker and the consumer's
//     idempotency store grow by design, a few hundred bytes per message).
//   - Flat file descriptors: once a fault has healed (cluster healthy, every
//     connection connected again) the process has exactly as many open
//     descriptors as before the load; likewise at the end.
//   - Consistent counters: natsgw's Prometheus metrics agree with each other
//     and with the test's own counts (calls by status code, handler calls,
//     JetStream publishes stored + duplicate + failed, deliveries by outcome,
//     nothing left in flight or pending).
// Everything measured is printed as one `SOAK-RESULT {...}` JSON line.
//
// Duration: the load runs NATSGW_SOAK_SECONDS seconds (default 210, clamped
// to [10, 240]); with start-up, draining and read-back the whole test stays
// under 5 minutes.
//
//   ctest -L soak --output-on-failure
//   NATSGW_SOAK_SECONDS=30 ctest -L soak -V      # a quick run
#include <dirent.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "fault/loss_checker.h"
#include "gtest/gtest.h"
#include "harness/http_client.h"
#include "harness/metric_value.h"
#include "harness/nats_server.h"
#include "natsgw/connection.h"
#include "natsgw/connection_options.h"
#include "natsgw/jetstream.h"
#include "natsgw/logger.h"
#include "natsgw/message.h"
#include "natsgw/stream_config.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/stream_publisher.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

using ::natsgw::testing::HttpGet;
using ::natsgw::testing::HttpResponse;
using ::natsgw::testing::LossChecker;
using ::natsgw::testing::MetricSum;
using ::natsgw::testing::NatsCluster;
using ::natsgw::testing::NatsServerOptions;
using ::natsgw::testing::UnavailabilityMeter;

constexpr char kStream[] = "SOAK";
constexpr char kDurable[] = "soak-worker";
constexpr char kRpcSubject[] = "soak.Echo";

// The load is moderate on purpose: three nats-servers, five client
// connections and the test share a 2-core machine with other work, and the
// soak is about staying correct and flat over time, not about throughput.
constexpr int kProducers = 2;
constexpr double kPublishesPerSecondPerProducer = 20;
constexpr int kSyncCallers = 3;
constexpr double kCallsPerSecondPerCaller = 25;
constexpr double kAsyncCallsPerSecond = 25;
constexpr int kAsyncMaxInFlight = 4;
constexpr absl::Duration kCallTimeout = absl::Seconds(1);
// How late after its deadline a call may end: scheduling delays on a busy
// box, never a hang.
constexpr absl::Duration kCallMargin = absl::Seconds(1);

// Faults.
constexpr absl::Duration kFaultInterval = absl::Seconds(30);
constexpr absl::Duration kKillDowntime = absl::Seconds(3);
constexpr absl::Duration kPauseFor = absl::Seconds(10);
constexpr absl::Duration kHealTimeout = absl::Seconds(60);

// Resident memory may grow this much after the warm-up (see file comment).
constexpr double kRssGrowthRatio = 0.10;
constexpr int64_t kRssAllowanceKib = 8 * 1024;
constexpr absl::Duration kSampleEvery = absl::Seconds(2);

absl::Duration SoakDuration() {
  int seconds = 210;
  if (const char* env = std::getenv("NATSGW_SOAK_SECONDS"); env != nullptr) {
    int parsed = 0;
    if (absl::SimpleAtoi(env, &parsed)) seconds = parsed;
  }
  return absl::Seconds(std::clamp(seconds, 10, 240));
}

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

// Sleeps until `until`, or less if `stop` becomes true (checked every
// 100 ms).
void SleepUntil(absl::Time until, const std::atomic<bool>* stop = nullptr) {
  while (stop == nullptr || !stop->load()) {
    const absl::Duration left = until - absl::Now();
    if (left <= absl::ZeroDuration()) return;
    absl::SleepFor(std::min(left, absl::Milliseconds(100)));
  }
}

// Paces a loop at `per_second` iterations without bursting to catch up after
// a stall (a caller blocked by a fault resumes at the normal rate).
// Thread-compatible: one per loop.
class Pacer {
 public:
  explicit Pacer(double per_second)
      : period_(absl::Seconds(1.0 / per_second)), next_(absl::Now()) {}
  void Wait(const std::atomic<bool>& stop) {
    const absl::Time now = absl::Now();
    if (next_ < now) next_ = now;
    SleepUntil(next_, &stop);
    next_ += period_;
  }

 private:
  const absl::Duration period_;
  absl::Time next_;
};

// /proc readers. The sampler thread and the descriptor checks on the main
// thread both open files under /proc; proc_mu keeps one from counting the
// other's descriptor.
std::mutex proc_mu;

int64_t ResidentKib() {
  std::lock_guard<std::mutex> lock(proc_mu);
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view value = line;
    if (!absl::ConsumePrefix(&value, "VmRSS:")) continue;
    value = absl::StripAsciiWhitespace(value);
    absl::ConsumeSuffix(&value, "kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &kib)) return kib;
  }
  return -1;
}

int OpenFdsLocked() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;  // the directory stream's own descriptor
}

int OpenFds() {
  std::lock_guard<std::mutex> lock(proc_mu);
  return OpenFdsLocked();
}

// "fd -> target" for every open descriptor, for failure messages.
std::string DescribeFds() {
  std::lock_guard<std::mutex> lock(proc_mu);
  std::vector<std::string> out;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return "(cannot list /proc/self/fd)";
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    char target[512] = {};
    const std::string path = absl::StrCat("/proc/self/fd/", entry->d_name);
    const ssize_t n = readlink(path.c_str(), target, sizeof(target) - 1);
    out.push_back(absl::StrCat(entry->d_name, "->",
                               n > 0 ? absl::string_view(target, n) : "?"));
  }
  closedir(dir);
  return absl::StrJoin(out, " ");
}

uint64_t AsCount(double value) { return static_cast<uint64_t>(value + 0.5); }

// A status code as an index into per-code counters.
constexpr int kCodes = 17;  // absl::StatusCode 0 (OK) .. 16 (UNAUTHENTICATED)
int CodeIndex(absl::StatusCode code) {
  const int i = static_cast<int>(code);
  return i >= 0 && i < kCodes ? i
                              : static_cast<int>(absl::StatusCode::kUnknown);
}

// What became of every RPC: ended calls by status code, and anything that
// breaks the contract (a wrong reply, an unclear status, a late end, a
// second callback, a call that never ended).
//
// Thread-safe: atomics, and mu_ for the problem list. Async() slots are
// preallocated so the bookkeeping does not itself grow during the soak.
class RpcLedger {
 public:
  explicit RpcLedger(size_t async_capacity)
      : async_capacity_(async_capacity),
        async_ends_(new std::atomic<uint8_t>[async_capacity]) {
    for (size_t i = 0; i < async_capacity; ++i) async_ends_[i].store(0);
  }

  size_t async_capacity() const { return async_capacity_; }
  UnavailabilityMeter& meter() { return meter_; }

  void Started() { started_.fetch_add(1); }

  // A call ended with `result` after `took`; `expected` is its payload.
  void Ended(const absl::StatusOr<Message>& result, absl::string_view expected,
             absl::Duration took) {
    ended_.fetch_add(1);
    by_code_[CodeIndex(result.status().code())].fetch_add(1);
    const int64_t took_us = absl::ToInt64Microseconds(took);
    int64_t seen = longest_us_.load();
    while (took_us > seen &&
           !longest_us_.compare_exchange_weak(seen, took_us)) {
    }
    if (took > kCallTimeout + kCallMargin) {
      Problem(late_, absl::StrCat("call '", expected, "' ended after ",
                                  absl::FormatDuration(took), " with ",
                                  result.status().ToString()));
    }
    if (result.ok()) {
      if (result->data != expected) {
        Problem(wrong_, absl::StrCat("call '", expected, "' got reply '",
                                     result->data, "'"));
        meter_.Failure();
      } else {
        meter_.Success();
      }
      return;
    }
    meter_.Failure();
    const absl::StatusCode code = result.status().code();
    const bool clear = (code == absl::StatusCode::kUnavailable ||
                        code == absl::StatusCode::kDeadlineExceeded ||
                        code == absl::StatusCode::kResourceExhausted) &&
                       !result.status().message().empty();
    if (!clear) {
      Problem(unclear_, absl::StrCat("call '", expected, "' ended with ",
                                     result.status().ToString()));
    }
  }

  // Async call `index` ended; counts a second end as a problem.
  void AsyncEnded(size_t index, const absl::StatusOr<Message>& result,
                  absl::string_view expected, absl::Duration took) {
    if (async_ends_[index].fetch_add(1) != 0) {
      Problem(twice_, absl::StrCat("async call ", index, " ended twice"));
      return;
    }
    Ended(result, expected, took);
  }

  // Async calls among the first `issued` that did not end exactly once.
  uint64_t AsyncNotEndedOnce(size_t issued) const {
    uint64_t bad = 0;
    for (size_t i = 0; i < issued && i < async_capacity_; ++i) {
      if (async_ends_[i].load() != 1) ++bad;
    }
    return bad;
  }

  uint64_t started() const { return started_.load(); }
  uint64_t ended() const { return ended_.load(); }
  uint64_t with(absl::StatusCode code) const {
    return by_code_[CodeIndex(code)].load();
  }
  uint64_t errors() const { return ended() - with(absl::StatusCode::kOk); }
  uint64_t late() const { return late_.load(); }
  uint64_t wrong() const { return wrong_.load(); }
  uint64_t unclear() const { return unclear_.load(); }
  uint64_t twice() const { return twice_.load(); }
  absl::Duration longest() const {
    return absl::Microseconds(longest_us_.load());
  }
  std::string problems() const {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::StrJoin(problems_, "\n");
  }
  // "UNAVAILABLE:3 DEADLINE_EXCEEDED:5" for the codes that occurred.
  std::string CodeSummary() const {
    std::vector<std::string> parts;
    for (int i = 0; i < kCodes; ++i) {
      if (const uint64_t n = by_code_[i].load(); n > 0) {
        parts.push_back(absl::StrCat(
            absl::StatusCodeToString(static_cast<absl::StatusCode>(i)), ":",
            n));
      }
    }
    return absl::StrJoin(parts, " ");
  }

 private:
  void Problem(std::atomic<uint64_t>& counter, std::string text) {
    counter.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu_);
    if (problems_.size() < 20) problems_.push_back(std::move(text));
  }

  const size_t async_capacity_;
  std::unique_ptr<std::atomic<uint8_t>[]> async_ends_;
  std::array<std::atomic<uint64_t>, kCodes> by_code_{};
  std::atomic<uint64_t> started_{0};
  std::atomic<uint64_t> ended_{0};
  std::atomic<uint64_t> late_{0};
  std::atomic<uint64_t> wrong_{0};
  std::atomic<uint64_t> unclear_{0};
  std::atomic<uint64_t> twice_{0};
  std::atomic<int64_t> longest_us_{0};
  UnavailabilityMeter meter_;
  mutable std::mutex mu_;
  std::vector<std::string> problems_;  // guarded by mu_; first 20
};

// Bounds the asynchronous caller's calls in flight. Thread-safe.
class InFlightGate {
 public:
  // Waits (up to 1 s per try, while !stop) for room; false if stopped.
  bool Enter(const std::atomic<bool>& stop) {
    std::unique_lock<std::mutex> lock(mu_);
    while (in_flight_ >= kAsyncMaxInFlight) {
      if (stop.load()) return false;
      cv_.wait_for(lock, std::chrono::milliseconds(100));
    }
    ++in_flight_;
    return true;
  }
  void Leave() {
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
    cv_.notify_all();
  }
  // Waits until nothing is in flight; false after `timeout`.
  bool WaitIdle(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                        [&] { return in_flight_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;  // guarded by mu_
};

// The JetStream producers' own counts, to hold natsgw's metrics against.
// Thread-safe (atomics).
struct PublishCounts {
  std::atomic<uint64_t> attempted{0};
  std::atomic<uint64_t> stored{0};
  std::atomic<uint64_t> duplicate{0};
  std::atomic<uint64_t> failed{0};
  std::atomic<int64_t> longest_us{0};
  std::mutex mu;
  std::vector<std::string> failures;  // guarded by mu; first 10
};

// One /proc sample. Plain value.
struct Sample {
  double at_s = 0;
  int64_t rss_kib = 0;
  int fds = 0;
};

// Samples VmRSS and the descriptor count every kSampleEvery on its own
// thread, into a vector reserved up front (so sampling does not allocate).
// Thread-safe: samples() may be called while it runs.
class ProcSampler {
 public:
  ProcSampler(absl::Time origin, absl::Duration run_for) : origin_(origin) {
    samples_.reserve(static_cast<size_t>(run_for / kSampleEvery) + 64);
    thread_ = std::thread([this] { Run(); });
  }
  ~ProcSampler() { Stop(); }

  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  std::vector<Sample> samples() const {
    std::lock_guard<std::mutex> lock(mu_);
    return samples_;
  }

 private:
  void Run() {
    while (!stop_.load()) {
      Sample s;
      s.at_s = Seconds(absl::Now() - origin_);
      s.rss_kib = ResidentKib();
      s.fds = OpenFds();
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (samples_.size() < samples_.capacity()) samples_.push_back(s);
      }
      SleepUntil(absl::Now() + kSampleEvery, &stop_);
    }
  }

  const absl::Time origin_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::vector<Sample> samples_;  // guarded by mu_
  std::thread thread_;
};

// Joins the load threads when the test ends, however it ends. Used by the
// test's main thread only.
class LoadThreads {
 public:
  explicit LoadThreads(std::atomic<bool>& stop) : stop_(stop) {}
  ~LoadThreads() { Join(); }
  template <typename F>
  void Add(F&& f) {
    threads_.emplace_back(std::forward<F>(f));
  }
  void Join() {
    stop_.store(true);
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::atomic<bool>& stop_;
  std::vector<std::thread> threads_;
};

// One injected fault, for the report. Plain value.
struct FaultRecord {
  std::string kind;
  std::string node;
  double at_s = 0;
  double healed_after_s = 0;
  int fds_after = 0;
};

// Owns the cluster; its helpers are used from the test's main thread only.
class SoakTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      std::cerr << "---- nats-server cluster logs ----\n"
                << cluster_->LogTails(40) << "---- end of logs ----"
                << std::endl;
    }
  }

  ConnectionOptions Options(const std::string& name,
                            std::shared_ptr<prometheus::Registry> registry) {
    ConnectionOptions options;
    options.servers = cluster_->url_list();
    options.name = name;
    options.registry = std::move(registry);
    // Notice a paused server within ~2-3 s, and come back quickly.
    options.ping_interval = absl::Seconds(1);
    options.max_pings_out = 2;
    options.reconnect.wait = absl::Milliseconds(100);
    options.logger =
        std::make_shared<StderrLogger>(absl::LogSeverity::kWarning);
    return options;
  }

  std::unique_ptr<Connection> Connect(
      const std::string& name, std::shared_ptr<prometheus::Registry> registry) {
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Create(Options(name, std::move(registry)));
    EXPECT_TRUE(conn.ok()) << name << ": " << conn.status();
    return conn.ok() ? *std::move(conn) : nullptr;
  }

  // The node index leading the stream, waiting (bounded) for an election.
  absl::StatusOr<int> StreamLeader(JetStream& js) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    absl::Status last = absl::UnavailableError("no attempt");
    while (absl::Now() < deadline) {
      absl::StatusOr<StreamState> state = js.GetStream(kStream);
      if (state.ok() && !state->leader.empty()) {
        const int index = cluster_->IndexOf(state->leader);
        if (index >= 0) return index;
        last = absl::NotFoundError(
            absl::StrCat("unknown leader '", state->leader, "'"));
      } else if (!state.ok()) {
        last = state.status();
      } else {
        last = absl::UnavailableError("stream has no leader yet");
      }
      absl::SleepFor(absl::Milliseconds(250));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("no stream leader within 30 s: ", last.ToString()));
  }

  // Waits (up to 30 s) until every connection is connected again.
  void WaitConnected(const std::vector<Connection*>& conns) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    for (Connection* c : conns) {
      while (c->state() != ConnectionState::kConnected &&
             absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(100));
      }
      EXPECT_EQ(c->state(), ConnectionState::kConnected)
          << c->options().name << " did not reconnect within 30 s";
    }
  }

  // Once every connection is connected again, waits (bounded) until the
  // process holds `baseline` descriptors; returns the count seen last.
  int WaitHealedFds(const std::vector<Connection*>& conns, int baseline) {
    WaitConnected(conns);
    // A descriptor may briefly be open on a natsgw thread (a reconnect
    // finishing): allow it a few seconds to settle.
    int fds = OpenFds();
    const absl::Time settle = absl::Now() + absl::Seconds(10);
    while (fds != baseline && absl::Now() < settle) {
      absl::SleepFor(absl::Milliseconds(200));
      fds = OpenFds();
    }
    return fds;
  }

  // The node `conn` is connected to, if any.
  std::optional<int> NodeOf(const Connection& conn) const {
    const std::string url = conn.connected_url();
    for (int i = 0; i < cluster_->size(); ++i) {
      if (url == cluster_->node(i).url()) return i;
    }
    return std::nullopt;
  }

  std::unique_ptr<NatsCluster> cluster_;
};

// The stream's messages and last sequence as node `i`'s /jsz reports them.
absl::StatusOr<std::pair<uint64_t, uint64_t>> NodeStreamState(
    const testing::NatsServer& node) {
  absl::StatusOr<HttpResponse> r =
      HttpGet("127.0.0.1", node.monitor_port(),
              "/jsz?accounts=true&streams=true", absl::Seconds(5));
  if (!r.ok()) return r.status();
  if (r->status != 200) {
    return absl::UnavailableError(absl::StrCat("/jsz answered ", r->status));
  }
  nlohmann::json j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded()) return absl::DataLossError("/jsz: not JSON");
  for (const auto& account : j.value("account_details", nlohmann::json())) {
    for (const auto& stream :
         account.value("stream_detail", nlohmann::json())) {
      if (stream.value("name", "") != kStream) continue;
      const nlohmann::json state = stream.value("state", nlohmann::json());
      return std::make_pair(state.value("messages", uint64_t{0}),
                            state.value("last_seq", uint64_t{0}));
    }
  }
  return absl::NotFoundError("stream not on this node");
}

TEST_F(SoakTest, MixedLoadWithRotatingFaultsStaysCorrectAndFlat) {
  const absl::Duration duration = SoakDuration();
  const absl::Duration warmup = duration / 4;
  std::cout << "soak: load for " << absl::FormatDuration(duration)
            << ", warm-up " << absl::FormatDuration(warmup) << std::endl;

  // Servers notice a paused peer within ~2-3 s, as the clients do.
  NatsServerOptions base;
  base.extra_config = "ping_interval: \"1s\"\nping_max: 2\n";
  {
    absl::StatusOr<std::unique_ptr<NatsCluster>> cluster =
        NatsCluster::Start(3, base);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
  }

  // Bookkeeping first, so it outlives every connection and callback.
  LossChecker checker;
  UnavailabilityMeter js_meter;
  PublishCounts published;
  const size_t async_capacity =
      static_cast<size_t>(Seconds(duration) * kAsyncCallsPerSecond * 1.2 + 100);
  RpcLedger rpc(async_capacity);
  InFlightGate gate;
  std::atomic<uint64_t> handler_calls{0};
  std::atomic<uint64_t> deliveries_handled{0};
  std::atomic<uint64_t> unknown_deliveries{0};
  std::vector<FaultRecord> faults;

  // One registry per role, so each component's metrics are attributable.
  auto control_registry = std::make_shared<prometheus::Registry>();
  auto responder_registry = std::make_shared<prometheus::Registry>();
  auto caller_registry = std::make_shared<prometheus::Registry>();
  auto producer_registry = std::make_shared<prometheus::Registry>();
  auto consumer_registry = std::make_shared<prometheus::Registry>();

  std::unique_ptr<Connection> control =
      Connect("soak-control", control_registry);
  std::unique_ptr<Connection> responder =
      Connect("soak-responder", responder_registry);
  std::unique_ptr<Connection> callers =
      Connect("soak-callers", caller_registry);
  std::unique_ptr<Connection> producer =
      Connect("soak-producer", producer_registry);
  std::unique_ptr<Connection> worker =
      Connect("soak-consumer", consumer_registry);
  ASSERT_TRUE(control && responder && callers && producer && worker);
  const std::vector<Connection*> conns = {control.get(), responder.get(),
                                          callers.get(), producer.get(),
                                          worker.get()};

  absl::StatusOr<std::unique_ptr<JetStream>> control_js =
      JetStream::Create(*control);
  absl::StatusOr<std::unique_ptr<JetStream>> producer_js =
      JetStream::Create(*producer);
  absl::StatusOr<std::unique_ptr<JetStream>> worker_js =
      JetStream::Create(*worker);
  ASSERT_TRUE(control_js.ok() && producer_js.ok() && worker_js.ok());

  StreamConfig stream;
  stream.name = kStream;
  stream.subjects = {"soak.events.>"};
  stream.replicas = 3;
  {
    // A freshly formed cluster may still be placing its meta leader.
    absl::StatusOr<StreamState> created;
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    do {
      created = (*control_js)->EnsureStream(stream);
      if (!created.ok()) absl::SleepFor(absl::Milliseconds(500));
    } while (!created.ok() && absl::Now() < deadline);
    ASSERT_TRUE(created.ok()) << created.status();
  }

  // RPC: an echo endpoint.
  ServeOptions serve_options;
  serve_options.workers = 2;
  serve_options.max_in_flight = 16;
  absl::StatusOr<std::unique_ptr<Subscription>> endpoint = responder->Serve(
      kRpcSubject, "q",
      [&](const Message& request) -> absl::StatusOr<Reply> {
        handler_calls.fetch_add(1);
        return Reply{request.data, {}};
      },
      serve_options);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();

  // JetStream: retries outlast a leader election (budget ~39 s, well inside
  // the stream's 2 min duplicate window).
  StreamPublisherOptions publisher_options;
  publisher_options.stream = kStream;
  publisher_options.attempt_timeout = absl::Seconds(2);
  publisher_options.retry.max_attempts = 12;
  publisher_options.retry.initial_backoff = absl::Milliseconds(100);
  publisher_options.retry.max_backoff = absl::Seconds(2);
  absl::StatusOr<std::unique_ptr<StreamPublisher>> publisher =
      StreamPublisher::Create(**producer_js, publisher_options);
  ASSERT_TRUE(publisher.ok()) << publisher.status();

  StreamConsumerOptions consumer_options;
  consumer_options.consumer.stream = kStream;
  consumer_options.consumer.durable = kDurable;
  consumer_options.consumer.ack_wait = absl::Seconds(10);
  consumer_options.workers = 2;
  consumer_options.max_deliveries = 10;
  consumer_options.nak_backoff.max_backoff = absl::Seconds(5);
  absl::StatusOr<std::unique_ptr<StreamConsumer>> consumer =
      StreamConsumer::Create(
          **worker_js, consumer_options,
          [&](const Delivery& d) -> DeliveryOutcome {
            deliveries_handled.fetch_add(1);
            const auto id = LossChecker::ParseMessageId(d.message().message_id);
            if (!id) {
              unknown_deliveries.fetch_add(1);
            } else {
              checker.Processed(id->first, id->second);
            }
            return DeliveryOutcome::Ack();
          });
  ASSERT_TRUE(consumer.ok()) << consumer.status();

  // The descriptor baseline: everything connected, before any load.
  WaitConnected(conns);
  const int fds_start = OpenFds();
  const absl::Time origin = absl::Now();
  const absl::Time load_end = origin + duration;
  ProcSampler sampler(origin, duration + absl::Minutes(3));

  std::atomic<bool> stop{false};
  LoadThreads load(stop);
  const uint64_t max_calls_per_caller =
      static_cast<uint64_t>(Seconds(duration) * kCallsPerSecondPerCaller * 1.2);
  for (int caller = 0; caller < kSyncCallers; ++caller) {
    load.Add([&, caller] {
      Pacer pacer(kCallsPerSecondPerCaller);
      for (uint64_t n = 0; n < max_calls_per_caller && !stop.load(); ++n) {
        pacer.Wait(stop);
        if (stop.load()) break;
        const std::string payload = absl::StrCat("c", caller, "-", n);
        rpc.Started();
        const absl::Time start = absl::Now();
        absl::StatusOr<Message> reply =
            callers->Request(kRpcSubject, payload, kCallTimeout);
        rpc.Ended(reply, payload, absl::Now() - start);
      }
    });
  }
  std::atomic<size_t> async_issued{0};
  load.Add([&] {
    Pacer pacer(kAsyncCallsPerSecond);
    for (size_t i = 0; i < rpc.async_capacity() && !stop.load(); ++i) {
      pacer.Wait(stop);
      if (!gate.Enter(stop)) break;
      std::string payload = absl::StrCat("a-", i);
      rpc.Started();
      async_issued.store(i + 1);
      const absl::Time start = absl::Now();
      absl::StatusOr<SendInfo> sent = callers->RequestAsync(
          kRpcSubject, payload, kCallTimeout, {},
          [&rpc, &gate, i, payload, start](absl::StatusOr<Message> reply) {
            rpc.AsyncEnded(i, reply, payload, absl::Now() - start);
            gate.Leave();
          });
      if (!sent.ok()) {
        // Nothing was sent and the callback will not run: the call ends
        // here, with this status.
        rpc.AsyncEnded(i, sent.status(), payload, absl::Now() - start);
        gate.Leave();
      }
    }
  });
  const uint64_t max_publishes_per_producer = static_cast<uint64_t>(
      Seconds(duration) * kPublishesPerSecondPerProducer * 1.2);
  for (int p = 0; p < kProducers; ++p) {
    load.Add([&, p] {
      Pacer pacer(kPublishesPerSecondPerProducer);
      const std::string subject = absl::StrCat("soak.events.p", p);
      for (uint64_t c = 0; c < max_publishes_per_producer && !stop.load();
           ++c) {
        pacer.Wait(stop);
        if (stop.load()) break;
        const std::string id = LossChecker::MessageIdFor(p, c);
        StreamPublishOptions options;
        options.message_id = id;
        checker.Attempted(p, c);
        published.attempted.fetch_add(1);
        const absl::Time start = absl::Now();
        absl::StatusOr<PublishAck> ack =
            (*publisher)->Publish(subject, id, options);
        const int64_t took = absl::ToInt64Microseconds(absl::Now() - start);
        int64_t seen = published.longest_us.load();
        while (took > seen &&
               !published.longest_us.compare_exchange_weak(seen, took)) {
        }
        if (ack.ok()) {
          checker.Acked(p, c, ack->sequence, ack->duplicate);
          (ack->duplicate ? published.duplicate : published.stored)
              .fetch_add(1);
          js_meter.Success();
        } else {
          checker.Failed(p, c, ack.status());
          published.failed.fetch_add(1);
          js_meter.Failure();
          std::lock_guard<std::mutex> lock(published.mu);
          if (published.failures.size() < 10) {
            published.failures.push_back(
                absl::StrCat(id, ": ", ack.status().ToString()));
          }
        }
      }
    });
  }

  // Faults, from this thread: a restarted server is tied to the thread that
  // starts it (see harness/nats_server.h), and this one outlives them all.
  const absl::Duration interval = std::min(kFaultInterval, duration / 4);
  const std::array<std::string, 3> kinds = {"kill", "pause", "stepdown"};
  auto estimate = [](const std::string& kind) {
    return kind == "kill"    ? absl::Seconds(10)
           : kind == "pause" ? absl::Seconds(16)
                             : absl::Seconds(5);
  };
  absl::Time next = origin + interval;
  int pauses = 0;
  for (int k = 0; k < 64; ++k) {
    const std::string& kind = kinds[k % kinds.size()];
    const absl::Time start = std::max(next, absl::Now());
    // A fault that would not heal before the load ends is skipped (the next
    // kind may still fit: short runs still see every kind they can).
    if (start + estimate(kind) > load_end) continue;
    SleepUntil(start);
    FaultRecord record;
    record.kind = kind;
    record.at_s = Seconds(absl::Now() - origin);
    absl::StatusOr<int> leader = StreamLeader(**control_js);
    ASSERT_TRUE(leader.ok()) << leader.status();
    int target = *leader;
    if (kind == "pause" && pauses++ % 2 == 0) {
      // Every other pause stalls the server the RPC callers use instead (if
      // it is another one): their calls in flight must still end by their
      // deadline, and new ones succeed once the client has moved.
      target = NodeOf(*callers).value_or(target);
    }
    testing::NatsServer& node = cluster_->node(target);
    record.node = node.server_name();
    js_meter.Fault();
    rpc.meter().Fault();
    if (kind == "kill") {
      ASSERT_TRUE(node.Kill().ok());
      absl::SleepFor(kKillDowntime);
      absl::Status restarted = node.Restart();
      ASSERT_TRUE(restarted.ok()) << restarted;
    } else if (kind == "pause") {
      ASSERT_TRUE(node.Pause().ok());
      absl::SleepFor(kPauseFor);
      ASSERT_TRUE(node.Resume().ok());
    } else {
      const std::string subject =
          absl::StrCat("$JS.API.STREAM.LEADER.STEPDOWN.", kStream);
      absl::StatusOr<Message> answer =
          control->Request(subject, "", absl::Seconds(5));
      ASSERT_TRUE(answer.ok()) << answer.status();
      const nlohmann::json j =
          nlohmann::json::parse(answer->data, nullptr, false);
      ASSERT_TRUE(!j.is_discarded() && j.value("success", false))
          << "step-down refused: " << answer->data;
      // Healed once another node leads the stream.
      const absl::Time deadline = absl::Now() + absl::Seconds(30);
      absl::StatusOr<int> now_leader = StreamLeader(**control_js);
      while (now_leader.ok() && *now_leader == *leader &&
             absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(250));
        now_leader = StreamLeader(**control_js);
      }
      EXPECT_TRUE(now_leader.ok() && *now_leader != *leader)
          << "the stream leader did not change after a step-down";
    }
    absl::Status healthy = cluster_->WaitHealthy(kHealTimeout);
    ASSERT_TRUE(healthy.ok()) << healthy;
    ASSERT_TRUE(StreamLeader(**control_js).ok());
    record.fds_after = WaitHealedFds(conns, fds_start);
    record.healed_after_s = Seconds(absl::Now() - origin) - record.at_s;
    EXPECT_EQ(record.fds_after, fds_start)
        << "descriptors after healing " << kind << " of " << record.node << ": "
        << DescribeFds();
    std::cout << "soak: t=" << absl::StrFormat("%.1f", record.at_s) << "s "
              << kind << " " << record.node << ", healed after "
              << absl::StrFormat("%.1f", record.healed_after_s) << " s, fds "
              << record.fds_after << " (baseline " << fds_start << "), rpc "
              << rpc.ended() << " calls, js " << published.attempted.load()
              << " publishes" << std::endl;
    faults.push_back(record);
    next += interval;
  }
  SleepUntil(load_end);

  // Drain: callers and producers stop; every call and publish ends.
  stop.store(true);
  EXPECT_TRUE(gate.WaitIdle(kCallTimeout + kCallMargin + absl::Seconds(5)))
      << "asynchronous calls still in flight";
  load.Join();
  const absl::Duration loaded_for = absl::Now() - origin;

  // The consumer catches up with everything stored (the stream is asked
  // again each time: a publish that gave up may still have been stored).
  absl::StatusOr<StreamState> final_state;
  {
    const absl::Time deadline = absl::Now() + absl::Seconds(45);
    do {
      final_state = (*control_js)->GetStream(kStream);
      if (final_state.ok() &&
          checker.Check().processed_distinct >= final_state->messages) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(500));
    } while (absl::Now() < deadline);
  }
  EXPECT_TRUE((*consumer)->Stop(absl::Seconds(10)).ok());
  final_state = (*control_js)->GetStream(kStream);
  ASSERT_TRUE(final_state.ok()) << final_state.status();

  // End-of-run /proc figures, taken healthy and before the read-back (which
  // only grows the checker).
  const int fds_end = WaitHealedFds(conns, fds_start);
  const int64_t rss_end = ResidentKib();
  sampler.Stop();
  EXPECT_EQ(fds_end, fds_start) << "descriptors at the end: " << DescribeFds();

  // Read back every stored message by sequence.
  uint64_t read_errors = 0;
  uint64_t header_mismatches = 0;
  const std::string get_subject =
      absl::StrCat("$JS.API.STREAM.MSG.GET.", kStream);
  for (uint64_t seq = final_state->first_sequence;
       seq != 0 && seq <= final_state->last_sequence; ++seq) {
    absl::StatusOr<Message> answer;
    for (int attempt = 0; attempt < 3; ++attempt) {
      answer = control->Request(
          get_subject, absl::StrCat("{\"seq\":", seq, "}"), absl::Seconds(5));
      if (answer.ok()) break;
    }
    nlohmann::json j = answer.ok()
                           ? nlohmann::json::parse(answer->data, nullptr, false)
                           : nlohmann::json();
    std::string data;
    std::string headers;
    if (!answer.ok() || j.is_discarded() || !j.contains("message") ||
        !absl::Base64Unescape(j["message"].value("data", ""), &data)) {
      if (++read_errors <= 5) {
        ADD_FAILURE() << "reading sequence " << seq << ": "
                      << (answer.ok() ? answer->data
                                      : answer.status().ToString());
      }
      continue;
    }
    absl::Base64Unescape(j["message"].value("hdrs", ""), &headers);
    const auto id = LossChecker::ParseMessageId(data);
    if (!id) {
      checker.ReadUnknown(data, seq);
      continue;
    }
    checker.Read(id->first, id->second, seq);
    if (!absl::StrContains(headers,
                           absl::StrCat("Nats-Msg-Id: ", data, "\r\n"))) {
      ++header_mismatches;
    }
  }

  // Every node holds the same stream (no split brain after the faults).
  {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    std::string disagreement;
    do {
      disagreement.clear();
      for (int i = 0; i < cluster_->size(); ++i) {
        auto s = NodeStreamState(cluster_->node(i));
        if (!s.ok() || s->first != final_state->messages ||
            s->second != final_state->last_sequence) {
          absl::StrAppend(
              &disagreement, cluster_->node(i).server_name(), ": ",
              s.ok() ? absl::StrCat(s->first, " messages, last ", s->second)
                     : s.status().ToString(),
              "; ");
        }
      }
      if (!disagreement.empty()) absl::SleepFor(absl::Milliseconds(500));
    } while (!disagreement.empty() && absl::Now() < deadline);
    EXPECT_TRUE(disagreement.empty())
        << "nodes differ from the leader's " << final_state->messages
        << " messages, last " << final_state->last_sequence << ": "
        << disagreement;
  }

  // --- Loss checker.
  const LossChecker::Report report = checker.Check();
  std::cout << report.ToString() << std::endl;
  EXPECT_TRUE(checker.Verify().ok());
  EXPECT_EQ(report.unprocessed_count, 0u) << "stored but never processed";
  EXPECT_EQ(read_errors, 0u);
  EXPECT_EQ(header_mismatches, 0u) << "payload and Nats-Msg-Id disagree";
  EXPECT_EQ(unknown_deliveries.load(), 0u);
  EXPECT_EQ(report.read_distinct + report.stored_duplicates,
            final_state->messages);
  EXPECT_GT(report.acked, 0u);
  EXPECT_EQ(report.attempted, published.attempted.load());
  EXPECT_EQ(report.acked, published.stored.load() + published.duplicate.load());
  EXPECT_EQ(report.failed, published.failed.load());
  {
    std::lock_guard<std::mutex> lock(published.mu);
    if (!published.failures.empty()) {
      std::cout << "soak: failed publishes (allowed, reported): "
                << absl::StrJoin(published.failures, "; ") << std::endl;
    }
  }

  // --- RPC: every call ended exactly once, clearly and in time.
  const size_t issued = async_issued.load();
  EXPECT_EQ(rpc.started(), rpc.ended()) << "calls that never ended";
  EXPECT_EQ(rpc.AsyncNotEndedOnce(issued), 0u);
  EXPECT_EQ(rpc.twice(), 0u);
  EXPECT_EQ(rpc.late(), 0u);
  EXPECT_EQ(rpc.wrong(), 0u);
  EXPECT_EQ(rpc.unclear(), 0u);
  EXPECT_GT(rpc.with(absl::StatusCode::kOk), 0u);
  if (!rpc.problems().empty()) std::cout << rpc.problems() << std::endl;

  // --- Counters: natsgw's metrics against each other and the test's counts.
  const std::map<std::string, std::string> rpc_subject = {
      {"subject", kRpcSubject}};
  const char kClientCalls[] = "natsgw_client_request_duration_seconds";
  EXPECT_EQ(AsCount(MetricSum(*caller_registry, kClientCalls, rpc_subject)),
            rpc.ended());
  for (int i = 0; i < kCodes; ++i) {
    const auto code = static_cast<absl::StatusCode>(i);
    EXPECT_EQ(AsCount(MetricSum(*caller_registry, kClientCalls,
                                {{"subject", kRpcSubject},
                                 {"code", absl::StatusCodeToString(code)}})),
              rpc.with(code))
        << absl::StatusCodeToString(code);
  }
  EXPECT_EQ(AsCount(MetricSum(*caller_registry, "natsgw_errors_total",
                              {{"operation", "request"}})),
            rpc.errors());
  EXPECT_EQ(MetricSum(*caller_registry, "natsgw_client_in_flight", rpc_subject),
            0);
  const uint64_t handled =
      AsCount(MetricSum(*responder_registry,
                        "natsgw_server_handler_duration_seconds", rpc_subject));
  const uint64_t served =
      AsCount(MetricSum(*responder_registry,
                        "natsgw_server_request_duration_seconds", rpc_subject));
  EXPECT_EQ(handled, handler_calls.load());
  // A reply may be lost on the way back (its caller then timed out), so the
  // server handled at least what the callers got, and at most what they
  // sent; every request it received ended in the request histogram.
  EXPECT_LE(rpc.with(absl::StatusCode::kOk), handled);
  EXPECT_LE(handled, rpc.ended());
  EXPECT_GE(served, handled);
  EXPECT_EQ(AsCount(MetricSum(*responder_registry,
                              "natsgw_messages_received_total", rpc_subject)),
            served);

  const std::map<std::string, std::string> js_stream = {{"stream", kStream}};
  auto js_published = [&](const std::string& result) {
    return AsCount(MetricSum(*producer_registry, "natsgw_js_published_total",
                             {{"stream", kStream}, {"result", result}}));
  };
  EXPECT_EQ(js_published("stored"), published.stored.load());
  EXPECT_EQ(js_published("duplicate"), published.duplicate.load());
  EXPECT_EQ(js_published("failed"), published.failed.load());
  EXPECT_EQ(js_published("stored") + js_published("duplicate") +
                js_published("failed"),
            published.attempted.load());
  EXPECT_EQ(AsCount(MetricSum(*producer_registry,
                              "natsgw_js_publish_duration_seconds", js_stream)),
            published.attempted.load());
  EXPECT_EQ(
      MetricSum(*producer_registry, "natsgw_js_publish_pending", js_stream), 0);
  const uint64_t js_retries = AsCount(MetricSum(
      *producer_registry, "natsgw_js_publish_retries_total", js_stream));

  const StreamConsumerStats stats = (*consumer)->stats();
  // Each delivery has exactly one outcome (as its span's outcome attribute):
  // a delivery skipped as a duplicate counts as skipped_duplicate, not also
  // as ack, so the outcomes add up to the deliveries.
  auto deliveries = [&](const std::string& outcome) {
    return AsCount(MetricSum(
        *consumer_registry, "natsgw_js_deliveries_total",
        {{"stream", kStream}, {"consumer", kDurable}, {"outcome", outcome}}));
  };
  EXPECT_EQ(deliveries("ack"), deliveries_handled.load());
  EXPECT_EQ(deliveries("skipped_duplicate"),
            static_cast<uint64_t>(stats.skipped_duplicates));
  EXPECT_EQ(deliveries("ack") + deliveries("skipped_duplicate"),
            static_cast<uint64_t>(stats.acked));
  EXPECT_EQ(deliveries("nak") + deliveries("term") + deliveries("dead_letter"),
            0u);
  EXPECT_EQ(AsCount(MetricSum(*consumer_registry, "natsgw_js_deliveries_total",
                              js_stream)),
            static_cast<uint64_t>(stats.delivered));
  EXPECT_EQ(deliveries_handled.load(),
            report.processed_distinct + report.processed_duplicates);
  EXPECT_EQ(AsCount(MetricSum(*consumer_registry,
                              "natsgw_js_redeliveries_total", js_stream)),
            static_cast<uint64_t>(stats.redelivered));

  uint64_t reconnects = 0;
  uint64_t disconnects = 0;
  for (const auto& registry :
       {control_registry, responder_registry, caller_registry,
        producer_registry, consumer_registry}) {
    reconnects +=
        AsCount(MetricSum(*registry, "natsgw_nats_reconnects_total", {}));
    disconnects +=
        AsCount(MetricSum(*registry, "natsgw_nats_disconnects_total", {}));
    // Every connection is back up: two NATS connections (lanes) each.
    EXPECT_EQ(MetricSum(*registry, "natsgw_nats_connections", {}), 2);
  }

  // --- Memory and descriptors over time.
  const std::vector<Sample> samples = sampler.samples();
  ASSERT_FALSE(samples.empty());
  const double warmup_s = Seconds(warmup);
  std::optional<Sample> baseline;
  int64_t rss_max = 0;
  int64_t rss_max_after_warmup = 0;
  int fds_max = 0;
  for (const Sample& s : samples) {
    rss_max = std::max(rss_max, s.rss_kib);
    fds_max = std::max(fds_max, s.fds);
    if (s.at_s < warmup_s) continue;
    if (!baseline) baseline = s;
    rss_max_after_warmup = std::max(rss_max_after_warmup, s.rss_kib);
  }
  rss_max = std::max(rss_max, rss_end);
  rss_max_after_warmup = std::max(rss_max_after_warmup, rss_end);
  ASSERT_TRUE(baseline.has_value()) << "no sample after the warm-up";
  const int64_t rss_limit =
      baseline->rss_kib +
      static_cast<int64_t>(baseline->rss_kib * kRssGrowthRatio) +
      kRssAllowanceKib;
  EXPECT_LE(rss_max_after_warmup, rss_limit)
      << "resident memory grew from " << baseline->rss_kib
      << " KiB at t=" << baseline->at_s << "s to " << rss_max_after_warmup
      << " KiB (limit: +10% +" << kRssAllowanceKib << " KiB)";

  nlohmann::ordered_json fault_list = nlohmann::ordered_json::array();
  for (const FaultRecord& f : faults) {
    fault_list.push_back(
        {{"kind", f.kind},
         {"node", f.node},
         {"at_s", std::round(f.at_s * 10) / 10},
         {"healed_after_s", std::round(f.healed_after_s * 10) / 10},
         {"fds_after", f.fds_after}});
  }
  nlohmann::ordered_json result = {
      {"test", "soak"},
      {"duration_s", std::round(Seconds(loaded_for) * 10) / 10},
      {"faults_injected", faults.size()},
      {"rpc_calls", rpc.ended()},
      {"rpc_ok", rpc.with(absl::StatusCode::kOk)},
      {"rpc_errors", rpc.errors()},
      {"rpc_error_codes", rpc.CodeSummary()},
      {"rpc_late", rpc.late()},
      {"rpc_longest_call_ms", absl::ToInt64Milliseconds(rpc.longest())},
      {"rpc_handled", handled},
      {"js_attempted", report.attempted},
      {"js_acked", report.acked},
      {"js_acked_dup", report.acked_duplicate},
      {"js_failed", report.failed},
      {"js_retries", js_retries},
      {"js_read", report.read_distinct},
      {"js_lost", report.lost_count},
      {"js_stored_dups", report.stored_duplicates},
      {"js_effect_dups", report.processed_duplicates},
      {"js_recovered", report.recovered},
      {"js_processed", report.processed_distinct},
      {"js_redelivered", stats.redelivered},
      {"js_skipped_duplicates", stats.skipped_duplicates},
      {"js_longest_publish_ms", published.longest_us.load() / 1000},
      {"rss_start_kib", samples.front().rss_kib},
      {"rss_baseline_kib", baseline->rss_kib},
      {"rss_end_kib", rss_end},
      {"rss_max_kib", rss_max},
      {"rss_growth_kib", rss_max_after_warmup - baseline->rss_kib},
      {"rss_limit_kib", rss_limit},
      {"fds_start", fds_start},
      {"fds_end", fds_end},
      {"fds_max_sampled", fds_max},
      {"nats_disconnects", disconnects},
      {"nats_reconnects", reconnects},
      {"js_unavailable_ms", absl::ToInt64Milliseconds(js_meter.LongestGap())},
      {"rpc_unavailable_ms",
       absl::ToInt64Milliseconds(rpc.meter().LongestGap())},
      {"faults", fault_list},
  };
  std::cout << "SOAK-RESULT " << result.dump() << std::endl;

  // Tear down in order: consumer and publisher before their JetStream and
  // connection; connections before the cluster (the fixture's).
  consumer->reset();
  publisher->reset();
  endpoint->reset();
}

}  // namespace
}  // namespace natsgw
