// natsgw-bench: the overhead scenarios: the per-message metric and trace work
// of natsgw's message paths (connection.cc), repeated in a tight loop in this
// process without NATS, --overhead_ops calls per figure. Each "*_ns" figure is
// the median batch of a measurement in nanoseconds per call ("*_bytes" are
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
#include "span.h"

namespace natsgw::bench {
namespace {

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
  return MicroBudget{std::max<int64_t>(1, cfg.overhead_ops),
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

}  // namespace

std::vector<Scenario> OverheadScenarios() {
  return {
      {"overhead_metrics", Pick::kThroughput, true, {}, OverheadMetrics},
      {"overhead_trace_context",
       Pick::kThroughput,
       true,
       {},
       OverheadTraceContext},
      {"overhead_spans", Pick::kThroughput, true, {}, OverheadSpans},
  };
}

}  // namespace natsgw::bench
