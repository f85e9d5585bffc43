// /metrics over HTTP: what Prometheus scrapes from a service.
#include "natsgw/metrics_server.h"

#include <prometheus/registry.h>

#include <atomic>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/http_client.h"
#include "harness/metric_value.h"
#include "harness/nats_server_fixture.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

using ::natsgw::testing::Eventually;
using ::natsgw::testing::Gate;
using ::natsgw::testing::HttpGet;
using ::natsgw::testing::HttpResponse;
using ::natsgw::testing::MetricValue;
using ::natsgw::testing::NatsServerTest;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Options for a server on a free loopback port.
MetricsServerOptions LoopbackOptions() {
  MetricsServerOptions options;
  options.bind_address = "127.0.0.1";
  options.port = 0;
  return options;
}

class MetricsServerTest : public NatsServerTest {
 protected:
  // A server on a free loopback port for `registry`.
  static std::unique_ptr<MetricsServer> StartServer(
      std::shared_ptr<prometheus::Registry> registry) {
    auto metrics =
        MetricsServer::Create(LoopbackOptions(), std::move(registry));
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    return metrics.ok() ? *std::move(metrics) : nullptr;
  }

  // GET /readyz: the status code, or 0 when the request itself failed.
  static int ReadyzStatus(const MetricsServer& server,
                          std::string* body = nullptr) {
    absl::StatusOr<HttpResponse> r =
        HttpGet("127.0.0.1", server.port(), "/readyz");
    if (!r.ok()) return 0;
    if (body != nullptr) *body = r->body;
    return r->status;
  }

  std::unique_ptr<Connection> Connect(
      const std::shared_ptr<prometheus::Registry>& registry,
      absl::Duration slow_consumer_unready_for = absl::Seconds(10)) {
    ConnectionOptions options;
    options.servers = {server().url()};
    options.registry = registry;
    options.reconnect.wait = absl::Milliseconds(50);
    options.slow_consumer_unready_for = slow_consumer_unready_for;
    auto conn = Connection::Create(options);
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? *std::move(conn) : nullptr;
  }
};

TEST_F(MetricsServerTest, HealthAndReadinessAnswerBesideMetrics) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = StartServer(registry);
  ASSERT_NE(metrics, nullptr);
  EXPECT_EQ(metrics->health_url(),
            absl::StrCat("http://127.0.0.1:", metrics->port(), "/healthz"));
  EXPECT_EQ(metrics->readiness_url(),
            absl::StrCat("http://127.0.0.1:", metrics->port(), "/readyz"));

  auto health = HttpGet("127.0.0.1", metrics->port(), "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->content_type, "application/json");
  EXPECT_EQ(nlohmann::json::parse(health->body)["status"], "ok");

  // No checks: ready.
  std::string body;
  EXPECT_EQ(ReadyzStatus(*metrics, &body), 200);
  EXPECT_EQ(nlohmann::json::parse(body)["status"], "ready");

  // One failing check: 503, naming the check and why.
  bool healthy = false;
  metrics->AddReadinessCheck("database", [&healthy] {
    return healthy ? absl::OkStatus()
                   : absl::UnavailableError("replica lag 12s > 5s");
  });
  metrics->AddReadinessCheck("cache", [] { return absl::OkStatus(); });
  EXPECT_EQ(ReadyzStatus(*metrics, &body), 503);
  nlohmann::json parsed = nlohmann::json::parse(body);
  EXPECT_EQ(parsed["status"], "not ready");
  EXPECT_EQ(parsed["checks"]["cache"], "ok");
  EXPECT_EQ(parsed["checks"]["database"], "UNAVAILABLE: replica lag 12s > 5s");
  absl::Status readiness = metrics->Readiness();
  EXPECT_EQ(readiness.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(readiness.message(), HasSubstr("database: replica lag"));

  healthy = true;
  EXPECT_EQ(ReadyzStatus(*metrics), 200);
  metrics->RemoveReadinessCheck("database");
  EXPECT_TRUE(metrics->Readiness().ok());

  // Draining wins over every check, and liveness is unaffected.
  metrics->SetDraining();
  EXPECT_TRUE(metrics->draining());
  EXPECT_EQ(ReadyzStatus(*metrics, &body), 503);
  EXPECT_EQ(nlohmann::json::parse(body)["draining"], true);
  EXPECT_THAT(metrics->Readiness().message(), HasSubstr("draining"));
  health = HttpGet("127.0.0.1", metrics->port(), "/healthz");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);

  // Exact paths only.
  auto sub_path = HttpGet("127.0.0.1", metrics->port(), "/readyz/extra");
  ASSERT_TRUE(sub_path.ok());
  EXPECT_EQ(sub_path->status, 404);
}

TEST_F(MetricsServerTest, ReadinessFlipsOnDisconnectAndBack) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = StartServer(registry);
  ASSERT_NE(metrics, nullptr);
  auto conn = Connect(registry);
  ASSERT_NE(conn, nullptr);
  Connection* c = conn.get();
  metrics->AddReadinessCheck("nats", [c] { return c->Readiness(); });
  ASSERT_EQ(ReadyzStatus(*metrics), 200);

  ASSERT_TRUE(server().Stop().ok());
  std::string body;
  ASSERT_TRUE(Eventually([&] { return ReadyzStatus(*metrics, &body) == 503; }));
  EXPECT_THAT(body, HasSubstr("NATS connection is"));
  EXPECT_EQ(c->Readiness().code(), absl::StatusCode::kUnavailable);

  ASSERT_TRUE(server().Restart().ok());
  ASSERT_TRUE(Eventually([&] { return ReadyzStatus(*metrics) == 200; }))
      << c->Readiness();

  c->Close();
  EXPECT_THAT(c->Readiness().message(), HasSubstr("closed"));
  metrics->RemoveReadinessCheck("nats");
}

TEST_F(MetricsServerTest, ReadinessFailsWhileASubscriptionDrains) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto conn = Connect(registry);
  ASSERT_NE(conn, nullptr);
  Gate gate;
  std::atomic<int> started{0};
  auto sub = conn->Subscribe("ready.drain", "", [&](const Message&) {
    started.fetch_add(1);
    gate.Wait();
  });
  ASSERT_TRUE(sub.ok()) << sub.status();
  ASSERT_TRUE(conn->Readiness().ok()) << conn->Readiness();
  ASSERT_TRUE(conn->Publish("ready.drain", "x").ok());
  ASSERT_TRUE(Eventually([&] { return started.load() == 1; }));

  std::thread drainer([&] { (*sub)->Drain(absl::Seconds(20)).IgnoreError(); });
  ASSERT_TRUE(Eventually([&] { return !conn->Readiness().ok(); }));
  EXPECT_THAT(conn->Readiness().message(),
              HasSubstr("subscription 'ready.drain' is not active"));
  gate.Open();
  drainer.join();
  // Drained and gone: nothing left that is inactive.
  EXPECT_TRUE(conn->Readiness().ok()) << conn->Readiness();
}

TEST_F(MetricsServerTest, SlowConsumerIsCountedAndMakesNotReadyForAWhile) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto conn = Connect(registry, absl::Seconds(1));
  ASSERT_NE(conn, nullptr);
  Gate gate;
  // Inline handler, blocked: messages pile up in the client library's
  // pending queue until its limit (65536 messages) makes it drop them.
  auto sub =
      conn->Subscribe("ready.slow", "", [&](const Message&) { gate.Wait(); });
  ASSERT_TRUE(sub.ok()) << sub.status();
  constexpr int kMessages = 70000;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(conn->Publish("ready.slow", "x").ok());
  }
  ASSERT_TRUE(conn->Flush(absl::Seconds(10)).ok());
  ASSERT_TRUE(Eventually([&] {
    return MetricValue(*registry, "natsgw_slow_consumer_events_total",
                       {{"lane", "publish"}})
               .value_or(0) >= 1;
  }));
  absl::Status ready = conn->Readiness();
  EXPECT_EQ(ready.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(ready.message(), HasSubstr("slow consumer on the publish"));
  gate.Open();
  // slow_consumer_unready_for is 1s: ready again once it has passed.
  EXPECT_TRUE(Eventually([&] { return conn->Readiness().ok(); }))
      << conn->Readiness();
}

TEST_F(MetricsServerTest, ScrapeShowsLatencyHistogramsOfRealTraffic) {
  auto registry = std::make_shared<prometheus::Registry>();
  MetricsServerOptions mopts;
  mopts.bind_address = "127.0.0.1";
  mopts.port = 0;
  auto metrics = MetricsServer::Create(mopts, registry);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_GT((*metrics)->port(), 0);
  EXPECT_EQ((*metrics)->url(),
            absl::StrCat("http://127.0.0.1:", (*metrics)->port(), "/metrics"));

  ConnectionOptions options;
  options.servers = {server().url()};
  options.registry = registry;
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  auto endpoint = (*conn)->Serve("echo.Echo", "q",
                                 [](const Message& m) -> absl::StatusOr<Reply> {
                                   return Reply{m.data, {}};
                                 });
  ASSERT_TRUE(endpoint.ok());
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE((*conn)->Request("echo.Echo", "x", absl::Seconds(5)).ok());
  }
  ASSERT_TRUE((*conn)->Publish("events.happened", "x").ok());
  EXPECT_FALSE((*conn)->Request("missing.Op", "x", absl::Seconds(5)).ok());

  auto response = HttpGet("127.0.0.1", (*metrics)->port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_THAT(response->content_type, StartsWith("text/plain"));
  const std::string& body = response->body;
  EXPECT_THAT(
      body,
      HasSubstr("# TYPE natsgw_client_request_duration_seconds histogram"));
  EXPECT_THAT(body, HasSubstr("natsgw_client_request_duration_seconds_count{"
                              "code=\"OK\",subject=\"echo.Echo\"} 10"));
  EXPECT_THAT(body,
              HasSubstr("natsgw_client_request_duration_seconds_bucket{code="
                        "\"OK\",subject=\"echo.Echo\",le=\"1e-05\"}"));
  EXPECT_THAT(body,
              HasSubstr("natsgw_client_request_duration_seconds_bucket{code="
                        "\"OK\",subject=\"echo.Echo\",le=\"+Inf\"} 10"));
  EXPECT_THAT(body, HasSubstr("natsgw_server_request_duration_seconds_count{"
                              "code=\"OK\",subject=\"echo.Echo\"} 10"));
  EXPECT_THAT(body, HasSubstr("natsgw_publish_duration_seconds_count{subject="
                              "\"events.happened\"} 1"));
  EXPECT_THAT(
      body,
      HasSubstr(
          "natsgw_errors_total{code=\"UNAVAILABLE\",operation=\"request\"} 1"));

  auto missing = HttpGet("127.0.0.1", (*metrics)->port(), "/nothing-here");
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->status, 404);
}

TEST(MetricsServerDrainTest, DrainzRunsTheHandlerOnceAndAnswersWhenDrained) {
  auto registry = std::make_shared<prometheus::Registry>();
  MetricsServerOptions mopts = LoopbackOptions();
  mopts.threads = 3;
  auto metrics = MetricsServer::Create(mopts, registry);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  MetricsServer& server = **metrics;
  EXPECT_EQ(server.drain_url(),
            absl::StrCat("http://127.0.0.1:", server.port(), "/drainz"));

  // The handler blocks until released, as a real drain waits for work in
  // hand; meanwhile readiness already says draining.
  Gate release;
  std::atomic<int> runs{0};
  server.SetDrainHandler([&] {
    runs.fetch_add(1);
    release.Wait();
    return absl::OkStatus();
  });
  absl::StatusOr<HttpResponse> first, second;
  std::thread a(
      [&] { first = HttpGet("127.0.0.1", server.port(), "/drainz"); });
  // No ASSERT until the threads are joined: a failure must not leave them
  // (or the handler) running.
  EXPECT_TRUE(Eventually([&] { return runs.load() == 1; }));
  EXPECT_TRUE(server.draining());
  auto ready = HttpGet("127.0.0.1", server.port(), "/readyz");
  EXPECT_TRUE(ready.ok() && ready->status == 503);
  // Another request, during the drain or after it, gets the same result
  // without running the handler again.
  std::thread b(
      [&] { second = HttpGet("127.0.0.1", server.port(), "/drainz"); });
  release.Open();
  a.join();
  b.join();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(nlohmann::json::parse(first->body)["status"], "drained");
  EXPECT_EQ(second->status, 200);
  EXPECT_EQ(runs.load(), 1);
  server.SetDrainHandler(nullptr);
}

TEST(MetricsServerDrainTest, FailedDrainIs500AndNoHandlerOnlyStopsReadiness) {
  auto registry = std::make_shared<prometheus::Registry>();
  MetricsServerOptions mopts = LoopbackOptions();
  auto plain = MetricsServer::Create(mopts, registry);
  ASSERT_TRUE(plain.ok());
  auto r = HttpGet("127.0.0.1", (*plain)->port(), "/drainz");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(nlohmann::json::parse(r->body)["status"], "draining");
  EXPECT_TRUE((*plain)->draining());

  auto failing = MetricsServer::Create(mopts, registry);
  ASSERT_TRUE(failing.ok());
  (*failing)->SetDrainHandler(
      [] { return absl::DeadlineExceededError("2 handlers still running"); });
  r = HttpGet("127.0.0.1", (*failing)->port(), "/drainz");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 500);
  nlohmann::json body = nlohmann::json::parse(r->body);
  EXPECT_EQ(body["status"], "drain failed");
  EXPECT_EQ(body["error"], "DEADLINE_EXCEEDED: 2 handlers still running");

  // Disabled: no such path.
  mopts.drain_path = "";
  auto disabled = MetricsServer::Create(mopts, registry);
  ASSERT_TRUE(disabled.ok());
  EXPECT_EQ((*disabled)->drain_url(), "");
  r = HttpGet("127.0.0.1", (*disabled)->port(), "/drainz");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_FALSE((*disabled)->draining());
}

TEST(MetricsServerOptionsTest, BadOptionsAreRejected) {
  auto registry = std::make_shared<prometheus::Registry>();
  MetricsServerOptions bad_port;
  bad_port.port = 70000;
  EXPECT_EQ(MetricsServer::Create(bad_port, registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  MetricsServerOptions bad_path;
  bad_path.path = "metrics";
  EXPECT_EQ(MetricsServer::Create(bad_path, registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  MetricsServerOptions same_paths;
  same_paths.readiness_path = same_paths.health_path;
  absl::Status same = MetricsServer::Create(same_paths, registry).status();
  EXPECT_EQ(same.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(same.message(), HasSubstr("must differ"));
  MetricsServerOptions drain_clash;
  drain_clash.drain_path = drain_clash.path;
  EXPECT_THAT(MetricsServer::Create(drain_clash, registry).status().message(),
              HasSubstr("must differ"));
  MetricsServerOptions pattern_path;
  pattern_path.health_path = "/health*";
  EXPECT_EQ(MetricsServer::Create(pattern_path, registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  MetricsServerOptions no_threads;
  no_threads.threads = 0;
  EXPECT_EQ(MetricsServer::Create(no_threads, registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsServer::Create({}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MetricsServerOptionsTest, PortInUseIsUnavailable) {
  auto registry = std::make_shared<prometheus::Registry>();
  MetricsServerOptions opts = LoopbackOptions();
  auto first = MetricsServer::Create(opts, registry);
  ASSERT_TRUE(first.ok());
  opts.port = (*first)->port();
  auto second = MetricsServer::Create(opts, registry);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace natsgw
