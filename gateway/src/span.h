// Recording spans for a SpanSink (natsgw/span_sink.h) on natsgw's message
// paths, and the attribute helpers those paths share.
//
// The message paths create a Span only when spans are wanted
// (SpanWanted: a sink is set and the trace is sampled); otherwise they hold
// an inert default-constructed Span, which owns nothing, allocates nothing
// and ignores every call, so a connection without a sink pays a pointer
// check per message.
//
// Thread-safety: a Span is used by one thread at a time (it may be handed
// from thread to thread, e.g. from a caller to the reply thread); the sink
// it reports to is thread-safe by contract.
#ifndef NATSGW_GATEWAY_SRC_SPAN_H_
#define NATSGW_GATEWAY_SRC_SPAN_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "natsgw/span_sink.h"
#include "natsgw/trace_context.h"

namespace natsgw::internal {

// Whether a span is to be recorded for an operation of `trace`.
inline bool SpanWanted(const SpanSink* sink, const TraceContext& trace) {
  return sink != nullptr && trace.sampled();
}

class Span {
 public:
  // Inert.
  Span() = default;

  // A span with its own context `context` (trace ID, span ID, flags) and
  // parent `parent` (unset: a root span), started at `start`. Inert unless
  // SpanWanted(sink, context). The sink hears of it only at ReportStart().
  static Span Start(const std::shared_ptr<SpanSink>& sink, SpanKind kind,
                    std::string name, const TraceContext& context,
                    std::optional<TraceContext::SpanId> parent,
                    absl::Time start = absl::Now());

  Span(Span&& other) noexcept = default;
  Span& operator=(Span&& other) noexcept;
  // Ends the span (End()) if it has not ended.
  ~Span();

  bool recording() const { return data_ != nullptr; }
  // This span's context and name. Recording spans only.
  const TraceContext& context() const { return data_->context; }
  const std::string& name() const { return data_->name; }

  // A span of the same sink, child of this one, with context `context`
  // (normally context().Child()). Inert if this span is.
  Span StartChild(SpanKind kind, std::string name, const TraceContext& context,
                  absl::Time start = absl::Now()) const;

  // Calls the sink's OnStart with what is set so far.
  void ReportStart();

  void SetString(absl::string_view key, absl::string_view value);
  void SetInt(absl::string_view key, int64_t value);
  void SetBool(absl::string_view key, bool value);
  void AddLink(const TraceContext& link);
  // The outcome: status code and message; error.type on failure.
  void SetStatus(const absl::Status& status);

  // Sets the end time and reports the span to the sink's OnEnd; later calls
  // do nothing. The overload without a time reads the clock only for a
  // recording span: inert spans end on every message path.
  void End();
  void End(absl::Time end);

 private:
  std::shared_ptr<SpanSink> sink_;
  std::unique_ptr<SpanData> data_;
};

// Whether `subject` is a reply inbox ("_INBOX." prefix): never a span name
// or destination name.
bool IsInboxSubject(absl::string_view subject);

// "<operation> <destination>": `destination_template` if set, else
// `subject`, else (an inbox) the operation alone.
std::string MessagingSpanName(absl::string_view operation,
                              absl::string_view subject,
                              absl::string_view destination_template);

// messaging.system, messaging.operation.type / .name and the destination
// attributes (name, template, temporary) of a span about `subject`.
void SetMessagingAttributes(Span& span, absl::string_view operation_type,
                            absl::string_view operation_name,
                            absl::string_view subject,
                            absl::string_view destination_template);

// rpc.system.name and rpc.method.
void SetRpcAttributes(Span& span, absl::string_view method);

// server.address and server.port from a "nats://host:port" URL (nothing for
// an empty or unparsable one).
void SetServerAttributes(Span& span, absl::string_view url);

// The span's status, plus rpc.status_code when `rpc` (RPC spans carry the
// code even on success).
void SetOutcome(Span& span, const absl::Status& status, bool rpc);

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_SPAN_H_
