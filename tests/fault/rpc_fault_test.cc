// Server faults under RPC and JetStream load, against real nats-servers
// (issue 8 §1; plan items F4 and F9 and the single-server RPC restart):
//
//   - the only server is killed (SIGKILL) and restarted while callers keep
//     calling a typed Echo service: every call ends exactly once, OK or with
//     a clear status, within its deadline plus 500 ms; calls succeed again
//     once the server is back;
//   - in a 3-node cluster the server the caller is connected to is paused
//     (SIGSTOP) while the responder sits on another node: the calls in
//     flight end within their deadline plus 500 ms, and new calls succeed
//     through another node within a bounded time;
//   - a single JetStream server is killed for longer than the publisher's
//     retry budget: what was acknowledged survives, publishes during the
//     outage fail visibly (never OK without an ack), and core publishes are
//     buffered and delivered, or refused with RESOURCE_EXHAUSTED once the
//     reconnect buffer is full.
//
// Each case prints one FAULT-RESULT line with what it measured.
#include <nats/nats.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "fault/fault_support.h"
#include "fault/loss_checker.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/metric_value.h"
#include "harness/nats_server_fixture.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/jetstream.h"
#include "natsgw/logger.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/stream_publisher.h"

namespace natsgw {
namespace {

using ::natsgw::testing::Eventually;
using ::natsgw::testing::FaultResultLine;
using ::natsgw::testing::LossChecker;
using ::natsgw::testing::MetricSum;
using ::natsgw::testing::Ms;
using ::natsgw::testing::MustConnect;
using ::natsgw::testing::UnavailabilityMeter;

// Every call of a fault run: when it started and ended, how, and how often
// it was completed (exactly once is the promise). Thread-safe.
class CallLog {
 public:
  struct Record {
    absl::Time start;
    absl::Time end = absl::InfiniteFuture();
    absl::StatusCode code = absl::StatusCode::kUnknown;
    int completions = 0;
    bool wrong_reply = false;
  };

  // Registers a call starting now; returns its index (also its tag).
  size_t Start() {
    std::lock_guard<std::mutex> lock(mu_);
    records_.push_back(Record{absl::Now()});
    return records_.size() - 1;
  }
  // Call `i` completed with `code`; `wrong_reply` if an OK reply did not
  // echo the call's tag. Only the first completion's time and code count.
  void End(size_t i, absl::StatusCode code, bool wrong_reply = false) {
    const absl::Time now = absl::Now();
    std::lock_guard<std::mutex> lock(mu_);
    Record& r = records_[i];
    if (r.completions++ == 0) {
      r.end = now;
      r.code = code;
      r.wrong_reply = wrong_reply;
    }
  }
  // End(), with the outcome also counted in `meter`: OK as a success (even a
  // wrong reply: the service answered), anything else as a failure.
  void End(size_t i, absl::StatusCode code, bool wrong_reply,
           UnavailabilityMeter& meter) {
    End(i, code, wrong_reply);
    if (code == absl::StatusCode::kOk) {
      meter.Success();
    } else {
      meter.Failure();
    }
  }
  // Calls completed OK that started at or after `since`.
  int OkStartedSince(absl::Time since) {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const Record& r : records_) {
      n += r.completions > 0 && r.code == absl::StatusCode::kOk &&
           r.start >= since;
    }
    return n;
  }
  int Ok() { return OkStartedSince(absl::InfinitePast()); }
  std::vector<Record> records() {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }

 private:
  std::mutex mu_;
  std::vector<Record> records_;
};

// The verdict on a CallLog, checked and summarized.
struct CallSummary {
  int calls = 0, ok = 0, unavailable = 0, deadline_exceeded = 0, other = 0;
  int never_ended = 0, ended_twice = 0, wrong_replies = 0, too_late = 0;
  // Calls in flight at `fault` (started before, ended after).
  int in_flight_at_fault = 0, in_flight_ok = 0;
  absl::Duration longest = absl::ZeroDuration();
  // Longest time past its deadline that a call took to end.
  absl::Duration max_overrun = absl::ZeroDuration();
  // The first OK completion of a call started after `fault`.
  absl::Time first_ok_after_fault = absl::InfiniteFuture();
};

CallSummary Summarize(const std::vector<CallLog::Record>& records,
                      absl::Duration deadline, absl::Time fault,
                      absl::Duration margin) {
  CallSummary s;
  for (const CallLog::Record& r : records) {
    ++s.calls;
    if (r.completions == 0) {
      ++s.never_ended;
      continue;
    }
    if (r.completions > 1) ++s.ended_twice;
    if (r.wrong_reply) ++s.wrong_replies;
    const absl::Duration took = r.end - r.start;
    s.longest = std::max(s.longest, took);
    s.max_overrun = std::max(s.max_overrun, took - deadline);
    if (took > deadline + margin) ++s.too_late;
    switch (r.code) {
      case absl::StatusCode::kOk:
        ++s.ok;
        if (r.start > fault) {
          s.first_ok_after_fault = std::min(s.first_ok_after_fault, r.end);
        }
        break;
      case absl::StatusCode::kUnavailable:
        ++s.unavailable;
        break;
      case absl::StatusCode::kDeadlineExceeded:
        ++s.deadline_exceeded;
        break;
      default:
        ++s.other;
    }
    if (r.start < fault && r.end > fault) {
      ++s.in_flight_at_fault;
      s.in_flight_ok += r.code == absl::StatusCode::kOk;
    }
  }
  return s;
}

// Echo, optionally slow, so calls stay in flight for a while; remembers
// the tags it answered. Thread-safe.
class SlowEcho : public echo::EchoServiceBase {
 public:
  explicit SlowEcho(absl::Duration delay) : delay_(delay) {}
  absl::StatusOr<flatbuffers::Offset<echo::EchoReply>> Echo(
      const echo::EchoRequest& request, ServerContext& ctx) override {
    if (delay_ > absl::ZeroDuration()) absl::SleepFor(delay_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_handled_[request.tag()] = absl::Now();
    }
    flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
    return echo::CreateEchoReply(fbb, 0, request.tag());
  }
  // Whether the call tagged `tag` was handled after `since`.
  bool HandledAfter(uint64_t tag, absl::Time since) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = last_handled_.find(tag);
    return it != last_handled_.end() && it->second > since;
  }

 private:
  const absl::Duration delay_;
  std::mutex mu_;
  std::map<uint64_t, absl::Time> last_handled_;
};

auto EchoTag(uint64_t tag) {
  return [tag](flatbuffers::FlatBufferBuilder& fbb) {
    return echo::CreateEchoRequest(fbb, 0, tag);
  };
}

// Callers for a fault run: `sync` threads making blocking calls one after
// another, and one thread keeping up to `async_window` asynchronous calls in
// flight. Bounded: at most `max_calls` per thread and `max_time` in all.
// The call functions receive the call's index and must end it in `log`.
// Thread-safe.
class CallerPool {
 public:
  using SyncCall = std::function<void(size_t)>;
  using AsyncCall = std::function<void(size_t, std::function<void()> done)>;

  CallerPool(CallLog& log, int sync, SyncCall sync_call, int async_window,
             AsyncCall async_call, int max_calls = 50000,
             absl::Duration max_time = absl::Seconds(60)) {
    const absl::Time until = absl::Now() + max_time;
    for (int t = 0; t < sync; ++t) {
      threads_.emplace_back([=, this, &log] {
        for (int i = 0; i < max_calls && !stop_.load() && absl::Now() < until;
             ++i) {
          const size_t call = log.Start();
          const absl::Time start = absl::Now();
          sync_call(call);
          // A failing call returns at once: do not spin on it.
          if (absl::Now() - start < absl::Milliseconds(5)) {
            absl::SleepFor(absl::Milliseconds(5));
          }
        }
      });
    }
    if (async_window > 0) {
      threads_.emplace_back([=, this, &log] {
        for (int i = 0; i < max_calls && !stop_.load() && absl::Now() < until;
             ++i) {
          {
            std::unique_lock<std::mutex> lock(mu_);
            if (!cv_.wait_for(lock, std::chrono::seconds(10),
                              [&] { return in_flight_ < async_window; })) {
              break;  // calls stopped ending: reported as never ended
            }
            ++in_flight_;
          }
          async_call(log.Start(), [this] {
            std::lock_guard<std::mutex> lock(mu_);
            --in_flight_;
            cv_.notify_all();
          });
          absl::SleepFor(absl::Milliseconds(1));
        }
      });
    }
  }
  ~CallerPool() { Stop(absl::Seconds(5)); }

  // Stops calling and waits for the threads, then for asynchronous calls
  // still in flight (at most `wait`).
  void Stop(absl::Duration wait) {
    stop_.store(true);
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoNanoseconds(wait),
                 [&] { return in_flight_ == 0; });
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  int in_flight_ = 0;
};

ConnectionOptions FaultOptions(std::vector<std::string> servers,
                               const std::string& name,
                               std::shared_ptr<prometheus::Registry> registry) {
  ConnectionOptions options;
  options.servers = std::move(servers);
  options.name = name;
  options.registry = std::move(registry);
  options.reconnect.wait = absl::Milliseconds(100);
  options.reconnect.jitter = absl::Milliseconds(50);
  options.connect_timeout = absl::Seconds(1);
  options.ping_interval = absl::Seconds(1);
  options.logger = std::make_shared<StderrLogger>(absl::LogSeverity::kWarning);
  return options;
}

// Waits until `count()` has not changed for 200 ms (at most 5 s): for
// servers that store asynchronously what they received.
template <typename Count>
void PollUntilStable(Count count) {
  const absl::Time until = absl::Now() + absl::Seconds(5);
  auto last = count();
  absl::Time since = absl::Now();
  while (absl::Now() < until && absl::Now() - since < absl::Milliseconds(200)) {
    absl::SleepFor(absl::Milliseconds(20));
    auto now = count();
    if (now != last) {
      last = now;
      since = absl::Now();
    }
  }
}

std::string SummaryJson(
    const std::string& test, const CallSummary& s,
    const std::vector<std::pair<std::string, int64_t>>& extra) {
  std::string line = absl::StrCat(
      "FAULT-RESULT {\"test\":\"", test, "\",\"calls\":", s.calls,
      ",\"ok\":", s.ok, ",\"unavailable\":", s.unavailable,
      ",\"deadline_exceeded\":", s.deadline_exceeded, ",\"other\":", s.other,
      ",\"never_ended\":", s.never_ended, ",\"ended_twice\":", s.ended_twice,
      ",\"in_flight_at_fault\":", s.in_flight_at_fault,
      ",\"longest_call_ms\":", Ms(s.longest),
      ",\"max_overrun_ms\":", Ms(s.max_overrun));
  for (const auto& [key, value] : extra) {
    absl::StrAppend(&line, ",\"", key, "\":", value);
  }
  return line + "}";
}

// The assertions every RPC fault run shares.
void ExpectEveryCallEndedOnceInTime(const CallSummary& s,
                                    absl::Duration deadline,
                                    absl::Duration margin) {
  EXPECT_EQ(s.never_ended, 0) << "calls that never ended (hung)";
  EXPECT_EQ(s.ended_twice, 0) << "calls completed more than once";
  EXPECT_EQ(s.other, 0) << "calls ended with an unclear status";
  EXPECT_EQ(s.wrong_replies, 0) << "OK replies to another call";
  EXPECT_EQ(s.too_late, 0) << "calls that ended later than deadline "
                           << deadline << " + " << margin << " (longest "
                           << s.longest << ")";
}

// ---------------------------------------------------------------------------
// The only server, killed and restarted.

// One nats-server per test. Thread-compatible, like any gtest fixture.
class SingleServerFaultTest : public testing::NatsServerTest {
 protected:
  std::shared_ptr<prometheus::Registry> registry_ =
      std::make_shared<prometheus::Registry>();
};

// Several callers (three blocking, sixteen asynchronous calls in flight)
// call a typed Echo service (20 ms a call) on its own connection through
// EchoClient (whose default policy retries the idempotent Echo on
// UNAVAILABLE within the deadline) while the server is killed for 1.5 s and
// restarted.
TEST_F(SingleServerFaultTest, KilledUnderRpcLoadEveryCallEndsOnceInTime) {
  const absl::Duration deadline = absl::Seconds(1);
  const absl::Duration margin = absl::Milliseconds(500);
  auto responder =
      MustConnect(FaultOptions({server().url()}, "responder", registry_));
  auto caller =
      MustConnect(FaultOptions({server().url()}, "caller", registry_));
  ASSERT_NE(responder, nullptr);
  ASSERT_NE(caller, nullptr);
  // 20 ms per call, so that calls are in flight when the server dies.
  SlowEcho impl(absl::Milliseconds(20));
  TypedServiceOptions service_options;
  service_options.serve.workers = 8;
  service_options.serve.max_in_flight = 256;
  auto service = impl.Start(*responder, service_options);
  ASSERT_TRUE(service.ok()) << service.status();
  auto client = echo::EchoClient::Create(*caller);
  ASSERT_TRUE(client.ok()) << client.status();

  CallLog log;
  UnavailabilityMeter meter;
  CallOptions call_options;
  call_options.timeout = deadline;
  auto end = [&](size_t i, const absl::StatusOr<Response<echo::EchoReply>>& r) {
    log.End(i, r.status().code(), r.ok() && (*r)->tag() != i, meter);
  };
  CallerPool pool(
      log, 3, [&](size_t i) { end(i, client->Echo(EchoTag(i), call_options)); },
      16,
      [&](size_t i, std::function<void()> done) {
        client->EchoAsync(
            EchoTag(i),
            [&, i, done](absl::StatusOr<Response<echo::EchoReply>> r) {
              end(i, r);
              done();
            },
            call_options);
      });
  ASSERT_TRUE(Eventually([&] { return log.Ok() >= 200; }, absl::Seconds(20)));

  ASSERT_TRUE(server().Kill().ok());
  const absl::Time killed = absl::Now();
  meter.Fault(killed);
  absl::SleepFor(absl::Milliseconds(1500));
  const absl::Time restart_begin = absl::Now();
  absl::Status restart = server().Restart();
  ASSERT_TRUE(restart.ok()) << restart;
  const absl::Time restarted = absl::Now();
  // New calls succeed once the server is back.
  const bool recovered = Eventually(
      [&] { return log.OkStartedSince(restarted) >= 20; }, absl::Seconds(20));
  absl::SleepFor(absl::Milliseconds(300));
  pool.Stop(deadline + absl::Seconds(2));
  ASSERT_TRUE(recovered) << "no successful call after the restart";

  const std::vector<CallLog::Record> records = log.records();
  const CallSummary s = Summarize(records, deadline, killed, margin);
  ExpectEveryCallEndedOnceInTime(s, deadline, margin);
  EXPECT_GT(s.unavailable + s.deadline_exceeded, 0)
      << "the outage went unnoticed";
  // Calls that failed, yet were handled after the restart (reported, not
  // asserted): a retry sent while the connection was down waits in nats.c's
  // reconnect buffer and is delivered after the restart, when its caller has
  // already been answered DEADLINE_EXCEEDED.
  int handled_after_failure = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    handled_after_failure += records[i].code != absl::StatusCode::kOk &&
                             impl.HandledAfter(i, restart_begin);
  }
  EXPECT_GT(s.in_flight_at_fault, 0) << "no call was in flight at the kill";
  ASSERT_LT(s.first_ok_after_fault, absl::InfiniteFuture());
  EXPECT_GE(s.first_ok_after_fault, restart_begin)
      << "a call made after the kill succeeded while the server was dead";
  std::cout << SummaryJson(
                   "R1_single_server_kill_under_rpc_load", s,
                   {{"deadline_ms", Ms(deadline)},
                    {"down_ms", Ms(restart_begin - killed)},
                    {"restart_ms", Ms(restarted - restart_begin)},
                    {"first_ok_after_restart_ms",
                     Ms(s.first_ok_after_fault - restarted)},
                    {"first_ok_after_kill_ms",
                     Ms(s.first_ok_after_fault - killed)},
                    {"failed_calls_handled_anyway", handled_after_failure},
                    {"unavailable_ms", Ms(meter.LongestGap())}})
            << std::endl;
  service->reset();
}

// F9. A JetStream server (R1 stream) is killed for 2 s, longer than the
// publisher's retry budget (about 1 s). Publishes acknowledged before, during
// and after the outage are all in the stream; publishes during it fail with
// UNAVAILABLE once their budget is spent, and none succeeds while the server
// is dead. Core publishes made during the outage are buffered and stored once
// the connection is back (a stream captures their subject), or refused with
// RESOURCE_EXHAUSTED when the reconnect buffer is full: exactly the ones
// accepted arrive.
TEST_F(SingleServerFaultTest, KilledJetStreamServerLosesNothingAcknowledged) {
  ConnectionOptions options =
      FaultOptions({server().url()}, "producer", registry_);
  options.reconnect.buffer_bytes = 32 << 10;
  auto conn = MustConnect(options);
  ASSERT_NE(conn, nullptr);
  auto js = JetStream::Create(*conn);
  ASSERT_TRUE(js.ok()) << js.status();
  StreamConfig events;
  events.name = "EVENTS";
  events.subjects = {"events.>"};
  ASSERT_TRUE((*js)->EnsureStream(events).ok());
  StreamConfig core;
  core.name = "CORE";
  core.subjects = {"core.>"};
  ASSERT_TRUE((*js)->EnsureStream(core).ok());
  StreamPublisherOptions po;
  po.stream = "EVENTS";
  po.attempt_timeout = absl::Milliseconds(250);
  po.retry.max_attempts = 3;
  po.retry.initial_backoff = absl::Milliseconds(50);
  po.retry.max_backoff = absl::Milliseconds(200);
  auto publisher = StreamPublisher::Create(**js, po);
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  const absl::Duration budget = (*publisher)->RetryBudget();

  // One sequential producer; each publish's outcome and timing recorded.
  LossChecker checker;
  UnavailabilityMeter meter;
  struct Outcome {
    absl::Time start, end;
    absl::StatusCode code;
  };
  std::mutex mu;
  std::vector<Outcome> outcomes;
  std::atomic<bool> stop{false};
  std::atomic<int> acked{0};
  // Stopped and joined however the test ends.
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread thread;
    ~Joiner() {
      stop.store(true);
      if (thread.joinable()) thread.join();
    }
  } producer{stop, std::thread([&] {
               const absl::Time until = absl::Now() + absl::Seconds(40);
               for (uint64_t c = 0;
                    c < 20000 && !stop.load() && absl::Now() < until; ++c) {
                 const std::string id = LossChecker::MessageIdFor(0, c);
                 checker.Attempted(0, c);
                 StreamPublishOptions o;
                 o.message_id = id;
                 const absl::Time start = absl::Now();
                 auto ack = (*publisher)->Publish("events.created", id, o);
                 const absl::Time end = absl::Now();
                 if (ack.ok()) {
                   checker.Acked(0, c, ack->sequence, ack->duplicate);
                   meter.Success(end);
                   ++acked;
                 } else {
                   checker.Failed(0, c, ack.status());
                   meter.Failure(end);
                 }
                 std::lock_guard<std::mutex> lock(mu);
                 outcomes.push_back({start, end, ack.status().code()});
               }
             })};
  ASSERT_TRUE(
      Eventually([&] { return acked.load() >= 100; }, absl::Seconds(20)));

  ASSERT_TRUE(server().Kill().ok());
  const absl::Time killed = absl::Now();
  meter.Fault(killed);
  // Core publishes once the publish connection has noticed the loss (until
  // then they go to a dead socket and are lost, as NATS documents for an
  // at-most-once publish: see README "Delivery guarantees").
  ASSERT_TRUE(Eventually(
      [&] {
        return MetricSum(*registry_, "natsgw_nats_disconnects_total",
                         {{"lane", "publish"}}) >= 1;
      },
      absl::Seconds(10)));
  std::set<std::string> core_accepted;
  int core_refused = 0, core_other = 0;
  for (int i = 0; i < 1000; ++i) {
    PublishOptions o;
    o.message_id = LossChecker::MessageIdFor(1, i);
    absl::Status s = conn->Publish("core.outage", *o.message_id, o).status();
    if (s.ok()) {
      core_accepted.insert(*o.message_id);
    } else if (absl::IsResourceExhausted(s)) {
      ++core_refused;
    } else {
      ++core_other;
      ADD_FAILURE() << "core publish during the outage: " << s;
    }
  }
  const absl::Duration down_for = absl::Seconds(2);
  absl::SleepFor(
      std::max(absl::ZeroDuration(), killed + down_for - absl::Now()));
  const absl::Time restart_begin = absl::Now();
  absl::Status restart = server().Restart();
  ASSERT_TRUE(restart.ok()) << restart;
  const absl::Time restarted = absl::Now();
  const int acked_at_restart = acked.load();
  ASSERT_TRUE(Eventually([&] { return acked.load() >= acked_at_restart + 100; },
                         absl::Seconds(20)));
  stop.store(true);
  producer.thread.join();
  // The two lanes reconnect on their own schedules: wait for the publish
  // lane to be back and the server to have taken what it had buffered
  // (stored by the stream asynchronously, hence the wait for the count).
  ASSERT_TRUE(
      Eventually([&] { return conn->state() == ConnectionState::kConnected; },
                 absl::Seconds(10)));
  ASSERT_TRUE(conn->Flush(absl::Seconds(5)).ok());
  PollUntilStable([&] {
    auto state = (*js)->GetStream("CORE");
    return state.ok() ? state->messages : 0;
  });

  // Publishes: never OK while the server was dead; failures are UNAVAILABLE
  // (DEADLINE_EXCEEDED if the last attempt went unanswered) within the
  // retry budget plus a margin.
  int failed = 0, failed_unavailable = 0, failed_deadline = 0;
  absl::Duration longest_failure = absl::ZeroDuration();
  absl::Time first_ok_after = absl::InfiniteFuture();
  for (const Outcome& o : outcomes) {
    if (o.code == absl::StatusCode::kOk) {
      EXPECT_FALSE(o.end > killed + absl::Milliseconds(100) &&
                   o.end < restart_begin)
          << "acknowledged " << (o.end - killed) << " after the kill";
      if (o.end > killed) first_ok_after = std::min(first_ok_after, o.end);
      continue;
    }
    ++failed;
    longest_failure = std::max(longest_failure, o.end - o.start);
    EXPECT_LE(o.end - o.start, budget + absl::Milliseconds(500));
    if (o.code == absl::StatusCode::kUnavailable) {
      ++failed_unavailable;
    } else if (o.code == absl::StatusCode::kDeadlineExceeded) {
      ++failed_deadline;
    } else {
      ADD_FAILURE() << "publish failed with "
                    << absl::StatusCodeToString(o.code);
    }
  }
  EXPECT_GT(failed, 0) << "no publish failed in a " << down_for
                       << " outage with a " << budget << " budget";
  EXPECT_GT(failed_unavailable, 0);

  // Read everything back with plain nats.c.
  natsConnection* nc = nullptr;
  jsCtx* raw_js = nullptr;
  ASSERT_EQ(natsConnection_ConnectTo(&nc, server().url().c_str()), NATS_OK);
  ASSERT_EQ(natsConnection_JetStream(&raw_js, nc, nullptr), NATS_OK);
  auto read_stream = [&](const char* stream, auto&& fn) {
    auto state = (*js)->GetStream(stream);
    ASSERT_TRUE(state.ok()) << state.status();
    for (uint64_t seq = 1; seq <= state->last_sequence; ++seq) {
      natsMsg* msg = nullptr;
      jsErrCode err = static_cast<jsErrCode>(0);
      const natsStatus s = js_GetMsg(&msg, raw_js, stream, seq, nullptr, &err);
      ASSERT_EQ(s, NATS_OK)
          << stream << " #" << seq << ": " << natsStatus_GetText(s);
      const char* id = nullptr;
      std::string message_id;
      if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK &&
          id != nullptr) {
        message_id = id;
      }
      fn(seq, message_id,
         std::string(natsMsg_GetData(msg), natsMsg_GetDataLength(msg)));
      natsMsg_Destroy(msg);
    }
  };
  read_stream("EVENTS", [&](uint64_t seq, const std::string& id,
                            const std::string& data) {
    auto key = LossChecker::ParseMessageId(id);
    if (!key.has_value() || data != id) {
      checker.ReadUnknown(id, seq);
    } else {
      checker.Read(key->first, key->second, seq);
    }
  });
  std::multiset<std::string> core_stored;
  read_stream("CORE", [&](uint64_t, const std::string& id, const std::string&) {
    core_stored.insert(id);
  });
  jsCtx_Destroy(raw_js);
  natsConnection_Destroy(nc);

  const LossChecker::Report report = checker.Check();
  EXPECT_TRUE(report.ok()) << report.ToString();
  EXPECT_EQ(report.lost_count, 0u);
  // Core: accepted during the outage means buffered, then delivered once.
  EXPECT_GT(core_accepted.size(), 0u) << "nothing was buffered";
  EXPECT_GT(core_refused, 0) << "the reconnect buffer never filled";
  EXPECT_EQ(core_stored.size(), core_accepted.size());
  EXPECT_EQ(std::set<std::string>(core_stored.begin(), core_stored.end()),
            core_accepted);
  std::cout
      << report.ToString() << "\n"
      << FaultResultLine(
             "F9_single_jetstream_server_kill", report, meter,
             {{"retry_budget_ms", Ms(budget)},
              {"down_ms", Ms(restart_begin - killed)},
              {"publish_failed_unavailable", failed_unavailable},
              {"publish_failed_deadline", failed_deadline},
              {"longest_failed_publish_ms", Ms(longest_failure)},
              {"first_ack_after_restart_ms", Ms(first_ok_after - restarted)},
              {"core_buffered", static_cast<int64_t>(core_accepted.size())},
              {"core_refused_resource_exhausted", core_refused},
              {"core_delivered", static_cast<int64_t>(core_stored.size())}})
      << std::endl;
  publisher->reset();
}

// ---------------------------------------------------------------------------
// F4: the caller's server paused in a cluster.

// A 3-node core NATS cluster per test. Thread-compatible, like any gtest
// fixture.
class ClusterRpcFaultTest : public testing::NatsClusterTest {
 protected:
  // Core NATS only: no meta leader to wait for.
  testing::NatsServerOptions ClusterOptions() const override {
    testing::NatsServerOptions options;
    options.jetstream = false;
    return options;
  }
  // The node serving client port `url`'s port, or -1.
  int NodeOf(const std::string& url) {
    for (int i = 0; i < cluster().size(); ++i) {
      if (absl::EndsWith(url, absl::StrCat(":", cluster().node(i).port()))) {
        return i;
      }
    }
    return -1;
  }
  std::shared_ptr<prometheus::Registry> registry_ =
      std::make_shared<prometheus::Registry>();
};

// The caller pings every 500 ms (two unanswered pings: gone), so a paused
// server is noticed in 1-1.5 s; the responder answers after 50 ms from
// another node, so calls are in flight when the pause comes. Untyped calls,
// blocking and asynchronous, without retries.
TEST_F(ClusterRpcFaultTest, PausedServerOfTheCallerEndsCallsInTimeAndMovesOn) {
  const absl::Duration deadline = absl::Seconds(2);
  const absl::Duration margin = absl::Milliseconds(500);
  ConnectionOptions caller_options =
      FaultOptions(cluster().url_list(), "caller", registry_);
  caller_options.ping_interval = absl::Milliseconds(500);
  caller_options.max_pings_out = 2;
  auto caller = MustConnect(caller_options);
  ASSERT_NE(caller, nullptr);
  const int paused = NodeOf(caller->connected_url());
  ASSERT_GE(paused, 0) << caller->connected_url();
  const int responder_node = (paused + 1) % cluster().size();
  auto responder = MustConnect(FaultOptions(
      {cluster().node(responder_node).url()}, "responder", registry_));
  ASSERT_NE(responder, nullptr);
  ServeOptions serve;
  serve.workers = 32;
  serve.max_in_flight = 1024;
  auto endpoint = responder->Serve(
      "fault.Echo", "q",
      [](const Message& m) -> absl::StatusOr<Reply> {
        absl::SleepFor(absl::Milliseconds(50));
        return Reply{m.data, {}};
      },
      serve);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  // Interest crosses the routes.
  ASSERT_TRUE(Eventually(
      [&] {
        return caller->Request("fault.Echo", "x", absl::Milliseconds(500)).ok();
      },
      absl::Seconds(10)));

  CallLog log;
  UnavailabilityMeter meter;
  auto end = [&](size_t i, const absl::StatusOr<Message>& r) {
    log.End(i, r.status().code(), r.ok() && r->data != absl::StrCat(i), meter);
  };
  CallerPool pool(
      log, 4,
      [&](size_t i) {
        end(i, caller->Request("fault.Echo", absl::StrCat(i), deadline));
      },
      16,
      [&](size_t i, std::function<void()> done) {
        auto sent =
            caller->RequestAsync("fault.Echo", absl::StrCat(i), deadline, {},
                                 [&, i, done](absl::StatusOr<Message> r) {
                                   end(i, r);
                                   done();
                                 });
        if (!sent.ok()) {
          end(i, sent.status());
          done();
        }
      });
  ASSERT_TRUE(Eventually([&] { return log.Ok() >= 100; }, absl::Seconds(20)));

  ASSERT_TRUE(cluster().node(paused).Pause().ok());
  const absl::Time pause = absl::Now();
  meter.Fault(pause);
  const bool moved = Eventually([&] { return log.OkStartedSince(pause) >= 20; },
                                absl::Seconds(20));
  absl::SleepFor(absl::Milliseconds(300));
  pool.Stop(deadline + absl::Seconds(2));
  const std::string now_on = caller->connected_url();
  ASSERT_TRUE(cluster().node(paused).Resume().ok());
  ASSERT_TRUE(moved) << "no call succeeded after the pause";

  const CallSummary s = Summarize(log.records(), deadline, pause, margin);
  ExpectEveryCallEndedOnceInTime(s, deadline, margin);
  EXPECT_GT(s.in_flight_at_fault, 0) << "no call was in flight at the pause";
  EXPECT_GT(s.unavailable + s.deadline_exceeded, 0);
  EXPECT_NE(NodeOf(now_on), paused) << now_on;
  const absl::Duration to_first_ok = s.first_ok_after_fault - pause;
  // Generous: stale detection (1-1.5 s) plus reconnecting elsewhere.
  EXPECT_LE(to_first_ok, absl::Seconds(10));
  std::cout << SummaryJson("F4_pause_caller_server_in_cluster", s,
                           {{"deadline_ms", Ms(deadline)},
                            {"in_flight_ok", s.in_flight_ok},
                            {"first_ok_after_pause_ms", Ms(to_first_ok)},
                            {"unavailable_ms", Ms(meter.LongestGap())}})
            << std::endl;
  endpoint->reset();
}

}  // namespace
}  // namespace natsgw
