// harness/sync_points.h: small synchronization helpers for tests that hold
// handlers still or wait for callbacks, every wait bounded so that a broken
// test fails instead of hanging.
//
//   natsgw::testing::Gate gate;             // handlers block in gate.Wait()
//   ... start calls ...
//   gate.Open();                            // let them all through
//
//   natsgw::testing::Latch done(1000);      // 1000 callbacks count down
//   ASSERT_TRUE(done.Wait());
//
//   ASSERT_TRUE(natsgw::testing::Eventually([&] { return seen() == 3; }));
//
// Thread-safety: thread-safe; std::mutex rather than absl::Mutex so that
// ThreadSanitizer sees the synchronization (see README.md).
#ifndef NATSGW_TESTS_HARNESS_SYNC_POINTS_H_
#define NATSGW_TESTS_HARNESS_SYNC_POINTS_H_

#include <condition_variable>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace natsgw::testing {

// How long a Gate or Latch waits at most; never reached when things work.
inline constexpr absl::Duration kSyncPointTimeout = absl::Seconds(20);

// Closed until Open(); Wait() blocks while closed (at most `timeout`).
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait(absl::Duration timeout = kSyncPointTimeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                 [&] { return open_; });
  }
  bool is_open() {
    std::lock_guard<std::mutex> lock(mu_);
    return open_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Counts down from `n`; Wait() returns true once it reached zero, false if
// `timeout` passed first.
class Latch {
 public:
  explicit Latch(int n) : n_(n) {}
  void CountDown() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--n_ <= 0) cv_.notify_all();
  }
  bool Wait(absl::Duration timeout = kSyncPointTimeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [&] { return n_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_;
};

// Polls `done` (every millisecond) until it holds; false if `timeout`
// passed first. For conditions nothing signals, such as a metric's value.
template <typename Pred>
bool Eventually(Pred done, absl::Duration timeout = kSyncPointTimeout) {
  const absl::Time until = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > until) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_HARNESS_SYNC_POINTS_H_
