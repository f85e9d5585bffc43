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
// Scenarios run in --rounds interleaved rounds (so a noisy moment hits
// baseline and gateway alike); each reports its median round, by p50 for
// sequential request scenarios and the synchronous JetStream publishes, by
// throughput for the other publish scenarios, rpc_async_64 and the consume
// scenarios, with "rounds".
//
// Request scenarios other than rpc_async_64, and the synchronous JetStream
// publishes, are sequential (one call in flight): latency is the point. The
// other publish scenarios measure throughput; their latency is the cost of
// one publish call. Every loop is bounded by a count
// and by --max_seconds.
#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
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
#include "harness/nats_server.h"
#include "natsgw/connection.h"
#include "natsgw/jetstream.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/status_macros.h"
#include "natsgw/stream_config.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/stream_publisher.h"

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
           const std::map<std::string, double>& extra = {}) {
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

absl::StatusOr<std::unique_ptr<Connection>> Gateway(const Config& cfg) {
  ConnectionOptions options;
  options.servers = {cfg.url};
  return Connection::Create(options);
}

absl::StatusOr<Result> GatewayRequest(const Config& cfg) {
  NATSGW_ASSIGN_OR_RETURN(auto server, Gateway(cfg));
  NATSGW_ASSIGN_OR_RETURN(
      auto endpoint,
      server->Serve("bench.gateway_request", "q",
                    [](const Message& m) -> absl::StatusOr<Reply> {
                      return Reply{m.data, {}};
                    }));
  NATSGW_ASSIGN_OR_RETURN(auto client, Gateway(cfg));
  return Measure("gateway_request", cfg.warmup, cfg.requests, cfg.max, [&]() {
    return client
        ->Request("bench.gateway_request", cfg.payload, absl::Seconds(5))
        .status();
  });
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

absl::StatusOr<Result> GatewayPublish(const Config& cfg) {
  NATSGW_ASSIGN_OR_RETURN(auto conn, Gateway(cfg));
  auto op = [&]() {
    return conn->Publish("bench.gateway_publish", cfg.payload).status();
  };
  return MeasurePublish("gateway_publish", cfg, op,
                        [&conn] { return conn->Flush(absl::Seconds(10)); });
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

  const std::vector<std::string> all = {
      "raw_request_default",  "raw_request_asap",
      "gateway_request",      "rpc_sync",
      "rpc_async_64",         "raw_publish",
      "raw_publish_headers",  "gateway_publish",
      "raw_js_publish_sync",  "js_publish_sync",
      "raw_js_publish_async", "js_publish_async",
      "raw_js_consume",       "js_consume"};
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
      if (scenario == "gateway_request") r = GatewayRequest(cfg);
      if (scenario == "rpc_sync") r = RpcSync(cfg);
      if (scenario == "rpc_async_64") r = RpcAsync(cfg);
      if (scenario == "raw_publish") r = RawPublish(cfg);
      if (scenario == "raw_publish_headers") r = RawPublishHeaders(cfg);
      if (scenario == "gateway_publish") r = GatewayPublish(cfg);
      if (scenario == "raw_js_publish_sync") r = RawJsPublishSync(cfg);
      if (scenario == "js_publish_sync") r = JsPublishSync(cfg);
      if (scenario == "raw_js_publish_async") r = RawJsPublishAsync(cfg);
      if (scenario == "js_publish_async") r = JsPublishAsync(cfg);
      if (scenario == "raw_js_consume") r = RawJsConsume(cfg);
      if (scenario == "js_consume") r = JsConsume(cfg);
      if (!r.ok()) {
        std::fprintf(stderr, "natsgw-bench: %s: %s\n", scenario.c_str(),
                     r.status().ToString().c_str());
        return 1;
      }
      runs[scenario].push_back(*r);
    }
  }

  // The median round of each scenario: by throughput where throughput is
  // the point (publishes, pipelined calls, consumers), by p50 for sequential
  // requests and synchronous JetStream publishes.
  std::map<std::string, Result> results;
  for (auto& [scenario, list] : runs) {
    const bool by_throughput = (absl::StrContains(scenario, "publish") &&
                                !absl::EndsWith(scenario, "js_publish_sync")) ||
                               scenario == "rpc_async_64" ||
                               absl::EndsWith(scenario, "js_consume");
    std::sort(list.begin(), list.end(),
              [by_throughput](const Result& a, const Result& b) {
                return by_throughput ? a.ops_per_s < b.ops_per_s
                                     : a.p50_us < b.p50_us;
              });
    results[scenario] = list[list.size() / 2];
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
