#include "scheduler.h"

namespace natsgw::internal {

Scheduler::Scheduler() : thread_([this] { Loop(); }) {}

Scheduler::~Scheduler() { Stop(); }

bool Scheduler::RunAt(absl::Time when, Callback callback) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    due_.emplace(std::make_pair(when, next_++), std::move(callback));
  }
  cv_.notify_one();
  return true;
}

void Scheduler::Stop() {
  std::map<std::pair<absl::Time, uint64_t>, Callback> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    dropped.swap(due_);
  }
  // Destroyed here, outside the lock: a capture's destructor may call back
  // into RunAt (which then returns false).
}

void Scheduler::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (due_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const absl::Time first = due_.begin()->first.first;
    const absl::Time now = absl::Now();
    if (first > now) {
      cv_.wait_for(lock, absl::ToChronoNanoseconds(first - now));
      continue;
    }
    Callback callback = std::move(due_.begin()->second);
    due_.erase(due_.begin());
    lock.unlock();
    callback();
    callback = nullptr;
    lock.lock();
  }
}

}  // namespace natsgw::internal
