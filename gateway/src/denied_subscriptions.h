// DeniedSubscriptions: the subscriptions a NATS server refused for lack of
// permission. The server says so only asynchronously (-ERR 'Permissions
// Violation for Subscription to "x"', which nats.c hands to the error
// callback on another thread), so Subscribe records how many refusals it has
// seen, confirms the subscription with a PING/PONG, and then waits here for
// a refusal of its subject that arrived after that point.
//
// Thread-safety: thread-safe.
#ifndef NATSGW_GATEWAY_SRC_DENIED_SUBSCRIPTIONS_H_
#define NATSGW_GATEWAY_SRC_DENIED_SUBSCRIPTIONS_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace natsgw::internal {

class DeniedSubscriptions {
 public:
  // How many refusals have been recorded so far.
  uint64_t seq() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seq_;
  }

  // Records a refusal of `subject` (from the error callback's thread).
  void Record(std::string subject) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++seq_;
      recent_.emplace_back(seq_, std::move(subject));
      // Only the last few matter: a Subscribe waits for a refusal that
      // arrives while it waits.
      if (recent_.size() > kKept) recent_.pop_front();
    }
    cv_.notify_all();
  }

  // True once a refusal of `subject` numbered after `since` is recorded;
  // false if none comes within `timeout`.
  bool WaitFor(absl::string_view subject, uint64_t since,
               absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
      for (const auto& [seq, denied] : recent_) {
        if (seq > since && denied == subject) return true;
      }
      return false;
    });
  }

 private:
  static constexpr size_t kKept = 64;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::pair<uint64_t, std::string>> recent_ ABSL_GUARDED_BY(mu_);
};

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_DENIED_SUBSCRIPTIONS_H_
