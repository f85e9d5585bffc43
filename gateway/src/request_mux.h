// The reply multiplexer behind Connection::RequestAsync (and the blocking
// Request built on it): many requests in flight on one NATS connection, with
// one wildcard inbox subscription ("_INBOX.<random>.*"), a token per attempt
// telling replies apart, and one timer thread for deadlines, retry backoffs
// and hedges. nats.c 3.4.1 has a multiplexer of its own but only behind a
// blocking call with millisecond timeouts.
//
// A caller blocked in Connection::Request may instead take the direct inbox:
// a second, synchronous subscription ("_INBOX.<random>.d<n>.*") that it reads
// itself with natsSubscription_NextMsg, so that nats.c's reader thread wakes
// it directly when the reply arrives: one thread hand-off fewer per call than
// the wildcard inbox, whose delivery thread would wake it. One caller holds
// the direct inbox at a time, and only for calls without hedging, so that
// every message on it belongs to that one call: nats.c swallows the "no
// responders" status message on a synchronous subscription (NextMsg returns
// NATS_NO_RESPONDERS without it), and it can only be matched to its call
// because no other call uses the subscription. A call that ends with an
// attempt unanswered (a deadline) leaves the subscription to be replaced
// before its next use, so a late message cannot reach another call.
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
#include "absl/strings/match.h"
#include "metrics.h"
#include "nats_message.h"
#include "natsgw/connection.h"
#include "natsgw/message.h"
#include "natsgw/send_options.h"
#include "span.h"

namespace natsgw::internal {

struct Lane;

// Everything one call needs; filled in by Connection::Impl (which has done
// the validation), then owned by the multiplexer.
struct CallSpec {
  std::string subject;
  std::string data;
  Headers headers;
  // The call's trace context, which the first attempt carries (a child of
  // the caller's context, or a new root). Retries and hedges carry children
  // of it: each attempt has a span ID of its own.
  TraceContext trace;
  // The call's CLIENT span (context `trace`), or inert. Ended by the
  // multiplexer when the call ends, before `done` runs. While it records,
  // each retry or hedge gets a CLIENT span of its own, a child of it, ended
  // when that attempt is answered or the call ends.
  Span span;
  std::string message_id;
  absl::Time sent_at;
  std::chrono::steady_clock::time_point start;
  std::chrono::steady_clock::time_point deadline;
  RetryPolicy retry;
  HedgingPolicy hedging;
  SubjectMetrics* metrics = nullptr;
  Connection::ReplyCallback done;
  // The caller blocks until the call has ended and calls ReadDirect after
  // Begin: the call gets the direct inbox if it is free and unhedged.
  bool direct = false;
};

class RequestMux {
 public:
  using Clock = std::chrono::steady_clock;
  struct Call;

  RequestMux(Lane* lane, GatewayMetrics* metrics, Logger* logger);
  // Calls Shutdown().
  ~RequestMux();

  RequestMux(const RequestMux&) = delete;
  RequestMux& operator=(const RequestMux&) = delete;

  // The wildcard subject replies arrive on ("_INBOX.<random>.*").
  const std::string& inbox_subject() const { return inbox_subject_; }
  // True for the subject of either inbox subscription.
  bool IsInboxSubscription(absl::string_view subject) const {
    return absl::StartsWith(subject, inbox_prefix_);
  }

  // Sends the first attempt. On error nothing is in flight and `done` will
  // never run (it is destroyed). `started`, if not null, receives the call.
  absl::Status Begin(CallSpec spec, std::shared_ptr<Call>* started = nullptr);

  // For a `direct` call that Begin gave the direct inbox: reads it on this
  // thread until the call has ended (its `done` has run or is running on
  // another thread), handling its replies here, then gives the inbox up.
  // Returns at once for any other call.
  void ReadDirect(const std::shared_ptr<Call>& call);

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

  // Sends one attempt of `call` carrying `trace`; `hedge`: a copy sent while
  // the previous attempt is unanswered (for its span).
  absl::Status SendAttempt(const std::shared_ptr<Call>& call,
                           const TraceContext& trace, bool hedge = false);
  // Removes and returns the span of the attempt with `token` (inert if it
  // has none: the first attempt, or spans not recorded).
  Span TakeAttemptSpanLocked(Call& call, uint64_t token)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A message on either inbox for the attempt with `token`.
  void HandleReply(uint64_t token, NatsMsgPtr msg, absl::Time received);
  // Takes the direct inbox (subscribing a new generation if there is none or
  // it is stale); its prefix, or null if another call holds it or it cannot
  // be subscribed.
  std::shared_ptr<const std::string> AcquireDirectLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseDirectLocked(const Call& call) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
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

  // The direct inbox: null until first taken, and after it was given up.
  natsSubscription* direct_sub_ ABSL_GUARDED_BY(mu_) = nullptr;
  // "_INBOX.<random>.d<generation>."; shared with the calls that use it.
  std::shared_ptr<const std::string> direct_prefix_ ABSL_GUARDED_BY(mu_);
  int direct_generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool direct_held_ ABSL_GUARDED_BY(mu_) = false;
  // A call ended with an attempt unanswered: replace before the next use.
  bool direct_stale_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_REQUEST_MUX_H_
