// A one-shot event: one thread Notify()s, others wait for it.
//
// natsgw synchronizes with the C++ standard library rather than absl::Mutex /
// absl::Notification: Debian's Abseil libraries are not built with
// ThreadSanitizer instrumentation, so TSan cannot see their happens-before
// edges and reports every access they protect as a race. std::mutex and
// std::condition_variable go through pthreads, which TSan understands.
//
// Thread-safety: thread-safe. Notify() at most once; waiting after the
// notification returns at once.
#ifndef NATSGW_GATEWAY_SRC_NOTIFICATION_H_
#define NATSGW_GATEWAY_SRC_NOTIFICATION_H_

#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace natsgw::internal {

class Notification {
 public:
  // Signals while holding the lock: a waiter may destroy this object as soon
  // as it sees the flag, so nothing may touch it after the lock is released.
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
    cv_.notify_all();
  }

  bool HasBeenNotified() const {
    std::lock_guard<std::mutex> lock(mu_);
    return notified_;
  }

  void Wait() const {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return notified_; });
  }

  // True if notified within `timeout`.
  bool WaitFor(absl::Duration timeout) const {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [this] { return notified_; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool notified_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_NOTIFICATION_H_
