#include "metrics.h"

#include <prometheus/text_serializer.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace natsgw::internal {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Scrape(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

TEST(MetricsTest, RegistersFamiliesWithSubMillisecondBuckets) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = GatewayMetrics::Create(registry, 8);
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  SubjectMetrics& m = (*metrics)->ForPattern("echo.Echo");
  m.client_request.For(absl::StatusCode::kOk).Observe(42e-6);
  m.server_request.For(absl::StatusCode::kNotFound).Observe(0.3);
  m.published.Get().Increment();
  (*metrics)->RecordError(Operation::kRequest, absl::StatusCode::kUnavailable);

  const std::string text = Scrape(*registry);
  EXPECT_THAT(
      text,
      HasSubstr("# TYPE natsgw_client_request_duration_seconds histogram"));
  EXPECT_THAT(text,
              HasSubstr("natsgw_client_request_duration_seconds_bucket{code="
                        "\"OK\",subject=\"echo.Echo\",le=\"1e-05\"} 0"));
  EXPECT_THAT(text,
              HasSubstr("natsgw_client_request_duration_seconds_bucket{code="
                        "\"OK\",subject=\"echo.Echo\",le=\"5e-05\"} 1"));
  EXPECT_THAT(text, HasSubstr("le=\"2.5\""));
  EXPECT_THAT(text, HasSubstr("natsgw_server_request_duration_seconds_count{"
                              "code=\"NOT_FOUND\",subject=\"echo.Echo\"} 1"));
  EXPECT_THAT(
      text,
      HasSubstr("natsgw_messages_published_total{subject=\"echo.Echo\"} 1"));
  EXPECT_THAT(
      text,
      HasSubstr(
          "natsgw_errors_total{code=\"UNAVAILABLE\",operation=\"request\"} 1"));
}

TEST(MetricsTest, LiteralSubjectsAreCappedIntoOther) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = *GatewayMetrics::Create(registry, 2);
  metrics->ForLiteral("orders.1").published.Get().Increment();
  metrics->ForLiteral("orders.2").published.Get().Increment();
  metrics->ForLiteral("orders.3").published.Get().Increment();
  metrics->ForLiteral("orders.4").published.Get().Increment();
  metrics->ForLiteral("orders.1").published.Get().Increment();  // still its own
  // Patterns never count against the cap.
  metrics->ForPattern("orders.*").received.Get().Increment();

  const std::string text = Scrape(*registry);
  EXPECT_THAT(
      text,
      HasSubstr("natsgw_messages_published_total{subject=\"orders.1\"} 2"));
  EXPECT_THAT(
      text, HasSubstr("natsgw_messages_published_total{subject=\"_other\"} 2"));
  EXPECT_THAT(text, Not(HasSubstr("subject=\"orders.3\"")));
  EXPECT_THAT(text, HasSubstr("natsgw_metric_subjects_overflow_total 2"));
  EXPECT_THAT(
      text,
      HasSubstr("natsgw_messages_received_total{subject=\"orders.*\"} 1"));
}

TEST(MetricsTest, TwoConnectionsShareOneRegistry) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto a = *GatewayMetrics::Create(registry, 8);
  auto b = *GatewayMetrics::Create(registry, 8);
  a->ForPattern("x").published.Get().Increment();
  b->ForPattern("x").published.Get().Increment();
  EXPECT_THAT(Scrape(*registry),
              HasSubstr("natsgw_messages_published_total{subject=\"x\"} 2"));
}

TEST(MetricsTest, DeliveryLatencyFromTheSendTimestampClampsSkewToZero) {
  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = *GatewayMetrics::Create(registry, 8);
  SubjectMetrics& m = metrics->ForPattern("users.events.*");
  const absl::Time start = absl::FromUnixSeconds(1000);
  Message late;
  late.sent_at = start - absl::Milliseconds(3);
  GatewayMetrics::ObserveDelivery(m, late, start);
  Message skewed;  // the sender's clock is ahead of ours
  skewed.sent_at = start + absl::Seconds(1);
  GatewayMetrics::ObserveDelivery(m, skewed, start);
  Message unstamped;  // no send timestamp: nothing to measure
  GatewayMetrics::ObserveDelivery(m, unstamped, start);

  const std::string text = Scrape(*registry);
  EXPECT_THAT(text, HasSubstr("natsgw_delivery_latency_seconds_count{subject="
                              "\"users.events.*\"} 2"));
  // 3 ms and 0 s.
  EXPECT_THAT(text, HasSubstr("natsgw_delivery_latency_seconds_sum{subject="
                              "\"users.events.*\"} 0.003"));
  EXPECT_THAT(text, HasSubstr("natsgw_delivery_latency_seconds_bucket{subject="
                              "\"users.events.*\",le=\"1e-05\"} 1"));
}

TEST(MetricsTest, NameClashWithAnotherTypeIsAnErrorNotAnException) {
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildGauge().Name("natsgw_errors_total").Register(*registry);
  auto metrics = GatewayMetrics::Create(registry, 8);
  ASSERT_FALSE(metrics.ok());
  EXPECT_EQ(metrics.status().code(), absl::StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace natsgw::internal
