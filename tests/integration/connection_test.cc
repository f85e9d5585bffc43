// The untyped gateway core against a real nats-server: publish/subscribe,
// request/serve, errors, trace propagation, deadlines, and what reaches the
// wire (observed with a plain nats.c "wire tap").
#include "natsgw/connection.h"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway_test_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/nats_server_fixture.h"
#include "natsgw/message_id.h"
#include "natsgw/service_error.h"
#include "natsgw/status_macros.h"
#include "natsgw/wire_headers.h"
#include "notification.h"
#include "raw_nats_client.h"

namespace natsgw {
namespace {

using ::natsgw::testing::GatewayTest;
using ::natsgw::testing::RawMessage;
using ::natsgw::testing::RawNatsClient;
using ::testing::HasSubstr;
using ::testing::Optional;

constexpr absl::Duration kWait = absl::Seconds(10);

// Collects messages delivered to a handler, for assertions on the test thread.
class Inbox {
 public:
  MessageHandler Handler() {
    return [this](const Message& m) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        messages_.push_back(m);
      }
      cv_.notify_all();
    };
  }
  bool WaitFor(size_t n, absl::Duration timeout = kWait) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [this, n] { return messages_.size() >= n; });
  }
  std::vector<Message> messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Message> messages_ ABSL_GUARDED_BY(mu_);
};

class ConnectionTest : public GatewayTest {
 protected:
  std::unique_ptr<RawNatsClient> Raw() {
    auto raw = RawNatsClient::Connect(server().url());
    EXPECT_TRUE(raw.ok()) << raw.status();
    return raw.ok() ? *std::move(raw) : nullptr;
  }
};

// ---------------------------------------------------------------------------
// Connecting.

TEST_F(ConnectionTest, ConnectsReportsStateAndClosesIdempotently) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(conn->state(), ConnectionState::kConnected);
  EXPECT_THAT(conn->connected_url(), HasSubstr(absl::StrCat(server().port())));
  conn->Close();
  conn->Close();
  EXPECT_EQ(conn->state(), ConnectionState::kClosed);
  absl::StatusOr<SendInfo> sent = conn->Publish("a", "x");
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(conn->Request("a", "x", absl::Seconds(1)).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(ConnectionTest, UnreachableServerIsUnavailableNamingTheUrl) {
  const std::string url = server().url();
  ASSERT_TRUE(server().Kill().ok());
  ConnectionOptions options = Options();
  options.connect_timeout = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connection::Create(options);
  ASSERT_FALSE(conn.ok());
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(conn.status().message()), HasSubstr(url));
}

TEST_F(ConnectionTest, BadOptionsAreInvalidArgument) {
  ConnectionOptions options = Options();
  options.servers = {};
  EXPECT_EQ(Connection::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = Options();
  options.servers = {"nats://a:1,nats://b:2"};
  EXPECT_EQ(Connection::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = Options();
  options.ping_interval = absl::ZeroDuration();
  EXPECT_EQ(Connection::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Publish / Subscribe.

TEST_F(ConnectionTest, PublishCarriesTraceMessageIdTimestampAndHeaders) {
  auto conn = Connect();
  Inbox inbox;
  auto sub = conn->Subscribe("orders.*", "", inbox.Handler());
  ASSERT_TRUE(sub.ok()) << sub.status();

  PublishOptions opts;
  opts.headers.Add("Tenant", "acme");
  const absl::Time before = absl::Now();
  absl::StatusOr<SendInfo> sent =
      conn->Publish("orders.created", "payload", opts);
  ASSERT_TRUE(sent.ok()) << sent.status();
  ASSERT_TRUE(inbox.WaitFor(1));

  const Message m = inbox.messages()[0];
  EXPECT_EQ(m.subject, "orders.created");
  EXPECT_EQ(m.data, "payload");
  EXPECT_THAT(m.headers.Get("Tenant"), Optional(absl::string_view("acme")));
  EXPECT_EQ(m.trace, sent->trace);
  EXPECT_FALSE(m.trace_replaced);
  EXPECT_EQ(m.message_id, sent->message_id);
  EXPECT_EQ(m.message_id.size(), kMessageIdLength);
  ASSERT_TRUE(m.sent_at.has_value());
  EXPECT_GE(*m.sent_at, before - absl::Milliseconds(1));
  EXPECT_FALSE(m.deadline.has_value()) << "publishes carry no budget";
  EXPECT_EQ((*sub)->subject(), "orders.*");

  // Each publish gets its own ID and a new trace when there is no context.
  absl::StatusOr<SendInfo> second = conn->Publish("orders.created", "x");
  ASSERT_TRUE(second.ok());
  EXPECT_NE(second->message_id, sent->message_id);
  EXPECT_NE(second->trace.trace_id(), sent->trace.trace_id());

  const std::string text = Scrape();
  EXPECT_THAT(
      text,
      HasSubstr(
          "natsgw_messages_published_total{subject=\"orders.created\"} 2"));
  EXPECT_THAT(
      text, HasSubstr("natsgw_messages_received_total{subject=\"orders.*\"}"));
  EXPECT_THAT(text, HasSubstr("natsgw_publish_duration_seconds_count{subject="
                              "\"orders.created\"} 2"));
}

TEST_F(ConnectionTest, ExplicitTraceAndMessageIdAreUsed) {
  auto conn = Connect();
  auto raw = Raw();
  ASSERT_TRUE(raw->Tap("explicit").ok());
  const TraceContext root = TraceContext::NewRoot();
  PublishOptions opts;
  opts.trace = root;
  opts.message_id = "order-1234-created";
  absl::StatusOr<SendInfo> sent = conn->Publish("explicit", "x", opts);
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(sent->trace.trace_id(), root.trace_id());
  EXPECT_NE(sent->trace.span_id(), root.span_id()) << "a child span per send";
  ASSERT_TRUE(raw->WaitForCount(1, kWait));
  const RawMessage wire = raw->received()[0];
  // On the wire: the lower-case W3C header and the JetStream-compatible ID.
  ASSERT_EQ(wire.headers.count("traceparent"), 1u);
  EXPECT_EQ(wire.headers.find("traceparent")->second,
            sent->trace.ToTraceParent());
  EXPECT_EQ(wire.headers.find("Nats-Msg-Id")->second, "order-1234-created");
  EXPECT_EQ(wire.headers.count("Natsgw-Sent-At-Ns"), 1u);
}

TEST_F(ConnectionTest, QueueGroupDeliversEachMessageOnce) {
  auto conn = Connect();
  Inbox a, b;
  auto sa = conn->Subscribe("work", "workers", a.Handler());
  auto sb = conn->Subscribe("work", "workers", b.Handler());
  ASSERT_TRUE(sa.ok() && sb.ok());
  constexpr int kCount = 100;
  for (int i = 0; i < kCount; ++i) ASSERT_TRUE(conn->Publish("work", "x").ok());
  ASSERT_TRUE(conn->Flush(kWait).ok());
  absl::Time deadline = absl::Now() + kWait;
  while (a.messages().size() + b.messages().size() < kCount &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(a.messages().size() + b.messages().size(),
            static_cast<size_t>(kCount));
}

TEST_F(ConnectionTest, UnsubscribeStopsDeliveryAndWaitsForTheHandler) {
  auto conn = Connect();
  internal::Notification entered;
  internal::Notification release;
  std::atomic<int> calls{0};
  std::atomic<bool> handler_done{false};
  auto sub = conn->Subscribe("slow", "", [&](const Message&) {
    if (calls.fetch_add(1) == 0) {
      entered.Notify();
      release.Wait();
      absl::SleepFor(absl::Milliseconds(50));
      handler_done = true;
    }
  });
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(conn->Publish("slow", "1").ok());
  ASSERT_TRUE(entered.WaitFor(kWait));
  std::thread releaser([&] {
    absl::SleepFor(absl::Milliseconds(20));
    release.Notify();
  });
  ASSERT_TRUE((*sub)->Unsubscribe().ok());
  EXPECT_TRUE(handler_done) << "Unsubscribe returned while the handler ran";
  releaser.join();
  EXPECT_FALSE((*sub)->active());
  ASSERT_TRUE(conn->Publish("slow", "2").ok());
  ASSERT_TRUE(conn->Flush(kWait).ok());
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(ConnectionTest, HandlerMayEndItsOwnSubscription) {
  auto conn = Connect();
  std::unique_ptr<Subscription> sub;
  std::mutex mu;
  internal::Notification done;
  std::atomic<int> calls{0};
  auto created = conn->Subscribe("self", "", [&](const Message&) {
    ++calls;
    std::lock_guard<std::mutex> lock(mu);
    if (sub != nullptr) {
      sub.reset();  // must not deadlock waiting for itself
      done.Notify();
    }
  });
  ASSERT_TRUE(created.ok());
  {
    std::lock_guard<std::mutex> lock(mu);
    sub = *std::move(created);
  }
  ASSERT_TRUE(conn->Publish("self", "1").ok());
  ASSERT_TRUE(done.WaitFor(kWait));
  ASSERT_TRUE(conn->Publish("self", "2").ok());
  ASSERT_TRUE(conn->Flush(kWait).ok());
  absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(ConnectionTest, SubscriptionOutlivingItsConnectionIsHarmless) {
  auto conn = Connect();
  auto sub = conn->Subscribe("x", "", [](const Message&) {});
  ASSERT_TRUE(sub.ok());
  conn.reset();
  EXPECT_FALSE((*sub)->active());
  EXPECT_TRUE((*sub)->Unsubscribe().ok());
}

// ---------------------------------------------------------------------------
// Bad input: a clear error, nothing on the wire, the connection still works.

TEST_F(ConnectionTest, BadInputIsRejectedAndNothingReachesTheWire) {
  auto conn = Connect();
  auto raw = Raw();
  ASSERT_TRUE(raw->Tap(">").ok());

  auto expect_invalid = [](const absl::Status& s, absl::string_view rule) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(rule))) << s;
  };
  expect_invalid(conn->Publish("", "x").status(), "empty");
  expect_invalid(conn->Publish("a b", "x").status(), "byte 0x20");
  expect_invalid(conn->Publish("a\r\nPUB evil 1", "x").status(), "byte 0x0d");
  expect_invalid(conn->Publish("a..b", "x").status(), "empty token");
  expect_invalid(conn->Publish("orders.>", "x").status(), "wildcard");
  PublishOptions bad_header;
  bad_header.headers.Add("X-Evil", "a\r\nInjected: 1");
  expect_invalid(conn->Publish("ok.subject", "x", bad_header).status(),
                 "control byte");
  PublishOptions bad_key;
  bad_key.headers.Add("Bad Key", "v");
  expect_invalid(conn->Publish("ok.subject", "x", bad_key).status(),
                 "RFC 7230");
  PublishOptions reserved;
  reserved.headers.Add("TraceParent", "00-x");
  expect_invalid(conn->Publish("ok.subject", "x", reserved).status(),
                 "reserved");
  PublishOptions bad_id;
  bad_id.message_id = "has space";
  expect_invalid(conn->Publish("ok.subject", "x", bad_id).status(),
                 "message ID");
  expect_invalid(
      conn->Publish("ok.subject", std::string(2 << 20, 'x')).status(),
      "max_payload");
  expect_invalid(conn->Request("a b", "x", absl::Seconds(1)).status(),
                 "byte 0x20");
  expect_invalid(
      conn->Request("ok.subject", "x", absl::ZeroDuration()).status(),
      "timeout must be positive");
  expect_invalid(conn->Subscribe("a.>.b", "", [](const Message&) {}).status(),
                 "last token");
  expect_invalid(
      conn->Subscribe("ok", "bad queue", [](const Message&) {}).status(),
      "queue group");
  expect_invalid(conn->Serve("ok", "q", nullptr).status(), "handler is empty");

  // Only the sentinel arrives: nothing of the above was written.
  ASSERT_TRUE(conn->Publish("sentinel", "done").ok());
  ASSERT_TRUE(conn->Flush(kWait).ok());
  ASSERT_TRUE(raw->WaitForCount(1, kWait));
  absl::SleepFor(absl::Milliseconds(100));
  const std::vector<RawMessage> wire = raw->received();
  ASSERT_EQ(wire.size(), 1u);
  EXPECT_EQ(wire[0].subject, "sentinel");
  EXPECT_EQ(conn->state(), ConnectionState::kConnected);

  EXPECT_THAT(Scrape(),
              HasSubstr("natsgw_errors_total{code=\"INVALID_ARGUMENT\","
                        "operation=\"publish\"} 10"));
}

// ---------------------------------------------------------------------------
// Request / Serve.

absl::StatusOr<Reply> Echo(const Message& m) { return Reply{m.data, {}}; }

TEST_F(ConnectionTest, RequestReplyRoundTripContinuesTheTrace) {
  auto server_conn = Connect();
  auto client = Connect();
  std::atomic<bool> saw_deadline{false};
  auto endpoint = server_conn->Serve(
      "echo.Echo", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        saw_deadline = m.deadline.has_value();
        Reply r{absl::StrCat("echo:", m.data), {}};
        r.headers.Add("Handled-By", "test");
        return r;
      });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();

  const TraceContext root = TraceContext::NewRoot();
  RequestOptions opts;
  opts.trace = root;
  absl::StatusOr<Message> reply =
      client->Request("echo.Echo", "hi", absl::Seconds(5), opts);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data, "echo:hi");
  EXPECT_THAT(reply->headers.Get("handled-by"),
              Optional(absl::string_view("test")));
  EXPECT_EQ(reply->trace.trace_id(), root.trace_id());
  EXPECT_EQ(reply->message_id.size(), kMessageIdLength);
  EXPECT_TRUE(saw_deadline);

  const std::string text = Scrape();
  EXPECT_THAT(text, HasSubstr("natsgw_client_request_duration_seconds_count{"
                              "code=\"OK\",subject=\"echo.Echo\"} 1"));
  EXPECT_THAT(text, HasSubstr("natsgw_server_request_duration_seconds_count{"
                              "code=\"OK\",subject=\"echo.Echo\"} 1"));
}

TEST_F(ConnectionTest, HandlerStatusReachesTheCallerWithSameCodeAndMessage) {
  auto conn = Connect();
  auto endpoint = conn->Serve(
      "users.Get", "q", [](const Message& m) -> absl::StatusOr<Reply> {
        return absl::NotFoundError(absl::StrCat("no user with id ", m.data));
      });
  ASSERT_TRUE(endpoint.ok());
  auto raw = Raw();
  ASSERT_TRUE(raw->Tap("_INBOX.>").ok());

  absl::StatusOr<Message> reply =
      conn->Request("users.Get", "42", absl::Seconds(5));
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reply.status().message(), "no user with id 42");
  std::optional<std::string> trace = TraceIdFromStatus(reply.status());
  ASSERT_TRUE(trace.has_value());
  EXPECT_EQ(trace->size(), 32u);

  // NATS tooling sees the Services API headers on the reply.
  ASSERT_TRUE(raw->WaitForCount(1, kWait));
  const RawMessage wire = raw->received()[0];
  EXPECT_EQ(wire.headers.find("Nats-Service-Error")->second,
            "no user with id 42");
  EXPECT_EQ(wire.headers.find("Nats-Service-Error-Code")->second, "404");
  EXPECT_EQ(wire.headers.find("Natsgw-Status")->second, "5");

  EXPECT_THAT(Scrape(),
              HasSubstr("natsgw_server_request_duration_seconds_count{code="
                        "\"NOT_FOUND\",subject=\"users.Get\"} 1"));
}

TEST_F(ConnectionTest, NoRespondersIsUnavailableAtOnceNotATimeout) {
  auto conn = Connect();
  // A 30 s budget: a timeout would be DEADLINE_EXCEEDED after 30 s.
  absl::StatusOr<Message> reply =
      conn->Request("nobody.home", "x", absl::Seconds(30));
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(reply.status().message()),
              HasSubstr("no responders"));
}

TEST_F(ConnectionTest, SlowHandlerIsDeadlineExceeded) {
  auto conn = Connect();
  internal::Notification release;
  auto endpoint =
      conn->Serve("slow.Op", "q", [&](const Message&) -> absl::StatusOr<Reply> {
        release.WaitFor(kWait);
        return Reply{};
      });
  ASSERT_TRUE(endpoint.ok());
  absl::StatusOr<Message> reply =
      conn->Request("slow.Op", "x", absl::Milliseconds(100));
  release.Notify();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(TraceIdFromStatus(reply.status()).has_value());
}

TEST_F(ConnectionTest, ExpiredRequestIsAnsweredWithoutCallingTheHandler) {
  auto conn = Connect();
  std::atomic<int> calls{0};
  auto endpoint = conn->Serve("budget.Op", "q",
                              [&](const Message&) -> absl::StatusOr<Reply> {
                                ++calls;
                                return Reply{};
                              });
  ASSERT_TRUE(endpoint.ok());
  auto raw = Raw();
  absl::StatusOr<RawMessage> reply = raw->Request(
      "budget.Op", "x", {{"Natsgw-Timeout-Us", "0"}}, absl::Seconds(5));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(
      reply->headers.find("Natsgw-Status")->second,
      absl::StrCat(static_cast<int>(absl::StatusCode::kDeadlineExceeded)));
  EXPECT_THAT(reply->headers.find("Nats-Service-Error")->second,
              HasSubstr("expired before it was handled"));
  EXPECT_EQ(calls.load(), 0);
  EXPECT_THAT(Scrape(),
              HasSubstr("natsgw_errors_total{code=\"DEADLINE_EXCEEDED\","
                        "operation=\"serve\"} 1"));
}

// Budgets from other clients are untrusted text: whatever they say, the
// endpoint answers with a defined outcome and keeps serving.
TEST_F(ConnectionTest, HostileBudgetsGetDefinedOutcomes) {
  auto conn = Connect();
  std::atomic<int> calls{0};
  auto endpoint = conn->Serve(
      "budget.Op", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        ++calls;
        return Reply{m.deadline.has_value() ? "budget" : "none", {}};
      });
  ASSERT_TRUE(endpoint.ok());
  auto raw = Raw();
  struct Case {
    const char* budget;
    const char* outcome;  // the reply's body, or "expired"
  };
  for (const Case& c : {
           // Not a number, or one beyond int64: ignored (no budget).
           Case{"abc", "none"},
           Case{"", "none"},
           Case{"99999999999999999999999", "none"},
           Case{"12e9", "none"},
           // Negative: already spent.
           Case{"-5", "expired"},
           Case{"-9223372036854775808", "expired"},
           // Absurdly large but representable: a very distant deadline.
           Case{"9223372036854775807", "budget"},
       }) {
    absl::StatusOr<RawMessage> reply = raw->Request(
        "budget.Op", "x", {{"Natsgw-Timeout-Us", c.budget}}, absl::Seconds(5));
    ASSERT_TRUE(reply.ok()) << c.budget << ": " << reply.status();
    if (std::string(c.outcome) == "expired") {
      auto status = reply->headers.find("Natsgw-Status");
      ASSERT_NE(status, reply->headers.end()) << c.budget;
      EXPECT_EQ(
          status->second,
          absl::StrCat(static_cast<int>(absl::StatusCode::kDeadlineExceeded)))
          << c.budget;
    } else {
      EXPECT_EQ(reply->data, c.outcome) << c.budget;
    }
  }
  EXPECT_EQ(calls.load(), 5);
  EXPECT_EQ(conn->state(), ConnectionState::kConnected);
}

TEST_F(ConnectionTest, NestedCallsInheritTraceAndBudget) {
  auto conn = Connect();
  auto events = Connect();
  Inbox inbox;
  auto sub = events->Subscribe("audit.>", "", inbox.Handler());
  ASSERT_TRUE(sub.ok());

  std::optional<absl::Time> outer_deadline;
  std::optional<absl::Time> inner_deadline;
  auto inner = conn->Serve("inner.Op", "q",
                           [&](const Message& m) -> absl::StatusOr<Reply> {
                             inner_deadline = m.deadline;
                             return Reply{"inner", {}};
                           });
  auto outer = conn->Serve(
      "outer.Op", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        outer_deadline = m.deadline;
        // No trace or timeout passed explicitly: both are inherited.
        NATSGW_ASSIGN_OR_RETURN(SendInfo sent,
                                conn->Publish("audit.outer", "x"));
        EXPECT_EQ(sent.trace.trace_id(), m.trace.trace_id());
        NATSGW_ASSIGN_OR_RETURN(Message r,
                                conn->Request("inner.Op", "x", absl::Hours(1)));
        return Reply{r.data, {}};
      });
  ASSERT_TRUE(inner.ok() && outer.ok());

  const TraceContext root = TraceContext::NewRoot();
  RequestOptions opts;
  opts.trace = root;
  absl::StatusOr<Message> reply =
      conn->Request("outer.Op", "x", absl::Seconds(2), opts);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data, "inner");
  ASSERT_TRUE(inbox.WaitFor(1));
  EXPECT_EQ(inbox.messages()[0].trace.trace_id(), root.trace_id());
  ASSERT_TRUE(outer_deadline && inner_deadline);
  // The inner call asked for an hour but got at most what was left.
  EXPECT_LE(*inner_deadline, *outer_deadline + absl::Milliseconds(5));
}

TEST_F(ConnectionTest, InvalidIncomingTraceIsReplacedNeverForwarded) {
  auto conn = Connect();
  auto raw = Raw();
  ASSERT_TRUE(raw->Tap("downstream").ok());
  std::atomic<bool> replaced{false};
  auto endpoint = conn->Serve(
      "trace.Op", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        replaced = m.trace_replaced;
        NATSGW_RETURN_IF_ERROR(conn->Publish("downstream", "x").status());
        return Reply{};
      });
  ASSERT_TRUE(endpoint.ok());
  const std::string bad =
      "00-NOT-A-VALID-TRACE-PARENT-VALUE-AT-ALL-xxxxxxxxxxxxxxx";
  absl::StatusOr<RawMessage> reply = raw->Request(
      "trace.Op", "x", {{"traceparent", bad}, {"tracestate", "evil=1"}},
      absl::Seconds(5));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(replaced);
  ASSERT_TRUE(raw->WaitForCount(1, kWait));
  const RawMessage published = raw->received()[0];
  const std::string forwarded = published.headers.find("traceparent")->second;
  EXPECT_NE(forwarded, bad);
  EXPECT_TRUE(TraceContext::Parse(forwarded).ok()) << forwarded;
  EXPECT_EQ(published.headers.count("tracestate"), 0u);
  // The reply continues the new trace, too.
  EXPECT_EQ(TraceContext::Parse(reply->headers.find("traceparent")->second)
                ->trace_id(),
            TraceContext::Parse(forwarded)->trace_id());
  EXPECT_THAT(
      Scrape(),
      HasSubstr("natsgw_trace_context_replaced_total{reason=\"invalid\"} 1"));
}

TEST_F(ConnectionTest, CapitalisedTraceparentFromOtherClientsIsContinued) {
  auto conn = Connect();
  std::string seen;
  auto endpoint = conn->Serve("trace.Op", "q",
                              [&](const Message& m) -> absl::StatusOr<Reply> {
                                seen = m.trace.TraceIdHex();
                                return Reply{};
                              });
  ASSERT_TRUE(endpoint.ok());
  auto raw = Raw();
  ASSERT_TRUE(
      raw->Request(
             "trace.Op", "x",
             {{"Traceparent",
               "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
             absl::Seconds(5))
          .ok());
  EXPECT_EQ(seen, "4bf92f3577b34da6a3ce929d0e0e4736");
}

TEST_F(ConnectionTest, HandlerFailuresBecomeInternalErrors) {
  auto conn = Connect();
  auto thrower =
      conn->Serve("throws", "q", [](const Message&) -> absl::StatusOr<Reply> {
        throw std::runtime_error("kaboom");
      });
  auto bad_reply = conn->Serve("bad.reply", "q",
                               [](const Message&) -> absl::StatusOr<Reply> {
                                 Reply r;
                                 r.headers.Add("Nats-Msg-Id", "forged");
                                 return r;
                               });
  ASSERT_TRUE(thrower.ok() && bad_reply.ok());
  absl::Status s = conn->Request("throws", "x", absl::Seconds(5)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(s.message()), HasSubstr("kaboom"));
  s = conn->Request("bad.reply", "x", absl::Seconds(5)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(s.message()), HasSubstr("reserved"));
  // The endpoint keeps serving after a throw.
  EXPECT_EQ(conn->Request("throws", "x", absl::Seconds(5)).status().code(),
            absl::StatusCode::kInternal);
}

TEST_F(ConnectionTest, PublishToAnEndpointDoesNotCallTheHandler) {
  auto conn = Connect();
  std::atomic<int> calls{0};
  auto endpoint =
      conn->Serve("svc.Op", "q", [&](const Message&) -> absl::StatusOr<Reply> {
        ++calls;
        return Reply{};
      });
  ASSERT_TRUE(endpoint.ok());
  ASSERT_TRUE(conn->Publish("svc.Op", "not a request").ok());
  ASSERT_TRUE(conn->Flush(kWait).ok());
  absl::Time deadline = absl::Now() + kWait;
  while (!absl::StrContains(Scrape(), "operation=\"serve\"") &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_THAT(Scrape(),
              HasSubstr("natsgw_errors_total{code=\"INVALID_ARGUMENT\","
                        "operation=\"serve\"} 1"));
  EXPECT_EQ(calls.load(), 0);
}

TEST_F(ConnectionTest, ForeignServiceErrorsMapBack) {
  auto raw = Raw();
  ASSERT_TRUE(raw->Respond("foreign.Op", "",
                           {{"Nats-Service-Error", "no such thing"},
                            {"Nats-Service-Error-Code", "404"}})
                  .ok());
  auto conn = Connect();
  absl::Status s = conn->Request("foreign.Op", "x", absl::Seconds(5)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "no such thing");
}

TEST_F(ConnectionTest, QueueGroupSharesRequestsBetweenInstances) {
  auto a = Connect();
  auto b = Connect();
  std::atomic<int> on_a{0}, on_b{0};
  auto ea =
      a->Serve("shared.Op", "q", [&](const Message&) -> absl::StatusOr<Reply> {
        ++on_a;
        return Reply{};
      });
  auto eb =
      b->Serve("shared.Op", "q", [&](const Message&) -> absl::StatusOr<Reply> {
        ++on_b;
        return Reply{};
      });
  ASSERT_TRUE(ea.ok() && eb.ok());
  auto client = Connect();
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(client->Request("shared.Op", "x", absl::Seconds(5)).ok());
  }
  EXPECT_EQ(on_a + on_b, 64);
  EXPECT_GT(on_a.load(), 0);
  EXPECT_GT(on_b.load(), 0);
}

TEST_F(ConnectionTest, SingleLaneModeWorks) {
  ConnectionOptions options = Options();
  options.batch_publishes = false;
  auto conn = Connect(options);
  Inbox inbox;
  auto sub = conn->Subscribe("single", "", inbox.Handler());
  auto endpoint = conn->Serve("single.Echo", "q", Echo);
  ASSERT_TRUE(sub.ok() && endpoint.ok());
  ASSERT_TRUE(conn->Publish("single", "x").ok());
  ASSERT_TRUE(inbox.WaitFor(1));
  absl::StatusOr<Message> reply =
      conn->Request("single.Echo", "y", absl::Seconds(5));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data, "y");
}

TEST_F(ConnectionTest, ConcurrentCallersShareOneConnection) {
  auto conn = Connect();
  auto endpoint = conn->Serve("echo.Echo", "q", Echo);
  ASSERT_TRUE(endpoint.ok());
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string body = absl::StrCat(t, "-", i);
        absl::StatusOr<Message> r =
            conn->Request("echo.Echo", body, absl::Seconds(5));
        if (r.ok() && r->data == body) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 200);
}

// ---------------------------------------------------------------------------
// The server going away and coming back.

TEST_F(ConnectionTest, ServerLossIsUnavailableAndRecoveryIsAutomatic) {
  ConnectionOptions options = Options();
  options.reconnect.wait = absl::Milliseconds(50);
  options.logger = std::make_shared<NullLogger>();
  auto conn = Connect(options);
  auto endpoint = conn->Serve("echo.Echo", "q", Echo);
  ASSERT_TRUE(endpoint.ok());
  ASSERT_TRUE(conn->Request("echo.Echo", "1", absl::Seconds(5)).ok());

  ASSERT_TRUE(server().Kill().ok());
  // Once nats.c notices, requests fail fast with UNAVAILABLE (never hang).
  absl::Status s;
  absl::Time deadline = absl::Now() + kWait;
  do {
    s = conn->Request("echo.Echo", "2", absl::Milliseconds(200)).status();
  } while (s.code() != absl::StatusCode::kUnavailable &&
           absl::Now() < deadline);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(conn->state(), ConnectionState::kConnected);
  // Publishes are buffered for the reconnect meanwhile.
  EXPECT_TRUE(conn->Publish("buffered", "x").ok());

  ASSERT_TRUE(server().Restart().ok());
  deadline = absl::Now() + absl::Seconds(20);
  absl::StatusOr<Message> reply;
  do {
    reply = conn->Request("echo.Echo", "3", absl::Milliseconds(500));
    if (!reply.ok()) absl::SleepFor(absl::Milliseconds(50));
  } while (!reply.ok() && absl::Now() < deadline);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data, "3");
  // Both lanes reconnect independently (each with its own jittered wait);
  // the connection reports connected once both have.
  while (conn->state() != ConnectionState::kConnected &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(conn->state(), ConnectionState::kConnected);
}

TEST_F(ConnectionTest, FullReconnectBufferIsResourceExhausted) {
  ConnectionOptions options = Options();
  options.reconnect.buffer_bytes = 4096;
  options.reconnect.wait = absl::Seconds(30);
  options.logger = std::make_shared<NullLogger>();
  auto conn = Connect(options);
  ASSERT_TRUE(server().Kill().ok());
  absl::Time deadline = absl::Now() + kWait;
  while (conn->state() == ConnectionState::kConnected &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_NE(conn->state(), ConnectionState::kConnected);
  // The publish lane notices the loss on its own schedule; until it does,
  // publishes still go to the (dead) socket. Keep publishing, bounded in
  // time, until the reconnect buffer fills.
  absl::Status last;
  deadline = absl::Now() + kWait;
  for (int i = 0; last.ok() && absl::Now() < deadline; ++i) {
    last = conn->Publish("buffered", std::string(256, 'x')).status();
    if (i % 64 == 63) absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted) << last;
  EXPECT_THAT(std::string(last.message()), HasSubstr("reconnect buffer"));
}

TEST_F(ConnectionTest, RetryOnFailedConnectStartsWithoutAServer) {
  const std::string url = server().url();
  ASSERT_TRUE(server().Kill().ok());
  ConnectionOptions options = Options();
  options.retry_on_failed_connect = true;
  options.reconnect.wait = absl::Milliseconds(50);
  options.logger = std::make_shared<NullLogger>();
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  EXPECT_NE((*conn)->state(), ConnectionState::kConnected);
  EXPECT_EQ((*conn)->Request("x", "y", absl::Seconds(1)).status().code(),
            absl::StatusCode::kUnavailable);
  ASSERT_TRUE(server().Restart().ok());
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  while ((*conn)->state() != ConnectionState::kConnected &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ((*conn)->state(), ConnectionState::kConnected);
}

}  // namespace
}  // namespace natsgw
