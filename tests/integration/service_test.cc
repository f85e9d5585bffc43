// natsgw::Service against a real nats-server: the nine control subjects
// answer PING/INFO/STATS with the documents of the NATS Services API, the
// endpoints serve in their queue groups, statistics count and reset, every
// instance answers the all-services subjects, Stop() unsubscribes, and an
// invalid config subscribes nothing.
#include "natsgw/service.h"

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gateway_test_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/nats_server_fixture.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/logger.h"
#include "natsgw/message_id.h"
#include "nlohmann/json.hpp"
#include "raw_nats_client.h"
#include "service_json.h"

namespace natsgw {
namespace {

using ::natsgw::testing::GatewayTest;
using ::natsgw::testing::RawMessage;
using ::natsgw::testing::RawNatsClient;
using ::nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

constexpr absl::Duration kWait = absl::Seconds(10);

absl::Time ParseRfc3339(const std::string& text) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, text, &t, &err))
      << text << ": " << err;
  return t;
}

class ServiceTest : public GatewayTest {
 protected:
  std::unique_ptr<Connection> Connect(MessageLimits limits = {}) {
    ConnectionOptions options = Options();
    options.limits = limits;
    // A private registry per connection (Connection::registry()): tests
    // tell what the serving side counted from what the asking side did.
    options.registry = nullptr;
    return GatewayTest::Connect(std::move(options));
  }

  // "orders": "create" echoes in the default queue group "q" on a worker
  // pool; "fail" always answers NOT_FOUND, on its default subject, without
  // a queue group.
  static ServiceConfig OrdersConfig() {
    ServiceConfig config;
    config.name = "orders";
    config.version = "1.4.0-rc.1+build.7";
    config.description = "Order RPC \"quoted\"";
    config.metadata = {{"k8s.pod", "orders-7f9c"}};
    EndpointConfig create;
    create.name = "create";
    create.subject = "orders.create";
    create.metadata = {{"fbs.root", "CreateOrder"}};
    create.serve = ServeOptions{.workers = 2};
    create.handler = [](const Message& m) -> absl::StatusOr<Reply> {
      return Reply{absl::StrCat("created:", m.data), {}};
    };
    config.endpoints.push_back(std::move(create));
    EndpointConfig fail;
    fail.name = "fail";
    fail.queue_group = "";
    fail.handler = [](const Message& m) -> absl::StatusOr<Reply> {
      return absl::NotFoundError(absl::StrCat("no such order: ", m.data));
    };
    config.endpoints.push_back(std::move(fail));
    return config;
  }

  std::unique_ptr<Service> StartOrders(Connection& conn) {
    absl::StatusOr<std::unique_ptr<Service>> service =
        Service::Start(conn, OrdersConfig());
    EXPECT_TRUE(service.ok()) << service.status();
    return service.ok() ? *std::move(service) : nullptr;
  }

  // One request, the first reply's body parsed.
  json Query(Connection& conn, const std::string& subject) {
    absl::StatusOr<Message> reply = conn.Request(subject, "", kWait);
    EXPECT_TRUE(reply.ok()) << subject << ": " << reply.status();
    if (!reply.ok()) return json();
    json doc = json::parse(reply->data, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(doc.is_discarded()) << subject << ": " << reply->data;
    return doc;
  }

  // The three subjects a verb is answered on for `service`.
  static std::vector<std::string> Subjects(const std::string& verb,
                                           const Service& service) {
    return {absl::StrCat("$SRV.", verb),
            absl::StrCat("$SRV.", verb, ".", service.config().name),
            absl::StrCat("$SRV.", verb, ".", service.config().name, ".",
                         service.id())};
  }

  // Publishes one request to `subject` and collects replies until at least
  // `n` have arrived (the way `nats micro ping` gathers every instance).
  std::vector<json> Gather(const std::string& subject, size_t n) {
    auto raw = RawNatsClient::Connect(server().url());
    EXPECT_TRUE(raw.ok()) << raw.status();
    if (!raw.ok()) return {};
    const std::string inbox = absl::StrCat("_INBOX.gather.", NewMessageId());
    EXPECT_TRUE((*raw)->Tap(inbox).ok());
    EXPECT_TRUE((*raw)->Publish(subject, "", {}, inbox).ok());
    EXPECT_TRUE((*raw)->WaitForCount(n, kWait)) << subject;
    std::vector<json> out;
    for (const RawMessage& m : (*raw)->received()) {
      out.push_back(json::parse(m.data, nullptr, false));
    }
    return out;
  }
};

TEST_F(ServiceTest, IdIsANuidLikeToken) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  auto a = StartOrders(*conn);
  auto b = StartOrders(*conn);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_THAT(a->id(), ::testing::MatchesRegex("[0-9A-Za-z]{22}"));
  EXPECT_NE(a->id(), b->id());
}

TEST_F(ServiceTest, PingOnAllThreeSubjects) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  auto service = StartOrders(*conn);
  ASSERT_NE(service, nullptr);
  for (const std::string& subject : Subjects("PING", *service)) {
    SCOPED_TRACE(subject);
    const json doc = Query(*conn, subject);
    EXPECT_EQ(doc, json::parse(absl::StrCat(
                       R"({"type":"io.nats.micro.v1.ping_response",)",
                       R"("name":"orders","id":")", service->id(),
                       R"(","version":"1.4.0-rc.1+build.7",)",
                       R"("metadata":{"k8s.pod":"orders-7f9c"}})")));
  }
  EXPECT_EQ(json::parse(service->PingJson()), Query(*conn, "$SRV.PING"));
}

TEST_F(ServiceTest, InfoOnAllThreeSubjects) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  auto service = StartOrders(*conn);
  ASSERT_NE(service, nullptr);
  const json want = json::parse(absl::StrCat(R"({
      "type": "io.nats.micro.v1.info_response",
      "name": "orders", "id": ")",
                                             service->id(), R"(",
      "version": "1.4.0-rc.1+build.7",
      "metadata": {"k8s.pod": "orders-7f9c"},
      "description": "Order RPC \"quoted\"",
      "endpoints": [
        {"name": "create", "subject": "orders.create", "queue_group": "q",
         "metadata": {"fbs.root": "CreateOrder"}},
        {"name": "fail", "subject": "fail", "queue_group": "",
         "metadata": {}}
      ]})"));
  for (const std::string& subject : Subjects("INFO", *service)) {
    SCOPED_TRACE(subject);
    EXPECT_EQ(Query(*conn, subject), want);
  }
}

TEST_F(ServiceTest, ControlRequestsIgnorePayloadAndHeaders) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  auto service = StartOrders(*conn);
  ASSERT_NE(service, nullptr);
  auto raw = RawNatsClient::Connect(server().url());
  ASSERT_TRUE(raw.ok()) << raw.status();
  // What natscli sends.
  absl::StatusOr<RawMessage> reply =
      (*raw)->Request(absl::StrCat("$SRV.INFO.orders.", service->id()), "{}",
                      {{"Accept-Encoding", "snappy"}}, kWait);
  ASSERT_TRUE(reply.ok()) << reply.status();
  const json doc = json::parse(reply->data, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << reply->data;
  EXPECT_EQ(doc["type"], "io.nats.micro.v1.info_response");
  EXPECT_EQ(reply->headers.count("Nats-Service-Error"), 0u);
  EXPECT_EQ(reply->headers.count("Content-Encoding"), 0u);
}

TEST_F(ServiceTest, StatsCountRequestsAndErrorsAndReset) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  auto service = StartOrders(*conn);
  ASSERT_NE(service, nullptr);

  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<Message> reply =
        conn->Request("orders.create", absl::StrCat("o", i), kWait);
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->data, absl::StrCat("created:o", i));
  }
  absl::StatusOr<Message> failed = conn->Request("fail", "o9", kWait);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(failed.status().message()),
              HasSubstr("no such order: o9"));

  for (const std::string& subject : Subjects("STATS", *service)) {
    SCOPED_TRACE(subject);
    const json doc = Query(*conn, subject);
    EXPECT_EQ(doc["type"], "io.nats.micro.v1.stats_response");
    EXPECT_EQ(doc["name"], "orders");
    EXPECT_EQ(doc["id"], service->id());
    EXPECT_EQ(doc["version"], "1.4.0-rc.1+build.7");
    EXPECT_EQ(doc["metadata"], json({{"k8s.pod", "orders-7f9c"}}));
    EXPECT_EQ(doc["started"], internal::FormatRfc3339Nano(service->started()));
    ASSERT_EQ(doc["endpoints"].size(), 2u) << doc.dump(2);

    const json& create = doc["endpoints"][0];
    EXPECT_EQ(create["name"], "create");
    EXPECT_EQ(create["subject"], "orders.create");
    EXPECT_EQ(create["queue_group"], "q");
    EXPECT_EQ(create["num_requests"], 3);
    EXPECT_EQ(create["num_errors"], 0);
    EXPECT_EQ(create["last_error"], "");
    ASSERT_TRUE(create["processing_time"].is_number_integer());
    ASSERT_TRUE(create["average_processing_time"].is_number_integer());
    EXPECT_GT(create["processing_time"].get<int64_t>(), 0);
    EXPECT_EQ(create["average_processing_time"].get<int64_t>(),
              create["processing_time"].get<int64_t>() / 3);
    const json& data = create["data"];
    for (const char* key :
         {"p50_ns", "p90_ns", "p99_ns", "p999_ns", "shed", "expired"}) {
      ASSERT_TRUE(data.contains(key)) << key;
      EXPECT_TRUE(data[key].is_number_integer()) << key;
    }
    EXPECT_GT(data["p50_ns"].get<int64_t>(), 0);
    EXPECT_LE(data["p50_ns"].get<int64_t>(), data["p999_ns"].get<int64_t>());
    EXPECT_EQ(data["shed"], 0);
    EXPECT_EQ(data["expired"], 0);

    const json& fail = doc["endpoints"][1];
    EXPECT_EQ(fail["name"], "fail");
    EXPECT_EQ(fail["subject"], "fail");
    EXPECT_EQ(fail["queue_group"], "");
    EXPECT_EQ(fail["num_requests"], 1);
    EXPECT_EQ(fail["num_errors"], 1);
    EXPECT_EQ(fail["last_error"], "404:no such order: o9");
  }

  std::vector<EndpointStats> stats = service->stats();
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].num_requests, 3);
  EXPECT_EQ(stats[1].num_errors, 1);

  const absl::Time started = service->started();
  service->ResetStats();
  EXPECT_GE(service->started(), started);
  const json doc =
      Query(*conn, absl::StrCat("$SRV.STATS.orders.", service->id()));
  EXPECT_EQ(doc["started"], internal::FormatRfc3339Nano(service->started()));
  EXPECT_GE(ParseRfc3339(doc["started"]),
            absl::FromUnixNanos(absl::ToUnixNanos(started)));
  for (const json& e : doc["endpoints"]) {
    EXPECT_EQ(e["num_requests"], 0) << e;
    EXPECT_EQ(e["num_errors"], 0) << e;
    EXPECT_EQ(e["last_error"], "") << e;
    EXPECT_EQ(e["processing_time"], 0) << e;
    EXPECT_EQ(e["average_processing_time"], 0) << e;
  }
  // queue_group survives a reset (nats.go loses it there).
  EXPECT_EQ(doc["endpoints"][0]["queue_group"], "q");
  EXPECT_EQ(service->stats()[0].num_requests, 0);
}

TEST_F(ServiceTest, EveryInstanceAnswersTheSharedSubjects) {
  auto conn_a = Connect();
  auto conn_b = Connect();
  ASSERT_NE(conn_a, nullptr);
  ASSERT_NE(conn_b, nullptr);
  auto a = StartOrders(*conn_a);
  auto b = StartOrders(*conn_b);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);

  for (const char* subject :
       {"$SRV.PING", "$SRV.PING.orders", "$SRV.INFO.orders", "$SRV.STATS"}) {
    SCOPED_TRACE(subject);
    std::vector<std::string> ids;
    for (const json& doc : Gather(subject, 2))
      ids.push_back(doc.value("id", ""));
    EXPECT_THAT(ids, UnorderedElementsAre(a->id(), b->id()));
  }
  // The instance subject reaches only that instance.
  const json one = Query(*conn_a, absl::StrCat("$SRV.PING.orders.", b->id()));
  EXPECT_EQ(one["id"], b->id());

  // The endpoint is shared in queue group "q": each request is handled once.
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(conn_a->Request("orders.create", "x", kWait).ok());
  }
  EXPECT_EQ(a->stats()[0].num_requests + b->stats()[0].num_requests, 10);
  // Without a queue group every instance gets every request (the caller
  // takes the first reply).
  EXPECT_EQ(conn_a->Request("fail", "x", kWait).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(ServiceTest, ControlSubjectsAreOneMetricsLabelPerVerb) {
  // The per-instance control subjects embed the random instance ID; as
  // metric labels they would mint new series at every start.
  // (The asking side labels the literal subjects it requests; that is its
  // choice, see SendOptions::metric_subject. Here the serving side counts.)
  auto conn = Connect();
  auto asker = Connect();
  ASSERT_NE(conn, nullptr);
  ASSERT_NE(asker, nullptr);
  auto service = StartOrders(*conn);
  ASSERT_NE(service, nullptr);
  for (const char* verb : {"PING", "INFO", "STATS"}) {
    for (const std::string& subject : Subjects(verb, *service)) {
      ASSERT_TRUE(asker->Request(subject, "", kWait).ok()) << subject;
    }
  }
  const std::string metrics =
      prometheus::TextSerializer().Serialize(conn->registry()->Collect());
  EXPECT_THAT(metrics, Not(HasSubstr(service->id())));
  EXPECT_THAT(
      metrics,
      HasSubstr("natsgw_server_request_duration_seconds_count{code=\"OK\","
                "subject=\"$SRV.PING\"} 3"));
}

TEST_F(ServiceTest, StopUnsubscribesEverythingAndIsIdempotent) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  auto service = StartOrders(*conn);
  ASSERT_NE(service, nullptr);
  ASSERT_TRUE(conn->Request("$SRV.PING.orders", "", kWait).ok());
  ASSERT_TRUE(conn->Request("orders.create", "x", kWait).ok());

  service->Stop();
  service->Stop();
  for (const char* verb : {"PING", "INFO", "STATS"}) {
    for (const std::string& subject : Subjects(verb, *service)) {
      EXPECT_EQ(conn->Request(subject, "", kWait).status().code(),
                absl::StatusCode::kUnavailable)
          << subject;
    }
  }
  EXPECT_EQ(conn->Request("orders.create", "x", kWait).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(conn->Request("fail", "x", kWait).status().code(),
            absl::StatusCode::kUnavailable);
  // The final numbers stay readable.
  EXPECT_EQ(service->stats()[0].num_requests, 1);
  EXPECT_THAT(service->StatsJson(), HasSubstr(R"("num_requests":1,)"));
  service.reset();  // the destructor stops again: harmless
}

TEST_F(ServiceTest, DrainAnswersRequestsInHandBeforeStopping) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  auto caller = Connect();
  ASSERT_NE(caller, nullptr);
  testing::Gate release;
  testing::Latch started(2);
  ServiceConfig config;
  config.name = "slow";
  config.version = "1.0.0";
  EndpointConfig work;
  work.name = "work";
  work.subject = "slow.work";
  // Two workers: both requests are in hand when the drain starts.
  ServeOptions serve;
  serve.workers = 2;
  work.serve = serve;
  work.handler = [&](const Message& m) -> absl::StatusOr<Reply> {
    started.CountDown();
    release.Wait();
    return Reply{absl::StrCat("done:", m.data), {}};
  };
  config.endpoints.push_back(std::move(work));
  auto service = Service::Start(*conn, std::move(config));
  ASSERT_TRUE(service.ok()) << service.status();

  std::vector<absl::StatusOr<Message>> replies;
  std::mutex mu;
  for (const char* data : {"a", "b"}) {
    ASSERT_TRUE(caller
                    ->RequestAsync("slow.work", data, kWait, {},
                                   [&](absl::StatusOr<Message> reply) {
                                     std::lock_guard<std::mutex> lock(mu);
                                     replies.push_back(std::move(reply));
                                   })
                    .ok());
  }
  ASSERT_TRUE(started.Wait());

  absl::Status drained;
  std::thread drainer([&] { drained = (*service)->Drain(kWait); });
  // Control subjects go first: the instance is no longer discoverable while
  // its requests are still being answered.
  EXPECT_TRUE(testing::Eventually([&] {
    return caller->Request("$SRV.PING.slow", "", absl::Milliseconds(200))
               .status()
               .code() == absl::StatusCode::kUnavailable;
  }));
  release.Open();
  drainer.join();
  EXPECT_TRUE(drained.ok()) << drained;
  ASSERT_TRUE(testing::Eventually([&] {
    std::lock_guard<std::mutex> lock(mu);
    return replies.size() == 2;
  }));
  for (const auto& reply : replies) {
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_THAT(reply->data, ::testing::StartsWith("done:"));
  }
  // Drained means stopped: nobody serves the endpoint any more.
  EXPECT_EQ(caller->Request("slow.work", "c", kWait).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE((*service)->Drain(kWait).ok());  // a no-op now
}

TEST_F(ServiceTest, InvalidConfigSubscribesNothing) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  ServiceConfig config = OrdersConfig();
  // The first endpoint is fine, the second duplicates it: validation runs
  // before anything is subscribed.
  EndpointConfig dup;
  dup.name = "dup";
  dup.subject = "orders.create";
  dup.handler = [](const Message&) -> absl::StatusOr<Reply> { return Reply{}; };
  config.endpoints.push_back(std::move(dup));
  absl::StatusOr<std::unique_ptr<Service>> service =
      Service::Start(*conn, std::move(config));
  ASSERT_EQ(service.status().code(), absl::StatusCode::kInvalidArgument)
      << service.status();
  EXPECT_THAT(std::string(service.status().message()),
              HasSubstr("duplicates endpoint 0"));

  ServiceConfig bad_version = OrdersConfig();
  bad_version.version = "1.4";
  service = Service::Start(*conn, std::move(bad_version));
  ASSERT_EQ(service.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(service.status().message()), HasSubstr("SemVer"));

  for (const char* subject :
       {"$SRV.PING", "$SRV.INFO.orders", "orders.create", "fail"}) {
    EXPECT_EQ(conn->Request(subject, "", kWait).status().code(),
              absl::StatusCode::kUnavailable)
        << subject;
  }
}

TEST_F(ServiceTest, FailedSubscriptionUndoesEverything) {
  // A connection whose subject limit admits the endpoints and the first
  // control subjects but not $SRV.PING.orders.<id>: Start fails half-way
  // and must leave nothing subscribed.
  MessageLimits tight;
  tight.max_subject_bytes = 20;
  auto tight_conn = Connect(tight);
  auto conn = Connect();
  ASSERT_NE(tight_conn, nullptr);
  ASSERT_NE(conn, nullptr);
  absl::StatusOr<std::unique_ptr<Service>> service =
      Service::Start(*tight_conn, OrdersConfig());
  ASSERT_EQ(service.status().code(), absl::StatusCode::kInvalidArgument)
      << service.status();
  EXPECT_THAT(std::string(service.status().message()),
              HasSubstr("control subject \"$SRV.PING.orders."));
  for (const char* subject :
       {"$SRV.PING", "$SRV.PING.orders", "orders.create", "fail"}) {
    EXPECT_EQ(conn->Request(subject, "", kWait).status().code(),
              absl::StatusCode::kUnavailable)
        << subject;
  }
}

TEST_F(ServiceTest, ServiceWithoutEndpointsIsDiscoverable) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  ServiceConfig config;
  config.name = "empty";
  absl::StatusOr<std::unique_ptr<Service>> service =
      Service::Start(*conn, std::move(config));
  ASSERT_TRUE(service.ok()) << service.status();
  const json info = Query(*conn, "$SRV.INFO.empty");
  EXPECT_EQ(info["endpoints"], json::array());
  EXPECT_EQ(info["description"], "");
  EXPECT_EQ(info["metadata"], json::object());
  const json stats = Query(*conn, "$SRV.STATS.empty");
  EXPECT_EQ(stats["endpoints"], json::array());
  EXPECT_EQ(stats["version"], "0.0.0");
}

}  // namespace
}  // namespace natsgw
