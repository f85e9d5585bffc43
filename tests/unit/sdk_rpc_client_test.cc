// RpcChannel (natsgw/rpc_client.h) without a NATS server: option checks and
// calls that end before anything is sent. The Connection is created with
// retry_on_failed_connect against a loopback port that refuses connections,
// so it exists but never connects.

#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "flatbuffers/flatbuffers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/connection.h"
#include "natsgw/interceptor.h"
#include "natsgw/rpc_client.h"
#include "natsgw/schemas/echo_generated.h"
#include "natsgw/service_error.h"
#include "natsgw/trace_context.h"
#include "sdk_test_util.h"

namespace natsgw {
namespace {

using ::natsgw::echo::EchoReply;
using ::natsgw::echo::EchoRequest;
using ::natsgw::testing::kEchoMethod;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

// kEchoMethod declared (idempotent).
constexpr MethodDescriptor kIdempotentEcho = [] {
  MethodDescriptor m = kEchoMethod;
  m.idempotent = true;
  return m;
}();

class RpcChannelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    port_ = new testing::RefusingPort();
    ASSERT_NE(port_->port(), 0) << std::strerror(errno);
    ConnectionOptions options;
    options.servers = {absl::StrCat("nats://127.0.0.1:", port_->port())};
    options.name = "sdk-unit-test";
    options.retry_on_failed_connect = true;
    // Few background attempts while the tests run.
    options.reconnect.wait = absl::Seconds(1);
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Create(options);
    ASSERT_TRUE(conn.ok()) << conn.status();
    conn_ = conn->release();
  }

  static void TearDownTestSuite() {
    delete conn_;
    conn_ = nullptr;
    delete port_;
    port_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(conn_, nullptr);
    ASSERT_NE(conn_->state(), ConnectionState::kConnected);
  }

  static Connection& conn() { return *conn_; }

  static testing::RefusingPort* port_;
  static Connection* conn_;
};

testing::RefusingPort* RpcChannelTest::port_ = nullptr;
Connection* RpcChannelTest::conn_ = nullptr;

using RpcChannelCreateTest = RpcChannelTest;

void ExpectInvalid(const absl::StatusOr<RpcChannel>& channel,
                   absl::string_view rule) {
  EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument)
      << channel.status();
  EXPECT_THAT(channel.status().message(), HasSubstr(rule));
}

TEST_F(RpcChannelCreateTest, AcceptsDefaultOptions) {
  absl::StatusOr<RpcChannel> channel = RpcChannel::Create(conn());
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_EQ(&channel->connection(), &conn());
  EXPECT_EQ(channel->options().timeout, absl::Seconds(5));
  EXPECT_EQ(channel->options().retry.max_attempts, 3);
  EXPECT_FALSE(channel->options().hedging.enabled());
  EXPECT_EQ(channel->Subject(kEchoMethod), "echo.Echo");

  // Copies share the state.
  RpcChannel copy = *channel;
  EXPECT_EQ(&copy.options(), &channel->options());
}

TEST_F(RpcChannelCreateTest, SubjectUsesThePrefixOverride) {
  ClientOptions options;
  options.subject_prefix = "acme.echo";
  absl::StatusOr<RpcChannel> channel = RpcChannel::Create(conn(), options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  EXPECT_EQ(channel->Subject(kEchoMethod), "acme.echo.Echo");
}

TEST_F(RpcChannelCreateTest, RejectsNonPositiveTimeout) {
  for (absl::Duration timeout : {absl::ZeroDuration(), absl::Milliseconds(-1),
                                 -absl::InfiniteDuration()}) {
    SCOPED_TRACE(absl::FormatDuration(timeout));
    ClientOptions options;
    options.timeout = timeout;
    ExpectInvalid(RpcChannel::Create(conn(), options), "timeout");
  }
}

TEST_F(RpcChannelCreateTest, RejectsAnInvalidRetryPolicy) {
  std::vector<RetryPolicy> policies(5);
  policies[0].max_attempts = 0;
  policies[1].multiplier = 0.5;
  policies[2].jitter = 1.5;
  policies[3].initial_backoff = absl::Milliseconds(-1);
  policies[4].retryable_codes.push_back(absl::StatusCode::kDeadlineExceeded);
  for (size_t i = 0; i < policies.size(); ++i) {
    SCOPED_TRACE(i);
    ClientOptions options;
    options.retry = policies[i];
    absl::StatusOr<RpcChannel> channel = RpcChannel::Create(conn(), options);
    EXPECT_EQ(channel.status().code(), absl::StatusCode::kInvalidArgument)
        << channel.status();
  }
}

TEST_F(RpcChannelCreateTest, RejectsAnInvalidHedgingPolicy) {
  ClientOptions options;
  options.hedging.delay = absl::Milliseconds(-1);
  ExpectInvalid(RpcChannel::Create(conn(), options), "hedging");
  options.hedging = HedgingPolicy{};
  options.hedging.max_hedges = -1;
  ExpectInvalid(RpcChannel::Create(conn(), options), "hedging");
}

TEST_F(RpcChannelCreateTest, RejectsBadVerifyLimits) {
  ClientOptions options;
  options.verify.max_depth = 0;
  ExpectInvalid(RpcChannel::Create(conn(), options), "max_depth");
  options.verify = VerifyLimits{};
  options.verify.max_tables = -1;
  ExpectInvalid(RpcChannel::Create(conn(), options), "max_tables");
  options.verify = VerifyLimits{};
  options.verify.max_size_bytes = 0;
  ExpectInvalid(RpcChannel::Create(conn(), options), "max_size_bytes");
}

TEST_F(RpcChannelCreateTest, RejectsANullInterceptor) {
  ClientOptions options;
  options.interceptors.push_back(std::make_shared<ClientInterceptor>());
  options.interceptors.push_back(nullptr);
  ExpectInvalid(RpcChannel::Create(conn(), options), "null interceptor");
}

// Records what a client interceptor sees, into a shared log.
class ClientRecorder : public ClientInterceptor {
 public:
  enum class Fault { kNone, kRejectStart, kThrowOnStart };

  ClientRecorder(std::string name, std::vector<std::string>* log,
                 Fault fault = Fault::kNone)
      : name_(std::move(name)), log_(log), fault_(fault) {}

  absl::Status OnStart(const ClientCallInfo& call, Headers& headers) override {
    log_->push_back(absl::StrCat("start ", name_));
    info_ = call;
    start_call_ = &call;
    if (fault_ == Fault::kThrowOnStart) {
      throw std::runtime_error(absl::StrCat(name_, " exploded"));
    }
    if (fault_ == Fault::kRejectStart) {
      return absl::PermissionDeniedError(absl::StrCat(name_, " says no"));
    }
    headers.Add(absl::StrCat("X-", name_), "1");
    return absl::OkStatus();
  }

  void OnFinish(const ClientCallInfo& call,
                const ClientCallResult& result) override {
    log_->push_back(absl::StrCat(
        "finish ", name_, " ", absl::StatusCodeToString(result.status.code())));
    finish_call_ = &call;
    status_ = result.status;
    sent_ = result.sent.has_value();
    reply_headers_null_ = result.reply_headers == nullptr;
    max_attempts_ = result.max_attempts;
  }

  ClientCallInfo info_;
  const ClientCallInfo* start_call_ = nullptr;
  const ClientCallInfo* finish_call_ = nullptr;
  absl::Status status_;
  bool sent_ = true;
  bool reply_headers_null_ = false;
  int max_attempts_ = 0;

 private:
  const std::string name_;
  std::vector<std::string>* const log_;
  const Fault fault_;
};

using RpcChannelCallTest = RpcChannelTest;

// Builds an EchoRequest and counts the calls.
auto CountingBuild(int* calls) {
  return [calls](flatbuffers::FlatBufferBuilder& fbb) {
    ++*calls;
    return echo::CreateEchoRequest(fbb, fbb.CreateVector<uint8_t>({1, 2, 3}),
                                   7);
  };
}

TEST_F(RpcChannelCallTest, NotConnectedIsUnavailableWithTheTraceId) {
  std::vector<std::string> log;
  auto a = std::make_shared<ClientRecorder>("A", &log);
  ClientOptions options;
  options.interceptors = {a};
  absl::StatusOr<RpcChannel> channel = RpcChannel::Create(conn(), options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  int builds = 0;
  absl::StatusOr<Response<EchoReply>> r = channel->Call<EchoRequest, EchoReply>(
      kEchoMethod, CountingBuild(&builds));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_EQ(builds, 1);
  EXPECT_THAT(TraceIdFromStatus(r.status()),
              Optional(a->info_.trace.TraceIdHex()));
  EXPECT_THAT(log, ElementsAre("start A", "finish A UNAVAILABLE"));
  EXPECT_EQ(a->status_, r.status());
  EXPECT_FALSE(a->sent_);
  EXPECT_TRUE(a->reply_headers_null_);
  // Within one call both hooks see the same object.
  EXPECT_EQ(a->start_call_, a->finish_call_);
}

TEST_F(RpcChannelCallTest, InterceptorsSeeTheCallAndRunInOrder) {
  std::vector<std::string> log;
  auto a = std::make_shared<ClientRecorder>("A", &log);
  auto b = std::make_shared<ClientRecorder>("B", &log);
  ClientOptions options;
  options.subject_prefix = "acme.echo";
  options.timeout = absl::Milliseconds(1234);
  options.interceptors = {a, b};
  absl::StatusOr<RpcChannel> channel = RpcChannel::Create(conn(), options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  int builds = 0;
  const TraceContext trace = TraceContext::NewRoot();
  CallOptions call;
  call.trace = trace;
  absl::StatusOr<Response<EchoReply>> r = channel->Call<EchoRequest, EchoReply>(
      kEchoMethod, CountingBuild(&builds), call);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(log, ElementsAre("start A", "start B", "finish B UNAVAILABLE",
                               "finish A UNAVAILABLE"));
  EXPECT_EQ(a->info_.method, &kEchoMethod);
  EXPECT_EQ(a->info_.subject, "acme.echo.Echo");
  EXPECT_EQ(a->info_.timeout, absl::Milliseconds(1234));
  EXPECT_EQ(a->info_.trace.TraceIdHex(), trace.TraceIdHex());
  EXPECT_THAT(TraceIdFromStatus(r.status()), Optional(trace.TraceIdHex()));
}

TEST_F(RpcChannelCallTest, RetriesAndHedgesOnlyIdempotentMethods) {
  std::vector<std::string> log;
  auto a = std::make_shared<ClientRecorder>("A", &log);
  ClientOptions options;
  options.retry.max_attempts = 4;
  options.hedging.delay = absl::Milliseconds(20);
  options.interceptors = {a};
  absl::StatusOr<RpcChannel> channel = RpcChannel::Create(conn(), options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  int builds = 0;

  (void)channel->Call<EchoRequest, EchoReply>(kEchoMethod,
                                              CountingBuild(&builds));
  EXPECT_EQ(a->info_.retry.max_attempts, 1);
  EXPECT_FALSE(a->info_.hedging.enabled());
  EXPECT_EQ(a->max_attempts_, 1);

  (void)channel->Call<EchoRequest, EchoReply>(kIdempotentEcho,
                                              CountingBuild(&builds));
  EXPECT_EQ(a->info_.retry.max_attempts, 4);
  EXPECT_EQ(a->info_.hedging.delay, absl::Milliseconds(20));
  EXPECT_EQ(a->max_attempts_, 4);

  // A call may vouch for a non-idempotent method itself.
  CallOptions call;
  call.retry = RetryPolicy{.max_attempts = 2};
  call.hedging = HedgingPolicy{.delay = absl::Milliseconds(5)};
  (void)channel->Call<EchoRequest, EchoReply>(kEchoMethod,
                                              CountingBuild(&builds), call);
  EXPECT_EQ(a->info_.retry.max_attempts, 2);
  EXPECT_EQ(a->info_.hedging.delay, absl::Milliseconds(5));
  EXPECT_EQ(builds, 3);
}

TEST_F(RpcChannelCallTest, RejectingInterceptorStopsTheCall) {
  std::vector<std::string> log;
  ClientOptions options;
  options.interceptors = {std::make_shared<ClientRecorder>("A", &log),
                          std::make_shared<ClientRecorder>(
                              "B", &log, ClientRecorder::Fault::kRejectStart),
                          std::make_shared<ClientRecorder>("C", &log)};
  absl::StatusOr<RpcChannel> channel = RpcChannel::Create(conn(), options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  int builds = 0;
  absl::StatusOr<Response<EchoReply>> r = channel->Call<EchoRequest, EchoReply>(
      kEchoMethod, CountingBuild(&builds));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(r.status().message(), "B says no");
  EXPECT_TRUE(TraceIdFromStatus(r.status()).has_value());
  EXPECT_EQ(builds, 0);
  EXPECT_THAT(log,
              ElementsAre("start A", "start B", "finish A PERMISSION_DENIED"));
}

TEST_F(RpcChannelCallTest, ThrowingInterceptorBecomesInternal) {
  std::vector<std::string> log;
  ClientOptions options;
  options.interceptors = {std::make_shared<ClientRecorder>("A", &log),
                          std::make_shared<ClientRecorder>(
                              "B", &log, ClientRecorder::Fault::kThrowOnStart)};
  absl::StatusOr<RpcChannel> channel = RpcChannel::Create(conn(), options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  int builds = 0;
  absl::StatusOr<Response<EchoReply>> r = channel->Call<EchoRequest, EchoReply>(
      kEchoMethod, CountingBuild(&builds));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(r.status().message(), HasSubstr("B exploded"));
  EXPECT_EQ(builds, 0);
  EXPECT_THAT(log, ElementsAre("start A", "start B", "finish A INTERNAL"));
}

TEST_F(RpcChannelCallTest, BuilderReturningANullRootIsInvalidArgument) {
  std::vector<std::string> log;
  ClientOptions options;
  options.interceptors = {std::make_shared<ClientRecorder>("A", &log)};
  absl::StatusOr<RpcChannel> channel = RpcChannel::Create(conn(), options);
  ASSERT_TRUE(channel.ok()) << channel.status();
  absl::StatusOr<Response<EchoReply>> r = channel->Call<EchoRequest, EchoReply>(
      kEchoMethod, [](flatbuffers::FlatBufferBuilder&) {
        return flatbuffers::Offset<EchoRequest>();
      });
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("natsgw.echo.EchoRequest"));
  EXPECT_THAT(r.status().message(), HasSubstr("null"));
  EXPECT_THAT(log, ElementsAre("start A", "finish A INVALID_ARGUMENT"));
}

TEST_F(RpcChannelCallTest, NegativeCallTimeoutIsInvalidArgument) {
  absl::StatusOr<RpcChannel> channel = RpcChannel::Create(conn());
  ASSERT_TRUE(channel.ok()) << channel.status();
  int builds = 0;
  CallOptions call;
  call.timeout = absl::Milliseconds(-5);
  absl::StatusOr<Response<EchoReply>> r = channel->Call<EchoRequest, EchoReply>(
      kEchoMethod, CountingBuild(&builds), call);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("timeout"));
  EXPECT_TRUE(TraceIdFromStatus(r.status()).has_value());
  EXPECT_EQ(builds, 0);
}

TEST_F(RpcChannelCallTest, AsyncFormsCompleteExactlyOnce) {
  absl::StatusOr<RpcChannel> channel = RpcChannel::Create(conn());
  ASSERT_TRUE(channel.ok()) << channel.status();
  int builds = 0;

  // A call that fails at once completes on the calling thread, before
  // CallAsync returns.
  int callbacks = 0;
  std::thread::id callback_thread;
  channel->CallAsync<EchoRequest, EchoReply>(
      kEchoMethod, CountingBuild(&builds),
      [&](absl::StatusOr<Response<EchoReply>> r) {
        ++callbacks;
        callback_thread = std::this_thread::get_id();
        EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
      });
  EXPECT_EQ(callbacks, 1);
  EXPECT_EQ(callback_thread, std::this_thread::get_id());

  std::future<absl::StatusOr<Response<EchoReply>>> f =
      channel->CallAsync<EchoRequest, EchoReply>(kEchoMethod,
                                                 CountingBuild(&builds));
  ASSERT_EQ(f.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_EQ(f.get().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(builds, 2);
}

}  // namespace
}  // namespace natsgw
