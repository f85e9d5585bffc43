#include "natsgw/retry_policy.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace natsgw {
namespace {

using ::testing::HasSubstr;

TEST(RetryPolicyTest, DefaultsAreValidAndDisabled) {
  RetryPolicy p;
  EXPECT_TRUE(ValidateRetryPolicy(p).ok());
  EXPECT_FALSE(p.enabled());
  EXPECT_TRUE(ValidateHedgingPolicy(HedgingPolicy{}).ok());
  EXPECT_FALSE(HedgingPolicy{}.enabled());
}

TEST(RetryPolicyTest, RetryableCodes) {
  RetryPolicy p;
  EXPECT_TRUE(p.IsRetryable(absl::StatusCode::kUnavailable));
  EXPECT_TRUE(p.IsRetryable(absl::StatusCode::kResourceExhausted));
  EXPECT_FALSE(p.IsRetryable(absl::StatusCode::kInvalidArgument));
  EXPECT_FALSE(p.IsRetryable(absl::StatusCode::kDeadlineExceeded));
}

TEST(RetryPolicyTest, BackoffGrowsExponentiallyUpToTheCap) {
  RetryPolicy p;
  p.initial_backoff = absl::Milliseconds(10);
  p.max_backoff = absl::Milliseconds(50);
  p.multiplier = 2;
  p.jitter = 0;
  EXPECT_EQ(BackoffDelay(p, 1, 0.7), absl::Milliseconds(10));
  EXPECT_EQ(BackoffDelay(p, 2, 0.7), absl::Milliseconds(20));
  EXPECT_EQ(BackoffDelay(p, 3, 0.7), absl::Milliseconds(40));
  EXPECT_EQ(BackoffDelay(p, 4, 0.7), absl::Milliseconds(50));
  // A huge exponent neither overflows nor exceeds the cap.
  EXPECT_EQ(BackoffDelay(p, 10000, 0.7), absl::Milliseconds(50));
}

TEST(RetryPolicyTest, JitterReplacesAFractionOfTheBackoff) {
  RetryPolicy p;
  p.initial_backoff = absl::Milliseconds(100);
  p.max_backoff = absl::Seconds(1);
  p.jitter = 0.5;
  EXPECT_EQ(BackoffDelay(p, 1, 0.0), absl::Milliseconds(50));
  EXPECT_EQ(BackoffDelay(p, 1, 0.5), absl::Milliseconds(75));
  EXPECT_EQ(BackoffDelay(p, 1, 1.0), absl::Milliseconds(100));
  p.jitter = 1.0;  // full jitter
  EXPECT_EQ(BackoffDelay(p, 1, 0.0), absl::ZeroDuration());
}

TEST(RetryPolicyTest, InvalidPoliciesNameTheRule) {
  RetryPolicy p;
  p.max_attempts = 0;
  EXPECT_THAT(ValidateRetryPolicy(p).message(), HasSubstr("max_attempts"));
  p = {};
  p.multiplier = 0.5;
  EXPECT_THAT(ValidateRetryPolicy(p).message(), HasSubstr("multiplier"));
  p = {};
  p.jitter = 1.5;
  EXPECT_THAT(ValidateRetryPolicy(p).message(), HasSubstr("jitter"));
  p = {};
  p.max_backoff = absl::Milliseconds(1);
  p.initial_backoff = absl::Milliseconds(2);
  EXPECT_THAT(ValidateRetryPolicy(p).message(), HasSubstr("max_backoff"));
  p = {};
  p.retryable_codes = {absl::StatusCode::kDeadlineExceeded};
  EXPECT_EQ(ValidateRetryPolicy(p).code(), absl::StatusCode::kInvalidArgument);
  HedgingPolicy h;
  h.delay = absl::Milliseconds(-1);
  EXPECT_THAT(ValidateHedgingPolicy(h).message(), HasSubstr("delay"));
  h = {};
  h.max_hedges = -1;
  EXPECT_THAT(ValidateHedgingPolicy(h).message(), HasSubstr("max_hedges"));
}

}  // namespace
}  // namespace natsgw
