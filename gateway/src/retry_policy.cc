#include "natsgw/retry_policy.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace natsgw {

bool RetryPolicy::IsRetryable(absl::StatusCode code) const {
  if (code == absl::StatusCode::kDeadlineExceeded) return false;
  return std::find(retryable_codes.begin(), retryable_codes.end(), code) !=
         retryable_codes.end();
}

absl::Status ValidateRetryPolicy(const RetryPolicy& p) {
  if (p.max_attempts < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retry.max_attempts must be at least 1 (1 = no retries), got ",
        p.max_attempts));
  }
  if (p.initial_backoff < absl::ZeroDuration() ||
      p.max_backoff < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "retry.initial_backoff and retry.max_backoff must not be negative");
  }
  if (p.max_backoff < p.initial_backoff) {
    return absl::InvalidArgumentError(
        absl::StrCat("retry.max_backoff (", absl::FormatDuration(p.max_backoff),
                     ") must not be below retry.initial_backoff (",
                     absl::FormatDuration(p.initial_backoff), ")"));
  }
  if (!(p.multiplier >= 1.0) || !std::isfinite(p.multiplier)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "retry.multiplier must be a finite number >= 1, got ", p.multiplier));
  }
  if (!(p.jitter >= 0.0 && p.jitter <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("retry.jitter must be within [0, 1], got ", p.jitter));
  }
  for (absl::StatusCode code : p.retryable_codes) {
    if (code == absl::StatusCode::kDeadlineExceeded ||
        code == absl::StatusCode::kOk) {
      return absl::InvalidArgumentError(
          absl::StrCat("retry.retryable_codes must not list ",
                       absl::StatusCodeToString(code),
                       ": the deadline belongs to the whole call"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateHedgingPolicy(const HedgingPolicy& p) {
  if (p.delay < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("hedging.delay must not be negative");
  }
  if (p.max_hedges < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hedging.max_hedges must not be negative, got ", p.max_hedges));
  }
  return absl::OkStatus();
}

absl::Duration BackoffDelay(const RetryPolicy& p, int retry, double random01) {
  if (retry < 1) retry = 1;
  // Computed in floating point seconds: the exponent can overflow Duration
  // arithmetic long before the cap applies.
  const double cap = absl::ToDoubleSeconds(p.max_backoff);
  double base = absl::ToDoubleSeconds(p.initial_backoff) *
                std::pow(p.multiplier, static_cast<double>(retry - 1));
  if (!std::isfinite(base) || base > cap) base = cap;
  random01 = std::clamp(random01, 0.0, 1.0);
  const double fixed = base * (1.0 - p.jitter);
  return absl::Seconds(fixed + base * p.jitter * random01);
}

}  // namespace natsgw
