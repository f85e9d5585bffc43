// The request multiplexer against a real nats-server: many requests in flight
// on one connection, microsecond deadlines, retries and hedging, early
// PERMISSION_DENIED and UNAVAILABLE, worker pools with load shedding, and
// expired requests skipped by the server.
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gateway_test_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/nats_server_fixture.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/service_error.h"
#include "natsgw/subscription.h"

namespace natsgw {
namespace {

using ::natsgw::testing::Gate;
using ::natsgw::testing::GatewayTest;
using ::natsgw::testing::Latch;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(20);

// Gathers the outcomes of asynchronous calls for the test thread.
class Results {
 public:
  Connection::ReplyCallback Callback(int index) {
    return [this, index](absl::StatusOr<Message> reply) {
      std::lock_guard<std::mutex> lock(mu_);
      results_.emplace_back(index, std::move(reply));
      cv_.notify_all();
    };
  }
  bool WaitFor(size_t n, absl::Duration timeout = kWait) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [&] { return results_.size() >= n; });
  }
  std::vector<std::pair<int, absl::StatusOr<Message>>> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::move(results_);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<int, absl::StatusOr<Message>>> results_
      ABSL_GUARDED_BY(mu_);
};

class RequestAsyncTest : public GatewayTest {};

RequestHandler Echo() {
  return [](const Message& m) -> absl::StatusOr<Reply> {
    return Reply{m.data, {}};
  };
}

// Holds every request until `gate` opens (counting it into `handling` first,
// if given), then answers with an empty reply.
RequestHandler HeldUntil(Gate& gate, Latch* handling = nullptr) {
  return [&gate, handling](const Message&) -> absl::StatusOr<Reply> {
    if (handling != nullptr) handling->CountDown();
    gate.Wait();
    return Reply{"", {}};
  };
}

TEST_F(RequestAsyncTest, ThousandCallsInFlightOnOneConnection) {
  auto server_conn = Connect();
  auto client = Connect();
  ASSERT_NE(server_conn, nullptr);
  ASSERT_NE(client, nullptr);
  ServeOptions serve;
  serve.workers = 4;
  serve.max_in_flight = 2000;
  auto endpoint = server_conn->Serve("echo.Echo", "q", Echo(), serve);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();

  constexpr int kCalls = 1000;
  Results results;
  std::vector<SendInfo> sent(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    absl::StatusOr<SendInfo> info =
        client->RequestAsync("echo.Echo", absl::StrCat(i), absl::Seconds(20),
                             {}, results.Callback(i));
    ASSERT_TRUE(info.ok()) << info.status();
    sent[i] = *info;
  }
  ASSERT_TRUE(results.WaitFor(kCalls));
  std::set<int> seen;
  for (auto& [index, reply] : results.Take()) {
    ASSERT_TRUE(reply.ok()) << reply.status();
    // Each reply reached its own call: the token matched it up.
    EXPECT_EQ(reply->data, absl::StrCat(index));
    EXPECT_EQ(reply->trace.TraceIdHex(), sent[index].trace.TraceIdHex());
    seen.insert(index);
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kCalls));
  EXPECT_EQ((*endpoint)->stats().num_requests, kCalls);
  EXPECT_EQ((*endpoint)->stats().num_errors, 0);
}

TEST_F(RequestAsyncTest, SendInfoNamesTheCallAndTheServerSeesIt) {
  auto conn = Connect();
  std::string seen_id, seen_trace;
  auto endpoint = conn->Serve("ids.Get", "q",
                              [&](const Message& m) -> absl::StatusOr<Reply> {
                                seen_id = m.message_id;
                                seen_trace = m.trace.TraceIdHex();
                                return Reply{"ok", {}};
                              });
  ASSERT_TRUE(endpoint.ok());
  Results results;
  absl::StatusOr<SendInfo> info = conn->RequestAsync(
      "ids.Get", "", absl::Seconds(5), {}, results.Callback(0));
  ASSERT_TRUE(info.ok());
  ASSERT_TRUE(results.WaitFor(1));
  ASSERT_TRUE(results.Take()[0].second.ok());
  EXPECT_EQ(seen_id, info->message_id);
  EXPECT_EQ(seen_trace, info->trace.TraceIdHex());
}

TEST_F(RequestAsyncTest, NoRespondersIsUnavailableAtOnce) {
  auto conn = Connect();
  Results results;
  ASSERT_TRUE(conn->RequestAsync("nobody.Home", "x", absl::Seconds(30), {},
                                 results.Callback(0))
                  .ok());
  // Far below the 30 s deadline: the server's no-responders status.
  ASSERT_TRUE(results.WaitFor(1, absl::Seconds(10)));
  absl::Status status = results.Take()[0].second.status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr("no responders"));
  EXPECT_TRUE(TraceIdFromStatus(status).has_value());
}

TEST_F(RequestAsyncTest, DeadlineIsEnforcedBelowAMillisecondGranularity) {
  auto conn = Connect();
  Gate gate;
  auto endpoint =
      conn->Serve("slow.Op", "q", [&](const Message&) -> absl::StatusOr<Reply> {
        gate.Wait();
        return Reply{"late", {}};
      });
  ASSERT_TRUE(endpoint.ok());
  absl::StatusOr<Message> reply =
      conn->Request("slow.Op", "", absl::Microseconds(30500));
  gate.Open();
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(reply.status().message(), HasSubstr("30.5ms"));
}

TEST_F(RequestAsyncTest, BadArgumentsAreRejectedAndNothingIsCalledBack) {
  auto conn = Connect();
  int called = 0;
  auto count = [&called](absl::StatusOr<Message>) { ++called; };
  EXPECT_EQ(conn->RequestAsync("bad subject", "", absl::Seconds(1), {}, count)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(conn->RequestAsync("a.b", "", absl::ZeroDuration(), {}, count)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  RequestOptions bad_retry;
  bad_retry.retry.max_attempts = 0;
  absl::Status s =
      conn->RequestAsync("a.b", "", absl::Seconds(1), bad_retry, count)
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("max_attempts"));
  EXPECT_EQ(conn->RequestAsync("a.b", "", absl::Seconds(1), {}, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(called, 0);
}

TEST_F(RequestAsyncTest, PendingCallsEndUnavailableOnClose) {
  auto server_conn = Connect();
  auto client = Connect();
  Gate gate;
  auto endpoint = server_conn->Serve("slow.Op", "q", HeldUntil(gate));
  ASSERT_TRUE(endpoint.ok());
  Results results;
  ASSERT_TRUE(client
                  ->RequestAsync("slow.Op", "", absl::Seconds(30), {},
                                 results.Callback(0))
                  .ok());
  client->Close();
  ASSERT_TRUE(results.WaitFor(1, absl::Seconds(5)));
  EXPECT_EQ(results.Take()[0].second.status().code(),
            absl::StatusCode::kUnavailable);
  gate.Open();
}

TEST_F(RequestAsyncTest, PendingCallsEndUnavailableWhenTheServerGoesAway) {
  auto server_conn = Connect();
  auto client = Connect();
  Gate gate;
  auto endpoint = server_conn->Serve("slow.Op", "q", HeldUntil(gate));
  ASSERT_TRUE(endpoint.ok());
  Results results;
  ASSERT_TRUE(client
                  ->RequestAsync("slow.Op", "", absl::Seconds(60), {},
                                 results.Callback(0))
                  .ok());
  ASSERT_TRUE(server().Kill().ok());
  ASSERT_TRUE(results.WaitFor(1, absl::Seconds(30)));
  absl::Status status = results.Take()[0].second.status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  gate.Open();
}

// ---------------------------------------------------------------------------
// Blocking callers reading their own replies (the direct inbox).

TEST_F(RequestAsyncTest, BlockingCallersAndCallbacksShareTheConnection) {
  auto server_conn = Connect();
  auto client = Connect();
  auto endpoint = server_conn->Serve("echo.Op", "q", Echo());
  ASSERT_TRUE(endpoint.ok());
  constexpr int kAsync = 200;
  Results results;
  std::atomic<int> blocking_ok{0};
  std::vector<std::thread> threads;
  // One caller at a time reads its own replies; the others and every
  // callback are served through the shared inbox at the same time.
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const std::string body = absl::StrCat("blocking-", t, "-", i);
        absl::StatusOr<Message> r =
            client->Request("echo.Op", body, absl::Seconds(10));
        if (r.ok() && r->data == body) ++blocking_ok;
      }
    });
  }
  for (int i = 0; i < kAsync; ++i) {
    ASSERT_TRUE(client
                    ->RequestAsync("echo.Op", absl::StrCat("async-", i),
                                   absl::Seconds(10), {}, results.Callback(i))
                    .ok());
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE(results.WaitFor(kAsync));
  int async_ok = 0;
  for (auto& [i, reply] : results.Take()) {
    if (reply.ok() && reply->data == absl::StrCat("async-", i)) ++async_ok;
  }
  EXPECT_EQ(blocking_ok.load(), 200);
  EXPECT_EQ(async_ok, kAsync);
}

TEST_F(RequestAsyncTest, LateReplyToATimedOutCallIsNotTakenForTheNext) {
  auto server_conn = Connect();
  auto client = Connect();
  Gate gate;
  auto endpoint = server_conn->Serve(
      "gated.Op", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        if (m.data == "first") gate.Wait();
        return Reply{m.data, {}};
      });
  ASSERT_TRUE(endpoint.ok());
  absl::StatusOr<Message> first =
      client->Request("gated.Op", "first", absl::Milliseconds(200));
  EXPECT_EQ(first.status().code(), absl::StatusCode::kDeadlineExceeded);
  gate.Open();  // its reply is sent now, after the caller gave up
  for (int i = 0; i < 3; ++i) {
    const std::string body = absl::StrCat("next-", i);
    absl::StatusOr<Message> next =
        client->Request("gated.Op", body, absl::Seconds(10));
    ASSERT_TRUE(next.ok()) << next.status();
    EXPECT_EQ(next->data, body);
  }
}

TEST_F(RequestAsyncTest, BlockingCallEndsUnavailableWhenClosedElsewhere) {
  auto server_conn = Connect();
  auto client = Connect();
  Gate gate;
  Latch handling(1);
  auto endpoint =
      server_conn->Serve("slow.Op", "q", HeldUntil(gate, &handling));
  ASSERT_TRUE(endpoint.ok());
  absl::StatusOr<Message> reply;
  std::thread caller(
      [&] { reply = client->Request("slow.Op", "", absl::Seconds(60)); });
  // Close once the request is out and the caller waits for it.
  ASSERT_TRUE(handling.Wait());
  client->Close();
  caller.join();  // well before the 60 s deadline
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable)
      << reply.status();
  gate.Open();
}

TEST_F(RequestAsyncTest, BlockingNoRespondersIsRetriedThenUnavailable) {
  auto conn = Connect();
  RequestOptions opts;
  opts.retry.max_attempts = 3;
  opts.retry.initial_backoff = absl::Milliseconds(1);
  absl::StatusOr<Message> reply =
      conn->Request("nobody.Op", "", absl::Seconds(30), opts);
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(reply.status().message(), HasSubstr("no responders"));
  EXPECT_THAT(reply.status().message(), HasSubstr("after 3 attempts"));
}

// ---------------------------------------------------------------------------
// Retries and hedging.

TEST_F(RequestAsyncTest, RetriesRetryableFailuresWithTheSameMessageId) {
  auto conn = Connect();
  std::mutex mu;
  std::vector<std::string> ids, spans, traces;
  auto endpoint = conn->Serve(
      "flaky.Op", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        std::lock_guard<std::mutex> lock(mu);
        ids.push_back(m.message_id);
        traces.push_back(m.trace.TraceIdHex());
        spans.push_back(std::string(m.headers.Get("traceparent").value_or("")));
        if (ids.size() < 3) return absl::UnavailableError("warming up");
        return Reply{"third time lucky", {}};
      });
  ASSERT_TRUE(endpoint.ok());
  RequestOptions opts;
  opts.retry.max_attempts = 4;
  opts.retry.initial_backoff = absl::Milliseconds(1);
  absl::StatusOr<Message> reply =
      conn->Request("flaky.Op", "", absl::Seconds(10), opts);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data, "third time lucky");
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_EQ(ids[1], ids[2]);
  EXPECT_EQ(traces[0], traces[2]);
  // Each attempt is a span of its own.
  EXPECT_NE(spans[0], spans[1]);
  EXPECT_NE(spans[1], spans[2]);
  EXPECT_THAT(Scrape(),
              HasSubstr("natsgw_client_retries_total{subject=\"flaky.Op\"} 2"));
}

TEST_F(RequestAsyncTest, WithoutARetryPolicyTheFirstFailureIsFinal) {
  auto conn = Connect();
  std::atomic<int> calls{0};
  auto endpoint = conn->Serve("flaky.Op", "q",
                              [&](const Message&) -> absl::StatusOr<Reply> {
                                ++calls;
                                return absl::UnavailableError("down");
                              });
  ASSERT_TRUE(endpoint.ok());
  absl::StatusOr<Message> reply =
      conn->Request("flaky.Op", "", absl::Seconds(5));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(RequestAsyncTest, NonRetryableCodesAreNotRetried) {
  auto conn = Connect();
  std::atomic<int> calls{0};
  auto endpoint = conn->Serve(
      "strict.Op", "q", [&](const Message&) -> absl::StatusOr<Reply> {
        ++calls;
        return absl::InvalidArgumentError("email is malformed");
      });
  ASSERT_TRUE(endpoint.ok());
  RequestOptions opts;
  opts.retry.max_attempts = 5;
  absl::StatusOr<Message> reply =
      conn->Request("strict.Op", "", absl::Seconds(5), opts);
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reply.status().message(), "email is malformed");
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(RequestAsyncTest, RetriesExhaustedReportTheLastErrorAndAttempts) {
  auto conn = Connect();
  std::atomic<int> calls{0};
  auto endpoint =
      conn->Serve("busy.Op", "q", [&](const Message&) -> absl::StatusOr<Reply> {
        ++calls;
        return absl::ResourceExhaustedError("busy");
      });
  ASSERT_TRUE(endpoint.ok());
  RequestOptions opts;
  opts.retry.max_attempts = 3;
  opts.retry.initial_backoff = absl::Milliseconds(1);
  absl::StatusOr<Message> reply =
      conn->Request("busy.Op", "", absl::Seconds(10), opts);
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(reply.status().message(), HasSubstr("after 3 attempts"));
  EXPECT_EQ(calls.load(), 3);
}

TEST_F(RequestAsyncTest, RetriesNeverRunPastTheDeadline) {
  auto conn = Connect();
  std::atomic<int> calls{0};
  auto endpoint =
      conn->Serve("busy.Op", "q", [&](const Message&) -> absl::StatusOr<Reply> {
        ++calls;
        return absl::UnavailableError("down");
      });
  ASSERT_TRUE(endpoint.ok());
  RequestOptions opts;
  opts.retry.max_attempts = 100;
  opts.retry.initial_backoff = absl::Milliseconds(40);
  opts.retry.max_backoff = absl::Milliseconds(40);
  opts.retry.jitter = 0;
  absl::StatusOr<Message> reply =
      conn->Request("busy.Op", "", absl::Milliseconds(100), opts);
  // The backoff that would cross the deadline ends the call with the last
  // error instead.
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LE(calls.load(), 3);
}

TEST_F(RequestAsyncTest, HedgedRequestTakesTheFirstReply) {
  auto conn = Connect();
  std::atomic<int> calls{0};
  Gate gate;
  std::mutex mu;
  std::vector<std::string> ids;
  ServeOptions serve;
  serve.workers = 2;
  auto endpoint = conn->Serve(
      "hedge.Op", "q",
      [&](const Message& m) -> absl::StatusOr<Reply> {
        {
          std::lock_guard<std::mutex> lock(mu);
          ids.push_back(m.message_id);
        }
        if (++calls == 1) {
          gate.Wait();  // the first copy is stuck
          return Reply{"slow", {}};
        }
        return Reply{"fast", {}};
      },
      serve);
  ASSERT_TRUE(endpoint.ok());
  RequestOptions opts;
  opts.hedging.delay = absl::Milliseconds(20);
  absl::StatusOr<Message> reply =
      conn->Request("hedge.Op", "", absl::Seconds(10), opts);
  gate.Open();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data, "fast");
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0], ids[1]);
  EXPECT_THAT(Scrape(),
              HasSubstr("natsgw_client_hedges_total{subject=\"hedge.Op\"} 1"));
}

// ---------------------------------------------------------------------------
// Permissions.

class PermissionTest : public RequestAsyncTest {
 protected:
  testing::NatsServerOptions ServerOptions() const override {
    testing::NatsServerOptions o;
    o.extra_config = R"(
authorization {
  users = [
    { user: limited, password: s3cret,
      permissions: { publish: { deny: ["forbidden.>"] } } }
    { user: noinbox, password: s3cret,
      permissions: { subscribe: { deny: ["_INBOX.>"] } } }
    { user: nosecret, password: s3cret,
      permissions: { subscribe: { deny: ["secret.>"] } } }
  ]
}
)";
    return o;
  }
  ConnectionOptions As(const std::string& user) {
    ConnectionOptions o = Options();
    o.servers = {
        absl::StrCat("nats://", user, ":s3cret@127.0.0.1:", server().port())};
    return o;
  }
};

TEST_F(PermissionTest, PublishDeniedIsPermissionDeniedWithoutWaiting) {
  auto conn = Connect(As("limited"));
  ASSERT_NE(conn, nullptr);
  const absl::Time start = absl::Now();
  absl::StatusOr<Message> reply =
      conn->Request("forbidden.Op", "x", absl::Seconds(60));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kPermissionDenied)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("forbidden.Op"));
  // Not the 60 s deadline (a generous bound; no tight timing here).
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  // The connection stays usable.
  EXPECT_EQ(conn->Request("allowed.Op", "x", absl::Seconds(5)).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(PermissionTest, ReplySubscriptionDeniedIsPermissionDenied) {
  auto conn = Connect(As("noinbox"));
  ASSERT_NE(conn, nullptr);
  absl::StatusOr<Message> reply =
      conn->Request("any.Op", "x", absl::Seconds(60));
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kPermissionDenied)
      << reply.status();
  EXPECT_THAT(reply.status().message(), HasSubstr("_INBOX"));
}

TEST_F(PermissionTest, SubscriptionDeniedFailsTheSubscribeCall) {
  auto conn = Connect(As("nosecret"));
  ASSERT_NE(conn, nullptr);
  auto denied = conn->Subscribe("secret.plans", "", [](const Message&) {});
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied)
      << denied.status();
  EXPECT_THAT(denied.status().message(), HasSubstr("'secret.plans'"));
  // Serving a denied subject fails the same way, queue group and all.
  auto serving = conn->Serve(
      "secret.Op", "q",
      [](const Message&) -> absl::StatusOr<Reply> { return Reply{}; });
  EXPECT_EQ(serving.status().code(), absl::StatusCode::kPermissionDenied)
      << serving.status();
  // The connection stays up, an allowed subscription works (its refused
  // neighbours' errors are not mistaken for its own), and the refusals are
  // counted.
  EXPECT_EQ(conn->state(), ConnectionState::kConnected);
  std::atomic<int> got{0};
  auto allowed = conn->Subscribe("public.news", "",
                                 [&](const Message&) { got.fetch_add(1); });
  ASSERT_TRUE(allowed.ok()) << allowed.status();
  ASSERT_TRUE(conn->Publish("public.news", "hi").ok());
  EXPECT_TRUE(testing::Eventually([&] { return got.load() == 1; }));
  const std::string metrics =
      prometheus::TextSerializer().Serialize(conn->registry()->Collect());
  EXPECT_THAT(metrics,
              HasSubstr("natsgw_errors_total{code=\"PERMISSION_DENIED\","
                        "operation=\"subscribe\"} 2"));
}

// ---------------------------------------------------------------------------
// Serving: worker pools, shedding, expiry, statistics.

TEST_F(RequestAsyncTest, FullWorkerPoolShedsWithResourceExhausted) {
  auto server_conn = Connect();
  auto client = Connect();
  Gate gate;
  std::atomic<int> handled{0};
  ServeOptions serve;
  serve.workers = 1;
  serve.max_in_flight = 2;
  auto endpoint = server_conn->Serve(
      "pool.Op", "q",
      [&](const Message&) -> absl::StatusOr<Reply> {
        gate.Wait();
        ++handled;
        return Reply{"done", {}};
      },
      serve);
  ASSERT_TRUE(endpoint.ok());
  constexpr int kCalls = 20;
  Results results;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_TRUE(client
                    ->RequestAsync("pool.Op", "", absl::Seconds(20), {},
                                   results.Callback(i))
                    .ok());
  }
  // The shed ones come back while the gate is still closed.
  ASSERT_TRUE(results.WaitFor(kCalls - 2));
  gate.Open();
  ASSERT_TRUE(results.WaitFor(kCalls));
  int ok = 0, shed = 0;
  for (auto& [i, reply] : results.Take()) {
    if (reply.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(reply.status().code(), absl::StatusCode::kResourceExhausted);
      EXPECT_THAT(reply.status().message(), HasSubstr("overloaded"));
      ++shed;
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(shed, kCalls - 2);
  EXPECT_EQ(handled.load(), 2);
  EndpointStats stats = (*endpoint)->stats();
  EXPECT_EQ(stats.shed, kCalls - 2);
  EXPECT_EQ(stats.num_requests, 2);
  EXPECT_THAT(stats.last_error, HasSubstr("429:"));
  EXPECT_THAT(Scrape(), HasSubstr(absl::StrCat(
                            "natsgw_server_shed_total{subject=\"pool.Op\"} ",
                            kCalls - 2)));
}

TEST_F(RequestAsyncTest, InlineEndpointShedsBeyondMaxInFlight) {
  auto server_conn = Connect();
  auto client = Connect();
  Gate gate;
  std::atomic<bool> first{true};
  ServeOptions serve;
  serve.max_in_flight = 1;
  auto endpoint = server_conn->Serve(
      "inline.Op", "q",
      [&](const Message&) -> absl::StatusOr<Reply> {
        if (first.exchange(false)) gate.Wait();
        return Reply{"done", {}};
      },
      serve);
  ASSERT_TRUE(endpoint.ok());
  Results results;
  ASSERT_TRUE(client
                  ->RequestAsync("inline.Op", "", absl::Seconds(20), {},
                                 results.Callback(0))
                  .ok());
  // Wait until the first request is in the handler, then queue more.
  for (int i = 0;
       i < 200 && (*endpoint)->stats().num_requests == 0 && first.load(); ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(client
                    ->RequestAsync("inline.Op", "", absl::Seconds(20), {},
                                   results.Callback(i))
                    .ok());
  }
  ASSERT_TRUE(client->Flush(absl::Seconds(5)).ok());
  absl::SleepFor(absl::Milliseconds(100));  // let them queue behind the first
  gate.Open();
  ASSERT_TRUE(results.WaitFor(6));
  int shed = 0;
  for (auto& [i, reply] : results.Take()) {
    if (!reply.ok()) {
      EXPECT_EQ(reply.status().code(), absl::StatusCode::kResourceExhausted);
      ++shed;
    }
  }
  // At least the requests that found others waiting ahead of them.
  EXPECT_GE(shed, 1);
  EXPECT_EQ((*endpoint)->stats().shed, shed);
}

TEST_F(RequestAsyncTest, RequestsExpiredInTheQueueAreSkippedAndCounted) {
  auto server_conn = Connect();
  auto client = Connect();
  Gate gate;
  std::atomic<int> handled{0};
  ServeOptions serve;
  serve.workers = 1;
  serve.max_in_flight = 10;
  auto endpoint = server_conn->Serve(
      "queue.Op", "q",
      [&](const Message& m) -> absl::StatusOr<Reply> {
        if (m.data == "blocker") gate.Wait();
        ++handled;
        return Reply{"done", {}};
      },
      serve);
  ASSERT_TRUE(endpoint.ok());
  Results results;
  ASSERT_TRUE(client
                  ->RequestAsync("queue.Op", "blocker", absl::Seconds(20), {},
                                 results.Callback(0))
                  .ok());
  ASSERT_TRUE(client
                  ->RequestAsync("queue.Op", "short", absl::Milliseconds(50),
                                 {}, results.Callback(1))
                  .ok());
  // The short call times out on the client while it waits in the queue.
  ASSERT_TRUE(results.WaitFor(1));
  // The server's deadline trails the client's by the request's transit
  // time (receive time + budget left at sending): let that pass too.
  absl::SleepFor(absl::Milliseconds(500));
  gate.Open();
  ASSERT_TRUE(results.WaitFor(2));
  for (auto& [i, reply] : results.Take()) {
    if (i == 1) {
      EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded);
    } else {
      EXPECT_TRUE(reply.ok()) << reply.status();
    }
  }
  // The server did not run the handler for the expired request.
  for (int i = 0; i < 200 && (*endpoint)->stats().expired == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ((*endpoint)->stats().expired, 1);
  EXPECT_EQ(handled.load(), 1);
  EXPECT_THAT(Scrape(),
              HasSubstr("natsgw_server_expired_total{subject=\"queue.Op\"} 1"));
}

TEST_F(RequestAsyncTest, NestedCallsInheritTheRemainingBudgetAndTrace) {
  auto conn = Connect();
  std::mutex mu;
  absl::Duration inner_budget;
  std::string inner_trace;
  auto inner = conn->Serve("inner.Op", "q",
                           [&](const Message& m) -> absl::StatusOr<Reply> {
                             std::lock_guard<std::mutex> lock(mu);
                             inner_budget = *m.deadline - m.received_at;
                             inner_trace = m.trace.TraceIdHex();
                             return Reply{"inner", {}};
                           });
  ServeOptions serve;
  serve.workers = 2;
  auto outer = conn->Serve(
      "outer.Op", "q",
      [&](const Message&) -> absl::StatusOr<Reply> {
        // Asks for 60 s but may only use what the outer caller has left.
        absl::StatusOr<Message> r =
            conn->Request("inner.Op", "", absl::Seconds(60));
        if (!r.ok()) return r.status();
        return Reply{r->data, {}};
      },
      serve);
  ASSERT_TRUE(inner.ok());
  ASSERT_TRUE(outer.ok());
  Results results;
  absl::StatusOr<SendInfo> sent = conn->RequestAsync(
      "outer.Op", "", absl::Milliseconds(800), {}, results.Callback(0));
  ASSERT_TRUE(sent.ok());
  ASSERT_TRUE(results.WaitFor(1));
  ASSERT_TRUE(results.Take()[0].second.ok());
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_LE(inner_budget, absl::Milliseconds(800));
  EXPECT_GT(inner_budget, absl::ZeroDuration());
  EXPECT_EQ(inner_trace, sent->trace.TraceIdHex());
}

}  // namespace
}  // namespace natsgw
