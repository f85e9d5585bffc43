// Subscriptions with a task queue (SubscribeOptions) and Subscription::Drain
// against a real nats-server: concurrent handlers, every overflow policy
// under a blocked handler (each discard counted and logged), Drain finishing
// queued work or cancelling it at its timeout, end-to-end delivery latency,
// and served endpoints with the kBlock overflow policy.
#include <prometheus/registry.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gateway_test_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/capturing_logger.h"
#include "harness/metric_value.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/subscribe_options.h"
#include "natsgw/subscription.h"

namespace natsgw {
namespace {

using ::natsgw::testing::Eventually;
using ::natsgw::testing::Gate;
using ::natsgw::testing::GatewayTest;
using ::natsgw::testing::kSyncPointTimeout;
using ::natsgw::testing::Latch;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The messages a handler saw, in the order it saw them.
class Seen {
 public:
  void Add(const Message& m) {
    std::lock_guard<std::mutex> lock(mu_);
    data_.push_back(m.data);
  }
  std::vector<std::string> data() {
    std::lock_guard<std::mutex> lock(mu_);
    return data_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> data_;
};

class SubscribeQueueTest : public GatewayTest {
 protected:
  ConnectionOptions Options() override {
    ConnectionOptions options = GatewayTest::Options();
    options.logger = logger_;
    return options;
  }

  void SetUp() override {
    GatewayTest::SetUp();
    conn_ = Connect();
    ASSERT_NE(conn_, nullptr);
  }

  void Publish(absl::string_view subject, absl::string_view data) {
    ASSERT_TRUE(conn_->Publish(subject, data).ok());
  }
  void Flush() { ASSERT_TRUE(conn_->Flush(absl::Seconds(10)).ok()); }

  // The value of the series of `family` whose labels include `labels`
  // (histograms: the sample count); 0 if there is no such series yet.
  double Metric(const std::string& family,
                const std::map<std::string, std::string>& labels) {
    return testing::MetricValue(*registry_, family, labels).value_or(0);
  }
  double SubscribeErrors(absl::string_view code) {
    return Metric("natsgw_errors_total",
                  {{"operation", "subscribe"}, {"code", std::string(code)}});
  }
  double QueueOutcome(absl::string_view queue, absl::string_view outcome) {
    return Metric(
        "natsgw_task_queue_tasks_total",
        {{"queue", std::string(queue)}, {"outcome", std::string(outcome)}});
  }
  double QueueDepth(absl::string_view queue) {
    return Metric("natsgw_task_queue_depth", {{"queue", std::string(queue)}});
  }

  // Subscribes with `options`; the handler records each message and, for
  // the one whose data is "hold", reports it started and waits for `gate`.
  std::unique_ptr<Subscription> SubscribeHolding(
      absl::string_view subject, const SubscribeOptions& options, Gate& gate,
      Latch& holding, Seen& seen) {
    auto sub = conn_->Subscribe(
        subject, "",
        [&](const Message& m) {
          if (m.data == "hold") {
            holding.CountDown();
            gate.Wait();
          }
          seen.Add(m);
        },
        options);
    EXPECT_TRUE(sub.ok()) << sub.status();
    return sub.ok() ? *std::move(sub) : nullptr;
  }

  // Publishes "hold" to `subject`, waits until its handler holds a worker
  // (`holding`), then publishes "m1" .. "m<n>" behind it.
  void HoldThenPublish(absl::string_view subject, Latch& holding, int n) {
    Publish(subject, "hold");
    Flush();
    ASSERT_TRUE(holding.Wait());
    for (int i = 1; i <= n; ++i) Publish(subject, absl::StrCat("m", i));
    Flush();
  }

  std::shared_ptr<testing::CapturingLogger> logger_ =
      std::make_shared<testing::CapturingLogger>(absl::LogSeverity::kWarning);
  std::unique_ptr<Connection> conn_;
};

TEST_F(SubscribeQueueTest, WorkersRunHandlersConcurrently) {
  constexpr int kWorkers = 4;
  Gate gate;
  Latch all_in(kWorkers);
  Latch done(kWorkers);
  SubscribeOptions options;
  options.workers = kWorkers;
  auto sub = conn_->Subscribe(
      "sq.concurrent", "",
      [&](const Message&) {
        all_in.CountDown();
        gate.Wait();
        done.CountDown();
      },
      options);
  ASSERT_TRUE(sub.ok()) << sub.status();
  for (int i = 0; i < kWorkers; ++i) Publish("sq.concurrent", "x");
  Flush();
  // Only possible if all four handler calls are in progress at once.
  ASSERT_TRUE(all_in.Wait());
  gate.Open();
  ASSERT_TRUE(done.Wait());
  EXPECT_EQ((*sub)->dropped(), 0);
}

TEST_F(SubscribeQueueTest, RejectUnderABlockedHandlerIsCountedAndLogged) {
  Gate gate;
  Latch holding(1);
  Seen seen;
  SubscribeOptions options;
  options.workers = 1;
  options.queue_capacity = 2;
  options.overflow = OverflowPolicy::kReject;
  auto sub = SubscribeHolding("sq.reject", options, gate, holding, seen);
  ASSERT_NE(sub, nullptr);
  ASSERT_NO_FATAL_FAILURE(HoldThenPublish("sq.reject", holding, 5));
  // m1 and m2 wait; m3..m5 find the queue full.
  ASSERT_TRUE(Eventually([&] { return sub->dropped() == 3; }));
  EXPECT_EQ(SubscribeErrors("RESOURCE_EXHAUSTED"), 3);
  EXPECT_EQ(QueueOutcome("sq.reject", "rejected"), 3);
  EXPECT_THAT(logger_->lines(),
              ::testing::Contains(HasSubstr("subscription 'sq.reject'")));
  gate.Open();
  ASSERT_TRUE(Eventually([&] { return seen.data().size() == 3; }));
  EXPECT_THAT(seen.data(), ElementsAre("hold", "m1", "m2"));
  ASSERT_TRUE(sub->Unsubscribe().ok());
  EXPECT_EQ(QueueOutcome("sq.reject", "completed"), 3);
}

TEST_F(SubscribeQueueTest, DropOldestUnderABlockedHandlerKeepsTheNewest) {
  Gate gate;
  Latch holding(1);
  Seen seen;
  SubscribeOptions options;
  options.workers = 1;
  options.queue_capacity = 2;
  options.overflow = OverflowPolicy::kDropOldest;
  auto sub = SubscribeHolding("sq.drop", options, gate, holding, seen);
  ASSERT_NE(sub, nullptr);
  ASSERT_NO_FATAL_FAILURE(HoldThenPublish("sq.drop", holding, 5));
  ASSERT_TRUE(Eventually([&] { return sub->dropped() == 3; }));
  EXPECT_EQ(SubscribeErrors("RESOURCE_EXHAUSTED"), 3);
  EXPECT_EQ(QueueOutcome("sq.drop", "dropped"), 3);
  gate.Open();
  ASSERT_TRUE(Eventually([&] { return seen.data().size() == 3; }));
  EXPECT_THAT(seen.data(), ElementsAre("hold", "m4", "m5"));
}

TEST_F(SubscribeQueueTest, BlockGivesUpAfterBlockTimeoutAndCounts) {
  Gate gate;
  Latch holding(1);
  Seen seen;
  SubscribeOptions options;
  options.workers = 1;
  options.queue_capacity = 1;
  options.overflow = OverflowPolicy::kBlock;
  options.block_timeout = absl::Milliseconds(20);
  auto sub = SubscribeHolding("sq.block", options, gate, holding, seen);
  ASSERT_NE(sub, nullptr);
  ASSERT_NO_FATAL_FAILURE(HoldThenPublish("sq.block", holding, 3));
  // m1 waits; the delivery thread waits for room for m2, then m3, in vain.
  ASSERT_TRUE(Eventually([&] { return sub->dropped() == 2; }));
  EXPECT_EQ(SubscribeErrors("RESOURCE_EXHAUSTED"), 2);
  EXPECT_EQ(QueueOutcome("sq.block", "rejected"), 2);
  gate.Open();
  ASSERT_TRUE(Eventually([&] { return seen.data().size() == 2; }));
  EXPECT_THAT(seen.data(), ElementsAre("hold", "m1"));
}

TEST_F(SubscribeQueueTest, BlockBackPressuresTheDeliveryThreadWithoutLoss) {
  Gate gate;
  Latch holding(1);
  Seen seen;
  SubscribeOptions options;
  options.workers = 1;
  options.queue_capacity = 1;
  options.overflow = OverflowPolicy::kBlock;
  options.block_timeout = absl::InfiniteDuration();
  auto sub = SubscribeHolding("sq.backpressure", options, gate, holding, seen);
  ASSERT_NE(sub, nullptr);
  Publish("sq.backpressure", "hold");
  Flush();
  ASSERT_TRUE(holding.Wait());
  // m1 waits in the queue, m2 holds the delivery thread, m3..m5 wait in the
  // client library until the worker frees up.
  for (int i = 1; i <= 5; ++i) {
    Publish("sq.backpressure", absl::StrCat("m", i));
  }
  Flush();
  ASSERT_TRUE(Eventually([&] { return QueueDepth("sq.backpressure") == 1; }));
  gate.Open();
  ASSERT_TRUE(Eventually([&] { return seen.data().size() == 6; }));
  EXPECT_THAT(seen.data(), ElementsAre("hold", "m1", "m2", "m3", "m4", "m5"));
  EXPECT_EQ(sub->dropped(), 0);
  EXPECT_EQ(QueueOutcome("sq.backpressure", "rejected"), 0);
}

TEST_F(SubscribeQueueTest, UnsubscribeCancelsWaitingMessagesAndCountsThem) {
  Gate gate;
  Latch holding(1);
  Seen seen;
  SubscribeOptions options;
  options.workers = 1;
  auto sub = SubscribeHolding("sq.unsub", options, gate, holding, seen);
  ASSERT_NE(sub, nullptr);
  ASSERT_NO_FATAL_FAILURE(HoldThenPublish("sq.unsub", holding, 3));
  ASSERT_TRUE(Eventually([&] { return QueueDepth("sq.unsub") == 3; }));
  absl::Status result;
  std::thread closer([&] { result = sub->Unsubscribe(); });
  // The waiting messages are cancelled at once; the running handler is
  // waited for.
  ASSERT_TRUE(Eventually([&] { return SubscribeErrors("CANCELLED") == 3; }));
  gate.Open();
  closer.join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_THAT(seen.data(), ElementsAre("hold"));
  EXPECT_EQ(sub->dropped(), 3);
  EXPECT_EQ(QueueOutcome("sq.unsub", "cancelled"), 3);
}

TEST_F(SubscribeQueueTest, DrainFinishesQueuedWork) {
  Gate gate;
  Latch holding(1);
  Seen seen;
  SubscribeOptions options;
  options.workers = 1;
  auto sub = SubscribeHolding("sq.drain", options, gate, holding, seen);
  ASSERT_NE(sub, nullptr);
  ASSERT_NO_FATAL_FAILURE(HoldThenPublish("sq.drain", holding, 5));
  ASSERT_TRUE(Eventually([&] { return QueueDepth("sq.drain") == 5; }));
  absl::Status result = absl::UnknownError("not returned");
  std::thread drainer([&] { result = sub->Drain(kSyncPointTimeout); });
  gate.Open();
  drainer.join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_THAT(seen.data(), ElementsAre("hold", "m1", "m2", "m3", "m4", "m5"));
  EXPECT_FALSE(sub->active());
  EXPECT_EQ(sub->dropped(), 0);
  EXPECT_EQ(QueueOutcome("sq.drain", "completed"), 6);
  // Ended: later calls are no-ops.
  EXPECT_TRUE(sub->Drain(absl::Seconds(1)).ok());
  EXPECT_TRUE(sub->Unsubscribe().ok());
}

TEST_F(SubscribeQueueTest, DrainWithAShortTimeoutCancelsAndReportsIt) {
  Gate gate;
  Latch holding(1);
  Seen seen;
  SubscribeOptions options;
  options.workers = 1;
  auto sub = SubscribeHolding("sq.drain_short", options, gate, holding, seen);
  ASSERT_NE(sub, nullptr);
  ASSERT_NO_FATAL_FAILURE(HoldThenPublish("sq.drain_short", holding, 5));
  ASSERT_TRUE(Eventually([&] { return QueueDepth("sq.drain_short") == 5; }));
  absl::Status result;
  std::thread drainer([&] { result = sub->Drain(absl::Milliseconds(20)); });
  // The handler holds the only worker past the timeout: the five waiting
  // messages are cancelled, and the drain still waits for the running call.
  ASSERT_TRUE(Eventually([&] { return SubscribeErrors("CANCELLED") == 5; }));
  gate.Open();
  drainer.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kDeadlineExceeded) << result;
  EXPECT_THAT(result.message(), HasSubstr("5 message(s)"));
  EXPECT_THAT(seen.data(), ElementsAre("hold"));
  EXPECT_EQ(sub->dropped(), 5);
  EXPECT_EQ(QueueOutcome("sq.drain_short", "cancelled"), 5);
  EXPECT_THAT(logger_->lines(),
              ::testing::Contains(HasSubstr("sq.drain_short")));
}

TEST_F(SubscribeQueueTest, InlineDrainHandlesWhatIsPendingInTheClient) {
  Gate gate;
  Latch holding(1);
  Seen seen;
  auto sub = SubscribeHolding("sq.inline_drain", {}, gate, holding, seen);
  ASSERT_NE(sub, nullptr);
  ASSERT_NO_FATAL_FAILURE(HoldThenPublish("sq.inline_drain", holding, 3));
  absl::Status result = absl::UnknownError("not returned");
  std::thread drainer([&] { result = sub->Drain(kSyncPointTimeout); });
  gate.Open();
  drainer.join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_THAT(seen.data(), ElementsAre("hold", "m1", "m2", "m3"));
}

TEST_F(SubscribeQueueTest, InlineDrainTimeoutCountsWhatTheClientDropped) {
  Gate gate;
  Latch holding(1);
  Seen seen;
  auto sub = SubscribeHolding("sq.inline_short", {}, gate, holding, seen);
  ASSERT_NE(sub, nullptr);
  ASSERT_NO_FATAL_FAILURE(HoldThenPublish("sq.inline_short", holding, 3));
  absl::Status result;
  std::thread drainer([&] { result = sub->Drain(absl::Milliseconds(20)); });
  ASSERT_TRUE(Eventually([&] { return SubscribeErrors("CANCELLED") == 3; }));
  gate.Open();
  drainer.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kDeadlineExceeded) << result;
  EXPECT_THAT(result.message(), HasSubstr("3 message(s)"));
  EXPECT_THAT(seen.data(), ElementsAre("hold"));
}

TEST_F(SubscribeQueueTest, DrainFromTheOwnHandlerIsRefused) {
  Latch done(1);
  absl::Status inner;
  std::unique_ptr<Subscription>* self = nullptr;
  std::unique_ptr<Subscription> sub;
  std::mutex mu;
  SubscribeOptions options;
  options.workers = 2;
  auto made = conn_->Subscribe(
      "sq.self", "",
      [&](const Message&) {
        std::lock_guard<std::mutex> lock(mu);
        inner = (*self)->Drain(absl::Seconds(1));
        done.CountDown();
      },
      options);
  ASSERT_TRUE(made.ok()) << made.status();
  {
    std::lock_guard<std::mutex> lock(mu);
    sub = *std::move(made);
    self = &sub;
  }
  Publish("sq.self", "x");
  Flush();
  ASSERT_TRUE(done.Wait());
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(inner.code(), absl::StatusCode::kFailedPrecondition) << inner;
}

TEST_F(SubscribeQueueTest, BadOptionsAreInvalidArgument) {
  SubscribeOptions negative;
  negative.workers = -1;
  auto sub = conn_->Subscribe(
      "sq.bad", "", [](const Message&) {}, negative);
  EXPECT_EQ(sub.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sub.status().message(), HasSubstr("workers"));
  SubscribeOptions timeout;
  timeout.workers = 1;
  timeout.block_timeout = absl::Milliseconds(-1);
  sub = conn_->Subscribe(
      "sq.bad", "", [](const Message&) {}, timeout);
  EXPECT_EQ(sub.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sub.status().message(), HasSubstr("block_timeout"));
}

// ---------------------------------------------------------------------------
// End-to-end delivery latency.

TEST_F(SubscribeQueueTest, DeliveryLatencyIsObservedUnderThePattern) {
  Latch inline_done(1);
  Latch queued_done(1);
  auto inline_sub = conn_->Subscribe(
      "lat.inline.*", "", [&](const Message&) { inline_done.CountDown(); });
  ASSERT_TRUE(inline_sub.ok());
  SubscribeOptions options;
  options.workers = 2;
  options.metric_subject = "lat_queued";
  auto queued_sub = conn_->Subscribe(
      "lat.queued.*", "", [&](const Message&) { queued_done.CountDown(); },
      options);
  ASSERT_TRUE(queued_sub.ok());
  EXPECT_EQ(
      Metric("natsgw_delivery_latency_seconds", {{"subject", "lat.inline.*"}}),
      0);
  Publish("lat.inline.42", "x");
  Publish("lat.queued.42", "x");
  Flush();
  ASSERT_TRUE(inline_done.Wait());
  ASSERT_TRUE(queued_done.Wait());
  EXPECT_EQ(
      Metric("natsgw_delivery_latency_seconds", {{"subject", "lat.inline.*"}}),
      1);
  EXPECT_EQ(
      Metric("natsgw_delivery_latency_seconds", {{"subject", "lat_queued"}}),
      1);
  // Never the concrete subject.
  for (absl::string_view line : absl::StrSplit(Scrape(), '\n')) {
    if (!absl::StartsWith(line, "natsgw_delivery_latency_seconds")) continue;
    EXPECT_THAT(line, ::testing::Not(HasSubstr(".42"))) << line;
  }
}

// ---------------------------------------------------------------------------
// Served endpoints: the overflow policy of ServeOptions.

TEST_F(SubscribeQueueTest,
       EndpointWithBlockPolicyWaitsForAWorkerInsteadOfShed) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  Gate gate;
  Latch holding(1);
  ServeOptions serve;
  serve.workers = 1;
  serve.max_in_flight = 1;  // no waiting room at all
  serve.overflow = OverflowPolicy::kBlock;
  serve.block_timeout = absl::InfiniteDuration();
  auto endpoint = conn_->Serve(
      "sq.Block", "q",
      [&](const Message& m) -> absl::StatusOr<Reply> {
        if (m.data == "hold") {
          holding.CountDown();
          gate.Wait();
        }
        return Reply{m.data, {}};
      },
      serve);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  std::vector<absl::StatusOr<Message>> replies(3, absl::UnknownError(""));
  std::vector<std::thread> callers;
  callers.emplace_back([&] {
    replies[0] = client->Request("sq.Block", "hold", kSyncPointTimeout);
  });
  ASSERT_TRUE(holding.Wait());
  for (int i = 1; i <= 2; ++i) {
    callers.emplace_back([&, i] {
      replies[i] =
          client->Request("sq.Block", absl::StrCat("r", i), kSyncPointTimeout);
    });
  }
  // The later requests arrive while the only worker is busy: with kBlock
  // the delivery thread holds the first of them until the worker is free
  // (the other waits in the client library) rather than shedding it.
  const bool blocked = Eventually([&] {
    return Metric("natsgw_messages_received_total",
                  {{"subject", "sq.Block"}}) == 2;
  });
  EXPECT_TRUE(blocked);
  gate.Open();
  for (std::thread& t : callers) t.join();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(replies[i].ok()) << i << ": " << replies[i].status();
  }
  EXPECT_EQ(replies[1]->data, "r1");
  EXPECT_EQ((*endpoint)->stats().shed, 0);
}

TEST_F(SubscribeQueueTest, EndpointDropOldestShedsTheLongestWaitingRequest) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  Gate gate;
  Latch holding(1);
  ServeOptions serve;
  serve.workers = 1;
  serve.max_in_flight = 2;  // one waiting
  serve.overflow = OverflowPolicy::kDropOldest;
  auto endpoint = conn_->Serve(
      "sq.Drop", "q",
      [&](const Message& m) -> absl::StatusOr<Reply> {
        if (m.data == "hold") {
          holding.CountDown();
          gate.Wait();
        }
        return Reply{m.data, {}};
      },
      serve);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  std::vector<absl::StatusOr<Message>> replies(3, absl::UnknownError(""));
  std::thread first([&] {
    replies[0] = client->Request("sq.Drop", "hold", kSyncPointTimeout);
  });
  ASSERT_TRUE(holding.Wait());
  std::thread second([&] {
    replies[1] = client->Request("sq.Drop", "r1", kSyncPointTimeout);
  });
  ASSERT_TRUE(Eventually([&] { return QueueDepth("sq.Drop") == 1; }));
  std::thread third([&] {
    replies[2] = client->Request("sq.Drop", "r2", kSyncPointTimeout);
  });
  // r2 pushes r1 out: r1 is answered RESOURCE_EXHAUSTED while the worker is
  // still held.
  second.join();
  EXPECT_EQ(replies[1].status().code(), absl::StatusCode::kResourceExhausted)
      << replies[1].status();
  EXPECT_THAT(replies[1].status().message(), HasSubstr("overloaded"));
  gate.Open();
  first.join();
  third.join();
  ASSERT_TRUE(replies[0].ok()) << replies[0].status();
  ASSERT_TRUE(replies[2].ok()) << replies[2].status();
  EXPECT_EQ(replies[2]->data, "r2");
  EXPECT_EQ((*endpoint)->stats().shed, 1);
  EXPECT_EQ(Metric("natsgw_server_shed_total", {{"subject", "sq.Drop"}}), 1);
  EXPECT_EQ(QueueOutcome("sq.Drop", "dropped"), 1);
}

}  // namespace
}  // namespace natsgw
