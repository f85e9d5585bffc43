// Typed RPC end to end on a real nats-server: natsgw-gen's clients and
// service bases (schemas/echo.fbs, schemas/users.fbs) over the gateway.
// Round trips in every call form, a fan-out of 1000 calls, deadlines and
// their propagation through a nested call, every error path, shedding under
// a flood, retries and hedging, interceptors, malformed payloads in both
// directions, subject prefixes, and the Services API view of a typed service.
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway_test_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/nats_server_fixture.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/interceptor.h"
#include "natsgw/rpc_client.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/service_error.h"
#include "natsgw/typed_service.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

using ::natsgw::echo::EchoClient;
using ::natsgw::echo::EchoReply;
using ::natsgw::echo::EchoRequest;
using ::natsgw::echo::EchoServiceBase;
using ::natsgw::testing::Gate;
using ::natsgw::testing::GatewayTest;
using ::natsgw::testing::Latch;
using ::natsgw::users::RegisterUserReply;
using ::natsgw::users::RegisterUserRequest;
using ::natsgw::users::UsersClient;
using ::natsgw::users::UsersServiceBase;
using ::testing::HasSubstr;

// Bounds every wait of the test thread; never reached when things work.
constexpr absl::Duration kWait = absl::Seconds(20);

// What an Echo handler saw of one request.
struct Seen {
  std::string trace_id;
  std::string message_id;
  absl::Duration remaining;
  std::optional<std::string> tenant;
};

// Echo whose behaviour each test chooses; records what it saw.
class TestEcho : public EchoServiceBase {
 public:
  using Hook = std::function<absl::Status(const EchoRequest&, ServerContext&)>;

  explicit TestEcho(Hook hook = nullptr) : hook_(std::move(hook)) {}

  absl::StatusOr<flatbuffers::Offset<EchoReply>> Echo(
      const EchoRequest& request, ServerContext& ctx) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      Seen s{ctx.trace().TraceIdHex(), std::string(ctx.message_id()),
             ctx.remaining(), std::nullopt};
      if (auto tenant = ctx.metadata("X-Tenant"))
        s.tenant = std::string(*tenant);
      seen_.push_back(std::move(s));
    }
    calls_.fetch_add(1);
    if (hook_) {
      absl::Status status = hook_(request, ctx);
      if (!status.ok()) return status;
    }
    flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
    auto payload = request.payload() != nullptr
                       ? fbb.CreateVector(request.payload()->data(),
                                          request.payload()->size())
                       : fbb.CreateVector(std::vector<uint8_t>{});
    return natsgw::echo::CreateEchoReply(fbb, payload, request.tag());
  }

  int calls() const { return calls_.load(); }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  Hook hook_;
  std::atomic<int> calls_{0};
  std::mutex mu_;
  std::vector<Seen> seen_;
};

// Builds an EchoRequest with `payload` and `tag`.
auto EchoOf(std::string payload, uint64_t tag) {
  return
      [payload = std::move(payload), tag](flatbuffers::FlatBufferBuilder& fbb) {
        return natsgw::echo::CreateEchoRequest(
            fbb,
            fbb.CreateVector(reinterpret_cast<const uint8_t*>(payload.data()),
                             payload.size()),
            tag);
      };
}

std::string PayloadOf(const EchoReply& reply) {
  if (reply.payload() == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(reply.payload()->data()),
                     reply.payload()->size());
}

class TypedRpcTest : public GatewayTest {};

// ---------------------------------------------------------------------------
// Round trips.

TEST_F(TypedRpcTest, SyncCallRoundTripsWithTraceMessageIdAndHeaders) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  ASSERT_NE(server_conn, nullptr);
  ASSERT_NE(client_conn, nullptr);
  TestEcho impl([](const EchoRequest&, ServerContext& ctx) {
    ctx.reply_headers().Add("Served-By", "test-echo");
    return absl::OkStatus();
  });
  auto service = impl.Start(*server_conn);
  ASSERT_TRUE(service.ok()) << service.status();
  auto client = EchoClient::Create(*client_conn);
  ASSERT_TRUE(client.ok()) << client.status();

  CallOptions options;
  options.timeout = absl::Seconds(5);
  options.headers.Add("X-Tenant", "acme");
  auto reply = client->Echo(EchoOf("hello", 7), options);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(PayloadOf(**reply), "hello");
  EXPECT_EQ((*reply)->tag(), 7u);
  // The caller learns the call's trace and message IDs ...
  EXPECT_TRUE(reply->call.trace.valid());
  EXPECT_EQ(reply->call.message_id.size(), 22u);
  EXPECT_EQ(reply->headers.Get("Served-By").value_or(""), "test-echo");
  // The reply continued the call's trace and says when it arrived.
  EXPECT_EQ(reply->reply_trace.TraceIdHex(), reply->call.trace.TraceIdHex());
  EXPECT_GE(reply->received_at, reply->call.sent_at);
  // ... and the handler saw the same ones, the caller's header and a budget.
  std::vector<Seen> seen = impl.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].trace_id, reply->call.trace.TraceIdHex());
  EXPECT_EQ(seen[0].message_id, reply->call.message_id);
  EXPECT_EQ(seen[0].tenant.value_or(""), "acme");
  EXPECT_GT(seen[0].remaining, absl::ZeroDuration());
  EXPECT_LE(seen[0].remaining, absl::Seconds(5));
}

TEST_F(TypedRpcTest, FutureAndCallbackFormsDeliverTheVerifiedReply) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  TestEcho impl;
  auto service = impl.Start(*server_conn);
  ASSERT_TRUE(service.ok()) << service.status();
  auto client = EchoClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());

  auto future = client->EchoAsync(EchoOf("future", 1));
  ASSERT_EQ(future.wait_for(absl::ToChronoNanoseconds(kWait)),
            std::future_status::ready);
  auto from_future = future.get();
  ASSERT_TRUE(from_future.ok()) << from_future.status();
  EXPECT_EQ(PayloadOf(**from_future), "future");

  std::promise<absl::StatusOr<Response<EchoReply>>> promise;
  auto got = promise.get_future();
  client->EchoAsync(EchoOf("callback", 2),
                    [&promise](absl::StatusOr<Response<EchoReply>> r) {
                      promise.set_value(std::move(r));
                    });
  ASSERT_EQ(got.wait_for(absl::ToChronoNanoseconds(kWait)),
            std::future_status::ready);
  auto from_callback = got.get();
  ASSERT_TRUE(from_callback.ok()) << from_callback.status();
  EXPECT_EQ(PayloadOf(**from_callback), "callback");
  EXPECT_EQ((*from_callback)->tag(), 2u);
}

TEST_F(TypedRpcTest, ThousandAsyncCallsFanOutOnOneClient) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  TestEcho impl;
  TypedServiceOptions serve;
  serve.serve.workers = 4;
  serve.serve.max_in_flight = 2000;
  auto service = impl.Start(*server_conn, serve);
  ASSERT_TRUE(service.ok()) << service.status();
  auto client = EchoClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());

  constexpr int kCalls = 1000;
  Latch done(kCalls);
  std::mutex mu;
  std::vector<std::string> errors;
  std::set<std::string> message_ids;
  int wrong = 0;
  for (int i = 0; i < kCalls; ++i) {
    client->EchoAsync(
        EchoOf(absl::StrCat("payload-", i), static_cast<uint64_t>(i)),
        [&, i](absl::StatusOr<Response<EchoReply>> r) {
          {
            std::lock_guard<std::mutex> lock(mu);
            if (!r.ok()) {
              errors.push_back(r.status().ToString());
            } else {
              // Each reply matches its own call: tokens keep them apart.
              if ((*r)->tag() != static_cast<uint64_t>(i) ||
                  PayloadOf(**r) != absl::StrCat("payload-", i)) {
                ++wrong;
              }
              message_ids.insert(r->call.message_id.str());
            }
          }
          done.CountDown();
        });
  }
  ASSERT_TRUE(done.Wait()) << "not every call completed";
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_THAT(errors, ::testing::IsEmpty());
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(message_ids.size(), static_cast<size_t>(kCalls));
  EXPECT_EQ(impl.calls(), kCalls);
}

// ---------------------------------------------------------------------------
// Errors.

TEST_F(TypedRpcTest, HandlerStatusReachesTheCallerWithCodeMessageAndIds) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  TestEcho impl([](const EchoRequest& r, ServerContext&) {
    return absl::NotFoundError(absl::StrCat("no record tagged ", r.tag()));
  });
  auto service = impl.Start(*server_conn);
  ASSERT_TRUE(service.ok());
  auto client = EchoClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());
  auto reply = client->Echo(EchoOf("x", 99));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reply.status().message(), "no record tagged 99");
  // A handler error is final: NOT_FOUND is not retried, idempotent or not.
  EXPECT_EQ(impl.calls(), 1);
  std::vector<Seen> seen = impl.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(TraceIdFromStatus(reply.status()).value_or(""), seen[0].trace_id);
  EXPECT_EQ(MessageIdFromStatus(reply.status()).value_or(""),
            seen[0].message_id);
}

TEST_F(TypedRpcTest, NoRespondersIsUnavailableWithoutWaitingForTheDeadline) {
  auto client_conn = Connect();
  auto client = UsersClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());
  CallOptions options;
  options.timeout = absl::Seconds(60);
  const absl::Time start = absl::Now();
  auto reply = client->RegisterUser(
      [](flatbuffers::FlatBufferBuilder& fbb) {
        return natsgw::users::CreateRegisterUserRequestDirect(fbb, "a@b.c");
      },
      options);
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("no responders"));
  // Not the 60 s deadline (a generous bound, not a latency check).
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

TEST_F(TypedRpcTest, MalformedRequestIsInvalidArgumentAndNeverReachesHandler) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  TestEcho impl;
  auto service = impl.Start(*server_conn);
  ASSERT_TRUE(service.ok());

  // Raw bytes through the untyped gateway: garbage, a valid buffer of
  // another contract (wrong identifier), and a truncated valid request.
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(natsgw::echo::CreateEchoRequest(
                 fbb, fbb.CreateVector(std::vector<uint8_t>(100, 7)), 1),
             "NGEC");
  const std::string valid(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                          fbb.GetSize());
  flatbuffers::FlatBufferBuilder other;
  other.Finish(natsgw::echo::CreateEchoRequest(other), "NGUS");
  const std::string wrong_id(
      reinterpret_cast<const char*>(other.GetBufferPointer()), other.GetSize());
  struct Case {
    std::string bytes;
    const char* rule;
  };
  for (const Case& c : {Case{std::string("\xff\xff\xff\x7f garbage", 12), ""},
                        Case{wrong_id, "file identifier"},
                        Case{valid.substr(0, valid.size() - 40), "malformed"},
                        Case{"", "malformed"}}) {
    auto reply = client_conn->Request("echo.Echo", c.bytes, absl::Seconds(5));
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument)
        << reply.status();
    EXPECT_THAT(reply.status().message(),
                HasSubstr("request of natsgw.echo.Echo.Echo is not a valid "
                          "natsgw.echo.EchoRequest"));
    EXPECT_THAT(reply.status().message(), HasSubstr(c.rule));
  }
  EXPECT_EQ(impl.calls(), 0);
  // The endpoint keeps serving well-formed requests.
  auto client = EchoClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());
  EXPECT_TRUE(client->Echo(EchoOf("ok", 1)).ok());
}

TEST_F(TypedRpcTest, MalformedReplyIsInvalidArgumentAtTheCaller) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  // An untyped endpoint that answers with bytes that are no EchoReply.
  auto endpoint = server_conn->Serve(
      "echo.Echo", "q", [](const Message&) -> absl::StatusOr<Reply> {
        return Reply{std::string("definitely not a flatbuffer"), {}};
      });
  ASSERT_TRUE(endpoint.ok());
  auto client = EchoClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());
  auto reply = client->Echo(EchoOf("x", 1));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reply.status().message(),
              HasSubstr("reply of natsgw.echo.Echo.Echo is not a valid "
                        "natsgw.echo.EchoReply"));
  EXPECT_TRUE(TraceIdFromStatus(reply.status()).has_value());
}

// ---------------------------------------------------------------------------
// Deadlines.

TEST_F(TypedRpcTest, SlowHandlerIsDeadlineExceededAtTheCaller) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  Gate gate;
  TestEcho impl([&gate](const EchoRequest&, ServerContext&) {
    gate.Wait();
    return absl::OkStatus();
  });
  auto service = impl.Start(*server_conn);
  ASSERT_TRUE(service.ok());
  auto client = EchoClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());
  CallOptions options;
  options.timeout = absl::Milliseconds(200);
  auto reply = client->Echo(EchoOf("slow", 1), options);
  gate.Open();
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded)
      << reply.status();
}

TEST_F(TypedRpcTest, RequestThatExpiredWhileQueuedIsSkippedAndCounted) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  Gate gate;
  std::atomic<bool> first{true};
  TestEcho impl([&](const EchoRequest&, ServerContext&) {
    if (first.exchange(false)) gate.Wait();
    return absl::OkStatus();
  });
  // A one-worker pool: the delivery thread takes each request on arrival
  // and stamps it, so the time the second one waits behind the first counts
  // against its budget (natsgw/serve_options.h).
  TypedServiceOptions pool;
  pool.serve.workers = 1;
  auto service = impl.Start(*server_conn, pool);
  ASSERT_TRUE(service.ok());
  auto client = EchoClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());

  CallOptions slow;
  slow.timeout = absl::Seconds(20);
  auto blocked = client->EchoAsync(EchoOf("first", 1), slow);
  // Wait until the first request is inside the handler.
  for (int i = 0; i < 2000 && impl.calls() == 0; ++i)
    absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(impl.calls(), 1);

  CallOptions short_budget;
  short_budget.timeout = absl::Milliseconds(100);
  short_budget.retry = RetryPolicy{};  // one attempt: the point is expiry
  auto expired = client->Echo(EchoOf("second", 2), short_budget);
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kDeadlineExceeded);
  // The server's deadline is its receive time plus the budget left at
  // sending, so it trails the caller's by the request's transit time: let
  // that pass before the worker may pick the request up.
  absl::SleepFor(absl::Milliseconds(500));
  gate.Open();
  ASSERT_EQ(blocked.wait_for(absl::ToChronoNanoseconds(kWait)),
            std::future_status::ready);
  EXPECT_TRUE(blocked.get().ok());

  // The server skipped the second request instead of running it late.
  absl::Time until = absl::Now() + kWait;
  while ((*service)->stats()[0].expired == 0 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ((*service)->stats()[0].expired, 1);
  EXPECT_EQ(impl.calls(), 1);
  EXPECT_THAT(
      Scrape(),
      HasSubstr("natsgw_server_expired_total{subject=\"echo.Echo\"} 1"));
}

// Users.RegisterUser calls Echo from inside its handler, with no explicit
// trace or timeout: the nested call continues the trace and is capped by
// the remaining budget of the outer request.
class NestedUsers : public UsersServiceBase {
 public:
  explicit NestedUsers(EchoClient echo) : echo_(std::move(echo)) {}

  absl::StatusOr<flatbuffers::Offset<RegisterUserReply>> RegisterUser(
      const RegisterUserRequest& request, ServerContext& ctx) override {
    outer_trace = ctx.trace().TraceIdHex();
    outer_remaining = ctx.remaining();
    CallOptions options;
    options.timeout = absl::Seconds(60);  // capped by the outer budget
    auto inner = echo_.Echo(EchoOf(request.email()->str(), 5), options);
    inner_status = inner.status();
    if (!inner.ok()) return inner.status();
    return natsgw::users::CreateRegisterUserReplyDirect(
        ctx.builder(), PayloadOf(**inner).c_str(), 1);
  }

  std::string outer_trace;
  absl::Duration outer_remaining;
  absl::Status inner_status;

 private:
  EchoClient echo_;
};

TEST_F(TypedRpcTest, NestedCallInheritsTraceAndRemainingBudget) {
  auto echo_conn = Connect();
  auto users_conn = Connect();
  auto client_conn = Connect();
  TestEcho echo;
  auto echo_service = echo.Start(*echo_conn);
  ASSERT_TRUE(echo_service.ok());
  auto echo_client = EchoClient::Create(*users_conn);
  ASSERT_TRUE(echo_client.ok());
  NestedUsers users(*echo_client);
  auto users_service = users.Start(*users_conn);
  ASSERT_TRUE(users_service.ok());
  auto client = UsersClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());

  CallOptions options;
  options.timeout = absl::Seconds(3);
  auto reply = client->RegisterUser(
      [](flatbuffers::FlatBufferBuilder& fbb) {
        return natsgw::users::CreateRegisterUserRequestDirect(fbb, "n@x.io");
      },
      options);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ((*reply)->user_id()->str(), "n@x.io");
  std::vector<Seen> seen = echo.seen();
  ASSERT_EQ(seen.size(), 1u);
  // One trace across client -> users -> echo.
  EXPECT_EQ(users.outer_trace, reply->call.trace.TraceIdHex());
  EXPECT_EQ(seen[0].trace_id, reply->call.trace.TraceIdHex());
  // The nested call asked for 60 s but carried at most the outer budget.
  EXPECT_LE(seen[0].remaining, users.outer_remaining);
  EXPECT_LE(seen[0].remaining, absl::Seconds(3));
  EXPECT_GT(seen[0].remaining, absl::ZeroDuration());
}

TEST_F(TypedRpcTest, NestedCallExpiresWithTheOuterDeadline) {
  auto echo_conn = Connect();
  auto users_conn = Connect();
  auto client_conn = Connect();
  Gate gate;
  TestEcho echo([&gate](const EchoRequest&, ServerContext&) {
    gate.Wait();
    return absl::OkStatus();
  });
  TypedServiceOptions pool;
  pool.serve.workers = 2;
  auto echo_service = echo.Start(*echo_conn, pool);
  ASSERT_TRUE(echo_service.ok());
  auto echo_client = EchoClient::Create(*users_conn);
  ASSERT_TRUE(echo_client.ok());
  NestedUsers users(*echo_client);
  auto users_service = users.Start(*users_conn);
  ASSERT_TRUE(users_service.ok());
  auto client = UsersClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());

  CallOptions options;
  options.timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  auto reply = client->RegisterUser(
      [](flatbuffers::FlatBufferBuilder& fbb) {
        return natsgw::users::CreateRegisterUserRequestDirect(fbb, "d@x.io");
      },
      options);
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded);
  // The inner call did not wait its own 60 s: it ended with the outer budget
  // (the handler has returned by the time the users endpoint replies or, at
  // the latest, shortly after; wait for it, bounded).
  absl::Time until = absl::Now() + kWait;
  while ((*users_service)->stats()[0].num_requests == 0 &&
         absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(users.inner_status.code(), absl::StatusCode::kDeadlineExceeded)
      << users.inner_status;
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  gate.Open();
}

// ---------------------------------------------------------------------------
// Load shedding.

TEST_F(TypedRpcTest, FloodIsShedWithResourceExhaustedAndCounted) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  Gate gate;
  TestEcho impl([&gate](const EchoRequest&, ServerContext&) {
    gate.Wait();
    return absl::OkStatus();
  });
  TypedServiceOptions options;
  options.serve.workers = 1;
  options.serve.max_in_flight = 2;
  auto service = impl.Start(*server_conn, options);
  ASSERT_TRUE(service.ok());
  auto client = EchoClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());

  constexpr int kFlood = 30;
  CallOptions call;
  call.timeout = absl::Seconds(15);
  call.retry = RetryPolicy{};  // see every shed reply, no retries
  std::mutex mu;
  int shed = 0, ok = 0, other = 0;
  Latch shed_seen(kFlood - 2);
  Latch all(kFlood);
  for (int i = 0; i < kFlood; ++i) {
    client->EchoAsync(
        EchoOf("flood", static_cast<uint64_t>(i)),
        [&](absl::StatusOr<Response<EchoReply>> r) {
          {
            std::lock_guard<std::mutex> lock(mu);
            if (r.ok()) {
              ++ok;
            } else if (r.status().code() ==
                       absl::StatusCode::kResourceExhausted) {
              ++shed;
            } else {
              ++other;
            }
          }
          if (!r.ok()) shed_seen.CountDown();
          all.CountDown();
        },
        call);
  }
  // Two fit (one running, one queued); the rest are answered at once,
  // while the handler is still blocked.
  ASSERT_TRUE(shed_seen.Wait());
  EXPECT_FALSE(gate.is_open());
  gate.Open();
  ASSERT_TRUE(all.Wait());
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(shed, kFlood - 2);
  EXPECT_EQ(other, 0);
  EXPECT_EQ((*service)->stats()[0].shed, kFlood - 2);
  EXPECT_THAT(Scrape(), HasSubstr(absl::StrCat(
                            "natsgw_server_shed_total{subject=\"echo.Echo\"} ",
                            kFlood - 2)));
}

// ---------------------------------------------------------------------------
// Retries and hedging.

TEST_F(TypedRpcTest, IdempotentMethodIsRetriedWithTheSameMessageId) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  std::atomic<int> failures_left{2};
  TestEcho impl([&](const EchoRequest&, ServerContext&) {
    if (failures_left.fetch_sub(1) > 0) {
      return absl::UnavailableError("warming up");
    }
    return absl::OkStatus();
  });
  auto service = impl.Start(*server_conn);
  ASSERT_TRUE(service.ok());
  ClientOptions options;
  options.retry.max_attempts = 3;
  options.retry.initial_backoff = absl::Milliseconds(5);
  auto client = EchoClient::Create(*client_conn, options);
  ASSERT_TRUE(client.ok());
  auto reply = client->Echo(EchoOf("again", 3));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(impl.calls(), 3);
  std::vector<Seen> seen = impl.seen();
  ASSERT_EQ(seen.size(), 3u);
  for (const Seen& s : seen) {
    // One call: one message ID (servers may de-duplicate on it), one trace.
    EXPECT_EQ(s.message_id, reply->call.message_id);
    EXPECT_EQ(s.trace_id, reply->call.trace.TraceIdHex());
  }
  EXPECT_THAT(
      Scrape(),
      HasSubstr("natsgw_client_retries_total{subject=\"echo.Echo\"} 2"));
}

class FlakyUsers : public UsersServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<RegisterUserReply>> RegisterUser(
      const RegisterUserRequest&, ServerContext&) override {
    calls.fetch_add(1);
    return absl::UnavailableError("database briefly away");
  }
  std::atomic<int> calls{0};
};

TEST_F(TypedRpcTest, NonIdempotentMethodIsNotRetried) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  FlakyUsers impl;
  auto service = impl.Start(*server_conn);
  ASSERT_TRUE(service.ok());
  ClientOptions options;
  options.retry.max_attempts = 5;
  auto client = UsersClient::Create(*client_conn, options);
  ASSERT_TRUE(client.ok());
  auto reply = client->RegisterUser([](flatbuffers::FlatBufferBuilder& fbb) {
    return natsgw::users::CreateRegisterUserRequestDirect(fbb, "once@x.io");
  });
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable);
  // RegisterUser is not (idempotent) in users.fbs: registering twice is not
  // registering once, so the client must not repeat it on its own.
  EXPECT_EQ(impl.calls.load(), 1);

  // A caller that vouches for a repeat (e.g. deterministic message IDs the
  // server de-duplicates on) may opt in per call.
  CallOptions opt_in;
  opt_in.retry =
      RetryPolicy{.max_attempts = 2, .initial_backoff = absl::Milliseconds(1)};
  auto retried = client->RegisterUser(
      [](flatbuffers::FlatBufferBuilder& fbb) {
        return natsgw::users::CreateRegisterUserRequestDirect(fbb,
                                                              "twice@x.io");
      },
      opt_in);
  EXPECT_EQ(retried.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(impl.calls.load(), 3);
}

TEST_F(TypedRpcTest, HedgedCallTakesTheFirstReply) {
  auto server_a = Connect();
  auto server_b = Connect();
  auto client_conn = Connect();
  // Two instances in queue group "q". The first copy of each call blocks
  // (wherever it lands) until the gate opens; any later copy answers at
  // once, so only a hedge can complete the call while the gate is shut.
  Gate gate;
  std::mutex mu;
  std::set<std::string> started;
  auto hook = [&](const EchoRequest&, ServerContext& ctx) {
    bool first;
    {
      std::lock_guard<std::mutex> lock(mu);
      first = started.insert(std::string(ctx.message_id())).second;
    }
    if (first) gate.Wait();
    return absl::OkStatus();
  };
  TestEcho a(hook), b(hook);
  TypedServiceOptions pool;
  pool.serve.workers = 2;  // a hedge landing on the blocked instance still runs
  auto service_a = a.Start(*server_a, pool);
  auto service_b = b.Start(*server_b, pool);
  ASSERT_TRUE(service_a.ok());
  ASSERT_TRUE(service_b.ok());

  ClientOptions options;
  options.hedging.delay = absl::Milliseconds(20);
  auto client = EchoClient::Create(*client_conn, options);
  ASSERT_TRUE(client.ok());
  CallOptions call;
  call.timeout = absl::Seconds(10);
  auto reply = client->Echo(EchoOf("hedged", 4), call);
  const bool gate_was_shut = !gate.is_open();
  gate.Open();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(gate_was_shut);
  EXPECT_EQ((*reply)->tag(), 4u);
  EXPECT_EQ(a.calls() + b.calls(), 2);
  EXPECT_THAT(Scrape(),
              HasSubstr("natsgw_client_hedges_total{subject=\"echo.Echo\"} 1"));
}

// ---------------------------------------------------------------------------
// Interceptors.

class TenantHeader : public ClientInterceptor {
 public:
  absl::Status OnStart(const ClientCallInfo& call, Headers& headers) override {
    headers.Set("X-Tenant", "acme");
    return absl::OkStatus();
  }
  void OnFinish(const ClientCallInfo& call,
                const ClientCallResult& result) override {
    std::lock_guard<std::mutex> lock(mu);
    finished.push_back(result.status.code());
    subjects.push_back(call.subject);
  }
  std::mutex mu;
  std::vector<absl::StatusCode> finished;
  std::vector<std::string> subjects;
};

class RequireTenant : public ServerInterceptor {
 public:
  absl::Status OnStart(ServerContext& ctx) override {
    if (ctx.metadata("X-Tenant").value_or("") != "acme") {
      return absl::PermissionDeniedError("tenant header missing");
    }
    return absl::OkStatus();
  }
  void OnFinish(const ServerContext& ctx, const absl::Status& status,
                absl::Duration duration) override {
    finished.fetch_add(1);
  }
  std::atomic<int> finished{0};
};

TEST_F(TypedRpcTest, ClientAndServerInterceptorsCompose) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  TestEcho impl;
  auto require = std::make_shared<RequireTenant>();
  TypedServiceOptions serve;
  serve.interceptors.push_back(require);
  auto service = impl.Start(*server_conn, serve);
  ASSERT_TRUE(service.ok());

  // Without the client interceptor the server interceptor rejects the call
  // before the handler.
  auto bare = EchoClient::Create(*client_conn);
  ASSERT_TRUE(bare.ok());
  auto rejected = bare->Echo(EchoOf("x", 1));
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(impl.calls(), 0);

  auto tenant = std::make_shared<TenantHeader>();
  ClientOptions options;
  options.interceptors.push_back(tenant);
  auto client = EchoClient::Create(*client_conn, options);
  ASSERT_TRUE(client.ok());
  auto reply = client->Echo(EchoOf("y", 2));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(impl.calls(), 1);
  EXPECT_EQ(impl.seen()[0].tenant.value_or(""), "acme");
  // OnFinish runs only for calls whose OnStart succeeded: the accepted one.
  EXPECT_EQ(require->finished.load(), 1);
  std::lock_guard<std::mutex> lock(tenant->mu);
  EXPECT_THAT(tenant->finished, ::testing::ElementsAre(absl::StatusCode::kOk));
  EXPECT_THAT(tenant->subjects, ::testing::ElementsAre("echo.Echo"));
}

// ---------------------------------------------------------------------------
// Subjects and discovery.

TEST_F(TypedRpcTest, SubjectPrefixOverrideSeparatesTenants) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  TestEcho impl;
  TypedServiceOptions serve;
  serve.subject_prefix = "acme.echo";
  auto service = impl.Start(*server_conn, serve);
  ASSERT_TRUE(service.ok());

  ClientOptions acme;
  acme.subject_prefix = "acme.echo";
  auto tenant_client = EchoClient::Create(*client_conn, acme);
  ASSERT_TRUE(tenant_client.ok());
  EXPECT_EQ(tenant_client->channel().Subject(EchoClient::Methods::kEcho),
            "acme.echo.Echo");
  EXPECT_TRUE(tenant_client->Echo(EchoOf("t", 1)).ok());

  // The default subject is not served.
  auto default_client = EchoClient::Create(*client_conn);
  ASSERT_TRUE(default_client.ok());
  CallOptions once;
  once.retry = RetryPolicy{};
  EXPECT_EQ(default_client->Echo(EchoOf("t", 1), once).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(TypedRpcTest, ServicesApiDescribesTheTypedEndpoints) {
  auto server_conn = Connect();
  auto client_conn = Connect();
  TestEcho impl;
  TypedServiceOptions serve;
  serve.version = "1.2.3";
  auto service = impl.Start(*server_conn, serve);
  ASSERT_TRUE(service.ok());
  auto client = EchoClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(client->Echo(EchoOf("s", 1)).ok());

  auto info = client_conn->Request("$SRV.INFO.echo", "", absl::Seconds(5));
  ASSERT_TRUE(info.ok()) << info.status();
  nlohmann::json doc = nlohmann::json::parse(info->data);
  EXPECT_EQ(doc["type"], "io.nats.micro.v1.info_response");
  EXPECT_EQ(doc["name"], "echo");
  EXPECT_EQ(doc["version"], "1.2.3");
  EXPECT_EQ(doc["metadata"]["fbs.service"], "natsgw.echo.Echo");
  ASSERT_EQ(doc["endpoints"].size(), 1u);
  const nlohmann::json& endpoint = doc["endpoints"][0];
  EXPECT_EQ(endpoint["name"], "Echo");
  EXPECT_EQ(endpoint["subject"], "echo.Echo");
  EXPECT_EQ(endpoint["queue_group"], "q");
  EXPECT_EQ(endpoint["metadata"]["fbs.request_type"],
            "natsgw.echo.EchoRequest");
  EXPECT_EQ(endpoint["metadata"]["fbs.response_type"], "natsgw.echo.EchoReply");
  EXPECT_EQ(endpoint["metadata"]["fbs.file_identifier"], "NGEC");
  EXPECT_EQ(endpoint["metadata"]["fbs.schema"], "echo.fbs");

  auto stats = client_conn->Request(
      absl::StrCat("$SRV.STATS.echo.", (*service)->id()), "", absl::Seconds(5));
  ASSERT_TRUE(stats.ok()) << stats.status();
  nlohmann::json s = nlohmann::json::parse(stats->data);
  ASSERT_EQ(s["endpoints"].size(), 1u);
  EXPECT_EQ(s["endpoints"][0]["num_requests"], 3);
  EXPECT_EQ(s["endpoints"][0]["num_errors"], 0);
  EXPECT_GT(s["endpoints"][0]["data"]["p50_ns"].get<int64_t>(), 0);
}

}  // namespace
}  // namespace natsgw
