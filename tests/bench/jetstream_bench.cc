// natsgw-bench: the JetStream scenarios. Each on a stream of its own (file
// storage, one replica, the same configuration for natsgw and raw nats.c),
// created empty for every run and deleted after it; --js_requests and
// --js_messages size them. Raw connections use natsOptions_SetSendAsap (on
// loopback faster than nats.c's buffered default in all three, and what natsgw
// uses for JetStream):
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
#include "bench_common.h"
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

namespace natsgw::bench {
namespace {

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
  options.prefetch = cfg.js_prefetch;

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

}  // namespace

std::vector<Scenario> JetStreamScenarios() {
  using F = Comparison::Figure;
  return {
      {"raw_js_publish_sync", Pick::kP50, false, {}, RawJsPublishSync},
      {"js_publish_sync",
       Pick::kP50,
       false,
       {{F::kP50, "raw_js_publish_sync"}, {F::kP99, "raw_js_publish_sync"}},
       JsPublishSync},
      {"raw_js_publish_async", Pick::kThroughput, false, {}, RawJsPublishAsync},
      {"js_publish_async",
       Pick::kThroughput,
       false,
       {{F::kOpsPerS, "raw_js_publish_async"}},
       JsPublishAsync},
      {"raw_js_consume", Pick::kThroughput, false, {}, RawJsConsume},
      {"js_consume",
       Pick::kThroughput,
       false,
       {{F::kOpsPerS, "raw_js_consume"}},
       JsConsume},
  };
}

}  // namespace natsgw::bench
