// harness/metric_value.h: reads one series out of a prometheus-cpp registry,
// for tests that check what natsgw recorded.
//
//   std::optional<double> shed = natsgw::testing::MetricValue(
//       *registry, "natsgw_server_shed_total", {{"subject", "echo.Echo"}});
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

// The value of the first series of `family` whose labels include `labels`
// (histograms: the sample count), or nullopt if there is no such series.
inline std::optional<double> MetricValue(
    prometheus::Registry& registry, const std::string& family,
    const std::map<std::string, std::string>& labels) {
  for (const prometheus::MetricFamily& f : registry.Collect()) {
    if (f.name != family) continue;
    for (const prometheus::ClientMetric& m : f.metric) {
      size_t matched = 0;
      for (const prometheus::ClientMetric::Label& l : m.label) {
        auto it = labels.find(l.name);
        if (it != labels.end() && it->second == l.value) ++matched;
      }
      if (matched != labels.size()) continue;
      switch (f.type) {
        case prometheus::MetricType::Counter:
          return m.counter.value;
        case prometheus::MetricType::Gauge:
          return m.gauge.value;
        case prometheus::MetricType::Histogram:
          return static_cast<double>(m.histogram.sample_count);
        default:
          return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_HARNESS_METRIC_VALUE_H_
