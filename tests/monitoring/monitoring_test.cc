// monitoring/ against the metric catalogue: every expression of the
// Prometheus rules, the promtool tests and the Grafana dashboard may use only
// metrics catalogued in monitoring/METRICS.md (histograms through _bucket,
// _sum and _count), recording rules defined in the rule files, and
// Prometheus' `up`, with labels those series have. Also checks the rule
// naming and alert style conventions and the dashboard's structure.
//
// Reads the source tree's monitoring/ directory, or the directory named by
// the environment variable NATSGW_MONITORING_DIR (to check a copy).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "monitoring_lint.h"
#include "nlohmann/json.hpp"

namespace natsgw::monitoring_lint {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;
using Json = nlohmann::json;

// The dashboard's uid: Grafana links and provisioning refer to it, so it
// must not change when the file is edited.
constexpr char kDashboardUid[] = "natsgw-overview";

std::string MonitoringDir() {
  const char* dir = std::getenv("NATSGW_MONITORING_DIR");
  return dir != nullptr && *dir != '\0' ? std::string(dir)
                                        : NATSGW_SOURCE_DIR "/monitoring";
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The *.yml files of `dir`, sorted.
std::vector<std::filesystem::path> YamlFiles(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".yml") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Problems of every value of `key` in a YAML file, as "file:line: problem".
std::vector<std::string> YamlProblems(const std::string& file,
                                      absl::string_view yaml,
                                      absl::string_view key,
                                      const ExpressionChecker& checker) {
  std::vector<std::string> out;
  for (const YamlExpression& e : YamlValues(yaml, key)) {
    for (const std::string& p : checker.Check(e.expr)) {
      out.push_back(absl::StrCat(file, ":", e.line, ": ", p));
    }
  }
  return out;
}

// Calls `fn(panel)` for every panel, rows' nested panels included.
template <typename Fn>
void ForEachPanel(const Json& dashboard, Fn fn) {
  if (!dashboard.contains("panels")) return;
  for (const Json& panel : dashboard["panels"]) {
    fn(panel);
    if (panel.contains("panels")) {
      for (const Json& nested : panel["panels"]) fn(nested);
    }
  }
}

std::string PanelName(const Json& panel) {
  return absl::StrCat("panel ", panel.value("id", Json()).dump(), " \"",
                      panel.value("title", std::string()), "\"");
}

// Every PromQL expression of a dashboard: targets' expr and query
// variables' queries, with where each comes from.
std::vector<std::pair<std::string, std::string>> DashboardExpressions(
    const Json& dashboard) {
  std::vector<std::pair<std::string, std::string>> out;
  ForEachPanel(dashboard, [&](const Json& panel) {
    if (!panel.contains("targets")) return;
    for (const Json& target : panel["targets"]) {
      if (target.contains("expr") && target["expr"].is_string()) {
        out.emplace_back(absl::StrCat(PanelName(panel), " target ",
                                      target.value("refId", std::string())),
                         target["expr"].get<std::string>());
      }
    }
  });
  if (dashboard.contains("templating")) {
    for (const Json& variable : dashboard["templating"].value("list", Json())) {
      if (variable.value("type", std::string()) != "query") continue;
      const Json& query = variable["query"];
      std::string text;
      if (query.is_string()) text = query.get<std::string>();
      if (query.is_object()) text = query.value("query", std::string());
      out.emplace_back(
          absl::StrCat("variable ", variable.value("name", std::string())),
          text);
    }
  }
  return out;
}

std::vector<std::string> DashboardProblems(const Json& dashboard,
                                           const ExpressionChecker& checker) {
  std::vector<std::string> out;
  for (const auto& [where, expr] : DashboardExpressions(dashboard)) {
    for (const std::string& p : checker.Check(expr)) {
      out.push_back(absl::StrCat(where, ": ", p));
    }
  }
  return out;
}

// --- The lexical PromQL scan, on a small catalogue of its own --------------

Catalogue TestCatalogue() {
  return ParseCatalogue(
      "| Name | Type | Labels | Unit | Meaning |\n"
      "|---|---|---|---|---|\n"
      "| `natsgw_req_seconds` | histogram | `subject`, `code` | seconds | x |\n"
      "| `natsgw_shed_total` | counter | `subject` | requests | x |\n"
      "| `natsgw_overflow_total` | counter | — | events | x |\n");
}

ExpressionChecker TestChecker() {
  return ExpressionChecker(
      TestCatalogue(),
      RecordingRules("groups:\n"
                     "  - name: g\n"
                     "    rules:\n"
                     "      - record: job_subject:natsgw_shed:rate1m\n"
                     "        expr: sum by (job, subject) "
                     "(rate(natsgw_shed_total[1m]))\n"));
}

TEST(PromqlScanTest, ParsesTheCatalogueTable) {
  const Catalogue catalogue = TestCatalogue();
  ASSERT_EQ(catalogue.size(), 3u);
  EXPECT_EQ(catalogue.at("natsgw_req_seconds").type, "histogram");
  EXPECT_THAT(catalogue.at("natsgw_req_seconds").labels,
              UnorderedElementsAre("subject", "code"));
  EXPECT_THAT(catalogue.at("natsgw_overflow_total").labels, IsEmpty());
}

TEST(PromqlScanTest, FindsSelectorsMatchersGroupingAndRanges) {
  const Scan scan = ScanExpression(
      R"(histogram_quantile(0.99, sum by (le, subject) (rate(natsgw_req_seconds_bucket{code!="OK", subject=~"a|b"}[$__rate_interval])))
         / on (subject) group_left up offset 5m # natsgw_in_a_comment
         and 1e-3 > bool natsgw_shed_total)");
  ASSERT_EQ(scan.selectors.size(), 3u);
  EXPECT_EQ(scan.selectors[0].name, "natsgw_req_seconds_bucket");
  EXPECT_THAT(scan.selectors[0].labels, ElementsAre("code", "subject"));
  EXPECT_EQ(scan.selectors[1].name, "up");
  EXPECT_EQ(scan.selectors[2].name, "natsgw_shed_total");
  EXPECT_THAT(scan.grouping_labels, ElementsAre("le", "subject", "subject"));
  EXPECT_THAT(scan.ranges, ElementsAre("$__rate_interval"));
}

TEST(PromqlScanTest, IgnoresNamesInStringsAndComments) {
  const Scan scan = ScanExpression(
      "natsgw_shed_total{subject=\"natsgw_fake_total\"} # natsgw_x_total\n"
      "  + count_values(\"natsgw_y\", natsgw_shed_total)");
  ASSERT_EQ(scan.selectors.size(), 2u);
  EXPECT_EQ(scan.selectors[0].name, "natsgw_shed_total");
  EXPECT_EQ(scan.selectors[1].name, "natsgw_shed_total");
}

TEST(PromqlScanTest, ReadsGrafanaLabelValuesQueries) {
  const Scan scan = ScanExpression(
      R"(label_values(natsgw_shed_total{job=~"$job"}, subject))");
  ASSERT_EQ(scan.selectors.size(), 1u);
  EXPECT_EQ(scan.selectors[0].name, "natsgw_shed_total");
  EXPECT_THAT(scan.grouping_labels, ElementsAre("subject"));
}

TEST(PromqlScanTest, AcceptsCataloguedNamesRulesAndUp) {
  const ExpressionChecker checker = TestChecker();
  for (
      const char* expr : {
          R"(histogram_quantile(0.5, sum by (le, subject) (rate(natsgw_req_seconds_bucket{code="OK"}[1m]))))",
          R"(sum by (job) (rate(natsgw_req_seconds_count[5m])) / sum by (job) (rate(natsgw_req_seconds_sum[5m])))",
          R"(job_subject:natsgw_shed:rate1m > 0 and on (job, subject) job_subject:natsgw_shed:rate1m)",
          R"(absent(up{job="natsgw"}))",
          R"(sum(rate(natsgw_overflow_total{instance=~"$instance"}[$__rate_interval])))",
          R"(label_values(natsgw_shed_total{job=~"$job"}, subject))",
      }) {
    EXPECT_THAT(checker.Check(expr), IsEmpty()) << expr;
  }
}

TEST(PromqlScanTest, RejectsWhatIsNotCatalogued) {
  const ExpressionChecker checker = TestChecker();
  const std::map<std::string, std::string> cases = {
      {"rate(natsgw_bogus_total[1m])", "not in the metric catalogue"},
      {"natsgw_req_seconds", "is a histogram"},
      {"natsgw_shed_total_bucket", "only histograms"},
      {"rate(natsgw_shed_total_count[1m])", "only histograms"},
      {"node_cpu_seconds_total", "neither a natsgw metric"},
      {"job:natsgw_bogus:rate1m", "no rule file records it"},
      {R"(natsgw_shed_total{code="OK"})", "label code is not a label"},
      {R"(natsgw_req_seconds_count{le="1"})", "label le is not a label"},
      {"sum by (stream) (rate(natsgw_shed_total[1m]))",
       "grouping label stream"},
      {"sum by (code) (job_subject:natsgw_shed:rate1m)", "grouping label code"},
      {R"({__name__=~"natsgw_.*"})", "without a metric name"},
      {R"(label_values(natsgw_shed_total, code))", "grouping label code"},
  };
  for (const auto& [expr, problem] : cases) {
    EXPECT_THAT(checker.Check(expr), Contains(HasSubstr(problem))) << expr;
  }
}

TEST(PromqlScanTest, ReadsYamlValuesOfEveryShape) {
  const std::vector<YamlExpression> values = YamlValues(
      "rules:\n"
      "  - expr: a_total > 0\n"
      "    for: 1m\n"
      "  - alert: X\n"
      "    expr: |\n"
      "      sum(b_total)\n"
      "\n"
      "        / sum(c_total)\n"
      "    labels: {}\n"
      "  - expr: 'd_total{x=\"y\"} or e_total{x=''z''}'\n"
      "  - expr: f_total\n"
      "      + g_total\n"
      "    # expr: commented_total\n",
      "expr");
  ASSERT_EQ(values.size(), 4u);
  EXPECT_EQ(values[0].line, 2);
  EXPECT_EQ(values[0].expr, "a_total > 0");
  EXPECT_EQ(values[1].line, 5);
  EXPECT_EQ(values[1].expr, "sum(b_total)\n\n/ sum(c_total)");
  EXPECT_EQ(values[2].expr, "d_total{x=\"y\"} or e_total{x='z'}");
  EXPECT_EQ(values[3].expr, "f_total + g_total");
}

// --- The repository's monitoring/ ------------------------------------------

class MonitoringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MonitoringDir();
    catalogue_ = ParseCatalogue(ReadFile(dir_ / "METRICS.md"));
    ASSERT_GE(catalogue_.size(), 30u)
        << "no metric catalogue at " << (dir_ / "METRICS.md");
    rule_files_ = YamlFiles(dir_ / "prometheus" / "rules");
    test_files_ = YamlFiles(dir_ / "prometheus" / "tests");
    ASSERT_FALSE(rule_files_.empty());
    ASSERT_FALSE(test_files_.empty());
    for (const auto& file : rule_files_) {
      for (RecordingRule& rule : RecordingRules(ReadFile(file))) {
        rules_.push_back(std::move(rule));
      }
    }
    ASSERT_FALSE(rules_.empty());
    alerts_ =
        ReadFile(dir_ / "prometheus" / "rules" / "natsgw-alerts.rules.yml");
    ASSERT_FALSE(alerts_.empty());
    const std::string dashboard =
        ReadFile(dir_ / "grafana" / "natsgw-dashboard.json");
    ASSERT_FALSE(dashboard.empty());
    dashboard_ = Json::parse(dashboard, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(dashboard_.is_discarded()) << "the dashboard is not JSON";
  }

  ExpressionChecker Checker() const {
    return ExpressionChecker(catalogue_, rules_);
  }

  std::filesystem::path dir_;
  Catalogue catalogue_;
  std::vector<std::filesystem::path> rule_files_;
  std::vector<std::filesystem::path> test_files_;
  std::vector<RecordingRule> rules_;
  std::string alerts_;
  Json dashboard_;
};

TEST_F(MonitoringTest, RuleExpressionsUseOnlyCataloguedMetrics) {
  const ExpressionChecker checker = Checker();
  int exprs = 0;
  for (const auto& file : rule_files_) {
    const std::string yaml = ReadFile(file);
    exprs += static_cast<int>(YamlValues(yaml, "expr").size());
    EXPECT_THAT(YamlProblems(file.filename(), yaml, "expr", checker),
                IsEmpty());
  }
  EXPECT_GE(exprs, 20);
}

TEST_F(MonitoringTest, PromtoolTestsUseOnlyCataloguedSeries) {
  const ExpressionChecker checker = Checker();
  for (const auto& file : test_files_) {
    const std::string yaml = ReadFile(file);
    EXPECT_THAT(YamlValues(yaml, "series"), Not(IsEmpty())) << file;
    EXPECT_THAT(YamlProblems(file.filename(), yaml, "series", checker),
                IsEmpty());
    EXPECT_THAT(YamlProblems(file.filename(), yaml, "expr", checker),
                IsEmpty());
  }
}

// level:metric:operations, where level lists the labels the rule keeps.
TEST_F(MonitoringTest, RecordingRulesFollowTheNamingConvention) {
  static const std::regex kName(
      R"(^([a-z][a-z0-9_]*):(natsgw_[a-z0-9_]+):([a-z0-9_]+)$)");
  std::set<std::string> names;
  for (const RecordingRule& rule : rules_) {
    std::smatch m;
    ASSERT_TRUE(std::regex_match(rule.name, m, kName)) << rule.name;
    EXPECT_EQ(m[1].str(), absl::StrJoin(rule.kept_labels, "_"))
        << rule.name << ": the level must list the labels the rule keeps";
    EXPECT_TRUE(names.insert(rule.name).second) << "duplicate " << rule.name;
    EXPECT_FALSE(rule.expr.empty()) << rule.name;
  }
}

struct Alert {
  std::string name;
  std::string block;  // its lines in the rule file
};

std::vector<Alert> Alerts(absl::string_view yaml) {
  static const std::regex kStart(R"(^\s*- (alert|record|name):\s*(\S+))");
  std::vector<Alert> out;
  Alert* current = nullptr;
  for (absl::string_view line : absl::StrSplit(yaml, '\n')) {
    const std::string text(line);
    std::smatch m;
    if (std::regex_search(text, m, kStart)) {
      current = nullptr;
      if (m[1] == "alert") {
        out.push_back({m[2].str(), ""});
        current = &out.back();
      }
    }
    if (current != nullptr) absl::StrAppend(&current->block, text, "\n");
  }
  return out;
}

TEST_F(MonitoringTest, AlertsFollowTheConventionalStyle) {
  const std::vector<Alert> alerts = Alerts(alerts_);
  ASSERT_GE(alerts.size(), 10u);
  std::set<std::string> names;
  for (const Alert& alert : alerts) {
    SCOPED_TRACE(alert.name);
    EXPECT_TRUE(
        std::regex_match(alert.name, std::regex("^Natsgw([A-Z][a-z0-9]*)+$")));
    EXPECT_TRUE(names.insert(alert.name).second) << "duplicate alert name";
    EXPECT_TRUE(
        std::regex_search(alert.block, std::regex(R"(\n\s+for: \d+[smh]\n)")))
        << "needs a for:";
    EXPECT_TRUE(std::regex_search(
        alert.block, std::regex(R"(\n\s+severity: (warning|critical)\n)")))
        << "needs severity warning or critical";
    EXPECT_TRUE(
        std::regex_search(alert.block, std::regex(R"(\n\s+summary: \S)")))
        << "needs a summary";
    EXPECT_TRUE(
        std::regex_search(alert.block, std::regex(R"(\n\s+description: \S)")))
        << "needs a description";
    // Alert labels come from the expression; a trace or message ID would
    // make every alert unique.
    EXPECT_THAT(alert.block, Not(HasSubstr("trace_id")));
  }
}

// Every alert has a promtool case where it fires (with its labels and
// annotations) and one where it must stay quiet.
TEST_F(MonitoringTest, EveryAlertHasFiringAndQuietTestCases) {
  std::string tests;
  for (const auto& file : test_files_) absl::StrAppend(&tests, ReadFile(file));
  for (const Alert& alert : Alerts(alerts_)) {
    SCOPED_TRACE(alert.name);
    EXPECT_TRUE(std::regex_search(
        tests, std::regex("alertname: " + alert.name +
                          R"(\s*\n\s*exp_alerts:\s*\n\s*- exp_labels:)")))
        << "no promtool case in which it fires";
    EXPECT_TRUE(std::regex_search(
        tests, std::regex("alertname: " + alert.name +
                          R"((\s*\n\s*|,\s*)exp_alerts: \[\])")))
        << "no promtool case in which it stays quiet";
  }
}

TEST_F(MonitoringTest, AnUncataloguedMetricInARuleIsFound) {
  const std::string broken =
      absl::StrCat(alerts_,
                   "      - alert: NatsgwBogus\n"
                   "        expr: |\n"
                   "          sum by (job) (rate(natsgw_bogus_total[5m])) > 0\n"
                   "        for: 1m\n");
  EXPECT_THAT(
      YamlProblems("natsgw-alerts.rules.yml", broken, "expr", Checker()),
      ElementsAre(HasSubstr("natsgw_bogus_total is not in the metric "
                            "catalogue")));
}

TEST_F(MonitoringTest, DashboardExpressionsUseOnlyCataloguedMetrics) {
  EXPECT_GE(DashboardExpressions(dashboard_).size(), 40u);
  EXPECT_THAT(DashboardProblems(dashboard_, Checker()), IsEmpty());
}

TEST_F(MonitoringTest, AnUncataloguedMetricInTheDashboardIsFound) {
  Json broken = dashboard_;
  for (Json& panel : broken["panels"]) {
    if (panel.contains("targets")) {
      panel["targets"].push_back(
          {{"datasource", {{"type", "prometheus"}, {"uid", "${datasource}"}}},
           {"expr", "sum(rate(natsgw_bogus_total[$__rate_interval]))"},
           {"refId", "Z"}});
      break;
    }
  }
  EXPECT_THAT(DashboardProblems(broken, Checker()),
              ElementsAre(HasSubstr("natsgw_bogus_total")));
}

TEST_F(MonitoringTest, DashboardHasAStableIdentityAndUniquePanelIds) {
  EXPECT_EQ(dashboard_.value("uid", std::string()), kDashboardUid);
  ASSERT_TRUE(dashboard_.contains("id"));
  EXPECT_TRUE(dashboard_["id"].is_null()) << "set id to null in files";
  EXPECT_FALSE(dashboard_.value("title", std::string()).empty());
  EXPECT_GE(dashboard_.value("schemaVersion", 0), 36);
  std::set<int> ids;
  int panels = 0;
  ForEachPanel(dashboard_, [&](const Json& panel) {
    ++panels;
    ASSERT_TRUE(panel.contains("id") && panel["id"].is_number_integer())
        << PanelName(panel);
    EXPECT_TRUE(ids.insert(panel["id"].get<int>()).second)
        << "duplicate id: " << PanelName(panel);
    ASSERT_TRUE(panel.contains("gridPos")) << PanelName(panel);
    EXPECT_GT(panel["gridPos"].value("w", 0), 0) << PanelName(panel);
    EXPECT_GT(panel["gridPos"].value("h", 0), 0) << PanelName(panel);
  });
  EXPECT_GE(panels, 20);
}

TEST_F(MonitoringTest, EveryPanelAndTargetUsesTheDatasourceVariable) {
  const Json* datasource = nullptr;
  for (const Json& variable : dashboard_["templating"]["list"]) {
    if (variable.value("type", std::string()) == "datasource") {
      datasource = &variable;
    }
  }
  ASSERT_NE(datasource, nullptr) << "no datasource variable";
  EXPECT_EQ(datasource->value("query", std::string()), "prometheus");
  const std::string uid =
      absl::StrCat("${", datasource->value("name", ""), "}");
  const auto uses_variable = [&](const Json& object) {
    return object.contains("datasource") && object["datasource"].is_object() &&
           object["datasource"].value("uid", std::string()) == uid;
  };
  ForEachPanel(dashboard_, [&](const Json& panel) {
    if (panel.value("type", std::string()) == "row") return;
    EXPECT_TRUE(uses_variable(panel)) << PanelName(panel);
    ASSERT_TRUE(panel.contains("targets") && !panel["targets"].empty())
        << PanelName(panel);
    for (const Json& target : panel["targets"]) {
      EXPECT_TRUE(uses_variable(target))
          << PanelName(panel) << " target " << target.value("refId", "");
    }
  });
  for (const Json& variable : dashboard_["templating"]["list"]) {
    if (variable.value("type", std::string()) != "query") continue;
    EXPECT_TRUE(uses_variable(variable)) << variable.value("name", "");
  }
}

TEST_F(MonitoringTest, DashboardFiltersByJobAndUsesTheRateInterval) {
  std::set<std::string> variables;
  for (const Json& variable : dashboard_["templating"]["list"]) {
    variables.insert(variable.value("name", std::string()));
  }
  EXPECT_THAT(variables, Contains("job"));
  EXPECT_THAT(variables, Contains("subject"));
  for (const auto& [where, expr] : DashboardExpressions(dashboard_)) {
    if (absl::StartsWith(where, "variable job")) continue;
    const Scan scan = ScanExpression(expr);
    for (const Scan::Selector& selector : scan.selectors) {
      EXPECT_THAT(selector.labels, Contains("job"))
          << where << ": " << selector.name << " is not filtered by $job";
    }
    for (const std::string& range : scan.ranges) {
      EXPECT_EQ(range, "$__rate_interval") << where << ": " << expr;
    }
  }
}

}  // namespace
}  // namespace natsgw::monitoring_lint
