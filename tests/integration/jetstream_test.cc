// JetStream reliability against real nats-servers: provisioning, producer
// acks / de-duplication / retries, and consumer acks, naks with backoff, dead
// letters, idempotency, graceful stop. Each scenario counts end to end: N
// published, N handled, nothing lost, no side effect twice.
#include "natsgw/jetstream.h"

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gateway_test_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/capturing_logger.h"
#include "harness/sync_points.h"
#include "natsgw/idempotency_store.h"
#include "natsgw/kv_idempotency_store.h"
#include "natsgw/logger.h"
#include "natsgw/service_error.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/stream_publisher.h"
#include "natsgw/trace_context.h"

namespace natsgw {
namespace {

using ::natsgw::testing::Eventually;
using ::testing::HasSubstr;

// Side effects by message ID, as a handler performs them.
class SideEffects {
 public:
  void Record(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_[id];
  }
  size_t distinct() const {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_.size();
  }
  // IDs handled more than once.
  std::vector<std::string> Duplicates() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& [id, n] : counts_)
      if (n > 1) out.push_back(absl::StrCat(id, " x", n));
    return out;
  }
  // IDs of [0, n) never handled.
  std::vector<std::string> Missing(int n, absl::string_view prefix) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
      const std::string id = absl::StrCat(prefix, i);
      if (!counts_.contains(id)) out.push_back(id);
    }
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
};

StreamConfig Orders(int replicas = 1) {
  StreamConfig c;
  c.name = "ORDERS";
  c.subjects = {"orders.>"};
  c.replicas = replicas;
  c.duplicate_window = absl::Minutes(2);
  return c;
}

StreamConsumerOptions Worker(absl::string_view durable = "worker") {
  StreamConsumerOptions o;
  o.consumer.stream = "ORDERS";
  o.consumer.durable = std::string(durable);
  o.consumer.ack_wait = absl::Seconds(5);
  o.workers = 4;
  o.fetch_wait = absl::Milliseconds(200);
  o.max_deliveries = 4;
  o.nak_backoff.initial_backoff = absl::Milliseconds(50);
  o.nak_backoff.max_backoff = absl::Milliseconds(200);
  return o;
}

class JetStreamTest : public testing::GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    if (HasFatalFailure()) return;
    conn_ = Connect();
    ASSERT_NE(conn_, nullptr);
    auto js = JetStream::Create(*conn_);
    ASSERT_TRUE(js.ok()) << js.status();
    js_ = *std::move(js);
  }
  void TearDown() override {
    js_.reset();
    conn_.reset();
    GatewayTest::TearDown();
  }

  std::unique_ptr<StreamPublisher> Publisher(StreamPublisherOptions o = {}) {
    if (o.stream.empty()) o.stream = "ORDERS";
    auto p = StreamPublisher::Create(*js_, o);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : nullptr;
  }

  // Publishes orders.created with IDs <prefix>0 .. <prefix>n-1.
  void PublishN(StreamPublisher& p, int n, absl::string_view prefix = "m-") {
    for (int i = 0; i < n; ++i) {
      StreamPublishOptions o;
      o.message_id = absl::StrCat(prefix, i);
      auto ack = p.Publish("orders.created", absl::StrCat("order ", i), o);
      ASSERT_TRUE(ack.ok()) << ack.status();
    }
  }

  std::unique_ptr<Connection> conn_;
  std::unique_ptr<JetStream> js_;
};

TEST_F(JetStreamTest, EnsureStreamCreatesThenVerifiesAndNamesMismatches) {
  auto created = js_->EnsureStream(Orders());
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(created->created);
  auto again = js_->EnsureStream(Orders());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->config.duplicate_window, absl::Minutes(2));

  StreamConfig other = Orders();
  other.duplicate_window = absl::Minutes(1);
  other.subjects = {"orders.>", "refunds.>"};
  auto mismatch = js_->EnsureStream(other);
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(mismatch.status().message(), HasSubstr("duplicate_window"));
  EXPECT_THAT(mismatch.status().message(), HasSubstr("subjects"));

  StreamConfig bad = Orders();
  bad.name = "has.dot";
  EXPECT_EQ(js_->EnsureStream(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(js_->GetStream("NOPE").status().code(),
            absl::StatusCode::kNotFound);

  ConsumerConfig c = Worker().consumer;
  auto consumer = js_->EnsureConsumer(c);
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  EXPECT_TRUE(consumer->created);
  c.ack_wait = absl::Seconds(9);
  auto differs = js_->EnsureConsumer(c);
  EXPECT_EQ(differs.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(differs.status().message(), HasSubstr("ack_wait"));
  c.stream = "MISSING";
  EXPECT_EQ(js_->EnsureConsumer(c).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(JetStreamTest, PublishIsAcknowledgedAndDeduplicatedByMessageId) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  auto p = Publisher();
  ASSERT_NE(p, nullptr);
  StreamPublishOptions o;
  o.message_id = "order-1";
  auto first = p->Publish("orders.created", "a", o);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->stream, "ORDERS");
  EXPECT_EQ(first->sequence, 1u);
  EXPECT_FALSE(first->duplicate);
  EXPECT_EQ(first->attempts, 1);
  EXPECT_EQ(first->sent.message_id, "order-1");
  EXPECT_TRUE(first->sent.trace.valid());

  auto again = p->Publish("orders.created", "a", o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->sequence, 1u);
  auto state = js_->GetStream("ORDERS");
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->messages, 1u);
  EXPECT_THAT(Scrape(), HasSubstr("natsgw_js_published_total{result="
                                  "\"duplicate\",stream=\"ORDERS\"} 1"));
}

TEST_F(JetStreamTest, NonRetryableFailuresSurfaceAtOnceWithTheRule) {
  StreamConfig c = Orders();
  c.max_msg_size = 1024;  // headers count too
  ASSERT_TRUE(js_->EnsureStream(c).ok());
  StreamConfig other;
  other.name = "AUDIT";
  other.subjects = {"audit.>"};
  ASSERT_TRUE(js_->EnsureStream(other).ok());
  auto p = Publisher();
  ASSERT_NE(p, nullptr);

  auto large = p->Publish("orders.created", std::string(2000, 'x'));
  EXPECT_EQ(large.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(large.status().message(), HasSubstr("max_msg_size"));

  ASSERT_TRUE(p->Publish("orders.created", "one").ok());
  StreamPublishOptions expect;
  expect.expected_last_sequence = 7;
  auto wrong = p->Publish("orders.created", "two", expect);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(wrong.status().message(), HasSubstr("wrong last sequence"));
  EXPECT_TRUE(TraceIdFromStatus(wrong.status()).has_value());
  expect.expected_last_sequence = 1;
  EXPECT_TRUE(p->Publish("orders.created", "two", expect).ok());

  // Captured by another stream than the publisher's.
  auto mismatch = p->Publish("audit.login", "x");
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(mismatch.status().message(), HasSubstr("another stream"));

  // Bad input never reaches the wire.
  EXPECT_EQ(p->Publish("orders.*", "x").status().code(),
            absl::StatusCode::kInvalidArgument);
  StreamPublishOptions reserved;
  reserved.headers.Add("Nats-Expected-Stream", "X");
  EXPECT_EQ(p->Publish("orders.created", "x", reserved).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto state = js_->GetStream("ORDERS");
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->messages, 2u);
}

// Whoever answers on a subject answers the publish: a responder sending
// acks with mistyped fields gets a clear error, synchronously and
// asynchronously, never an exception out of the JSON library.
TEST_F(JetStreamTest, MistypedAcksFromAResponderAreErrorsNotCrashes) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  auto p = Publisher();
  ASSERT_NE(p, nullptr);
  std::mutex mu;
  std::string answer;
  auto rogue = conn_->Serve("rogue.acks", "",
                            [&](const Message&) -> absl::StatusOr<Reply> {
                              std::lock_guard<std::mutex> lock(mu);
                              return Reply{answer, {}};
                            });
  ASSERT_TRUE(rogue.ok()) << rogue.status();
  struct Case {
    const char* ack;
    absl::StatusCode code;
    const char* says;
  };
  for (const Case& c : {
           Case{R"({"stream":5,"seq":1})", absl::StatusCode::kUnknown,
                "malformed JetStream ack"},
           Case{R"({"stream":"ORDERS","seq":"1"})", absl::StatusCode::kUnknown,
                "malformed JetStream ack"},
           Case{R"({"stream":"ORDERS","seq":-3})", absl::StatusCode::kUnknown,
                "malformed JetStream ack"},
           Case{R"({"error":{"code":"503","err_code":[1]}})",
                absl::StatusCode::kUnknown, "the stream refused it: ?"},
           Case{R"({"error":{"code":400,"description":7}})",
                absl::StatusCode::kFailedPrecondition,
                "the stream refused it: ?"},
           // A mistyped flag is not a duplicate.
           Case{R"({"stream":"ORDERS","seq":1,"duplicate":"yes"})",
                absl::StatusCode::kOk, ""},
       }) {
    {
      std::lock_guard<std::mutex> lock(mu);
      answer = c.ack;
    }
    auto sync = p->Publish("rogue.acks", "x");
    EXPECT_EQ(sync.status().code(), c.code) << c.ack << ": " << sync.status();
    EXPECT_THAT(sync.status().message(), HasSubstr(c.says)) << c.ack;
    if (sync.ok()) {
      EXPECT_FALSE(sync->duplicate) << c.ack;
    }
    testing::Latch done(1);
    absl::StatusCode async_code = absl::StatusCode::kOk;
    ASSERT_TRUE(p->PublishAsync("rogue.acks", "x", {},
                                [&](absl::StatusOr<PublishAck> ack) {
                                  async_code = ack.status().code();
                                  done.CountDown();
                                })
                    .ok());
    ASSERT_TRUE(done.Wait()) << c.ack;
    EXPECT_EQ(async_code, c.code) << c.ack;
  }
}

TEST_F(JetStreamTest, RetryBudgetMustEndInsideTheDuplicateWindow) {
  StreamConfig c = Orders();
  c.duplicate_window = absl::Seconds(5);
  ASSERT_TRUE(js_->EnsureStream(c).ok());
  StreamPublisherOptions o;
  o.stream = "ORDERS";
  o.attempt_timeout = absl::Seconds(2);
  o.retry.max_attempts = 5;
  auto p = StreamPublisher::Create(*js_, o);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(p.status().message(), HasSubstr("duplicate window"));
  o.retry.max_attempts = 2;
  o.attempt_timeout = absl::Seconds(1);
  EXPECT_TRUE(StreamPublisher::Create(*js_, o).ok());
  o.stream = "MISSING";
  EXPECT_EQ(StreamPublisher::Create(*js_, o).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(JetStreamTest, AsyncPublishesStayWithinTheBoundAndAreAllAcked) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  StreamPublisherOptions o;
  o.max_pending = 8;
  auto p = Publisher(o);
  ASSERT_NE(p, nullptr);
  constexpr int kN = 400;
  std::atomic<int> acked{0}, failed{0};
  std::atomic<size_t> max_seen{0};
  for (int i = 0; i < kN; ++i) {
    StreamPublishOptions po;
    po.message_id = absl::StrCat("a-", i);
    ASSERT_TRUE(p->PublishAsync("orders.created", "x", po,
                                [&](absl::StatusOr<PublishAck> ack) {
                                  (ack.ok() ? acked : failed)++;
                                })
                    .ok());
    size_t pending = p->pending();
    size_t seen = max_seen.load();
    while (pending > seen && !max_seen.compare_exchange_weak(seen, pending)) {
    }
  }
  ASSERT_TRUE(p->WaitForAcks(absl::Seconds(20)).ok());
  EXPECT_EQ(acked.load(), kN);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_LE(max_seen.load(), 8u);
  EXPECT_EQ(js_->GetStream("ORDERS")->messages, static_cast<uint64_t>(kN));
}

TEST_F(JetStreamTest, ConsumerHandlesEveryMessageOnceAndAcks) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  auto p = Publisher();
  ASSERT_NE(p, nullptr);
  constexpr int kN = 300;
  PublishN(*p, kN);
  SideEffects effects;
  std::atomic<int> concurrent{0}, max_concurrent{0};
  auto consumer = StreamConsumer::Create(
      *js_, Worker(), [&](const Delivery& d) -> DeliveryOutcome {
        const int now = ++concurrent;
        int seen = max_concurrent.load();
        while (now > seen && !max_concurrent.compare_exchange_weak(seen, now)) {
        }
        effects.Record(d.message().message_id);
        --concurrent;
        return absl::OkStatus();
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE(Eventually([&] { return effects.distinct() == kN; }))
      << effects.distinct();
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
  EXPECT_THAT(effects.Missing(kN, "m-"), ::testing::IsEmpty());
  EXPECT_THAT(effects.Duplicates(), ::testing::IsEmpty());
  EXPECT_LE(max_concurrent.load(), 4);
  EXPECT_EQ((*consumer)->stats().acked, kN);
  auto state = js_->GetConsumer("ORDERS", "worker");
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->ack_pending, 0u);
  EXPECT_EQ(state->pending, 0u);
}

TEST_F(JetStreamTest, HandlerContinuesTheProducersTrace) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  auto p = Publisher();
  ASSERT_NE(p, nullptr);
  auto ack = p->Publish("orders.created", "x");
  ASSERT_TRUE(ack.ok()) << ack.status();
  std::mutex mu;
  std::optional<TraceContext> current;
  std::optional<TraceContext> carried;
  auto consumer = StreamConsumer::Create(
      *js_, Worker(), [&](const Delivery& d) -> DeliveryOutcome {
        std::lock_guard<std::mutex> lock(mu);
        current = CurrentTraceContext();
        carried = d.message().trace;
        return absl::OkStatus();
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE(Eventually([&] { return (*consumer)->stats().acked == 1; }));
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_TRUE(current.has_value());
  // Anything the handler sends continues the producer's trace.
  EXPECT_EQ(current->TraceIdHex(), ack->sent.trace.TraceIdHex());
  EXPECT_EQ(carried->TraceIdHex(), ack->sent.trace.TraceIdHex());
  EXPECT_EQ(carried->SpanIdHex(), ack->sent.trace.SpanIdHex());
}

TEST_F(JetStreamTest, FailingHandlerIsRedeliveredWithBackoffThenSucceeds) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  auto p = Publisher();
  ASSERT_NE(p, nullptr);
  constexpr int kN = 20;
  PublishN(*p, kN);
  SideEffects effects;
  std::mutex mu;
  std::map<std::string, std::vector<absl::Time>> attempts;
  auto consumer = StreamConsumer::Create(
      *js_, Worker(), [&](const Delivery& d) -> DeliveryOutcome {
        {
          std::lock_guard<std::mutex> lock(mu);
          attempts[d.message().message_id].push_back(absl::Now());
        }
        // Fails on the first two deliveries, succeeds on the third.
        if (d.delivery_count() < 3) {
          return absl::UnavailableError("mail server busy");
        }
        effects.Record(d.message().message_id);
        return DeliveryOutcome::Ack();
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE(Eventually([&] { return effects.distinct() == kN; }));
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
  EXPECT_THAT(effects.Duplicates(), ::testing::IsEmpty());
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& [id, times] : attempts) {
    ASSERT_EQ(times.size(), 3u) << id;
    // The nak delay (50 ms, then 100 ms, 20% jitter) separates deliveries.
    EXPECT_GE(times[1] - times[0], absl::Milliseconds(35)) << id;
    EXPECT_GE(times[2] - times[1], absl::Milliseconds(75)) << id;
  }
  EXPECT_EQ((*consumer)->stats().naked, 2 * kN);
  EXPECT_EQ((*consumer)->stats().redelivered, 2 * kN);
}

TEST_F(JetStreamTest, PoisonMessageEndsInTheDeadLetterStreamWithItsHeaders) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  StreamConfig dlq;
  dlq.name = "DLQ";
  dlq.subjects = {"dlq.>"};
  ASSERT_TRUE(js_->EnsureStream(dlq).ok());
  auto p = Publisher();
  ASSERT_NE(p, nullptr);
  StreamPublishOptions po;
  po.message_id = "poison-1";
  po.headers.Add("Tenant", "acme");
  auto sent = p->Publish("orders.created", "poison", po);
  ASSERT_TRUE(sent.ok());
  PublishN(*p, 5, "ok-");

  SideEffects effects;
  std::atomic<int> poison_runs{0};
  StreamConsumerOptions o = Worker();
  o.dead_letter_subject = "dlq.orders";
  o.dead_letter_stream = "DLQ";
  auto consumer = StreamConsumer::Create(
      *js_, o, [&](const Delivery& d) -> DeliveryOutcome {
        if (d.message().data == "poison") {
          ++poison_runs;
          return absl::InternalError("cannot parse order");
        }
        effects.Record(d.message().message_id);
        return absl::OkStatus();
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE(Eventually([&] {
    return (*consumer)->stats().dead_lettered == 1 && effects.distinct() == 5;
  }));
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
  EXPECT_EQ(poison_runs.load(), 4);  // max_deliveries

  // Read the dead letter back with a consumer of the DLQ stream.
  std::mutex mu;
  std::vector<Message> letters;
  StreamConsumerOptions r = Worker("dlq-reader");
  r.consumer.stream = "DLQ";
  auto reader = StreamConsumer::Create(
      *js_, r, [&](const Delivery& d) -> DeliveryOutcome {
        std::lock_guard<std::mutex> lock(mu);
        letters.push_back(d.message());
        return absl::OkStatus();
      });
  ASSERT_TRUE(reader.ok()) << reader.status();
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lock(mu);
    return !letters.empty();
  }));
  ASSERT_TRUE((*reader)->Stop(absl::Seconds(5)).ok());
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(letters.size(), 1u);
  const Message& m = letters[0];
  EXPECT_EQ(m.data, "poison");
  EXPECT_EQ(m.message_id, "poison-1");
  EXPECT_EQ(m.trace.TraceIdHex(), sent->sent.trace.TraceIdHex());
  EXPECT_EQ(m.headers.Get("Tenant"), "acme");
  EXPECT_THAT(std::string(*m.headers.Get("Dead-Letter-Reason")),
              HasSubstr("cannot parse order"));
  EXPECT_EQ(m.headers.Get("Dead-Letter-Deliveries"), "4");
  EXPECT_EQ(m.headers.Get("Dead-Letter-Stream"), "ORDERS");
  EXPECT_EQ(m.headers.Get("Dead-Letter-Subject"), "orders.created");
  EXPECT_THAT(Scrape(),
              HasSubstr("natsgw_js_dead_lettered_total{consumer=\"worker\","
                        "stream=\"ORDERS\"} 1"));
}

TEST_F(JetStreamTest, PermanentErrorIsDeadLetteredWithoutRetrying) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  auto p = Publisher();
  ASSERT_NE(p, nullptr);
  PublishN(*p, 1);
  std::atomic<int> runs{0};
  auto consumer = StreamConsumer::Create(
      *js_, Worker(), [&](const Delivery&) -> DeliveryOutcome {
        ++runs;
        return absl::InvalidArgumentError("order has no items");
      });
  ASSERT_TRUE(consumer.ok());
  ASSERT_TRUE(Eventually([&] { return (*consumer)->stats().terminated == 1; }));
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ((*consumer)->stats().dead_lettered, 1);
}

TEST_F(JetStreamTest, RepublishedMessageCausesNoSecondSideEffect) {
  // A short duplicate window, so the stream stores the replay again and
  // only the consumer's idempotency store stands between it and a second
  // side effect.
  StreamConfig c = Orders();
  c.duplicate_window = absl::Milliseconds(200);
  ASSERT_TRUE(js_->EnsureStream(c).ok());
  StreamPublisherOptions po;
  po.attempt_timeout = absl::Milliseconds(50);
  po.retry.max_attempts = 1;
  auto p = Publisher(po);
  ASSERT_NE(p, nullptr);
  PublishN(*p, 10);
  absl::SleepFor(absl::Milliseconds(400));
  PublishN(*p, 10);  // the same IDs, stored again
  ASSERT_EQ(js_->GetStream("ORDERS")->messages, 20u);

  SideEffects effects;
  auto consumer = StreamConsumer::Create(
      *js_, Worker(), [&](const Delivery& d) -> DeliveryOutcome {
        effects.Record(d.message().message_id);
        return absl::OkStatus();
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE(Eventually([&] {
    auto s = (*consumer)->stats();
    return s.acked == 20;
  }));
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
  EXPECT_EQ(effects.distinct(), 10u);
  EXPECT_THAT(effects.Duplicates(), ::testing::IsEmpty());
  EXPECT_EQ((*consumer)->stats().skipped_duplicates, 10);
}

TEST_F(JetStreamTest, ReplicasSharingAKvStoreAgreeOnWhatWasHandled) {
  StreamConfig c = Orders();
  c.duplicate_window = absl::Milliseconds(200);
  ASSERT_TRUE(js_->EnsureStream(c).ok());
  KvIdempotencyOptions kv;
  kv.bucket = "orders-idempotency";
  kv.ttl = absl::Minutes(5);
  auto store = KvIdempotencyStore::Create(*js_, kv);
  ASSERT_TRUE(store.ok()) << store.status();
  // The same bucket with another TTL is refused.
  kv.ttl = absl::Minutes(1);
  EXPECT_EQ(KvIdempotencyStore::Create(*js_, kv).status().code(),
            absl::StatusCode::kFailedPrecondition);

  StreamPublisherOptions po;
  po.attempt_timeout = absl::Milliseconds(50);
  po.retry.max_attempts = 1;
  auto p = Publisher(po);
  ASSERT_NE(p, nullptr);
  constexpr int kN = 60;
  PublishN(*p, kN);
  absl::SleepFor(absl::Milliseconds(400));
  PublishN(*p, kN);  // a replay past the stream's window

  // Two replicas (two connections, as two processes would have) of one
  // durable consumer, one shared store.
  SideEffects effects;
  std::vector<std::unique_ptr<Connection>> conns;
  std::vector<std::unique_ptr<JetStream>> jss;
  std::vector<std::unique_ptr<StreamConsumer>> consumers;
  for (int r = 0; r < 2; ++r) {
    conns.push_back(Connect());
    ASSERT_NE(conns.back(), nullptr);
    jss.push_back(*JetStream::Create(*conns.back()));
    auto replica_store = KvIdempotencyStore::Create(
        *jss.back(), {.bucket = "orders-idempotency", .ttl = absl::Minutes(5)});
    ASSERT_TRUE(replica_store.ok()) << replica_store.status();
    StreamConsumerOptions o = Worker();
    o.idempotency = *replica_store;
    auto consumer = StreamConsumer::Create(
        *jss.back(), o, [&](const Delivery& d) -> DeliveryOutcome {
          effects.Record(d.message().message_id);
          return absl::OkStatus();
        });
    ASSERT_TRUE(consumer.ok()) << consumer.status();
    consumers.push_back(*std::move(consumer));
  }
  ASSERT_TRUE(Eventually([&] {
    return consumers[0]->stats().acked + consumers[1]->stats().acked == 2 * kN;
  }));
  for (auto& consumer : consumers)
    ASSERT_TRUE(consumer->Stop(absl::Seconds(5)).ok());
  EXPECT_EQ(effects.distinct(), static_cast<size_t>(kN));
  EXPECT_THAT(effects.Duplicates(), ::testing::IsEmpty());
  EXPECT_EQ(consumers[0]->stats().skipped_duplicates +
                consumers[1]->stats().skipped_duplicates,
            kN);
  consumers.clear();
  jss.clear();
}

TEST_F(JetStreamTest, IdempotencyTtlMustCoverRedeliveries) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  StreamConsumerOptions o = Worker();
  o.idempotency = std::make_shared<InMemoryIdempotencyStore>(absl::Seconds(1));
  auto consumer = StreamConsumer::Create(
      *js_, o, [](const Delivery&) { return DeliveryOutcome::Ack(); });
  EXPECT_EQ(consumer.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(consumer.status().message(), HasSubstr("ack_wait"));
  o.idempotency = std::make_shared<InMemoryIdempotencyStore>(
      StreamConsumer::RequiredIdempotencyTtl(o));
  EXPECT_TRUE(StreamConsumer::Create(*js_, o, [](const Delivery&) {
                return DeliveryOutcome::Ack();
              }).ok());
}

TEST_F(JetStreamTest, ADeletedConsumerIsReportedOnce) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  auto logger = std::make_shared<testing::CapturingLogger>();
  ConnectionOptions options = Options();
  options.logger = logger;
  auto conn = Connect(options);
  ASSERT_NE(conn, nullptr);
  auto js = JetStream::Create(*conn);
  ASSERT_TRUE(js.ok());
  auto consumer = StreamConsumer::Create(
      **js, Worker(), [](const Delivery&) { return DeliveryOutcome::Ack(); });
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE(js_->DeleteConsumer("ORDERS", "worker").ok());
  EXPECT_EQ(js_->DeleteConsumer("ORDERS", "worker").code(),
            absl::StatusCode::kNotFound);
  // Depending on timing the pull in progress ends with a 409, or the next
  // one goes unanswered; either way the puller says so and keeps trying at a
  // slow pace rather than spinning.
  auto reports = [&] {
    std::vector<std::string> out = logger->Matching("Consumer Deleted");
    for (std::string& line :
         logger->Matching("pull request unanswered: NOT_FOUND")) {
      out.push_back(std::move(line));
    }
    return out;
  };
  EXPECT_TRUE(Eventually([&] { return !reports().empty(); }));
  absl::SleepFor(absl::Seconds(2));
  // One line per distinct problem (at most the 409, then the unanswered
  // pulls), not one per pull.
  EXPECT_LE(reports().size(), 2u) << ::testing::PrintToString(logger->lines());
  EXPECT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
}

TEST_F(JetStreamTest, LongHandlerKeepsTheMessageWithHeartbeats) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  auto p = Publisher();
  ASSERT_NE(p, nullptr);
  PublishN(*p, 1);
  StreamConsumerOptions o = Worker();
  o.consumer.ack_wait = absl::Milliseconds(300);
  o.in_progress_interval = absl::Milliseconds(100);
  std::atomic<int> runs{0};
  auto consumer =
      StreamConsumer::Create(*js_, o, [&](const Delivery&) -> DeliveryOutcome {
        ++runs;
        absl::SleepFor(absl::Seconds(1));  // over three ack waits
        return absl::OkStatus();
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  ASSERT_TRUE(Eventually([&] { return (*consumer)->stats().acked == 1; }));
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
  EXPECT_EQ(runs.load(), 1);
  EXPECT_GE((*consumer)->stats().in_progress, 3);
  EXPECT_EQ((*consumer)->stats().redelivered, 0);
}

TEST_F(JetStreamTest, StopFinishesRunningWorkAndHandsBackTheRest) {
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  auto p = Publisher();
  ASSERT_NE(p, nullptr);
  constexpr int kN = 40;
  PublishN(*p, kN);
  SideEffects effects;
  std::atomic<int> started{0};
  StreamConsumerOptions o = Worker();
  o.workers = 2;
  auto consumer = StreamConsumer::Create(
      *js_, o, [&](const Delivery& d) -> DeliveryOutcome {
        ++started;
        absl::SleepFor(absl::Milliseconds(100));
        effects.Record(d.message().message_id);
        return absl::OkStatus();
      });
  ASSERT_TRUE(consumer.ok());
  ASSERT_TRUE(Eventually([&] { return started.load() >= 2; }));
  // Graceful: the running handlers complete and are acked.
  (*consumer)->Stop(absl::Seconds(2)).IgnoreError();
  const int handled = static_cast<int>(effects.distinct());
  EXPECT_EQ((*consumer)->stats().acked, handled);
  EXPECT_LT(handled, kN);

  // A new instance gets the rest, nothing twice.
  auto next = StreamConsumer::Create(*js_, Worker(),
                                     [&](const Delivery& d) -> DeliveryOutcome {
                                       effects.Record(d.message().message_id);
                                       return absl::OkStatus();
                                     });
  ASSERT_TRUE(next.ok());
  ASSERT_TRUE(Eventually([&] { return effects.distinct() == kN; }));
  ASSERT_TRUE((*next)->Stop(absl::Seconds(5)).ok());
  EXPECT_THAT(effects.Duplicates(), ::testing::IsEmpty());
}

// Producer and consumer keep going through a crash (SIGKILL) and restart of
// the only server: everything acknowledged is stored once and handled once.
TEST_F(JetStreamTest, SurvivesAServerRestartMidStream) {
  ConnectionOptions options = Options();
  options.reconnect.wait = absl::Milliseconds(50);
  conn_ = Connect(options);
  js_ = *JetStream::Create(*conn_);
  ASSERT_TRUE(js_->EnsureStream(Orders()).ok());
  StreamPublisherOptions po;
  po.attempt_timeout = absl::Milliseconds(500);
  po.retry.max_attempts = 20;
  po.retry.initial_backoff = absl::Milliseconds(50);
  po.retry.max_backoff = absl::Milliseconds(500);
  auto p = Publisher(po);
  ASSERT_NE(p, nullptr);
  SideEffects effects;
  auto consumer = StreamConsumer::Create(
      *js_, Worker(), [&](const Delivery& d) -> DeliveryOutcome {
        effects.Record(d.message().message_id);
        return absl::OkStatus();
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();

  constexpr int kN = 200;
  std::atomic<int> acked{0};
  std::thread producer([&] {
    for (int i = 0; i < kN; ++i) {
      StreamPublishOptions o;
      o.message_id = absl::StrCat("m-", i);
      auto ack = p->Publish("orders.created", "x", o);
      EXPECT_TRUE(ack.ok()) << i << ": " << ack.status();
      if (ack.ok()) ++acked;
    }
  });
  ASSERT_TRUE(Eventually([&] { return acked.load() >= kN / 4; }));
  ASSERT_TRUE(server().Kill().ok());
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_TRUE(server().Restart().ok());
  producer.join();
  ASSERT_EQ(acked.load(), kN);
  ASSERT_TRUE(
      Eventually([&] { return effects.distinct() == kN; }, absl::Seconds(30)))
      << effects.distinct();
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
  EXPECT_THAT(effects.Missing(kN, "m-"), ::testing::IsEmpty());
  EXPECT_THAT(effects.Duplicates(), ::testing::IsEmpty());
  EXPECT_EQ(js_->GetStream("ORDERS")->messages, static_cast<uint64_t>(kN));
}

// A 3-node cluster with an R3 stream: the stream leader is killed (SIGKILL)
// mid-stream. Publishes in flight are retried until a new leader answers;
// every acknowledged message is stored once and handled once.
class JetStreamClusterTest : public testing::NatsClusterTest {};

TEST_F(JetStreamClusterTest, KillingTheStreamLeaderMidStreamLosesNothing) {
  ConnectionOptions options;
  options.servers = cluster().url_list();
  options.name = "JetStreamClusterTest";
  options.reconnect.wait = absl::Milliseconds(50);
  options.logger = std::make_shared<StderrLogger>(absl::LogSeverity::kWarning);
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  auto js = JetStream::Create(**conn);
  ASSERT_TRUE(js.ok());
  ASSERT_TRUE((*js)->EnsureStream(Orders(/*replicas=*/3)).ok());
  auto stream = (*js)->GetStream("ORDERS");
  ASSERT_TRUE(stream.ok());
  const int leader = cluster().IndexOf(stream->leader);
  ASSERT_GE(leader, 0) << "stream leader '" << stream->leader << "'";

  StreamPublisherOptions po;
  po.stream = "ORDERS";
  po.attempt_timeout = absl::Seconds(1);
  // Backoffs of 25 to 51 s in all: an election on a loaded machine took
  // longer than the 7 to 13 s that 500 ms backoffs allowed.
  po.retry.max_attempts = 30;
  po.retry.initial_backoff = absl::Milliseconds(50);
  po.retry.max_backoff = absl::Seconds(2);
  auto publisher = StreamPublisher::Create(**js, po);
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  SideEffects effects;
  auto consumer = StreamConsumer::Create(
      **js, Worker(), [&](const Delivery& d) -> DeliveryOutcome {
        effects.Record(d.message().message_id);
        return absl::OkStatus();
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();

  constexpr int kN = 300;
  std::atomic<int> acked{0};
  absl::Duration longest = absl::ZeroDuration();
  std::thread producer([&] {
    for (int i = 0; i < kN; ++i) {
      StreamPublishOptions o;
      o.message_id = absl::StrCat("m-", i);
      const absl::Time start = absl::Now();
      auto ack = (*publisher)->Publish("orders.created", "x", o);
      longest = std::max(longest, absl::Now() - start);
      EXPECT_TRUE(ack.ok()) << i << ": " << ack.status();
      if (ack.ok()) ++acked;
    }
  });
  ASSERT_TRUE(Eventually([&] { return acked.load() >= kN / 3; }));
  ASSERT_TRUE(cluster().node(leader).Kill().ok());
  producer.join();
  ASSERT_EQ(acked.load(), kN);
  ASSERT_TRUE(
      Eventually([&] { return effects.distinct() == kN; }, absl::Seconds(60)))
      << effects.distinct();
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
  EXPECT_THAT(effects.Missing(kN, "m-"), ::testing::IsEmpty());
  EXPECT_THAT(effects.Duplicates(), ::testing::IsEmpty());
  auto after = (*js)->GetStream("ORDERS");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->messages, static_cast<uint64_t>(kN));
  EXPECT_NE(after->leader, stream->leader);
  // Unavailability as the producer saw it (reported, not asserted).
  std::cout << "leader " << stream->leader << " killed; new leader "
            << after->leader << "; longest publish "
            << absl::FormatDuration(longest) << std::endl;
  consumer->reset();
  publisher->reset();
}

}  // namespace
}  // namespace natsgw
