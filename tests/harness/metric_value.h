// harness/metric_value.h: reads one series out of a prometheus-cpp registry,
// for tests that check what natsgw recorded.
//
//   std::optional<double> shed = natsgw::testing::MetricValue(
//       *registry, "natsgw_server_shed_total", {{"subject", "echo.Echo"}});
//   double disconnects = natsgw::testing::MetricSum(
//       *registry, "natsgw_nats_disconnects_total");
//
// Header-only: the test that includes it links prometheus-cpp::core.
//
// Thread-safety: as prometheus::Registry::Collect (thread-safe).
#ifndef NATSGW_TESTS_HARNESS_METRIC_VALUE_H_
#define NATSGW_TESTS_HARNESS_METRIC_VALUE_H_

#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <map>
#include <optional>
#include <string>

namespace natsgw::testing {

// Calls `visit(value)` for each series of `family` whose labels include
// `labels`, in collection order, until it returns false. The value is the
// counter's or gauge's value, or a histogram's sample count; series of other
// types are passed over.
template <typename Visit>
void ForEachMetricValue(prometheus::Registry& registry,
                        const std::string& family,
                        const std::map<std::string, std::string>& labels,
                        Visit visit) {
  for (const prometheus::MetricFamily& f : registry.Collect()) {
    if (f.name != family) continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      size_t matched = 0;
      for (const prometheus::ClientMetric::Label& l : m.label) {
        auto it = labels.find(l.name);
        if (it != labels.end() && it->second == l.value) ++matched;
      }
      if (matched != labels.size()) continue;
      double value = 0;
      switch (f.type) {
        case prometheus::MetricType::Counter:
          value = m.counter.value;
          break;
        case prometheus::MetricType::Gauge:
          value = m.gauge.value;
          break;
        case prometheus::MetricType::Histogram:
          value = static_cast<double>(m.histogram.sample_count);
          break;
        default:
          continue;
      }
      if (!visit(value)) return;
    }
  }
}

// The value of the first series of `family` whose labels include `labels`
// (histograms: the sample count), or nullopt if there is no such series.
inline std::optional<double> MetricValue(
    prometheus::Registry& registry, const std::string& family,
    const std::map<std::string, std::string>& labels) {
  std::optional<double> found;
  ForEachMetricValue(registry, family, labels, [&](double value) {
    found = value;
    return false;
  });
  return found;
}

// The sum over every series of `family` whose labels include `labels`
// (histograms: their sample counts); 0 if there is none. For families split
// by labels the test does not care about (a subject, a code, a connection).
inline double MetricSum(prometheus::Registry& registry,
                        const std::string& family,
                        const std::map<std::string, std::string>& labels = {}) {
  double total = 0;
  ForEachMetricValue(registry, family, labels, [&](double value) {
    total += value;
    return true;
  });
  return total;
}

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_HARNESS_METRIC_VALUE_H_
