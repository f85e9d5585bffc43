// natsgw/send_options.h: per-call options for Connection::Publish and
// Connection::Request(Async), and what a send reports back.
//
//   natsgw::PublishOptions opts;
//   opts.headers.Add("Tenant", "acme");
//   opts.message_id = "order-1234-created";   // deterministic, for dedup
//   absl::StatusOr<natsgw::SendInfo> sent =
//       conn->Publish(subject, bytes, opts);
//   if (sent.ok()) std::cout << sent->trace.TraceIdHex();
//
// Thread-safety: value types.
#ifndef NATSGW_SEND_OPTIONS_H_
#define NATSGW_SEND_OPTIONS_H_

#include <optional>
#include <string>

#include "absl/time/time.h"
#include "natsgw/headers.h"
#include "natsgw/message_id.h"
#include "natsgw/retry_policy.h"
#include "natsgw/trace_context.h"

namespace natsgw {

// Options of one Publish or Request.
struct SendOptions {
  // Application headers. natsgw adds its own (natsgw/wire_headers.h); setting
  // one of those here is INVALID_ARGUMENT.
  Headers headers;
  // Trace to continue. Default: the calling thread's current trace
  // (CurrentTraceContext()), or a new trace if there is none. The message
  // carries a child of it (same trace ID, new span ID), and the send's span
  // (natsgw/span_sink.h) names its span ID as parent.
  std::optional<TraceContext> trace;
  // Set when `trace` is a new root made only to know the trace ID before
  // sending (e.g. with NewRootTrace), with no span of the caller's behind
  // its span ID: the send's span is then reported as the trace's root span
  // (no parent) instead of a child of a span nobody reports. The message
  // still carries a child of `trace`.
  bool trace_is_new_root = false;
  // Nats-Msg-Id to send. Default: a new random ID (NewMessageId()).
  std::optional<std::string> message_id;
  // Label used for this send in metrics instead of the literal subject. Set it
  // when subjects embed IDs ("orders.1234.created" -> "orders.*.created") to
  // keep label cardinality bounded.
  std::string metric_subject;
  // Publish only: the subject receivers are asked to reply to, for a request
  // made by hand whose answers the caller collects on a subscription of its
  // own (e.g. a scatter-gather over $SRV.PING that every instance answers).
  // Empty: no reply subject. It must be a valid publish subject
  // (natsgw/validation.h), else INVALID_ARGUMENT and nothing is sent.
  // Request and RequestAsync refuse a non-empty reply_to with
  // INVALID_ARGUMENT: their reply comes to natsgw's own inbox.
  std::string reply_to;
};

// Options of one Publish.
using PublishOptions = SendOptions;

// Options of one Request or RequestAsync.
struct RequestOptions : SendOptions {
  // Attempts after a retryable failure (off by default: only for idempotent
  // operations). See natsgw/retry_policy.h.
  RetryPolicy retry;
  // Extra copies of a slow request (off by default). See retry_policy.h.
  HedgingPolicy hedging;
  // What the call is named in its CLIENT span: the span name and rpc.method
  // (natsgw/span_sink.h). The typed client sets "<package.Service>/<Method>".
  // Default: metric_subject, else the subject. Keep it low-cardinality.
  std::string rpc_method;
};

// What natsgw stamped on a message it sent.
struct SendInfo {
  // The traceparent the message carries.
  TraceContext trace;
  MessageId message_id;
  absl::Time sent_at;
};

}  // namespace natsgw

#endif  // NATSGW_SEND_OPTIONS_H_
