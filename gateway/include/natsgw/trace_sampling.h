// natsgw/trace_sampling.h: which new traces are sampled, i.e. have their
// spans reported (natsgw/span_sink.h).
//
// The sampled flag (bit 0 of the traceparent flags) is decided once, where a
// trace starts, and then travels with the trace: every message of it carries
// the flag and every hop inherits it, so a trace is reported whole or not at
// all, across services. natsgw decides it for the traces it starts itself
// (a send with no current trace, a received message without a valid
// traceparent) with ConnectionOptions::trace_sample_ratio. Code that starts
// a trace of its own and wants the same rule uses NewRootTrace:
//
//   natsgw::TraceContext root =
//       natsgw::NewRootTrace(conn->options().trace_sample_ratio);
//   natsgw::ScopedTraceContext scope(root);
//
// The decision is a pure function of the trace ID (the OpenTelemetry
// "TraceIdRatioBased" rule: the trace ID's last 8 bytes, read as a big-endian
// number, below ratio * 2^64), so every process with the same ratio agrees.
//
// Thread-safety: safe from any thread (ChooseTrace reads the calling thread's
// current trace; the rest are pure functions).
#ifndef NATSGW_TRACE_SAMPLING_H_
#define NATSGW_TRACE_SAMPLING_H_

#include <optional>

#include "absl/status/status.h"
#include "natsgw/trace_context.h"

namespace natsgw {

// INVALID_ARGUMENT naming the rule unless 0 <= ratio <= 1 (NaN is refused).
absl::Status ValidateTraceSampleRatio(double ratio);

// Whether a new trace with ID `trace_id` is sampled at `ratio`: always at 1
// (or more), never at 0 (or less), else for about `ratio` of random IDs.
bool SampledAtRatio(const TraceContext::TraceId& trace_id, double ratio);

// A new trace (random trace ID and span ID, as TraceContext::NewRoot) whose
// sampled flag is SampledAtRatio(its trace ID, ratio).
TraceContext NewRootTrace(double ratio);

// The trace an operation continues: `explicit_trace` if it is valid, else the
// calling thread's current trace (CurrentTraceContext()), else a new one
// from NewRootTrace(ratio), marked `generated` (its first span is a root).
struct TraceChoice {
  TraceContext trace;
  bool generated = false;
};
TraceChoice ChooseTrace(const std::optional<TraceContext>& explicit_trace,
                        double ratio);

}  // namespace natsgw

#endif  // NATSGW_TRACE_SAMPLING_H_
