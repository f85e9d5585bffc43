// natsgw/trace_context.h: W3C Trace Context (traceparent/tracestate) values
// and the per-thread "current trace" that outgoing messages inherit.
//
// Every message natsgw sends carries a `traceparent` header
// (https://www.w3.org/TR/trace-context/). The trace ID is chosen once, when a
// flow starts, and then follows every message the flow causes: a handler runs
// with the trace of the message it handles as the current trace, so anything
// it publishes or requests continues that trace automatically.
//
//   // Start a flow with a fresh trace and keep its ID for the logs.
//   natsgw::TraceContext trace = natsgw::TraceContext::NewRoot();
//   std::cout << "trace " << trace.TraceIdHex() << "\n";
//   {
//     natsgw::ScopedTraceContext scope(trace);
//     conn->Publish("users.events.UserRegistered", bytes);  // same trace ID
//   }
//
// Thread-safety: TraceContext is a value type (copy freely, concurrent const
// use is safe). ScopedTraceContext affects only the calling thread and must
// be destroyed on the thread that created it, in reverse order of creation.
#ifndef NATSGW_TRACE_CONTEXT_H_
#define NATSGW_TRACE_CONTEXT_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace natsgw {

class TraceContext {
 public:
  using TraceId = std::array<uint8_t, 16>;
  using SpanId = std::array<uint8_t, 8>;

  // W3C limit on the length of `tracestate`.
  static constexpr size_t kMaxTraceStateBytes = 512;

  // An invalid (all-zero) context; `valid()` is false. Use NewRoot().
  TraceContext() = default;

  // A new trace: random trace ID and span ID, flags "sampled".
  static TraceContext NewRoot();

  // Parses a `traceparent` value and an optional `tracestate` value
  // (https://www.w3.org/TR/trace-context/#traceparent-header). Rejects, with
  // INVALID_ARGUMENT naming the rule: a wrong length or separator, upper-case
  // or non-hex digits, version ff, an all-zero trace ID or span ID, and a
  // version-00 value with trailing data. A tracestate that is too long or has
  // characters outside printable ASCII is dropped (not an error), as the W3C
  // spec allows.
  static absl::StatusOr<TraceContext> Parse(absl::string_view traceparent,
                                            absl::string_view tracestate = {});

  // A context for the next hop of the same trace: same trace ID, flags and
  // tracestate, fresh random span ID.
  TraceContext Child() const;

  // The same context with the sampled flag (bit 0 of the flags) set or
  // cleared; the other flag bits are kept.
  TraceContext WithSampled(bool sampled) const;

  bool valid() const;
  const TraceId& trace_id() const { return trace_id_; }
  const SpanId& span_id() const { return span_id_; }
  uint8_t flags() const { return flags_; }
  bool sampled() const { return (flags_ & 0x01) != 0; }
  const std::string& trace_state() const { return trace_state_; }

  // 32 lower-case hex digits.
  std::string TraceIdHex() const;
  // 16 lower-case hex digits.
  std::string SpanIdHex() const;
  // "00-<trace id>-<span id>-<flags>", always version 00 and lower case.
  std::string ToTraceParent() const;

  // ToTraceParent() without an allocation, for the per-message paths:
  // writes the value and a terminating NUL into `out` and returns a view of
  // the value (valid while `out` is).
  static constexpr size_t kTraceParentLength = 55;
  using TraceParentBuffer = std::array<char, kTraceParentLength + 1>;
  absl::string_view WriteTraceParent(TraceParentBuffer& out) const;

  friend bool operator==(const TraceContext&, const TraceContext&) = default;

 private:
  TraceId trace_id_{};
  SpanId span_id_{};
  uint8_t flags_ = 0;
  std::string trace_state_;
};

// The trace the calling thread is working on, if any: the one installed by the
// innermost live ScopedTraceContext, or, inside a natsgw handler, the trace of
// the message being handled.
std::optional<TraceContext> CurrentTraceContext();

// Makes `trace` the calling thread's current trace for the lifetime of the
// object, restoring the previous one on destruction.
class ScopedTraceContext {
 public:
  explicit ScopedTraceContext(TraceContext trace);
  ~ScopedTraceContext();

  ScopedTraceContext(const ScopedTraceContext&) = delete;
  ScopedTraceContext& operator=(const ScopedTraceContext&) = delete;

 private:
  TraceContext trace_;
  const TraceContext* previous_;
};

}  // namespace natsgw

#endif  // NATSGW_TRACE_CONTEXT_H_
