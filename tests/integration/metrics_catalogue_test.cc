// monitoring/METRICS.md is the catalogue of every metric natsgw exports. This
// test runs every component that records metrics against a real nats-server
// (requests, endpoints, subscriptions on a task queue, typed subscriptions,
// JetStream publishing and consuming with a dead letter), scrapes the
// registry and fails when code and catalogue differ: a family missing from
// either side, a different type, or different label names.
#include <prometheus/registry.h>

#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gateway_test_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/http_client.h"
#include "harness/subprocess.h"
#include "natsgw/jetstream.h"
#include "natsgw/metrics_server.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/stream_publisher.h"
#include "natsgw/typed_subscriber.h"

namespace natsgw {
namespace {

struct Entry {
  std::string type;  // counter | gauge | histogram
  std::set<std::string> labels;
};

std::string TypeName(prometheus::MetricType t) {
  switch (t) {
    case prometheus::MetricType::Counter:
      return "counter";
    case prometheus::MetricType::Gauge:
      return "gauge";
    case prometheus::MetricType::Histogram:
      return "histogram";
    case prometheus::MetricType::Summary:
      return "summary";
    default:
      return "untyped";
  }
}

// The catalogue's rows: "| `name` | type | `label`, `label` | unit | meaning
// |".
std::map<std::string, Entry> ReadCatalogue(const std::string& path) {
  std::ifstream in(path);
  std::map<std::string, Entry> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, "| `natsgw_")) continue;
    // natsgw-edge's rows are checked by tests/edge/edge_server_test.cc.
    if (absl::StartsWith(line, "| `natsgw_edge_")) continue;
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    if (cells.size() < 4) continue;
    std::string name(absl::StripAsciiWhitespace(cells[1]));
    name = std::string(absl::StripSuffix(absl::StripPrefix(name, "`"), "`"));
    Entry e;
    e.type = std::string(absl::StripAsciiWhitespace(cells[2]));
    for (absl::string_view label : absl::StrSplit(cells[3], ',')) {
      label = absl::StripAsciiWhitespace(label);
      label = absl::StripSuffix(absl::StripPrefix(label, "`"), "`");
      if (!label.empty() && label != "—") e.labels.insert(std::string(label));
    }
    out[name] = e;
  }
  return out;
}

class MetricsCatalogueTest : public testing::GatewayTest {};

TEST_F(MetricsCatalogueTest, CodeAndCatalogueAgree) {
  const std::map<std::string, Entry> catalogue =
      ReadCatalogue(NATSGW_SOURCE_DIR "/monitoring/METRICS.md");
  ASSERT_FALSE(catalogue.empty()) << "no rows read from monitoring/METRICS.md";

  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  // Requests, replies and errors; an endpoint and a subscription on task
  // queues.
  ServeOptions serve;
  serve.workers = 1;
  auto endpoint = conn->Serve(
      "cat.Echo", "q",
      [](const Message& m) {
        return absl::StatusOr<Reply>(Reply{m.data, {}});
      },
      serve);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  SubscribeOptions subscribe;
  subscribe.workers = 1;
  std::atomic<int> received{0};
  auto sub = conn->Subscribe(
      "cat.events", "", [&](const Message&) { ++received; }, subscribe);
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(conn->Request("cat.Echo", "x", absl::Seconds(5)).ok());
  RequestOptions retrying;
  retrying.retry.max_attempts = 2;
  retrying.retry.initial_backoff = absl::Milliseconds(1);
  EXPECT_FALSE(
      conn->Request("cat.Nobody", "x", absl::Seconds(5), retrying).ok());
  ASSERT_TRUE(conn->Publish("cat.events", "x").ok());
  // A slow endpoint with room for one running and one waiting request: the
  // second request expires while it waits, the third is shed, and a hedged
  // call sends a second copy.
  ServeOptions slow_serve;
  slow_serve.workers = 1;
  slow_serve.max_in_flight = 2;
  std::atomic<bool> slow_busy{false};
  auto slow = conn->Serve(
      "cat.Slow", "q",
      [&](const Message& m) {
        slow_busy = true;
        absl::SleepFor(absl::Milliseconds(200));
        return absl::StatusOr<Reply>(Reply{m.data, {}});
      },
      slow_serve);
  ASSERT_TRUE(slow.ok());
  std::atomic<int> answered{0};
  auto count = [&](absl::StatusOr<Message>) { ++answered; };
  ASSERT_TRUE(
      conn->RequestAsync("cat.Slow", "a", absl::Seconds(5), {}, count).ok());
  // "b" must wait behind "a" to expire there.
  for (int i = 0; i < 1000 && !slow_busy; ++i) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(slow_busy);
  ASSERT_TRUE(
      conn->RequestAsync("cat.Slow", "b", absl::Milliseconds(50), {}, count)
          .ok());
  absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(
      conn->RequestAsync("cat.Slow", "c", absl::Seconds(5), {}, count).ok());
  RequestOptions hedged;
  hedged.hedging.delay = absl::Milliseconds(5);
  auto hedge = conn->Serve("cat.Hedge", "q", [](const Message& m) {
    absl::SleepFor(absl::Milliseconds(30));
    return absl::StatusOr<Reply>(Reply{m.data, {}});
  });
  ASSERT_TRUE(hedge.ok());
  ASSERT_TRUE(conn->Request("cat.Hedge", "x", absl::Seconds(5), hedged).ok());
  // A typed subscription fed a payload that does not verify.
  auto typed = SubscribeTyped<users::UserRegistered>(
      *conn,
      EventTopic<users::UserRegistered>{.subject = "cat.typed",
                                        .file_identifier = "NGUS"},
      "", [](Event<users::UserRegistered>) {});
  ASSERT_TRUE(typed.ok()) << typed.status();
  ASSERT_TRUE(conn->Publish("cat.typed", "not a flatbuffer").ok());

  // JetStream: publish, consume with a failing handler into a dead letter.
  auto js = JetStream::Create(*conn);
  ASSERT_TRUE(js.ok());
  ASSERT_TRUE(
      (*js)->EnsureStream({.name = "CAT", .subjects = {"catjs.>"}}).ok());
  auto publisher = StreamPublisher::Create(**js, {.stream = "CAT"});
  ASSERT_TRUE(publisher.ok());
  ASSERT_TRUE((*publisher)->Publish("catjs.a", "x").ok());
  std::atomic<int> async_acks{0};
  ASSERT_TRUE(
      (*publisher)
          ->PublishAsync("catjs.b", "y", {},
                         [&](absl::StatusOr<PublishAck>) { ++async_acks; })
          .ok());
  ASSERT_TRUE((*publisher)->WaitForAcks(absl::Seconds(10)).ok());
  StreamConsumerOptions options;
  options.consumer.stream = "CAT";
  options.consumer.durable = "cat";
  options.consumer.ack_wait = absl::Seconds(2);
  options.in_progress_interval = absl::Milliseconds(50);
  options.max_deliveries = 1;
  options.dead_letter_subject = "dlq.cat";
  std::atomic<int> handled{0};
  auto consumer = StreamConsumer::Create(
      **js, options, [&](const Delivery& d) -> DeliveryOutcome {
        absl::SleepFor(absl::Milliseconds(120));  // a heartbeat or two
        ++handled;
        if (d.message().data == "x") return absl::OkStatus();
        return absl::UnavailableError("fails");
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  const absl::Time end = absl::Now() + absl::Seconds(20);
  while (absl::Now() < end &&
         ((*consumer)->stats().dead_lettered < 1 || received.load() < 1)) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
  while (absl::Now() < end && answered.load() < 3) {
    absl::SleepFor(absl::Milliseconds(10));
  }

  // A slow consumer: an inline handler held while more messages arrive
  // than the client library's pending limit (65536) holds.
  {
    std::atomic<bool> release{false};
    auto held = conn->Subscribe("cat.slow", "", [&](const Message&) {
      while (!release.load()) absl::SleepFor(absl::Milliseconds(1));
    });
    ASSERT_TRUE(held.ok()) << held.status();
    for (int i = 0; i < 70000; ++i) {
      ASSERT_TRUE(conn->Publish("cat.slow", "x").ok());
    }
    ASSERT_TRUE(conn->Flush(absl::Seconds(10)).ok());
    while (absl::Now() < end &&
           Scrape().find("natsgw_slow_consumer_events_total{") ==
               std::string::npos) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    release.store(true);
  }

  // A server restart: the connections drop and come back.
  ASSERT_TRUE(server().Restart().ok());
  const absl::Time back = absl::Now() + absl::Seconds(20);
  while (absl::Now() < back &&
         (Scrape().find("natsgw_nats_reconnects_total{lane=\"rpc\"}") ==
              std::string::npos ||
          Scrape().find("natsgw_nats_reconnects_total{lane=\"publish\"}") ==
              std::string::npos)) {
    absl::SleepFor(absl::Milliseconds(10));
  }

  // The state gauges are back where they belong.
  const std::string text = Scrape();
  EXPECT_THAT(text, ::testing::HasSubstr(
                        "natsgw_client_in_flight{subject=\"cat.Slow\"} 0"));
  EXPECT_THAT(text,
              ::testing::HasSubstr("natsgw_nats_connections{lane=\"rpc\"} 1"));
  EXPECT_THAT(text, ::testing::HasSubstr(
                        "natsgw_nats_connections{lane=\"publish\"} 1"));
  EXPECT_THAT(text, ::testing::HasSubstr(
                        "natsgw_nats_disconnects_total{lane=\"rpc\"} 1"));
  EXPECT_THAT(text, ::testing::HasSubstr("natsgw_build_info{version="));

  // What the code exports.
  std::map<std::string, Entry> exported;
  for (const prometheus::MetricFamily& family : registry_->Collect()) {
    if (!absl::StartsWith(family.name, "natsgw_")) continue;
    Entry& e = exported[family.name];
    e.type = TypeName(family.type);
    for (const prometheus::ClientMetric& metric : family.metric) {
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        e.labels.insert(label.name);
      }
    }
  }

  std::vector<std::string> problems;
  for (const auto& [name, e] : exported) {
    auto it = catalogue.find(name);
    if (it == catalogue.end()) {
      problems.push_back(name + ": exported (" + e.type + ", labels {" +
                         absl::StrJoin(e.labels, ",") +
                         "}), not in METRICS.md");
      continue;
    }
    if (it->second.type != e.type) {
      problems.push_back(name + ": type " + e.type + ", METRICS.md says " +
                         it->second.type);
    }
    // Families without a series here have no label names to compare.
    if (!e.labels.empty() && it->second.labels != e.labels) {
      problems.push_back(name + ": labels {" + absl::StrJoin(e.labels, ",") +
                         "}, METRICS.md says {" +
                         absl::StrJoin(it->second.labels, ",") + "}");
    }
  }
  for (const auto& [name, e] : catalogue) {
    if (!exported.contains(name)) {
      problems.push_back(name + ": in METRICS.md, not exported");
    }
  }
  EXPECT_THAT(problems, ::testing::IsEmpty());

  // Served over HTTP as Prometheus scrapes it, everything passes promtool's
  // lint (naming, units, _total suffixes, HELP text).
  MetricsServerOptions mopts;
  mopts.bind_address = "127.0.0.1";
  mopts.port = 0;
  auto server = MetricsServer::Create(mopts, registry_);
  ASSERT_TRUE(server.ok()) << server.status();
  auto scrape = testing::HttpGet("127.0.0.1", (*server)->port(), "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  ASSERT_EQ(scrape->status, 200);
  const absl::Status lint = testing::PromtoolCheckMetrics(scrape->body);
  EXPECT_TRUE(lint.ok()) << lint;
}

}  // namespace
}  // namespace natsgw
