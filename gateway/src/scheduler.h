// A thread that runs callbacks at given times: retries after a backoff and
// periodic heartbeats, where the thread that decided to wait must not block.
//
// Thread-safety: thread-safe. Callbacks run on the scheduler's own thread,
// one at a time, in order of their time; they must not block for long.
#ifndef NATSGW_GATEWAY_SRC_SCHEDULER_H_
#define NATSGW_GATEWAY_SRC_SCHEDULER_H_

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace natsgw::internal {

class Scheduler {
 public:
  using Callback = absl::AnyInvocable<void()>;

  Scheduler();
  // Stop(): callbacks not yet due are destroyed without running.
  ~Scheduler();

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Runs `callback` on the scheduler thread once `when` has come. Returns
  // false (and destroys it unrun) once Stop() has begun.
  bool RunAt(absl::Time when, Callback callback);

  // Ends the thread; callbacks not yet due are destroyed without running.
  // Must not be called from a callback. Idempotent.
  void Stop();

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  // Keyed by (time, sequence) so equal times keep submission order.
  std::map<std::pair<absl::Time, uint64_t>, Callback> due_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_SCHEDULER_H_
