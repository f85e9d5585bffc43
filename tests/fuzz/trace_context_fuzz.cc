// Fuzz target: W3C Trace Context parsing (TraceContext::Parse), which every
// received message's traceparent and tracestate go through.
//
// Input layout:
//   byte 0      length of the traceparent value (capped at what is left)
//   ...         the traceparent value, then the tracestate value
//
// Checked against a reference reading of the W3C rules written here from
// the specification (https://www.w3.org/TR/trace-context/#traceparent-header):
//   - Parse accepts exactly what the reference accepts;
//   - an accepted value round-trips: the IDs and flags are the digits of the
//     input, ToTraceParent() is the input as version 00 and parses back to
//     the same context, tracestate is kept only when forwardable (at most
//     512 bytes of printable ASCII);
//   - Child/WithSampled/ScopedTraceContext keep what they promise;
//   - a rejection is INVALID_ARGUMENT with a bounded message free of raw
//     control bytes (the value is quoted escaped).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "fuzz_support.h"
#include "natsgw/trace_context.h"

namespace natsgw::fuzz {
namespace {

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool AllZeroDigits(absl::string_view s) {
  return s.find_first_not_of('0') == absl::string_view::npos;
}

// version "-" trace-id "-" parent-id "-" trace-flags, lower-case hex;
// version ff is invalid; version 00 is exactly 55 characters; a later
// version may append "-" and more, which is ignored; the IDs must not be
// all zeros.
bool ReferenceAccepts(absl::string_view tp) {
  if (tp.size() < 55) return false;
  const absl::string_view version = tp.substr(0, 2);
  if (!IsLowerHex(version) || version == "ff") return false;
  if (version == "00" && tp.size() != 55) return false;
  if (tp.size() > 55 && tp[55] != '-') return false;
  if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return false;
  const absl::string_view trace_id = tp.substr(3, 32);
  const absl::string_view parent_id = tp.substr(36, 16);
  const absl::string_view flags = tp.substr(53, 2);
  return IsLowerHex(trace_id) && !AllZeroDigits(trace_id) &&
         IsLowerHex(parent_id) && !AllZeroDigits(parent_id) &&
         IsLowerHex(flags);
}

bool Forwardable(absl::string_view state) {
  if (state.size() > TraceContext::kMaxTraceStateBytes) return false;
  for (char c : state) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b > 0x7e) return false;
  }
  return true;
}

int HexValue(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

void CheckAccepted(const TraceContext& trace, absl::string_view tp,
                   absl::string_view state) {
  FUZZ_CHECK(trace.valid(), "an accepted context is not valid()");
  FUZZ_CHECK(trace.TraceIdHex() == tp.substr(3, 32), "trace ID ",
             trace.TraceIdHex(), " from ", tp);
  FUZZ_CHECK(trace.SpanIdHex() == tp.substr(36, 16), "span ID ",
             trace.SpanIdHex(), " from ", tp);
  const int flags = HexValue(tp[53]) * 16 + HexValue(tp[54]);
  FUZZ_CHECK(trace.flags() == flags, "flags ", trace.flags(), " from ", tp);
  FUZZ_CHECK(trace.sampled() == ((flags & 1) != 0), "sampled() is not bit 0");
  FUZZ_CHECK(trace.trace_state() ==
                 (Forwardable(state) ? std::string(state) : std::string()),
             "tracestate kept or dropped wrongly");

  const std::string written = trace.ToTraceParent();
  FUZZ_CHECK(written == absl::StrCat("00", tp.substr(2, 53)), "written as ",
             written, " from ", tp);
  TraceContext::TraceParentBuffer buffer;
  FUZZ_CHECK(trace.WriteTraceParent(buffer) == written &&
                 buffer[TraceContext::kTraceParentLength] == '\0',
             "WriteTraceParent differs from ToTraceParent");
  const absl::StatusOr<TraceContext> again =
      TraceContext::Parse(written, trace.trace_state());
  FUZZ_CHECK(again.ok() && *again == trace, "does not parse back: ", written);

  const TraceContext child = trace.Child();
  FUZZ_CHECK(child.valid() && child.trace_id() == trace.trace_id() &&
                 child.flags() == trace.flags() &&
                 child.trace_state() == trace.trace_state(),
             "Child() changed more than the span ID");
  FUZZ_CHECK(trace.WithSampled(true).sampled() &&
                 !trace.WithSampled(false).sampled() &&
                 (trace.WithSampled(false).flags() | 1) == (trace.flags() | 1),
             "WithSampled changed other flags");
  {
    ScopedTraceContext scope(trace);
    FUZZ_CHECK(CurrentTraceContext() == std::optional<TraceContext>(trace),
               "ScopedTraceContext did not install the trace");
  }
}

}  // namespace
}  // namespace natsgw::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace natsgw;        // NOLINT(build/namespaces)
  using namespace natsgw::fuzz;  // NOLINT(build/namespaces)
  Input in(data, size);
  const absl::string_view traceparent = in.Bytes(in.Byte());
  const absl::string_view tracestate = in.Rest();
  const std::optional<TraceContext> outer = CurrentTraceContext();

  const absl::StatusOr<TraceContext> parsed =
      TraceContext::Parse(traceparent, tracestate);
  FUZZ_CHECK(parsed.ok() == ReferenceAccepts(traceparent), "Parse says ",
             parsed.status().ToString(), " for \"",
             absl::CHexEscape(traceparent), "\"");
  if (parsed.ok()) {
    CheckAccepted(*parsed, traceparent, tracestate);
  } else {
    FUZZ_CHECK(IsCleanInvalidArgument(parsed.status(), 512),
               "rejection is not a clean INVALID_ARGUMENT: ",
               parsed.status().ToString());
  }
  FUZZ_CHECK(CurrentTraceContext() == outer,
             "the thread's current trace leaked out of a scope");
  return 0;
}
