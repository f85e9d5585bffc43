// natsgw/task_queue.h: a bounded in-process task queue served by a fixed set
// of worker threads -- the C++ form of a Go buffered channel drained by worker
// goroutines -- with an overflow policy, per-task deadlines, graceful shutdown
// and Prometheus metrics. Served endpoints (ServeOptions::workers) and
// subscriptions (SubscribeOptions::workers) run their handlers on one; it is
// public so that application code can bound its own background work the same
// way.
//
//   natsgw::TaskQueueOptions options;
//   options.name = "welcome_email";        // metric label, bounded cardinality
//   options.workers = 4;
//   options.capacity = 128;
//   options.overflow = natsgw::OverflowPolicy::kBlock;
//   options.registry = registry;
//   NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<natsgw::TaskQueue> queue,
//                           natsgw::TaskQueue::Create(std::move(options)));
//
//   absl::Status s = queue->Submit({
//       .run = [user] { SendWelcomeEmail(user); },
//       .discard = [user](absl::Status why) { RecordNotSent(user, why); },
//       .deadline = absl::Now() + absl::Seconds(30),
//   });
//   ...
//   // On the way out: run what is queued for up to 10 s, cancel the rest.
//   absl::Status drained = queue->Shutdown(absl::Seconds(10));
//
// Accounting: every task handed to Submit ends exactly once, either by its
// `run` being called on a worker or by its `discard` being called with the
// reason (never silently lost). Once the queue is idle,
//   submitted == completed + rejected + dropped + expired + cancelled
// (TaskQueueStats), and the same outcomes are counted in
// natsgw_task_queue_tasks_total.
//
// Order: tasks start in submission (FIFO) order; with several workers they
// run concurrently, so they may finish in any order.
//
// Metrics (recorded into TaskQueueOptions::registry, label `queue` = name;
// queues sharing a name share the series, and the gauges add up):
//   natsgw_task_queue_depth{queue}              gauge: tasks waiting
//   natsgw_task_queue_running{queue}            gauge: tasks being run
//   natsgw_task_queue_wait_seconds{queue}       histogram: Submit -> start
//   natsgw_task_queue_tasks_total{queue,outcome} counter; outcome is one of
//       completed, rejected, dropped, expired, cancelled
//
// Thread-safety: thread-safe; any number of threads may Submit at once
// (multi-producer, multi-consumer). A task's `run` and `discard` may call any
// method of the queue, including Shutdown() and Submit() (with kBlock, a
// Submit from a task waits for room that only another worker can make).
#ifndef NATSGW_TASK_QUEUE_H_
#define NATSGW_TASK_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "natsgw/logger.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace natsgw {

// What happens when a task is submitted while `capacity` tasks already wait
// (more exactly: while no worker is free and the waiting room is full; see
// TaskQueue::vacancies()).
enum class OverflowPolicy {
  // Submit waits up to block_timeout for room, then fails with
  // RESOURCE_EXHAUSTED (counted as rejected). Back-pressures the producer.
  kBlock,
  // Submit fails at once with RESOURCE_EXHAUSTED (counted as rejected).
  kReject,
  // The oldest waiting task is discarded with RESOURCE_EXHAUSTED (counted as
  // dropped) to make room, and the new one is accepted. With nothing waiting
  // (capacity 0) the new task itself is rejected.
  kDropOldest,
};

// "block", "reject", "drop_oldest".
absl::string_view OverflowPolicyName(OverflowPolicy policy);

struct TaskQueueOptions {
  // The metric label `queue`; required, non-empty. Keep its cardinality
  // bounded: a component or endpoint name, never an ID.
  std::string name;
  // Worker threads, >= 1. They are started by Create and joined by Shutdown.
  int workers = 1;
  // Tasks waiting (accepted, not yet running) at most. 0 means no waiting
  // room: a task is accepted only if a worker is idle (an unbuffered
  // channel).
  size_t capacity = 64;
  OverflowPolicy overflow = OverflowPolicy::kReject;
  // kBlock only: how long Submit waits for room; >= 0.
  // absl::InfiniteDuration() waits until there is room or Shutdown begins.
  absl::Duration block_timeout = absl::Milliseconds(100);
  // Metrics go here; null: not recorded.
  std::shared_ptr<prometheus::Registry> registry = nullptr;
  // Receives a line for each exception escaping a task's `run` or `discard`;
  // null: not logged (still counted in TaskQueueStats::threw).
  std::shared_ptr<Logger> logger = nullptr;
};

struct Task {
  // The work. Runs once, on one of the queue's workers, with no lock held.
  absl::AnyInvocable<void()> run = nullptr;
  // Called instead of `run` when the task will not run, with the reason:
  //   RESOURCE_EXHAUSTED  rejected, block timeout, or dropped as the oldest
  //   DEADLINE_EXCEEDED   its deadline passed before a worker took it
  //   CANCELLED           Shutdown's timeout passed before it started
  //   UNAVAILABLE         submitted after Shutdown began
  //   INVALID_ARGUMENT    `run` is empty
  // It runs on the thread that decided: Submit's caller (rejected, dropped,
  // unavailable, deadline already passed at Submit), a worker (expired), or
  // Shutdown's caller or a worker (cancelled). May be empty. Must not block
  // for long; it may call Submit, e.g. to retry elsewhere.
  absl::AnyInvocable<void(absl::Status)> discard = nullptr;
  // The task must start before this instant or it is discarded with
  // DEADLINE_EXCEEDED (checked at Submit and when a worker takes it).
  absl::Time deadline = absl::InfiniteFuture();
};

// Counts since Create. `submitted` counts every Submit call; each of the
// others counts one way a task ended (see the file comment).
struct TaskQueueStats {
  int64_t submitted = 0;
  int64_t completed = 0;  // `run` returned (or threw)
  int64_t rejected = 0;   // full, block timeout, after Shutdown, or no `run`
  int64_t dropped = 0;    // discarded as the oldest waiting (kDropOldest)
  int64_t expired = 0;    // deadline passed before start
  int64_t cancelled = 0;  // still waiting when Shutdown's timeout passed
  int64_t threw = 0;      // of `completed`: `run` let an exception escape
};

class TaskQueue {
 public:
  // Starts options.workers threads. INVALID_ARGUMENT naming the rule for bad
  // options; ALREADY_EXISTS if a metric family name is taken in the registry
  // by an incompatible family; RESOURCE_EXHAUSTED if threads cannot be
  // started.
  static absl::StatusOr<std::unique_ptr<TaskQueue>> Create(
      TaskQueueOptions options);

  // Shutdown(absl::InfiniteDuration()): runs every waiting task first.
  ~TaskQueue();

  TaskQueue(const TaskQueue&) = delete;
  TaskQueue& operator=(const TaskQueue&) = delete;

  // Queues `task`, or fails and calls task.discard(status) on the calling
  // thread before returning that same status: RESOURCE_EXHAUSTED at the
  // limit (see OverflowPolicy), DEADLINE_EXCEEDED if task.deadline has
  // already passed, UNAVAILABLE once Shutdown has begun, INVALID_ARGUMENT if
  // task.run is empty. With kDropOldest, Submit may instead call another
  // task's discard (the oldest waiting) on this thread and succeed.
  absl::Status Submit(Task task);

  // Stops intake (later Submit: UNAVAILABLE), lets the workers run waiting
  // tasks until `timeout` has passed, discards those still waiting then with
  // CANCELLED, waits for running tasks to return and joins the threads.
  // Returns OK if no task was cancelled, otherwise DEADLINE_EXCEEDED naming
  // how many were.
  //
  // Idempotent: a later or concurrent call waits until every worker has
  // ended (unless made from a task) and reports the same way.
  //
  // Called from inside one of the queue's own tasks it does not deadlock:
  // it does not wait for the waiting tasks itself (its own worker is busy
  // with the calling task) but joins the other workers, which drain the queue
  // (cancelling what is left once `timeout` has passed); the calling thread
  // carries on with any tasks still waiting after its task returns, then
  // exits by itself. The result then counts the cancellations known when it
  // returns. The queue may even be destroyed from inside a task.
  absl::Status Shutdown(absl::Duration timeout);

  // Tasks waiting, not yet taken by a worker.
  size_t depth() const;
  // Tasks being run.
  int running() const;
  // Tasks Submit would accept right now without overflow:
  // workers + capacity - running - depth (>= 0); 0 once Shutdown has begun.
  size_t vacancies() const;
  // Blocks until vacancies() > 0, Shutdown has begun, or `timeout` passes;
  // returns vacancies() (0 if shut down or timed out). Lets a producer wait
  // for room before it commits to producing a task.
  size_t WaitForVacancy(absl::Duration timeout);
  // True on one of this queue's worker threads (e.g. inside a task).
  bool IsWorkerThread() const;
  TaskQueueStats stats() const;
  const TaskQueueOptions& options() const;

 private:
  // Shared with the worker threads, so that a worker detached by a Shutdown
  // from inside a task can finish safely after the TaskQueue is gone.
  struct State;
  explicit TaskQueue(std::shared_ptr<State> state);

  const std::shared_ptr<State> state_;
};

}  // namespace natsgw

#endif  // NATSGW_TASK_QUEUE_H_
