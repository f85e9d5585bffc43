// The reply multiplexer behind Connection::RequestAsync (and the blocking
// Request built on it): many requests in flight on one NATS connection, with
// one wildcard inbox subscription ("_INBOX.<random>.*"), a token per attempt
// telling replies apart, and one timer thread for deadlines, retry backoffs
// and hedges. nats.c 3.4.1 has a multiplexer of its own but only behind a
// blocking call with millisecond timeouts.
//
// Thread-safety: thread-safe. OnReply runs on the inbox subscription's
// delivery thread; FailMatching on nats.c's callback thread; Begin on any
// caller thread. A call's `done` runs exactly once, never under the lock.
#ifndef NATSGW_GATEWAY_SRC_REQUEST_MUX_H_
#define NATSGW_GATEWAY_SRC_REQUEST_MUX_H_

#include <nats/nats.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "metrics.h"
#include "natsgw/connection.h"
#include "natsgw/message.h"
#include "natsgw/send_options.h"

namespace natsgw::internal {

struct Lane;

// Everything one call needs; filled in by Connection::Impl (which has done
// the validation), then owned by the multiplexer.
struct CallSpec {
  std::string subject;
  std::string data;
  Headers headers;
  // The trace the caller continues, if any: retries and hedges become new
  // children of it (siblings of the first attempt).
  std::optional<TraceContext> parent;
  // The first attempt's trace context (a child of `parent`, or a new root).
  TraceContext trace;
  std::string message_id;
  absl::Time sent_at;
  std::chrono::steady_clock::time_point start;
  std::chrono::steady_clock::time_point deadline;
  RetryPolicy retry;
  HedgingPolicy hedging;
  SubjectMetrics* metrics = nullptr;
  Connection::ReplyCallback done;
};

class RequestMux {
 public:
  using Clock = std::chrono::steady_clock;

  RequestMux(Lane* lane, GatewayMetrics* metrics, Logger* logger);
  // Calls Shutdown().
  ~RequestMux();

  RequestMux(const RequestMux&) = delete;
  RequestMux& operator=(const RequestMux&) = delete;

  // The wildcard subject replies arrive on ("_INBOX.<random>.*").
  const std::string& inbox_subject() const { return inbox_subject_; }

  // Sends the first attempt. On error nothing is in flight and `done` will
  // never run (it is destroyed).
  absl::Status Begin(CallSpec spec);

  // A message on the inbox subscription; takes ownership.
  void OnReply(natsMsg* msg);

  // Every call waiting for a reply on a request to `subject` (or on all
  // subjects when `subject` is empty) fails with `status`, subject to its
  // retry policy when `retryable` is true.
  void FailWaiting(absl::string_view subject, const absl::Status& status,
                   bool retryable);

  // The server refused the inbox subscription: fail every waiting call with
  // `status`, and every later Begin() too until RepliesAllowedAgain() (no
  // reply could arrive). Atomic with Begin(), so no call slips in between.
  void RepliesDenied(const absl::Status& status);
  // After a reconnect nats.c subscribes the inbox again; it may be allowed.
  void RepliesAllowedAgain();

  // Fails every call with UNAVAILABLE and stops the timer thread. Later
  // Begin() calls fail. Idempotent.
  void Shutdown();

  // Calls not finished yet (for tests and metrics).
  size_t in_flight() const;

 private:
  struct Call;
  enum class TimerKind { kDeadline, kRetry, kHedge };
  // A timer does not keep its call alive: a call that finished (usually
  // long before its deadline) is freed at once, and its timers are skipped
  // when they come due or purged when they pile up.
  struct Timer {
    Clock::time_point when;
    TimerKind kind;
    std::weak_ptr<Call> call;
    bool operator>(const Timer& other) const { return when > other.when; }
  };

  // Sends one attempt of `call`.
  absl::Status SendAttempt(const std::shared_ptr<Call>& call,
                           const TraceContext& trace);
  // A failed attempt: schedules a retry when the policy allows, waits for
  // other attempts still out, or finishes the call.
  void AttemptFailed(const std::shared_ptr<Call>& call, absl::Status status,
                     bool retryable);
  // Ends `call` with `result` unless it has ended already.
  void Finish(const std::shared_ptr<Call>& call,
              absl::StatusOr<Message> result);
  void AddTimerLocked(Clock::time_point when, TimerKind kind,
                      const std::shared_ptr<Call>& call)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the timers of finished calls once they outnumber the live ones.
  void PurgeTimersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunTimer(TimerKind kind, const std::shared_ptr<Call>& call);
  void TimerLoop();

  Lane* const lane_;
  GatewayMetrics* const metrics_;
  Logger* const logger_;
  const std::string inbox_prefix_;   // "_INBOX.<random>."
  const std::string inbox_subject_;  // inbox_prefix_ + "*"

  mutable std::mutex mu_;
  std::condition_variable timer_cv_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  // Non-OK while the server refuses the inbox subscription.
  absl::Status replies_denied_ ABSL_GUARDED_BY(mu_);
  uint64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Call>> by_token_
      ABSL_GUARDED_BY(mu_);
  std::unordered_map<const Call*, std::shared_ptr<Call>> active_
      ABSL_GUARDED_BY(mu_);
  // A min-heap on `when` (std::greater); a plain vector rather than a
  // std::priority_queue so that PurgeTimersLocked can filter it.
  std::vector<Timer> timers_ ABSL_GUARDED_BY(mu_);
  std::thread timer_thread_;
};

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_REQUEST_MUX_H_
