#include "worker_pool.h"

#include <algorithm>

namespace natsgw::internal {
namespace {
thread_local const void* t_current_pool = nullptr;
}  // namespace

WorkerPool::WorkerPool(int workers, size_t max_in_flight)
    : state_(std::make_shared<State>(std::max<size_t>(max_in_flight, 1))) {
  workers = std::max(workers, 1);
  std::lock_guard<std::mutex> lock(threads_mu_);
  threads_.reserve(workers);
  for (int i = 0; i < workers; ++i) {
    threads_.emplace_back([state = state_] { Run(state); });
  }
}

WorkerPool::~WorkerPool() { Stop(); }

bool WorkerPool::TrySubmit(absl::FunctionRef<Task()> make_task) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->stopping || state_->in_flight >= state_->max_in_flight) {
      return false;
    }
    ++state_->in_flight;
    state_->queue.push_back(make_task());
  }
  state_->cv.notify_one();
  return true;
}

size_t WorkerPool::in_flight() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->in_flight;
}

bool WorkerPool::IsWorkerThread() const {
  return t_current_pool == state_.get();
}

void WorkerPool::Run(std::shared_ptr<State> state) {
  t_current_pool = state.get();
  std::unique_lock<std::mutex> lock(state->mu);
  while (true) {
    state->cv.wait(lock,
                   [&] { return state->stopping || !state->queue.empty(); });
    if (state->queue.empty()) break;  // stopping and drained
    Task task = std::move(state->queue.front());
    state->queue.pop_front();
    lock.unlock();
    task();
    // Destroy what the task captured before counting it done.
    task = nullptr;
    lock.lock();
    --state->in_flight;
  }
}

void WorkerPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopping = true;
  }
  state_->cv.notify_all();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(threads_mu_);
    threads.swap(threads_);
  }
  for (std::thread& t : threads) {
    if (t.get_id() == std::this_thread::get_id()) {
      // Stopping from inside a task: this thread exits by itself once the
      // task returns (it holds the shared state); it cannot join itself.
      t.detach();
    } else {
      t.join();
    }
  }
}

}  // namespace natsgw::internal
