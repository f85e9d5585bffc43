// natsgw/retry_policy.h: when a failed request is tried again, and when a
// second copy of a slow request is sent (hedging).
//
//   natsgw::RequestOptions opts;
//   opts.retry.max_attempts = 3;                       // 1 try + 2 retries
//   opts.retry.initial_backoff = absl::Milliseconds(20);
//   opts.hedging.delay = absl::Milliseconds(5);        // ~ the observed p95
//   auto reply = conn->Request("users.GetUser", bytes, absl::Seconds(1), opts);
//
// Retries and hedges are only safe for idempotent operations: the server may
// execute the request more than once. Every attempt of one call carries the
// same Nats-Msg-Id (so a server can de-duplicate) and the same trace ID with a
// new span ID. No attempt is sent once the call's deadline has passed, and a
// backoff that would end after the deadline ends the call instead.
//
// Thread-safety: value types and pure functions.
#ifndef NATSGW_RETRY_POLICY_H_
#define NATSGW_RETRY_POLICY_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace natsgw {

struct RetryPolicy {
  // Total attempts including the first; 1 disables retries. Must be >= 1.
  int max_attempts = 1;
  // Pause before retry n (n = 1, 2, ...) is
  //   min(max_backoff, initial_backoff * multiplier^(n-1)),
  // of which a random fraction `jitter` (0..1) is replaced by a uniformly
  // random amount, so that many clients failing together do not retry in
  // lock step ("equal jitter" for 0.5, "full jitter" for 1).
  absl::Duration initial_backoff = absl::Milliseconds(10);
  absl::Duration max_backoff = absl::Seconds(1);
  double multiplier = 2.0;
  double jitter = 0.5;
  // Codes worth another attempt. The default covers "nobody answered or the
  // server was overloaded": UNAVAILABLE (no responders, lost connection) and
  // RESOURCE_EXHAUSTED (load shed). DEADLINE_EXCEEDED is never retried: the
  // deadline is the whole call's.
  std::vector<absl::StatusCode> retryable_codes = {
      absl::StatusCode::kUnavailable, absl::StatusCode::kResourceExhausted};

  bool enabled() const { return max_attempts > 1; }
  bool IsRetryable(absl::StatusCode code) const;
};

struct HedgingPolicy {
  // If the first attempt has not been answered after `delay`, send another
  // copy; the first reply (of any copy) wins and the others are ignored.
  // InfiniteDuration disables hedging.
  absl::Duration delay = absl::InfiniteDuration();
  // Extra copies at most (each `delay` after the previous one).
  int max_hedges = 1;

  bool enabled() const {
    return delay != absl::InfiniteDuration() && max_hedges > 0;
  }
};

// INVALID_ARGUMENT naming the broken rule if `policy` is unusable
// (max_attempts < 1, negative or inverted backoffs, multiplier < 1, jitter
// outside [0, 1], DEADLINE_EXCEEDED listed as retryable).
absl::Status ValidateRetryPolicy(const RetryPolicy& policy);
absl::Status ValidateHedgingPolicy(const HedgingPolicy& policy);

// The pause before retry number `retry` (1-based), with `random01` a uniform
// random number in [0, 1) supplying the jitter. Deterministic given its
// arguments, so the schedule can be tested.
absl::Duration BackoffDelay(const RetryPolicy& policy, int retry,
                            double random01);

}  // namespace natsgw

#endif  // NATSGW_RETRY_POLICY_H_
