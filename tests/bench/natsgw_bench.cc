// natsgw-bench: natsgw against raw nats.c, measured in the same run on the
// same nats-server, printed as one JSON object per line.
//
//   build/bin/natsgw-bench                      # every scenario
//   build/bin/natsgw-bench --scenarios=raw_request_asap,gateway_request
//   build/bin/natsgw-bench --nats_url=nats://127.0.0.1:4222   # existing server
//
// Scenarios:
//   raw_request_default  nats.c natsConnection_RequestMsg, default options on
//                        requester and responder (the responder's reply waits
//                        for nats.c's 1 ms flusher)
//   raw_request_asap     the same with natsOptions_SetSendAsap on both
//   gateway_request      natsgw Connection::Request against Connection::Serve
//                        (separate connections, as two services would be)
//   rpc_sync             the typed layer: natsgw-gen's EchoClient::Echo (one
//                        call at a time) against an EchoServiceBase served on
//                        another Connection; the request and reply are
//                        FlatBuffers EchoRequest/EchoReply whose payload field
//                        holds --payload_bytes (the wire message is ~50 bytes
//                        larger). Reports p50 and p99 against
//                        raw_request_asap and gateway_request.
//   rpc_async_64         the same service, called through the callback form of
//                        EchoClient::EchoAsync with 64 calls in flight: each
//                        completion starts the next call, up to
//                        --async_calls. Latency is per call (queueing
//                        included); "async_vs_sync" is its throughput over
//                        rpc_sync's.
//   raw_publish          nats.c natsConnection_Publish, default options
//                        (buffered), then a flush
//   raw_publish_headers  the same through natsConnection_PublishMsg with the
//                        three headers natsgw stamps (traceparent, Nats-Msg-Id,
//                        send time; values precomputed): the floor that nats.c
//                        3.4.1's header API sets for any traced publish
//   gateway_publish      natsgw Connection::Publish (trace, ID, timestamp,
//                        metrics on every message), then Flush
//   gateway_publish_traced  the same with a span sink that counts and
//                        discards (ConnectionOptions::span_sink; every trace
//                        sampled): one PRODUCER span per message;
//                        throughput against gateway_publish, and the added
//                        nanoseconds per message
//   gateway_request_traced  gateway_request with a counting sink on both
//                        connections (a CLIENT and a SERVER span per call);
//                        p50 against gateway_request
//
// JetStream scenarios, each on a stream of its own (file storage, one
// replica, the same configuration for natsgw and raw nats.c), created empty
// for every run and deleted after it; --js_requests and --js_messages size
// them. Raw connections use natsOptions_SetSendAsap (on loopback faster
// than nats.c's buffered default in all three, and what natsgw uses for
// JetStream):
//   raw_js_publish_sync  nats.c js_Publish, one at a time, with a unique
//                        Nats-Msg-Id and the expected stream set (the two
//                        JetStream headers StreamPublisher always sends)
//   js_publish_sync      natsgw StreamPublisher::Publish (trace, ID,
//                        timestamp, expected stream, metrics); p50 and p99
//                        against raw_js_publish_sync
//   raw_js_publish_async nats.c js_PublishAsync with the same headers, at
//                        most 256 acks outstanding
//                        (jsOptions.PublishAsync.MaxPending), then
//                        js_PublishAsyncComplete
//   js_publish_async     natsgw StreamPublisher::PublishAsync with
//                        max_pending 256, then WaitForAcks; throughput
//                        against raw_js_publish_async
//   raw_js_consume       messages stored beforehand (untimed, published by
//                        natsgw so that both consumers read the same
//                        messages), read through a durable consumer with
//                        nats.c js_PullSubscribe, natsSubscription_Fetch
//                        batches of 64 and natsMsg_Ack on each; timed from
//                        the subscribe (which creates the consumer) to the
//                        last ack sent
//   js_consume           the same through a natsgw StreamConsumer (4
//                        workers, default idempotency store, a handler that
//                        acknowledges); timed from Create to the last ack
//                        sent; throughput against raw_js_consume
// Publish scenarios count a message once its ack arrived; consume scenarios
// check afterwards that the server has every message acknowledged, and
// report throughput only (their latency fields are 0).
//
// Overhead scenarios: the per-message metric and trace work of natsgw's
// message paths (connection.cc), repeated in a tight loop in this process
// without NATS, --overhead_ops calls per figure. Each "*_ns" figure is the
// median batch of a measurement in nanoseconds per call ("*_bytes" are
// sizes); "ns_per_op" is the headline: one message's work at both ends, its
// publish plus its delivery to a subscription handler (for overhead_spans
// with a counting sink and a sampled trace; for overhead_trace_context
// continuing the current trace). Latency fields are 0.
//   overhead_metrics     Prometheus work: a publish (steady-clock start,
//                        subject lookup through the per-thread cache,
//                        counter, duration histogram) and a delivery
//                        (counter, delivery-latency and handler-duration
//                        histograms, their clock reads); the same publish
//                        alternating between two subjects (a cache miss:
//                        the registry lock and hash lookup each time) and
//                        past max_metric_subjects (the "_other" overflow
//                        path); the one-time cost of a subject's first use;
//                        a request's client and server side; the endpoint
//                        statistics of a served request; and the building
//                        blocks (steady and wall clock reads, cached
//                        lookup, counter, histogram)
//   overhead_trace_context  W3C trace context: on send, a new root trace (no
//                        current trace) or the current trace's child, and its
//                        traceparent text; on receipt, parsing traceparent and
//                        installing it as the handler's current trace; and
//                        what nats.c's header API adds to build a message
//                        with a traceparent header beside the other stamp
//                        headers (a difference of two loops)
//   overhead_spans       the spans of a publish (PRODUCER) and a delivery
//                        (CONSUMER), as connection.cc makes them: with no
//                        sink (the pointer check and an inert Span, whose
//                        End() still reads the clock; also alone), with a
//                        counting sink and an unsampled trace, with a
//                        counting sink and a sampled trace (natsgw's own
//                        span cost), and with JsonLinesSpanExporter writing
//                        to /dev/null (at most 20000 messages) and to a
//                        temporary file (at most 10000; removed afterwards);
//                        plus formatting one JSON line, and its start time,
//                        alone
//
// Scenarios run in --rounds interleaved rounds (so a noisy moment hits
// baseline and gateway alike); each reports its median round, by p50 for
// sequential request scenarios and the synchronous JetStream publishes, by
// throughput for the other publish scenarios, rpc_async_64 and the consume
// scenarios, with "rounds"; overhead scenarios report each figure's median
// over the rounds.
//
// Request scenarios other than rpc_async_64, and the synchronous JetStream
// publishes, are sequential (one call in flight): latency is the point. The
// other publish scenarios measure throughput; their latency is the cost of
// one publish call. Every loop is bounded by a count
// and by --max_seconds.
#include <nats/nats.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "endpoint_stats_recorder.h"
#include "harness/nats_server.h"
#include "metrics.h"
#include "nats_message.h"
#include "nats_status.h"
#include "natsgw/connection.h"
#include "natsgw/jetstream.h"
#include "natsgw/json_span_exporter.h"
#include "natsgw/message_id.h"
#include "natsgw/redact.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/span_sink.h"
#include "natsgw/status_macros.h"
#include "natsgw/stream_config.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/stream_publisher.h"
#include "natsgw/trace_context.h"
#include "natsgw/trace_sampling.h"
#include "natsgw/wire_headers.h"
#include "span.h"

ABSL_FLAG(std::string, nats_url, "",
          "Use this NATS server instead of starting a private one");
ABSL_FLAG(std::string, scenarios, "",
          "Comma-separated scenarios to run (default: all)");
ABSL_FLAG(int, payload_bytes, 64, "Payload size of every message");
ABSL_FLAG(int, requests, 5000, "Measured requests per request scenario");
ABSL_FLAG(int, publishes, 200000, "Messages per publish scenario");
ABSL_FLAG(int, async_calls, 20000, "Measured calls of rpc_async_64");
ABSL_FLAG(int, js_requests, 2000,
          "Measured publishes per synchronous JetStream publish scenario");
ABSL_FLAG(int, js_messages, 10000,
          "Messages per asynchronous JetStream publish and consume scenario");
ABSL_FLAG(int, js_prefetch, 0,
          "js_consume: StreamConsumerOptions::prefetch (messages pulled ahead "
          "of idle workers)");
ABSL_FLAG(int, overhead_ops, 200000,
          "Calls per figure of the overhead_* scenarios (in-process loops)");
ABSL_FLAG(int, warmup, 500, "Unmeasured operations before each scenario");
ABSL_FLAG(double, max_seconds, 20, "Upper bound on each scenario's duration");
ABSL_FLAG(int, rounds, 3,
          "Rounds over all scenarios; each scenario reports its median round "
          "(the machine is shared, single runs are noisy)");

namespace natsgw::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  std::string scenario;
  int64_t ops = 0;
  double p50_us = 0;
  double p90_us = 0;
  double p99_us = 0;
  double max_us = 0;
  double ops_per_s = 0;
  // Further named figures (the overhead scenarios' nanoseconds per call and
  // sizes), printed after the standard fields.
  std::map<std::string, double> figures;
};

Result Summarize(const std::string& scenario,
                 std::vector<int64_t>& latencies_ns, Clock::duration wall) {
  Result r;
  r.scenario = scenario;
  r.ops = static_cast<int64_t>(latencies_ns.size());
  if (latencies_ns.empty()) return r;
  std::sort(latencies_ns.begin(), latencies_ns.end());
  auto pct = [&](double q) {
    size_t i = static_cast<size_t>(q * (latencies_ns.size() - 1));
    return latencies_ns[i] / 1000.0;
  };
  r.p50_us = pct(0.50);
  r.p90_us = pct(0.90);
  r.p99_us = pct(0.99);
  r.max_us = latencies_ns.back() / 1000.0;
  const double seconds = std::chrono::duration<double>(wall).count();
  r.ops_per_s = seconds > 0 ? r.ops / seconds : 0;
  return r;
}

void Print(const Result& r, int payload_bytes, int rounds,
           std::map<std::string, double> extra = {}) {
  extra.insert(r.figures.begin(), r.figures.end());
  std::string line = absl::StrFormat(
      "{\"scenario\": \"%s\", \"payload_bytes\": %d, \"ops\": %d, "
      "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
      "\"max_us\": %.1f, \"ops_per_s\": %.0f, \"rounds\": %d",
      r.scenario, payload_bytes, r.ops, r.p50_us, r.p90_us, r.p99_us, r.max_us,
      r.ops_per_s, rounds);
  for (const auto& [key, value] : extra) {
    absl::StrAppend(&line, absl::StrFormat(", \"%s\": %.3f", key, value));
  }
  absl::StrAppend(&line, "}\n");
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
}

absl::Status Check(natsStatus s, absl::string_view what) {
  if (s == NATS_OK) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat(what, ": ", natsStatus_GetText(s)));
}

// One raw nats.c connection, closed and destroyed with the object.
class RawConnection {
 public:
  static absl::StatusOr<std::unique_ptr<RawConnection>> Connect(
      const std::string& url, bool send_asap) {
    auto conn = std::unique_ptr<RawConnection>(new RawConnection);
    natsOptions* opts = nullptr;
    NATSGW_RETURN_IF_ERROR(Check(natsOptions_Create(&opts), "options"));
    natsOptions_SetURL(opts, url.c_str());
    natsOptions_SetSendAsap(opts, send_asap);
    natsStatus s = natsConnection_Connect(&conn->nc_, opts);
    natsOptions_Destroy(opts);
    NATSGW_RETURN_IF_ERROR(Check(s, "connect"));
    return conn;
  }
  ~RawConnection() {
    if (sub_ != nullptr) {
      natsSubscription_Unsubscribe(sub_);
      natsSubscription_Destroy(sub_);
    }
    if (nc_ != nullptr) {
      natsConnection_Close(nc_);
      natsConnection_Destroy(nc_);
    }
  }
  natsConnection* nc() { return nc_; }

  // Answers every request with its own payload.
  absl::Status Echo(const std::string& subject) {
    NATSGW_RETURN_IF_ERROR(Check(
        natsConnection_Subscribe(&sub_, nc_, subject.c_str(), &OnEcho, nullptr),
        "subscribe"));
    return Check(natsConnection_FlushTimeout(nc_, 5000), "flush");
  }

 private:
  RawConnection() = default;
  static void OnEcho(natsConnection* nc, natsSubscription*, natsMsg* msg,
                     void*) {
    natsConnection_Publish(nc, natsMsg_GetReply(msg), natsMsg_GetData(msg),
                           natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
  }
  natsConnection* nc_ = nullptr;
  natsSubscription* sub_ = nullptr;
};

// Runs `op` `warmup` times, then up to `count` times or until `max` elapsed,
// recording each call's duration.
absl::StatusOr<Result> Measure(const std::string& scenario, int warmup,
                               int count, absl::Duration max,
                               const std::function<absl::Status()>& op) {
  for (int i = 0; i < warmup; ++i) NATSGW_RETURN_IF_ERROR(op());
  std::vector<int64_t> latencies;
  latencies.reserve(count);
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop = start + absl::ToChronoNanoseconds(max);
  for (int i = 0; i < count; ++i) {
    const Clock::time_point t0 = Clock::now();
    NATSGW_RETURN_IF_ERROR(op());
    const Clock::time_point t1 = Clock::now();
    latencies.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    if (t1 > stop) break;
  }
  return Summarize(scenario, latencies, Clock::now() - start);
}

struct Config {
  std::string url;
  std::string payload;
  int requests;
  int publishes;
  int async_calls;
  int js_requests;
  int js_messages;
  int warmup;
  absl::Duration max;
};

// Measure() for publishes: throughput counts until `flush` confirms the
// server has every message (for JetStream: every ack arrived), not just
// until the last call returned.
absl::StatusOr<Result> MeasureThrough(
    const std::string& scenario, int warmup, int count, absl::Duration max,
    const std::function<absl::Status()>& op,
    const std::function<absl::Status()>& flush) {
  NATSGW_ASSIGN_OR_RETURN(Result r, Measure(scenario, warmup, count, max, op));
  if (r.ops == 0) return r;
  const Clock::time_point start = Clock::now();
  NATSGW_RETURN_IF_ERROR(flush());
  const double loop_s = r.ops / r.ops_per_s;
  r.ops_per_s =
      r.ops /
      (loop_s + std::chrono::duration<double>(Clock::now() - start).count());
  return r;
}

// MeasureThrough() sized by the core publish flags.
absl::StatusOr<Result> MeasurePublish(
    const std::string& scenario, const Config& cfg,
    const std::function<absl::Status()>& op,
    const std::function<absl::Status()>& flush) {
  return MeasureThrough(scenario, cfg.warmup, cfg.publishes, cfg.max, op,
                        flush);
}

absl::StatusOr<Result> RawRequest(const Config& cfg,
                                  const std::string& scenario, bool send_asap) {
  const std::string subject = absl::StrCat("bench.", scenario);
  NATSGW_ASSIGN_OR_RETURN(auto responder,
                          RawConnection::Connect(cfg.url, send_asap));
  NATSGW_RETURN_IF_ERROR(responder->Echo(subject));
  NATSGW_ASSIGN_OR_RETURN(auto requester,
                          RawConnection::Connect(cfg.url, send_asap));
  return Measure(scenario, cfg.warmup, cfg.requests, cfg.max, [&]() {
    natsMsg* reply = nullptr;
    natsStatus s = natsConnection_Request(
        &reply, requester->nc(), subject.c_str(), cfg.payload.data(),
        static_cast<int>(cfg.payload.size()), 5000);
    if (reply != nullptr) natsMsg_Destroy(reply);
    return Check(s, "request");
  });
}

// A SpanSink that counts the spans it is given and drops them: what natsgw
// itself spends on a span, without an exporter's.
//
// Thread-safety: thread-safe (one atomic counter).
class CountingSink final : public SpanSink {
 public:
  void OnEnd(const SpanData&) override {
    ended_.fetch_add(1, std::memory_order_relaxed);
  }
  int64_t ended() const { return ended_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> ended_{0};
};

// A Connection with default options; reporting spans to `sink` if set.
absl::StatusOr<std::unique_ptr<Connection>> Gateway(
    const Config& cfg, std::shared_ptr<SpanSink> sink = nullptr) {
  ConnectionOptions options;
  options.servers = {cfg.url};
  options.span_sink = std::move(sink);
  return Connection::Create(options);
}

// gateway_request, or with `traced` gateway_request_traced: the same calls
// with a counting sink on both connections, checked afterwards to have had
// the spans of every call.
absl::StatusOr<Result> GatewayRequest(const Config& cfg, bool traced) {
  const std::string scenario =
      traced ? "gateway_request_traced" : "gateway_request";
  const std::string subject = absl::StrCat("bench.", scenario);
  std::shared_ptr<CountingSink> server_spans, client_spans;
  if (traced) {
    server_spans = std::make_shared<CountingSink>();
    client_spans = std::make_shared<CountingSink>();
  }
  NATSGW_ASSIGN_OR_RETURN(auto server, Gateway(cfg, server_spans));
  NATSGW_ASSIGN_OR_RETURN(
      auto endpoint,
      server->Serve(subject, "q",
                    [](const Message& m) -> absl::StatusOr<Reply> {
                      return Reply{m.data, {}};
                    }));
  NATSGW_ASSIGN_OR_RETURN(auto client, Gateway(cfg, client_spans));
  int64_t calls = 0;
  NATSGW_ASSIGN_OR_RETURN(
      Result r, Measure(scenario, cfg.warmup, cfg.requests, cfg.max, [&]() {
        ++calls;
        return client->Request(subject, cfg.payload, absl::Seconds(5)).status();
      }));
  if (traced) {
    // A CLIENT span ends before its call returns; the server's SERVER span
    // ends just after its reply left, so the last one may still be open.
    if (client_spans->ended() != calls || server_spans->ended() < calls - 1) {
      return absl::InternalError(absl::StrCat(
          scenario, ": ", calls, " calls, but ", client_spans->ended(),
          " client and ", server_spans->ended(), " server spans"));
    }
  }
  return r;
}

// Answers Echo with the request's payload and tag, as a real service would
// copy request fields into its reply.
class EchoService final : public echo::EchoServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<echo::EchoReply>> Echo(
      const echo::EchoRequest& request, ServerContext& ctx) override {
    flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
    const flatbuffers::Vector<uint8_t>* payload = request.payload();
    return echo::CreateEchoReply(
        fbb,
        payload != nullptr ? fbb.CreateVector(payload->data(), payload->size())
                           : 0,
        request.tag());
  }
};

// An EchoService on a connection of its own plus a client on another, as two
// services would be. Members are destroyed bottom-up: the client's
// connection (failing calls still pending) before the service, the service
// before its connection and its implementation.
struct EchoRig {
  EchoService impl;
  std::unique_ptr<Connection> server_conn;
  std::unique_ptr<Service> service;
  std::unique_ptr<Connection> client_conn;
  std::optional<echo::EchoClient> client;
};

absl::StatusOr<std::unique_ptr<EchoRig>> StartEcho(
    const Config& cfg, const std::string& scenario) {
  auto rig = std::make_unique<EchoRig>();
  NATSGW_ASSIGN_OR_RETURN(rig->server_conn, Gateway(cfg));
  // A subject of its own per scenario, like the other scenarios, and default
  // serve options (handler inline on the delivery thread, as gateway_request).
  TypedServiceOptions options;
  options.subject_prefix = absl::StrCat("bench.", scenario);
  options.name = absl::StrCat("bench_", scenario);
  NATSGW_ASSIGN_OR_RETURN(rig->service,
                          rig->impl.Start(*rig->server_conn, options));
  NATSGW_ASSIGN_OR_RETURN(rig->client_conn, Gateway(cfg));
  ClientOptions client_options;
  client_options.subject_prefix = options.subject_prefix;
  NATSGW_ASSIGN_OR_RETURN(
      echo::EchoClient client,
      echo::EchoClient::Create(*rig->client_conn, std::move(client_options)));
  rig->client.emplace(std::move(client));
  return rig;
}

flatbuffers::Offset<echo::EchoRequest> BuildEcho(
    flatbuffers::FlatBufferBuilder& fbb, const std::string& payload,
    uint64_t tag) {
  return echo::CreateEchoRequest(
      fbb,
      fbb.CreateVector(reinterpret_cast<const uint8_t*>(payload.data()),
                       payload.size()),
      tag);
}

// A reply is only counted if it is the echo it should be (cheap next to the
// call, and a broken service must not look fast).
absl::Status CheckEcho(const absl::StatusOr<Response<echo::EchoReply>>& reply,
                       const std::string& payload, uint64_t tag) {
  if (!reply.ok()) return reply.status();
  const flatbuffers::Vector<uint8_t>* echoed = (*reply)->payload();
  if ((*reply)->tag() != tag ||
      (echoed == nullptr ? 0 : echoed->size()) != payload.size()) {
    return absl::InternalError("Echo reply does not match its request");
  }
  return absl::OkStatus();
}

absl::StatusOr<Result> RpcSync(const Config& cfg) {
  NATSGW_ASSIGN_OR_RETURN(auto rig, StartEcho(cfg, "rpc_sync"));
  const echo::EchoClient& client = *rig->client;
  uint64_t tag = 0;
  return Measure("rpc_sync", cfg.warmup, cfg.requests, cfg.max, [&]() {
    ++tag;
    auto build = [&](flatbuffers::FlatBufferBuilder& fbb) {
      return BuildEcho(fbb, cfg.payload, tag);
    };
    return CheckEcho(client.Echo(build), cfg.payload, tag);
  });
}

// Keeps a fixed number of EchoAsync calls in flight: every completion records
// its call's latency and starts the next call, until `total` calls were
// started or `stop_at` passed. Shared with the callbacks, and holding its own
// copies of the client and payload, so it outlives every call even if Run()
// gives up waiting (only the client's Connection must outlive the calls).
//
// Thread-safety: OnDone runs on natsgw's reply or timer thread, or on the
// thread that started the call; the counters are guarded by mu_.
class EchoPipeline : public std::enable_shared_from_this<EchoPipeline> {
 public:
  EchoPipeline(echo::EchoClient client, std::string payload, int total,
               Clock::time_point stop_at)
      : client_(std::move(client)),
        payload_(std::move(payload)),
        total_(total),
        stop_at_(stop_at) {
    latencies_.reserve(total);
  }

  // Starts `in_flight` calls and waits for the last completion, up to
  // `stop_at` plus `drain` (every call ends within its timeout, so the bound
  // is only hit if natsgw loses a call). Returns the latencies and the time
  // from the first call to the last completion.
  absl::Status Run(int in_flight, absl::Duration drain,
                   std::vector<int64_t>& latencies, Clock::duration& wall) {
    const Clock::time_point start = Clock::now();
    int first;
    {
      std::lock_guard<std::mutex> lock(mu_);
      first = std::min(in_flight, total_);
      issued_ = first;
    }
    for (int i = 0; i < first; ++i) Issue();
    const Clock::time_point give_up =
        stop_at_ + absl::ToChronoNanoseconds(drain);
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      // The callbacks hand refills to this thread only when they would
      // otherwise recurse (see OnDone).
      cv_.wait_until(lock, give_up, [&] {
        return deferred_ > 0 || (completed_ == issued_ && stopped());
      });
      if (deferred_ > 0) {
        const int n = deferred_;
        deferred_ = 0;
        lock.unlock();
        for (int i = 0; i < n; ++i) Issue();
        lock.lock();
        continue;
      }
      if (completed_ == issued_ && stopped()) break;
      stop_ = true;
      return absl::DeadlineExceededError(absl::StrCat(
          "rpc_async_64: ", issued_ - completed_, " calls did not complete"));
    }
    wall = last_done_ - start;
    latencies = std::move(latencies_);
    return error_;
  }

 private:
  // Nested refills beyond this depth go through Run()'s thread: a reply that
  // arrives before EchoAsync returns completes on the calling thread, which
  // would then start the next call from inside that completion.
  static constexpr int kMaxDepth = 4;
  static thread_local int depth_;

  bool stopped() const { return stop_ || issued_ == total_; }

  void Issue() {
    const Clock::time_point t0 = Clock::now();
    const uint64_t tag = static_cast<uint64_t>(t0.time_since_epoch().count());
    auto build = [&](flatbuffers::FlatBufferBuilder& fbb) {
      return BuildEcho(fbb, payload_, tag);
    };
    client_.EchoAsync(build,
                      [self = shared_from_this(), t0,
                       tag](absl::StatusOr<Response<echo::EchoReply>> reply) {
                        self->OnDone(t0, tag, reply);
                      });
  }

  void OnDone(Clock::time_point t0, uint64_t tag,
              const absl::StatusOr<Response<echo::EchoReply>>& reply) {
    const Clock::time_point t1 = Clock::now();
    const absl::Status status = CheckEcho(reply, payload_, tag);
    bool refill = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++completed_;
      latencies_.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0)
              .count());
      last_done_ = t1;
      if (!status.ok() && error_.ok()) error_ = status;
      if (!status.ok() || t1 > stop_at_) stop_ = true;
      if (!stopped()) {
        ++issued_;
        if (depth_ < kMaxDepth) {
          refill = true;
        } else {
          ++deferred_;
        }
      }
      // Under the lock: Run() may return and drop its reference right after.
      if (deferred_ > 0 || (completed_ == issued_ && stopped())) {
        cv_.notify_one();
      }
    }
    if (refill) {
      ++depth_;
      Issue();
      --depth_;
    }
  }

  const echo::EchoClient client_;
  const std::string payload_;
  const int total_;
  const Clock::time_point stop_at_;

  std::mutex mu_;
  std::condition_variable cv_;
  int issued_ = 0;      // Guarded by mu_: calls started or reserved.
  int completed_ = 0;   // Guarded by mu_.
  int deferred_ = 0;    // Guarded by mu_: reserved, for Run() to start.
  bool stop_ = false;   // Guarded by mu_: start no more calls.
  absl::Status error_;  // Guarded by mu_: the first failed call's.
  Clock::time_point last_done_;     // Guarded by mu_.
  std::vector<int64_t> latencies_;  // Guarded by mu_.
};

thread_local int EchoPipeline::depth_ = 0;

constexpr int kAsyncInFlight = 64;  // The "64" of rpc_async_64.

absl::StatusOr<Result> RpcAsync(const Config& cfg) {
  NATSGW_ASSIGN_OR_RETURN(auto rig, StartEcho(cfg, "rpc_async_64"));
  // Each call's timeout (ClientOptions::timeout) bounds how long a lost call
  // can hold up the drain.
  const absl::Duration drain =
      rig->client->channel().options().timeout + absl::Seconds(5);
  std::vector<int64_t> latencies;
  Clock::duration wall{};
  for (const auto& [calls, measured] :
       {std::pair{cfg.warmup, false}, std::pair{cfg.async_calls, true}}) {
    if (calls <= 0) continue;
    auto pipeline = std::make_shared<EchoPipeline>(
        *rig->client, cfg.payload, calls,
        Clock::now() + absl::ToChronoNanoseconds(cfg.max));
    NATSGW_RETURN_IF_ERROR(
        pipeline->Run(kAsyncInFlight, drain, latencies, wall));
    if (!measured) latencies.clear();
  }
  return Summarize("rpc_async_64", latencies, wall);
}

absl::StatusOr<Result> RawPublish(const Config& cfg) {
  NATSGW_ASSIGN_OR_RETURN(auto pub, RawConnection::Connect(cfg.url, false));
  natsConnection* nc = pub->nc();
  auto op = [&]() {
    return Check(
        natsConnection_Publish(nc, "bench.raw_publish", cfg.payload.data(),
                               static_cast<int>(cfg.payload.size())),
        "publish");
  };
  return MeasurePublish("raw_publish", cfg, op, [nc] {
    return Check(natsConnection_FlushTimeout(nc, 10000), "flush");
  });
}

absl::StatusOr<Result> RawPublishHeaders(const Config& cfg) {
  NATSGW_ASSIGN_OR_RETURN(auto pub, RawConnection::Connect(cfg.url, false));
  natsConnection* nc = pub->nc();
  const std::string traceparent =
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const std::string id = "4ZKpNq1bC0mXxq9oTrW2dL";
  const std::string sent = "1732500000123456789";
  auto op = [&]() {
    natsMsg* msg = nullptr;
    natsStatus s = natsMsg_Create(&msg, "bench.raw_publish_headers", nullptr,
                                  cfg.payload.data(),
                                  static_cast<int>(cfg.payload.size()));
    if (s == NATS_OK)
      s = natsMsgHeader_Set(msg, "traceparent", traceparent.c_str());
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", id.c_str());
    if (s == NATS_OK)
      s = natsMsgHeader_Set(msg, "Natsgw-Sent-At-Ns", sent.c_str());
    if (s == NATS_OK) s = natsConnection_PublishMsg(nc, msg);
    natsMsg_Destroy(msg);
    return Check(s, "publish");
  };
  return MeasurePublish("raw_publish_headers", cfg, op, [nc] {
    return Check(natsConnection_FlushTimeout(nc, 10000), "flush");
  });
}

// gateway_publish, or with `traced` gateway_publish_traced: the same
// publishes with a counting sink, checked afterwards to have had a span for
// every message.
absl::StatusOr<Result> GatewayPublish(const Config& cfg, bool traced) {
  const std::string scenario =
      traced ? "gateway_publish_traced" : "gateway_publish";
  const std::string subject = absl::StrCat("bench.", scenario);
  std::shared_ptr<CountingSink> spans;
  if (traced) spans = std::make_shared<CountingSink>();
  NATSGW_ASSIGN_OR_RETURN(auto conn, Gateway(cfg, spans));
  int64_t published = 0;
  auto op = [&]() {
    ++published;
    return conn->Publish(subject, cfg.payload).status();
  };
  NATSGW_ASSIGN_OR_RETURN(Result r, MeasurePublish(scenario, cfg, op, [&conn] {
                            return conn->Flush(absl::Seconds(10));
                          }));
  if (traced && spans->ended() != published) {
    return absl::InternalError(absl::StrCat(scenario, ": ", published,
                                            " messages, but ", spans->ended(),
                                            " spans"));
  }
  return r;
}

// JetStream scenarios.

// Acks outstanding at most in *js_publish_async (and while filling streams).
constexpr int kJsMaxPending = 256;
// raw_js_consume's Fetch batch: StreamConsumerOptions::max_batch's default.
constexpr int kJsFetchBatch = 64;
// js_consume's StreamConsumer workers.
constexpr int kJsWorkers = 4;

// Time allowed for acks still outstanding at the end of a publish scenario,
// and for a consumer's acks to reach the server.
constexpr absl::Duration kJsDrain = absl::Seconds(30);

// A nats.c JetStream failure, with the library's last error text (which
// carries the server's description) and the JetStream error code.
absl::Status CheckJs(natsStatus s, jsErrCode err, absl::string_view what) {
  if (s == NATS_OK) return absl::OkStatus();
  natsStatus last = NATS_OK;
  const char* text = nats_GetLastError(&last);
  return absl::UnavailableError(absl::StrCat(
      what, ": ", natsStatus_GetText(s),
      text != nullptr && *text != '\0' ? absl::StrCat(" (", text, ")") : "",
      err != 0 ? absl::StrCat(" (JetStream error ", err, ")") : ""));
}

// A throughput-only result (latency fields 0).
Result Throughput(const std::string& scenario, int64_t ops,
                  Clock::duration wall) {
  Result r;
  r.scenario = scenario;
  r.ops = ops;
  const double seconds = std::chrono::duration<double>(wall).count();
  r.ops_per_s = seconds > 0 ? ops / seconds : 0;
  return r;
}

// Nats-Msg-Id of the raw publishes: unique within a run's stream, and as
// long as natsgw's (NewMessageId).
std::string RawMessageId(int64_t i) { return absl::StrFormat("raw%019d", i); }

// A stream of its own for one run of one scenario: empty when the run starts
// (one left over from an interrupted run is deleted first), deleted with the
// object. Declared through natsgw for natsgw and raw scenarios alike, so both
// measure the same stream configuration; natsgw scenarios publish and
// consume through its JetStream, so they must be destroyed before it.
class BenchStream {
 public:
  static absl::StatusOr<std::unique_ptr<BenchStream>> Create(
      const Config& cfg, const std::string& scenario) {
    auto stream = std::unique_ptr<BenchStream>(new BenchStream);
    NATSGW_ASSIGN_OR_RETURN(stream->conn_, Gateway(cfg));
    NATSGW_ASSIGN_OR_RETURN(stream->js_, JetStream::Create(*stream->conn_));
    StreamConfig& config = stream->config_;
    config.name = absl::AsciiStrToUpper(absl::StrCat("bench_", scenario));
    config.subjects = {absl::StrCat("bench.js.", scenario)};
    config.storage = StorageType::kFile;
    config.replicas = 1;
    const absl::Status deleted = stream->js_->DeleteStream(config.name);
    if (!deleted.ok() && !absl::IsNotFound(deleted)) return deleted;
    NATSGW_RETURN_IF_ERROR(stream->js_->EnsureStream(config).status());
    stream->created_ = true;
    return stream;
  }
  ~BenchStream() {
    if (created_) js_->DeleteStream(config_.name).IgnoreError();
  }

  JetStream& js() { return *js_; }
  const std::string& name() const { return config_.name; }
  const std::string& subject() const { return config_.subjects.front(); }

  // OK if the stream holds exactly `messages` messages.
  absl::Status ExpectStored(int64_t messages) {
    NATSGW_ASSIGN_OR_RETURN(StreamState state, js_->GetStream(name()));
    if (state.messages != static_cast<uint64_t>(messages)) {
      return absl::InternalError(absl::StrCat("stream ", name(), " holds ",
                                              state.messages, " messages, ",
                                              messages, " were published"));
    }
    return absl::OkStatus();
  }

  // Waits up to `timeout` until consumer `durable` has had every message of
  // the stream delivered and acknowledged (acks are fire-and-forget, so the
  // server may count the last ones a moment after they were sent).
  absl::Status ExpectAllAcked(const std::string& durable,
                              absl::Duration timeout) {
    const absl::Time give_up = absl::Now() + timeout;
    while (true) {
      NATSGW_ASSIGN_OR_RETURN(ConsumerState state,
                              js_->GetConsumer(name(), durable));
      if (state.pending == 0 && state.ack_pending == 0) {
        return absl::OkStatus();
      }
      if (absl::Now() > give_up) {
        return absl::InternalError(
            absl::StrCat("consumer ", durable, " on stream ", name(), ": ",
                         state.pending, " messages undelivered and ",
                         state.ack_pending, " unacknowledged"));
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

  // Stores `count` messages of `payload`, or as many as `max` allows (the
  // untimed set-up of the consume scenarios); returns how many. natsgw
  // publishes them for both consumers, so both read the same messages,
  // headers included.
  absl::StatusOr<int64_t> Fill(int count, const std::string& payload,
                               absl::Duration max) {
    std::atomic<int> failures{0};  // outlives the publisher's callbacks
    StreamPublisherOptions options;
    options.stream = name();
    options.max_pending = kJsMaxPending;
    NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<StreamPublisher> publisher,
                            StreamPublisher::Create(*js_, options));
    const StreamPublishOptions publish;
    const Clock::time_point stop =
        Clock::now() + absl::ToChronoNanoseconds(max);
    int64_t sent = 0;
    while (sent < count && Clock::now() < stop) {
      NATSGW_RETURN_IF_ERROR(
          publisher->PublishAsync(subject(), payload, publish,
                                  [&failures](absl::StatusOr<PublishAck> ack) {
                                    if (!ack.ok()) failures.fetch_add(1);
                                  }));
      ++sent;
    }
    NATSGW_RETURN_IF_ERROR(publisher->WaitForAcks(kJsDrain));
    if (failures.load() > 0) {
      return absl::InternalError(absl::StrCat(failures.load(), " publishes to ",
                                              name(), " were not stored"));
    }
    NATSGW_RETURN_IF_ERROR(ExpectStored(sent));
    return sent;
  }

 private:
  BenchStream() = default;
  // Members are destroyed bottom-up: the JetStream before its Connection.
  std::unique_ptr<Connection> conn_;
  std::unique_ptr<JetStream> js_;
  StreamConfig config_;
  bool created_ = false;
};

// A raw nats.c connection with a JetStream context; the context is
// destroyed before the connection.
class RawJetStream {
 public:
  // `opts` may be null (nats.c's defaults).
  static absl::StatusOr<std::unique_ptr<RawJetStream>> Connect(
      const std::string& url, bool send_asap, jsOptions* opts) {
    auto raw = std::unique_ptr<RawJetStream>(new RawJetStream);
    NATSGW_ASSIGN_OR_RETURN(raw->conn_, RawConnection::Connect(url, send_asap));
    NATSGW_RETURN_IF_ERROR(
        Check(natsConnection_JetStream(&raw->js_, raw->conn_->nc(), opts),
              "JetStream context"));
    return raw;
  }
  ~RawJetStream() {
    if (js_ != nullptr) jsCtx_Destroy(js_);
  }
  jsCtx* js() { return js_; }

 private:
  RawJetStream() = default;
  std::unique_ptr<RawConnection> conn_;
  jsCtx* js_ = nullptr;
};

struct SubscriptionDeleter {
  void operator()(natsSubscription* sub) const {
    natsSubscription_Destroy(sub);
  }
};
using SubscriptionPtr = std::unique_ptr<natsSubscription, SubscriptionDeleter>;

// The headers every raw JetStream publish carries: a unique Nats-Msg-Id and
// Nats-Expected-Stream, as StreamPublisher sends them. `id` and `stream`
// must outlive the publish call.
jsPubOptions RawPublishOptions(const std::string& id,
                               const std::string& stream) {
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = id.c_str();
  po.ExpectStream = stream.c_str();
  return po;
}

absl::StatusOr<Result> RawJsPublishSync(const Config& cfg) {
  const std::string scenario = "raw_js_publish_sync";
  NATSGW_ASSIGN_OR_RETURN(auto stream, BenchStream::Create(cfg, scenario));
  NATSGW_ASSIGN_OR_RETURN(
      auto raw, RawJetStream::Connect(cfg.url, /*send_asap=*/true, nullptr));
  const std::string& subject = stream->subject();
  const std::string& name = stream->name();
  int64_t stored = 0;
  NATSGW_ASSIGN_OR_RETURN(
      Result r, Measure(scenario, cfg.warmup, cfg.js_requests, cfg.max,
                        [&]() -> absl::Status {
                          const std::string id = RawMessageId(stored);
                          jsPubOptions po = RawPublishOptions(id, name);
                          jsPubAck* ack = nullptr;
                          jsErrCode err = static_cast<jsErrCode>(0);
                          const natsStatus s = js_Publish(
                              &ack, raw->js(), subject.c_str(),
                              cfg.payload.data(),
                              static_cast<int>(cfg.payload.size()), &po, &err);
                          if (ack != nullptr) jsPubAck_Destroy(ack);
                          NATSGW_RETURN_IF_ERROR(CheckJs(s, err, "js_Publish"));
                          ++stored;
                          return absl::OkStatus();
                        }));
  NATSGW_RETURN_IF_ERROR(stream->ExpectStored(stored));
  return r;
}

absl::StatusOr<Result> JsPublishSync(const Config& cfg) {
  const std::string scenario = "js_publish_sync";
  NATSGW_ASSIGN_OR_RETURN(auto stream, BenchStream::Create(cfg, scenario));
  StreamPublisherOptions options;
  options.stream = stream->name();
  NATSGW_ASSIGN_OR_RETURN(auto publisher,
                          StreamPublisher::Create(stream->js(), options));
  const std::string& subject = stream->subject();
  const StreamPublishOptions publish;
  int64_t stored = 0;
  NATSGW_ASSIGN_OR_RETURN(
      Result r,
      Measure(scenario, cfg.warmup, cfg.js_requests, cfg.max,
              [&]() -> absl::Status {
                NATSGW_RETURN_IF_ERROR(
                    publisher->Publish(subject, cfg.payload, publish).status());
                ++stored;
                return absl::OkStatus();
              }));
  NATSGW_RETURN_IF_ERROR(stream->ExpectStored(stored));
  return r;
}

// Warms up with cfg.warmup publishes and waits for their acks (untimed),
// then MeasureThrough() over cfg.js_messages publishes: throughput runs
// until `complete` has every ack.
absl::StatusOr<Result> MeasureAsyncPublish(
    const std::string& scenario, const Config& cfg,
    const std::function<absl::Status()>& op,
    const std::function<absl::Status()>& complete) {
  for (int i = 0; i < cfg.warmup; ++i) NATSGW_RETURN_IF_ERROR(op());
  NATSGW_RETURN_IF_ERROR(complete());
  return MeasureThrough(scenario, 0, cfg.js_messages, cfg.max, op, complete);
}

void CountRawAckError(jsCtx*, jsPubAckErr*, void* failures) {
  static_cast<std::atomic<int>*>(failures)->fetch_add(1);
}

// OK unless some of a scenario's asynchronous publishes failed.
absl::Status NoFailures(int failures) {
  if (failures == 0) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(failures, " asynchronous publishes failed"));
}

absl::StatusOr<Result> RawJsPublishAsync(const Config& cfg) {
  const std::string scenario = "raw_js_publish_async";
  NATSGW_ASSIGN_OR_RETURN(auto stream, BenchStream::Create(cfg, scenario));
  std::atomic<int> failures{0};  // outlives the context's callbacks
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.PublishAsync.MaxPending = kJsMaxPending;
  // A publish waits this long (ms) for a free slot, as StreamPublisher's
  // pending_wait.
  jo.PublishAsync.StallWait = 5000;
  jo.PublishAsync.ErrHandler = &CountRawAckError;
  jo.PublishAsync.ErrHandlerClosure = &failures;
  NATSGW_ASSIGN_OR_RETURN(
      auto raw, RawJetStream::Connect(cfg.url, /*send_asap=*/true, &jo));
  const std::string& subject = stream->subject();
  const std::string& name = stream->name();
  int64_t sent = 0;
  auto op = [&]() -> absl::Status {
    const std::string id = RawMessageId(sent);
    jsPubOptions po = RawPublishOptions(id, name);
    NATSGW_RETURN_IF_ERROR(
        CheckJs(js_PublishAsync(raw->js(), subject.c_str(), cfg.payload.data(),
                                static_cast<int>(cfg.payload.size()), &po),
                static_cast<jsErrCode>(0), "js_PublishAsync"));
    ++sent;
    return absl::OkStatus();
  };
  auto complete = [&]() -> absl::Status {
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = absl::ToInt64Milliseconds(kJsDrain);
    NATSGW_RETURN_IF_ERROR(CheckJs(js_PublishAsyncComplete(raw->js(), &po),
                                   static_cast<jsErrCode>(0),
                                   "js_PublishAsyncComplete"));
    return NoFailures(failures.load());
  };
  NATSGW_ASSIGN_OR_RETURN(Result r,
                          MeasureAsyncPublish(scenario, cfg, op, complete));
  NATSGW_RETURN_IF_ERROR(stream->ExpectStored(sent));
  return r;
}

absl::StatusOr<Result> JsPublishAsync(const Config& cfg) {
  const std::string scenario = "js_publish_async";
  NATSGW_ASSIGN_OR_RETURN(auto stream, BenchStream::Create(cfg, scenario));
  std::atomic<int> failures{0};  // outlives the publisher's callbacks
  StreamPublisherOptions options;
  options.stream = stream->name();
  options.max_pending = kJsMaxPending;
  NATSGW_ASSIGN_OR_RETURN(auto publisher,
                          StreamPublisher::Create(stream->js(), options));
  const std::string& subject = stream->subject();
  const StreamPublishOptions publish;
  int64_t sent = 0;
  auto op = [&]() -> absl::Status {
    NATSGW_RETURN_IF_ERROR(
        publisher->PublishAsync(subject, cfg.payload, publish,
                                [&failures](absl::StatusOr<PublishAck> ack) {
                                  if (!ack.ok()) failures.fetch_add(1);
                                }));
    ++sent;
    return absl::OkStatus();
  };
  auto complete = [&]() -> absl::Status {
    NATSGW_RETURN_IF_ERROR(publisher->WaitForAcks(kJsDrain));
    return NoFailures(failures.load());
  };
  NATSGW_ASSIGN_OR_RETURN(Result r,
                          MeasureAsyncPublish(scenario, cfg, op, complete));
  NATSGW_RETURN_IF_ERROR(stream->ExpectStored(sent));
  return r;
}

// The result of a consume scenario that acknowledged `acked` of `total`
// messages in `wall`: DEADLINE_EXCEEDED if none, else the throughput (over
// fewer than `total` when --max_seconds ran out first).
absl::StatusOr<Result> ConsumeResult(const std::string& scenario, int64_t acked,
                                     int64_t total, Clock::duration wall) {
  if (acked == 0 && total > 0) {
    return absl::DeadlineExceededError(absl::StrCat(
        scenario, ": no message acknowledged within --max_seconds"));
  }
  return Throughput(scenario, acked, wall);
}

absl::StatusOr<Result> RawJsConsume(const Config& cfg) {
  const std::string scenario = "raw_js_consume";
  const std::string durable = "raw_bench";
  NATSGW_ASSIGN_OR_RETURN(auto stream, BenchStream::Create(cfg, scenario));
  NATSGW_ASSIGN_OR_RETURN(const int64_t total,
                          stream->Fill(cfg.js_messages, cfg.payload, cfg.max));
  NATSGW_ASSIGN_OR_RETURN(
      auto raw, RawJetStream::Connect(cfg.url, /*send_asap=*/true, nullptr));
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream->name().c_str();

  const Clock::time_point start = Clock::now();
  const Clock::time_point stop = start + absl::ToChronoNanoseconds(cfg.max);
  natsSubscription* created = nullptr;
  jsErrCode err = static_cast<jsErrCode>(0);
  NATSGW_RETURN_IF_ERROR(
      CheckJs(js_PullSubscribe(&created, raw->js(), stream->subject().c_str(),
                               durable.c_str(), nullptr, &so, &err),
              err, "js_PullSubscribe"));
  SubscriptionPtr sub(created);
  int64_t acked = 0;
  while (acked < total) {
    const int64_t left_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(stop -
                                                              Clock::now())
            .count();
    if (left_ms <= 0) break;
    natsMsgList list = {nullptr, 0};
    const natsStatus s = natsSubscription_Fetch(
        &list, sub.get(),
        static_cast<int>(std::min<int64_t>(kJsFetchBatch, total - acked)),
        std::min<int64_t>(left_ms, 1000), &err);
    natsStatus ack = NATS_OK;
    for (int i = 0; i < list.Count && ack == NATS_OK; ++i) {
      ack = natsMsg_Ack(list.Msgs[i], nullptr);
      if (ack == NATS_OK) ++acked;
    }
    natsMsgList_Destroy(&list);
    NATSGW_RETURN_IF_ERROR(Check(ack, "natsMsg_Ack"));
    if (s == NATS_TIMEOUT) continue;
    NATSGW_RETURN_IF_ERROR(CheckJs(s, err, "natsSubscription_Fetch"));
  }
  const Clock::time_point end = Clock::now();
  if (acked == total) {
    NATSGW_RETURN_IF_ERROR(stream->ExpectAllAcked(durable, kJsDrain));
  }
  return ConsumeResult(scenario, acked, total, end - start);
}

absl::StatusOr<Result> JsConsume(const Config& cfg) {
  const std::string scenario = "js_consume";
  const std::string durable = "natsgw_bench";
  NATSGW_ASSIGN_OR_RETURN(auto stream, BenchStream::Create(cfg, scenario));
  NATSGW_ASSIGN_OR_RETURN(const int64_t total,
                          stream->Fill(cfg.js_messages, cfg.payload, cfg.max));
  StreamConsumerOptions options;
  options.consumer.stream = stream->name();
  options.consumer.durable = durable;
  options.workers = kJsWorkers;
  options.prefetch = absl::GetFlag(FLAGS_js_prefetch);

  // The handler wakes this thread when it has seen every message; the
  // consumer counts an ack once it is sent, right after its handler
  // returned, so the last few are polled for.
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<int64_t> handled{0};
  bool all_handled = false;  // Guarded by mu.
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop = start + absl::ToChronoNanoseconds(cfg.max);
  NATSGW_ASSIGN_OR_RETURN(
      std::unique_ptr<StreamConsumer> consumer,
      StreamConsumer::Create(stream->js(), std::move(options),
                             [&](const Delivery&) {
                               if (handled.fetch_add(1) + 1 == total) {
                                 std::lock_guard<std::mutex> lock(mu);
                                 all_handled = true;
                                 cv.notify_one();
                               }
                               return DeliveryOutcome::Ack();
                             }));
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_until(lock, stop, [&] { return all_handled || total == 0; });
  }
  int64_t acked = 0;
  Clock::time_point end;
  while (true) {
    acked = consumer->stats().acked;
    end = Clock::now();
    if (acked >= total || end > stop) break;
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
  // When --max_seconds ran out first, Stop() hands back (Naks) what the
  // workers had not started: expected then, and not checked.
  const absl::Status stopped = consumer->Stop(absl::Seconds(10));
  if (acked >= total) {
    NATSGW_RETURN_IF_ERROR(stopped);
    const StreamConsumerStats stats = consumer->stats();
    if (stats.redelivered > 0 || stats.naked > 0 || stats.terminated > 0 ||
        stats.skipped_duplicates > 0) {
      return absl::InternalError(absl::StrCat(
          scenario, ": every message should be acked once on first delivery; ",
          stats.redelivered, " redelivered, ", stats.naked, " naked, ",
          stats.terminated, " terminated, ", stats.skipped_duplicates,
          " skipped as duplicates"));
    }
    NATSGW_RETURN_IF_ERROR(stream->ExpectAllAcked(durable, kJsDrain));
  }
  return ConsumeResult(scenario, std::min(acked, total), total, end - start);
}

// Overhead scenarios: natsgw's per-message metric and trace work, copied
// from its message paths (connection.cc) and run in a tight loop without
// NATS. Keep them in step with connection.cc when its paths change.

// Keeps the compiler from dropping work whose result is otherwise unused
// (Google Benchmark's DoNotOptimize idiom): `value` is taken to be read.
template <typename T>
void Escape(const T& value) {
  asm volatile("" : : "g"(&value) : "memory");
}

// How much each measurement of an overhead scenario runs.
struct MicroBudget {
  int64_t count;           // measured calls per figure
  int64_t warmup;          // unmeasured calls before them
  Clock::time_point stop;  // the scenario's --max_seconds deadline
};

// Abseil's absl::Now() takes a slower path (several times the cost of a
// steady_clock read) until it has calibrated its cycle clock, which it does
// over roughly the first half second of use. natsgw reads it on every
// message, in a process that runs far longer: measurements start after the
// first second.
void SettleWallClock() {
  static const Clock::time_point first = Clock::now();
  static bool settled = false;
  if (settled) return;
  while (Clock::now() - first < std::chrono::seconds(1)) {
    Escape(absl::Now());
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  settled = true;
}

MicroBudget Budget(const Config& cfg) {
  SettleWallClock();
  return MicroBudget{std::max<int64_t>(1, absl::GetFlag(FLAGS_overhead_ops)),
                     std::max(0, cfg.warmup),
                     Clock::now() + absl::ToChronoNanoseconds(cfg.max)};
}

// Batches per measurement: the median batch is robust against the odd
// batch that a shared machine preempts or migrates.
constexpr int kMicroBatches = 15;

// Nanoseconds per call of `op(i)` (i counts calls from 0): `op` runs
// `warmup` times, then in up to kMicroBatches equal batches of at most
// `count` calls in all (fewer once `stop` passed: at least one batch);
// returns the median batch's time per call.
template <typename Op>
double NsPerCall(const MicroBudget& budget, Op&& op) {
  int64_t i = 0;
  for (; i < budget.warmup; ++i) op(i);
  const int64_t per_batch = std::max<int64_t>(1, budget.count / kMicroBatches);
  std::vector<double> ns;
  for (int b = 0; b < kMicroBatches; ++b) {
    const Clock::time_point t0 = Clock::now();
    for (int64_t k = 0; k < per_batch; ++k, ++i) op(i);
    const Clock::time_point t1 = Clock::now();
    ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() /
                 static_cast<double>(per_batch));
    if (t1 > budget.stop) break;
  }
  std::sort(ns.begin(), ns.end());
  return ns[ns.size() / 2];
}

// The result of an overhead scenario whose headline is `ns_per_op`
// nanoseconds per message (also given as ops_per_s), with `figures`.
Result Overhead(const std::string& scenario, const MicroBudget& budget,
                std::map<std::string, double> figures) {
  Result r;
  r.scenario = scenario;
  r.ops = budget.count;
  const double ns = figures.at("ns_per_op");
  r.ops_per_s = ns > 0 ? 1e9 / ns : 0;
  r.figures = std::move(figures);
  return r;
}

absl::Duration SteadySince(Clock::time_point start) {
  return absl::FromChrono(Clock::now() - start);
}

absl::StatusOr<Result> OverheadMetrics(const Config& cfg) {
  using internal::GatewayMetrics;
  using internal::Seconds;
  using internal::SubjectMetrics;
  const MicroBudget budget = Budget(cfg);
  const size_t max_subjects = ConnectionOptions().max_metric_subjects;
  NATSGW_ASSIGN_OR_RETURN(
      std::unique_ptr<GatewayMetrics> metrics,
      GatewayMetrics::Create(std::make_shared<prometheus::Registry>(),
                             max_subjects));
  GatewayMetrics& gm = *metrics;
  const std::string subject = "bench.overhead_metrics";
  std::map<std::string, double> f;

  // Connection::Publish: a steady-clock read at its start (for the
  // duration), the subject's metrics (a literal subject, no
  // metric_subject), the message counter and the duration histogram.
  auto publish = [&gm](absl::string_view subj) {
    const Clock::time_point start = Clock::now();
    SubjectMetrics& m = gm.ForLiteral(subj);
    m.published.Get().Increment();
    m.publish_duration.Get().Observe(Seconds(SteadySince(start)));
  };
  f["publish_ns"] = NsPerCall(budget, [&](int64_t) { publish(subject); });
  // Two subjects in turn: the per-thread cache holds one label, so every
  // lookup takes the registry's lock and hash map.
  const std::string two[2] = {subject + ".a", subject + ".b"};
  f["publish_uncached_ns"] =
      NsPerCall(budget, [&](int64_t i) { publish(two[i & 1]); });
  // Distinct subjects past max_metric_subjects share the "_other" label,
  // which is never cached (the overflow counter counts each message).
  {
    NATSGW_ASSIGN_OR_RETURN(
        std::unique_ptr<GatewayMetrics> full,
        GatewayMetrics::Create(std::make_shared<prometheus::Registry>(),
                               max_subjects));
    for (size_t k = 0; k < max_subjects; ++k) {
      full->ForLiteral(absl::StrCat(subject, ".fill.", k));
    }
    std::vector<std::string> many;
    for (int k = 0; k < 1024; ++k) {
      many.push_back(absl::StrCat(subject, ".over.", k));
    }
    f["publish_overflow_ns"] = NsPerCall(budget, [&](int64_t i) {
      const Clock::time_point start = Clock::now();
      SubjectMetrics& m = full->ForLiteral(many[i & 1023]);
      m.published.Get().Increment();
      m.publish_duration.Get().Observe(Seconds(SteadySince(start)));
    });
  }
  // A subject's first publish: its SubjectMetrics and the counter and
  // histogram series are created (once per label, at most
  // max_metric_subjects literal labels per Connection). Batches of
  // max_subjects new labels on a fresh registry each, untimed set-up.
  {
    std::vector<double> per_label;
    const int64_t batches = std::clamp<int64_t>(
        budget.count / static_cast<int64_t>(max_subjects), 1, kMicroBatches);
    std::vector<std::string> labels;
    for (size_t k = 0; k < max_subjects; ++k) {
      labels.push_back(absl::StrCat(subject, ".new.", k));
    }
    for (int64_t b = 0; b < batches; ++b) {
      NATSGW_ASSIGN_OR_RETURN(
          std::unique_ptr<GatewayMetrics> fresh,
          GatewayMetrics::Create(std::make_shared<prometheus::Registry>(),
                                 max_subjects));
      const Clock::time_point t0 = Clock::now();
      for (const std::string& label : labels) {
        const Clock::time_point start = Clock::now();
        SubjectMetrics& m = fresh->ForLiteral(label);
        m.published.Get().Increment();
        m.publish_duration.Get().Observe(Seconds(SteadySince(start)));
      }
      const Clock::time_point t1 = Clock::now();
      per_label.push_back(
          std::chrono::duration<double, std::nano>(t1 - t0).count() /
          static_cast<double>(labels.size()));
      if (t1 > budget.stop) break;
    }
    std::sort(per_label.begin(), per_label.end());
    f["first_use_ns"] = per_label[per_label.size() / 2];
  }

  // A message delivered to a subscription handler (Dispatch and
  // HandleMessage): a steady-clock read on arrival, the received counter,
  // the delivery latency from the sender's timestamp (an absl::Now() read)
  // and the handler's duration (the subscription's metrics are resolved
  // once, at Subscribe).
  SubjectMetrics& sub = gm.ForPattern(subject);
  Message delivered;
  delivered.sent_at = absl::Now();
  f["receive_ns"] = NsPerCall(budget, [&](int64_t) {
    const Clock::time_point start = Clock::now();
    sub.received.Get().Increment();
    GatewayMetrics::ObserveDelivery(sub, delivered, absl::Now());
    // (the handler runs here)
    sub.handler_duration.Get().Observe(Seconds(SteadySince(start)));
  });

  // A request's client side (RequestAsync and the request mux): start
  // time, lookup, in-flight gauge up and down, the call's duration by
  // status code.
  f["request_client_ns"] = NsPerCall(budget, [&](int64_t) {
    const Clock::time_point start = Clock::now();
    SubjectMetrics& m = gm.ForLiteral(subject);
    m.in_flight.Get().Increment();
    // (the request and its reply travel here)
    m.in_flight.Get().Decrement();
    m.client_request.For(absl::StatusCode::kOk)
        .Observe(Seconds(SteadySince(start)));
  });
  // A served request (Dispatch and SendReply): arrival time, received
  // counter, the handling duration by status code.
  f["request_server_ns"] = NsPerCall(budget, [&](int64_t) {
    const Clock::time_point start = Clock::now();
    sub.received.Get().Increment();
    sub.server_request.For(absl::StatusCode::kOk)
        .Observe(Seconds(SteadySince(start)));
  });
  // The NATS Services API statistics of a served request ($SRV.STATS):
  // the handler's own start and duration, one locked record.
  auto stats = std::make_unique<internal::EndpointStatsRecorder>();
  const absl::Status ok;
  f["endpoint_stats_ns"] = NsPerCall(budget, [&](int64_t) {
    const Clock::time_point handler_start = Clock::now();
    stats->RecordHandled(SteadySince(handler_start), ok);
  });

  // Building blocks.
  f["steady_clock_ns"] = NsPerCall(budget, [](int64_t) {
    const Clock::time_point t = Clock::now();
    Escape(t);
  });
  f["wall_clock_ns"] = NsPerCall(budget, [](int64_t) {
    const absl::Time t = absl::Now();
    Escape(t);
  });
  f["lookup_cached_ns"] = NsPerCall(budget, [&](int64_t) {
    SubjectMetrics& m = gm.ForLiteral(subject);
    Escape(m);
  });
  SubjectMetrics& pub = gm.ForLiteral(subject);
  f["counter_increment_ns"] =
      NsPerCall(budget, [&](int64_t) { pub.published.Get().Increment(); });
  f["histogram_observe_ns"] = NsPerCall(budget, [&](int64_t i) {
    pub.publish_duration.Get().Observe(1e-6 * static_cast<double>(i & 63));
  });

  // Nothing was left unrecorded.
  if (pub.published.Get().Value() <= 0 || sub.received.Get().Value() <= 0) {
    return absl::InternalError("overhead_metrics: counters did not count");
  }
  f["ns_per_op"] = f["publish_ns"] + f["receive_ns"];
  return Overhead("overhead_metrics", budget, std::move(f));
}

absl::StatusOr<Result> OverheadTraceContext(const Config& cfg) {
  const MicroBudget budget = Budget(cfg);
  std::map<std::string, double> f;

  // Connection::Publish's OutgoingTrace (no SendOptions::trace): the
  // current trace's child, else a new root (every trace sampled, the
  // default ratio); then FormatStamp's traceparent text.
  const SendOptions no_trace;
  auto send = [&no_trace](int64_t) {
    TraceContext trace;
    if (no_trace.trace && no_trace.trace->valid()) {
      trace = no_trace.trace->Child();
    } else if (std::optional<TraceContext> current = CurrentTraceContext();
               current && current->valid()) {
      trace = current->Child();
    } else {
      trace = TraceContext::NewRoot();
    }
    const std::string traceparent = trace.ToTraceParent();
    Escape(traceparent);
  };
  // A flow that starts here: no current trace.
  f["send_root_ns"] = NsPerCall(budget, send);
  // Inside a handler (or a ScopedTraceContext): the next hop of its trace.
  {
    ScopedTraceContext scope(TraceContext::NewRoot());
    f["send_child_ns"] = NsPerCall(budget, send);
  }

  // On receipt (ReadNatsMsg, RunHandler): parse traceparent (no
  // tracestate), then run the handler with it as the current trace.
  const std::string traceparent = TraceContext::NewRoot().ToTraceParent();
  if (!TraceContext::Parse(traceparent).ok()) {
    return absl::InternalError("overhead_trace_context: traceparent rejected");
  }
  f["receive_ns"] = NsPerCall(budget, [&](int64_t) {
    absl::StatusOr<TraceContext> parsed = TraceContext::Parse(traceparent, "");
    ScopedTraceContext scope(*std::move(parsed));
    // (the handler runs here)
    Escape(scope);
  });

  // What nats.c's header API costs for the traceparent header: building a
  // message with the three stamp headers as BuildNatsMsg does, against the
  // same without traceparent; both destroyed as natsgw destroys messages.
  NATSGW_RETURN_IF_ERROR(internal::EnsureNatsLibrary());
  const std::string subject = "bench.overhead_trace_context";
  const std::string id = NewMessageId();
  const std::string sent = absl::StrCat(absl::ToUnixNanos(absl::Now()));
  int64_t failures = 0;
  auto build = [&](bool traced) {
    natsMsg* raw = nullptr;
    natsStatus s =
        natsMsg_Create(&raw, subject.c_str(), nullptr, cfg.payload.data(),
                       static_cast<int>(cfg.payload.size()));
    if (s != NATS_OK) {
      ++failures;
      return;
    }
    internal::NatsMsgPtr msg(raw);
    if (traced) {
      s = natsMsgHeader_Set(raw, kTraceParentHeader.data(),
                            traceparent.c_str());
    }
    if (s == NATS_OK)
      s = natsMsgHeader_Set(raw, kMessageIdHeader.data(), id.c_str());
    if (s == NATS_OK)
      s = natsMsgHeader_Set(raw, kSentAtHeader.data(), sent.c_str());
    if (s != NATS_OK) ++failures;
  };
  const double without =
      NsPerCall(budget, [&](int64_t) { build(/*traced=*/false); });
  const double with =
      NsPerCall(budget, [&](int64_t) { build(/*traced=*/true); });
  internal::FlushRetiredNatsMsgs();
  if (failures > 0) {
    return absl::InternalError(absl::StrCat(
        "overhead_trace_context: ", failures, " messages not built"));
  }
  f["nats_build_ns"] = without;
  f["nats_build_traced_ns"] = with;
  f["nats_header_ns"] = with - without;
  // "traceparent: <55 characters>\r\n" in every message's header block.
  f["header_bytes"] = static_cast<double>(kTraceParentHeader.size() + 2 +
                                          traceparent.size() + 2);

  f["ns_per_op"] = f["send_child_ns"] + f["receive_ns"];
  return Overhead("overhead_trace_context", budget, std::move(f));
}

// The URL a span's server.address and server.port come from, as
// connection.cc's LaneUrl reads it for every sending span.
std::string ConnectedUrl(natsConnection* nc) {
  char buffer[256] = {0};
  if (natsConnection_GetConnectedUrl(nc, buffer, sizeof(buffer)) != NATS_OK) {
    return "";
  }
  return RedactUrl(buffer);
}

// The span work of Connection::Publish for one message on connection `nc`
// (default options: no metric_subject, no client name), whose stamp has
// `trace`, `message_id` and `sent_at`: nothing but the SpanWanted check
// unless a span is wanted.
void PublishSpan(const std::shared_ptr<SpanSink>& sink, natsConnection* nc,
                 const std::string& subject, const TraceContext& trace,
                 const std::string& message_id, absl::Time sent_at,
                 size_t body_size) {
  internal::Span span;
  if (internal::SpanWanted(sink.get(), trace)) {
    span = internal::Span::Start(sink, SpanKind::kProducer,
                                 internal::MessagingSpanName("publish", subject,
                                                             /*template=*/""),
                                 trace, std::nullopt, sent_at);
    internal::SetMessagingAttributes(span, "send", "publish", subject, "");
    span.SetString(span_attributes::kMessagingMessageId, message_id);
    span.SetInt(span_attributes::kMessagingMessageBodySize,
                static_cast<int64_t>(body_size));
    internal::SetServerAttributes(span, ConnectedUrl(nc));
    span.ReportStart();
  }
  // (the message is built and published here)
  span.End();
}

// The span of a message delivered to a subscription handler, as
// StartReceiveSpan makes it: a CONSUMER span, child of the sender's, linked
// to it; inert unless a span is wanted.
internal::Span StartReceiveSpan(const std::shared_ptr<SpanSink>& sink,
                                const Message& m, const std::string& label) {
  if (!internal::SpanWanted(sink.get(), m.trace)) return {};
  internal::Span span = internal::Span::Start(
      sink, SpanKind::kConsumer,
      internal::MessagingSpanName("process", m.subject, label), m.trace.Child(),
      m.trace.span_id(), m.received_at);
  internal::SetMessagingAttributes(span, "process", "process", m.subject,
                                   label);
  span.SetString(span_attributes::kMessagingMessageId, m.message_id);
  span.SetInt(span_attributes::kMessagingMessageBodySize,
              static_cast<int64_t>(m.data.size()));
  span.AddLink(m.trace);
  span.ReportStart();
  return span;
}

// The span work of HandleMessage for one message.
void ReceiveSpan(const std::shared_ptr<SpanSink>& sink, const Message& m,
                 const std::string& label) {
  internal::Span span = StartReceiveSpan(sink, m, label);
  // The handler runs with this as its current trace.
  const TraceContext& current = span.recording() ? span.context() : m.trace;
  Escape(current);
  span.SetStatus(absl::OkStatus());
  span.End();
}

// Keeps the SpanData of the last span it is given.
//
// Thread-safety: not thread-safe; for one thread's spans.
class KeepingSink final : public SpanSink {
 public:
  void OnEnd(const SpanData& span) override { last_ = span; }
  const SpanData& last() const { return last_; }

 private:
  SpanData last_;
};

absl::StatusOr<Result> OverheadSpans(const Config& cfg) {
  const MicroBudget budget = Budget(cfg);
  // Idle; only asked for its URL, as a publishing connection is.
  NATSGW_ASSIGN_OR_RETURN(auto raw, RawConnection::Connect(cfg.url, false));
  natsConnection* nc = raw->nc();
  const std::string subject = "bench.overhead_spans";
  const std::string message_id = NewMessageId();
  const TraceContext sampled = TraceContext::NewRoot();
  const TraceContext unsampled = NewRootTrace(/*ratio=*/0.0);
  if (!sampled.sampled() || unsampled.sampled()) {
    return absl::InternalError("overhead_spans: sampling flags are wrong");
  }
  // The message as the receiving side holds it.
  auto received = [&](const TraceContext& trace) {
    Message m;
    m.subject = subject;
    m.data = cfg.payload;
    m.message_id = message_id;
    m.trace = trace;
    m.received_at = absl::Now();
    return m;
  };
  const Message in_sampled = received(sampled);
  const Message in_unsampled = received(unsampled);
  // Both ends of one message, reporting to `sink`.
  auto both = [&](std::shared_ptr<SpanSink> sink, const Message& in) {
    const Message* msg = &in;
    return [&, sink, msg](int64_t) {
      PublishSpan(sink, nc, subject, msg->trace, message_id, msg->received_at,
                  cfg.payload.size());
      ReceiveSpan(sink, *msg, subject);
    };
  };
  std::map<std::string, double> f;

  // (a) No sink: the pointer check, and an inert Span on each side.
  f["no_sink_ns"] = NsPerCall(budget, both(nullptr, in_sampled));
  // An inert Span as the publish path holds it: made, ended, destroyed.
  // Span::End's default argument reads the wall clock at the call, so each
  // End() call and the destructor read it even when nothing is recorded.
  f["inert_span_ns"] = NsPerCall(budget, [](int64_t) {
    internal::Span span;
    span.End();
  });
  // (c) A sink, but the trace is not sampled: the flag check.
  auto counting = std::make_shared<CountingSink>();
  // As a Connection holds it (no conversion per call).
  const std::shared_ptr<SpanSink> counting_sink = counting;
  f["unsampled_ns"] = NsPerCall(budget, both(counting_sink, in_unsampled));
  if (counting->ended() != 0) {
    return absl::InternalError("overhead_spans: an unsampled span reported");
  }
  // (b) A sink that drops what it gets, sampled trace: natsgw's own cost of
  // a span (name, attributes, IDs, times, the sink's two calls).
  f["discard_send_ns"] = NsPerCall(budget, [&](int64_t) {
    PublishSpan(counting_sink, nc, subject, sampled, message_id,
                in_sampled.received_at, cfg.payload.size());
  });
  f["discard_receive_ns"] = NsPerCall(budget, [&](int64_t) {
    ReceiveSpan(counting_sink, in_sampled, subject);
  });
  if (counting->ended() == 0) {
    return absl::InternalError("overhead_spans: no sampled span reported");
  }

  // (d) JsonLinesSpanExporter: one JSON line formatted, and written whole
  // by each span. Some microseconds a span: at most 20000 calls each.
  MicroBudget json_budget = budget;
  json_budget.count = std::min<int64_t>(budget.count, 20000);
  json_budget.warmup = std::min<int64_t>(budget.warmup, 100);
  // Formatting alone first, for a publish span.
  auto keeping = std::make_shared<KeepingSink>();
  PublishSpan(std::shared_ptr<SpanSink>(keeping), nc, subject, sampled,
              message_id, absl::Now(), cfg.payload.size());
  const SpanData& typical = keeping->last();
  f["json_line_bytes"] = static_cast<double>(
      JsonLinesSpanExporter::ToJsonLine(typical, "bench").size() + 1);
  // Its RFC 3339 start time alone.
  f["json_time_format_ns"] = NsPerCall(json_budget, [&](int64_t) {
    const std::string text = absl::FormatTime(
        "%Y-%m-%d%ET%H:%M:%E9SZ", typical.start, absl::UTCTimeZone());
    Escape(text);
  });
  f["json_line_ns"] = NsPerCall(json_budget, [&](int64_t) {
    const std::string line =
        JsonLinesSpanExporter::ToJsonLine(typical, "bench");
    Escape(line);
  });
  {
    NATSGW_ASSIGN_OR_RETURN(
        std::shared_ptr<JsonLinesSpanExporter> exporter,
        JsonLinesSpanExporter::Create("/dev/null", "bench"));
    f["json_devnull_ns"] = NsPerCall(json_budget, both(exporter, in_sampled));
    if (exporter->write_errors() > 0) {
      return absl::InternalError("overhead_spans: writes to /dev/null failed");
    }
  }
  // To a file, which grows by two lines a message: fewer still.
  {
    const std::filesystem::path path =
        std::filesystem::temp_directory_path() /
        absl::StrCat("natsgw-bench-spans-", getpid(), ".jsonl");
    MicroBudget file_budget = json_budget;
    file_budget.count = std::min<int64_t>(json_budget.count, 10000);
    absl::StatusOr<std::unique_ptr<JsonLinesSpanExporter>> created =
        JsonLinesSpanExporter::Create(path.string(), "bench");
    if (!created.ok()) return created.status();
    std::shared_ptr<JsonLinesSpanExporter> exporter = *std::move(created);
    f["json_file_ns"] = NsPerCall(file_budget, both(exporter, in_sampled));
    const int64_t errors = exporter->write_errors();
    exporter.reset();
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
    if (errors > 0) {
      return absl::InternalError("overhead_spans: span file writes failed");
    }
  }

  f["ns_per_op"] = f["discard_send_ns"] + f["discard_receive_ns"];
  return Overhead("overhead_spans", budget, std::move(f));
}

int Run() {
  std::unique_ptr<natsgw::testing::NatsServer> own_server;
  Config cfg;
  cfg.url = absl::GetFlag(FLAGS_nats_url);
  if (cfg.url.empty()) {
    natsgw::testing::NatsServerOptions sopts;
    // JetStream (store in the server's temporary directory) for the js_*
    // scenarios.
    sopts.jetstream = true;
    auto started = natsgw::testing::NatsServer::Start(sopts);
    if (!started.ok()) {
      std::fprintf(stderr, "natsgw-bench: %s\n",
                   started.status().ToString().c_str());
      return 1;
    }
    own_server = *std::move(started);
    cfg.url = own_server->url();
  }
  cfg.payload =
      std::string(std::max(0, absl::GetFlag(FLAGS_payload_bytes)), 'x');
  cfg.requests = absl::GetFlag(FLAGS_requests);
  cfg.publishes = absl::GetFlag(FLAGS_publishes);
  cfg.async_calls = absl::GetFlag(FLAGS_async_calls);
  cfg.js_requests = absl::GetFlag(FLAGS_js_requests);
  cfg.js_messages = absl::GetFlag(FLAGS_js_messages);
  cfg.warmup = absl::GetFlag(FLAGS_warmup);
  cfg.max = absl::Seconds(absl::GetFlag(FLAGS_max_seconds));

  const std::vector<std::string> all = {"raw_request_default",
                                        "raw_request_asap",
                                        "gateway_request",
                                        "gateway_request_traced",
                                        "rpc_sync",
                                        "rpc_async_64",
                                        "raw_publish",
                                        "raw_publish_headers",
                                        "gateway_publish",
                                        "gateway_publish_traced",
                                        "raw_js_publish_sync",
                                        "js_publish_sync",
                                        "raw_js_publish_async",
                                        "js_publish_async",
                                        "raw_js_consume",
                                        "js_consume",
                                        "overhead_metrics",
                                        "overhead_trace_context",
                                        "overhead_spans"};
  std::vector<std::string> chosen = all;
  if (!absl::GetFlag(FLAGS_scenarios).empty()) {
    chosen =
        absl::StrSplit(absl::GetFlag(FLAGS_scenarios), ',', absl::SkipEmpty());
    for (const std::string& s : chosen) {
      if (std::find(all.begin(), all.end(), s) == all.end()) {
        std::fprintf(stderr,
                     "natsgw-bench: unknown scenario '%s' (known: %s)\n",
                     s.c_str(), absl::StrJoin(all, ", ").c_str());
        return 2;
      }
    }
  }

  const int rounds = std::max(1, absl::GetFlag(FLAGS_rounds));
  std::map<std::string, std::vector<Result>> runs;
  for (int round = 0; round < rounds; ++round) {
    for (const std::string& scenario : all) {
      if (std::find(chosen.begin(), chosen.end(), scenario) == chosen.end()) {
        continue;
      }
      absl::StatusOr<Result> r;
      if (scenario == "raw_request_default")
        r = RawRequest(cfg, scenario, false);
      if (scenario == "raw_request_asap") r = RawRequest(cfg, scenario, true);
      if (scenario == "gateway_request") r = GatewayRequest(cfg, false);
      if (scenario == "gateway_request_traced") r = GatewayRequest(cfg, true);
      if (scenario == "rpc_sync") r = RpcSync(cfg);
      if (scenario == "rpc_async_64") r = RpcAsync(cfg);
      if (scenario == "raw_publish") r = RawPublish(cfg);
      if (scenario == "raw_publish_headers") r = RawPublishHeaders(cfg);
      if (scenario == "gateway_publish") r = GatewayPublish(cfg, false);
      if (scenario == "gateway_publish_traced") r = GatewayPublish(cfg, true);
      if (scenario == "raw_js_publish_sync") r = RawJsPublishSync(cfg);
      if (scenario == "js_publish_sync") r = JsPublishSync(cfg);
      if (scenario == "raw_js_publish_async") r = RawJsPublishAsync(cfg);
      if (scenario == "js_publish_async") r = JsPublishAsync(cfg);
      if (scenario == "raw_js_consume") r = RawJsConsume(cfg);
      if (scenario == "js_consume") r = JsConsume(cfg);
      if (scenario == "overhead_metrics") r = OverheadMetrics(cfg);
      if (scenario == "overhead_trace_context") r = OverheadTraceContext(cfg);
      if (scenario == "overhead_spans") r = OverheadSpans(cfg);
      if (!r.ok()) {
        std::fprintf(stderr, "natsgw-bench: %s: %s\n", scenario.c_str(),
                     r.status().ToString().c_str());
        return 1;
      }
      runs[scenario].push_back(*r);
    }
  }

  // The median round of each scenario: by throughput where throughput is
  // the point (publishes, pipelined calls, consumers, the overhead
  // scenarios' headline), by p50 for sequential requests and synchronous
  // JetStream publishes. Named figures are each their own median.
  std::map<std::string, Result> results;
  for (auto& [scenario, list] : runs) {
    const bool by_throughput = (absl::StrContains(scenario, "publish") &&
                                !absl::EndsWith(scenario, "js_publish_sync")) ||
                               scenario == "rpc_async_64" ||
                               absl::EndsWith(scenario, "js_consume") ||
                               absl::StartsWith(scenario, "overhead_");
    std::sort(list.begin(), list.end(),
              [by_throughput](const Result& a, const Result& b) {
                return by_throughput ? a.ops_per_s < b.ops_per_s
                                     : a.p50_us < b.p50_us;
              });
    Result median = list[list.size() / 2];
    for (auto& [key, value] : median.figures) {
      std::vector<double> values;
      for (const Result& run : list) values.push_back(run.figures.at(key));
      std::sort(values.begin(), values.end());
      value = values[values.size() / 2];
    }
    results[scenario] = std::move(median);
  }
  const int payload_bytes = static_cast<int>(cfg.payload.size());
  for (const std::string& scenario : all) {
    auto found = results.find(scenario);
    if (found == results.end()) continue;
    const Result& r = found->second;
    // Ratios against the raw baselines measured in the same run.
    std::map<std::string, double> extra;
    auto ratio = [&](const std::string& base, const char* key,
                     double Result::*f) {
      auto it = results.find(base);
      if (it != results.end() && it->second.*f > 0) {
        extra[absl::StrCat(key, "_vs_", base)] = r.*f / it->second.*f;
      }
    };
    if (scenario == "gateway_request") {
      ratio("raw_request_asap", "p50_ratio", &Result::p50_us);
      ratio("raw_request_default", "p50_ratio", &Result::p50_us);
    }
    // What spans cost on the wire: against the same calls or publishes
    // without a sink, in the same run.
    if (scenario == "gateway_request_traced") {
      ratio("gateway_request", "p50_ratio", &Result::p50_us);
      ratio("gateway_request", "p99_ratio", &Result::p99_us);
      auto base = results.find("gateway_request");
      if (base != results.end()) {
        extra["p50_delta_us_vs_gateway_request"] =
            r.p50_us - base->second.p50_us;
      }
    }
    if (scenario == "gateway_publish_traced") {
      ratio("gateway_publish", "ops_ratio", &Result::ops_per_s);
      auto base = results.find("gateway_publish");
      if (base != results.end() && r.ops_per_s > 0 &&
          base->second.ops_per_s > 0) {
        extra["ns_per_msg_delta_vs_gateway_publish"] =
            1e9 / r.ops_per_s - 1e9 / base->second.ops_per_s;
      }
    }
    if (scenario == "rpc_sync") {
      // What the typed layer costs over raw nats.c, and over the untyped
      // gateway it is built on.
      ratio("raw_request_asap", "p50", &Result::p50_us);
      ratio("raw_request_asap", "p99", &Result::p99_us);
      ratio("gateway_request", "p50", &Result::p50_us);
      ratio("gateway_request", "p99", &Result::p99_us);
    }
    if (scenario == "rpc_async_64") {
      auto sync = results.find("rpc_sync");
      if (sync != results.end() && sync->second.ops_per_s > 0) {
        extra["async_vs_sync"] = r.ops_per_s / sync->second.ops_per_s;
      }
    }
    if (scenario == "gateway_publish") {
      ratio("raw_publish", "ops_ratio", &Result::ops_per_s);
      ratio("raw_publish_headers", "ops_ratio", &Result::ops_per_s);
    }
    if (scenario == "js_publish_sync") {
      ratio("raw_js_publish_sync", "p50", &Result::p50_us);
      ratio("raw_js_publish_sync", "p99", &Result::p99_us);
    }
    if (scenario == "js_publish_async") {
      ratio("raw_js_publish_async", "ops_ratio", &Result::ops_per_s);
    }
    if (scenario == "js_consume") {
      ratio("raw_js_consume", "ops_ratio", &Result::ops_per_s);
    }
    Print(r, payload_bytes, rounds, extra);
  }
  return 0;
}

}  // namespace
}  // namespace natsgw::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Benchmarks natsgw against raw nats.c on a private nats-server; prints "
      "one JSON object per scenario.");
  absl::ParseCommandLine(argc, argv);
  return natsgw::bench::Run();
}
