// JetStream declarations and policies checked without a server: names,
// stream and consumer configurations, the producer's retry budget, the
// consumer's idempotency TTL and how handler results become outcomes.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/kv_idempotency_store.h"
#include "natsgw/stream_config.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/stream_publisher.h"

namespace natsgw {
namespace {

using ::testing::HasSubstr;

StreamConfig Valid() {
  StreamConfig c;
  c.name = "ORDERS";
  c.subjects = {"orders.>"};
  return c;
}

TEST(JetStreamNameTest, FollowsTheServersRules) {
  EXPECT_TRUE(ValidateJetStreamName("ORDERS_v2-x", "stream name").ok());
  for (const char* bad :
       {"", "a.b", "a*", "a>", "a/b", "a\\b", "a b", "a\tb"}) {
    absl::Status s = ValidateJetStreamName(bad, "stream name");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("stream name")) << bad;
  }
  EXPECT_FALSE(ValidateJetStreamName(std::string(256, 'a'), "x").ok());
}

TEST(StreamConfigTest, RejectsWhatTheServerWouldOrWhatBreaksDeduplication) {
  EXPECT_TRUE(ValidateStreamConfig(Valid()).ok());
  StreamConfig c = Valid();
  c.subjects.clear();
  EXPECT_THAT(ValidateStreamConfig(c).message(), HasSubstr("no subjects"));
  c = Valid();
  c.subjects = {"orders..x"};
  EXPECT_EQ(ValidateStreamConfig(c).code(), absl::StatusCode::kInvalidArgument);
  c = Valid();
  c.replicas = 0;
  EXPECT_THAT(ValidateStreamConfig(c).message(), HasSubstr("replicas"));
  c = Valid();
  c.duplicate_window = absl::ZeroDuration();
  EXPECT_THAT(ValidateStreamConfig(c).message(),
              HasSubstr("duplicate_window must be positive"));
  c = Valid();
  c.max_age = absl::Minutes(1);
  c.duplicate_window = absl::Minutes(2);
  EXPECT_THAT(ValidateStreamConfig(c).message(), HasSubstr("exceeds max_age"));
}

TEST(ConsumerConfigTest, RejectsUnusableValues) {
  ConsumerConfig c;
  c.stream = "ORDERS";
  c.durable = "worker";
  EXPECT_TRUE(ValidateConsumerConfig(c).ok());
  c.durable = "has.dot";
  EXPECT_THAT(ValidateConsumerConfig(c).message(), HasSubstr("durable name"));
  c.durable = "worker";
  c.ack_wait = absl::ZeroDuration();
  EXPECT_THAT(ValidateConsumerConfig(c).message(), HasSubstr("ack_wait"));
  c.ack_wait = absl::Seconds(1);
  c.max_deliver = 0;
  EXPECT_THAT(ValidateConsumerConfig(c).message(), HasSubstr("max_deliver"));
  c.max_deliver = -1;
  c.filter_subject = "orders.>.x";
  EXPECT_THAT(ValidateConsumerConfig(c).message(), HasSubstr("filter_subject"));
}

TEST(StreamPublishRetryBudgetTest, CountsEveryAttemptAndTheLongestBackoffs) {
  StreamPublisherOptions o;
  o.attempt_timeout = absl::Seconds(1);
  o.retry.max_attempts = 4;
  o.retry.initial_backoff = absl::Milliseconds(100);
  o.retry.max_backoff = absl::Milliseconds(300);
  o.retry.multiplier = 2;
  o.retry.jitter = 0.5;
  // 4 x 1 s + 100 ms + 200 ms + 300 ms (capped).
  EXPECT_EQ(StreamPublishRetryBudget(o), absl::Milliseconds(4600));
  o.retry.max_attempts = 1;
  EXPECT_EQ(StreamPublishRetryBudget(o), absl::Seconds(1));
  // The defaults fit the server's default 2-minute duplicate window.
  EXPECT_LT(StreamPublishRetryBudget(StreamPublisherOptions{}),
            absl::Minutes(2));
  // And their backoffs alone, even at their shortest (jitter takes up to
  // half), outlast a stream leader election (up to 9 s), during which every
  // attempt fails at once with no responders.
  StreamPublisherOptions defaults;
  defaults.attempt_timeout = absl::ZeroDuration();
  EXPECT_GT(StreamPublishRetryBudget(defaults) * (1 - defaults.retry.jitter),
            absl::Seconds(10));
}

TEST(StreamConsumerTest, RequiredIdempotencyTtlCoversEveryRedelivery) {
  StreamConsumerOptions o;
  o.consumer.ack_wait = absl::Seconds(10);
  o.max_deliveries = 3;
  o.nak_backoff.initial_backoff = absl::Seconds(1);
  o.nak_backoff.max_backoff = absl::Seconds(60);
  o.nak_backoff.multiplier = 2;
  // 3 x 10 s + 1 s + 2 s.
  EXPECT_EQ(StreamConsumer::RequiredIdempotencyTtl(o), absl::Seconds(33));
}

TEST(DeliveryOutcomeTest, StatusesMapToAckOrNak) {
  EXPECT_EQ(DeliveryOutcome(absl::OkStatus()).kind(),
            DeliveryOutcome::Kind::kAck);
  DeliveryOutcome failed = absl::UnavailableError("smtp down");
  EXPECT_EQ(failed.kind(), DeliveryOutcome::Kind::kNak);
  EXPECT_TRUE(failed.from_status());
  EXPECT_FALSE(failed.delay().has_value());
  DeliveryOutcome later =
      DeliveryOutcome::Nak(absl::UnavailableError("x"), absl::Seconds(3));
  EXPECT_EQ(later.delay(), absl::Seconds(3));
  EXPECT_FALSE(later.from_status());
  EXPECT_EQ(DeliveryOutcome::Term(absl::InvalidArgumentError("x")).kind(),
            DeliveryOutcome::Kind::kTerm);
}

TEST(KvIdempotencyStoreTest, KeysAreValidAndDistinct) {
  const std::string plain = KvIdempotencyStore::KeyFor("user-registered-u_1");
  EXPECT_EQ(plain, "user-registered-u_1");
  EXPECT_EQ(KvIdempotencyStore::KeyFor("a.b/c=d e"), "a=2Eb=2Fc=3Dd=20e");
  // '=' is escaped too, so an escaped form cannot collide with a literal.
  EXPECT_NE(KvIdempotencyStore::KeyFor("a=2E"),
            KvIdempotencyStore::KeyFor("a."));
  for (char c : KvIdempotencyStore::KeyFor("x\x01\xff.*>")) {
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' ||
                c == '_' || c == '=')
        << c;
  }
}

}  // namespace
}  // namespace natsgw
