// natsgw/span_sink.h: the hook through which natsgw reports spans (timed,
// attributed operations of a trace), so that any tracing backend can record
// them, and the attribute names those spans use.
//
// With ConnectionOptions::span_sink set, natsgw reports one span per
// operation of every sampled trace (TraceContext::sampled()):
//
//   operation                       kind      name
//   Publish                         PRODUCER  "publish <destination>"
//   Request / RequestAsync          CLIENT    "<rpc.method>"
//     each retry or hedge           CLIENT    "<rpc.method>" (a child)
//   a served endpoint's request     SERVER    "<rpc.method>"
//   a subscription's message        CONSUMER  "process <destination>"
//   StreamPublisher publish         PRODUCER  "publish <destination>"
//     each attempt (a request)      CLIENT    "<destination>" (a child)
//   StreamConsumer delivery         CONSUMER  "process <filter subject or
//                                              stream name>"
//
// <destination> is the low-cardinality subject template: the metric_subject
// or subscription pattern when there is one, else the subject. A reply inbox
// never appears in a span name or in messaging.destination.name (a send to an
// inbox is named "publish" and marked messaging.destination.temporary).
// rpc.method is RequestOptions::rpc_method (the typed client sets
// "<package.Service>/<Method>"), else the request's subject template.
//
// Parentage: the message on the wire carries the span's own context, so the
// span of the side that receives it is a child of the sender's span (and, for
// messaging CONSUMER spans, also links to it). A handler runs with its SERVER
// or CONSUMER span as the current trace, so what it sends is a child of that.
// A flow that starts inside natsgw (no current trace) starts a root span.
//
// A minimal sink (an adapter to another tracer looks the same):
//
//   class PrintingSink : public natsgw::SpanSink {
//    public:
//     void OnEnd(const natsgw::SpanData& span) override {
//       std::lock_guard<std::mutex> lock(mu_);
//       std::cout << span.name << " " << span.context.TraceIdHex() << " "
//                 << absl::FormatDuration(span.end - span.start) << "\n";
//     }
//    private:
//     std::mutex mu_;
//   };
//   options.span_sink = std::make_shared<PrintingSink>();
//
// natsgw/json_span_exporter.h is a ready-made sink writing JSON lines.
//
// Thread-safety: SpanData is a value type. A SpanSink is called concurrently
// from natsgw's threads (callers' threads, delivery threads, task-queue
// workers, the reply and timer threads): it must be thread-safe, must not
// block for long (the message path waits for it), must not throw, and must
// outlive every Connection it is given to.
#ifndef NATSGW_SPAN_SINK_H_
#define NATSGW_SPAN_SINK_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "natsgw/trace_context.h"

namespace natsgw {

// OpenTelemetry span kinds.
enum class SpanKind { kInternal, kClient, kServer, kProducer, kConsumer };

// "internal", "client", "server", "producer" or "consumer".
absl::string_view SpanKindName(SpanKind kind);

// An attribute's value; integers are held as int64_t.
using SpanAttributeValue = std::variant<std::string, int64_t, double, bool>;

// One span as natsgw reports it.
struct SpanData {
  // Low-cardinality name (see the file comment): never a trace ID, message
  // ID, inbox or other per-message value.
  std::string name;
  SpanKind kind = SpanKind::kInternal;
  // This span's own context: trace ID, span ID, flags and tracestate.
  TraceContext context;
  // The span this one is a child of; unset for the root span of a trace.
  std::optional<TraceContext::SpanId> parent_span_id;
  // Wall-clock start and end (end is InfinitePast() in OnStart).
  absl::Time start = absl::InfinitePast();
  absl::Time end = absl::InfinitePast();
  // The operation's outcome; kOk unless it failed.
  absl::StatusCode status_code = absl::StatusCode::kOk;
  std::string status_message;
  // In the order set; keys are the span_attributes constants below.
  std::vector<std::pair<std::string, SpanAttributeValue>> attributes;
  // Related contexts that are not the parent (a consumer's link to the
  // producer's context).
  std::vector<TraceContext> links;

  // The value of attribute `key`, or null.
  const SpanAttributeValue* Attribute(absl::string_view key) const;
};

// Receives natsgw's spans. See the file comment for the threads, the
// contract and an example.
class SpanSink {
 public:
  virtual ~SpanSink() = default;

  // A span has started (name, kind, context, parent, start and the
  // attributes known so far are set). Optional; most sinks only need OnEnd.
  virtual void OnStart(const SpanData& span) { (void)span; }

  // A span has ended; `span` is complete. Called exactly once per span, on
  // the thread that ended the operation. The reference is valid only during
  // the call: copy what is kept.
  virtual void OnEnd(const SpanData& span) = 0;
};

// Attribute names: the OpenTelemetry messaging and RPC semantic conventions
// (messaging.*, rpc.*, error.type, server.*), plus natsgw's own under
// messaging.nats.*.
namespace span_attributes {

// "nats" on every span.
inline constexpr absl::string_view kMessagingSystem = "messaging.system";
inline constexpr absl::string_view kMessagingSystemNats = "nats";
// "send" (PRODUCER, CLIENT) or "process" (SERVER, CONSUMER).
inline constexpr absl::string_view kMessagingOperationType =
    "messaging.operation.type";
// "publish", "request" or "process".
inline constexpr absl::string_view kMessagingOperationName =
    "messaging.operation.name";
// The concrete subject; never set for an inbox.
inline constexpr absl::string_view kMessagingDestinationName =
    "messaging.destination.name";
// The subject template: metric_subject or the subscription pattern.
inline constexpr absl::string_view kMessagingDestinationTemplate =
    "messaging.destination.template";
// true when the subject is a reply inbox ("_INBOX." prefix).
inline constexpr absl::string_view kMessagingDestinationTemporary =
    "messaging.destination.temporary";
// The queue group of a subscription or endpoint; the durable consumer of a
// StreamConsumer.
inline constexpr absl::string_view kMessagingConsumerGroupName =
    "messaging.consumer.group.name";
// Nats-Msg-Id.
inline constexpr absl::string_view kMessagingMessageId = "messaging.message.id";
// Payload bytes (headers excluded).
inline constexpr absl::string_view kMessagingMessageBodySize =
    "messaging.message.body.size";
// ConnectionOptions::name, when set.
inline constexpr absl::string_view kMessagingClientId = "messaging.client.id";

// "nats" on request (CLIENT) and endpoint (SERVER) spans.
inline constexpr absl::string_view kRpcSystemName = "rpc.system.name";
// "<package.Service>/<Method>" from the typed client, else the subject
// template.
inline constexpr absl::string_view kRpcMethod = "rpc.method";
// The call's canonical status code name ("OK", "DEADLINE_EXCEEDED", ...).
inline constexpr absl::string_view kRpcStatusCode = "rpc.status_code";
// On failure only: the canonical status code name.
inline constexpr absl::string_view kErrorType = "error.type";
// The NATS server a sending span's connection is connected to.
inline constexpr absl::string_view kServerAddress = "server.address";
inline constexpr absl::string_view kServerPort = "server.port";

// natsgw-specific.
// A request's attempts in all (CLIENT call span), and the number of this
// attempt (2, 3, ... on a retry or hedge span; the first attempt is the call
// span itself).
inline constexpr absl::string_view kNatsRequestAttempts =
    "messaging.nats.request.attempts";
inline constexpr absl::string_view kNatsRequestAttempt =
    "messaging.nats.request.attempt";
// true on an attempt span that is a hedge (a copy sent while the previous
// attempt was still unanswered) rather than a retry.
inline constexpr absl::string_view kNatsRequestHedge =
    "messaging.nats.request.hedge";
// SERVER spans: "handled", "shed" (over max_in_flight), "expired" (deadline
// passed before handling) or "discarded" (endpoint closing).
inline constexpr absl::string_view kNatsRequestOutcome =
    "messaging.nats.request.outcome";
// true when the received message had no valid traceparent and the span
// starts a new trace.
inline constexpr absl::string_view kNatsTraceReplaced =
    "messaging.nats.trace_replaced";
// JetStream: the stream, the durable consumer, the stream sequence, the
// delivery count (1 on the first delivery), a publish's attempts, whether
// the stream had the message already, and a delivery's outcome ("ack",
// "nak", "term", "dead_letter" or "skipped_duplicate").
inline constexpr absl::string_view kNatsJetStreamStream =
    "messaging.nats.jetstream.stream";
inline constexpr absl::string_view kNatsJetStreamConsumer =
    "messaging.nats.jetstream.consumer";
inline constexpr absl::string_view kNatsJetStreamSequence =
    "messaging.nats.jetstream.sequence";
inline constexpr absl::string_view kNatsJetStreamDeliveryCount =
    "messaging.nats.jetstream.delivery_count";
inline constexpr absl::string_view kNatsJetStreamAttempts =
    "messaging.nats.jetstream.attempts";
inline constexpr absl::string_view kNatsJetStreamDuplicate =
    "messaging.nats.jetstream.duplicate";
inline constexpr absl::string_view kNatsJetStreamOutcome =
    "messaging.nats.jetstream.outcome";

}  // namespace span_attributes
}  // namespace natsgw

#endif  // NATSGW_SPAN_SINK_H_
