#include "natsgw/trace_sampling.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace natsgw {

absl::Status ValidateTraceSampleRatio(double ratio) {
  // Written so that NaN fails too.
  if (!(ratio >= 0.0 && ratio <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "trace_sample_ratio must be between 0 and 1 (the share of new traces "
        "whose spans are reported), got ",
        ratio));
  }
  return absl::OkStatus();
}

bool SampledAtRatio(const TraceContext::TraceId& trace_id, double ratio) {
  if (!(ratio > 0.0)) return false;
  if (ratio >= 1.0) return true;
  uint64_t low = 0;
  for (size_t i = 8; i < 16; ++i) low = low << 8 | trace_id[i];
  // ratio * 2^64, computed in long double to keep the bound exact enough
  // for small ratios; below 1 the product stays below 2^64.
  const long double bound =
      static_cast<long double>(ratio) * 18446744073709551616.0L;
  return static_cast<long double>(low) < bound;
}

TraceContext NewRootTrace(double ratio) {
  TraceContext root = TraceContext::NewRoot();  // sampled
  // At the default ratio 1 every trace is sampled: no test needed.
  if (ratio >= 1.0 || SampledAtRatio(root.trace_id(), ratio)) return root;
  return root.WithSampled(false);
}

TraceChoice ChooseTrace(const std::optional<TraceContext>& explicit_trace,
                        double ratio) {
  if (explicit_trace && explicit_trace->valid()) return {*explicit_trace};
  if (std::optional<TraceContext> current = CurrentTraceContext();
      current && current->valid()) {
    return {*std::move(current)};
  }
  return {NewRootTrace(ratio), /*generated=*/true};
}

}  // namespace natsgw
