// Typed endpoints (natsgw/typed_service.h) and server interceptors
// (natsgw/interceptor.h), driven through EndpointConfig::handler directly:
// no Service, no Connection, no server.
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "flatbuffers/flatbuffers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/builder_lease.h"
#include "natsgw/interceptor.h"
#include "natsgw/message.h"
#include "natsgw/schemas/echo_generated.h"
#include "natsgw/server_context.h"
#include "natsgw/typed_service.h"
#include "natsgw/verified.h"
#include "sdk_test_util.h"

namespace natsgw {
namespace {

using ::natsgw::echo::EchoReply;
using ::natsgw::echo::EchoRequest;
using ::natsgw::testing::EchoRequestBytes;
using ::natsgw::testing::kEchoMethod;
using ::natsgw::testing::kEchoService;
using ::natsgw::testing::PayloadOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

using EchoHandler = TypedHandler<EchoRequest, EchoReply>;
using ReplyOffset = absl::StatusOr<flatbuffers::Offset<EchoReply>>;

Message EchoMessage(absl::string_view payload, uint64_t tag) {
  Message m;
  m.subject = "echo.Echo";
  m.data = EchoRequestBytes(payload, tag);
  m.trace = TraceContext::NewRoot();
  return m;
}

// Echoes the payload back with tag + 1.
ReplyOffset BuildReply(const EchoRequest& req, ServerContext& ctx) {
  flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
  absl::string_view payload = PayloadOf(req);
  return echo::CreateEchoReply(
      fbb,
      fbb.CreateVector(reinterpret_cast<const uint8_t*>(payload.data()),
                       payload.size()),
      req.tag() + 1);
}

// An echo handler that counts its calls and appends "handler" to `log`.
EchoHandler CountingEcho(int* calls, std::vector<std::string>* log = nullptr) {
  return [calls, log](const EchoRequest& req, ServerContext& ctx) {
    ++*calls;
    if (log != nullptr) log->push_back("handler");
    return BuildReply(req, ctx);
  };
}

EndpointConfig EchoEndpoint(EchoHandler handler,
                            const TypedServiceOptions& options = {}) {
  return MakeTypedEndpoint<EchoRequest, EchoReply>(kEchoMethod,
                                                   std::move(handler), options);
}

// Verifies a reply's bytes as the EchoReply they must be.
Verified<EchoReply> VerifyReply(const Reply& reply) {
  absl::StatusOr<Verified<EchoReply>> v =
      Verified<EchoReply>::FromView(reply.data, "NGEC");
  EXPECT_TRUE(v.ok()) << v.status();
  if (!v.ok()) std::abort();
  return *std::move(v);
}

// Appends "start <name>" / "finish <name> <CODE>" to a shared log, and can
// reject or throw on either hook.
class Recorder : public ServerInterceptor {
 public:
  enum class Fault { kNone, kRejectStart, kThrowOnStart, kThrowOnFinish };

  Recorder(std::string name, std::vector<std::string>* log,
           Fault fault = Fault::kNone)
      : name_(std::move(name)), log_(log), fault_(fault) {}

  absl::Status OnStart(ServerContext& context) override {
    log_->push_back(absl::StrCat("start ", name_));
    start_context_ = &context;
    if (fault_ == Fault::kThrowOnStart) {
      throw std::runtime_error(absl::StrCat(name_, " exploded"));
    }
    if (fault_ == Fault::kRejectStart) {
      return absl::PermissionDeniedError(absl::StrCat(name_, " says no"));
    }
    return absl::OkStatus();
  }

  void OnFinish(const ServerContext& context, const absl::Status& status,
                absl::Duration duration) override {
    log_->push_back(absl::StrCat("finish ", name_, " ",
                                 absl::StatusCodeToString(status.code())));
    finish_context_ = &context;
    finish_status_ = status;
    duration_ = duration;
    if (fault_ == Fault::kThrowOnFinish) throw 42;
  }

  const ServerContext* start_context_ = nullptr;
  const ServerContext* finish_context_ = nullptr;
  absl::Status finish_status_;
  absl::Duration duration_ = -absl::InfiniteDuration();

 private:
  const std::string name_;
  std::vector<std::string>* const log_;
  const Fault fault_;
};

TEST(TypedEndpointTest, ValidRequestReachesTheHandler) {
  int calls = 0;
  const Message request = EchoMessage("hello typed world", 5);
  EndpointConfig endpoint = EchoEndpoint(
      [&](const EchoRequest& req, ServerContext& ctx) -> ReplyOffset {
        ++calls;
        EXPECT_EQ(req.tag(), 5u);
        EXPECT_EQ(PayloadOf(req), "hello typed world");
        EXPECT_EQ(&ctx.method(), &kEchoMethod);
        EXPECT_EQ(&ctx.request(), &request);
        EXPECT_EQ(ctx.builder().GetSize(), 0u);
        return BuildReply(req, ctx);
      });
  absl::StatusOr<Reply> reply = endpoint.handler(request);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(flatbuffers::BufferHasIdentifier(reply->data.data(), "NGEC"));
  Verified<EchoReply> v = VerifyReply(*reply);
  EXPECT_EQ(v->tag(), 6u);
  EXPECT_EQ(PayloadOf(*v), "hello typed world");
  EXPECT_TRUE(reply->headers.empty());
}

TEST(TypedEndpointTest, InvalidPayloadIsRejectedWithoutCallingTheHandler) {
  struct Case {
    std::string data;
    absl::string_view rule;
  };
  std::string garbage(48, '\xee');
  garbage.replace(4, 4, "NGEC");
  const std::string valid = EchoRequestBytes("payload", 1);
  const std::vector<Case> cases = {
      {"", "malformed"},
      {garbage, "malformed"},
      {valid.substr(0, valid.size() / 2), "malformed"},
      {EchoRequestBytes("payload", 1, "NGUS"), "file identifier"},
      {EchoRequestBytes("payload", 1, nullptr), "file identifier"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.rule);
    int calls = 0;
    EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls));
    Message request = EchoMessage("", 0);
    request.data = c.data;
    absl::StatusOr<Reply> reply = endpoint.handler(request);
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(reply.status().message(), HasSubstr("natsgw.echo.Echo.Echo"));
    EXPECT_THAT(reply.status().message(), HasSubstr("natsgw.echo.EchoRequest"));
    EXPECT_THAT(reply.status().message(), HasSubstr(c.rule));
    EXPECT_EQ(calls, 0);
  }
}

TEST(TypedEndpointTest, VerifyLimitsOfTheOptionsApply) {
  int calls = 0;
  TypedServiceOptions options;
  options.verify.max_size_bytes = 16;
  EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls), options);
  absl::StatusOr<Reply> reply =
      endpoint.handler(EchoMessage("longer than sixteen bytes", 1));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reply.status().message(), HasSubstr("size limit"));
  EXPECT_EQ(calls, 0);
}

TEST(TypedEndpointTest, HandlerStatusComesBackUnchanged) {
  for (const absl::Status& expected :
       {absl::NotFoundError("no such echo"),
        absl::AlreadyExistsError("a user with email a@b is already registered"),
        absl::InvalidArgumentError("tag must be even"),
        absl::DeadlineExceededError("not enough budget left"),
        absl::UnavailableError("downstream is away")}) {
    SCOPED_TRACE(expected.ToString());
    EndpointConfig endpoint = EchoEndpoint(
        [&](const EchoRequest&, ServerContext& ctx) -> ReplyOffset {
          // Reply headers and a half-built reply do not survive an error.
          ctx.reply_headers().Add("Served-By", "unit");
          ctx.builder().CreateString("partial");
          return expected;
        });
    absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("x", 1));
    EXPECT_EQ(reply.status(), expected);
  }
}

TEST(TypedEndpointTest, HandlerThatThrowsGivesInternal) {
  EndpointConfig endpoint =
      EchoEndpoint([](const EchoRequest&, ServerContext&) -> ReplyOffset {
        throw std::runtime_error("kaboom");
      });
  absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("x", 1));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(reply.status().message(), HasSubstr("kaboom"));
  EXPECT_THAT(reply.status().message(), HasSubstr("natsgw.echo.Echo.Echo"));

  // Not derived from std::exception.
  endpoint = EchoEndpoint(
      [](const EchoRequest&, ServerContext&) -> ReplyOffset { throw 7; });
  reply = endpoint.handler(EchoMessage("x", 1));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInternal);
}

TEST(TypedEndpointTest, HandlerReturningANullOffsetGivesInternal) {
  EndpointConfig endpoint =
      EchoEndpoint([](const EchoRequest&, ServerContext&) -> ReplyOffset {
        return flatbuffers::Offset<EchoReply>();
      });
  absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("x", 1));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(reply.status().message(), HasSubstr("null"));
}

TEST(TypedEndpointTest, ReplyHeadersAreCarriedIntoTheReply) {
  EndpointConfig endpoint =
      EchoEndpoint([](const EchoRequest& req, ServerContext& ctx) {
        ctx.reply_headers().Add("Served-By", "unit");
        ctx.reply_headers().Add("X-Cache", "miss");
        return BuildReply(req, ctx);
      });
  absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("x", 1));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->headers,
            (Headers{{"Served-By", "unit"}, {"X-Cache", "miss"}}));
  EXPECT_EQ(VerifyReply(*reply)->tag(), 2u);
}

TEST(TypedEndpointTest, HandlerBuildsInTheThreadsReusableBuilder) {
  std::vector<const flatbuffers::FlatBufferBuilder*> builders;
  EndpointConfig endpoint =
      EchoEndpoint([&](const EchoRequest& req, ServerContext& ctx) {
        builders.push_back(&ctx.builder());
        // Empty on entry, whatever the previous request left behind.
        EXPECT_EQ(ctx.builder().GetSize(), 0u);
        if (req.tag() == 1) {
          ctx.builder().CreateString("left behind by a failing handler");
          return ReplyOffset(absl::AbortedError("fails after building"));
        }
        return BuildReply(req, ctx);
      });
  EXPECT_EQ(endpoint.handler(EchoMessage("a", 1)).status().code(),
            absl::StatusCode::kAborted);
  absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("b", 2));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(PayloadOf(*VerifyReply(*reply)), "b");
  reply = endpoint.handler(EchoMessage("c", 3));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(PayloadOf(*VerifyReply(*reply)), "c");
  ASSERT_EQ(builders.size(), 3u);
  EXPECT_EQ(builders[0], builders[1]);
  EXPECT_EQ(builders[1], builders[2]);
  // Outside a handler the thread's builder is free again.
  BuilderLease lease;
  EXPECT_TRUE(lease.shared());
  EXPECT_EQ(&lease.builder(), builders[0]);
}

TEST(TypedEndpointTest, MessagesBuiltInsideTheHandlerDoNotClobberTheReply) {
  std::string event;
  EndpointConfig endpoint =
      EchoEndpoint([&](const EchoRequest& req, ServerContext& ctx) {
        flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
        auto payload =
            fbb.CreateVector(req.payload()->data(), req.payload()->size());
        {
          // E.g. an event published from the handler, built meanwhile.
          BuilderLease lease;
          EXPECT_FALSE(lease.shared());
          EXPECT_NE(&lease.builder(), &fbb);
          const absl::string_view text =
              "an event that is longer than the reply itself";
          auto data = lease.builder().CreateVector(
              reinterpret_cast<const uint8_t*>(text.data()), text.size());
          lease.builder().Finish(
              echo::CreateEchoRequest(lease.builder(), data, 99));
          event = std::string(lease.bytes());
        }
        return echo::CreateEchoReply(fbb, payload, req.tag() * 10);
      });
  absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("reply", 4));
  ASSERT_TRUE(reply.ok()) << reply.status();
  Verified<EchoReply> v = VerifyReply(*reply);
  EXPECT_EQ(v->tag(), 40u);
  EXPECT_EQ(PayloadOf(*v), "reply");
  EXPECT_FALSE(event.empty());
}

TEST(TypedEndpointTest, WorksWhileTheThreadsBuilderIsLeased) {
  // The endpoint called from code that holds the thread's builder (e.g. a
  // test, or a local dispatch) must not overwrite what is being built there.
  BuilderLease outer;
  ASSERT_TRUE(outer.shared());
  auto half_built = outer.builder().CreateVector(
      reinterpret_cast<const uint8_t*>("outer"), 5);
  int calls = 0;
  EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls));
  absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("inner", 8));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(VerifyReply(*reply)->tag(), 9u);
  outer.builder().Finish(
      echo::CreateEchoRequest(outer.builder(), half_built, 1));
  absl::StatusOr<Verified<EchoRequest>> v =
      Verified<EchoRequest>::FromView(outer.bytes(), "");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(PayloadOf(**v), "outer");
}

TEST(TypedEndpointTest, MoreBytesAfterTheBufferAreTolerated) {
  // Bytes past the end of a FlatBuffer are not referenced by it.
  int calls = 0;
  EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls));
  Message request = EchoMessage("payload", 3);
  request.data.append(13, '\0');
  absl::StatusOr<Reply> reply = endpoint.handler(request);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(VerifyReply(*reply)->tag(), 4u);
  EXPECT_EQ(calls, 1);
}

TEST(ServerInterceptorTest, OnStartFirstToLastOnFinishLastToFirst) {
  std::vector<std::string> log;
  auto a = std::make_shared<Recorder>("A", &log);
  auto b = std::make_shared<Recorder>("B", &log);
  auto c = std::make_shared<Recorder>("C", &log);
  TypedServiceOptions options;
  options.interceptors = {a, b, c};
  int calls = 0;
  EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls, &log), options);
  absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("x", 1));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_THAT(log, ElementsAre("start A", "start B", "start C", "handler",
                               "finish C OK", "finish B OK", "finish A OK"));
  // One context per request, the same in both hooks.
  EXPECT_NE(a->start_context_, nullptr);
  EXPECT_EQ(a->start_context_, a->finish_context_);
  EXPECT_EQ(a->start_context_, c->finish_context_);
  EXPECT_GE(a->duration_, absl::ZeroDuration());
  EXPECT_LT(a->duration_, absl::InfiniteDuration());
}

TEST(ServerInterceptorTest, RejectingOnStartStopsTheCall) {
  std::vector<std::string> log;
  TypedServiceOptions options;
  auto a = std::make_shared<Recorder>("A", &log);
  auto b = std::make_shared<Recorder>("B", &log, Recorder::Fault::kRejectStart);
  auto c = std::make_shared<Recorder>("C", &log);
  options.interceptors = {a, b, c};
  int calls = 0;
  EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls, &log), options);
  absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("x", 1));
  EXPECT_EQ(reply.status(), absl::PermissionDeniedError("B says no"));
  EXPECT_EQ(calls, 0);
  // C never started; only A, whose OnStart succeeded, finishes.
  EXPECT_THAT(log,
              ElementsAre("start A", "start B", "finish A PERMISSION_DENIED"));
  EXPECT_EQ(a->finish_status_, reply.status());
}

TEST(ServerInterceptorTest, RejectionByTheFirstInterceptorFinishesNone) {
  std::vector<std::string> log;
  TypedServiceOptions options;
  options.interceptors = {
      std::make_shared<Recorder>("A", &log, Recorder::Fault::kRejectStart),
      std::make_shared<Recorder>("B", &log)};
  int calls = 0;
  EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls), options);
  EXPECT_EQ(endpoint.handler(EchoMessage("x", 1)).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(log, ElementsAre("start A"));
  EXPECT_EQ(calls, 0);
}

TEST(ServerInterceptorTest, ThrowingOnStartBecomesInternal) {
  std::vector<std::string> log;
  TypedServiceOptions options;
  options.interceptors = {
      std::make_shared<Recorder>("A", &log),
      std::make_shared<Recorder>("B", &log, Recorder::Fault::kThrowOnStart),
      std::make_shared<Recorder>("C", &log)};
  int calls = 0;
  EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls), options);
  absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("x", 1));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(reply.status().message(), HasSubstr("B exploded"));
  EXPECT_EQ(calls, 0);
  EXPECT_THAT(log, ElementsAre("start A", "start B", "finish A INTERNAL"));
}

TEST(ServerInterceptorTest, ThrowingOnFinishDoesNotSkipTheOthers) {
  std::vector<std::string> log;
  TypedServiceOptions options;
  options.interceptors = {
      std::make_shared<Recorder>("A", &log),
      std::make_shared<Recorder>("B", &log, Recorder::Fault::kThrowOnFinish)};
  int calls = 0;
  EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls, &log), options);
  absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("x", 1));
  // The reply was final before OnFinish ran; it stands.
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(VerifyReply(*reply)->tag(), 2u);
  EXPECT_THAT(log, ElementsAre("start A", "start B", "handler", "finish B OK",
                               "finish A OK"));
}

TEST(ServerInterceptorTest, InterceptorsRunBeforeVerification) {
  std::vector<std::string> log;
  auto a = std::make_shared<Recorder>("A", &log);
  TypedServiceOptions options;
  options.interceptors = {a};
  int calls = 0;
  EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls), options);
  Message request = EchoMessage("", 0);
  request.data = "not a flatbuffer";
  absl::StatusOr<Reply> reply = endpoint.handler(request);
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(calls, 0);
  EXPECT_THAT(log, ElementsAre("start A", "finish A INVALID_ARGUMENT"));
  EXPECT_EQ(a->finish_status_, reply.status());
}

TEST(ServerInterceptorTest, OnFinishSeesTheStatusTheCallerGets) {
  struct Case {
    EchoHandler handler;
    absl::StatusCode code;
  };
  std::vector<Case> cases;
  cases.push_back({[](const EchoRequest&, ServerContext&) -> ReplyOffset {
                     return absl::NotFoundError("gone");
                   },
                   absl::StatusCode::kNotFound});
  cases.push_back({[](const EchoRequest&, ServerContext&) -> ReplyOffset {
                     return flatbuffers::Offset<EchoReply>();
                   },
                   absl::StatusCode::kInternal});
  cases.push_back({[](const EchoRequest&, ServerContext&) -> ReplyOffset {
                     throw std::logic_error("bug");
                   },
                   absl::StatusCode::kInternal});
  for (Case& c : cases) {
    SCOPED_TRACE(absl::StatusCodeToString(c.code));
    std::vector<std::string> log;
    auto a = std::make_shared<Recorder>("A", &log);
    TypedServiceOptions options;
    options.interceptors = {a};
    EndpointConfig endpoint = EchoEndpoint(std::move(c.handler), options);
    absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("x", 1));
    EXPECT_EQ(reply.status().code(), c.code);
    EXPECT_EQ(a->finish_status_, reply.status());
  }
}

// Rejects requests without the right token and marks accepted ones.
class AuthInterceptor : public ServerInterceptor {
 public:
  absl::Status OnStart(ServerContext& ctx) override {
    std::optional<absl::string_view> token = ctx.metadata("authorization");
    if (!token.has_value() || *token != "Bearer t0ken") {
      return absl::UnauthenticatedError("missing or invalid token");
    }
    ctx.reply_headers().Add("X-Auth", "ok");
    return absl::OkStatus();
  }
};

TEST(ServerInterceptorTest, InterceptorReadsMetadataAndAddsReplyHeaders) {
  TypedServiceOptions options;
  options.interceptors = {std::make_shared<AuthInterceptor>()};
  EndpointConfig endpoint = EchoEndpoint(
      [](const EchoRequest& req, ServerContext& ctx) {
        ctx.reply_headers().Add("Served-By", "unit");
        return BuildReply(req, ctx);
      },
      options);

  Message request = EchoMessage("x", 1);
  EXPECT_EQ(endpoint.handler(request).status().code(),
            absl::StatusCode::kUnauthenticated);
  request.headers.Add("Authorization", "Bearer t0ken");
  absl::StatusOr<Reply> reply = endpoint.handler(request);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->headers, (Headers{{"X-Auth", "ok"}, {"Served-By", "unit"}}));
}

// Reads the reply headers when the call has finished, as a logging or
// metrics interceptor would.
class ReplyHeaderReader : public ServerInterceptor {
 public:
  void OnFinish(const ServerContext& ctx, const absl::Status& status,
                absl::Duration duration) override {
    seen_ = ctx.reply_headers();
  }
  Headers seen_;
};

TEST(ServerInterceptorTest, OnFinishSeesTheReplyHeaders) {
  auto reader = std::make_shared<ReplyHeaderReader>();
  TypedServiceOptions options;
  options.interceptors = {reader};
  EndpointConfig endpoint = EchoEndpoint(
      [](const EchoRequest& req, ServerContext& ctx) {
        ctx.reply_headers().Add("Served-By", "unit");
        return BuildReply(req, ctx);
      },
      options);
  absl::StatusOr<Reply> reply = endpoint.handler(EchoMessage("x", 1));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->headers, (Headers{{"Served-By", "unit"}}));
  EXPECT_EQ(reader->seen_, (Headers{{"Served-By", "unit"}}));
}

TEST(TypedServiceConfigTest, MakeServiceConfigDefaults) {
  const ServiceConfig config =
      MakeServiceConfig(kEchoService, TypedServiceOptions{});
  EXPECT_EQ(config.name, "echo");
  EXPECT_EQ(config.version, "0.0.0");
  EXPECT_EQ(config.description, "natsgw.echo.Echo (echo.fbs)");
  EXPECT_THAT(config.metadata,
              UnorderedElementsAre(Pair("fbs.service", "natsgw.echo.Echo"),
                                   Pair("fbs.schema", "echo.fbs")));
  EXPECT_EQ(config.queue_group, "q");
  EXPECT_EQ(config.serve.workers, 0);
  EXPECT_EQ(config.serve.max_in_flight, 0);
  EXPECT_THAT(config.endpoints, IsEmpty());
}

TEST(TypedServiceConfigTest, MakeServiceConfigTakesTheOptions) {
  TypedServiceOptions options;
  options.name = "echo-eu";
  options.version = "1.4.2";
  options.description = "the echo service";
  options.metadata = {{"team", "core"}, {"fbs.schema", "custom.fbs"}};
  options.queue_group = "";
  options.serve.workers = 4;
  options.serve.max_in_flight = 32;
  const ServiceConfig config = MakeServiceConfig(kEchoService, options);
  EXPECT_EQ(config.name, "echo-eu");
  EXPECT_EQ(config.version, "1.4.2");
  EXPECT_EQ(config.description, "the echo service");
  // fbs.* entries are added unless the options already set them.
  EXPECT_THAT(config.metadata,
              UnorderedElementsAre(Pair("team", "core"),
                                   Pair("fbs.schema", "custom.fbs"),
                                   Pair("fbs.service", "natsgw.echo.Echo")));
  EXPECT_EQ(config.queue_group, "");
  EXPECT_EQ(config.serve.workers, 4);
  EXPECT_EQ(config.serve.max_in_flight, 32);
}

// The binary schema is announced as base64 service metadata "fbs.bfbs",
// unless the options set it or it would break the 128 KiB metadata limit.
TEST(TypedServiceConfigTest, MakeServiceConfigAnnouncesTheBinarySchema) {
  ServiceDescriptor with_schema = kEchoService;
  static constexpr char kBytes[] = "\x10\0\0\0BFBS\xff\x01 schema bytes";
  const std::string bfbs(kBytes, sizeof(kBytes) - 1);
  with_schema.schema_bfbs = bfbs;
  ServiceConfig config = MakeServiceConfig(with_schema, TypedServiceOptions{});
  EXPECT_THAT(config.metadata,
              UnorderedElementsAre(Pair("fbs.service", "natsgw.echo.Echo"),
                                   Pair("fbs.schema", "echo.fbs"),
                                   Pair("fbs.bfbs", absl::Base64Escape(bfbs))));

  TypedServiceOptions own;
  own.metadata = {{"fbs.bfbs", "replaced"}};
  config = MakeServiceConfig(with_schema, own);
  EXPECT_EQ(config.metadata["fbs.bfbs"], "replaced");

  // Too big to announce: left out, and the service still starts.
  const std::string huge(100 * 1024, 'x');  // 136 KiB as base64
  with_schema.schema_bfbs = huge;
  config = MakeServiceConfig(with_schema, TypedServiceOptions{});
  EXPECT_EQ(config.metadata.count("fbs.bfbs"), 0u);
  EXPECT_TRUE(ValidateServiceConfig(config).ok());
  // Just under the limit with the other entries: announced.
  size_t others = 0;
  for (const auto& [key, value] : config.metadata) {
    others += key.size() + value.size();
  }
  const size_t room = 128 * 1024 - others - std::string("fbs.bfbs").size();
  with_schema.schema_bfbs = absl::string_view(huge).substr(0, room / 4 * 3);
  config = MakeServiceConfig(with_schema, TypedServiceOptions{});
  EXPECT_EQ(config.metadata.count("fbs.bfbs"), 1u);
  EXPECT_TRUE(ValidateServiceConfig(config).ok());
}

TEST(TypedServiceConfigTest, EndpointNamesTheContract) {
  int calls = 0;
  EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls));
  EXPECT_EQ(endpoint.name, "Echo");
  EXPECT_EQ(endpoint.subject, "echo.Echo");
  EXPECT_THAT(
      endpoint.metadata,
      UnorderedElementsAre(Pair("fbs.request_type", "natsgw.echo.EchoRequest"),
                           Pair("fbs.response_type", "natsgw.echo.EchoReply"),
                           Pair("fbs.file_identifier", "NGEC"),
                           Pair("fbs.schema", "echo.fbs")));
  // Queue group and serve options are inherited from the service.
  EXPECT_EQ(endpoint.queue_group, std::nullopt);
  EXPECT_FALSE(endpoint.serve.has_value());
  // SERVER spans are named like the typed client's CLIENT spans.
  EXPECT_EQ(endpoint.rpc_method, "natsgw.echo.Echo/Echo");
  EXPECT_TRUE(static_cast<bool>(endpoint.handler));
}

TEST(TypedServiceConfigTest, EndpointSubjectUsesThePrefixOverride) {
  TypedServiceOptions options;
  options.subject_prefix = "acme.echo";
  int calls = 0;
  EndpointConfig endpoint = EchoEndpoint(CountingEcho(&calls), options);
  EXPECT_EQ(endpoint.subject, "acme.echo.Echo");
  EXPECT_EQ(endpoint.name, "Echo");
}

TEST(TypedServiceConfigTest, ValidateTypedServiceOptions) {
  TypedServiceOptions options;
  EXPECT_TRUE(ValidateTypedServiceOptions(options).ok());
  std::vector<std::string> log;
  options.interceptors = {std::make_shared<Recorder>("A", &log)};
  EXPECT_TRUE(ValidateTypedServiceOptions(options).ok());

  options.interceptors.push_back(nullptr);
  absl::Status s = ValidateTypedServiceOptions(options);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("null interceptor"));

  options.interceptors.clear();
  options.verify.max_depth = 0;
  s = ValidateTypedServiceOptions(options);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("max_depth"));
}

}  // namespace
}  // namespace natsgw
