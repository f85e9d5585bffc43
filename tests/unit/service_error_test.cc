#include "natsgw/service_error.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/wire_headers.h"

namespace natsgw {
namespace {

using ::testing::Optional;

TEST(ServiceErrorTest, EveryCanonicalCodeRoundTripsThroughHeaders) {
  for (int c = 1; c <= 16; ++c) {
    const auto code = static_cast<absl::StatusCode>(c);
    absl::Status original(code, "something specific went wrong");
    Headers headers;
    AddErrorHeaders(original, headers);
    EXPECT_EQ(headers.Get(kServiceErrorHeader),
              absl::string_view("something specific went wrong"));
    EXPECT_EQ(StatusFromErrorHeaders(headers), original) << c;
  }
}

TEST(ServiceErrorTest, OkAddsNothingAndNoHeadersMeansOk) {
  Headers headers;
  AddErrorHeaders(absl::OkStatus(), headers);
  EXPECT_TRUE(headers.empty());
  EXPECT_TRUE(StatusFromErrorHeaders(headers).ok());
  EXPECT_TRUE(StatusFromErrorHeaders({{"Other", "1"}}).ok());
}

TEST(ServiceErrorTest, HttpLikeCodes) {
  EXPECT_EQ(ServiceErrorCodeFromStatusCode(absl::StatusCode::kInvalidArgument),
            400);
  EXPECT_EQ(ServiceErrorCodeFromStatusCode(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(
      ServiceErrorCodeFromStatusCode(absl::StatusCode::kResourceExhausted),
      429);
  EXPECT_EQ(ServiceErrorCodeFromStatusCode(absl::StatusCode::kUnavailable),
            503);
  EXPECT_EQ(ServiceErrorCodeFromStatusCode(absl::StatusCode::kDeadlineExceeded),
            504);
  EXPECT_EQ(ServiceErrorCodeFromStatusCode(absl::StatusCode::kInternal), 500);
}

TEST(ServiceErrorTest, ForeignRepliesMapTheServiceCode) {
  // What nats.go / nats.js services send: only the two Services API headers.
  EXPECT_EQ(StatusFromErrorHeaders({{"Nats-Service-Error", "no such user"},
                                    {"Nats-Service-Error-Code", "404"}}),
            absl::NotFoundError("no such user"));
  EXPECT_EQ(StatusFromErrorHeaders({{"Nats-Service-Error", "slow down"},
                                    {"Nats-Service-Error-Code", "429"}}),
            absl::ResourceExhaustedError("slow down"));
  EXPECT_EQ(StatusFromErrorHeaders({{"Nats-Service-Error", "teapot"},
                                    {"Nats-Service-Error-Code", "418"}})
                .code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(StatusFromErrorHeaders({{"Nats-Service-Error", "boom"},
                                    {"Nats-Service-Error-Code", "502"}})
                .code(),
            absl::StatusCode::kInternal);
  EXPECT_EQ(StatusFromErrorHeaders({{"Nats-Service-Error", "weird"},
                                    {"Nats-Service-Error-Code", "abc"}})
                .code(),
            absl::StatusCode::kUnknown);
  // Header names are matched case-insensitively.
  EXPECT_EQ(StatusFromErrorHeaders({{"nats-service-error-code", "503"}}).code(),
            absl::StatusCode::kUnavailable);
}

TEST(ServiceErrorTest, CanonicalCodeWinsOverTheServiceCode) {
  EXPECT_EQ(StatusFromErrorHeaders({{"Nats-Service-Error", "exists"},
                                    {"Nats-Service-Error-Code", "409"},
                                    {"Natsgw-Status", "6"}}),
            absl::AlreadyExistsError("exists"));
  // Out-of-range canonical code falls back to the service code.
  EXPECT_EQ(StatusFromErrorHeaders({{"Nats-Service-Error", "x"},
                                    {"Nats-Service-Error-Code", "404"},
                                    {"Natsgw-Status", "99"}})
                .code(),
            absl::StatusCode::kNotFound);
}

TEST(ServiceErrorTest, MessagesAreMadeHeaderSafe) {
  Headers headers;
  AddErrorHeaders(absl::InternalError("  line one\r\nline two\t "), headers);
  EXPECT_EQ(headers.Get(kServiceErrorHeader),
            absl::string_view("line one  line two"));
  Headers long_headers;
  AddErrorHeaders(absl::InternalError(std::string(10000, 'x')), long_headers);
  EXPECT_EQ(long_headers.Get(kServiceErrorHeader)->size(), 4096u);
}

TEST(ServiceErrorTest, TraceIdRidesOnTheStatus) {
  absl::Status s = WithTraceId(absl::UnavailableError("down"),
                               "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_THAT(TraceIdFromStatus(s),
              Optional(std::string("4bf92f3577b34da6a3ce929d0e0e4736")));
  EXPECT_EQ(s.message(), "down");
  EXPECT_FALSE(TraceIdFromStatus(absl::UnavailableError("down")).has_value());
  EXPECT_TRUE(WithTraceId(absl::OkStatus(), "abc").ok());
}

}  // namespace
}  // namespace natsgw
