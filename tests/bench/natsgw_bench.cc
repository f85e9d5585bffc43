// natsgw-bench: natsgw against raw nats.c (and gRPC C++ where it is
// installed), measured in the same run on the same nats-server, printed as
// one JSON object per line; optionally also as a Markdown table and an SVG
// plot of latency percentiles (--markdown, --plot).
//
//   build/bin/natsgw-bench                      # every scenario, 64 B
//   build/bin/natsgw-bench --payload=64,1KiB,16KiB --markdown=r.md --plot=r.svg
//   build/bin/natsgw-bench --scenarios=raw_request_asap,gateway_request
//   build/bin/natsgw-bench --nats_url=nats://127.0.0.1:4222   # existing server
//
// Core scenarios (this file):
//   raw_request_default  nats.c natsConnection_Request, default options on
//                        requester and responder (the responder's reply waits
//                        for nats.c's 1 ms flusher)
//   raw_request_asap     the same with natsOptions_SetSendAsap on both
//   gateway_request      natsgw Connection::Request against Connection::Serve
//                        (separate connections, as two services would be)
//   gateway_serve        natsgw's serving side alone: a raw nats.c requester
//                        (SendAsap) against Connection::Serve answering "ok"
//                        (its allocation figures are the handle and reply
//                        paths')
//   gateway_request_traced  the same with a counting span sink on both
//                        connections (a CLIENT and a SERVER span per call)
//   rpc_sync             the typed layer: natsgw-gen's EchoClient::Echo (one
//                        call at a time) against an EchoServiceBase served on
//                        another Connection; the request and reply are
//                        FlatBuffers EchoRequest/EchoReply whose payload field
//                        holds --payload bytes (the wire message is ~50 bytes
//                        larger)
//   rpc_async_N          the same service, called through the callback form of
//                        EchoClient::EchoAsync with N (1, 16, 64, 256) calls in
//                        flight: each completion starts the next call, up to
//                        --async_calls. Latency is per call (queueing
//                        included); throughput is the point
//   raw_publish          nats.c natsConnection_Publish, default options
//                        (buffered), then a flush: no headers at all
//   raw_publish_same_bytes  nats.c natsConnection_PublishMsg with exactly the
//                        headers natsgw's publish sends (keys and values
//                        copied from one natsgw message, then fixed): the same
//                        bytes on the wire, so the difference to
//                        gateway_publish is natsgw's own work
//   gateway_publish      natsgw Connection::Publish (trace, ID, timestamp,
//                        metrics on every message), then Flush
//   gateway_publish_traced  the same with a span sink that counts and
//                        discards (one PRODUCER span per message)
//   gateway_publish_immediate  gateway_publish with
//                        ConnectionOptions::batch_publishes false (one write
//                        per message): what the low-latency setting costs
//                        bulk publishing
//   raw_pubsub_e2e       end-to-end latency, one message at a time: nats.c
//                        publish (default options) to a subscriber on another
//                        connection; from the publish call to the subscriber's
//                        callback
//   raw_pubsub_e2e_asap  the same with natsOptions_SetSendAsap on the publisher
//   pubsub_e2e           natsgw Publish to a natsgw Subscribe handler on
//                        another Connection, default options (publishes
//                        batched on their own lane: see README "Latency and
//                        batching")
//   pubsub_e2e_immediate the same with ConnectionOptions::batch_publishes
//                        false on the publisher (every publish written at once)
// The JetStream, overhead, scaling and gRPC scenarios are described in their
// own files (jetstream_bench.cc, overhead_bench.cc, scaling_bench.cc,
// grpc_bench.cc).
//
// Scenarios run in --rounds interleaved rounds (so a noisy moment hits
// baseline and gateway alike), for each --payload size in turn; each reports
// its median round, by p50 for sequential calls, by throughput otherwise
// (Scenario::pick), with "rounds"; named figures are each their own median
// over the rounds. Ratios ("p50_vs_<baseline>", ...) compare a scenario with
// a baseline of the same run and payload size.
//
// Sequential request scenarios measure latency; publish scenarios measure
// throughput (their latency is the cost of one publish call). Every loop is
// bounded by a count and by --max_seconds.
#include <nats/nats.h>
#include <unistd.h>

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
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench_common.h"
#include "echo_bench.h"
#include "harness/nats_server.h"
#include "natsgw/connection.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/status_macros.h"
#include "report.h"

ABSL_FLAG(std::string, nats_url, "",
          "Use this NATS server instead of starting a private one");
ABSL_FLAG(std::string, scenarios, "",
          "Comma-separated scenarios to run (default: all)");
ABSL_FLAG(std::string, payload, "64",
          "Payload sizes, comma-separated: bytes, or with a KiB suffix "
          "(64,1KiB,16KiB); 'all' is 64,1KiB,16KiB. Every scenario runs with "
          "each size in turn");
ABSL_FLAG(int, requests, 5000, "Measured requests per request scenario");
ABSL_FLAG(int, publishes, 200000, "Messages per publish scenario");
ABSL_FLAG(int, async_calls, 20000, "Measured calls per rpc_async_* scenario");
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
ABSL_FLAG(std::string, markdown, "",
          "Also write the results as a Markdown table to this file");
ABSL_FLAG(std::string, plot, "",
          "Also write an SVG plot of latency percentiles to this file");

namespace natsgw::bench {
namespace {

void Print(const Result& r, int payload_bytes, int rounds) {
  std::string line = absl::StrFormat(
      "{\"scenario\": \"%s\", \"payload_bytes\": %d, \"ops\": %d, "
      "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
      "\"max_us\": %.1f, \"ops_per_s\": %.0f, \"rounds\": %d",
      r.scenario, payload_bytes, r.ops, r.p50_us, r.p90_us, r.p99_us, r.max_us,
      r.ops_per_s, rounds);
  for (const auto& [key, value] : r.figures) {
    absl::StrAppend(&line, absl::StrFormat(", \"%s\": %.3f", key, value));
  }
  absl::StrAppend(&line, "}\n");
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
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

// natsgw's serving side alone: a raw nats.c requester (SendAsap) against a
// natsgw Connection::Serve endpoint whose handler answers "ok" (short
// enough to need no allocation of its own), so that the allocation figures
// are natsgw's handle and reply paths (nats.c's requester allocates only C
// memory).
absl::StatusOr<Result> GatewayServe(const Config& cfg) {
  const std::string scenario = "gateway_serve";
  const std::string subject = absl::StrCat("bench.", scenario);
  NATSGW_ASSIGN_OR_RETURN(auto server, Gateway(cfg));
  NATSGW_ASSIGN_OR_RETURN(
      auto endpoint,
      server->Serve(subject, "q", [](const Message&) -> absl::StatusOr<Reply> {
        return Reply{"ok", {}};
      }));
  NATSGW_ASSIGN_OR_RETURN(auto requester,
                          RawConnection::Connect(cfg.url, /*send_asap=*/true));
  return Measure(scenario, cfg.warmup, cfg.requests, cfg.max, [&]() {
    natsMsg* reply = nullptr;
    natsStatus s = natsConnection_Request(
        &reply, requester->nc(), subject.c_str(), cfg.payload.data(),
        static_cast<int>(cfg.payload.size()), 5000);
    absl::Status status = Check(s, "request");
    if (reply != nullptr) {
      if (status.ok() && (natsMsg_GetDataLength(reply) != 2 ||
                          std::string(natsMsg_GetData(reply), 2) != "ok")) {
        status = absl::InternalError("gateway_serve: unexpected reply");
      }
      natsMsg_Destroy(reply);
    }
    return status;
  });
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

absl::StatusOr<Result> RpcSync(const Config& cfg) {
  NATSGW_ASSIGN_OR_RETURN(auto rig, StartEcho(cfg, "rpc_sync"));
  const echo::EchoClient& client = *rig->client;
  uint64_t tag = 0;
  return Measure("rpc_sync", cfg.warmup, cfg.requests, cfg.max, [&]() {
    ++tag;
    auto build = [&](flatbuffers::FlatBufferBuilder& fbb) {
      return BuildEcho(fbb, cfg.payload, tag);
    };
    return CheckEcho(client.Echo(build), cfg.payload.size(), tag);
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
      return absl::DeadlineExceededError(
          absl::StrCat("rpc_async_", in_flight, ": ", issued_ - completed_,
                       " calls did not complete"));
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
    const absl::Status status = CheckEcho(reply, payload_.size(), tag);
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

// rpc_async_<in_flight>.
absl::StatusOr<Result> RpcAsync(const Config& cfg, int in_flight) {
  const std::string scenario = absl::StrCat("rpc_async_", in_flight);
  NATSGW_ASSIGN_OR_RETURN(auto rig, StartEcho(cfg, scenario));
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
    NATSGW_RETURN_IF_ERROR(pipeline->Run(in_flight, drain, latencies, wall));
    if (!measured) latencies.clear();
  }
  return Summarize(scenario, latencies, wall);
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

// The headers natsgw's Publish puts on a message, as (key, value) pairs:
// read off one message it publishes, received by a raw subscriber.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
GatewayPublishHeaders(const Config& cfg) {
  const std::string subject = "bench.same_bytes.sample";
  NATSGW_ASSIGN_OR_RETURN(auto raw, RawConnection::Connect(cfg.url, false));
  natsSubscription* sub = nullptr;
  NATSGW_RETURN_IF_ERROR(
      Check(natsConnection_SubscribeSync(&sub, raw->nc(), subject.c_str()),
            "subscribe"));
  std::unique_ptr<natsSubscription, void (*)(natsSubscription*)> owned(
      sub, natsSubscription_Destroy);
  NATSGW_RETURN_IF_ERROR(
      Check(natsConnection_FlushTimeout(raw->nc(), 5000), "flush"));
  NATSGW_ASSIGN_OR_RETURN(auto conn, Gateway(cfg));
  NATSGW_RETURN_IF_ERROR(conn->Publish(subject, cfg.payload).status());
  NATSGW_RETURN_IF_ERROR(conn->Flush(absl::Seconds(5)));
  natsMsg* msg = nullptr;
  NATSGW_RETURN_IF_ERROR(
      Check(natsSubscription_NextMsg(&msg, sub, 5000), "receive"));
  std::unique_ptr<natsMsg, void (*)(natsMsg*)> received(msg, natsMsg_Destroy);
  const char** keys = nullptr;
  int count = 0;
  NATSGW_RETURN_IF_ERROR(
      Check(natsMsgHeader_Keys(msg, &keys, &count), "header keys"));
  std::vector<std::pair<std::string, std::string>> headers;
  for (int i = 0; i < count; ++i) {
    const char* value = nullptr;
    natsStatus s = natsMsgHeader_Get(msg, keys[i], &value);
    if (s != NATS_OK) {
      free(keys);
      return Check(s, "header value");
    }
    headers.emplace_back(keys[i], value);
  }
  free(keys);
  if (headers.empty()) {
    return absl::InternalError("a natsgw publish arrived without headers");
  }
  return headers;
}

absl::StatusOr<Result> RawPublishSameBytes(const Config& cfg) {
  const std::string scenario = "raw_publish_same_bytes";
  NATSGW_ASSIGN_OR_RETURN(auto headers, GatewayPublishHeaders(cfg));
  NATSGW_ASSIGN_OR_RETURN(auto pub, RawConnection::Connect(cfg.url, false));
  natsConnection* nc = pub->nc();
  // gateway_publish's subject (no one subscribes to it), so the wire bytes
  // match.
  const std::string subject = "bench.gateway_publish";
  auto op = [&]() {
    natsMsg* msg = nullptr;
    natsStatus s =
        natsMsg_Create(&msg, subject.c_str(), nullptr, cfg.payload.data(),
                       static_cast<int>(cfg.payload.size()));
    for (const auto& [key, value] : headers) {
      if (s == NATS_OK) s = natsMsgHeader_Set(msg, key.c_str(), value.c_str());
    }
    if (s == NATS_OK) s = natsConnection_PublishMsg(nc, msg);
    natsMsg_Destroy(msg);
    return Check(s, "publish");
  };
  NATSGW_ASSIGN_OR_RETURN(Result r, MeasurePublish(scenario, cfg, op, [nc] {
                            return Check(natsConnection_FlushTimeout(nc, 10000),
                                         "flush");
                          }));
  r.figures["headers"] = static_cast<double>(headers.size());
  return r;
}

// gateway_publish, or with `traced` gateway_publish_traced: the same
// publishes with a counting sink, checked afterwards to have had a span for
// every message.
// With `immediate`, gateway_publish_immediate: ConnectionOptions::
// batch_publishes false (every publish written at once), the cost of the
// low-latency choice for bulk publishing.
absl::StatusOr<Result> GatewayPublish(const Config& cfg, bool traced,
                                      bool immediate = false) {
  const std::string scenario = immediate ? "gateway_publish_immediate"
                               : traced  ? "gateway_publish_traced"
                                         : "gateway_publish";
  const std::string subject = absl::StrCat("bench.", scenario);
  std::shared_ptr<CountingSink> spans;
  if (traced) spans = std::make_shared<CountingSink>();
  ConnectionOptions options;
  options.servers = {cfg.url};
  options.span_sink = spans;
  options.batch_publishes = !immediate;
  NATSGW_ASSIGN_OR_RETURN(auto conn, Connection::Create(options));
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

// End-to-end pub->sub scenarios.

// Counts messages a subscriber received and lets the publisher wait for one.
//
// Thread-safety: thread-safe.
class Arrivals {
 public:
  void Arrived() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++count_;
    }
    cv_.notify_one();
  }
  // Waits until `n` messages arrived in all; false after `timeout`.
  bool WaitFor(int64_t n, absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [&] { return count_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t count_ = 0;  // Guarded by mu_.
};

// How long a pub->sub scenario waits for one message before it fails.
constexpr absl::Duration kArrivalTimeout = absl::Seconds(5);

// One message at a time: `publish` sends message number `n` (from 1),
// timed until `arrivals` counts it.
absl::StatusOr<Result> MeasureArrivals(
    const std::string& scenario, const Config& cfg, Arrivals& arrivals,
    const std::function<absl::Status()>& publish) {
  int64_t sent = 0;
  return Measure(scenario, cfg.warmup, cfg.requests, cfg.max, [&] {
    NATSGW_RETURN_IF_ERROR(publish());
    if (!arrivals.WaitFor(++sent, kArrivalTimeout)) {
      return absl::DeadlineExceededError(
          absl::StrCat(scenario, ": message ", sent, " did not arrive within ",
                       absl::FormatDuration(kArrivalTimeout)));
    }
    return absl::OkStatus();
  });
}

void OnRawArrival(natsConnection*, natsSubscription*, natsMsg* msg,
                  void* arrivals) {
  natsMsg_Destroy(msg);
  static_cast<Arrivals*>(arrivals)->Arrived();
}

// raw_pubsub_e2e, or with `asap` raw_pubsub_e2e_asap.
absl::StatusOr<Result> RawPubSub(const Config& cfg, bool asap) {
  const std::string scenario = asap ? "raw_pubsub_e2e_asap" : "raw_pubsub_e2e";
  const std::string subject = absl::StrCat("bench.", scenario);
  Arrivals arrivals;
  NATSGW_ASSIGN_OR_RETURN(auto receiver,
                          RawConnection::Connect(cfg.url, false));
  natsSubscription* sub = nullptr;
  NATSGW_RETURN_IF_ERROR(
      Check(natsConnection_Subscribe(&sub, receiver->nc(), subject.c_str(),
                                     &OnRawArrival, &arrivals),
            "subscribe"));
  // Unsubscribed (no callback after this) before `arrivals` goes.
  std::unique_ptr<natsSubscription, void (*)(natsSubscription*)> owned(
      sub, [](natsSubscription* s) {
        natsSubscription_Unsubscribe(s);
        natsSubscription_WaitForDrainCompletion(s, 1000);
        natsSubscription_Destroy(s);
      });
  NATSGW_RETURN_IF_ERROR(
      Check(natsConnection_FlushTimeout(receiver->nc(), 5000), "flush"));
  NATSGW_ASSIGN_OR_RETURN(auto sender, RawConnection::Connect(cfg.url, asap));
  return MeasureArrivals(scenario, cfg, arrivals, [&] {
    return Check(natsConnection_Publish(sender->nc(), subject.c_str(),
                                        cfg.payload.data(),
                                        static_cast<int>(cfg.payload.size())),
                 "publish");
  });
}

// pubsub_e2e, or with `immediate` pubsub_e2e_immediate.
absl::StatusOr<Result> GatewayPubSub(const Config& cfg, bool immediate) {
  const std::string scenario =
      immediate ? "pubsub_e2e_immediate" : "pubsub_e2e";
  const std::string subject = absl::StrCat("bench.", scenario);
  Arrivals arrivals;
  NATSGW_ASSIGN_OR_RETURN(auto receiver, Gateway(cfg));
  NATSGW_ASSIGN_OR_RETURN(
      auto subscription,
      receiver->Subscribe(subject, "",
                          [&arrivals](const Message&) { arrivals.Arrived(); }));
  NATSGW_RETURN_IF_ERROR(receiver->Flush(absl::Seconds(5)));
  ConnectionOptions options;
  options.servers = {cfg.url};
  options.batch_publishes = !immediate;
  NATSGW_ASSIGN_OR_RETURN(auto sender, Connection::Create(options));
  return MeasureArrivals(scenario, cfg, arrivals, [&] {
    return sender->Publish(subject, cfg.payload).status();
  });
}

}  // namespace

std::vector<Scenario> CoreScenarios() {
  using F = Comparison::Figure;
  std::vector<Scenario> list = {
      {"raw_request_default",
       Pick::kP50,
       false,
       {},
       [](const Config& c) {
         return RawRequest(c, "raw_request_default", false);
       }},
      {"raw_request_asap",
       Pick::kP50,
       false,
       {},
       [](const Config& c) { return RawRequest(c, "raw_request_asap", true); }},
      {"gateway_request",
       Pick::kP50,
       false,
       {{F::kP50, "raw_request_asap"},
        {F::kP99, "raw_request_asap"},
        {F::kP50, "raw_request_default"}},
       [](const Config& c) { return GatewayRequest(c, false); }},
      {"gateway_serve",
       Pick::kP50,
       false,
       {{F::kP50, "raw_request_asap"}},
       GatewayServe},
      {"gateway_request_traced",
       Pick::kP50,
       false,
       {{F::kP50, "gateway_request"}, {F::kP99, "gateway_request"}},
       [](const Config& c) { return GatewayRequest(c, true); }},
      {"rpc_sync",
       Pick::kP50,
       false,
       {{F::kP50, "raw_request_asap"},
        {F::kP99, "raw_request_asap"},
        {F::kP50, "raw_request_default"},
        {F::kP50, "gateway_request"},
        {F::kP50, "grpc_unary_sync"},
        {F::kP99, "grpc_unary_sync"}},
       RpcSync},
  };
  for (int in_flight : {1, 16, 64, 256}) {
    list.push_back(
        {absl::StrCat("rpc_async_", in_flight),
         Pick::kThroughput,
         false,
         {{F::kOpsPerS, "rpc_sync"},
          {F::kOpsPerS, "grpc_unary_async"},
          {F::kOpsPerS, "grpc_unary_async_best"}},
         [in_flight](const Config& c) { return RpcAsync(c, in_flight); }});
  }
  std::vector<Scenario> rest = {
      {"raw_publish", Pick::kThroughput, false, {}, RawPublish},
      {"raw_publish_same_bytes",
       Pick::kThroughput,
       false,
       {},
       RawPublishSameBytes},
      {"gateway_publish",
       Pick::kThroughput,
       false,
       {{F::kOpsPerS, "raw_publish_same_bytes"}, {F::kOpsPerS, "raw_publish"}},
       [](const Config& c) { return GatewayPublish(c, false); }},
      {"gateway_publish_traced",
       Pick::kThroughput,
       false,
       {{F::kOpsPerS, "gateway_publish"}},
       [](const Config& c) { return GatewayPublish(c, true); }},
      {"gateway_publish_immediate",
       Pick::kThroughput,
       false,
       {{F::kOpsPerS, "gateway_publish"}},
       [](const Config& c) { return GatewayPublish(c, false, true); }},
      {"raw_pubsub_e2e",
       Pick::kP50,
       false,
       {},
       [](const Config& c) { return RawPubSub(c, false); }},
      {"raw_pubsub_e2e_asap",
       Pick::kP50,
       false,
       {},
       [](const Config& c) { return RawPubSub(c, true); }},
      {"pubsub_e2e",
       Pick::kP50,
       false,
       {{F::kP50, "raw_pubsub_e2e"}},
       [](const Config& c) { return GatewayPubSub(c, false); }},
      {"pubsub_e2e_immediate",
       Pick::kP50,
       false,
       {{F::kP50, "raw_pubsub_e2e_asap"}},
       [](const Config& c) { return GatewayPubSub(c, true); }},
  };
  list.insert(list.end(), rest.begin(), rest.end());
  return list;
}

namespace {

// "64", "1KiB", "16KiB" (or "all") to byte counts.
absl::StatusOr<std::vector<int>> ParsePayloads(absl::string_view flag) {
  if (flag == "all") flag = "64,1KiB,16KiB";
  std::vector<int> sizes;
  for (absl::string_view item : absl::StrSplit(flag, ',', absl::SkipEmpty())) {
    item = absl::StripAsciiWhitespace(item);
    int scale = 1;
    if (absl::EndsWithIgnoreCase(item, "KiB")) {
      scale = 1024;
      item.remove_suffix(3);
    }
    int n = 0;
    if (!absl::SimpleAtoi(item, &n) || n < 0 || n > (64 << 20) / scale) {
      return absl::InvalidArgumentError(
          absl::StrCat("--payload: '", item,
                       "' is not a size in bytes (0 to 64 MiB; "
                       "plain or with a KiB suffix)"));
    }
    sizes.push_back(n * scale);
  }
  if (sizes.empty()) {
    return absl::InvalidArgumentError("--payload: no size given");
  }
  return sizes;
}

double FigureOf(const Result& r, Comparison::Figure f) {
  switch (f) {
    case Comparison::Figure::kP50:
      return r.p50_us;
    case Comparison::Figure::kP99:
      return r.p99_us;
    case Comparison::Figure::kOpsPerS:
      return r.ops_per_s;
  }
  return 0;
}

const char* FigureName(Comparison::Figure f) {
  switch (f) {
    case Comparison::Figure::kP50:
      return "p50";
    case Comparison::Figure::kP99:
      return "p99";
    case Comparison::Figure::kOpsPerS:
      return "ops";
  }
  return "?";
}

// The median of `rounds` by the scenario's pick; each named figure its own
// median.
Result MedianRound(const Scenario& scenario, std::vector<Result> rounds) {
  const bool by_throughput = scenario.pick == Pick::kThroughput;
  std::sort(rounds.begin(), rounds.end(),
            [by_throughput](const Result& a, const Result& b) {
              return by_throughput ? a.ops_per_s < b.ops_per_s
                                   : a.p50_us < b.p50_us;
            });
  Result median = rounds[rounds.size() / 2];
  for (auto& [key, value] : median.figures) {
    std::vector<double> values;
    for (const Result& run : rounds) {
      auto it = run.figures.find(key);
      if (it != run.figures.end()) values.push_back(it->second);
    }
    std::sort(values.begin(), values.end());
    value = values[values.size() / 2];
  }
  return median;
}

int Run(int argc, char** argv) {
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
  absl::StatusOr<std::vector<int>> payloads =
      ParsePayloads(absl::GetFlag(FLAGS_payload));
  if (!payloads.ok()) {
    std::fprintf(stderr, "natsgw-bench: %s\n",
                 std::string(payloads.status().message()).c_str());
    return 2;
  }
  cfg.requests = absl::GetFlag(FLAGS_requests);
  cfg.publishes = absl::GetFlag(FLAGS_publishes);
  cfg.async_calls = absl::GetFlag(FLAGS_async_calls);
  cfg.js_requests = absl::GetFlag(FLAGS_js_requests);
  cfg.js_messages = absl::GetFlag(FLAGS_js_messages);
  cfg.js_prefetch = absl::GetFlag(FLAGS_js_prefetch);
  cfg.overhead_ops = std::max(1, absl::GetFlag(FLAGS_overhead_ops));
  cfg.warmup = absl::GetFlag(FLAGS_warmup);
  cfg.max = absl::Seconds(absl::GetFlag(FLAGS_max_seconds));

  std::vector<Scenario> all;
  for (std::vector<Scenario> list : {CoreScenarios(), JetStreamScenarios(),
#ifdef NATSGW_BENCH_HAVE_GRPC
                                     GrpcScenarios(),
#endif
                                     ScalingScenarios(), OverheadScenarios()}) {
    for (Scenario& s : list) all.push_back(std::move(s));
  }
  auto known = [&](const std::string& name) {
    return std::any_of(all.begin(), all.end(),
                       [&](const Scenario& s) { return s.name == name; });
  };
  std::vector<std::string> chosen;
  if (!absl::GetFlag(FLAGS_scenarios).empty()) {
    chosen =
        absl::StrSplit(absl::GetFlag(FLAGS_scenarios), ',', absl::SkipEmpty());
    for (const std::string& s : chosen) {
      if (!known(s)) {
        std::vector<std::string> names;
        for (const Scenario& k : all) names.push_back(k.name);
        std::fprintf(stderr,
                     "natsgw-bench: unknown scenario '%s' (known: %s)\n",
                     s.c_str(), absl::StrJoin(names, ", ").c_str());
        return 2;
      }
    }
  }
  auto wanted = [&](const Scenario& s) {
    return chosen.empty() ||
           std::find(chosen.begin(), chosen.end(), s.name) != chosen.end();
  };

  const int rounds = std::max(1, absl::GetFlag(FLAGS_rounds));
  std::vector<SizeResults> by_size;
  for (size_t p = 0; p < payloads->size(); ++p) {
    cfg.payload = std::string((*payloads)[p], 'x');
    std::map<std::string, std::vector<Result>> runs;
    for (int round = 0; round < rounds; ++round) {
      for (const Scenario& scenario : all) {
        if (!wanted(scenario) || (scenario.payload_independent && p > 0)) {
          continue;
        }
        absl::StatusOr<Result> r = scenario.run(cfg);
        if (!r.ok()) {
          std::fprintf(stderr, "natsgw-bench: %s (payload %d B): %s\n",
                       scenario.name.c_str(), (*payloads)[p],
                       r.status().ToString().c_str());
          return 1;
        }
        runs[scenario.name].push_back(*std::move(r));
      }
    }
    std::map<std::string, Result> medians;
    for (const Scenario& scenario : all) {
      auto it = runs.find(scenario.name);
      if (it != runs.end()) {
        medians[scenario.name] = MedianRound(scenario, std::move(it->second));
      }
    }
    SizeResults size{(*payloads)[p], {}};
    for (const Scenario& scenario : all) {
      auto it = medians.find(scenario.name);
      if (it == medians.end()) continue;
      Result r = it->second;
      // Ratios against baselines measured in the same run.
      for (const Comparison& c : scenario.compare) {
        auto base = medians.find(c.baseline);
        if (base == medians.end() || FigureOf(base->second, c.figure) <= 0) {
          continue;
        }
        r.figures[absl::StrCat(FigureName(c.figure), "_vs_", c.baseline)] =
            FigureOf(r, c.figure) / FigureOf(base->second, c.figure);
      }
      Print(r, size.payload_bytes, rounds);
      size.results.push_back(std::move(r));
    }
    by_size.push_back(std::move(size));
  }

  const RunInfo info = DescribeRun(argc, argv, rounds);
  for (const auto& [path, write] :
       {std::pair{absl::GetFlag(FLAGS_markdown), &WriteMarkdown},
        std::pair{absl::GetFlag(FLAGS_plot), &WriteLatencyPlot}}) {
    if (path.empty()) continue;
    if (absl::Status s = write(by_size, info, path); !s.ok()) {
      std::fprintf(stderr, "natsgw-bench: %s\n", s.ToString().c_str());
      return 1;
    }
  }

  return 0;
}

}  // namespace
}  // namespace natsgw::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Benchmarks natsgw against raw nats.c (and gRPC C++ where built) on a "
      "private nats-server; prints one JSON object per scenario and payload "
      "size.");
  // --help lists natsgw-bench's own flags (Abseil's default filter expects
  // a source file named after the binary, natsgw-bench.cc).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "tests/bench/");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  absl::ParseCommandLine(argc, argv);
  return natsgw::bench::Run(argc, argv);
}
