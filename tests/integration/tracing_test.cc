// Spans end to end on a real nats-server: an RPC chain whose spans form one
// trace with parent links along the chain, pub/sub and JetStream consumers
// continuing the producer's trace, a retried request with a span per
// attempt, sampling (an unsampled incoming trace and a zero ratio report
// nothing but still propagate), inboxes kept out of span names, the typed
// client's rpc.method, and the JSON-lines exporter's file under concurrent
// traffic.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway_test_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/jetstream.h"
#include "natsgw/json_span_exporter.h"
#include "natsgw/rpc_client.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/span_sink.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/stream_publisher.h"
#include "natsgw/subscription.h"
#include "natsgw/trace_context.h"
#include "natsgw/typed_service.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

using ::natsgw::testing::Eventually;
using ::natsgw::testing::GatewayTest;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;
namespace attr = span_attributes;

constexpr absl::Duration kWait = absl::Seconds(20);

// Keeps every ended span, for the test thread.
class SpanRecorder : public SpanSink {
 public:
  void OnEnd(const SpanData& span) override {
    std::lock_guard<std::mutex> lock(mu_);
    spans_.push_back(span);
  }
  std::vector<SpanData> spans() const {
    std::lock_guard<std::mutex> lock(mu_);
    return spans_;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return spans_.size();
  }
  bool WaitFor(size_t n) const {
    return Eventually([&] { return size() >= n; }, kWait);
  }

 private:
  mutable std::mutex mu_;
  std::vector<SpanData> spans_;
};

// The one span of `kind` named `name`; fails the test if there is not
// exactly one.
SpanData Only(const std::vector<SpanData>& spans, SpanKind kind,
              absl::string_view name) {
  std::vector<SpanData> found;
  for (const SpanData& s : spans) {
    if (s.kind == kind && s.name == name) found.push_back(s);
  }
  EXPECT_THAT(found, SizeIs(1)) << SpanKindName(kind) << " " << name;
  return found.empty() ? SpanData() : found[0];
}

std::string Str(const SpanData& span, absl::string_view key) {
  const SpanAttributeValue* v = span.Attribute(key);
  return v != nullptr && std::holds_alternative<std::string>(*v)
             ? std::get<std::string>(*v)
             : "<unset>";
}

int64_t Int(const SpanData& span, absl::string_view key) {
  const SpanAttributeValue* v = span.Attribute(key);
  return v != nullptr && std::holds_alternative<int64_t>(*v)
             ? std::get<int64_t>(*v)
             : -1;
}

std::optional<bool> Bool(const SpanData& span, absl::string_view key) {
  const SpanAttributeValue* v = span.Attribute(key);
  if (v == nullptr || !std::holds_alternative<bool>(*v)) return std::nullopt;
  return std::get<bool>(*v);
}

// Every reply inbox stays out of names and destinations.
void ExpectNoInbox(const std::vector<SpanData>& spans) {
  for (const SpanData& s : spans) {
    EXPECT_THAT(s.name, Not(HasSubstr("_INBOX"))) << s.name;
    for (const auto& [key, value] : s.attributes) {
      if (std::holds_alternative<std::string>(value)) {
        EXPECT_THAT(std::get<std::string>(value), Not(HasSubstr("_INBOX")))
            << s.name << " " << key;
      }
    }
  }
}

class TracingTest : public GatewayTest {
 protected:
  ConnectionOptions Traced(std::shared_ptr<SpanSink> sink,
                           absl::string_view name, double ratio = 1.0) {
    ConnectionOptions options = Options();
    options.name = std::string(name);
    options.span_sink = std::move(sink);
    options.trace_sample_ratio = ratio;
    return options;
  }
};

RequestHandler EchoHandler() {
  return [](const Message& m) -> absl::StatusOr<Reply> {
    return Reply{m.data, {}};
  };
}

// ---------------------------------------------------------------------------
// Request/reply.

TEST_F(TracingTest, RpcChainIsOneTraceWithParentsAlongTheChain) {
  auto sink = std::make_shared<SpanRecorder>();
  auto a = Connect(Traced(sink, "svc-a"));
  auto b = Connect(Traced(sink, "svc-b"));
  auto c = Connect(Traced(sink, "svc-c"));
  ASSERT_TRUE(a && b && c);
  auto c_endpoint = c->Serve("chain.C", "q", EchoHandler());
  ASSERT_TRUE(c_endpoint.ok()) << c_endpoint.status();
  std::mutex mu;
  std::optional<TraceContext> b_current;
  std::optional<TraceContext> c_received;
  auto c2 =
      c->Serve("chain.C2", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        std::lock_guard<std::mutex> lock(mu);
        c_received = m.trace;
        return Reply{"", {}};
      });
  ASSERT_TRUE(c2.ok());
  auto b_endpoint =
      b->Serve("chain.B", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        {
          std::lock_guard<std::mutex> lock(mu);
          b_current = CurrentTraceContext();
        }
        // No trace named: the call continues the handler's span.
        absl::StatusOr<Message> from_c = b->Request("chain.C", m.data, kWait);
        if (!from_c.ok()) return from_c.status();
        return Reply{from_c->data, {}};
      });
  ASSERT_TRUE(b_endpoint.ok()) << b_endpoint.status();

  std::optional<SendInfo> sent;
  absl::StatusOr<Message> reply = a->Request("chain.B", "x", kWait, {}, &sent);
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_TRUE(sent.has_value());
  ASSERT_TRUE(sink->WaitFor(4));
  const std::vector<SpanData> spans = sink->spans();
  ASSERT_THAT(spans, SizeIs(4));

  const SpanData a_client = Only(spans, SpanKind::kClient, "chain.B");
  const SpanData b_server = Only(spans, SpanKind::kServer, "chain.B");
  const SpanData b_client = Only(spans, SpanKind::kClient, "chain.C");
  const SpanData c_server = Only(spans, SpanKind::kServer, "chain.C");
  for (const SpanData& s : spans) {
    EXPECT_EQ(s.context.trace_id(), sent->trace.trace_id()) << s.name;
    EXPECT_TRUE(s.context.sampled());
    EXPECT_EQ(s.status_code, absl::StatusCode::kOk) << s.name;
    EXPECT_LE(s.start, s.end) << s.name;
    EXPECT_EQ(Str(s, attr::kMessagingSystem), "nats");
    EXPECT_EQ(Str(s, attr::kRpcSystemName), "nats");
    EXPECT_EQ(Str(s, attr::kRpcStatusCode), "OK");
  }
  // The chain: A's call is the root; each hop is a child of the previous.
  EXPECT_FALSE(a_client.parent_span_id.has_value());
  EXPECT_EQ(a_client.context, sent->trace) << "the request carries its span";
  EXPECT_EQ(b_server.parent_span_id, a_client.context.span_id());
  EXPECT_EQ(b_client.parent_span_id, b_server.context.span_id());
  EXPECT_EQ(c_server.parent_span_id, b_client.context.span_id());
  // The handler ran inside its SERVER span; the reply carries it too.
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_TRUE(b_current.has_value());
    EXPECT_EQ(*b_current, b_server.context);
  }
  EXPECT_EQ(reply->trace, b_server.context);
  // Durations nest.
  EXPECT_LE(a_client.start, b_server.start);
  EXPECT_GE(a_client.end, b_client.end);

  // Attributes of the messaging and RPC conventions.
  EXPECT_EQ(Str(a_client, attr::kRpcMethod), "chain.B");
  EXPECT_EQ(Str(a_client, attr::kMessagingOperationType), "send");
  EXPECT_EQ(Str(a_client, attr::kMessagingOperationName), "request");
  EXPECT_EQ(Str(a_client, attr::kMessagingDestinationName), "chain.B");
  EXPECT_EQ(Str(a_client, attr::kMessagingMessageId), sent->message_id);
  EXPECT_EQ(Int(a_client, attr::kMessagingMessageBodySize), 1);
  EXPECT_EQ(Int(a_client, attr::kNatsRequestAttempts), 1);
  EXPECT_EQ(Str(a_client, attr::kMessagingClientId), "svc-a");
  EXPECT_EQ(Str(a_client, attr::kServerAddress), "127.0.0.1");
  EXPECT_EQ(Int(a_client, attr::kServerPort), server().port());
  EXPECT_EQ(Str(b_server, attr::kRpcMethod), "chain.B");
  EXPECT_EQ(Str(b_server, attr::kMessagingOperationType), "process");
  EXPECT_EQ(Str(b_server, attr::kMessagingDestinationName), "chain.B");
  EXPECT_EQ(Str(b_server, attr::kMessagingDestinationTemplate), "chain.B");
  EXPECT_EQ(Str(b_server, attr::kMessagingConsumerGroupName), "q");
  EXPECT_EQ(Str(b_server, attr::kMessagingMessageId), sent->message_id);
  EXPECT_EQ(Str(b_server, attr::kNatsRequestOutcome), "handled");
  EXPECT_EQ(Str(b_server, attr::kMessagingClientId), "svc-b");
  EXPECT_TRUE(b_server.links.empty()) << "an RPC server span is a child only";
  ExpectNoInbox(spans);

  // An explicit context is the parent of the call's span.
  const TraceContext mine = TraceContext::NewRoot();
  RequestOptions explicit_trace;
  explicit_trace.trace = mine;
  ASSERT_TRUE(a->Request("chain.C2", "", kWait, explicit_trace).ok());
  ASSERT_TRUE(sink->WaitFor(6));
  const SpanData c2_client = Only(sink->spans(), SpanKind::kClient, "chain.C2");
  EXPECT_EQ(c2_client.parent_span_id, mine.span_id());
  EXPECT_EQ(c2_client.context.trace_id(), mine.trace_id());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_TRUE(c_received.has_value());
  EXPECT_EQ(*c_received, c2_client.context);
}

TEST_F(TracingTest, FailedCallRecordsItsStatusOnBothSides) {
  auto sink = std::make_shared<SpanRecorder>();
  auto server_conn = Connect(Traced(sink, "server"));
  auto client = Connect(Traced(sink, "client"));
  ASSERT_TRUE(server_conn && client);
  auto endpoint = server_conn->Serve(
      "users.GetUser", "q", [](const Message&) -> absl::StatusOr<Reply> {
        return absl::NotFoundError("no user 7");
      });
  ASSERT_TRUE(endpoint.ok());
  absl::StatusOr<Message> reply =
      client->Request("users.GetUser", "7", kWait, {});
  ASSERT_TRUE(absl::IsNotFound(reply.status())) << reply.status();
  ASSERT_TRUE(sink->WaitFor(2));
  for (const SpanData& s : sink->spans()) {
    EXPECT_EQ(s.status_code, absl::StatusCode::kNotFound) << s.name;
    EXPECT_THAT(s.status_message, HasSubstr("no user 7"));
    EXPECT_EQ(Str(s, attr::kErrorType), "NOT_FOUND");
    EXPECT_EQ(Str(s, attr::kRpcStatusCode), "NOT_FOUND");
  }
}

TEST_F(TracingTest, RetriedRequestKeepsTheTraceWithASpanPerAttempt) {
  auto sink = std::make_shared<SpanRecorder>();
  auto server_conn = Connect(Traced(sink, "server"));
  auto client = Connect(Traced(sink, "client"));
  ASSERT_TRUE(server_conn && client);
  std::mutex mu;
  std::vector<TraceContext> received;
  auto endpoint = server_conn->Serve(
      "users.GetUser", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        std::lock_guard<std::mutex> lock(mu);
        received.push_back(m.trace);
        if (received.size() == 1) return absl::UnavailableError("warming up");
        return Reply{"ok", {}};
      });
  ASSERT_TRUE(endpoint.ok());
  RequestOptions options;
  options.retry.max_attempts = 3;
  options.retry.initial_backoff = absl::Milliseconds(1);
  std::optional<SendInfo> sent;
  absl::StatusOr<Message> reply =
      client->Request("users.GetUser", "7", kWait, options, &sent);
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_TRUE(sink->WaitFor(4));  // the call, the retry, 2 served
  const std::vector<SpanData> spans = sink->spans();
  ASSERT_THAT(spans, SizeIs(4));

  std::vector<TraceContext> wire;
  {
    std::lock_guard<std::mutex> lock(mu);
    wire = received;
  }
  ASSERT_THAT(wire, SizeIs(2));
  // Same trace, a span ID per attempt.
  EXPECT_EQ(wire[0].trace_id(), wire[1].trace_id());
  EXPECT_NE(wire[0].span_id(), wire[1].span_id());

  SpanData call, retry;
  std::vector<SpanData> served;
  for (const SpanData& s : spans) {
    EXPECT_EQ(s.context.trace_id(), sent->trace.trace_id()) << s.name;
    if (s.kind == SpanKind::kServer) {
      served.push_back(s);
    } else if (s.Attribute(attr::kNatsRequestAttempt) != nullptr) {
      retry = s;
    } else {
      call = s;
    }
  }
  // The call: one CLIENT span over both attempts; the first attempt carries
  // its context, the retry a child span's.
  EXPECT_EQ(call.kind, SpanKind::kClient);
  EXPECT_EQ(call.context, sent->trace);
  EXPECT_EQ(call.context, wire[0]);
  EXPECT_EQ(Int(call, attr::kNatsRequestAttempts), 2);
  EXPECT_EQ(call.status_code, absl::StatusCode::kOk);
  EXPECT_EQ(retry.kind, SpanKind::kClient);
  EXPECT_EQ(retry.name, "users.GetUser");
  EXPECT_EQ(retry.context, wire[1]);
  EXPECT_EQ(retry.parent_span_id, call.context.span_id());
  EXPECT_EQ(Int(retry, attr::kNatsRequestAttempt), 2);
  EXPECT_EQ(Bool(retry, attr::kNatsRequestHedge), false);
  EXPECT_EQ(retry.status_code, absl::StatusCode::kOk);
  EXPECT_GE(retry.start, call.start);
  EXPECT_LE(retry.end, call.end);
  ASSERT_THAT(served, SizeIs(2));
  std::map<TraceContext::SpanId, SpanData> by_parent;
  for (const SpanData& s : served) by_parent[*s.parent_span_id] = s;
  ASSERT_TRUE(by_parent.contains(call.context.span_id()));
  ASSERT_TRUE(by_parent.contains(retry.context.span_id()));
  EXPECT_EQ(by_parent[call.context.span_id()].status_code,
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(by_parent[retry.context.span_id()].status_code,
            absl::StatusCode::kOk);
}

TEST_F(TracingTest, HedgeHasASpanOfItsOwnAndTheLoserEndsWithTheCall) {
  auto sink = std::make_shared<SpanRecorder>();
  auto server_conn = Connect(Traced(sink, "server"));
  auto client = Connect(Traced(sink, "client"));
  ASSERT_TRUE(server_conn && client);
  // Both copies are held until the hedge has arrived, so the call is hedged
  // whatever the scheduling; then both are answered.
  testing::Latch both(2);
  ServeOptions serve;
  serve.workers = 2;
  auto endpoint = server_conn->Serve(
      "users.GetUser", "q",
      [&](const Message& m) -> absl::StatusOr<Reply> {
        both.CountDown();
        if (!both.Wait(kWait)) return absl::DeadlineExceededError("no hedge");
        return Reply{m.data, {}};
      },
      serve);
  ASSERT_TRUE(endpoint.ok());
  RequestOptions options;
  options.hedging.delay = absl::Milliseconds(1);
  options.hedging.max_hedges = 1;
  std::optional<SendInfo> sent;
  absl::StatusOr<Message> reply =
      client->Request("users.GetUser", "x", kWait, options, &sent);
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_TRUE(sink->WaitFor(4));  // the call, the hedge, 2 served
  const std::vector<SpanData> spans = sink->spans();
  ASSERT_THAT(spans, SizeIs(4));
  SpanData call, hedge;
  int served = 0;
  for (const SpanData& s : spans) {
    if (s.kind == SpanKind::kServer) {
      ++served;
    } else if (s.Attribute(attr::kNatsRequestAttempt) != nullptr) {
      hedge = s;
    } else {
      call = s;
    }
  }
  EXPECT_EQ(served, 2);
  EXPECT_EQ(call.context, sent->trace);
  EXPECT_EQ(Int(call, attr::kNatsRequestAttempts), 2);
  EXPECT_EQ(call.status_code, absl::StatusCode::kOk);
  EXPECT_EQ(hedge.parent_span_id, call.context.span_id());
  EXPECT_EQ(hedge.context.trace_id(), call.context.trace_id());
  EXPECT_EQ(Bool(hedge, attr::kNatsRequestHedge), true);
  EXPECT_EQ(Int(hedge, attr::kNatsRequestAttempt), 2);
  // It either won (OK) or lost to the first copy and ended with the call.
  EXPECT_TRUE(hedge.status_code == absl::StatusCode::kOk ||
              hedge.status_code == absl::StatusCode::kCancelled)
      << absl::StatusCodeToString(hedge.status_code);
  EXPECT_LE(hedge.end, call.end);
}

// ---------------------------------------------------------------------------
// Pub/sub and JetStream.

TEST_F(TracingTest, ConsumerContinuesTheProducersTraceAndLinksToIt) {
  auto sink = std::make_shared<SpanRecorder>();
  auto producer = Connect(Traced(sink, "producer"));
  auto consumer = Connect(Traced(sink, "consumer"));
  ASSERT_TRUE(producer && consumer);
  std::mutex mu;
  std::optional<TraceContext> current;
  std::optional<SendInfo> forwarded;
  auto sub =
      consumer->Subscribe("orders.*.created", "workers", [&](const Message& m) {
        // Published from the handler without naming a trace.
        absl::StatusOr<SendInfo> f = consumer->Publish("audit.order", m.data);
        std::lock_guard<std::mutex> lock(mu);
        current = CurrentTraceContext();
        if (f.ok()) forwarded = *f;
      });
  ASSERT_TRUE(sub.ok()) << sub.status();

  const TraceContext root = TraceContext::NewRoot();
  PublishOptions options;
  options.metric_subject = "orders.*.created";
  absl::StatusOr<SendInfo> sent;
  {
    ScopedTraceContext scope(root);
    sent = producer->Publish("orders.42.created", "order", options);
  }
  ASSERT_TRUE(sent.ok()) << sent.status();
  ASSERT_TRUE(sink->WaitFor(3));
  const std::vector<SpanData> spans = sink->spans();
  ASSERT_THAT(spans, SizeIs(3));

  const SpanData publish =
      Only(spans, SpanKind::kProducer, "publish orders.*.created");
  const SpanData process =
      Only(spans, SpanKind::kConsumer, "process orders.*.created");
  const SpanData audit =
      Only(spans, SpanKind::kProducer, "publish audit.order");
  EXPECT_EQ(publish.context, sent->trace);
  EXPECT_EQ(publish.parent_span_id, root.span_id());
  EXPECT_EQ(Str(publish, attr::kMessagingOperationType), "send");
  EXPECT_EQ(Str(publish, attr::kMessagingOperationName), "publish");
  EXPECT_EQ(Str(publish, attr::kMessagingDestinationName), "orders.42.created");
  EXPECT_EQ(Str(publish, attr::kMessagingDestinationTemplate),
            "orders.*.created");
  EXPECT_EQ(Str(publish, attr::kMessagingMessageId), sent->message_id);
  EXPECT_EQ(Int(publish, attr::kMessagingMessageBodySize), 5);
  EXPECT_EQ(publish.Attribute(attr::kRpcSystemName), nullptr);

  EXPECT_EQ(process.context.trace_id(), root.trace_id());
  EXPECT_EQ(process.parent_span_id, publish.context.span_id());
  ASSERT_THAT(process.links, SizeIs(1));
  EXPECT_EQ(process.links[0], sent->trace);
  EXPECT_EQ(Str(process, attr::kMessagingOperationType), "process");
  EXPECT_EQ(Str(process, attr::kMessagingDestinationName), "orders.42.created");
  EXPECT_EQ(Str(process, attr::kMessagingDestinationTemplate),
            "orders.*.created");
  EXPECT_EQ(Str(process, attr::kMessagingConsumerGroupName), "workers");
  EXPECT_EQ(Str(process, attr::kMessagingMessageId), sent->message_id);

  // What the handler sends is a child of its CONSUMER span.
  EXPECT_EQ(audit.parent_span_id, process.context.span_id());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_TRUE(current.has_value());
  EXPECT_EQ(*current, process.context);
  ASSERT_TRUE(forwarded.has_value());
  EXPECT_EQ(audit.context, forwarded->trace);
}

StreamConfig Orders() {
  StreamConfig c;
  c.name = "ORDERS";
  c.subjects = {"orders.>"};
  c.duplicate_window = absl::Minutes(2);
  return c;
}

TEST_F(TracingTest, JetStreamConsumerContinuesTheProducersTrace) {
  auto sink = std::make_shared<SpanRecorder>();
  auto producer_conn = Connect(Traced(sink, "producer"));
  auto consumer_conn = Connect(Traced(sink, "consumer"));
  ASSERT_TRUE(producer_conn && consumer_conn);
  auto producer_js = JetStream::Create(*producer_conn);
  auto consumer_js = JetStream::Create(*consumer_conn);
  ASSERT_TRUE(producer_js.ok() && consumer_js.ok());
  ASSERT_TRUE((*producer_js)->EnsureStream(Orders()).ok());
  StreamPublisherOptions publisher_options;
  publisher_options.stream = "ORDERS";
  auto publisher = StreamPublisher::Create(**producer_js, publisher_options);
  ASSERT_TRUE(publisher.ok()) << publisher.status();

  absl::StatusOr<PublishAck> ack =
      (*publisher)->Publish("orders.created", "order-1");
  ASSERT_TRUE(ack.ok()) << ack.status();

  StreamConsumerOptions options;
  options.consumer.stream = "ORDERS";
  options.consumer.durable = "billing";
  options.consumer.ack_wait = absl::Seconds(5);
  options.workers = 1;
  options.fetch_wait = absl::Milliseconds(200);
  options.nak_backoff.initial_backoff = absl::Milliseconds(20);
  options.nak_backoff.max_backoff = absl::Milliseconds(20);
  std::atomic<int> calls{0};
  std::mutex mu;
  std::vector<TraceContext> current;
  auto consumer = StreamConsumer::Create(
      **consumer_js, options, [&](const Delivery&) -> DeliveryOutcome {
        {
          std::lock_guard<std::mutex> lock(mu);
          current.push_back(*CurrentTraceContext());
        }
        // The first delivery fails, the redelivery succeeds.
        if (calls.fetch_add(1) == 0) return absl::UnavailableError("busy");
        return DeliveryOutcome::Ack();
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE(
      Eventually([&] { return (*consumer)->stats().acked == 1; }, kWait));
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());

  // PRODUCER (root) > CLIENT (the acknowledged attempt) > 2 x CONSUMER.
  ASSERT_TRUE(sink->WaitFor(4));
  const std::vector<SpanData> spans = sink->spans();
  ASSERT_THAT(spans, SizeIs(4));
  const SpanData publish =
      Only(spans, SpanKind::kProducer, "publish orders.created");
  const SpanData attempt = Only(spans, SpanKind::kClient, "orders.created");
  std::vector<SpanData> deliveries;
  for (const SpanData& s : spans) {
    EXPECT_EQ(s.context.trace_id(), ack->sent.trace.trace_id()) << s.name;
    if (s.kind == SpanKind::kConsumer) deliveries.push_back(s);
  }
  EXPECT_FALSE(publish.parent_span_id.has_value());
  EXPECT_EQ(Str(publish, attr::kNatsJetStreamStream), "ORDERS");
  EXPECT_EQ(Int(publish, attr::kNatsJetStreamSequence),
            static_cast<int64_t>(ack->sequence));
  EXPECT_EQ(Int(publish, attr::kNatsJetStreamAttempts), 1);
  EXPECT_EQ(Bool(publish, attr::kNatsJetStreamDuplicate), false);
  EXPECT_EQ(attempt.parent_span_id, publish.context.span_id());
  EXPECT_EQ(attempt.context, ack->sent.trace) << "the stored message's span";

  ASSERT_THAT(deliveries, SizeIs(2));
  std::sort(deliveries.begin(), deliveries.end(),
            [](const SpanData& x, const SpanData& y) {
              return Int(x, attr::kNatsJetStreamDeliveryCount) <
                     Int(y, attr::kNatsJetStreamDeliveryCount);
            });
  for (const SpanData& d : deliveries) {
    EXPECT_EQ(d.name, "process ORDERS");
    EXPECT_EQ(d.parent_span_id, attempt.context.span_id());
    ASSERT_THAT(d.links, SizeIs(1));
    EXPECT_EQ(d.links[0], ack->sent.trace);
    EXPECT_EQ(Str(d, attr::kMessagingDestinationName), "orders.created");
    EXPECT_EQ(Str(d, attr::kMessagingConsumerGroupName), "billing");
    EXPECT_EQ(Str(d, attr::kNatsJetStreamStream), "ORDERS");
    EXPECT_EQ(Str(d, attr::kNatsJetStreamConsumer), "billing");
    EXPECT_EQ(Int(d, attr::kNatsJetStreamSequence),
              static_cast<int64_t>(ack->sequence));
    EXPECT_EQ(Str(d, attr::kMessagingMessageId), ack->sent.message_id);
  }
  EXPECT_EQ(Int(deliveries[0], attr::kNatsJetStreamDeliveryCount), 1);
  EXPECT_EQ(Str(deliveries[0], attr::kNatsJetStreamOutcome), "nak");
  EXPECT_EQ(deliveries[0].status_code, absl::StatusCode::kUnavailable);
  EXPECT_EQ(Int(deliveries[1], attr::kNatsJetStreamDeliveryCount), 2);
  EXPECT_EQ(Str(deliveries[1], attr::kNatsJetStreamOutcome), "ack");
  EXPECT_EQ(deliveries[1].status_code, absl::StatusCode::kOk);
  // The handler ran inside its delivery's span.
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_THAT(current, SizeIs(2));
  EXPECT_EQ(current[0], deliveries[0].context);
  EXPECT_EQ(current[1], deliveries[1].context);
}

// ---------------------------------------------------------------------------
// Sampling.

TEST_F(TracingTest, UnsampledIncomingTraceReportsNothingButPropagates) {
  auto sink = std::make_shared<SpanRecorder>();
  auto a = Connect(Traced(sink, "a"));
  auto b = Connect(Traced(sink, "b"));
  auto c = Connect(Traced(sink, "c"));
  ASSERT_TRUE(a && b && c);
  std::mutex mu;
  std::vector<TraceContext> seen;  // by C's endpoint and A's subscription
  auto c_endpoint =
      c->Serve("chain.C", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        std::lock_guard<std::mutex> lock(mu);
        seen.push_back(m.trace);
        return Reply{"", {}};
      });
  ASSERT_TRUE(c_endpoint.ok());
  testing::Latch notified(1);
  auto sub = a->Subscribe("events.done", "", [&](const Message& m) {
    {
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back(m.trace);
    }
    notified.CountDown();
  });
  ASSERT_TRUE(sub.ok());
  auto b_endpoint =
      b->Serve("chain.B", "q", [&](const Message&) -> absl::StatusOr<Reply> {
        absl::StatusOr<Message> r = b->Request("chain.C", "", kWait);
        if (!r.ok()) return r.status();
        absl::StatusOr<SendInfo> p = b->Publish("events.done", "");
        if (!p.ok()) return p.status();
        return Reply{"", {}};
      });
  ASSERT_TRUE(b_endpoint.ok());

  // As if from an upstream service that decided not to sample.
  absl::StatusOr<TraceContext> upstream = TraceContext::Parse(
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
  ASSERT_TRUE(upstream.ok());
  RequestOptions options;
  options.trace = *upstream;
  absl::StatusOr<Message> reply = a->Request("chain.B", "", kWait, options);
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_TRUE(notified.Wait(kWait));
  EXPECT_EQ(reply->trace.trace_id(), upstream->trace_id());
  EXPECT_FALSE(reply->trace.sampled());
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_THAT(seen, SizeIs(2));
    for (const TraceContext& t : seen) {
      EXPECT_EQ(t.trace_id(), upstream->trace_id()) << "the trace propagates";
      EXPECT_FALSE(t.sampled()) << "and so does the decision";
    }
  }
  // Every hop has finished (the reply and the event came after them).
  ASSERT_TRUE(a->Flush(kWait).ok());
  EXPECT_THAT(sink->spans(), IsEmpty());
}

TEST_F(TracingTest, RatioZeroReportsNothingAndSaysSoOnTheWire) {
  auto sink = std::make_shared<SpanRecorder>();
  auto client = Connect(Traced(sink, "client", /*ratio=*/0.0));
  auto server_conn = Connect(Traced(sink, "server"));
  ASSERT_TRUE(client && server_conn);
  std::mutex mu;
  std::vector<TraceContext> seen;
  testing::Latch published(1);
  auto endpoint = server_conn->Serve(
      "users.GetUser", "q", [&](const Message& m) -> absl::StatusOr<Reply> {
        std::lock_guard<std::mutex> lock(mu);
        seen.push_back(m.trace);
        return Reply{"", {}};
      });
  ASSERT_TRUE(endpoint.ok());
  auto sub =
      server_conn->Subscribe("users.events.x", "", [&](const Message& m) {
        {
          std::lock_guard<std::mutex> lock(mu);
          seen.push_back(m.trace);
        }
        published.CountDown();
      });
  ASSERT_TRUE(sub.ok());

  std::optional<SendInfo> sent;
  absl::StatusOr<Message> reply =
      client->Request("users.GetUser", "", kWait, {}, &sent);
  ASSERT_TRUE(reply.ok()) << reply.status();
  absl::StatusOr<SendInfo> event = client->Publish("users.events.x", "");
  ASSERT_TRUE(event.ok());
  ASSERT_TRUE(published.Wait(kWait));
  EXPECT_FALSE(sent->trace.sampled());
  EXPECT_FALSE(event->trace.sampled());
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_THAT(seen, SizeIs(2));
    EXPECT_EQ(seen[0].trace_id(), sent->trace.trace_id());
    EXPECT_EQ(seen[1].trace_id(), event->trace.trace_id());
    EXPECT_FALSE(seen[0].sampled());
    EXPECT_FALSE(seen[1].sampled());
  }
  ASSERT_TRUE(server_conn->Flush(kWait).ok());
  EXPECT_THAT(sink->spans(), IsEmpty());

  // The ratio is for traces the connection starts: a sampled trace that
  // arrives keeps its sender's decision.
  auto sampled_client = Connect(Traced(nullptr, "sampled-client"));
  auto zero_server = Connect(Traced(sink, "zero-server", /*ratio=*/0.0));
  ASSERT_TRUE(sampled_client && zero_server);
  auto zero_endpoint = zero_server->Serve("users.Zero", "q", EchoHandler());
  ASSERT_TRUE(zero_endpoint.ok());
  ASSERT_TRUE(sampled_client->Request("users.Zero", "", kWait).ok());
  ASSERT_TRUE(sink->WaitFor(1));
  EXPECT_EQ(sink->spans()[0].kind, SpanKind::kServer);
}

// ---------------------------------------------------------------------------
// Names.

TEST_F(TracingTest, InboxesNeverNameASpanOrADestination) {
  auto sink = std::make_shared<SpanRecorder>();
  auto conn = Connect(Traced(sink, "inbox-user"));
  ASSERT_TRUE(conn);
  auto endpoint = conn->Serve("users.GetUser", "q", EchoHandler());
  ASSERT_TRUE(endpoint.ok());
  testing::Latch got(1);
  // A hand-made reply subject, as code doing its own request/reply might.
  auto sub = conn->Subscribe("_INBOX.handmade.*", "",
                             [&](const Message&) { got.CountDown(); });
  ASSERT_TRUE(sub.ok()) << sub.status();
  ASSERT_TRUE(conn->Request("users.GetUser", "", kWait).ok());
  ASSERT_TRUE(conn->Publish("_INBOX.handmade.1", "").ok());
  ASSERT_TRUE(got.Wait(kWait));
  ASSERT_TRUE(sink->WaitFor(4));
  const std::vector<SpanData> spans = sink->spans();
  ExpectNoInbox(spans);
  const SpanData publish = Only(spans, SpanKind::kProducer, "publish");
  const SpanData process = Only(spans, SpanKind::kConsumer, "process");
  for (const SpanData& s : {publish, process}) {
    EXPECT_EQ(s.Attribute(attr::kMessagingDestinationName), nullptr);
    EXPECT_EQ(s.Attribute(attr::kMessagingDestinationTemplate), nullptr);
    EXPECT_EQ(Bool(s, attr::kMessagingDestinationTemporary), true);
  }
}

class TestEcho : public echo::EchoServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<echo::EchoReply>> Echo(
      const echo::EchoRequest& request, ServerContext& ctx) override {
    return echo::CreateEchoReply(ctx.builder(), 0, request.tag());
  }
};

TEST_F(TracingTest, TypedClientNamesTheMethodAndStartsARootSpan) {
  auto sink = std::make_shared<SpanRecorder>();
  auto server_conn = Connect(Traced(sink, "echo-server"));
  auto client_conn = Connect(Traced(sink, "echo-client"));
  ASSERT_TRUE(server_conn && client_conn);
  TestEcho impl;
  auto service = impl.Start(*server_conn);
  ASSERT_TRUE(service.ok()) << service.status();
  auto client = echo::EchoClient::Create(*client_conn);
  ASSERT_TRUE(client.ok());
  auto reply = client->Echo([](flatbuffers::FlatBufferBuilder& fbb) {
    return echo::CreateEchoRequest(fbb, 0, 7);
  });
  ASSERT_TRUE(reply.ok()) << reply.status();
  ASSERT_TRUE(sink->WaitFor(2));
  const std::vector<SpanData> spans = sink->spans();
  const std::string method =
      absl::StrCat(echo::EchoMethods::kEcho.full_service_name, "/",
                   echo::EchoMethods::kEcho.method);
  EXPECT_EQ(method, "natsgw.echo.Echo/Echo");
  const SpanData call = Only(spans, SpanKind::kClient, method);
  EXPECT_EQ(Str(call, attr::kRpcMethod), method);
  EXPECT_EQ(Str(call, attr::kMessagingDestinationName), "echo.Echo");
  // The typed client chose the trace before sending; its span is still the
  // trace's root, not the child of a span nobody reports.
  EXPECT_FALSE(call.parent_span_id.has_value());
  EXPECT_EQ(call.context, reply->call.trace);
  // The typed service names its SERVER span the same way.
  const SpanData served = Only(spans, SpanKind::kServer, method);
  EXPECT_EQ(Str(served, attr::kRpcMethod), method);
  EXPECT_EQ(Str(served, attr::kMessagingDestinationName), "echo.Echo");
  EXPECT_EQ(served.parent_span_id, call.context.span_id());

  // The typed client's own roots follow the connection's ratio too.
  auto unsampled_conn = Connect(Traced(sink, "echo-client-0", 0.0));
  ASSERT_TRUE(unsampled_conn);
  auto unsampled = echo::EchoClient::Create(*unsampled_conn);
  ASSERT_TRUE(unsampled.ok());
  auto quiet = unsampled->Echo([](flatbuffers::FlatBufferBuilder& fbb) {
    return echo::CreateEchoRequest(fbb, 0, 8);
  });
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  EXPECT_FALSE(quiet->call.trace.sampled());
  ASSERT_TRUE(server_conn->Flush(kWait).ok());
  EXPECT_THAT(sink->spans(), SizeIs(2));
}

// ---------------------------------------------------------------------------
// The JSON-lines exporter with real traffic.

TEST_F(TracingTest, JsonLinesFileRoundTripsUnderConcurrentTraffic) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) /
      absl::StrCat("natsgw-tracing-", ::getpid(), "-",
                   absl::ToUnixNanos(absl::Now()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "spans.jsonl").string();
  {
    auto exporter = JsonLinesSpanExporter::Create(path, "tracing-test");
    ASSERT_TRUE(exporter.ok()) << exporter.status();
    std::shared_ptr<JsonLinesSpanExporter> spans = *std::move(exporter);
    auto server_conn = Connect(Traced(spans, "server"));
    auto client = Connect(Traced(spans, "client"));
    ASSERT_TRUE(server_conn && client);
    ServeOptions serve;
    serve.workers = 4;
    auto endpoint =
        server_conn->Serve("users.GetUser", "q", EchoHandler(), serve);
    ASSERT_TRUE(endpoint.ok());
    SubscribeOptions subscribe;
    subscribe.workers = 4;
    std::atomic<int> events{0};
    auto sub = server_conn->Subscribe(
        "users.events.x", "", [&](const Message&) { events.fetch_add(1); },
        subscribe);
    ASSERT_TRUE(sub.ok());

    constexpr int kThreads = 4;
    constexpr int kEach = 25;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kEach; ++i) {
          if (!client->Request("users.GetUser", "x", kWait).ok()) ++failures;
          if (!client->Publish("users.events.x", "y").ok()) ++failures;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0);
    ASSERT_TRUE(
        Eventually([&] { return events.load() == kThreads * kEach; }, kWait));
    // Closing waits for running handlers: every span has ended after it.
    client->Close();
    server_conn->Close();
    EXPECT_EQ(spans->write_errors(), 0);

    std::ifstream in(path);
    std::map<std::string, std::vector<nlohmann::json>> by_trace;
    int lines = 0;
    for (std::string line; std::getline(in, line); ++lines) {
      nlohmann::json j =
          nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      ASSERT_FALSE(j.is_discarded()) << "not one JSON object: " << line;
      EXPECT_EQ(j["service.name"], "tracing-test");
      EXPECT_THAT(j["name"].get<std::string>(), Not(HasSubstr("_INBOX")));
      by_trace[j["trace_id"].get<std::string>()].push_back(std::move(j));
    }
    // Per request: CLIENT + SERVER; per event: PRODUCER + CONSUMER.
    EXPECT_EQ(lines, 4 * kThreads * kEach);
    EXPECT_EQ(by_trace.size(), static_cast<size_t>(2 * kThreads * kEach));
    for (const auto& [trace_id, trace] : by_trace) {
      ASSERT_THAT(trace, SizeIs(2)) << trace_id;
      const nlohmann::json& root =
          trace[0]["parent_span_id"] == "" ? trace[0] : trace[1];
      const nlohmann::json& child = &root == &trace[0] ? trace[1] : trace[0];
      EXPECT_EQ(root["parent_span_id"], "") << trace_id;
      EXPECT_EQ(child["parent_span_id"], root["span_id"]) << trace_id;
      const std::string kinds =
          absl::StrCat(root["kind"].get<std::string>(), ">",
                       child["kind"].get<std::string>());
      EXPECT_TRUE(kinds == "client>server" || kinds == "producer>consumer")
          << kinds;
      EXPECT_LE(root["start_time_unix_nano"].get<int64_t>(),
                root["end_time_unix_nano"].get<int64_t>());
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

}  // namespace
}  // namespace natsgw
