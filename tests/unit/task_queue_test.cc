#include "natsgw/task_queue.h"

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/capturing_logger.h"
#include "harness/metric_value.h"
#include "harness/sync_points.h"

namespace natsgw {
namespace {

using ::natsgw::testing::Eventually;
using ::natsgw::testing::Gate;
using ::natsgw::testing::Latch;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// What happened to the tasks a test submitted, thread-safely.
class Outcomes {
 public:
  // A task that records `id` as run.
  Task Make(int id, absl::Time deadline = absl::InfiniteFuture()) {
    Task task;
    task.run = [this, id] { Record(id, absl::OkStatus()); };
    task.discard = [this, id](absl::Status s) { Record(id, std::move(s)); };
    task.deadline = deadline;
    return task;
  }
  void Record(int id, absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    order_.push_back(id);
    codes_.push_back(status.code());
    messages_.push_back(std::string(status.message()));
  }
  std::vector<int> order() {
    std::lock_guard<std::mutex> lock(mu_);
    return order_;
  }
  // The outcome of task `id` (OK: it ran); UNKNOWN if it has none yet.
  absl::StatusCode code(int id) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < order_.size(); ++i) {
      if (order_[i] == id) return codes_[i];
    }
    return absl::StatusCode::kUnknown;
  }
  std::string message(int id) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < order_.size(); ++i) {
      if (order_[i] == id) return messages_[i];
    }
    return "";
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return order_.size();
  }

 private:
  std::mutex mu_;
  std::vector<int> order_;
  std::vector<absl::StatusCode> codes_;
  std::vector<std::string> messages_;
};

// A task that reports it started, then waits for the gate.
Task Blocker(Gate& gate, Latch* started = nullptr) {
  Task task;
  task.run = [&gate, started] {
    if (started != nullptr) started->CountDown();
    gate.Wait();
  };
  return task;
}

std::unique_ptr<TaskQueue> MakeQueue(TaskQueueOptions options) {
  if (options.name.empty()) options.name = "test";
  absl::StatusOr<std::unique_ptr<TaskQueue>> queue =
      TaskQueue::Create(std::move(options));
  EXPECT_TRUE(queue.ok()) << queue.status();
  return queue.ok() ? *std::move(queue) : nullptr;
}

// The value of the series of `family` whose labels include `labels`
// (histograms: the sample count); -1 if there is no such series.
double MetricValue(prometheus::Registry& registry, const std::string& family,
                   const std::map<std::string, std::string>& labels) {
  return testing::MetricValue(registry, family, labels).value_or(-1);
}

int64_t Ended(const TaskQueueStats& s) {
  return s.completed + s.rejected + s.dropped + s.expired + s.cancelled;
}

// ---------------------------------------------------------------------------
// Options.

TEST(TaskQueueTest, CreateRejectsBadOptionsNamingTheRule) {
  TaskQueueOptions no_name;
  auto q = TaskQueue::Create(no_name);
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(q.status().message(), HasSubstr("name"));

  TaskQueueOptions no_workers;
  no_workers.name = "x";
  no_workers.workers = 0;
  q = TaskQueue::Create(no_workers);
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(q.status().message(), HasSubstr("workers"));

  TaskQueueOptions negative;
  negative.name = "x";
  negative.block_timeout = absl::Milliseconds(-1);
  q = TaskQueue::Create(negative);
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(q.status().message(), HasSubstr("block_timeout"));
}

TEST(TaskQueueTest, MetricConflictInTheRegistryIsAStatusNotAnException) {
  auto registry = std::make_shared<prometheus::Registry>();
  // Someone else took the name with another metric type.
  prometheus::BuildCounter()
      .Name("natsgw_task_queue_depth")
      .Help("not ours")
      .Register(*registry);
  TaskQueueOptions options;
  options.name = "x";
  options.registry = registry;
  auto q = TaskQueue::Create(options);
  EXPECT_EQ(q.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(q.status().message(), HasSubstr("'x'"));
}

TEST(TaskQueueTest, OverflowPolicyNames) {
  EXPECT_EQ(OverflowPolicyName(OverflowPolicy::kBlock), "block");
  EXPECT_EQ(OverflowPolicyName(OverflowPolicy::kReject), "reject");
  EXPECT_EQ(OverflowPolicyName(OverflowPolicy::kDropOldest), "drop_oldest");
}

// ---------------------------------------------------------------------------
// Running.

TEST(TaskQueueTest, RunsEveryAcceptedTaskBeforeShutdownReturns) {
  std::atomic<int> ran{0};
  TaskQueueOptions options;
  options.workers = 3;
  options.capacity = 1000;
  auto queue = MakeQueue(options);
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(queue->Submit({.run = [&ran] { ran.fetch_add(1); }}).ok());
  }
  EXPECT_TRUE(queue->Shutdown(absl::InfiniteDuration()).ok());
  EXPECT_EQ(ran.load(), 500);
  TaskQueueStats stats = queue->stats();
  EXPECT_EQ(stats.submitted, 500);
  EXPECT_EQ(stats.completed, 500);
  EXPECT_EQ(queue->depth(), 0u);
  EXPECT_EQ(queue->running(), 0);
}

TEST(TaskQueueTest, StartsTasksInSubmissionOrder) {
  Gate gate;
  Latch started(1);
  Outcomes outcomes;
  TaskQueueOptions options;
  options.workers = 1;
  options.capacity = 20;
  auto queue = MakeQueue(options);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  for (int i = 0; i < 10; ++i)
    ASSERT_TRUE(queue->Submit(outcomes.Make(i)).ok());
  gate.Open();
  ASSERT_TRUE(queue->Shutdown(absl::InfiniteDuration()).ok());
  EXPECT_THAT(outcomes.order(), ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
}

TEST(TaskQueueTest, RunsOnItsWorkersConcurrently) {
  constexpr int kWorkers = 4;
  Gate gate;
  Latch all_started(kWorkers);
  std::atomic<int> on_worker{0};
  TaskQueueOptions options;
  options.workers = kWorkers;
  options.capacity = 0;
  auto queue = MakeQueue(options);
  TaskQueue* raw = queue.get();
  EXPECT_FALSE(raw->IsWorkerThread());
  for (int i = 0; i < kWorkers; ++i) {
    ASSERT_TRUE(raw->Submit({.run =
                                 [&, raw] {
                                   if (raw->IsWorkerThread())
                                     on_worker.fetch_add(1);
                                   all_started.CountDown();
                                   gate.Wait();
                                 }})
                    .ok());
  }
  // All four run at once: each waits for the gate the others hold closed.
  ASSERT_TRUE(all_started.Wait());
  EXPECT_EQ(queue->running(), kWorkers);
  gate.Open();
  ASSERT_TRUE(queue->Shutdown(absl::InfiniteDuration()).ok());
  EXPECT_EQ(on_worker.load(), kWorkers);
}

TEST(TaskQueueTest, AnExceptionFromRunDoesNotKillTheWorker) {
  auto logger = std::make_shared<testing::CapturingLogger>();
  TaskQueueOptions options;
  options.workers = 1;
  options.logger = logger;
  auto queue = MakeQueue(options);
  Latch second(1);
  ASSERT_TRUE(
      queue->Submit({.run = [] { throw std::runtime_error("boom"); }}).ok());
  ASSERT_TRUE(queue->Submit({.run = [&] { second.CountDown(); }}).ok());
  ASSERT_TRUE(second.Wait());
  ASSERT_TRUE(queue->Shutdown(absl::InfiniteDuration()).ok());
  TaskQueueStats stats = queue->stats();
  EXPECT_EQ(stats.completed, 2);
  EXPECT_EQ(stats.threw, 1);
  EXPECT_THAT(logger->lines(), ElementsAre(HasSubstr("boom")));
}

TEST(TaskQueueTest, TaskWithoutRunIsRejectedAndDiscarded) {
  auto queue = MakeQueue({});
  absl::Status seen;
  absl::Status s =
      queue->Submit({.discard = [&](absl::Status why) { seen = why; }});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(seen, s);
  EXPECT_EQ(queue->stats().rejected, 1);
}

// ---------------------------------------------------------------------------
// Every policy at the limit.

TEST(TaskQueueTest, RejectFailsAtOnceOnTheCallingThreadAndCounts) {
  auto registry = std::make_shared<prometheus::Registry>();
  Gate gate;
  Latch started(1);
  Outcomes outcomes;
  TaskQueueOptions options;
  options.name = "rejecting";
  options.workers = 1;
  options.capacity = 2;
  options.overflow = OverflowPolicy::kReject;
  options.registry = registry;
  auto queue = MakeQueue(options);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  ASSERT_TRUE(queue->Submit(outcomes.Make(1)).ok());
  ASSERT_TRUE(queue->Submit(outcomes.Make(2)).ok());
  EXPECT_EQ(queue->vacancies(), 0u);

  std::thread::id discarded_on;
  absl::Status discarded;
  Task third = outcomes.Make(3);
  third.discard = [&](absl::Status why) {
    discarded_on = std::this_thread::get_id();
    discarded = why;
  };
  absl::Status s = queue->Submit(std::move(third));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("reject"));
  EXPECT_EQ(discarded, s);
  EXPECT_EQ(discarded_on, std::this_thread::get_id());
  EXPECT_EQ(queue->stats().rejected, 1);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_tasks_total",
                        {{"queue", "rejecting"}, {"outcome", "rejected"}}),
            1);

  gate.Open();
  ASSERT_TRUE(queue->Shutdown(absl::InfiniteDuration()).ok());
  EXPECT_THAT(outcomes.order(), ElementsAre(1, 2));
  EXPECT_EQ(queue->stats().completed, 3);
}

TEST(TaskQueueTest, DropOldestDiscardsTheOldestWaitingTaskAndCounts) {
  auto registry = std::make_shared<prometheus::Registry>();
  Gate gate;
  Latch started(1);
  Outcomes outcomes;
  TaskQueueOptions options;
  options.name = "dropping";
  options.workers = 1;
  options.capacity = 2;
  options.overflow = OverflowPolicy::kDropOldest;
  options.registry = registry;
  auto queue = MakeQueue(options);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  ASSERT_TRUE(queue->Submit(outcomes.Make(1)).ok());
  ASSERT_TRUE(queue->Submit(outcomes.Make(2)).ok());
  // Room for 3 by pushing out 1, for 4 by pushing out 2.
  ASSERT_TRUE(queue->Submit(outcomes.Make(3)).ok());
  ASSERT_TRUE(queue->Submit(outcomes.Make(4)).ok());
  EXPECT_EQ(outcomes.code(1), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(outcomes.message(1), HasSubstr("oldest"));
  EXPECT_EQ(outcomes.code(2), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(queue->depth(), 2u);
  EXPECT_EQ(queue->stats().dropped, 2);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_tasks_total",
                        {{"queue", "dropping"}, {"outcome", "dropped"}}),
            2);
  gate.Open();
  ASSERT_TRUE(queue->Shutdown(absl::InfiniteDuration()).ok());
  EXPECT_THAT(outcomes.order(), ElementsAre(1, 2, 3, 4));
  EXPECT_EQ(outcomes.code(3), absl::StatusCode::kOk);
  EXPECT_EQ(outcomes.code(4), absl::StatusCode::kOk);
  TaskQueueStats stats = queue->stats();
  EXPECT_EQ(stats.submitted, 5);
  EXPECT_EQ(stats.completed, 3);
  EXPECT_EQ(Ended(stats), stats.submitted);
}

TEST(TaskQueueTest, DropOldestWithNothingWaitingRejectsTheNewTask) {
  Gate gate;
  Latch started(1);
  Outcomes outcomes;
  TaskQueueOptions options;
  options.workers = 1;
  options.capacity = 0;
  options.overflow = OverflowPolicy::kDropOldest;
  auto queue = MakeQueue(options);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  EXPECT_EQ(queue->Submit(outcomes.Make(1)).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(outcomes.code(1), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(queue->stats().rejected, 1);
  EXPECT_EQ(queue->stats().dropped, 0);
  gate.Open();
}

TEST(TaskQueueTest, BlockGivesUpAfterBlockTimeoutAndCounts) {
  auto registry = std::make_shared<prometheus::Registry>();
  Gate gate;
  Latch started(1);
  Outcomes outcomes;
  TaskQueueOptions options;
  options.name = "blocking";
  options.workers = 1;
  options.capacity = 1;
  options.overflow = OverflowPolicy::kBlock;
  options.block_timeout = absl::Milliseconds(5);
  options.registry = registry;
  auto queue = MakeQueue(options);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  ASSERT_TRUE(queue->Submit(outcomes.Make(1)).ok());
  absl::Status s = queue->Submit(outcomes.Make(2));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("block"));
  EXPECT_EQ(outcomes.code(2), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(queue->stats().rejected, 1);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_tasks_total",
                        {{"queue", "blocking"}, {"outcome", "rejected"}}),
            1);
  gate.Open();
  ASSERT_TRUE(queue->Shutdown(absl::InfiniteDuration()).ok());
  EXPECT_EQ(outcomes.code(1), absl::StatusCode::kOk);
}

TEST(TaskQueueTest, BlockWaitsForRoomAndIsAcceptedWhenAWorkerFrees) {
  Gate gate;
  Latch started(1);
  Outcomes outcomes;
  TaskQueueOptions options;
  options.workers = 1;
  options.capacity = 1;
  options.overflow = OverflowPolicy::kBlock;
  options.block_timeout = absl::InfiniteDuration();
  auto queue = MakeQueue(options);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  ASSERT_TRUE(queue->Submit(outcomes.Make(1)).ok());
  absl::Status blocked_result = absl::UnknownError("not returned");
  std::thread producer(
      [&] { blocked_result = queue->Submit(outcomes.Make(2)); });
  // The producer is inside Submit (counted) and cannot have been accepted:
  // nothing has left the queue.
  ASSERT_TRUE(Eventually([&] { return queue->stats().submitted == 3; }));
  EXPECT_EQ(queue->depth(), 1u);
  gate.Open();
  producer.join();
  EXPECT_TRUE(blocked_result.ok()) << blocked_result;
  ASSERT_TRUE(queue->Shutdown(absl::InfiniteDuration()).ok());
  EXPECT_THAT(outcomes.order(), ElementsAre(1, 2));
}

TEST(TaskQueueTest, ShutdownWakesABlockedSubmitWithUnavailable) {
  Gate gate;
  Latch started(1);
  Outcomes outcomes;
  TaskQueueOptions options;
  options.workers = 1;
  options.capacity = 0;
  options.overflow = OverflowPolicy::kBlock;
  options.block_timeout = absl::InfiniteDuration();
  auto queue = MakeQueue(options);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  absl::Status blocked_result;
  std::thread producer(
      [&] { blocked_result = queue->Submit(outcomes.Make(1)); });
  ASSERT_TRUE(Eventually([&] { return queue->stats().submitted == 2; }));
  absl::Status shutdown_result;
  std::thread stopper(
      [&] { shutdown_result = queue->Shutdown(absl::InfiniteDuration()); });
  producer.join();  // woken by the shutdown, while the blocker still runs
  EXPECT_EQ(blocked_result.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(outcomes.code(1), absl::StatusCode::kUnavailable);
  gate.Open();
  stopper.join();
  EXPECT_TRUE(shutdown_result.ok());
  EXPECT_EQ(queue->stats().rejected, 1);
}

TEST(TaskQueueTest, CapacityZeroAcceptsOnlyWhileAWorkerIsIdle) {
  Gate gate;
  Latch started(2);
  Outcomes outcomes;
  TaskQueueOptions options;
  options.workers = 2;
  options.capacity = 0;
  auto queue = MakeQueue(options);
  EXPECT_EQ(queue->vacancies(), 2u);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  // Both workers are taken, whether or not they have started yet.
  EXPECT_EQ(queue->vacancies(), 0u);
  EXPECT_EQ(queue->Submit(outcomes.Make(1)).code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(started.Wait());
  EXPECT_EQ(queue->depth(), 0u);
  EXPECT_EQ(queue->running(), 2);
  gate.Open();
  ASSERT_TRUE(queue->Shutdown(absl::InfiniteDuration()).ok());
  TaskQueueStats stats = queue->stats();
  EXPECT_EQ(stats.completed, 2);
  EXPECT_EQ(stats.rejected, 1);
}

// ---------------------------------------------------------------------------
// Deadlines.

TEST(TaskQueueTest, DeadlineAlreadyPassedAtSubmitIsDeadlineExceeded) {
  auto registry = std::make_shared<prometheus::Registry>();
  Outcomes outcomes;
  TaskQueueOptions options;
  options.name = "late";
  options.registry = registry;
  auto queue = MakeQueue(options);
  absl::Status s =
      queue->Submit(outcomes.Make(1, absl::Now() - absl::Seconds(1)));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(outcomes.code(1), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(queue->stats().expired, 1);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_tasks_total",
                        {{"queue", "late"}, {"outcome", "expired"}}),
            1);
}

TEST(TaskQueueTest, DeadlinePassingWhileWaitingIsDiscardedOnTheWorker) {
  Gate gate;
  Latch started(1);
  Outcomes outcomes;
  TaskQueueOptions options;
  options.workers = 1;
  auto queue = MakeQueue(options);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  const absl::Time deadline = absl::Now() + absl::Milliseconds(50);
  ASSERT_TRUE(queue->Submit(outcomes.Make(1, deadline)).ok());
  ASSERT_TRUE(queue->Submit(outcomes.Make(2)).ok());
  // Hold the worker until the deadline has surely passed.
  while (absl::Now() <= deadline) absl::SleepFor(absl::Milliseconds(5));
  gate.Open();
  ASSERT_TRUE(queue->Shutdown(absl::InfiniteDuration()).ok());
  EXPECT_EQ(outcomes.code(1), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(outcomes.message(1), HasSubstr("deadline"));
  EXPECT_EQ(outcomes.code(2), absl::StatusCode::kOk);
  TaskQueueStats stats = queue->stats();
  EXPECT_EQ(stats.expired, 1);
  EXPECT_EQ(stats.completed, 2);
}

// ---------------------------------------------------------------------------
// Metrics.

TEST(TaskQueueTest, DepthRunningAndWaitTimeAreVisibleInTheRegistry) {
  auto registry = std::make_shared<prometheus::Registry>();
  Gate gate;
  Latch started(1);
  TaskQueueOptions options;
  options.name = "observed";
  options.workers = 1;
  options.capacity = 8;
  options.registry = registry;
  auto queue = MakeQueue(options);
  const std::map<std::string, std::string> labels = {{"queue", "observed"}};
  // Every outcome series exists from the start, at zero.
  for (const char* outcome :
       {"completed", "rejected", "dropped", "expired", "cancelled"}) {
    EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_tasks_total",
                          {{"queue", "observed"}, {"outcome", outcome}}),
              0)
        << outcome;
  }
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  ASSERT_TRUE(queue->Submit({.run = [] {}}).ok());
  ASSERT_TRUE(queue->Submit({.run = [] {}}).ok());
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_depth", labels), 2);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_running", labels), 1);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_wait_seconds", labels),
            1);
  gate.Open();
  ASSERT_TRUE(queue->Shutdown(absl::InfiniteDuration()).ok());
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_depth", labels), 0);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_running", labels), 0);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_wait_seconds", labels),
            3);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_tasks_total",
                        {{"queue", "observed"}, {"outcome", "completed"}}),
            3);
}

TEST(TaskQueueTest, QueuesSharingARegistryKeepTheirOwnSeries) {
  auto registry = std::make_shared<prometheus::Registry>();
  TaskQueueOptions a;
  a.name = "a";
  a.registry = registry;
  TaskQueueOptions b = a;
  b.name = "b";
  auto qa = MakeQueue(a);
  auto qb = MakeQueue(b);
  ASSERT_TRUE(qa->Submit({.run = [] {}}).ok());
  ASSERT_TRUE(qa->Shutdown(absl::InfiniteDuration()).ok());
  ASSERT_TRUE(qb->Shutdown(absl::InfiniteDuration()).ok());
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_tasks_total",
                        {{"queue", "a"}, {"outcome", "completed"}}),
            1);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_tasks_total",
                        {{"queue", "b"}, {"outcome", "completed"}}),
            0);
}

// ---------------------------------------------------------------------------
// Shutdown.

TEST(TaskQueueTest, GracefulShutdownRunsWaitingTasksThenRefusesNewOnes) {
  Gate gate;
  Latch started(1);
  Outcomes outcomes;
  TaskQueueOptions options;
  options.workers = 1;
  options.capacity = 10;
  auto queue = MakeQueue(options);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(queue->Submit(outcomes.Make(i)).ok());
  absl::Status result = absl::UnknownError("not returned");
  std::thread stopper(
      [&] { result = queue->Shutdown(absl::InfiniteDuration()); });
  // Intake stops as soon as Shutdown begins, though tasks still wait.
  ASSERT_TRUE(Eventually([&] { return queue->vacancies() == 0; }));
  ASSERT_TRUE(Eventually([&] {
    return queue->Submit(outcomes.Make(100)).code() ==
           absl::StatusCode::kUnavailable;
  }));
  gate.Open();
  stopper.join();
  EXPECT_TRUE(result.ok()) << result;
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(outcomes.code(i), absl::StatusCode::kOk);
  EXPECT_EQ(outcomes.code(100), absl::StatusCode::kUnavailable);
  TaskQueueStats stats = queue->stats();
  EXPECT_EQ(stats.completed, 6);
  EXPECT_EQ(stats.cancelled, 0);
  EXPECT_EQ(Ended(stats), stats.submitted);
}

TEST(TaskQueueTest, ShutdownTimeoutCancelsWaitingTasksAndReportsHowMany) {
  auto registry = std::make_shared<prometheus::Registry>();
  Gate gate;
  Latch started(1);
  Latch cancelled(5);
  std::vector<absl::StatusCode> codes(5, absl::StatusCode::kUnknown);
  std::atomic<int> ran{0};
  TaskQueueOptions options;
  options.name = "closing";
  options.workers = 1;
  options.capacity = 10;
  options.registry = registry;
  auto queue = MakeQueue(options);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(queue
                    ->Submit({.run = [&] { ran.fetch_add(1); },
                              .discard =
                                  [&, i](absl::Status s) {
                                    codes[i] = s.code();
                                    cancelled.CountDown();
                                  }})
                    .ok());
  }
  absl::Status result;
  std::thread stopper(
      [&] { result = queue->Shutdown(absl::Milliseconds(10)); });
  // The worker is held, so nothing can drain: all five are cancelled at the
  // timeout, while the running task still runs.
  ASSERT_TRUE(cancelled.Wait());
  EXPECT_EQ(queue->running(), 1);
  gate.Open();
  stopper.join();
  EXPECT_EQ(result.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(result.message(), HasSubstr("5 waiting task(s) cancelled"));
  EXPECT_EQ(ran.load(), 0);
  for (absl::StatusCode code : codes) {
    EXPECT_EQ(code, absl::StatusCode::kCancelled);
  }
  TaskQueueStats stats = queue->stats();
  EXPECT_EQ(stats.cancelled, 5);
  EXPECT_EQ(stats.completed, 1);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_tasks_total",
                        {{"queue", "closing"}, {"outcome", "cancelled"}}),
            5);
  EXPECT_EQ(
      MetricValue(*registry, "natsgw_task_queue_depth", {{"queue", "closing"}}),
      0);
  // Idempotent, and says the same.
  EXPECT_EQ(queue->Shutdown(absl::InfiniteDuration()).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(TaskQueueTest, ShutdownWithZeroTimeoutCancelsEverythingWaiting) {
  Gate gate;
  Latch started(1);
  Outcomes outcomes;
  TaskQueueOptions options;
  options.workers = 2;
  options.capacity = 10;
  auto queue = MakeQueue(options);
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(queue->Submit(outcomes.Make(i)).ok());
  gate.Open();  // the workers may race the shutdown for the waiting tasks
  absl::Status result = queue->Shutdown(absl::ZeroDuration());
  TaskQueueStats stats = queue->stats();
  // Whatever a worker took before the shutdown ran; the rest was cancelled.
  EXPECT_EQ(stats.completed + stats.cancelled, 5);
  EXPECT_EQ(result.ok(), stats.cancelled == 0);
  EXPECT_EQ(outcomes.size(), 3u);
}

TEST(TaskQueueTest, ShutdownFromInsideATaskDoesNotDeadlock) {
  auto queue = MakeQueue({.name = "self", .workers = 2, .capacity = 10});
  Latch done(1);
  TaskQueue* raw = queue.get();
  absl::Status inner;
  ASSERT_TRUE(raw->Submit({.run =
                               [raw, &done, &inner] {
                                 EXPECT_TRUE(raw->IsWorkerThread());
                                 inner =
                                     raw->Shutdown(absl::InfiniteDuration());
                                 done.CountDown();
                               }})
                  .ok());
  ASSERT_TRUE(done.Wait());
  EXPECT_TRUE(inner.ok()) << inner;
  queue.reset();  // waits for the worker that ran the task
}

TEST(TaskQueueTest, ShutdownInsideTheOnlyWorkerStillRunsTheWaitingTasks) {
  Gate gate;
  Outcomes outcomes;
  auto queue = MakeQueue({.name = "single", .workers = 1, .capacity = 10});
  TaskQueue* raw = queue.get();
  ASSERT_TRUE(
      raw->Submit({.run =
                       [raw, &gate] {
                         gate.Wait();
                         // Returns at once: only this thread could run the
                         // rest.
                         EXPECT_TRUE(
                             raw->Shutdown(absl::InfiniteDuration()).ok());
                       }})
          .ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(raw->Submit(outcomes.Make(i)).ok());
  gate.Open();
  // The destructor (a second Shutdown) waits for the worker to finish them.
  queue.reset();
  EXPECT_THAT(outcomes.order(), ElementsAre(0, 1, 2));
  EXPECT_EQ(outcomes.code(2), absl::StatusCode::kOk);
}

TEST(TaskQueueTest, QueueMayBeDestroyedFromInsideItsOwnTask) {
  auto owner = std::make_shared<std::unique_ptr<TaskQueue>>(
      MakeQueue({.name = "owned", .workers = 1}));
  Latch done(1);
  ASSERT_TRUE((*owner)
                  ->Submit({.run =
                                [owner, &done] {
                                  owner->reset();
                                  done.CountDown();
                                }})
                  .ok());
  ASSERT_TRUE(done.Wait());
}

// ---------------------------------------------------------------------------
// WaitForVacancy.

TEST(TaskQueueTest, WaitForVacancyWakesWhenAWorkerFrees) {
  Gate gate;
  Latch started(1);
  auto queue = MakeQueue({.name = "vacancy", .workers = 1, .capacity = 0});
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  EXPECT_EQ(queue->WaitForVacancy(absl::ZeroDuration()), 0u);
  size_t woke_with = 0;
  std::thread waiter(
      [&] { woke_with = queue->WaitForVacancy(absl::InfiniteDuration()); });
  gate.Open();
  waiter.join();
  EXPECT_EQ(woke_with, 1u);
}

TEST(TaskQueueTest, WaitForVacancyReturnsZeroOnceShutdownBegins) {
  Gate gate;
  Latch started(1);
  auto queue = MakeQueue({.name = "vacancy", .workers = 1, .capacity = 0});
  ASSERT_TRUE(queue->Submit(Blocker(gate, &started)).ok());
  ASSERT_TRUE(started.Wait());
  size_t woke_with = 99;
  std::thread waiter(
      [&] { woke_with = queue->WaitForVacancy(absl::InfiniteDuration()); });
  std::thread stopper(
      [&] { queue->Shutdown(absl::InfiniteDuration()).IgnoreError(); });
  waiter.join();  // before the blocker finishes
  EXPECT_EQ(woke_with, 0u);
  gate.Open();
  stopper.join();
}

// ---------------------------------------------------------------------------
// Many producers, many workers: every task ends exactly once.

// Parameters: the overflow policy, and whether Shutdown (with a short
// timeout) races the producers.
class TaskQueueStressTest
    : public ::testing::TestWithParam<std::tuple<OverflowPolicy, bool>> {};

TEST_P(TaskQueueStressTest, EveryTaskRunsOrIsDiscardedExactlyOnce) {
  constexpr int kProducers = 6;
  constexpr int kPerProducer = 400;
  constexpr int kTasks = kProducers * kPerProducer;
  auto registry = std::make_shared<prometheus::Registry>();
  TaskQueueOptions options;
  options.name = "stress";
  options.workers = 4;
  options.capacity = 8;
  options.overflow = std::get<0>(GetParam());
  const bool shutdown_midway = std::get<1>(GetParam());
  options.block_timeout = absl::Microseconds(200);
  options.registry = registry;
  auto queue = MakeQueue(options);
  std::vector<std::atomic<int>> ran(kTasks);
  std::vector<std::atomic<int>> discarded(kTasks);
  std::atomic<int> submit_failed{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        const int id = p * kPerProducer + i;
        Task task;
        task.run = [&ran, id] {
          // Long enough for the producers to outpace the workers.
          std::this_thread::yield();
          ran[id].fetch_add(1);
        };
        task.discard = [&discarded, id](absl::Status) {
          discarded[id].fetch_add(1);
        };
        // Some tasks are already late, some are tight, most have no limit.
        if (id % 17 == 0) task.deadline = absl::Now() - absl::Seconds(1);
        if (id % 13 == 0) task.deadline = absl::Now() + absl::Microseconds(50);
        if (!queue->Submit(std::move(task)).ok()) submit_failed.fetch_add(1);
      }
    });
  }
  // Shut down while the producers are still at it: some tasks are accepted
  // and cancelled or run, later ones are refused.
  std::thread stopper([&] {
    if (!shutdown_midway) return;
    while (queue->stats().submitted < kTasks / 2) std::this_thread::yield();
    queue->Shutdown(absl::Microseconds(100)).IgnoreError();
  });
  for (std::thread& t : producers) t.join();
  stopper.join();
  queue->Shutdown(absl::InfiniteDuration()).IgnoreError();

  int total_ran = 0, total_discarded = 0;
  for (int id = 0; id < kTasks; ++id) {
    ASSERT_EQ(ran[id].load() + discarded[id].load(), 1) << "task " << id;
    total_ran += ran[id].load();
    total_discarded += discarded[id].load();
  }
  TaskQueueStats stats = queue->stats();
  EXPECT_EQ(stats.submitted, kTasks);
  EXPECT_EQ(stats.completed, total_ran);
  EXPECT_EQ(stats.rejected + stats.dropped + stats.expired + stats.cancelled,
            total_discarded);
  EXPECT_EQ(Ended(stats), kTasks);
  // A failed Submit discarded its own task: rejected, or late at Submit.
  EXPECT_GE(submit_failed.load(), stats.rejected);
  EXPECT_LE(submit_failed.load(), stats.rejected + stats.expired);
  double metric_total = 0;
  for (const char* outcome :
       {"completed", "rejected", "dropped", "expired", "cancelled"}) {
    metric_total += MetricValue(*registry, "natsgw_task_queue_tasks_total",
                                {{"queue", "stress"}, {"outcome", outcome}});
  }
  EXPECT_EQ(metric_total, kTasks);
  EXPECT_EQ(
      MetricValue(*registry, "natsgw_task_queue_depth", {{"queue", "stress"}}),
      0);
  EXPECT_EQ(MetricValue(*registry, "natsgw_task_queue_running",
                        {{"queue", "stress"}}),
            0);
}

INSTANTIATE_TEST_SUITE_P(
    Policies, TaskQueueStressTest,
    ::testing::Combine(::testing::Values(OverflowPolicy::kBlock,
                                         OverflowPolicy::kReject,
                                         OverflowPolicy::kDropOldest),
                       ::testing::Bool()),
    [](const ::testing::TestParamInfo<std::tuple<OverflowPolicy, bool>>& info) {
      std::string name(OverflowPolicyName(std::get<0>(info.param)));
      name.erase(std::remove(name.begin(), name.end(), '_'), name.end());
      return name + (std::get<1>(info.param) ? "_ShutdownMidway" : "");
    });

}  // namespace
}  // namespace natsgw
