#include "nats_status.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace natsgw::internal {
namespace {

using ::testing::HasSubstr;

TEST(NatsStatusTest, EveryStatusHasADeliberateMapping) {
  // Walk the whole enum: only NATS_OK maps to OK, and the generic NATS_ERR is
  // the only value left as UNKNOWN (the switch has no default, so a value
  // added to natsStatus fails to compile with -Wswitch until it is mapped).
  for (int v = NATS_OK; v <= NATS_MISSED_HEARTBEAT; ++v) {
    const auto s = static_cast<natsStatus>(v);
    const absl::StatusCode code = StatusCodeFromNats(s);
    if (s == NATS_OK) {
      EXPECT_EQ(code, absl::StatusCode::kOk);
    } else {
      EXPECT_NE(code, absl::StatusCode::kOk) << natsStatus_GetText(s);
    }
    if (s != NATS_ERR && s != NATS_OK) {
      EXPECT_NE(code, absl::StatusCode::kUnknown) << natsStatus_GetText(s);
    }
  }
}

TEST(NatsStatusTest, KeyMappings) {
  EXPECT_EQ(StatusCodeFromNats(NATS_NO_RESPONDERS),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusCodeFromNats(NATS_TIMEOUT),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(StatusCodeFromNats(NATS_NO_SERVER), absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusCodeFromNats(NATS_CONNECTION_CLOSED),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusCodeFromNats(NATS_NOT_PERMITTED),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(StatusCodeFromNats(NATS_CONNECTION_AUTH_FAILED),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(StatusCodeFromNats(NATS_MAX_PAYLOAD),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StatusCodeFromNats(NATS_SLOW_CONSUMER),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(StatusCodeFromNats(NATS_INSUFFICIENT_BUFFER),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(StatusCodeFromNats(static_cast<natsStatus>(9999)),
            absl::StatusCode::kUnknown);
}

TEST(NatsStatusTest, NatsErrorNamesContextAndNatsText) {
  absl::Status s = NatsError(NATS_TIMEOUT, "flushing");
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(s.message()), HasSubstr("flushing: "));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(natsStatus_GetText(NATS_TIMEOUT)));
  EXPECT_TRUE(NatsError(NATS_OK, "x").ok());
}

}  // namespace
}  // namespace natsgw::internal
