#include "monitoring_lint.h"

#include <algorithm>
#include <cctype>
#include <regex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace natsgw::monitoring_lint {
namespace {

bool IsIdentStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}
bool IsIdentChar(char c) {
  return IsIdentStart(c) || std::isdigit(static_cast<unsigned char>(c));
}
bool IsLabelStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool IsLabelChar(char c) {
  return IsLabelStart(c) || std::isdigit(static_cast<unsigned char>(c));
}

// Words that introduce a label list in parentheses.
bool IsGroupingKeyword(absl::string_view word) {
  return word == "by" || word == "without" || word == "on" ||
         word == "ignoring" || word == "group_left" || word == "group_right";
}

// Operators, modifiers and aggregations: never a metric name. Aggregations
// are listed because `sum by (le) (x)` puts a word between them and the
// parenthesis; functions are recognised by the parenthesis that follows.
bool IsKeyword(absl::string_view word) {
  static const std::set<std::string, std::less<>>* const kKeywords =
      new std::set<std::string, std::less<>>{
          "and",   "or",   "unless",  "bool",     "offset",
          "atan2", "inf",  "nan",     "sum",      "min",
          "max",   "avg",  "group",   "stddev",   "stdvar",
          "count", "topk", "bottomk", "quantile", "count_values"};
  return kKeywords->count(absl::AsciiStrToLower(word)) > 0;
}

// Index just past the string literal starting at `i` (a quote character).
size_t SkipString(absl::string_view e, size_t i) {
  const char quote = e[i];
  for (++i; i < e.size(); ++i) {
    if (e[i] == '\\' && quote != '`') {
      ++i;
    } else if (e[i] == quote) {
      return i + 1;
    }
  }
  return e.size();
}

// Index just past the number or duration starting at `i` (0.99, 1e-3, 5m).
size_t SkipNumber(absl::string_view e, size_t i) {
  const size_t start = i;
  while (i < e.size()) {
    const char c = e[i];
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_') {
      ++i;
    } else if ((c == '+' || c == '-') && i > start &&
               (e[i - 1] == 'e' || e[i - 1] == 'E') && i + 1 < e.size() &&
               std::isdigit(static_cast<unsigned char>(e[i + 1]))) {
      ++i;
    } else {
      break;
    }
  }
  return i;
}

size_t SkipSpace(absl::string_view e, size_t i) {
  while (i < e.size() && std::isspace(static_cast<unsigned char>(e[i]))) ++i;
  return i;
}

// Reads the label names of the matchers `{a="x", b=~"y"}` starting at `i`
// (the brace); returns the index past the closing brace.
size_t ParseMatchers(absl::string_view e, size_t i,
                     std::vector<std::string>& labels) {
  ++i;
  while (i < e.size()) {
    i = SkipSpace(e, i);
    if (i >= e.size()) break;
    const char c = e[i];
    if (c == '}') return i + 1;
    if (c == ',') {
      ++i;
    } else if (IsLabelStart(c)) {
      const size_t start = i;
      while (i < e.size() && IsLabelChar(e[i])) ++i;
      labels.emplace_back(e.substr(start, i - start));
      i = SkipSpace(e, i);
      while (i < e.size() && (e[i] == '=' || e[i] == '!' || e[i] == '~')) ++i;
      i = SkipSpace(e, i);
      if (i < e.size() && (e[i] == '"' || e[i] == '\'' || e[i] == '`')) {
        i = SkipString(e, i);
      }
    } else if (c == '"' || c == '\'' || c == '`') {
      i = SkipString(e, i);
    } else {
      ++i;
    }
  }
  return e.size();
}

// Reads the label list `(a, b)` starting at `i` (the parenthesis).
size_t ParseLabelList(absl::string_view e, size_t i,
                      std::vector<std::string>& labels) {
  ++i;
  while (i < e.size()) {
    i = SkipSpace(e, i);
    if (i >= e.size()) break;
    if (e[i] == ')') return i + 1;
    if (IsLabelStart(e[i])) {
      const size_t start = i;
      while (i < e.size() && IsLabelChar(e[i])) ++i;
      labels.emplace_back(e.substr(start, i - start));
    } else {
      ++i;
    }
  }
  return e.size();
}

std::string Unquote(absl::string_view v) {
  if (v.size() >= 2 && v.front() == '\'' && v.back() == '\'') {
    std::string out(v.substr(1, v.size() - 2));
    std::string unescaped;
    for (size_t i = 0; i < out.size(); ++i) {
      unescaped.push_back(out[i]);
      if (out[i] == '\'' && i + 1 < out.size() && out[i + 1] == '\'') ++i;
    }
    return unescaped;
  }
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
    std::string out;
    for (size_t i = 1; i + 1 < v.size(); ++i) {
      if (v[i] == '\\' && i + 2 < v.size()) ++i;
      out.push_back(v[i]);
    }
    return out;
  }
  return std::string(v);
}

}  // namespace

Catalogue ParseCatalogue(absl::string_view markdown) {
  Catalogue out;
  for (absl::string_view line : absl::StrSplit(markdown, '\n')) {
    if (!absl::StartsWith(line, "| `natsgw_")) continue;
    std::vector<absl::string_view> cells = absl::StrSplit(line, '|');
    if (cells.size() < 4) continue;
    absl::string_view name = absl::StripAsciiWhitespace(cells[1]);
    name = absl::StripSuffix(absl::StripPrefix(name, "`"), "`");
    Family family;
    family.type = std::string(absl::StripAsciiWhitespace(cells[2]));
    for (absl::string_view label : absl::StrSplit(cells[3], ',')) {
      label = absl::StripAsciiWhitespace(label);
      label = absl::StripSuffix(absl::StripPrefix(label, "`"), "`");
      if (!label.empty() && label != "—" && label != "-") {
        family.labels.insert(std::string(label));
      }
    }
    out[std::string(name)] = std::move(family);
  }
  return out;
}

const std::set<std::string>& TargetLabels() {
  static const std::set<std::string>* const kLabels =
      new std::set<std::string>{"job", "instance", "service"};
  return *kLabels;
}

std::vector<YamlExpression> YamlValues(absl::string_view yaml,
                                       absl::string_view key) {
  const std::vector<absl::string_view> lines = absl::StrSplit(yaml, '\n');
  const std::string prefix = absl::StrCat(key, ":");
  std::vector<YamlExpression> out;
  for (size_t idx = 0; idx < lines.size(); ++idx) {
    absl::string_view line = lines[idx];
    size_t col = line.find_first_not_of(' ');
    if (col == absl::string_view::npos) continue;
    if (absl::StartsWith(line.substr(col), "- ")) {
      col = line.find_first_not_of(' ', col + 2);
      if (col == absl::string_view::npos) continue;
    }
    absl::string_view rest = line.substr(col);
    if (!absl::StartsWith(rest, prefix)) continue;
    const absl::string_view value =
        absl::StripAsciiWhitespace(rest.substr(prefix.size()));
    const bool block =
        absl::StartsWith(value, "|") || absl::StartsWith(value, ">");
    std::string text = block ? "" : std::string(value);
    // A block scalar, or a plain or quoted scalar continued on the next
    // lines: every following line indented deeper than the key.
    for (size_t k = idx + 1; k < lines.size(); ++k) {
      absl::string_view next = lines[k];
      const size_t indent = next.find_first_not_of(' ');
      if (indent == absl::string_view::npos) {
        if (block) absl::StrAppend(&text, "\n");
        continue;
      }
      if (indent <= col) break;
      if (!text.empty()) absl::StrAppend(&text, block ? "\n" : " ");
      absl::StrAppend(&text,
                      absl::StripTrailingAsciiWhitespace(next.substr(indent)));
    }
    text = std::string(absl::StripAsciiWhitespace(text));
    out.push_back({static_cast<int>(idx) + 1, block ? text : Unquote(text)});
  }
  return out;
}

std::vector<RecordingRule> RecordingRules(absl::string_view yaml) {
  const std::vector<YamlExpression> records = YamlValues(yaml, "record");
  const std::vector<YamlExpression> exprs = YamlValues(yaml, "expr");
  std::vector<RecordingRule> out;
  for (size_t r = 0; r < records.size(); ++r) {
    RecordingRule rule;
    rule.name = records[r].expr;
    const int next_record =
        r + 1 < records.size() ? records[r + 1].line : 1 << 30;
    for (const YamlExpression& e : exprs) {
      if (e.line > records[r].line && e.line < next_record) {
        rule.expr = e.expr;
        break;
      }
    }
    for (const std::string& label : ScanExpression(rule.expr).grouping_labels) {
      if (label != "le" &&
          std::find(rule.kept_labels.begin(), rule.kept_labels.end(), label) ==
              rule.kept_labels.end()) {
        rule.kept_labels.push_back(label);
      }
    }
    out.push_back(std::move(rule));
  }
  return out;
}

Scan ScanExpression(absl::string_view expr) {
  Scan scan;
  absl::string_view e = absl::StripAsciiWhitespace(expr);
  // Grafana's variable query label_values(selector, label): the selector is
  // PromQL, the last argument a label name.
  static const std::regex* const kLabelValues = new std::regex(
      R"(^label_values\(\s*(?:([\s\S]*\S)\s*,\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\)$)");
  std::cmatch m;
  if (std::regex_match(e.data(), e.data() + e.size(), m, *kLabelValues)) {
    Scan inner = ScanExpression(absl::string_view(m[1].first, m[1].length()));
    inner.grouping_labels.push_back(m[2].str());
    return inner;
  }

  size_t i = 0;
  while (i < e.size()) {
    const char c = e[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '#') {
      const size_t eol = e.find('\n', i);
      i = eol == absl::string_view::npos ? e.size() : eol + 1;
    } else if (c == '"' || c == '\'' || c == '`') {
      i = SkipString(e, i);
    } else if (c == '[') {
      const size_t close = e.find(']', i);
      const size_t end = close == absl::string_view::npos ? e.size() : close;
      scan.ranges.emplace_back(e.substr(i + 1, end - i - 1));
      i = end + 1;
    } else if (std::isdigit(static_cast<unsigned char>(c)) ||
               (c == '.' && i + 1 < e.size() &&
                std::isdigit(static_cast<unsigned char>(e[i + 1])))) {
      i = SkipNumber(e, i);
    } else if (c == '$') {
      // A Grafana variable outside a string ($__rate_interval, ${job}).
      ++i;
      if (i < e.size() && e[i] == '{') {
        const size_t close = e.find('}', i);
        i = close == absl::string_view::npos ? e.size() : close + 1;
      } else {
        while (i < e.size() && IsIdentChar(e[i])) ++i;
      }
    } else if (c == '{') {
      Scan::Selector selector;
      i = ParseMatchers(e, i, selector.labels);
      scan.selectors.push_back(std::move(selector));
    } else if (IsIdentStart(c)) {
      const size_t start = i;
      while (i < e.size() && IsIdentChar(e[i])) ++i;
      const absl::string_view word = e.substr(start, i - start);
      const size_t next = SkipSpace(e, i);
      const bool paren = next < e.size() && e[next] == '(';
      if (IsGroupingKeyword(word)) {
        if (paren) i = ParseLabelList(e, next, scan.grouping_labels);
      } else if (IsKeyword(word) || paren) {
        // An operator, an aggregation or a function call.
      } else {
        Scan::Selector selector;
        selector.name = std::string(word);
        if (next < e.size() && e[next] == '{') {
          i = ParseMatchers(e, next, selector.labels);
        }
        scan.selectors.push_back(std::move(selector));
      }
    } else {
      ++i;
    }
  }
  return scan;
}

ExpressionChecker::ExpressionChecker(Catalogue catalogue,
                                     std::vector<RecordingRule> rules)
    : catalogue_(std::move(catalogue)) {
  for (RecordingRule& rule : rules) {
    std::string name = rule.name;
    rules_.emplace(std::move(name), std::move(rule));
  }
}

bool ExpressionChecker::SeriesLabels(const std::string& name,
                                     std::set<std::string>& labels,
                                     std::string& problem) const {
  labels.clear();
  if (name.find(':') != std::string::npos) {
    auto it = rules_.find(name);
    if (it == rules_.end()) {
      problem = absl::StrCat(
          name,
          " is named like a recording rule (level:metric:operations) but no "
          "rule file records it");
      return false;
    }
    labels.insert(it->second.kept_labels.begin(), it->second.kept_labels.end());
    return true;
  }
  if (name == "up") {
    labels = TargetLabels();
    return true;
  }
  if (!absl::StartsWith(name, "natsgw_")) {
    problem = absl::StrCat(
        name,
        " is neither a natsgw metric, a recording rule nor Prometheus' up");
    return false;
  }
  labels = TargetLabels();
  if (auto it = catalogue_.find(name); it != catalogue_.end()) {
    if (it->second.type == "histogram") {
      problem = absl::StrCat(name,
                             " is a histogram, which has no series of that "
                             "name: use ",
                             name, "_bucket, _sum or _count");
      return false;
    }
    labels.insert(it->second.labels.begin(), it->second.labels.end());
    return true;
  }
  for (absl::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (!absl::EndsWith(name, suffix)) continue;
    const std::string base(absl::StripSuffix(name, suffix));
    auto it = catalogue_.find(base);
    if (it == catalogue_.end()) break;
    if (it->second.type != "histogram") {
      problem = absl::StrCat(name, ": ", base, " is a ", it->second.type,
                             ", and only histograms have ", suffix, " series");
      return false;
    }
    labels.insert(it->second.labels.begin(), it->second.labels.end());
    if (suffix == "_bucket") labels.insert("le");
    return true;
  }
  problem = absl::StrCat(name, " is not in the metric catalogue (METRICS.md)");
  return false;
}

std::vector<std::string> ExpressionChecker::Check(
    absl::string_view expr) const {
  const Scan scan = ScanExpression(expr);
  std::vector<std::string> problems;
  std::set<std::string> available;
  bool all_known = true;
  for (const Scan::Selector& selector : scan.selectors) {
    if (selector.name.empty()) {
      all_known = false;
      problems.push_back(
          "a selector without a metric name ({...}) cannot be checked "
          "against the catalogue: name the metric");
      continue;
    }
    std::set<std::string> labels;
    std::string problem;
    if (!SeriesLabels(selector.name, labels, problem)) {
      problems.push_back(problem);
      all_known = false;
      continue;
    }
    for (const std::string& label : selector.labels) {
      if (labels.count(label) == 0) {
        problems.push_back(absl::StrCat("label ", label, " is not a label of ",
                                        selector.name, " (",
                                        absl::StrJoin(labels, ", "), ")"));
      }
    }
    available.insert(labels.begin(), labels.end());
  }
  // With a series unknown, its labels are too: no follow-on complaints.
  if (!all_known) return problems;
  for (const std::string& label : scan.grouping_labels) {
    if (available.count(label) == 0) {
      problems.push_back(
          absl::StrCat("grouping label ", label,
                       " is not a label of any series the expression selects (",
                       absl::StrJoin(available, ", "), ")"));
    }
  }
  return problems;
}

}  // namespace natsgw::monitoring_lint
