#include "natsgw/trace_context.h"

#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "random.h"

namespace natsgw {
namespace {

// The thread's current trace: the innermost live ScopedTraceContext.
thread_local const TraceContext* t_current_trace = nullptr;

constexpr size_t kTraceParentV00Length = 55;  // 2+1+32+1+16+1+2

int LowerHexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // Upper case is invalid in traceparent (W3C: HEXDIGLC).
}

// Decodes exactly 2*N lower-case hex digits into `out`.
template <size_t N>
bool DecodeLowerHex(absl::string_view hex, std::array<uint8_t, N>& out) {
  if (hex.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    int hi = LowerHexValue(hex[2 * i]);
    int lo = LowerHexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

template <size_t N>
bool AllZero(const std::array<uint8_t, N>& bytes) {
  for (uint8_t b : bytes) {
    if (b != 0) return false;
  }
  return true;
}

template <size_t N>
void FillRandomNonZero(std::array<uint8_t, N>& out) {
  do {
    for (size_t i = 0; i < N; i += 8) {
      uint64_t word = internal::RandomU64();
      std::memcpy(out.data() + i, &word, N - i < 8 ? N - i : 8);
    }
  } while (AllZero(out));
}

template <size_t N>
std::string ToHex(const std::array<uint8_t, N>& bytes) {
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

// tracestate is passed through opaquely; only values that are safe to
// forward (bounded, printable ASCII) are kept.
bool TraceStateForwardable(absl::string_view state) {
  if (state.size() > TraceContext::kMaxTraceStateBytes) return false;
  for (char c : state) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

absl::Status Invalid(absl::string_view traceparent, absl::string_view rule) {
  return absl::InvalidArgumentError(
      absl::StrFormat("traceparent \"%s\" is invalid: %s",
                      absl::CHexEscape(traceparent.substr(0, 80)), rule));
}

}  // namespace

TraceContext TraceContext::NewRoot() {
  TraceContext trace;
  FillRandomNonZero(trace.trace_id_);
  FillRandomNonZero(trace.span_id_);
  trace.flags_ = 0x01;  // sampled: natsgw records every message in metrics
  return trace;
}

absl::StatusOr<TraceContext> TraceContext::Parse(absl::string_view traceparent,
                                                 absl::string_view tracestate) {
  if (traceparent.size() < kTraceParentV00Length) {
    return Invalid(traceparent, absl::StrCat("it has ", traceparent.size(),
                                             " characters; at least 55 are "
                                             "required"));
  }
  std::array<uint8_t, 1> version{};
  if (!DecodeLowerHex(traceparent.substr(0, 2), version)) {
    return Invalid(traceparent, "the version is not 2 lower-case hex digits");
  }
  if (version[0] == 0xff) {
    return Invalid(traceparent, "version ff is forbidden");
  }
  if (version[0] == 0x00 && traceparent.size() != kTraceParentV00Length) {
    return Invalid(traceparent,
                   "version 00 must be exactly 55 characters long");
  }
  // Future versions may append fields after a '-'; parse the 00 layout.
  if (traceparent.size() > kTraceParentV00Length &&
      traceparent[kTraceParentV00Length] != '-') {
    return Invalid(traceparent, "extra data must be separated by '-'");
  }
  if (traceparent[2] != '-' || traceparent[35] != '-' ||
      traceparent[52] != '-') {
    return Invalid(traceparent,
                   "fields must be separated by '-' at offsets 2, 35 and 52");
  }
  TraceContext trace;
  if (!DecodeLowerHex(traceparent.substr(3, 32), trace.trace_id_)) {
    return Invalid(traceparent, "the trace ID is not 32 lower-case hex digits");
  }
  if (AllZero(trace.trace_id_)) {
    return Invalid(traceparent, "the trace ID is all zeros");
  }
  if (!DecodeLowerHex(traceparent.substr(36, 16), trace.span_id_)) {
    return Invalid(traceparent,
                   "the parent ID is not 16 lower-case hex digits");
  }
  if (AllZero(trace.span_id_)) {
    return Invalid(traceparent, "the parent ID is all zeros");
  }
  std::array<uint8_t, 1> flags{};
  if (!DecodeLowerHex(traceparent.substr(53, 2), flags)) {
    return Invalid(traceparent, "the flags are not 2 lower-case hex digits");
  }
  trace.flags_ = flags[0];
  if (TraceStateForwardable(tracestate)) {
    trace.trace_state_ = std::string(tracestate);
  }
  return trace;
}

TraceContext TraceContext::Child() const {
  TraceContext child = *this;
  FillRandomNonZero(child.span_id_);
  return child;
}

TraceContext TraceContext::WithSampled(bool sampled) const {
  TraceContext copy = *this;
  copy.flags_ = sampled ? (flags_ | 0x01) : (flags_ & ~0x01);
  return copy;
}

bool TraceContext::valid() const {
  return !AllZero(trace_id_) && !AllZero(span_id_);
}

std::string TraceContext::TraceIdHex() const { return ToHex(trace_id_); }

std::string TraceContext::SpanIdHex() const { return ToHex(span_id_); }

std::string TraceContext::ToTraceParent() const {
  TraceParentBuffer buffer;
  return std::string(WriteTraceParent(buffer));
}

absl::string_view TraceContext::WriteTraceParent(TraceParentBuffer& out) const {
  // Hand-rolled: this runs for every message sent.
  static constexpr char kHex[] = "0123456789abcdef";
  static_assert(kTraceParentLength == kTraceParentV00Length);
  out.fill('-');
  out[0] = '0';
  out[1] = '0';
  for (size_t i = 0; i < trace_id_.size(); ++i) {
    out[3 + 2 * i] = kHex[trace_id_[i] >> 4];
    out[4 + 2 * i] = kHex[trace_id_[i] & 0x0f];
  }
  for (size_t i = 0; i < span_id_.size(); ++i) {
    out[36 + 2 * i] = kHex[span_id_[i] >> 4];
    out[37 + 2 * i] = kHex[span_id_[i] & 0x0f];
  }
  out[53] = kHex[flags_ >> 4];
  out[54] = kHex[flags_ & 0x0f];
  out[kTraceParentLength] = '\0';
  return absl::string_view(out.data(), kTraceParentLength);
}

std::optional<TraceContext> CurrentTraceContext() {
  if (t_current_trace == nullptr) return std::nullopt;
  return *t_current_trace;
}

ScopedTraceContext::ScopedTraceContext(TraceContext trace)
    : trace_(std::move(trace)), previous_(t_current_trace) {
  t_current_trace = &trace_;
}

ScopedTraceContext::~ScopedTraceContext() { t_current_trace = previous_; }

}  // namespace natsgw
