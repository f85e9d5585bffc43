// Typed pub/sub (natsgw/event_topic.h, typed_publisher.h, typed_subscriber.h)
// without a NATS server: subject templates, option checks, and publishes
// that are refused before anything reaches the connection. The Connection is
// created with retry_on_failed_connect against a loopback port that refuses
// connections, so it exists but never connects: a publish that gets as far
// as Connection::Publish fails there and is counted in
// natsgw_errors_total{operation="publish"}, which tells it apart from one
// refused by the typed layer.
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "flatbuffers/flatbuffers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/connection.h"
#include "natsgw/event_topic.h"
#include "natsgw/schemas/users_generated.h"
#include "natsgw/testdata/nested_generated.h"
#include "natsgw/typed_publisher.h"
#include "natsgw/typed_subscriber.h"
#include "sdk_test_util.h"

namespace natsgw {
namespace {

using ::natsgw::testdata::Node;
using ::natsgw::users::UserRegistered;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr EventTopic<UserRegistered> kUserRegistered{
    .subject = "users.events.UserRegistered",
    .file_identifier = "NGUS",
    .type_name = "natsgw.users.UserRegistered"};

// The same type on a subject template.
constexpr EventTopic<UserRegistered> kRegionalUserRegistered{
    .subject = "users.*.events.UserRegistered",
    .file_identifier = "NGUS",
    .type_name = "natsgw.users.UserRegistered"};

constexpr EventTopic<Node> kNodes{.subject = "test.nodes",
                                  .file_identifier = "NGTN"};

flatbuffers::Offset<UserRegistered> BuildUser(
    flatbuffers::FlatBufferBuilder& fbb) {
  return users::CreateUserRegisteredDirect(fbb, "u-1", "ada@example.com", "Ada",
                                           1700000000000);
}

// A finished UserRegistered buffer with `file_identifier` (null: none).
std::string UserBytes(const char* file_identifier = "NGUS") {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(BuildUser(fbb), file_identifier);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                     fbb.GetSize());
}

// A chain of `depth` Nodes.
std::string NodeChain(int depth) {
  flatbuffers::FlatBufferBuilder fbb;
  flatbuffers::Offset<Node> node = testdata::CreateNode(fbb);
  for (int i = 1; i < depth; ++i) node = testdata::CreateNode(fbb, node);
  fbb.Finish(node, "NGTN");
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                     fbb.GetSize());
}

TEST(SubjectMatchesTest, MatchesLikeTheServer) {
  struct Case {
    absl::string_view pattern;
    absl::string_view subject;
    bool match;
  };
  const Case cases[] = {
      {"orders.created", "orders.created", true},
      {"orders.created", "orders.deleted", false},
      {"orders.created", "orders.created.x", false},
      {"orders.created.x", "orders.created", false},
      {"orders.*.created", "orders.eu.created", true},
      {"orders.*.created", "orders.eu.west.created", false},
      {"orders.*.created", "orders.eu.deleted", false},
      {"orders.*", "orders", false},
      {"*", "orders", true},
      {"*", "orders.eu", false},
      {"orders.>", "orders.eu", true},
      {"orders.>", "orders.eu.west.created", true},
      {"orders.>", "orders", false},
      {">", "a", true},
      {">", "a.b.c", true},
      {"*.*.created", "orders.eu.created", true},
      {"orders.*.>", "orders.eu", false},
      {"orders.*.>", "orders.eu.created", true},
      {"", "orders", false},
      {"orders", "", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(SubjectMatches(c.pattern, c.subject), c.match)
        << "pattern '" << c.pattern << "' subject '" << c.subject << "'";
  }
}

TEST(SubjectMatchesTest, IsSubjectTemplate) {
  EXPECT_FALSE(IsSubjectTemplate("users.events.UserRegistered"));
  EXPECT_FALSE(IsSubjectTemplate("a*.b>"));  // Not whole tokens.
  EXPECT_TRUE(IsSubjectTemplate("orders.*.created"));
  EXPECT_TRUE(IsSubjectTemplate("*"));
  EXPECT_TRUE(IsSubjectTemplate("orders.>"));
}

TEST(EventTopicTest, Validate) {
  EXPECT_TRUE(ValidateEventTopic(kUserRegistered).ok());
  EXPECT_TRUE(ValidateEventTopic(kRegionalUserRegistered).ok());
  EXPECT_TRUE(ValidateEventTopic("orders.>", "ACOR").ok());

  absl::Status s = ValidateEventTopic("orders..created", "ACOR");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("event topic"));
  EXPECT_EQ(ValidateEventTopic("orders.>.created", "ACOR").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateEventTopic("", "ACOR").code(),
            absl::StatusCode::kInvalidArgument);
  s = ValidateEventTopic("orders.created", "ACO");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("4 characters"));
  EXPECT_EQ(ValidateEventTopic("orders.created", "").code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EventTest, DeliveryLatency) {
  absl::StatusOr<Verified<UserRegistered>> payload =
      Verified<UserRegistered>::Verify(UserBytes(), "NGUS");
  ASSERT_TRUE(payload.ok()) << payload.status();
  const absl::Time received = absl::FromUnixSeconds(1000);
  Event<UserRegistered> event{*std::move(payload),
                              "users.events.UserRegistered",
                              {},
                              TraceContext::NewRoot(),
                              false,
                              "m-1",
                              std::nullopt,
                              received};
  EXPECT_EQ(event.delivery_latency(), std::nullopt);
  event.sent_at = received - absl::Milliseconds(3);
  EXPECT_EQ(event.delivery_latency(), absl::Milliseconds(3));
  EXPECT_EQ(event->user_id()->str(), "u-1");
  EXPECT_EQ((*event).email()->str(), "ada@example.com");
}

class TypedPubSubNoServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(port_.port(), 0) << std::strerror(errno);
    conn_ = Connect(registry_);
    ASSERT_NE(conn_, nullptr);
  }

  std::unique_ptr<Connection> Connect(
      std::shared_ptr<prometheus::Registry> registry) {
    ConnectionOptions options;
    options.servers = {absl::StrCat("nats://127.0.0.1:", port_.port())};
    options.name = "sdk-typed-pubsub-test";
    options.retry_on_failed_connect = true;
    options.reconnect.wait = absl::Seconds(1);
    options.registry = std::move(registry);
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Create(options);
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? *std::move(conn) : nullptr;
  }

  std::string Scrape() {
    return prometheus::TextSerializer().Serialize(registry_->Collect());
  }

  // How many publishes reached Connection::Publish: all fail there, for
  // want of a server (the code depends on what nats.c knows while
  // disconnected, never INVALID_ARGUMENT), and are counted under
  // operation="publish". With `refused`: how many the typed layer refused
  // before the connection (INVALID_ARGUMENT, counted in the same series).
  int PublishErrors(bool refused = false) {
    int total = 0;
    for (absl::string_view line : absl::StrSplit(Scrape(), '\n')) {
      if (!absl::StartsWith(line, "natsgw_errors_total{") ||
          !absl::StrContains(line, "operation=\"publish\"") ||
          absl::StrContains(line, "code=\"INVALID_ARGUMENT\"") != refused) {
        continue;
      }
      int value = 0;
      if (absl::SimpleAtoi(line.substr(line.rfind(' ') + 1), &value)) {
        total += value;
      }
    }
    return total;
  }

  // A publish refused by the connection (not by the typed layer).
  static bool ReachedConnection(const absl::Status& status) {
    return !status.ok() && status.code() != absl::StatusCode::kInvalidArgument;
  }

  TypedPublisher<UserRegistered> Publisher(
      const EventTopic<UserRegistered>& topic = kUserRegistered) {
    absl::StatusOr<TypedPublisher<UserRegistered>> p =
        TypedPublisher<UserRegistered>::Create(*conn_, topic);
    EXPECT_TRUE(p.ok()) << p.status();
    return *std::move(p);
  }

  testing::RefusingPort port_;
  std::shared_ptr<prometheus::Registry> registry_ =
      std::make_shared<prometheus::Registry>();
  std::unique_ptr<Connection> conn_;
};

TEST_F(TypedPubSubNoServerTest, PublisherCreateChecksTopicAndOptions) {
  ASSERT_NE(conn_->state(), ConnectionState::kConnected);
  absl::StatusOr<TypedPublisher<UserRegistered>> p =
      TypedPublisher<UserRegistered>::Create(*conn_, kUserRegistered);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->subject(), "users.events.UserRegistered");
  EXPECT_EQ(p->file_identifier(), "NGUS");

  p = TypedPublisher<UserRegistered>::Create(
      *conn_, {.subject = "users events", .file_identifier = "NGUS"});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  p = TypedPublisher<UserRegistered>::Create(
      *conn_, {.subject = "users.events.X", .file_identifier = "NGUSX"});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("file identifier"));

  PublisherOptions options;
  options.verify.max_depth = 0;
  p = TypedPublisher<UserRegistered>::Create(*conn_, kUserRegistered, options);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), AllOf(HasSubstr("PublisherOptions.verify"),
                                          HasSubstr("max_depth")));

  // The connection's MessageLimits apply to the topic's subject.
  const std::string long_subject(300, 'a');
  p = TypedPublisher<UserRegistered>::Create(
      *conn_, {.subject = long_subject, .file_identifier = "NGUS"});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TypedPubSubNoServerTest, MalformedBufferIsRefusedBeforeTheWire) {
  TypedPublisher<UserRegistered> publisher = Publisher();
  struct Case {
    std::string bytes;
    absl::string_view rule;
  };
  std::string truncated = UserBytes();
  truncated.resize(truncated.size() / 2);
  const Case cases[] = {
      {"not a flatbuffer at all", "file identifier"},
      {UserBytes("NGEM"), "file identifier"},
      {UserBytes(nullptr), "file identifier"},
      {truncated, "malformed"},
      {"", "malformed"},
      {std::string(12, '\xff').replace(4, 4, "NGUS"), "malformed"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<SendInfo> sent = publisher.PublishBuffer(c.bytes);
    EXPECT_EQ(sent.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(sent.status().message(),
                AllOf(HasSubstr(absl::StrCat("(", c.rule, ")")),
                      HasSubstr("natsgw.users.UserRegistered"),
                      HasSubstr("users.events.UserRegistered"),
                      HasSubstr("nothing was sent")));
  }
  // None of them reached the connection; each was counted as refused.
  EXPECT_EQ(PublishErrors(), 0);
  EXPECT_EQ(PublishErrors(/*refused=*/true),
            static_cast<int>(std::size(cases)));
  EXPECT_THAT(Scrape(), Not(HasSubstr("natsgw_messages_published_total{")));

  // A valid one does (and fails there, for want of a server).
  absl::StatusOr<SendInfo> sent = publisher.PublishBuffer(UserBytes());
  EXPECT_TRUE(ReachedConnection(sent.status())) << sent.status();
  EXPECT_EQ(PublishErrors(), 1);
}

TEST_F(TypedPubSubNoServerTest, PublishBufferVerifiesUnalignedBytes) {
  TypedPublisher<UserRegistered> publisher = Publisher();
  const std::string valid = UserBytes();
  // The same bytes at an odd address: verified in an aligned copy.
  std::string storage = "x" + valid;
  const absl::string_view unaligned(storage.data() + 1, valid.size());
  ASSERT_FALSE(internal::AlignedBytes::IsAligned(unaligned.data()));
  EXPECT_TRUE(ReachedConnection(publisher.PublishBuffer(unaligned).status()));
  storage = "x" + UserBytes("NGEM");
  EXPECT_EQ(publisher
                .PublishBuffer(
                    absl::string_view(storage.data() + 1, storage.size() - 1))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PublishErrors(), 1);
}

TEST_F(TypedPubSubNoServerTest, PublishBufferAppliesVerifyLimits) {
  PublisherOptions options;
  options.verify.max_depth = 4;
  absl::StatusOr<TypedPublisher<Node>> publisher =
      TypedPublisher<Node>::Create(*conn_, kNodes, options);
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  absl::StatusOr<SendInfo> sent = publisher->PublishBuffer(NodeChain(8));
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sent.status().message(), HasSubstr("(depth limit)"));
  EXPECT_EQ(PublishErrors(), 0);
  EXPECT_TRUE(
      ReachedConnection(publisher->PublishBuffer(NodeChain(3)).status()));
  EXPECT_EQ(PublishErrors(), 1);
}

TEST_F(TypedPubSubNoServerTest, BuiltEventReachesTheConnection) {
  TypedPublisher<UserRegistered> publisher = Publisher();
  int built = 0;
  absl::StatusOr<SendInfo> sent =
      publisher.Publish([&](flatbuffers::FlatBufferBuilder& fbb) {
        ++built;
        return BuildUser(fbb);
      });
  EXPECT_EQ(built, 1);
  EXPECT_TRUE(ReachedConnection(sent.status())) << sent.status();
  EXPECT_EQ(PublishErrors(), 1);
}

TEST_F(TypedPubSubNoServerTest, NullRootIsRefused) {
  TypedPublisher<UserRegistered> publisher = Publisher();
  absl::StatusOr<SendInfo> sent =
      publisher.Publish([](flatbuffers::FlatBufferBuilder&) {
        return flatbuffers::Offset<UserRegistered>();
      });
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sent.status().message(),
              AllOf(HasSubstr("natsgw.users.UserRegistered"),
                    HasSubstr("root offset is null")));
  EXPECT_EQ(PublishErrors(), 0);
  EXPECT_EQ(PublishErrors(/*refused=*/true), 1);
}

TEST_F(TypedPubSubNoServerTest, TemplateSubjects) {
  TypedPublisher<UserRegistered> publisher = Publisher(kRegionalUserRegistered);
  int built = 0;
  auto build = [&](flatbuffers::FlatBufferBuilder& fbb) {
    ++built;
    return BuildUser(fbb);
  };

  // A template is no subject to publish to.
  absl::StatusOr<SendInfo> sent = publisher.Publish(build);
  EXPECT_EQ(sent.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sent.status().message(),
              AllOf(HasSubstr("template"), HasSubstr("PublishTo")));
  EXPECT_EQ(publisher.PublishBuffer(UserBytes()).status().code(),
            absl::StatusCode::kInvalidArgument);

  // Subjects the template does not match, or that are no subjects.
  for (absl::string_view subject :
       {"users.events.UserRegistered", "users.eu.events.UserDeleted",
        "users.eu.west.events.UserRegistered", "users.*.events.UserRegistered",
        "users.eu..UserRegistered", "users.eu events.UserRegistered"}) {
    sent = publisher.PublishTo(subject, build);
    EXPECT_EQ(sent.status().code(), absl::StatusCode::kInvalidArgument)
        << subject;
    EXPECT_EQ(publisher.PublishBufferTo(subject, UserBytes()).status().code(),
              absl::StatusCode::kInvalidArgument)
        << subject;
  }
  sent = publisher.PublishTo("users.eu.events.UserDeleted", build);
  EXPECT_THAT(sent.status().message(),
              HasSubstr("does not match the topic's subject "
                        "'users.*.events.UserRegistered'"));
  // Refused before building.
  EXPECT_EQ(built, 0);
  EXPECT_EQ(PublishErrors(), 0);

  // A matching one reaches the connection.
  sent = publisher.PublishTo("users.eu.events.UserRegistered", build);
  EXPECT_TRUE(ReachedConnection(sent.status())) << sent.status();
  EXPECT_TRUE(ReachedConnection(
      publisher.PublishBufferTo("users.us.events.UserRegistered", UserBytes())
          .status()));
  EXPECT_EQ(built, 1);
  EXPECT_EQ(PublishErrors(), 2);

  // A concrete topic accepts its own subject, spelled out, and no other.
  TypedPublisher<UserRegistered> plain = Publisher();
  EXPECT_TRUE(ReachedConnection(
      plain.PublishTo("users.events.UserRegistered", build).status()));
  EXPECT_EQ(
      plain.PublishTo("users.events.UserRegistered2", build).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(TypedPubSubNoServerTest, SubscribeChecksArguments) {
  auto handler = [](Event<UserRegistered>) {};
  absl::StatusOr<std::unique_ptr<Subscription>> sub =
      SubscribeTyped(*conn_, kUserRegistered, "", nullptr);
  EXPECT_EQ(sub.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sub.status().message(), HasSubstr("handler is empty"));

  sub = SubscribeTyped<UserRegistered>(
      *conn_, {.subject = "users.>.x", .file_identifier = "NGUS"}, "", handler);
  EXPECT_EQ(sub.status().code(), absl::StatusCode::kInvalidArgument);
  sub = SubscribeTyped<UserRegistered>(
      *conn_, {.subject = "users.>", .file_identifier = "NG"}, "", handler);
  EXPECT_EQ(sub.status().code(), absl::StatusCode::kInvalidArgument);
  sub = SubscribeTyped(*conn_, kUserRegistered, "bad group", handler);
  EXPECT_EQ(sub.status().code(), absl::StatusCode::kInvalidArgument);
  sub = SubscribeTyped(*conn_, kUserRegistered, "email*", handler);
  EXPECT_EQ(sub.status().code(), absl::StatusCode::kInvalidArgument);

  SubscriberOptions options;
  options.verify.max_size_bytes = 4;
  sub = SubscribeTyped(*conn_, kUserRegistered, "", handler, options);
  EXPECT_EQ(sub.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sub.status().message(),
              AllOf(HasSubstr("SubscriberOptions.verify"),
                    HasSubstr("max_size_bytes")));
  EXPECT_THAT(Scrape(), Not(HasSubstr("natsgw_messages_invalid_total")));

  // SubscribeOptions go to Connection::Subscribe, which checks them.
  options = SubscriberOptions();
  options.subscribe.workers = -1;
  sub = SubscribeTyped(*conn_, kUserRegistered, "", handler, options);
  EXPECT_EQ(sub.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TypedPubSubNoServerTest, SubscribeRegistersTheInvalidCounter) {
  // Not connected yet: the interest is registered once connected.
  absl::StatusOr<std::unique_ptr<Subscription>> sub =
      SubscribeTyped(*conn_, kRegionalUserRegistered, "email-service",
                     [](const Event<UserRegistered>&) {});
  ASSERT_TRUE(sub.ok()) << sub.status();
  EXPECT_EQ((*sub)->subject(), "users.*.events.UserRegistered");
  EXPECT_EQ((*sub)->queue_group(), "email-service");
  // At 0 from the start, labelled with the pattern.
  EXPECT_THAT(Scrape(), HasSubstr("natsgw_messages_invalid_total{subject="
                                  "\"users.*.events.UserRegistered\"} 0"));

  // Or with the subscription's metric subject.
  SubscriberOptions options;
  options.subscribe.metric_subject = "users.events.audit";
  sub = SubscribeTyped(
      *conn_, kUserRegistered, "", [](const Event<UserRegistered>&) {},
      options);
  ASSERT_TRUE(sub.ok()) << sub.status();
  EXPECT_THAT(Scrape(), HasSubstr("natsgw_messages_invalid_total{subject="
                                  "\"users.events.audit\"} 0"));
}

TEST_F(TypedPubSubNoServerTest, MetricNameConflictIsAnError) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildGauge()
      .Name("natsgw_messages_invalid_total")
      .Help("taken")
      .Register(*registry);
  std::unique_ptr<Connection> conn = Connect(registry);
  ASSERT_NE(conn, nullptr);
  absl::StatusOr<std::unique_ptr<Subscription>> sub =
      SubscribeTyped(*conn, kUserRegistered, "", [](Event<UserRegistered>) {});
  EXPECT_EQ(sub.status().code(), absl::StatusCode::kAlreadyExists)
      << sub.status();
  EXPECT_THAT(sub.status().message(),
              HasSubstr("natsgw_messages_invalid_total"));
}

}  // namespace
}  // namespace natsgw
