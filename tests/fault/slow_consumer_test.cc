// Slow consumers against a real nats-server (issue 8 §1; plan items F13,
// F14, F15):
//
//   - client side: an inline subscription whose handler is held still while
//     a bounded burst arrives; nats.c's pending limit drops the excess. Every
//     message is either handled or counted as dropped, the drop is reported
//     once per episode, natsgw's counters agree with nats.c's count, and the
//     connection stays up;
//   - server side: a raw TCP client that subscribes and never reads, on a
//     server with a small max_pending: the server closes that connection
//     only, while natsgw clients on the same server keep calling;
//   - JetStream: a StreamConsumer with few workers, a small max_ack_pending
//     and a slow handler: nothing dropped, nothing redelivered while acks are
//     on time, outstanding messages never above the bound.
//
// Each case prints one FAULT-RESULT line with what it measured.
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "fault/fault_support.h"
#include "fault/loss_checker.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/capturing_logger.h"
#include "harness/http_client.h"
#include "harness/metric_value.h"
#include "harness/nats_server_fixture.h"
#include "harness/socket.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/jetstream.h"
#include "natsgw/logger.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/stream_publisher.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

using ::natsgw::testing::Eventually;
using ::natsgw::testing::LossChecker;
using ::natsgw::testing::MetricSum;
using ::natsgw::testing::Ms;
using ::natsgw::testing::MustConnect;
using ::natsgw::testing::PollUntil;
using ::testing::HasSubstr;

int64_t Us(absl::Duration d) { return absl::ToInt64Microseconds(d); }

// The p-th percentile (0..100) of `samples`.
absl::Duration Percentile(std::vector<absl::Duration> samples, double p) {
  if (samples.empty()) return absl::ZeroDuration();
  std::sort(samples.begin(), samples.end());
  const size_t at = std::min(samples.size() - 1,
                             static_cast<size_t>(p / 100.0 * samples.size()));
  return samples[at];
}

// One nats-server per test; connections record into the test's registry.
// Thread-compatible, like any gtest fixture.
class SlowConsumerFaultTest : public testing::NatsServerTest {
 protected:
  ConnectionOptions Options(const std::string& name) {
    ConnectionOptions options;
    options.servers = {server().url()};
    options.name = name;
    options.registry = registry_;
    options.logger =
        std::make_shared<StderrLogger>(absl::LogSeverity::kWarning);
    return options;
  }

  std::shared_ptr<prometheus::Registry> registry_ =
      std::make_shared<prometheus::Registry>();
};

// F13. Two bursts of 80,000 small messages, each arriving while the handler
// is held still on the burst's first message: beyond nats.c's pending limit
// (65,536 messages by default; natsgw has no option to lower it) the rest is
// dropped. Exact accounting: handled + dropped == published.
TEST_F(SlowConsumerFaultTest, ClientSideDropsAreCountedAndReportedPerEpisode) {
  constexpr int kBurst = 80000;
  constexpr int kEpisodes = 2;
  auto logger =
      std::make_shared<testing::CapturingLogger>(absl::LogSeverity::kWarning);
  ConnectionOptions so = Options("slow-subscriber");
  so.logger = logger;
  so.slow_consumer_unready_for = absl::Seconds(1);
  auto sub_conn = MustConnect(so);
  auto pub_conn = MustConnect(Options("publisher"));
  ASSERT_NE(sub_conn, nullptr);
  ASSERT_NE(pub_conn, nullptr);
  auto endpoint = pub_conn->Serve("fault.Echo", "q", [](const Message& m) {
    return absl::StatusOr<Reply>(Reply{m.data, {}});
  });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();

  testing::Gate gates[kEpisodes];
  std::atomic<int64_t> handled{0};
  auto sub = sub_conn->Subscribe("burst", "", [&](const Message& m) {
    // The first message of a burst holds the handler until the test lets go.
    if (absl::StartsWith(m.data, "gate-")) gates[m.data[5] - '0'].Wait();
    handled.fetch_add(1);
  });
  ASSERT_TRUE(sub.ok()) << sub.status();

  int64_t dropped_before = 0;
  std::vector<int64_t> dropped_per_episode;
  std::vector<absl::Duration> backlog_time;
  for (int k = 0; k < kEpisodes; ++k) {
    ASSERT_TRUE(pub_conn->Publish("burst", absl::StrCat("gate-", k)).ok());
    for (int i = 1; i < kBurst; ++i) {
      absl::Status s = pub_conn->Publish("burst", "m").status();
      ASSERT_TRUE(s.ok()) << i << ": " << s;
    }
    ASSERT_TRUE(pub_conn->Flush(absl::Seconds(20)).ok());
    // The burst is in: once nats.c has read it all, the count stops moving.
    int64_t last = -1;
    absl::Time steady_since = absl::Now();
    ASSERT_TRUE(PollUntil(
        [&] {
          const int64_t now = (*sub)->dropped();
          if (now != last) {
            last = now;
            steady_since = absl::Now();
          }
          return now > dropped_before &&
                 absl::Now() - steady_since > absl::Milliseconds(300);
        },
        absl::Seconds(20)))
        << "nothing dropped";
    // The drop makes the connection unready for a while.
    absl::Status ready = sub_conn->Readiness();
    EXPECT_TRUE(absl::IsUnavailable(ready)) << ready;
    EXPECT_THAT(std::string(ready.message()), HasSubstr("slow consumer"));
    const absl::Time opened = absl::Now();
    gates[k].Open();
    ASSERT_TRUE(PollUntil(
        [&] {
          return handled.load() + (*sub)->dropped() ==
                 static_cast<int64_t>(kBurst) * (k + 1);
        },
        absl::Seconds(30)))
        << "handled " << handled.load() << " + dropped " << (*sub)->dropped()
        << " != published " << kBurst * (k + 1);
    backlog_time.push_back(absl::Now() - opened);
    dropped_per_episode.push_back((*sub)->dropped() - dropped_before);
    dropped_before = (*sub)->dropped();
  }

  // The connection stayed up and works: ready again, still delivering on
  // the subscription, still calling.
  EXPECT_TRUE(
      PollUntil([&] { return sub_conn->Readiness().ok(); }, absl::Seconds(5)))
      << sub_conn->Readiness();
  ASSERT_TRUE(pub_conn->Publish("burst", "after").ok());
  EXPECT_TRUE(PollUntil(
      [&] {
        return handled.load() + (*sub)->dropped() ==
               static_cast<int64_t>(kBurst) * kEpisodes + 1;
      },
      absl::Seconds(5)));
  auto reply = sub_conn->Request("fault.Echo", "ping", absl::Seconds(5));
  EXPECT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(sub_conn->state(), ConnectionState::kConnected);
  EXPECT_TRUE((*sub)->active());
  EXPECT_EQ(MetricSum(*registry_, "natsgw_nats_disconnects_total"), 0);

  const int64_t dropped = (*sub)->dropped();
  // Reported once per episode: in the metric and in the log.
  const double events =
      MetricSum(*registry_, "natsgw_slow_consumer_events_total");
  const std::vector<std::string> reports = logger->Matching("Slow Consumer");
  EXPECT_EQ(events, kEpisodes);
  EXPECT_EQ(reports.size(), static_cast<size_t>(kEpisodes))
      << ::testing::PrintToString(reports);
  // Subscription::dropped() and METRICS.md promise that each dropped message
  // is also counted in natsgw_errors_total{operation="subscribe",
  // code="RESOURCE_EXHAUSTED"}.
  const double dropped_metric =
      MetricSum(*registry_, "natsgw_errors_total",
                {{"operation", "subscribe"}, {"code", "RESOURCE_EXHAUSTED"}});
  EXPECT_EQ(dropped_metric, static_cast<double>(dropped))
      << "natsgw_errors_total{operation=\"subscribe\",code=\"RESOURCE_"
         "EXHAUSTED\"} counts slow-consumer events, not dropped messages";
  std::cout << "FAULT-RESULT {\"test\":\"F13_slow_consumer_client_side\""
            << ",\"published\":" << kBurst * kEpisodes + 1
            << ",\"handled\":" << handled.load() << ",\"dropped\":" << dropped
            << ",\"dropped_episode_1\":" << dropped_per_episode[0]
            << ",\"dropped_episode_2\":" << dropped_per_episode[1]
            << ",\"slow_consumer_events\":" << events
            << ",\"slow_consumer_log_lines\":" << reports.size()
            << ",\"errors_total_subscribe_resource_exhausted\":"
            << dropped_metric
            << ",\"backlog_drain_ms_1\":" << Ms(backlog_time[0])
            << ",\"backlog_drain_ms_2\":" << Ms(backlog_time[1]) << "}"
            << std::endl;
}

// F14. The server gives each client at most 1 MB of unsent data and 2 s to
// take a write; a raw client that subscribes and then never reads is closed
// by the server as a slow consumer (whichever limit it hits first), and no
// one else is: natsgw callers on the same server keep getting their replies,
// with no failed call and no reconnect. (The publisher feeding it is slowed
// down meanwhile: the server writes to the stuck client from the
// publisher's read loop until the write deadline.)
class ServerSlowConsumerFaultTest : public SlowConsumerFaultTest {
 protected:
  testing::NatsServerOptions ServerOptions() const override {
    testing::NatsServerOptions options;
    options.jetstream = false;
    options.extra_config = "max_pending: 1MB\nwrite_deadline: \"2s\"\n";
    return options;
  }
};

TEST_F(ServerSlowConsumerFaultTest, ServerClosesOnlyTheClientThatNeverReads) {
  namespace net = testing::internal;
  // The client that never reads: CONNECT, SUB, PING, wait for the PONG (the
  // subscription is in place), then silence. (Its receive buffer keeps the
  // default size: a tiny one stalls loopback TCP for good once the window
  // closes, and the drain below could not see the end of the stream.)
  const absl::Time setup_deadline = absl::Now() + absl::Seconds(5);
  auto raw = net::TcpConnect("127.0.0.1", server().port(), setup_deadline);
  ASSERT_TRUE(raw.ok()) << raw.status();
  std::string seen;
  auto read_until = [&](absl::string_view what) -> absl::Status {
    char buf[4096];
    while (!absl::StrContains(seen, what)) {
      absl::StatusOr<size_t> n =
          net::RecvSome(raw->get(), buf, sizeof(buf), setup_deadline);
      if (!n.ok()) return n.status();
      if (*n == 0) return absl::UnavailableError("closed during setup");
      seen.append(buf, *n);
    }
    return absl::OkStatus();
  };
  ASSERT_TRUE(read_until("\r\n").ok()) << seen;
  ASSERT_TRUE(absl::StartsWith(seen, "INFO ")) << seen;
  ASSERT_TRUE(net::SendAll(raw->get(),
                           "CONNECT {\"verbose\":false,\"pedantic\":false,"
                           "\"name\":\"never-reads\",\"protocol\":1}\r\n"
                           "SUB flood.> 1\r\nPING\r\n",
                           setup_deadline)
                  .ok());
  ASSERT_TRUE(read_until("PONG\r\n").ok()) << seen;

  auto responder = MustConnect(Options("responder"));
  auto caller = MustConnect(Options("caller"));
  auto flooder = MustConnect(Options("flooder"));
  ASSERT_TRUE(responder && caller && flooder);
  auto endpoint = responder->Serve("fault.Echo", "q", [](const Message& m) {
    return absl::StatusOr<Reply>(Reply{m.data, {}});
  });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  auto call = [&]() -> absl::StatusOr<absl::Duration> {
    const absl::Time start = absl::Now();
    auto r = caller->Request("fault.Echo", "x", absl::Seconds(2));
    if (!r.ok()) return r.status();
    return absl::Now() - start;
  };
  std::vector<absl::Duration> before;
  for (int i = 0; i < 200; ++i) {
    auto took = call();
    ASSERT_TRUE(took.ok()) << took.status();
    before.push_back(*took);
  }

  // Calls keep going while the flood runs.
  std::mutex mu;
  std::vector<absl::Duration> during;
  std::vector<std::string> failures;
  std::atomic<bool> stop{false};
  std::thread rpc([&] {
    const absl::Time until = absl::Now() + absl::Seconds(30);
    for (int i = 0; i < 500000 && !stop.load() && absl::Now() < until; ++i) {
      auto took = call();
      std::lock_guard<std::mutex> lock(mu);
      if (took.ok()) {
        during.push_back(*took);
      } else {
        failures.push_back(took.status().ToString());
      }
    }
  });

  auto varz = [&]() -> nlohmann::json {
    auto r = testing::HttpGet("127.0.0.1", server().monitor_port(), "/varz");
    if (!r.ok() || r->status != 200) return nlohmann::json::object();
    return nlohmann::json::parse(r->body, nullptr, false);
  };
  auto slow_consumers = [&]() -> int64_t {
    nlohmann::json v = varz();
    return v.is_object() ? v.value("slow_consumers", int64_t{0}) : -1;
  };
  // The flood: 4 KiB messages the raw client never reads, at most 64 MiB.
  const std::string payload(4096, 'f');
  int64_t flooded = 0;
  const absl::Time flood_start = absl::Now();
  while (flooded < 16384 && absl::Now() - flood_start < absl::Seconds(20)) {
    for (int i = 0; i < 256; ++i, ++flooded) {
      absl::Status s = flooder->Publish("flood.data", payload).status();
      ASSERT_TRUE(s.ok()) << s;
    }
    ASSERT_TRUE(flooder->Flush(absl::Seconds(10)).ok());
    if (slow_consumers() >= 1) break;
  }
  const absl::Duration flood_time = absl::Now() - flood_start;

  // The server has closed the raw client: reading drains what the kernel
  // held, then meets the end of the stream (or a reset).
  const absl::Time closed_deadline = absl::Now() + absl::Seconds(20);
  int64_t drained = 0;
  absl::Status end_of_stream;
  for (;;) {
    char buf[65536];
    absl::StatusOr<size_t> n =
        net::RecvSome(raw->get(), buf, sizeof(buf), closed_deadline);
    if (!n.ok()) {
      end_of_stream = n.status();
      break;
    }
    if (*n == 0) break;
    drained += static_cast<int64_t>(*n);
  }
  EXPECT_FALSE(absl::IsDeadlineExceeded(end_of_stream))
      << "the server did not close the client that never reads";
  absl::SleepFor(absl::Milliseconds(300));
  stop.store(true);
  rpc.join();

  EXPECT_EQ(slow_consumers(), 1) << "exactly one client closed";
  const std::string log = server().LogTail(200);
  EXPECT_THAT(log, HasSubstr("Slow Consumer Detected"));
  const bool by_pending = absl::StrContains(log, "MaxPending");
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_THAT(failures, ::testing::IsEmpty());
  EXPECT_GT(during.size(), 0u);
  EXPECT_EQ(MetricSum(*registry_, "natsgw_nats_disconnects_total"), 0);
  for (Connection* c : {responder.get(), caller.get(), flooder.get()}) {
    EXPECT_EQ(c->state(), ConnectionState::kConnected);
  }
  auto after = call();
  EXPECT_TRUE(after.ok()) << after.status();
  std::cout << "FAULT-RESULT {\"test\":\"F14_slow_consumer_server_side\""
            << ",\"flooded_bytes\":" << flooded * 4096
            << ",\"flood_ms\":" << Ms(flood_time)
            << ",\"drained_from_closed_client\":" << drained
            << ",\"server_slow_consumers\":" << slow_consumers()
            << ",\"closed_for_max_pending\":" << by_pending
            << ",\"rpc_during\":" << during.size()
            << ",\"rpc_failed\":" << failures.size()
            << ",\"rpc_p50_before_us\":" << Us(Percentile(before, 50))
            << ",\"rpc_p99_before_us\":" << Us(Percentile(before, 99))
            << ",\"rpc_p50_during_us\":" << Us(Percentile(during, 50))
            << ",\"rpc_p99_during_us\":" << Us(Percentile(during, 99)) << "}"
            << std::endl;
  endpoint->reset();
}

// F15. 120 messages through a StreamConsumer with 2 workers and 2 prefetch
// places, on a consumer whose max_ack_pending is 3 (tighter than the 4 the
// consumer would hold), with a 20 ms handler and a 2 s ack_wait: the server
// never has more than 3 unacknowledged, at most 2 handlers run at once,
// nothing is dropped, nak'ed or redelivered, each message is handled once.
TEST_F(SlowConsumerFaultTest, JetStreamSlowConsumerStaysWithinItsBounds) {
  constexpr int kMessages = 120;
  constexpr int kWorkers = 2;
  constexpr int kMaxAckPending = 3;
  const absl::Duration work = absl::Milliseconds(20);
  auto conn = MustConnect(Options("jetstream"));
  ASSERT_NE(conn, nullptr);
  auto js = JetStream::Create(*conn);
  ASSERT_TRUE(js.ok()) << js.status();
  StreamConfig c;
  c.name = "WORK";
  c.subjects = {"work.>"};
  ASSERT_TRUE((*js)->EnsureStream(c).ok());
  LossChecker checker;
  {
    auto publisher = StreamPublisher::Create(**js, {.stream = "WORK"});
    ASSERT_TRUE(publisher.ok()) << publisher.status();
    for (int i = 0; i < kMessages; ++i) {
      const std::string id = LossChecker::MessageIdFor(0, i);
      checker.Attempted(0, i);
      StreamPublishOptions o;
      o.message_id = id;
      auto ack = (*publisher)->Publish("work.item", id, o);
      ASSERT_TRUE(ack.ok()) << ack.status();
      checker.Acked(0, i, ack->sequence, ack->duplicate);
    }
  }

  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  std::mutex mu;
  std::map<std::string, std::vector<uint64_t>> deliveries;
  StreamConsumerOptions o;
  o.consumer.stream = "WORK";
  o.consumer.durable = "slow";
  o.consumer.ack_wait = absl::Seconds(2);
  o.consumer.max_ack_pending = kMaxAckPending;
  o.workers = kWorkers;
  o.prefetch = 2;
  o.max_batch = 8;
  o.fetch_wait = absl::Milliseconds(200);
  const absl::Time start = absl::Now();
  auto consumer = StreamConsumer::Create(
      **js, o, [&](const Delivery& d) -> DeliveryOutcome {
        const int now = running.fetch_add(1) + 1;
        int seen = max_running.load();
        while (now > seen && !max_running.compare_exchange_weak(seen, now)) {
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          deliveries[d.message().message_id].push_back(d.delivery_count());
        }
        if (auto key = LossChecker::ParseMessageId(d.message().message_id)) {
          checker.Read(key->first, key->second, d.stream_sequence());
          checker.Processed(key->first, key->second);
        } else {
          checker.ReadUnknown(d.message().message_id, d.stream_sequence());
        }
        absl::SleepFor(work);
        running.fetch_sub(1);
        return DeliveryOutcome::Ack();
      });
  ASSERT_TRUE(consumer.ok()) << consumer.status();

  // The server's view of what is outstanding, sampled while it runs.
  uint64_t max_ack_pending = 0;
  int samples = 0;
  while ((*consumer)->stats().acked < kMessages &&
         absl::Now() - start < absl::Seconds(30)) {
    auto state = (*js)->GetConsumer("WORK", "slow");
    if (state.ok()) {
      max_ack_pending = std::max(max_ack_pending, state->ack_pending);
      ++samples;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ((*consumer)->stats().acked, kMessages);
  ASSERT_TRUE((*consumer)->Stop(absl::Seconds(5)).ok());
  const StreamConsumerStats stats = (*consumer)->stats();
  auto final_state = (*js)->GetConsumer("WORK", "slow");
  ASSERT_TRUE(final_state.ok()) << final_state.status();

  EXPECT_LE(max_ack_pending, static_cast<uint64_t>(kMaxAckPending));
  EXPECT_LE(max_running.load(), kWorkers);
  EXPECT_EQ(stats.redelivered, 0);
  EXPECT_EQ(stats.naked, 0);
  EXPECT_EQ(stats.dead_lettered, 0);
  EXPECT_EQ(stats.delivered, kMessages);
  EXPECT_EQ(final_state->ack_pending, 0u);
  EXPECT_EQ(final_state->pending, 0u);
  EXPECT_EQ(final_state->redelivered, 0u);
  EXPECT_EQ(MetricSum(*registry_, "natsgw_slow_consumer_events_total"), 0);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(deliveries.size(), static_cast<size_t>(kMessages));
    for (const auto& [id, counts] : deliveries) {
      EXPECT_EQ(counts, std::vector<uint64_t>{1}) << id;
    }
  }
  const LossChecker::Report report = checker.Check();
  EXPECT_TRUE(report.ok()) << report.ToString();
  EXPECT_EQ(report.processed_distinct, static_cast<uint64_t>(kMessages));
  const double rate = kMessages / absl::ToDoubleSeconds(took);
  std::cout << "FAULT-RESULT {\"test\":\"F15_slow_consumer_jetstream\""
            << ",\"messages\":" << kMessages << ",\"workers\":" << kWorkers
            << ",\"max_ack_pending_bound\":" << kMaxAckPending
            << ",\"max_ack_pending_seen\":" << max_ack_pending
            << ",\"samples\":" << samples
            << ",\"max_concurrent_handlers\":" << max_running.load()
            << ",\"redelivered\":" << stats.redelivered
            << ",\"msgs_per_s\":" << static_cast<int64_t>(rate)
            << ",\"ideal_msgs_per_s\":"
            << static_cast<int64_t>(kWorkers / absl::ToDoubleSeconds(work))
            << ",\"took_ms\":" << Ms(took) << "}" << std::endl;
}

}  // namespace
}  // namespace natsgw
