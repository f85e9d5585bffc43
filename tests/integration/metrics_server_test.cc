// /metrics over HTTP: what Prometheus scrapes from a service.
#include "natsgw/metrics_server.h"

#include <prometheus/registry.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/http_client.h"
#include "harness/nats_server_fixture.h"
#include "natsgw/connection.h"

namespace natsgw {
namespace {

using ::natsgw::testing::HttpGet;
using ::natsgw::testing::NatsServerTest;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class MetricsServerTest : public NatsServerTest {};

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
  EXPECT_EQ(MetricsServer::Create({}, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MetricsServerOptionsTest, PortInUseIsUnavailable) {
  auto registry = std::make_shared<prometheus::Registry>();
  MetricsServerOptions opts;
  opts.bind_address = "127.0.0.1";
  opts.port = 0;
  auto first = MetricsServer::Create(opts, registry);
  ASSERT_TRUE(first.ok());
  opts.port = (*first)->port();
  auto second = MetricsServer::Create(opts, registry);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace natsgw
