// Offline checks of monitoring/: reads the metric catalogue (METRICS.md),
// pulls PromQL expressions out of rule files and the Grafana dashboard, and
// finds the metric and label names an expression uses, so a test can fail
// when a rule or a panel refers to a metric natsgw does not export.
//
//   Catalogue catalogue = ParseCatalogue(metrics_md);
//   ExpressionChecker checker(catalogue, RecordingRules(recording_yaml));
//   std::vector<std::string> problems = checker.Check("rate(natsgw_x[1m])");
//
// The PromQL scan is lexical, not a full parser: it knows selectors, label
// matchers, grouping clauses, strings, ranges and comments, which is all a
// name check needs. Rule files are read line by line (`expr:` values,
// block scalars and continuation lines included), not by a YAML library.
//
// Thread-safety: free functions are pure; an ExpressionChecker is immutable
// after construction and may be used from several threads.
#ifndef NATSGW_TESTS_MONITORING_MONITORING_LINT_H_
#define NATSGW_TESTS_MONITORING_MONITORING_LINT_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace natsgw::monitoring_lint {

// One row of METRICS.md.
struct Family {
  std::string type;  // counter | gauge | histogram
  std::set<std::string> labels;
};
// Family name (as catalogued, without _bucket/_sum/_count) to its row.
using Catalogue = std::map<std::string, Family>;

// The table rows of METRICS.md: "| `name` | type | `l1`, `l2` | unit | ... |".
Catalogue ParseCatalogue(absl::string_view markdown);

// Labels Prometheus attaches to every scraped series of a natsgw target
// (monitoring/prometheus/prometheus.yml and its target files).
const std::set<std::string>& TargetLabels();

// An `expr:` value of a YAML file, with the 1-based line its key is on.
struct YamlExpression {
  int line = 0;
  std::string expr;
};
// Every value of a key named `key` (e.g. "expr", "series"), including
// block scalars (`expr: |`) and plain scalars continued on more-indented
// lines; quotes around single-line values are removed.
std::vector<YamlExpression> YamlValues(absl::string_view yaml,
                                       absl::string_view key);

// A recording rule: its name and the labels its result keeps (the labels of
// its expression's `by (...)` clauses, without `le`, in order of first
// appearance).
struct RecordingRule {
  std::string name;
  std::string expr;
  std::vector<std::string> kept_labels;
};
std::vector<RecordingRule> RecordingRules(absl::string_view yaml);

// What the lexical scan of one expression found.
struct Scan {
  struct Selector {
    std::string name;                 // empty for `{...}` without a name
    std::vector<std::string> labels;  // matcher label names
  };
  std::vector<Selector> selectors;
  // Label names of by/without/on/ignoring/group_left/group_right clauses,
  // and the label argument of Grafana's label_values(selector, label).
  std::vector<std::string> grouping_labels;
  // Range selector contents, e.g. "1m" or "$__rate_interval".
  std::vector<std::string> ranges;
};
Scan ScanExpression(absl::string_view expr);

// Checks expressions against the catalogue and the recording rules.
class ExpressionChecker {
 public:
  ExpressionChecker(Catalogue catalogue, std::vector<RecordingRule> rules);

  // Problems of `expr`, one sentence each; empty when every name in it is a
  // catalogued natsgw metric (histograms only with _bucket, _sum or _count),
  // a recording rule of `rules`, or Prometheus' `up`, and every label it
  // matches or groups by exists on the series it refers to. Understands
  // Grafana's label_values(selector, label) variable queries.
  std::vector<std::string> Check(absl::string_view expr) const;

 private:
  // Labels the series called `name` can carry; false with a reason in
  // `problem` when the name is not allowed.
  bool SeriesLabels(const std::string& name, std::set<std::string>& labels,
                    std::string& problem) const;

  Catalogue catalogue_;
  std::map<std::string, RecordingRule> rules_;
};

}  // namespace natsgw::monitoring_lint

#endif  // NATSGW_TESTS_MONITORING_MONITORING_LINT_H_
