// A fixed set of threads draining a bounded queue of tasks: the C++ form of
// a buffered channel with worker goroutines. A served endpoint with
// ServeOptions::workers > 0 runs its handlers here.
//
// Thread-safety: thread-safe. Tasks run on the pool's threads, several at
// once; each task runs exactly once, unless Stop() was called before it was
// accepted (TrySubmit then fails).
#ifndef NATSGW_GATEWAY_SRC_WORKER_POOL_H_
#define NATSGW_GATEWAY_SRC_WORKER_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"

namespace natsgw::internal {

class WorkerPool {
 public:
  using Task = absl::AnyInvocable<void()>;

  // `workers` >= 1 threads; at most `max_in_flight` (>= workers) tasks queued
  // or running at once.
  WorkerPool(int workers, size_t max_in_flight);
  // Stop()s.
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues the task `make_task` returns unless max_in_flight tasks are
  // already queued or running, or the pool is stopping; returns false then,
  // without calling `make_task` (so what it would have moved stays with the
  // caller). `make_task` runs under the pool's lock: keep it to moves.
  bool TrySubmit(absl::FunctionRef<Task()> make_task);

  // Lets the workers finish every accepted task, then joins them. Called from
  // one of the pool's own tasks, it does not wait for that thread (which
  // finishes its task and exits). Idempotent.
  void Stop();

  // Tasks queued or running.
  size_t in_flight() const;

  // True on one of this pool's threads.
  bool IsWorkerThread() const;

 private:
  // Shared with the threads, so that a thread detached by Stop() from
  // inside a task can still finish safely after the pool is gone.
  struct State {
    explicit State(size_t max) : max_in_flight(max) {}
    const size_t max_in_flight;
    mutable std::mutex mu;
    std::condition_variable cv;
    std::deque<Task> queue ABSL_GUARDED_BY(mu);
    size_t in_flight ABSL_GUARDED_BY(mu) = 0;
    bool stopping ABSL_GUARDED_BY(mu) = false;
  };
  static void Run(std::shared_ptr<State> state);

  const std::shared_ptr<State> state_;
  std::mutex threads_mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(threads_mu_);
};

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_WORKER_POOL_H_
