// Typed pub/sub end to end on a real nats-server: TypedPublisher and
// SubscribeTyped (sdk/include/natsgw/typed_*.h) over the gateway, with the
// events of schemas/users.fbs and schemas/email.fbs. Round trips on subject
// templates and wildcard subscriptions, the metadata a handler sees, queue
// groups, payloads that fail verification (from natsgw and from a plain
// nats.c client), verify limits, handlers on worker threads, and trace
// continuation through a handler that publishes.
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gateway_test_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/capturing_logger.h"
#include "natsgw/connection.h"
#include "natsgw/event_topic.h"
#include "natsgw/logger.h"
#include "natsgw/schemas/echo_generated.h"
#include "natsgw/schemas/email_generated.h"
#include "natsgw/schemas/users_generated.h"
#include "natsgw/trace_context.h"
#include "natsgw/typed_publisher.h"
#include "natsgw/typed_subscriber.h"
#include "raw_nats_client.h"

namespace natsgw {
namespace {

using ::natsgw::email::WelcomeEmailSent;
using ::natsgw::testing::GatewayTest;
using ::natsgw::testing::RawNatsClient;
using ::natsgw::users::UserRegistered;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

// Bounds every wait of the test thread; never reached when things work.
constexpr absl::Duration kWait = absl::Seconds(20);

constexpr EventTopic<UserRegistered> kUserRegistered{
    .subject = "users.events.UserRegistered",
    .file_identifier = "NGUS",
    .type_name = "natsgw.users.UserRegistered"};

// The same event per region: "users.<region>.events.UserRegistered".
constexpr EventTopic<UserRegistered> kRegionalUserRegistered{
    .subject = "users.*.events.UserRegistered",
    .file_identifier = "NGUS",
    .type_name = "natsgw.users.UserRegistered"};

constexpr EventTopic<WelcomeEmailSent> kWelcomeEmailSent{
    .subject = "email.events.WelcomeEmailSent",
    .file_identifier = "NGEM",
    .type_name = "natsgw.email.WelcomeEmailSent"};

// A builder of a UserRegistered for `user_id`.
auto User(std::string user_id) {
  return [user_id = std::move(user_id)](flatbuffers::FlatBufferBuilder& fbb) {
    return users::CreateUserRegisteredDirect(fbb, user_id.c_str(),
                                             (user_id + "@example.com").c_str(),
                                             "Ada", 1700000000000);
  };
}

// The events a handler was given, for the test thread to wait on.
template <class T>
class Inbox {
 public:
  void Add(Event<T> event) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(event));
    cv_.notify_all();
  }
  // Waits until at least `n` events arrived; false after kWait.
  bool WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(kWait),
                        [&] { return events_.size() >= n; });
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_.size();
  }
  // A copy of the events so far.
  std::vector<Event<T>> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  // The handler that fills this inbox.
  EventHandler<T> Handler() {
    return [this](Event<T> event) { Add(std::move(event)); };
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Event<T>> events_;
};

class TypedPubSubTest : public GatewayTest {
 protected:
  ConnectionOptions Options() override {
    ConnectionOptions options = GatewayTest::Options();
    options.logger = logger_;
    return options;
  }

  template <class T>
  TypedPublisher<T> Publisher(Connection& conn, const EventTopic<T>& topic) {
    absl::StatusOr<TypedPublisher<T>> p =
        TypedPublisher<T>::Create(conn, topic);
    EXPECT_TRUE(p.ok()) << p.status();
    return *std::move(p);
  }

  template <class T>
  std::unique_ptr<Subscription> Subscribe(
      Connection& conn, const EventTopic<T>& topic,
      absl::string_view queue_group,
      std::type_identity_t<EventHandler<T>> handler,
      const SubscriberOptions& options = {}) {
    absl::StatusOr<std::unique_ptr<Subscription>> sub =
        SubscribeTyped(conn, topic, queue_group, std::move(handler), options);
    EXPECT_TRUE(sub.ok()) << sub.status();
    return sub.ok() ? *std::move(sub) : nullptr;
  }

  // The value of one series in Scrape(), "" if absent.
  std::string Series(absl::string_view series) {
    const std::string text = Scrape();
    const std::string key = absl::StrCat(series, " ");
    const size_t at = text.find(key);
    if (at == std::string::npos) return "";
    const size_t end = text.find('\n', at);
    return text.substr(at + key.size(), end - at - key.size());
  }

  std::shared_ptr<testing::CapturingLogger> logger_ =
      std::make_shared<testing::CapturingLogger>();
};

TEST_F(TypedPubSubTest, RoundTripOnSubjectTemplate) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  Inbox<UserRegistered> inbox;
  auto sub = Subscribe(*conn, kRegionalUserRegistered, "", inbox.Handler());
  ASSERT_NE(sub, nullptr);

  TypedPublisher<UserRegistered> publisher =
      Publisher(*conn, kRegionalUserRegistered);
  PublishOptions options;
  options.headers.Add("Tenant", "acme");
  absl::StatusOr<SendInfo> eu = publisher.PublishTo(
      "users.eu.events.UserRegistered", User("u-eu"), options);
  ASSERT_TRUE(eu.ok()) << eu.status();
  absl::StatusOr<SendInfo> us =
      publisher.PublishTo("users.us.events.UserRegistered", User("u-us"));
  ASSERT_TRUE(us.ok()) << us.status();
  ASSERT_TRUE(inbox.WaitFor(2));

  std::vector<Event<UserRegistered>> events = inbox.events();
  ASSERT_THAT(events, SizeIs(2));
  // One subscription: in publish order.
  const Event<UserRegistered>& first = events[0];
  EXPECT_EQ(first.subject, "users.eu.events.UserRegistered");
  EXPECT_EQ(first->user_id()->str(), "u-eu");
  EXPECT_EQ(first->email()->str(), "u-eu@example.com");
  EXPECT_EQ((*first).registered_at_unix_ms(), 1700000000000);
  EXPECT_EQ(first.headers.Get("Tenant"), "acme");
  // What the publisher stamped is what the handler sees.
  EXPECT_EQ(first.trace, eu->trace);
  EXPECT_FALSE(first.trace_replaced);
  EXPECT_EQ(first.message_id, eu->message_id);
  ASSERT_TRUE(first.sent_at.has_value());
  EXPECT_EQ(absl::ToUnixNanos(*first.sent_at), absl::ToUnixNanos(eu->sent_at));
  EXPECT_GE(first.received_at, *first.sent_at);
  ASSERT_TRUE(first.delivery_latency().has_value());
  EXPECT_GE(*first.delivery_latency(), absl::ZeroDuration());
  EXPECT_LT(*first.delivery_latency(), kWait);

  const Event<UserRegistered>& second = events[1];
  EXPECT_EQ(second.subject, "users.us.events.UserRegistered");
  EXPECT_EQ(second->user_id()->str(), "u-us");
  EXPECT_EQ(second.message_id, us->message_id);
  EXPECT_NE(second.message_id, first.message_id);
  EXPECT_NE(second.trace.trace_id(), first.trace.trace_id());
  EXPECT_EQ(second.headers.Get("Tenant"), std::nullopt);

  // Metrics are labelled with the template, never the concrete subjects.
  const std::string text = Scrape();
  EXPECT_EQ(Series("natsgw_messages_published_total{subject=\"users.*.events."
                   "UserRegistered\"}"),
            "2");
  EXPECT_EQ(Series("natsgw_messages_received_total{subject=\"users.*.events."
                   "UserRegistered\"}"),
            "2");
  EXPECT_EQ(Series("natsgw_messages_invalid_total{subject=\"users.*.events."
                   "UserRegistered\"}"),
            "0");
  EXPECT_THAT(text, Not(HasSubstr("subject=\"users.eu.")));
  EXPECT_THAT(text, Not(HasSubstr("subject=\"users.us.")));
}

TEST_F(TypedPubSubTest, WildcardSubscriptionAndPrebuiltBuffer) {
  auto producer = Connect();
  auto consumer = Connect();
  ASSERT_NE(producer, nullptr);
  ASSERT_NE(consumer, nullptr);
  // '>' across both shapes of the subject.
  constexpr EventTopic<UserRegistered> kAllUsers{
      .subject = "users.>",
      .file_identifier = "NGUS",
      .type_name = "natsgw.users.UserRegistered"};
  Inbox<UserRegistered> inbox;
  auto sub = Subscribe(*consumer, kAllUsers, "", inbox.Handler());
  ASSERT_NE(sub, nullptr);

  TypedPublisher<UserRegistered> plain = Publisher(*producer, kUserRegistered);
  PublishOptions options;
  options.message_id = "user-registered-u-1";
  ASSERT_TRUE(plain.Publish(User("u-1"), options).ok());
  // A buffer built elsewhere, at an address that is not 8-byte aligned.
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(User("u-2")(fbb), "NGUS");
  std::string storage = "x";
  storage.append(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                 fbb.GetSize());
  absl::StatusOr<SendInfo> sent =
      Publisher(*producer, kRegionalUserRegistered)
          .PublishBufferTo("users.eu.events.UserRegistered",
                           absl::string_view(storage).substr(1));
  ASSERT_TRUE(sent.ok()) << sent.status();
  ASSERT_TRUE(inbox.WaitFor(2));

  std::map<std::string, Event<UserRegistered>> by_user;
  for (Event<UserRegistered>& e : inbox.events()) {
    by_user.emplace(e->user_id()->str(), std::move(e));
  }
  ASSERT_EQ(by_user.count("u-1"), 1u);
  ASSERT_EQ(by_user.count("u-2"), 1u);
  EXPECT_EQ(by_user.at("u-1").subject, "users.events.UserRegistered");
  EXPECT_EQ(by_user.at("u-1").message_id, "user-registered-u-1");
  EXPECT_TRUE(by_user.at("u-1").sent_at.has_value());
  EXPECT_EQ(by_user.at("u-2").subject, "users.eu.events.UserRegistered");
  EXPECT_EQ(by_user.at("u-2").message_id, sent->message_id);
  EXPECT_EQ(by_user.at("u-2").trace.trace_id(), sent->trace.trace_id());
  EXPECT_TRUE(by_user.at("u-2").sent_at.has_value());
  EXPECT_EQ(Series("natsgw_messages_received_total{subject=\"users.>\"}"), "2");
}

TEST_F(TypedPubSubTest, QueueGroupDeliversEachEventToOneMember) {
  auto producer = Connect();
  auto a = Connect();
  auto b = Connect();
  ASSERT_NE(producer, nullptr);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  Inbox<UserRegistered> inbox_a;
  Inbox<UserRegistered> inbox_b;
  Inbox<UserRegistered> audit;  // No group: sees everything.
  auto sub_a =
      Subscribe(*a, kUserRegistered, "email-service", inbox_a.Handler());
  auto sub_b =
      Subscribe(*b, kUserRegistered, "email-service", inbox_b.Handler());
  auto sub_audit = Subscribe(*producer, kUserRegistered, "", audit.Handler());
  ASSERT_NE(sub_a, nullptr);
  ASSERT_NE(sub_b, nullptr);
  ASSERT_NE(sub_audit, nullptr);
  EXPECT_EQ(sub_a->queue_group(), "email-service");

  constexpr int kEvents = 200;
  TypedPublisher<UserRegistered> publisher =
      Publisher(*producer, kUserRegistered);
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_TRUE(publisher.Publish(User(absl::StrCat("u-", i))).ok());
  }
  ASSERT_TRUE(producer->Flush(kWait).ok());
  ASSERT_TRUE(audit.WaitFor(kEvents));
  // Wait for the group to have everything, then a little more: a duplicate
  // would arrive within the same round trips.
  const absl::Time deadline = absl::Now() + kWait;
  while (inbox_a.size() + inbox_b.size() < size_t{kEvents} &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(a->Flush(kWait).ok());
  ASSERT_TRUE(b->Flush(kWait).ok());
  absl::SleepFor(absl::Milliseconds(200));

  std::multiset<std::string> seen;
  std::set<std::string> seen_a;
  for (const Event<UserRegistered>& e : inbox_a.events()) {
    seen.insert(e->user_id()->str());
    seen_a.insert(e->user_id()->str());
  }
  for (const Event<UserRegistered>& e : inbox_b.events()) {
    seen.insert(e->user_id()->str());
    EXPECT_EQ(seen_a.count(e->user_id()->str()), 0u)
        << e->user_id()->str() << " reached both members";
  }
  EXPECT_EQ(seen.size(), size_t{kEvents});
  for (int i = 0; i < kEvents; ++i) {
    EXPECT_EQ(seen.count(absl::StrCat("u-", i)), 1u) << "u-" << i;
  }
  // Both members took a share (the server picks one at random per message;
  // 200 all to one member would be a 2^-199 chance).
  EXPECT_GT(inbox_a.size(), 0u);
  EXPECT_GT(inbox_b.size(), 0u);
  EXPECT_EQ(audit.size(), size_t{kEvents});
}

TEST_F(TypedPubSubTest, InvalidPayloadsAreCountedLoggedAndNeverDelivered) {
  auto producer = Connect();
  auto consumer = Connect();
  ASSERT_NE(producer, nullptr);
  ASSERT_NE(consumer, nullptr);
  Inbox<UserRegistered> inbox;
  auto sub = Subscribe(*consumer, kRegionalUserRegistered, "email-service",
                       inbox.Handler());
  ASSERT_NE(sub, nullptr);

  // Connected first: the three invalid messages below should arrive within
  // one report interval (1 s).
  absl::StatusOr<std::unique_ptr<RawNatsClient>> raw =
      RawNatsClient::Connect(server().url());
  ASSERT_TRUE(raw.ok()) << raw.status();

  // Garbage through natsgw's untyped publish: no FlatBuffer at all.
  PublishOptions garbage_options;
  garbage_options.message_id = "garbage-1";
  absl::StatusOr<SendInfo> garbage =
      producer->Publish("users.eu.events.UserRegistered",
                        "this is not a flatbuffer", garbage_options);
  ASSERT_TRUE(garbage.ok()) << garbage.status();
  // A valid FlatBuffer of another contract (echo.fbs, "NGEC").
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(echo::CreateEchoRequest(fbb, 0, 7), "NGEC");
  ASSERT_TRUE(producer
                  ->Publish("users.us.events.UserRegistered",
                            absl::string_view(reinterpret_cast<const char*>(
                                                  fbb.GetBufferPointer()),
                                              fbb.GetSize()))
                  .ok());
  // Written and processed before the raw client's message, so that the
  // consumer sees them first.
  ASSERT_TRUE(producer->Flush(kWait).ok());
  // From a plain nats.c client: no natsgw headers, a right identifier and a
  // root offset that points outside the buffer.
  std::string malformed(16, '\0');
  malformed.replace(0, 4, "\xf0\xff\x00\x00", 4);
  malformed.replace(4, 4, "NGUS");
  ASSERT_TRUE(
      (*raw)->Publish("users.eu.events.UserRegistered", malformed, {}).ok());
  ASSERT_TRUE((*raw)->Flush().ok());
  // Then a valid event, published after the others from the same
  // connection: when it arrives, the invalid ones from `producer` have been
  // handled; the raw client's is waited for below.
  TypedPublisher<UserRegistered> publisher =
      Publisher(*producer, kRegionalUserRegistered);
  ASSERT_TRUE(
      publisher.PublishTo("users.eu.events.UserRegistered", User("u-1")).ok());
  ASSERT_TRUE(inbox.WaitFor(1));

  const std::string invalid_series =
      "natsgw_messages_invalid_total{subject=\"users.*.events."
      "UserRegistered\"}";
  const absl::Time deadline = absl::Now() + kWait;
  while (Series(invalid_series) != "3" && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(Series(invalid_series), "3");
  EXPECT_EQ(Series("natsgw_messages_received_total{subject=\"users.*.events."
                   "UserRegistered\"}"),
            "4");
  // Only the valid one reached the handler.
  std::vector<Event<UserRegistered>> events = inbox.events();
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0]->user_id()->str(), "u-1");

  // The first was reported with the rule it broke, the subject, the message
  // ID and the trace; the next two, within the same second, only counted.
  std::vector<std::string> reports = logger_->Matching("dropped a message");
  ASSERT_THAT(reports, SizeIs(1)) << ::testing::PrintToString(logger_->lines());
  EXPECT_THAT(
      reports[0],
      AllOf(HasSubstr("'users.eu.events.UserRegistered'"),
            HasSubstr("subscription 'users.*.events.UserRegistered'"),
            HasSubstr("garbage-1"),
            HasSubstr("not a valid natsgw.users.UserRegistered"),
            HasSubstr("(file identifier)"),
            HasSubstr(absl::StrCat("[trace ", garbage->trace.TraceIdHex()))));

  // The next report, a second later, says how many went unreported.
  absl::SleepFor(absl::Milliseconds(1100));
  ASSERT_TRUE(
      producer->Publish("users.eu.events.UserRegistered", "more garbage").ok());
  while (logger_->Matching("dropped a message").size() < 2 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  reports = logger_->Matching("dropped a message");
  ASSERT_THAT(reports, SizeIs(2));
  EXPECT_THAT(reports[1], HasSubstr("2 more dropped since the last report"));
  EXPECT_EQ(Series(invalid_series), "4");
  EXPECT_THAT(inbox.events(), SizeIs(1));
}

TEST_F(TypedPubSubTest, VerifyLimitsApplyPerSubscription) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  Inbox<UserRegistered> strict;
  Inbox<UserRegistered> lenient;
  SubscriberOptions tiny;
  // Fits "u-1", not a 100-character user ID.
  tiny.verify.max_size_bytes = 128;
  auto strict_sub =
      Subscribe(*conn, kUserRegistered, "", strict.Handler(), tiny);
  auto lenient_sub = Subscribe(*conn, kUserRegistered, "", lenient.Handler());
  ASSERT_NE(strict_sub, nullptr);
  ASSERT_NE(lenient_sub, nullptr);

  TypedPublisher<UserRegistered> publisher = Publisher(*conn, kUserRegistered);
  ASSERT_TRUE(publisher.Publish(User(std::string(100, 'u'))).ok());
  ASSERT_TRUE(publisher.Publish(User("u-1")).ok());
  ASSERT_TRUE(lenient.WaitFor(2));
  ASSERT_TRUE(strict.WaitFor(1));
  ASSERT_TRUE(conn->Flush(kWait).ok());
  std::vector<Event<UserRegistered>> events = strict.events();
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0]->user_id()->str(), "u-1");
  // Both subscriptions share the pattern's series.
  EXPECT_EQ(Series("natsgw_messages_invalid_total{subject=\"users.events."
                   "UserRegistered\"}"),
            "1");
  EXPECT_THAT(logger_->Matching("(size limit)"), SizeIs(1));
}

TEST_F(TypedPubSubTest, HandlerContinuesTheProducersTrace) {
  auto producer = Connect();
  auto consumer = Connect();
  ASSERT_NE(producer, nullptr);
  ASSERT_NE(consumer, nullptr);

  // The e-mail service: consumes UserRegistered and, from its handler,
  // publishes WelcomeEmailSent without naming a trace.
  TypedPublisher<WelcomeEmailSent> welcome =
      Publisher(*consumer, kWelcomeEmailSent);
  Inbox<UserRegistered> registered;
  std::mutex mu;
  std::vector<SendInfo> welcome_sent;
  auto email =
      Subscribe(*consumer, kUserRegistered, "email-service",
                [&](Event<UserRegistered> event) {
                  // The handler runs inside the event's trace.
                  ASSERT_EQ(CurrentTraceContext(), event.trace);
                  absl::StatusOr<SendInfo> sent =
                      welcome.Publish([&](flatbuffers::FlatBufferBuilder& fbb) {
                        return email::CreateWelcomeEmailSentDirect(
                            fbb, event->user_id()->c_str(),
                            event->email()->c_str(), "e-1", 1700000000001);
                      });
                  ASSERT_TRUE(sent.ok()) << sent.status();
                  {
                    std::lock_guard<std::mutex> lock(mu);
                    welcome_sent.push_back(*sent);
                  }
                  registered.Add(std::move(event));
                });
  ASSERT_NE(email, nullptr);
  // An observer of the e-mail service's events.
  Inbox<WelcomeEmailSent> welcomes;
  auto observer =
      Subscribe(*producer, kWelcomeEmailSent, "", welcomes.Handler());
  ASSERT_NE(observer, nullptr);

  // The user service publishes inside a trace of its own.
  const TraceContext root = TraceContext::NewRoot();
  absl::StatusOr<SendInfo> sent;
  {
    ScopedTraceContext scope(root);
    sent = Publisher(*producer, kUserRegistered).Publish(User("u-7"));
  }
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->trace.trace_id(), root.trace_id());
  ASSERT_TRUE(welcomes.WaitFor(1));
  ASSERT_TRUE(registered.WaitFor(1));

  const Event<UserRegistered> user = registered.events()[0];
  const Event<WelcomeEmailSent> mail = welcomes.events()[0];
  EXPECT_EQ(user.trace, sent->trace);
  EXPECT_EQ(mail->user_id()->str(), "u-7");
  EXPECT_EQ(mail.subject, "email.events.WelcomeEmailSent");
  // Same trace, a new span, its own message ID and timestamp.
  EXPECT_EQ(mail.trace.trace_id(), root.trace_id());
  EXPECT_EQ(mail.trace.TraceIdHex(), sent->trace.TraceIdHex());
  EXPECT_NE(mail.trace.span_id(), user.trace.span_id());
  EXPECT_FALSE(mail.trace_replaced);
  EXPECT_NE(mail.message_id, user.message_id);
  EXPECT_FALSE(mail.message_id.empty());
  ASSERT_TRUE(mail.sent_at.has_value());
  EXPECT_GE(*mail.sent_at, *user.sent_at);
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_THAT(welcome_sent, SizeIs(1));
  EXPECT_EQ(welcome_sent[0].trace, mail.trace);
  EXPECT_EQ(welcome_sent[0].message_id, mail.message_id);
}

TEST_F(TypedPubSubTest, WorkersVerifyAndKeepTheTraceOnEveryThread) {
  auto producer = Connect();
  auto consumer = Connect();
  ASSERT_NE(producer, nullptr);
  ASSERT_NE(consumer, nullptr);
  SubscriberOptions options;
  options.subscribe.workers = 4;
  options.subscribe.queue_capacity = 1024;
  options.subscribe.metric_subject = "users.events.UserRegistered.workers";
  Inbox<UserRegistered> inbox;
  std::mutex mu;
  int outside_trace = 0;
  auto sub = Subscribe(
      *consumer, kUserRegistered, "email-service",
      [&](Event<UserRegistered> event) {
        // Any worker thread runs the handler inside the event's trace.
        if (CurrentTraceContext() != event.trace) {
          std::lock_guard<std::mutex> lock(mu);
          ++outside_trace;
        }
        inbox.Add(std::move(event));
      },
      options);
  ASSERT_NE(sub, nullptr);

  constexpr int kEvents = 100;
  TypedPublisher<UserRegistered> publisher =
      Publisher(*producer, kUserRegistered);
  std::set<std::string> trace_ids;
  for (int i = 0; i < kEvents; ++i) {
    absl::StatusOr<SendInfo> sent =
        publisher.Publish(User(absl::StrCat("u-", i)));
    ASSERT_TRUE(sent.ok()) << sent.status();
    trace_ids.insert(sent->trace.TraceIdHex());
    if (i == kEvents / 2) {
      ASSERT_TRUE(producer->Publish(kUserRegistered.subject, "garbage").ok());
    }
  }
  ASSERT_TRUE(inbox.WaitFor(kEvents));
  const std::string invalid_series =
      "natsgw_messages_invalid_total{subject=\"users.events.UserRegistered."
      "workers\"}";
  const absl::Time deadline = absl::Now() + kWait;
  while (Series(invalid_series) != "1" && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(Series(invalid_series), "1");
  std::set<std::string> seen;
  for (const Event<UserRegistered>& e : inbox.events()) {
    seen.insert(e->user_id()->str());
    EXPECT_EQ(trace_ids.count(e.trace.TraceIdHex()), 1u);
  }
  EXPECT_EQ(seen.size(), size_t{kEvents});
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(outside_trace, 0);
}

TEST_F(TypedPubSubTest, UnsubscribedHandlerGetsNothing) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  Inbox<UserRegistered> inbox;
  auto sub = Subscribe(*conn, kUserRegistered, "", inbox.Handler());
  ASSERT_NE(sub, nullptr);
  TypedPublisher<UserRegistered> publisher = Publisher(*conn, kUserRegistered);
  ASSERT_TRUE(publisher.Publish(User("u-1")).ok());
  ASSERT_TRUE(inbox.WaitFor(1));
  sub.reset();
  ASSERT_TRUE(publisher.Publish(User("u-2")).ok());
  ASSERT_TRUE(conn->Flush(kWait).ok());
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(inbox.size(), 1u);
  EXPECT_THAT(logger_->Matching("dropped"), IsEmpty());
}

}  // namespace
}  // namespace natsgw
