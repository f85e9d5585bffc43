#include "natsgw/task_queue.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <limits>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "metrics.h"

namespace natsgw {
namespace {

// Waits and wait times use the monotonic clock, so that a wall-clock step
// neither cuts a drain short nor distorts the wait histogram. Task deadlines
// are absl::Time (wall clock) because callers derive them from message
// deadlines, which are wall-clock instants.
using SteadyClock = std::chrono::steady_clock;

enum Outcome { kCompleted, kRejected, kDropped, kExpired, kCancelled };
constexpr int kOutcomeCount = 5;
constexpr std::array<const char*, kOutcomeCount> kOutcomeLabels = {
    "completed", "rejected", "dropped", "expired", "cancelled"};

// The queue whose worker the calling thread is, if any.
thread_local const void* t_worker_of = nullptr;

// The steady-clock instant `d` from now; unset for an infinite (or absurdly
// long) `d`, which would overflow the clock's representation.
std::optional<SteadyClock::time_point> SteadyDeadline(absl::Duration d) {
  if (d >= absl::Hours(24 * 365 * 100)) return std::nullopt;
  return SteadyClock::now() +
         std::chrono::duration_cast<SteadyClock::duration>(
             absl::ToChronoNanoseconds(std::max(d, absl::ZeroDuration())));
}

}  // namespace

absl::string_view OverflowPolicyName(OverflowPolicy policy) {
  switch (policy) {
    case OverflowPolicy::kBlock:
      return "block";
    case OverflowPolicy::kReject:
      return "reject";
    case OverflowPolicy::kDropOldest:
      return "drop_oldest";
  }
  return "unknown";
}

struct TaskQueue::State {
  explicit State(TaskQueueOptions o) : options(std::move(o)) {
    // workers + capacity without overflowing for huge capacities.
    const size_t workers = static_cast<size_t>(options.workers);
    limit = options.capacity > std::numeric_limits<size_t>::max() - workers
                ? std::numeric_limits<size_t>::max()
                : options.capacity + workers;
  }

  struct Entry {
    Task task;
    SteadyClock::time_point enqueued;
  };

  const TaskQueueOptions options;
  // Tasks waiting plus running at most (workers + capacity).
  size_t limit = 0;

  // Metric handles; all null when options.registry is null. The registry
  // (held by `options`) owns them.
  prometheus::Gauge* depth_gauge = nullptr;
  prometheus::Gauge* running_gauge = nullptr;
  prometheus::Histogram* wait_seconds = nullptr;
  std::array<prometheus::Counter*, kOutcomeCount> outcomes{};

  mutable std::mutex mu;
  // Workers wait here for a task (or for Shutdown).
  std::condition_variable work_cv;
  // Blocked submitters, WaitForVacancy and Shutdown wait here for room, an
  // empty queue or a worker's exit; notified only when someone waits.
  std::condition_variable change_cv;
  std::deque<Entry> waiting ABSL_GUARDED_BY(mu);
  size_t running ABSL_GUARDED_BY(mu) = 0;
  int idle_workers ABSL_GUARDED_BY(mu) = 0;
  int change_waiters ABSL_GUARDED_BY(mu) = 0;
  bool shutting_down ABSL_GUARDED_BY(mu) = false;
  // Set by Shutdown: past it, waiting tasks are cancelled. Unset: no limit.
  std::optional<SteadyClock::time_point> drain_deadline ABSL_GUARDED_BY(mu);
  int started ABSL_GUARDED_BY(mu) = 0;
  int exited ABSL_GUARDED_BY(mu) = 0;
  std::vector<std::thread> threads ABSL_GUARDED_BY(mu);
  TaskQueueStats stats ABSL_GUARDED_BY(mu);

  size_t VacanciesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (shutting_down) return 0;
    const size_t used = running + waiting.size();
    return used >= limit ? 0 : limit - used;
  }
  void NotifyChangeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (change_waiters > 0) change_cv.notify_all();
  }
  // Waits on change_cv until `done` or `deadline` (unset: no limit).
  template <typename Pred>
  bool WaitForChange(std::unique_lock<std::mutex>& lock,
                     std::optional<SteadyClock::time_point> deadline,
                     Pred done) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    ++change_waiters;
    bool result;
    if (deadline.has_value()) {
      result = change_cv.wait_until(lock, *deadline, done);
    } else {
      change_cv.wait(lock, done);
      result = true;
    }
    --change_waiters;
    return result;
  }

  void Count(Outcome outcome, int64_t n = 1) {
    if (outcomes[outcome] != nullptr) {
      outcomes[outcome]->Increment(static_cast<double>(n));
    }
  }
  void Log(absl::string_view message) const {
    if (options.logger != nullptr) {
      options.logger->Log(absl::LogSeverity::kError, message);
    }
  }
  // Calls task.discard(status) (if set), keeping exceptions inside, then
  // destroys what the task captured.
  void Discard(Task& task, const absl::Status& status) {
    if (task.discard) {
      try {
        task.discard(status);
      } catch (const std::exception& e) {
        Log(absl::StrCat("task queue '", options.name,
                         "': a task's discard callback threw: ", e.what()));
      } catch (...) {
        Log(absl::StrCat("task queue '", options.name,
                         "': a task's discard callback threw a non-standard "
                         "exception"));
      }
    }
    task = Task();
  }
  // Runs a task on a worker; false if `run` threw.
  bool Run(Task& task) {
    bool ok = true;
    try {
      task.run();
    } catch (const std::exception& e) {
      ok = false;
      Log(absl::StrCat("task queue '", options.name,
                       "': a task threw: ", e.what()));
    } catch (...) {
      ok = false;
      Log(absl::StrCat("task queue '", options.name,
                       "': a task threw a non-standard exception"));
    }
    // Release what the task captured before it counts as done, so that an
    // owner waiting in Shutdown may free what those captures refer to.
    task = Task();
    return ok;
  }

  static void WorkerLoop(std::shared_ptr<State> state);
  void CancelWaiting(std::unique_lock<std::mutex>& lock)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  absl::Status ShutdownResultLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

void TaskQueue::State::CancelWaiting(std::unique_lock<std::mutex>& lock) {
  std::deque<Entry> cancelled;
  cancelled.swap(waiting);
  if (cancelled.empty()) return;
  const int64_t n = static_cast<int64_t>(cancelled.size());
  stats.cancelled += n;
  NotifyChangeLocked();
  lock.unlock();
  if (depth_gauge != nullptr) depth_gauge->Decrement(static_cast<double>(n));
  Count(kCancelled, n);
  const absl::Status status = absl::CancelledError(absl::StrCat(
      "task queue '", options.name,
      "' shut down before the task started (the shutdown timeout passed)"));
  for (Entry& entry : cancelled) Discard(entry.task, status);
  lock.lock();
}

absl::Status TaskQueue::State::ShutdownResultLocked() const {
  if (stats.cancelled == 0) return absl::OkStatus();
  return absl::DeadlineExceededError(
      absl::StrCat("task queue '", options.name, "': ", stats.cancelled,
                   " waiting task(s) cancelled at shutdown because the "
                   "shutdown timeout passed before they started"));
}

void TaskQueue::State::WorkerLoop(std::shared_ptr<State> state) {
  State& s = *state;
  t_worker_of = &s;
  std::unique_lock<std::mutex> lock(s.mu);
  while (true) {
    while (s.waiting.empty() && !s.shutting_down) {
      ++s.idle_workers;
      s.work_cv.wait(lock);
      --s.idle_workers;
    }
    if (s.waiting.empty()) break;  // shutting down and drained
    if (s.shutting_down && s.drain_deadline.has_value() &&
        SteadyClock::now() >= *s.drain_deadline) {
      s.CancelWaiting(lock);
      continue;
    }
    Entry entry = std::move(s.waiting.front());
    s.waiting.pop_front();
    const absl::Time deadline = entry.task.deadline;
    if (deadline != absl::InfiniteFuture() && absl::Now() >= deadline) {
      ++s.stats.expired;
      s.NotifyChangeLocked();
      lock.unlock();
      if (s.depth_gauge != nullptr) s.depth_gauge->Decrement();
      s.Count(kExpired);
      s.Discard(entry.task, absl::DeadlineExceededError(absl::StrCat(
                                "task queue '", s.options.name,
                                "': the task's deadline passed after ",
                                absl::FormatDuration(absl::FromChrono(
                                    SteadyClock::now() - entry.enqueued)),
                                " waiting, before a worker could start it")));
      lock.lock();
      continue;
    }
    ++s.running;
    // Shutdown may be waiting for the queue to empty.
    if (s.waiting.empty()) s.NotifyChangeLocked();
    lock.unlock();
    const SteadyClock::time_point start = SteadyClock::now();
    if (s.depth_gauge != nullptr) {
      s.depth_gauge->Decrement();
      s.running_gauge->Increment();
      s.wait_seconds->Observe(
          internal::Seconds(absl::FromChrono(start - entry.enqueued)));
    }
    const bool ok = s.Run(entry.task);
    if (s.running_gauge != nullptr) s.running_gauge->Decrement();
    s.Count(kCompleted);
    lock.lock();
    --s.running;
    ++s.stats.completed;
    if (!ok) ++s.stats.threw;
    s.NotifyChangeLocked();
  }
  ++s.exited;
  s.NotifyChangeLocked();
  lock.unlock();
  t_worker_of = nullptr;
}

// ---------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<TaskQueue>> TaskQueue::Create(
    TaskQueueOptions options) {
  if (options.name.empty()) {
    return absl::InvalidArgumentError(
        "TaskQueueOptions::name must not be empty (it is the metric label "
        "`queue`)");
  }
  if (options.workers < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TaskQueueOptions::workers must be at least 1, got ",
                     options.workers, " (queue '", options.name, "')"));
  }
  if (options.block_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TaskQueueOptions::block_timeout must not be negative, got ",
        absl::FormatDuration(options.block_timeout), " (queue '", options.name,
        "')"));
  }
  switch (options.overflow) {
    case OverflowPolicy::kBlock:
    case OverflowPolicy::kReject:
    case OverflowPolicy::kDropOldest:
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "TaskQueueOptions::overflow has an unknown value ",
          static_cast<int>(options.overflow), " (queue '", options.name, "')"));
  }

  auto state = std::make_shared<State>(std::move(options));
  if (state->options.registry != nullptr) {
    prometheus::Registry& r = *state->options.registry;
    const prometheus::Labels labels = {{"queue", state->options.name}};
    // prometheus-cpp reports conflicts by throwing; no exception leaves
    // natsgw.
    try {
      state->depth_gauge =
          &prometheus::BuildGauge()
               .Name("natsgw_task_queue_depth")
               .Help(
                   "Tasks waiting in an in-process task queue: accepted, not "
                   "yet started, by queue.")
               .Register(r)
               .Add(labels);
      state->running_gauge =
          &prometheus::BuildGauge()
               .Name("natsgw_task_queue_running")
               .Help("Tasks an in-process task queue is running, by queue.")
               .Register(r)
               .Add(labels);
      state->wait_seconds =
          &prometheus::BuildHistogram()
               .Name("natsgw_task_queue_wait_seconds")
               .Help(
                   "Time tasks waited in an in-process task queue, from "
                   "Submit to a worker starting them, by queue.")
               .Register(r)
               .Add(labels, internal::LatencyBuckets());
      auto& outcomes =
          prometheus::BuildCounter()
              .Name("natsgw_task_queue_tasks_total")
              .Help(
                  "Tasks submitted to an in-process task queue, by queue and "
                  "how they ended: completed (ran), rejected (full, block "
                  "timeout, or after shutdown), dropped (oldest discarded for "
                  "a newer one), expired (deadline passed before start), "
                  "cancelled (shutdown timeout passed before start).")
              .Register(r);
      for (int i = 0; i < kOutcomeCount; ++i) {
        state->outcomes[i] = &outcomes.Add(
            {{"queue", state->options.name}, {"outcome", kOutcomeLabels[i]}});
      }
    } catch (const std::exception& e) {
      return absl::AlreadyExistsError(absl::StrCat(
          "cannot register the metrics of task queue '", state->options.name,
          "' in the given registry: ", e.what()));
    }
  }

  std::unique_ptr<TaskQueue> queue(new TaskQueue(state));
  std::lock_guard<std::mutex> lock(state->mu);
  state->threads.reserve(state->options.workers);
  for (int i = 0; i < state->options.workers; ++i) {
    try {
      state->threads.emplace_back(&State::WorkerLoop, state);
    } catch (const std::system_error& e) {
      // The destructor stops the threads already started.
      return absl::ResourceExhaustedError(
          absl::StrCat("task queue '", state->options.name, "': cannot start ",
                       state->options.workers, " worker threads: ", e.what()));
    }
    ++state->started;
  }
  return queue;
}

TaskQueue::TaskQueue(std::shared_ptr<State> state) : state_(std::move(state)) {}

TaskQueue::~TaskQueue() { Shutdown(absl::InfiniteDuration()).IgnoreError(); }

absl::Status TaskQueue::Submit(Task task) {
  State& s = *state_;
  absl::Status status;
  Outcome outcome = kRejected;
  Task victim;
  std::shared_ptr<State> keep_state;
  bool accepted = false;
  // Read the wall clock only for tasks that have a deadline.
  const bool has_deadline = task.deadline != absl::InfiniteFuture();
  if (!task.run) {
    status = absl::InvalidArgumentError(absl::StrCat(
        "task queue '", s.options.name, "': the task has no `run` function"));
  } else if (has_deadline && absl::Now() >= task.deadline) {
    outcome = kExpired;
    status = absl::DeadlineExceededError(
        absl::StrCat("task queue '", s.options.name,
                     "': the task's deadline had already passed at Submit"));
  }
  {
    std::unique_lock<std::mutex> lock(s.mu);
    ++s.stats.submitted;
    if (status.ok() && s.shutting_down) {
      status = absl::UnavailableError(absl::StrCat(
          "task queue '", s.options.name, "' is shut down; task not accepted"));
    }
    if (status.ok() && s.VacanciesLocked() == 0) {
      switch (s.options.overflow) {
        case OverflowPolicy::kReject:
          break;
        case OverflowPolicy::kDropOldest:
          if (!s.waiting.empty()) {
            victim = std::move(s.waiting.front().task);
            s.waiting.pop_front();
            ++s.stats.dropped;
          }
          break;
        case OverflowPolicy::kBlock: {
          // Waiting beyond the task's own deadline is pointless: it would
          // expire at once.
          std::optional<SteadyClock::time_point> until =
              SteadyDeadline(s.options.block_timeout);
          if (has_deadline) {
            std::optional<SteadyClock::time_point> by_deadline =
                SteadyDeadline(task.deadline - absl::Now());
            if (by_deadline.has_value() &&
                (!until.has_value() || *by_deadline < *until)) {
              until = by_deadline;
            }
          }
          s.WaitForChange(lock, until, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return s.shutting_down || s.VacanciesLocked() > 0;
          });
          if (s.shutting_down) {
            status = absl::UnavailableError(
                absl::StrCat("task queue '", s.options.name,
                             "' shut down while the task waited for room"));
          } else if (s.VacanciesLocked() == 0 && has_deadline &&
                     absl::Now() >= task.deadline) {
            outcome = kExpired;
            status = absl::DeadlineExceededError(
                absl::StrCat("task queue '", s.options.name,
                             "': the task's deadline passed while Submit "
                             "waited for room"));
          }
          break;
        }
      }
      if (status.ok() && s.VacanciesLocked() == 0 && !victim.run) {
        status = absl::ResourceExhaustedError(absl::StrCat(
            "task queue '", s.options.name, "' is full: ", s.running,
            " task(s) running and ", s.waiting.size(), " waiting (",
            s.options.workers, " workers, capacity ", s.options.capacity,
            ", overflow policy ", OverflowPolicyName(s.options.overflow),
            s.options.overflow == OverflowPolicy::kBlock
                ? absl::StrCat(", waited ",
                               absl::FormatDuration(s.options.block_timeout))
                : "",
            ")"));
      }
    }
    if (status.ok()) {
      // Counted before a worker can see the task: once it runs, the task may
      // destroy this queue (and `s`) before Submit returns.
      if (s.depth_gauge != nullptr) s.depth_gauge->Increment();
      if (victim.run) {
        // The victim is discarded below, outside the lock; keep the state
        // for that even if the new task destroys the queue meanwhile.
        keep_state = state_;
        if (s.depth_gauge != nullptr) s.depth_gauge->Decrement();
      }
      s.waiting.push_back(State::Entry{std::move(task), SteadyClock::now()});
      accepted = true;
      if (s.idle_workers > 0) s.work_cv.notify_one();
    } else if (outcome == kExpired) {
      ++s.stats.expired;
    } else {
      ++s.stats.rejected;
    }
  }
  if (victim.run) {
    s.Count(kDropped);
    s.Discard(victim, absl::ResourceExhaustedError(absl::StrCat(
                          "task queue '", s.options.name,
                          "' is full: the task was dropped as the oldest "
                          "waiting one to make room for a newer task "
                          "(overflow policy drop_oldest)")));
  }
  // Once accepted, the task may already have run and destroyed the queue:
  // nothing of `s` is touched on that path any more.
  if (accepted) return absl::OkStatus();
  s.Count(outcome);
  s.Discard(task, status);
  return status;
}

absl::Status TaskQueue::Shutdown(absl::Duration timeout) {
  // A copy: the queue may be destroyed by the task this thread is running
  // as soon as this returns, and the loop below must not touch it.
  const std::shared_ptr<State> keep = state_;
  State& s = *keep;
  const bool on_worker = IsWorkerThread();
  std::unique_lock<std::mutex> lock(s.mu);
  if (s.shutting_down) {
    // Not the first call: wait until the first one's work is done, unless
    // this thread is one of the workers that work waits for.
    if (!on_worker) {
      s.WaitForChange(lock, std::nullopt, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return s.exited == s.started;
      });
    }
    return s.ShutdownResultLocked();
  }
  s.shutting_down = true;
  s.drain_deadline = SteadyDeadline(timeout);
  s.work_cv.notify_all();
  s.change_cv.notify_all();
  if (!on_worker) {
    // Let the workers drain the queue until the deadline, then cancel what
    // is left. (On a worker this thread's own worker is busy with the
    // calling task: the other workers drain, and cancel past the deadline.)
    s.WaitForChange(
        lock, s.drain_deadline,
        [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return s.waiting.empty(); });
    s.CancelWaiting(lock);
  }
  std::vector<std::thread> threads;
  threads.swap(s.threads);
  lock.unlock();
  // Workers exit once nothing waits; joining them waits for running tasks.
  for (std::thread& t : threads) {
    if (t.get_id() == std::this_thread::get_id()) {
      // Cannot join itself: this thread ends on its own after its task
      // returns (it holds the shared state).
      t.detach();
    } else {
      t.join();
    }
  }
  lock.lock();
  return s.ShutdownResultLocked();
}

size_t TaskQueue::depth() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->waiting.size();
}

int TaskQueue::running() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return static_cast<int>(state_->running);
}

size_t TaskQueue::vacancies() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->VacanciesLocked();
}

size_t TaskQueue::WaitForVacancy(absl::Duration timeout) {
  State& s = *state_;
  std::unique_lock<std::mutex> lock(s.mu);
  s.WaitForChange(lock, SteadyDeadline(timeout),
                  [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
                    return s.shutting_down || s.VacanciesLocked() > 0;
                  });
  return s.VacanciesLocked();
}

bool TaskQueue::IsWorkerThread() const { return t_worker_of == state_.get(); }

TaskQueueStats TaskQueue::stats() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->stats;
}

const TaskQueueOptions& TaskQueue::options() const { return state_->options; }

}  // namespace natsgw
