// natsgw::tools discovery on a real nats-server: DiscoverPing/Info/Stats
// against two instances of a typed users service (natsgw-gen's stubs, each
// on its own connection) and an echo service; ResolveMethod with an EMPTY
// SchemaSet, which learns the schema from the service metadata fbs.bfbs and
// then calls the service with JSON; the error paths (no service, untyped
// endpoints, services without a binary schema or with a broken one,
// malformed answers); and PublishOptions::reply_to, on which discovery is
// built.
#include "discovery.h"

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gateway_test_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/connection.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/service.h"
#include "natsgw/typed_service.h"
#include "nlohmann/json.hpp"
#include "raw_nats_client.h"
#include "schema_set.h"

namespace natsgw::tools {
namespace {

using ::natsgw::testing::GatewayTest;
using ::natsgw::testing::RawNatsClient;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// Bounds every wait; never reached when things work.
constexpr absl::Duration kWait = absl::Seconds(10);

// Registers users, answering with an ID made of the e-mail address.
class Users : public users::UsersServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<users::RegisterUserReply>> RegisterUser(
      const users::RegisterUserRequest& request, ServerContext& ctx) override {
    calls_.fetch_add(1);
    return users::CreateRegisterUserReplyDirect(
        ctx.builder(), absl::StrCat("u-", request.email()->str()).c_str(),
        1700000000000);
  }
  int calls() const { return calls_.load(); }

 private:
  std::atomic<int> calls_{0};
};

class EchoImpl : public echo::EchoServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<echo::EchoReply>> Echo(
      const echo::EchoRequest& request, ServerContext& ctx) override {
    return echo::CreateEchoReply(ctx.builder(), 0, request.tag());
  }
};

absl::StatusOr<Reply> Untyped(const Message& m) { return Reply{m.data, {}}; }

void ExpectCode(const absl::Status& s, absl::StatusCode code,
                absl::string_view text) {
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(text))) << s;
}

class DiscoveryTest : public GatewayTest {
 protected:
  // Two users instances (each on a connection of its own, as two processes
  // would be) and one echo instance.
  void StartServices() {
    for (int i = 0; i < 2; ++i) {
      service_conns_.push_back(Connect());
      ASSERT_NE(service_conns_.back(), nullptr);
      TypedServiceOptions options;
      options.version = absl::StrCat("1.0.", i);
      absl::StatusOr<std::unique_ptr<Service>> service =
          users_[i].Start(*service_conns_.back(), options);
      ASSERT_TRUE(service.ok()) << service.status();
      services_.push_back(*std::move(service));
    }
    absl::StatusOr<std::unique_ptr<Service>> echo =
        echo_.Start(*service_conns_.front());
    ASSERT_TRUE(echo.ok()) << echo.status();
    services_.push_back(*std::move(echo));
  }

  void TearDown() override {
    services_.clear();
    service_conns_.clear();
    GatewayTest::TearDown();
  }

  Users users_[2];
  EchoImpl echo_;
  std::vector<std::unique_ptr<Connection>> service_conns_;
  std::vector<std::unique_ptr<Service>> services_;
};

TEST_F(DiscoveryTest, PingInfoAndStatsHearEveryInstance) {
  ASSERT_NO_FATAL_FAILURE(StartServices());
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  DiscoverOptions options;
  options.wait = absl::Milliseconds(500);

  int malformed = -1;
  absl::StatusOr<std::vector<PingInfo>> pings =
      DiscoverPing(*conn, options, &malformed);
  ASSERT_TRUE(pings.ok()) << pings.status();
  EXPECT_EQ(malformed, 0);
  ASSERT_THAT(*pings, SizeIs(3));
  EXPECT_EQ((*pings)[0].name, "echo");
  EXPECT_EQ((*pings)[1].name, "users");
  EXPECT_EQ((*pings)[2].name, "users");
  EXPECT_LT((*pings)[1].id, (*pings)[2].id);  // sorted by (name, id)
  for (const PingInfo& ping : *pings) {
    EXPECT_GT(ping.rtt, absl::ZeroDuration());
    EXPECT_LT(ping.rtt, options.wait);
    std::cout << "PING " << ping.name << " " << ping.id << " " << ping.version
              << " rtt " << ping.rtt << std::endl;
  }

  // By name, and one instance by name and id.
  options.name = "users";
  pings = DiscoverPing(*conn, options);
  ASSERT_TRUE(pings.ok()) << pings.status();
  ASSERT_THAT(*pings, SizeIs(2));
  options.id = services_[1]->id();
  pings = DiscoverPing(*conn, options);
  ASSERT_TRUE(pings.ok()) << pings.status();
  ASSERT_THAT(*pings, SizeIs(1));
  EXPECT_EQ((*pings)[0].id, services_[1]->id());
  EXPECT_EQ((*pings)[0].version, "1.0.1");

  // INFO: the contract, and the binary schema.
  options.id.clear();
  absl::StatusOr<std::vector<ServiceInfo>> infos =
      DiscoverInfo(*conn, options, &malformed);
  ASSERT_TRUE(infos.ok()) << infos.status();
  EXPECT_EQ(malformed, 0);
  ASSERT_THAT(*infos, SizeIs(2));
  for (const ServiceInfo& info : *infos) {
    EXPECT_EQ(info.name, "users");
    EXPECT_EQ(info.metadata.at("fbs.service"), "natsgw.users.Users");
    ASSERT_THAT(info.endpoints, SizeIs(1));
    EXPECT_EQ(info.endpoints[0].subject, "users.RegisterUser");
    EXPECT_EQ(info.endpoints[0].queue_group, "q");
    EXPECT_EQ(info.endpoints[0].metadata.at("fbs.request_type"),
              "natsgw.users.RegisterUserRequest");
    std::string bfbs;
    ASSERT_TRUE(absl::Base64Unescape(info.metadata.at("fbs.bfbs"), &bfbs));
    EXPECT_EQ(bfbs, users::UsersMethods::kService.schema_bfbs);
    EXPECT_TRUE(nlohmann::json::accept(info.raw_json));
  }
  std::cout << "users.fbs binary schema: "
            << users::UsersMethods::kService.schema_bfbs.size()
            << " bytes, fbs.bfbs " << (*infos)[0].metadata.at("fbs.bfbs").size()
            << " bytes of base64, INFO answer " << (*infos)[0].raw_json.size()
            << " bytes" << std::endl;

  // STATS count the calls of every instance.
  absl::StatusOr<users::UsersClient> client = users::UsersClient::Create(*conn);
  ASSERT_TRUE(client.ok()) << client.status();
  for (int i = 0; i < 6; ++i) {
    auto reply = client->RegisterUser([i](flatbuffers::FlatBufferBuilder& fbb) {
      return users::CreateRegisterUserRequestDirect(
          fbb, absl::StrCat("user", i, "@example.com").c_str());
    });
    ASSERT_TRUE(reply.ok()) << reply.status();
  }
  absl::StatusOr<std::vector<ServiceStatsInfo>> stats =
      DiscoverStats(*conn, options, &malformed);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(malformed, 0);
  ASSERT_THAT(*stats, SizeIs(2));
  long long requests = 0;
  for (const ServiceStatsInfo& s : *stats) {
    ASSERT_THAT(s.endpoints, SizeIs(1));
    EXPECT_EQ(s.endpoints[0].name, "RegisterUser");
    EXPECT_EQ(s.endpoints[0].num_errors, 0);
    EXPECT_FALSE(s.started.empty());
    requests += s.endpoints[0].num_requests;
  }
  EXPECT_EQ(requests, 6);
  EXPECT_EQ(requests, users_[0].calls() + users_[1].calls());
}

TEST_F(DiscoveryTest, MaxAnswersEndsTheWaitEarly) {
  ASSERT_NO_FATAL_FAILURE(StartServices());
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  DiscoverOptions options;
  options.wait = kWait;
  options.max_answers = 2;
  const absl::Time start = absl::Now();
  absl::StatusOr<std::vector<PingInfo>> pings = DiscoverPing(*conn, options);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(pings.ok()) << pings.status();
  EXPECT_THAT(*pings, SizeIs(2));
  std::cout << "two answers in " << took << std::endl;
  EXPECT_LT(took, kWait);
}

TEST_F(DiscoveryTest, NoServiceAnswersAtOnce) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  DiscoverOptions options;
  options.wait = kWait;
  const absl::Time start = absl::Now();
  int malformed = -1;
  absl::StatusOr<std::vector<ServiceInfo>> infos =
      DiscoverInfo(*conn, options, &malformed);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(infos.ok()) << infos.status();
  EXPECT_THAT(*infos, IsEmpty());
  EXPECT_EQ(malformed, 0);
  // The server's "no responders" ends the wait.
  std::cout << "no services: answered in " << took << std::endl;
  EXPECT_LT(took, kWait);
}

TEST_F(DiscoveryTest, MalformedAnswersAreCountedAndSkipped) {
  ASSERT_NO_FATAL_FAILURE(StartServices());
  absl::StatusOr<std::unique_ptr<RawNatsClient>> raw =
      RawNatsClient::Connect(server().url());
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_TRUE((*raw)->Respond("$SRV.INFO", "not json", {}).ok());
  ASSERT_TRUE((*raw)->Flush().ok());
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  DiscoverOptions options;
  options.wait = absl::Milliseconds(500);
  int malformed = -1;
  absl::StatusOr<std::vector<ServiceInfo>> infos =
      DiscoverInfo(*conn, options, &malformed);
  ASSERT_TRUE(infos.ok()) << infos.status();
  EXPECT_THAT(*infos, SizeIs(3));
  EXPECT_EQ(malformed, 1);
}

TEST_F(DiscoveryTest, BadOptionsAreRefused) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  DiscoverOptions options;
  options.name = "a.b";
  ExpectCode(DiscoverPing(*conn, options).status(),
             absl::StatusCode::kInvalidArgument, "not a service name");
  options.name.clear();
  options.id = "abc";
  ExpectCode(DiscoverPing(*conn, options).status(),
             absl::StatusCode::kInvalidArgument, "needs DiscoverOptions.name");
  options.id.clear();
  options.wait = absl::ZeroDuration();
  ExpectCode(DiscoverInfo(*conn, options).status(),
             absl::StatusCode::kInvalidArgument, "positive");
  options.wait = absl::Seconds(1);
  options.max_answers = -1;
  ExpectCode(DiscoverStats(*conn, options).status(),
             absl::StatusCode::kInvalidArgument, "max_answers");
}

// A caller with no schema at all: the method, its types and the schema come
// from $SRV.INFO, and the call goes through with JSON both ways.
TEST_F(DiscoveryTest, ResolveMethodLearnsTheSchemaFromTheService) {
  ASSERT_NO_FATAL_FAILURE(StartServices());
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  absl::StatusOr<std::unique_ptr<SchemaSet>> schemas = SchemaSet::Load({});
  ASSERT_TRUE(schemas.ok()) << schemas.status();
  EXPECT_THAT((*schemas)->Describe(), IsEmpty());

  const absl::Time start = absl::Now();
  absl::StatusOr<MethodInfo> m =
      ResolveMethod(*conn, **schemas, "users.RegisterUser", kWait);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(m.ok()) << m.status();
  std::cout << "resolved through $SRV.INFO in " << took << std::endl;
  // The first answer that settles it ends the wait.
  EXPECT_LT(took, kWait);
  EXPECT_EQ(m->subject, "users.RegisterUser");
  EXPECT_EQ(m->service, "natsgw.users.Users");
  EXPECT_EQ(m->method, "RegisterUser");
  EXPECT_EQ(m->request_type, "natsgw.users.RegisterUserRequest");
  EXPECT_EQ(m->response_type, "natsgw.users.RegisterUserReply");
  EXPECT_EQ(m->file_identifier, "NGUS");
  EXPECT_FALSE(m->idempotent);
  ASSERT_THAT((*schemas)->Describe(),
              ElementsAre(HasSubstr("$SRV.INFO of users ")));
  EXPECT_THAT((*schemas)->Describe()[0],
              HasSubstr("3 tables, services natsgw.users.Users"));

  absl::StatusOr<std::string> request = (*schemas)->JsonToBinary(
      m->request_type, R"({"email":"ada@example.com","display_name":"Ada"})",
      m->file_identifier);
  ASSERT_TRUE(request.ok()) << request.status();
  absl::StatusOr<Message> reply = conn->Request(m->subject, *request, kWait);
  ASSERT_TRUE(reply.ok()) << reply.status();
  VerifyOptions verify;
  verify.file_identifier = m->file_identifier;
  absl::StatusOr<std::string> json = (*schemas)->BinaryToJson(
      m->response_type, reply->data, verify, {.compact = true});
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(nlohmann::json::parse(*json),
            nlohmann::json::parse(R"({"user_id":"u-ada@example.com",)"
                                  R"("created_at_unix_ms":1700000000000})"));

  // Now known locally: no discovery, and the idempotent echo resolves too.
  m = ResolveMethod(*conn, **schemas, "users.RegisterUser", kWait);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_THAT((*schemas)->Describe(), SizeIs(1));
  m = ResolveMethod(*conn, **schemas, "echo.Echo", kWait);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->idempotent);
  EXPECT_EQ(m->file_identifier, "NGEC");
  EXPECT_THAT((*schemas)->Describe(), SizeIs(2));
}

// A deployment's own subject prefix: no local schema knows the subject,
// but the endpoint announces it.
TEST_F(DiscoveryTest, ResolveMethodFollowsAnOverriddenPrefix) {
  auto service_conn = Connect();
  ASSERT_NE(service_conn, nullptr);
  TypedServiceOptions options;
  options.subject_prefix = "acme.users";
  options.name = "acme-users";
  absl::StatusOr<std::unique_ptr<Service>> service =
      users_[0].Start(*service_conn, options);
  ASSERT_TRUE(service.ok()) << service.status();
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  absl::StatusOr<std::unique_ptr<SchemaSet>> schemas =
      SchemaSet::Load({NATSGW_SCHEMAS_DIR});
  ASSERT_TRUE(schemas.ok()) << schemas.status();
  absl::StatusOr<MethodInfo> m =
      ResolveMethod(*conn, **schemas, "acme.users.RegisterUser", kWait);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->subject, "acme.users.RegisterUser");
  EXPECT_EQ(m->request_type, "natsgw.users.RegisterUserRequest");
  // The types were known: nothing was added.
  EXPECT_THAT((*schemas)->Describe(), SizeIs(3));
}

TEST_F(DiscoveryTest, ResolveMethodSaysWhatWasTried) {
  ASSERT_NO_FATAL_FAILURE(StartServices());
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  absl::StatusOr<std::unique_ptr<SchemaSet>> schemas = SchemaSet::Load({});
  ASSERT_TRUE(schemas.ok());

  absl::Status s =
      ResolveMethod(*conn, **schemas, "users.Nope", absl::Milliseconds(300))
          .status();
  ExpectCode(s, absl::StatusCode::kNotFound, "none of the 3 service");
  ExpectCode(s, absl::StatusCode::kNotFound, "--schema");

  // An untyped endpoint, a typed one without a binary schema, and one
  // whose binary schema is broken.
  auto other = Connect();
  ASSERT_NE(other, nullptr);
  auto start = [&](std::string name, std::string subject,
                   std::map<std::string, std::string> service_metadata,
                   std::map<std::string, std::string> endpoint_metadata) {
    ServiceConfig config;
    config.name = std::move(name);
    config.version = "1.0.0";
    config.metadata = std::move(service_metadata);
    EndpointConfig endpoint;
    endpoint.name = "Do";
    endpoint.subject = std::move(subject);
    endpoint.metadata = std::move(endpoint_metadata);
    endpoint.handler = Untyped;
    config.endpoints.push_back(std::move(endpoint));
    absl::StatusOr<std::unique_ptr<Service>> service =
        Service::Start(*other, std::move(config));
    EXPECT_TRUE(service.ok()) << service.status();
    if (service.ok()) services_.push_back(*std::move(service));
  };
  const std::map<std::string, std::string> types = {
      {"fbs.request_type", "x.Req"}, {"fbs.response_type", "x.Rep"}};
  start("plain", "plain.Do", {}, {});
  start("nobfbs", "nobfbs.Do", {}, types);
  start("notbase64", "notbase64.Do", {{"fbs.bfbs", "!!!"}}, types);
  start("garbage", "garbage.Do",
        {{"fbs.bfbs", absl::Base64Escape("not a schema at all")}}, types);
  start("wrongschema", "wrongschema.Do",
        {{"fbs.bfbs",
          absl::Base64Escape(echo::EchoMethods::kService.schema_bfbs)}},
        types);

  // Nothing settles an untyped endpoint: the whole wait is spent.
  ExpectCode(
      ResolveMethod(*conn, **schemas, "plain.Do", absl::Milliseconds(500))
          .status(),
      absl::StatusCode::kNotFound, "does not announce its FlatBuffers");
  ExpectCode(ResolveMethod(*conn, **schemas, "nobfbs.Do", kWait).status(),
             absl::StatusCode::kNotFound, "announces no binary schema");
  ExpectCode(ResolveMethod(*conn, **schemas, "notbase64.Do", kWait).status(),
             absl::StatusCode::kInvalidArgument, "not base64");
  ExpectCode(ResolveMethod(*conn, **schemas, "garbage.Do", kWait).status(),
             absl::StatusCode::kInvalidArgument, "$SRV.INFO of garbage");
  ExpectCode(ResolveMethod(*conn, **schemas, "wrongschema.Do", kWait).status(),
             absl::StatusCode::kNotFound, "does not declare table x.Req");
  // Nothing broken was kept; the echo schema was (it is valid).
  EXPECT_THAT((*schemas)->Describe(),
              ElementsAre(HasSubstr("$SRV.INFO of wrongschema")));
}

// PublishOptions::reply_to: the receiver sees it and answers there.
TEST_F(DiscoveryTest, PublishWithReplyTo) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  absl::StatusOr<std::unique_ptr<RawNatsClient>> raw =
      RawNatsClient::Connect(server().url());
  ASSERT_TRUE(raw.ok()) << raw.status();
  ASSERT_TRUE((*raw)->Tap("tap.>").ok());
  ASSERT_TRUE((*raw)->Flush().ok());
  absl::StatusOr<std::unique_ptr<Subscription>> served = conn->Serve(
      "tap.echo", "q", [](const Message& m) -> absl::StatusOr<Reply> {
        return Reply{absl::StrCat("re:", m.data), {}};
      });
  ASSERT_TRUE(served.ok()) << served.status();

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> answers;
  absl::StatusOr<std::unique_ptr<Subscription>> inbox =
      conn->Subscribe("tap.inbox.1", "", [&](const Message& m) {
        std::lock_guard<std::mutex> lock(mu);
        answers.push_back(m.data);
        cv.notify_all();
      });
  ASSERT_TRUE(inbox.ok()) << inbox.status();

  PublishOptions options;
  options.reply_to = "tap.inbox.1";
  ASSERT_TRUE(conn->Publish("tap.echo", "hello", options).ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, absl::ToChronoNanoseconds(kWait),
                            [&] { return !answers.empty(); }));
    EXPECT_EQ(answers.front(), "re:hello");
  }
  ASSERT_TRUE((*raw)->WaitForCount(2, kWait));
  const auto tapped = (*raw)->received();
  EXPECT_EQ(tapped[0].subject, "tap.echo");
  EXPECT_EQ(tapped[0].reply, "tap.inbox.1");
  EXPECT_EQ(tapped[1].subject, "tap.inbox.1");
  // Without reply_to there is no reply subject.
  ASSERT_TRUE(conn->Publish("tap.plain", "x").ok());
  ASSERT_TRUE((*raw)->WaitForCount(3, kWait));
  EXPECT_EQ((*raw)->received()[2].reply, "");

  // A bad reply subject is refused and nothing is sent.
  for (const char* bad : {"a b", "tap.*", "tap..x", "tap.>"}) {
    options.reply_to = bad;
    ExpectCode(conn->Publish("tap.bad", "x", options).status(),
               absl::StatusCode::kInvalidArgument, "PublishOptions.reply_to");
  }
  // Requests own their reply subject.
  RequestOptions request;
  request.reply_to = "tap.inbox.1";
  ExpectCode(conn->Request("tap.echo", "x", kWait, request).status(),
             absl::StatusCode::kInvalidArgument, "RequestOptions.reply_to");
  ExpectCode(conn->RequestAsync("tap.echo", "x", kWait, request,
                                [](absl::StatusOr<Message>) {})
                 .status(),
             absl::StatusCode::kInvalidArgument, "RequestOptions.reply_to");
  ASSERT_TRUE(conn->Flush(kWait).ok());
  ASSERT_TRUE((*raw)->Flush().ok());
  for (const auto& m : (*raw)->received()) {
    EXPECT_NE(m.subject, "tap.bad");
  }
  EXPECT_THAT((*raw)->received(), SizeIs(3));
}

}  // namespace
}  // namespace natsgw::tools
