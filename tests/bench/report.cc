// natsgw-bench's Markdown report and SVG latency plot (see report.h).
#include "report.h"

#include <sched.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

// The build type comes from CMake (report.cmake) as a bare token.
#define NATSGW_BENCH_STR2(x) #x
#define NATSGW_BENCH_STR(x) NATSGW_BENCH_STR2(x)

namespace natsgw::bench {
namespace {

// ---------------------------------------------------------------------------
// Describing the run

// Quotes `arg` for a POSIX shell when it holds anything but plain characters.
std::string ShellQuote(absl::string_view arg) {
  const bool plain =
      !arg.empty() && std::all_of(arg.begin(), arg.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
               absl::string_view("_-.,/=:@%+").find(c) !=
                   absl::string_view::npos;
      });
  if (plain) return std::string(arg);
  return absl::StrCat("'", absl::StrReplaceAll(arg, {{"'", "'\\''"}}), "'");
}

// The value of "<key>\t: value" lines (/proc/cpuinfo) or "Key: value"
// (/proc/meminfo): the first line whose key is `key`.
std::string ProcField(const std::string& file, absl::string_view key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    if (absl::StripAsciiWhitespace(absl::string_view(line).substr(0, colon)) ==
        key) {
      return std::string(absl::StripAsciiWhitespace(
          absl::string_view(line).substr(colon + 1)));
    }
  }
  return "";
}

// The nats-server binary the benchmark would start: the lookup of the test
// harness (NATS_SERVER_EXE, then PATH, then Debian's /usr/sbin).
std::string NatsServerExe() {
  const char* env = std::getenv("NATS_SERVER_EXE");
  if (env != nullptr && *env != '\0') return env;
  const char* path = std::getenv("PATH");
  if (path != nullptr) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      std::string candidate = absl::StrCat(dir, "/nats-server");
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
    }
  }
  if (access("/usr/sbin/nats-server", X_OK) == 0)
    return "/usr/sbin/nats-server";
  return "";
}

// The first line `command` prints (stdout and stderr), or "" when it cannot
// be run.
std::string FirstLineOf(const std::string& command) {
  std::FILE* pipe = popen(absl::StrCat(command, " 2>&1").c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof(buf), pipe) != nullptr) out += buf;
  const int status = pclose(pipe);
  if (status != 0) return "";
  std::vector<std::string> lines = absl::StrSplit(out, '\n');
  return lines.empty() ? "" : std::string(absl::StripAsciiWhitespace(lines[0]));
}

std::string NatsServerVersion() {
  const std::string exe = NatsServerExe();
  if (exe.empty()) return "";
  // "nats-server: v2.9.10"
  std::string line = FirstLineOf(absl::StrCat(ShellQuote(exe), " --version"));
  absl::string_view v = line;
  absl::ConsumePrefix(&v, "nats-server:");
  return std::string(absl::StripAsciiWhitespace(v));
}

std::string Compiler() {
#if defined(__clang__)
  return absl::StrCat("Clang ", __clang_major__, ".", __clang_minor__, ".",
                      __clang_patchlevel__);
#elif defined(__GNUC__)
  return absl::StrCat("GCC ", __GNUC__, ".", __GNUC_MINOR__, ".",
                      __GNUC_PATCHLEVEL__);
#else
  return "";
#endif
}

std::string BuildType() {
  std::string type;
#ifdef NATSGW_BENCH_BUILD_TYPE
  type = NATSGW_BENCH_STR(NATSGW_BENCH_BUILD_TYPE);
#endif
  if (type.empty()) {
#ifdef __OPTIMIZE__
    type = "optimized";
#else
    type = "not optimized";
#endif
  }
  // A sanitizer's instrumentation dominates the figures: say so.
#if defined(__SANITIZE_ADDRESS__)
  absl::StrAppend(&type, ", AddressSanitizer");
#elif defined(__SANITIZE_THREAD__)
  absl::StrAppend(&type, ", ThreadSanitizer");
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  absl::StrAppend(&type, ", AddressSanitizer");
#elif __has_feature(thread_sanitizer)
  absl::StrAppend(&type, ", ThreadSanitizer");
#elif __has_feature(memory_sanitizer)
  absl::StrAppend(&type, ", MemorySanitizer");
#endif
#endif
  return type;
}

// ---------------------------------------------------------------------------
// Number formatting

std::string FormatUs(double us) {
  if (us <= 0) return "—";
  if (us < 1) return absl::StrFormat("%.2f", us);
  if (us < 10) return absl::StrFormat("%.1f", us);
  return absl::StrFormat("%.0f", us);
}

std::string FormatOps(double ops) {
  if (ops <= 0) return "—";
  if (ops >= 1e6) return absl::StrFormat("%.2f M", ops / 1e6);
  if (ops >= 1e5) return absl::StrFormat("%.0f k", ops / 1e3);
  if (ops >= 1e4) return absl::StrFormat("%.1f k", ops / 1e3);
  return absl::StrFormat("%.0f", ops);
}

std::string FormatBytes(double bytes) {
  if (bytes < 1024) return absl::StrFormat("%.0f B", bytes);
  if (bytes < 1024.0 * 1024) return absl::StrFormat("%.1f KiB", bytes / 1024);
  if (bytes < 1024.0 * 1024 * 1024) {
    return absl::StrFormat("%.1f MiB", bytes / (1024.0 * 1024));
  }
  return absl::StrFormat("%.1f GiB", bytes / (1024.0 * 1024 * 1024));
}

// A plain number: integers as such, otherwise three significant digits (at
// least the integer part).
std::string FormatNumber(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrFormat("%.0f", v);
  }
  if (std::fabs(v) >= 100) return absl::StrFormat("%.0f", v);
  if (std::fabs(v) >= 10) return absl::StrFormat("%.1f", v);
  return absl::StrFormat("%.3g", v);
}

// A named figure by its name's convention: "*_bytes" are sizes, everything
// else a plain number (nanoseconds, counts, allocations).
std::string FormatFigure(absl::string_view key, double v) {
  if (absl::EndsWith(key, "_bytes")) return FormatBytes(v);
  return FormatNumber(v);
}

std::string PayloadLabel(int bytes) {
  if (bytes >= 1024 && bytes % 1024 == 0) {
    return absl::StrCat(bytes / 1024, " KiB");
  }
  return absl::StrCat(bytes, " B");
}

// ---------------------------------------------------------------------------
// Reading results

bool IsRatio(absl::string_view key) { return absl::StrContains(key, "_vs_"); }

bool ThroughputOnly(const Result& r) {
  return r.p50_us == 0 && r.p90_us == 0 && r.p99_us == 0 && r.max_us == 0;
}

bool IsScaling(const Result& r) {
  return absl::StartsWith(r.scenario, "scale_");
}
bool IsOverhead(const Result& r) {
  return absl::StartsWith(r.scenario, "overhead_");
}

// `pattern` is a scenario name, or a prefix followed by '*'.
bool Matches(absl::string_view pattern, absl::string_view name) {
  if (absl::ConsumeSuffix(&pattern, "*"))
    return absl::StartsWith(name, pattern);
  return pattern == name;
}

// The ratios of `r`, compactly, grouped by baseline: "p50 1.03×, p99 1.10×
// raw_request_asap; ops 8.90× rpc_sync". Baselines come in the order of
// `table` (the results of r's payload size), unknown ones last.
std::string Ratios(const Result& r, const std::vector<Result>& table) {
  auto rank = [&table](absl::string_view name) {
    for (size_t i = 0; i < table.size(); ++i) {
      if (table[i].scenario == name) return i;
    }
    return table.size();
  };
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;
  for (const auto& [key, value] : r.figures) {
    const size_t vs = key.find("_vs_");
    if (vs == std::string::npos) continue;
    const std::string baseline = key.substr(vs + 4);
    auto group = std::find_if(groups.begin(), groups.end(), [&](const auto& g) {
      return g.first == baseline;
    });
    if (group == groups.end()) {
      groups.emplace_back(baseline, std::vector<std::string>{});
      group = groups.end() - 1;
    }
    group->second.push_back(
        absl::StrFormat("%s %.2f×", key.substr(0, vs), value));
  }
  std::stable_sort(groups.begin(), groups.end(),
                   [&](const auto& a, const auto& b) {
                     return rank(a.first) < rank(b.first);
                   });
  std::vector<std::string> parts;
  for (const auto& [baseline, ratios] : groups) {
    parts.push_back(absl::StrCat(absl::StrJoin(ratios, ", "), " ", baseline));
  }
  return absl::StrJoin(parts, "; ");
}

// A scaling scenario's family: its name without a trailing "_<number>"
// (scale_callers_16 -> scale_callers).
std::string Family(absl::string_view name) {
  const size_t us = name.rfind('_');
  if (us == absl::string_view::npos || us + 1 == name.size()) {
    return std::string(name);
  }
  absl::string_view tail = name.substr(us + 1);
  const bool number = std::all_of(tail.begin(), tail.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  });
  return std::string(number ? name.substr(0, us) : name);
}

// ---------------------------------------------------------------------------
// Markdown

// Text for a table cell: '|' would end the cell, a newline the row.
std::string Cell(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"|", "\\|"}, {"\n", " "}});
}

std::string Code(absl::string_view name) {
  return absl::StrCat("`", Cell(name), "`");
}

void Row(std::string* out, const std::vector<std::string>& cells) {
  absl::StrAppend(out, "| ", absl::StrJoin(cells, " | "), " |\n");
}

// A table's header row and rule; `align` has an 'l' (text) or 'r' (number)
// per column.
void Header(std::string* out, const std::vector<std::string>& cells,
            absl::string_view align) {
  Row(out, cells);
  std::vector<std::string> rule;
  for (size_t i = 0; i < cells.size(); ++i) {
    rule.push_back(i < align.size() && align[i] == 'r' ? "---:" : "---");
  }
  absl::StrAppend(out, "|", absl::StrJoin(rule, "|"), "|\n");
}

std::string MachineLine(const RunInfo& info) {
  std::vector<std::string> parts;
  if (!info.cpu_model.empty()) parts.push_back(info.cpu_model);
  if (info.cpus_online > 0) {
    std::string cpus = absl::StrCat(info.cpus_online, " CPUs");
    if (info.cpus_available > 0 && info.cpus_available != info.cpus_online) {
      absl::StrAppend(&cpus, " (", info.cpus_available,
                      " available to the benchmark)");
    }
    parts.push_back(cpus);
  }
  if (info.ram_bytes > 0) {
    parts.push_back(absl::StrCat(FormatBytes(info.ram_bytes), " RAM"));
  }
  if (info.virtual_machine) parts.push_back("virtual machine");
  return parts.empty() ? "unknown" : absl::StrJoin(parts, ", ");
}

std::string RoundsText(const RunInfo& info) {
  if (info.rounds <= 1) return "one round per scenario and payload size";
  return absl::StrCat(info.rounds,
                      " rounds per scenario and payload size, each figure "
                      "the median round");
}

std::string OrUnknown(const std::string& s) {
  return s.empty() ? "unknown" : s;
}

// A row of the per-size and scaling tables: p50, p90, p99, ops/s.
std::vector<std::string> StandardCells(const Result& r) {
  const bool no_latency = ThroughputOnly(r);
  return {no_latency ? "—" : FormatUs(r.p50_us),
          no_latency ? "—" : FormatUs(r.p90_us),
          no_latency ? "—" : FormatUs(r.p99_us), FormatOps(r.ops_per_s)};
}

// The non-ratio figures of `r`, compactly: "allocs_per_op 0, spans 2".
std::string OtherFigures(const Result& r, absl::string_view except = "") {
  std::vector<std::string> parts;
  for (const auto& [key, value] : r.figures) {
    if (IsRatio(key) || key == except) continue;
    parts.push_back(absl::StrCat(key, " ", FormatFigure(key, value)));
  }
  return absl::StrJoin(parts, ", ");
}

void SizeTable(std::string* out, const SizeResults& size) {
  std::vector<const Result*> rows;
  bool others = false;
  for (const Result& r : size.results) {
    if (IsScaling(r) || IsOverhead(r)) continue;
    rows.push_back(&r);
    others = others || !OtherFigures(r).empty();
  }
  if (rows.empty()) return;
  absl::StrAppend(out, "## ", PayloadLabel(size.payload_bytes), " payload\n\n");
  std::vector<std::string> head = {"Scenario", "p50 µs", "p90 µs",
                                   "p99 µs",   "ops/s",  "vs"};
  if (others) head.push_back("Other figures");
  Header(out, head, "lrrrrll");
  for (const Result* r : rows) {
    std::vector<std::string> cells = {Code(r->scenario)};
    for (std::string& c : StandardCells(*r)) cells.push_back(std::move(c));
    cells.push_back(Cell(Ratios(*r, size.results)));
    if (others) cells.push_back(Cell(OtherFigures(*r)));
    Row(out, cells);
  }
  absl::StrAppend(out, "\n");
}

// One table per family of scale_* scenarios (scale_callers_1,
// scale_callers_4, ...), each with its own figures as columns; latency
// columns only if some row measured latency.
void ScalingTables(std::string* out, const std::vector<SizeResults>& sizes) {
  struct Table {
    std::string family;
    std::vector<std::pair<const SizeResults*, const Result*>> rows;
    std::vector<std::string> keys;  // figure columns, in order of appearance
    std::set<int> payloads;
    bool latency = false;
  };
  std::vector<Table> tables;
  for (const SizeResults& size : sizes) {
    for (const Result& r : size.results) {
      if (!IsScaling(r)) continue;
      const std::string family = Family(r.scenario);
      auto t = std::find_if(tables.begin(), tables.end(),
                            [&](const Table& t) { return t.family == family; });
      if (t == tables.end()) {
        tables.push_back(Table{family, {}, {}, {}, false});
        t = tables.end() - 1;
      }
      t->rows.emplace_back(&size, &r);
      t->payloads.insert(size.payload_bytes);
      t->latency = t->latency || !ThroughputOnly(r);
      for (const auto& [key, value] : r.figures) {
        if (!IsRatio(key) &&
            std::find(t->keys.begin(), t->keys.end(), key) == t->keys.end()) {
          t->keys.push_back(key);
        }
      }
    }
  }
  if (tables.empty()) return;
  absl::StrAppend(out, "## Scaling\n\n");
  for (const Table& t : tables) {
    const bool by_payload = t.payloads.size() > 1;
    absl::StrAppend(out, "### ", Code(absl::StrCat(t.family, "_*")), "\n\n");
    std::vector<std::string> head;
    std::string align;
    auto column = [&](const std::string& h, char a) {
      head.push_back(Cell(h));
      align.push_back(a);
    };
    if (by_payload) column("Payload", 'r');
    column("Scenario", 'l');
    if (t.latency) {
      for (const char* h : {"p50 µs", "p90 µs", "p99 µs"}) column(h, 'r');
    }
    column("ops/s", 'r');
    for (const std::string& k : t.keys) column(k, 'r');
    column("vs", 'l');
    Header(out, head, align);
    for (const auto& [size, r] : t.rows) {
      std::vector<std::string> cells;
      if (by_payload) cells.push_back(PayloadLabel(size->payload_bytes));
      cells.push_back(Code(r->scenario));
      std::vector<std::string> standard = StandardCells(*r);
      if (!t.latency) standard.erase(standard.begin(), standard.begin() + 3);
      for (std::string& c : standard) cells.push_back(std::move(c));
      for (const std::string& k : t.keys) {
        auto it = r->figures.find(k);
        cells.push_back(it == r->figures.end() ? ""
                                               : FormatFigure(k, it->second));
      }
      cells.push_back(Cell(Ratios(*r, size->results)));
      Row(out, cells);
    }
    absl::StrAppend(out, "\n");
  }
}

void OverheadTable(std::string* out, const std::vector<SizeResults>& sizes) {
  std::vector<std::pair<const SizeResults*, const Result*>> rows;
  std::set<int> payloads;
  for (const SizeResults& size : sizes) {
    for (const Result& r : size.results) {
      if (!IsOverhead(r)) continue;
      rows.emplace_back(&size, &r);
      payloads.insert(size.payload_bytes);
    }
  }
  if (rows.empty()) return;
  const bool by_payload = payloads.size() > 1;
  absl::StrAppend(out,
                  "## Overhead\n\n"
                  "In-process loops without NATS: nanoseconds per call "
                  "(`*_ns`), sizes (`*_bytes`); `ns_per_op` is one message's "
                  "work at both ends.\n\n");
  std::vector<std::string> head;
  if (by_payload) head.push_back("Payload");
  head.push_back("Scenario");
  head.push_back("ns_per_op");
  head.push_back("Other figures");
  Header(out, head, by_payload ? "rlrl" : "lrl");
  for (const auto& [size, r] : rows) {
    std::vector<std::string> cells;
    if (by_payload) cells.push_back(PayloadLabel(size->payload_bytes));
    cells.push_back(Code(r->scenario));
    auto ns = r->figures.find("ns_per_op");
    cells.push_back(ns == r->figures.end() ? "—" : FormatNumber(ns->second));
    std::string other = OtherFigures(*r, "ns_per_op");
    const std::string ratios = Ratios(*r, size->results);
    if (!ratios.empty()) {
      absl::StrAppend(&other, other.empty() ? "" : "; ", ratios);
    }
    cells.push_back(Cell(other));
    Row(out, cells);
  }
  absl::StrAppend(out, "\n");
}

// ---------------------------------------------------------------------------
// Goals: each a quantity computed from the results of one payload size and a
// target. A quantity is NOT_FOUND, naming what is missing, when its inputs
// were not measured.

// The results the goals are computed from: one payload size, falling back
// to the first size for scenarios that ran only with it (the
// payload-independent overhead scenarios).
struct Lookup {
  const SizeResults* size;
  const SizeResults* first;

  const Result* Find(absl::string_view name) const {
    for (const SizeResults* s : {size, first}) {
      for (const Result& r : s->results) {
        if (r.scenario == name) return &r;
      }
    }
    return nullptr;
  }
  std::vector<const Result*> FindAll(absl::string_view pattern) const {
    std::vector<const Result*> found;
    for (const Result& r : size->results) {
      if (Matches(pattern, r.scenario)) found.push_back(&r);
    }
    return found;
  }
};

// A measured value and how it was obtained ("`rpc_sync` p50 312 µs").
struct Value {
  double value;
  std::string how;
};

using Quantity = std::function<absl::StatusOr<Value>(const Lookup&)>;

// One figure of one result: "p50", "p99", "ops/s", or a named figure.
absl::StatusOr<Value> FigureOf(const Result& r, const std::string& what) {
  if (what == "p50" || what == "p99") {
    const double v = what == "p50" ? r.p50_us : r.p99_us;
    if (v <= 0) {
      return absl::NotFoundError(
          absl::StrCat("no ", what, " latency for ", Code(r.scenario)));
    }
    return Value{
        v, absl::StrCat(Code(r.scenario), " ", what, " ", FormatUs(v), " µs")};
  }
  if (what == "ops/s") {
    if (r.ops_per_s <= 0) {
      return absl::NotFoundError(
          absl::StrCat("no throughput for ", Code(r.scenario)));
    }
    return Value{r.ops_per_s, absl::StrCat(Code(r.scenario), " ",
                                           FormatOps(r.ops_per_s), " ops/s")};
  }
  auto it = r.figures.find(what);
  if (it == r.figures.end()) {
    return absl::NotFoundError(
        absl::StrCat("no ", what, " figure on ", Code(r.scenario)));
  }
  return Value{it->second, absl::StrCat(Code(r.scenario), " ", what, " ",
                                        FormatFigure(what, it->second))};
}

Quantity Of(std::string scenario, std::string what) {
  return [scenario, what](const Lookup& l) -> absl::StatusOr<Value> {
    const Result* r = l.Find(scenario);
    if (r == nullptr) {
      return absl::NotFoundError(absl::StrCat("no ", Code(scenario)));
    }
    return FigureOf(*r, what);
  };
}

// The highest `what` among the scenarios matching `patterns`.
Quantity Highest(std::vector<std::string> patterns, std::string what) {
  return [patterns, what](const Lookup& l) -> absl::StatusOr<Value> {
    std::optional<Value> best;
    int found = 0, count = 0;
    for (const std::string& p : patterns) {
      for (const Result* r : l.FindAll(p)) {
        ++found;
        absl::StatusOr<Value> v = FigureOf(*r, what);
        if (!v.ok()) continue;
        ++count;
        if (!best || v->value > best->value) best = *std::move(v);
      }
    }
    if (!best) {
      std::vector<std::string> names;
      for (const std::string& p : patterns) names.push_back(Code(p));
      return absl::NotFoundError(
          found == 0
              ? absl::StrCat("no ", absl::StrJoin(names, ", "))
              : absl::StrCat("no ", what, " on ", absl::StrJoin(names, ", ")));
    }
    if (count > 1) absl::StrAppend(&best->how, " (highest of ", count, ")");
    return *best;
  };
}

// The first of `choices` that was measured.
Quantity FirstOf(std::vector<Quantity> choices) {
  return [choices](const Lookup& l) -> absl::StatusOr<Value> {
    std::vector<std::string> missing;
    for (const Quantity& q : choices) {
      absl::StatusOr<Value> v = q(l);
      if (v.ok()) return v;
      missing.emplace_back(v.status().message());
    }
    return absl::NotFoundError(absl::StrJoin(missing, "; "));
  };
}

Quantity Ratio(Quantity num, Quantity den) {
  return [num, den](const Lookup& l) -> absl::StatusOr<Value> {
    absl::StatusOr<Value> a = num(l);
    if (!a.ok()) return a.status();
    absl::StatusOr<Value> b = den(l);
    if (!b.ok()) return b.status();
    if (b->value <= 0) {
      return absl::NotFoundError(absl::StrCat(b->how, " is zero"));
    }
    return Value{a->value / b->value, absl::StrCat(a->how, " / ", b->how)};
  };
}

// The sum of every `required` part and of those `optional` parts that were
// measured.
Quantity Sum(std::vector<Quantity> required, std::vector<Quantity> optional) {
  return [required, optional](const Lookup& l) -> absl::StatusOr<Value> {
    Value sum{0, ""};
    auto add = [&sum](const Value& v) {
      sum.value += v.value;
      absl::StrAppend(&sum.how, sum.how.empty() ? "" : " + ", v.how);
    };
    for (const Quantity& q : required) {
      absl::StatusOr<Value> v = q(l);
      if (!v.ok()) return v.status();
      add(*v);
    }
    for (const Quantity& q : optional) {
      absl::StatusOr<Value> v = q(l);
      if (v.ok()) add(*v);
    }
    return sum;
  };
}

enum class Cmp { kAtMost, kAtLeast, kBelow, kEqual };

struct Goal {
  std::string name;
  Quantity measure;
  Cmp cmp;
  double target;
  std::string unit;  // appended to numbers: "×", " ns", ""
};

const std::vector<Goal>& Goals() {
  static const auto* goals = new std::vector<Goal>{
      {"Typed call p50 vs nats.c request (SendAsap)",
       Ratio(Of("rpc_sync", "p50"), Of("raw_request_asap", "p50")),
       Cmp::kAtMost, 1.05, "×"},
      {"Typed call p99 vs nats.c request (SendAsap)",
       Ratio(Of("rpc_sync", "p99"), Of("raw_request_asap", "p99")),
       Cmp::kAtMost, 1.2, "×"},
      {"Typed call p50 vs nats.c request (default options)",
       Ratio(Of("rpc_sync", "p50"), Of("raw_request_default", "p50")),
       Cmp::kAtMost, 0.25, "×"},
      {"Typed call p50 vs gRPC C++ unary call",
       Ratio(Of("rpc_sync", "p50"), Of("grpc_unary_sync", "p50")), Cmp::kAtMost,
       1.5, "×"},
      {"Asynchronous call throughput vs gRPC C++ async",
       Ratio(Highest({"rpc_async_*"}, "ops/s"),
             FirstOf({Of("grpc_unary_async_best", "ops/s"),
                      Of("grpc_unary_async", "ops/s")})),
       Cmp::kAtLeast, 2, "×"},
      {"Publish throughput vs nats.c publishing the same bytes",
       Ratio(Of("gateway_publish", "ops/s"),
             Of("raw_publish_same_bytes", "ops/s")),
       Cmp::kAtLeast, 0.9, "×"},
      {"Metrics and tracing per message",
       Sum({Of("overhead_metrics", "ns_per_op"),
            Of("overhead_trace_context", "ns_per_op")},
           {Of("overhead_spans", "no_sink_ns")}),
       Cmp::kBelow, 200, " ns"},
      {"Heap allocations per message (publish, handle, reply)",
       Highest({"gateway_publish", "gateway_serve", "pubsub_e2e*"},
               "allocs_per_op"),
       Cmp::kEqual, 0, ""},
  };
  return *goals;
}

bool Met(Cmp cmp, double value, double target) {
  switch (cmp) {
    case Cmp::kAtMost:
      return value <= target;
    case Cmp::kAtLeast:
      return value >= target;
    case Cmp::kBelow:
      return value < target;
    case Cmp::kEqual:
      return value == target;
  }
  return false;
}

const char* CmpText(Cmp cmp) {
  switch (cmp) {
    case Cmp::kAtMost:
      return "≤";
    case Cmp::kAtLeast:
      return "≥";
    case Cmp::kBelow:
      return "<";
    case Cmp::kEqual:
      return "=";
  }
  return "?";
}

std::string FormatGoalValue(double v, const std::string& unit) {
  if (unit == "×") return absl::StrFormat("%.2f×", v);
  return absl::StrCat(FormatNumber(v), unit);
}

// The payload size the goals are checked at: 64 B if measured, else the
// first.
const SizeResults* GoalSize(const std::vector<SizeResults>& sizes) {
  for (const SizeResults& s : sizes) {
    if (s.payload_bytes == 64) return &s;
  }
  return &sizes.front();
}

void GoalsTable(std::string* out, const std::vector<SizeResults>& sizes) {
  const SizeResults* size = GoalSize(sizes);
  const Lookup lookup{size, &sizes.front()};
  absl::StrAppend(out, "## Goals (", PayloadLabel(size->payload_bytes),
                  " payload)\n\n");
  Header(out, {"Goal", "Target", "Measured", "Result"}, "lrll");
  int met = 0, missed = 0;
  for (const Goal& goal : Goals()) {
    absl::StatusOr<Value> v = goal.measure(lookup);
    std::vector<std::string> cells = {
        Cell(goal.name), absl::StrCat(CmpText(goal.cmp), " ",
                                      FormatGoalValue(goal.target, goal.unit))};
    if (!v.ok()) {
      cells.push_back("—");
      cells.push_back(
          Cell(absl::StrCat("not measured (", v.status().message(), ")")));
    } else {
      const bool ok = Met(goal.cmp, v->value, goal.target);
      (ok ? met : missed)++;
      cells.push_back(Cell(absl::StrCat(
          "**", FormatGoalValue(v->value, goal.unit), "** = ", v->how)));
      cells.push_back(ok ? "met" : "**missed**");
    }
    Row(out, cells);
  }
  absl::StrAppend(out, "\n", met, " met, ", missed, " missed, ",
                  Goals().size() - met - missed, " not measured.\n\n");
}

std::string Markdown(const std::vector<SizeResults>& sizes,
                     const RunInfo& info) {
  std::string out = "# natsgw-bench results\n\n";
  absl::StrAppend(&out, "- **Date:** ", OrUnknown(info.date_utc), "\n",
                  "- **Machine:** ", MachineLine(info), "\n", "- **Kernel:** ",
                  OrUnknown(info.kernel), "\n", "- **nats-server:** ",
                  OrUnknown(info.nats_server), "\n", "- **Build:** ",
                  OrUnknown(info.compiler), ", ", OrUnknown(info.build_type),
                  "\n", "- **Rounds:** ", RoundsText(info), "\n",
                  "- **Command:** `", info.command, "`\n\n");
  absl::StrAppend(
      &out,
      "Latencies are per operation in microseconds; ops/s is throughput. "
      "\"—\": a throughput-only scenario. \"vs\": a ratio to a baseline "
      "measured in the same run with the same payload (for p50/p99 lower is "
      "faster, for ops higher is faster).\n\n");
  bool any = false;
  for (const SizeResults& s : sizes) any = any || !s.results.empty();
  if (!any) {
    absl::StrAppend(&out, "No results.\n");
    return out;
  }
  GoalsTable(&out, sizes);
  for (const SizeResults& s : sizes) SizeTable(&out, s);
  ScalingTables(&out, sizes);
  OverheadTable(&out, sizes);
  return out;
}

// ---------------------------------------------------------------------------
// SVG

std::string Xml(absl::string_view text) {
  return absl::StrReplaceAll(text, {{"&", "&amp;"},
                                    {"<", "&lt;"},
                                    {">", "&gt;"},
                                    {"\"", "&quot;"},
                                    {"'", "&apos;"}});
}

// 10^decade microseconds as a tick label: "0.1 µs", "10 µs", "1 ms", "1 s".
std::string DecadeLabel(int decade) {
  if (decade >= 6) return absl::StrCat(std::pow(10, decade - 6), " s");
  if (decade >= 3) return absl::StrCat(std::pow(10, decade - 3), " ms");
  if (decade >= 0) return absl::StrCat(std::pow(10, decade), " µs");
  return absl::StrFormat("%.*f µs", -decade, std::pow(10.0, decade));
}

bool IsBaseline(absl::string_view name) {
  return absl::StartsWith(name, "raw_") || absl::StartsWith(name, "grpc_");
}

std::string Plot(const std::vector<SizeResults>& sizes, const RunInfo& info) {
  // Rows: every scenario with latencies in any size, in order of first
  // appearance; one panel per size, sharing the rows and the axis.
  std::vector<std::string> names;
  std::vector<const SizeResults*> panels;
  std::vector<std::map<std::string, const Result*>> by_name;
  double lo_value = 0, hi_value = 0;
  for (const SizeResults& size : sizes) {
    std::map<std::string, const Result*> found;
    for (const Result& r : size.results) {
      if (r.p50_us <= 0) continue;
      found[r.scenario] = &r;
      if (std::find(names.begin(), names.end(), r.scenario) == names.end()) {
        names.push_back(r.scenario);
      }
      for (double v : {r.p50_us, r.p90_us, r.p99_us}) {
        if (v <= 0) continue;
        lo_value = lo_value == 0 ? v : std::min(lo_value, v);
        hi_value = std::max(hi_value, v);
      }
    }
    if (!found.empty()) {
      panels.push_back(&size);
      by_name.push_back(std::move(found));
    }
  }

  constexpr double kRowH = 18, kPanelGap = 24, kPad = 10;
  constexpr double kDecadeW = 58;  // room for a tick label such as "100 ms"
  constexpr double kCharW = 7.3;   // 12 px monospace
  constexpr double kTop = 86;
  const int lo =
      static_cast<int>(std::floor(std::log10(lo_value > 0 ? lo_value : 1)));
  int hi =
      static_cast<int>(std::ceil(std::log10(hi_value > 0 ? hi_value : 10)));
  if (hi <= lo) hi = lo + 1;
  const double panel_w = std::max(240.0, kDecadeW * (hi - lo) + 2 * kPad);
  size_t longest = 10;
  for (const std::string& n : names) longest = std::max(longest, n.size());
  const double label_w = 16 + kCharW * longest;
  const double left = 10 + label_w;
  const int n_panels = std::max<int>(1, panels.size());
  // The heading's lines, and a width that holds them (at about 6.8 px a
  // character of 12 px text, 9.6 px of the 16 px bold title).
  const std::string title =
      absl::StrCat("natsgw-bench latency percentiles — ",
                   info.date_utc.empty() ? "date unknown" : info.date_utc);
  const std::string machine = MachineLine(info);
  const std::string setup = absl::StrCat(
      "nats-server ", OrUnknown(info.nats_server), " · ",
      OrUnknown(info.compiler), " ", OrUnknown(info.build_type), " · ",
      info.rounds <= 1 ? std::string("one round")
                       : absl::StrCat("median of ", info.rounds, " rounds"),
      " · log scale");
  const double width = std::max(
      {640.0, left + n_panels * panel_w + (n_panels - 1) * kPanelGap + 20,
       20 + 9.6 * title.size(), 20 + 6.8 * machine.size(),
       20 + 6.8 * setup.size()});
  const double rows_bottom = kTop + kRowH * std::max<size_t>(1, names.size());
  const double height = rows_bottom + 96;

  auto panel_x = [&](int p) { return left + p * (panel_w + kPanelGap); };
  auto x_of = [&](int p, double us) {
    const double f = (std::log10(us) - lo) / (hi - lo);
    return panel_x(p) + kPad + std::clamp(f, 0.0, 1.0) * (panel_w - 2 * kPad);
  };
  auto row_y = [&](size_t i) { return kTop + kRowH * (i + 0.5); };

  std::string s;
  absl::StrAppendFormat(
      &s,
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
      "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n",
      width, height, width, height);
  absl::StrAppendFormat(&s,
                        "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" "
                        "fill=\"#ffffff\"/>\n",
                        width, height);
  absl::StrAppendFormat(&s,
                        "<text x=\"10\" y=\"24\" font-size=\"16\" "
                        "font-weight=\"bold\">%s</text>\n",
                        Xml(title));
  for (const auto& [y, line] : {std::pair{42, &machine}, {58, &setup}}) {
    absl::StrAppendFormat(
        &s, "<text x=\"10\" y=\"%d\" fill=\"#333333\">%s</text>\n", y,
        Xml(*line));
  }

  if (names.empty()) {
    absl::StrAppendFormat(
        &s, "<text x=\"10\" y=\"%.0f\">no latency results</text>\n", kTop + 14);
    absl::StrAppend(&s, "</svg>\n");
    return s;
  }

  // Row stripes across all panels, then labels.
  for (size_t i = 0; i < names.size(); ++i) {
    if (i % 2 == 0) {
      absl::StrAppendFormat(
          &s,
          "<rect x=\"10\" y=\"%.1f\" width=\"%.0f\" height=\"%.0f\" "
          "fill=\"#f3f4f6\"/>\n",
          kTop + kRowH * i, width - 20, kRowH);
    }
    const bool base = IsBaseline(names[i]);
    absl::StrAppendFormat(&s,
                          "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" "
                          "font-family=\"monospace\" fill=\"%s\"%s>%s</text>\n",
                          left - 6, row_y(i) + 4, base ? "#666666" : "#000000",
                          base ? " font-style=\"italic\"" : "", Xml(names[i]));
  }

  for (int p = 0; p < static_cast<int>(panels.size()); ++p) {
    const double x0 = panel_x(p);
    absl::StrAppendFormat(
        &s,
        "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\" "
        "font-weight=\"bold\">%s</text>\n",
        x0 + panel_w / 2, kTop - 8,
        Xml(absl::StrCat(PayloadLabel(panels[p]->payload_bytes), " payload")));
    // Grid: decades solid, the steps between them faint.
    for (int d = lo; d <= hi; ++d) {
      const double x = x_of(p, std::pow(10.0, d));
      absl::StrAppendFormat(
          &s,
          "<line class=\"tick\" x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" "
          "y2=\"%.0f\" stroke=\"#b0b0b0\" stroke-width=\"1\"/>\n",
          x, kTop, x, rows_bottom + 4);
      absl::StrAppendFormat(
          &s,
          "<text class=\"tick-label\" x=\"%.1f\" y=\"%.0f\" "
          "text-anchor=\"middle\" font-size=\"11\">%s</text>\n",
          x, rows_bottom + 18, Xml(DecadeLabel(d)));
      if (d == hi) break;
      for (int k = 2; k <= 9; ++k) {
        const double xm = x_of(p, k * std::pow(10.0, d));
        absl::StrAppendFormat(
            &s,
            "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" "
            "stroke=\"#e2e2e2\" stroke-width=\"1\"/>\n",
            xm, kTop, xm, rows_bottom);
      }
    }
    absl::StrAppendFormat(
        &s,
        "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" "
        "fill=\"none\" stroke=\"#808080\"/>\n",
        x0, kTop, panel_w, rows_bottom - kTop);

    const std::string size_label = PayloadLabel(panels[p]->payload_bytes);
    for (size_t i = 0; i < names.size(); ++i) {
      auto it = by_name[p].find(names[i]);
      if (it == by_name[p].end()) continue;
      const Result& r = *it->second;
      const double y = row_y(i);
      auto tip = [&](const char* which, double v) {
        return Xml(absl::StrCat(r.scenario, ", ", size_label, ": ", which, " ",
                                FormatUs(v), " µs"));
      };
      if (r.p99_us > 0) {
        absl::StrAppendFormat(
            &s,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
            "stroke=\"#9aa5b1\" stroke-width=\"2\"/>\n",
            x_of(p, r.p50_us), y, x_of(p, r.p99_us), y);
        const double x = x_of(p, r.p99_us);
        absl::StrAppendFormat(
            &s,
            "<path class=\"p99\" d=\"M%.1f %.1fL%.1f %.1fL%.1f %.1fZ\" "
            "fill=\"#d62728\" stroke=\"#ffffff\" stroke-width=\"0.8\">"
            "<title>%s</title></path>\n",
            x, y - 5.5, x + 5, y + 4, x - 5, y + 4, tip("p99", r.p99_us));
      }
      if (r.p90_us > 0) {
        const double x = x_of(p, r.p90_us);
        absl::StrAppendFormat(
            &s,
            "<path class=\"p90\" d=\"M%.1f %.1fL%.1f %.1fL%.1f %.1fL%.1f "
            "%.1fZ\" fill=\"#ff7f0e\" stroke=\"#ffffff\" "
            "stroke-width=\"0.8\"><title>%s</title></path>\n",
            x, y - 5, x + 5, y, x, y + 5, x - 5, y, tip("p90", r.p90_us));
      }
      absl::StrAppendFormat(
          &s,
          "<circle class=\"p50\" cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" "
          "fill=\"#1f77b4\" stroke=\"#ffffff\" stroke-width=\"0.8\">"
          "<title>%s</title></circle>\n",
          x_of(p, r.p50_us), y, tip("p50", r.p50_us));
    }
  }

  // Axis caption and legend.
  const double axis_mid =
      (panel_x(0) + panel_x(static_cast<int>(panels.size()) - 1) + panel_w) / 2;
  absl::StrAppendFormat(
      &s,
      "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\" "
      "fill=\"#333333\">latency per operation (log scale)</text>\n",
      axis_mid, rows_bottom + 36);
  const double ly = rows_bottom + 64;
  double lx = 10;
  absl::StrAppendFormat(&s,
                        "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" "
                        "fill=\"#1f77b4\"/>\n<text x=\"%.1f\" y=\"%.1f\">p50"
                        "</text>\n",
                        lx + 5, ly, lx + 14, ly + 4);
  lx += 54;
  absl::StrAppendFormat(
      &s,
      "<path d=\"M%.1f %.1fL%.1f %.1fL%.1f %.1fL%.1f %.1fZ\" "
      "fill=\"#ff7f0e\"/>\n<text x=\"%.1f\" y=\"%.1f\">p90</text>\n",
      lx + 5, ly - 5, lx + 10, ly, lx + 5, ly + 5, lx, ly, lx + 14, ly + 4);
  lx += 54;
  absl::StrAppendFormat(
      &s,
      "<path d=\"M%.1f %.1fL%.1f %.1fL%.1f %.1fZ\" fill=\"#d62728\"/>\n"
      "<text x=\"%.1f\" y=\"%.1f\">p99</text>\n",
      lx + 5, ly - 5.5, lx + 10, ly + 4, lx, ly + 4, lx + 14, ly + 4);
  lx += 54;
  absl::StrAppendFormat(&s,
                        "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                        "stroke=\"#9aa5b1\" stroke-width=\"2\"/>\n"
                        "<text x=\"%.1f\" y=\"%.1f\">p50 to p99</text>\n",
                        lx, ly, lx + 22, ly, lx + 28, ly + 4);
  lx += 116;
  absl::StrAppendFormat(
      &s,
      "<text x=\"%.1f\" y=\"%.1f\" fill=\"#666666\" font-style=\"italic\">"
      "grey names: baselines (raw nats.c, gRPC C++)</text>\n",
      lx, ly + 4);
  absl::StrAppend(&s, "</svg>\n");
  return s;
}

// Replaces `path` with `content`.
absl::Status WriteFile(const std::string& path, const std::string& content) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", path));
  }
  const size_t written = std::fwrite(content.data(), 1, content.size(), f);
  const int write_errno = errno;
  if (written != content.size()) {
    std::fclose(f);
    return absl::ErrnoToStatus(write_errno,
                               absl::StrCat("cannot write ", path));
  }
  if (std::fclose(f) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace

RunInfo DescribeRun(int argc, char** argv, int rounds) {
  RunInfo info;
  std::vector<std::string> args;
  bool external_server = false;
  for (int i = 0; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (i == 0) {
      const size_t slash = arg.rfind('/');
      if (slash != absl::string_view::npos) arg.remove_prefix(slash + 1);
    }
    // --nats_url=URL or --nats_url URL, with one or two dashes: the run
    // used that server, not one it started.
    absl::string_view flag = arg;
    absl::ConsumePrefix(&flag, "-");
    absl::ConsumePrefix(&flag, "-");
    if (i > 0 && absl::ConsumePrefix(&flag, "nats_url")) {
      if (absl::ConsumePrefix(&flag, "=")) {
        external_server = !flag.empty();
      } else if (flag.empty() && i + 1 < argc && argv[i + 1][0] != '\0') {
        external_server = true;
      }
    }
    // Output files by name only: where one run kept them says nothing about
    // the run.
    std::string shown(arg);
    for (absl::string_view output : {"--markdown=", "--plot="}) {
      if (absl::StartsWith(arg, output)) {
        absl::string_view path = arg.substr(output.size());
        const size_t slash = path.rfind('/');
        if (slash != absl::string_view::npos) path.remove_prefix(slash + 1);
        shown = absl::StrCat(output, path);
      }
    }
    args.push_back(ShellQuote(shown));
  }
  info.command = absl::StrJoin(args, " ");
  info.date_utc = absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(),
                                   absl::UTCTimeZone());

  info.cpu_model = ProcField("/proc/cpuinfo", "model name");
  const std::string flags = ProcField("/proc/cpuinfo", "flags");
  info.virtual_machine =
      absl::StrContains(absl::StrCat(" ", flags, " "), " hypervisor ");
  info.cpus_online = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    info.cpus_available = CPU_COUNT(&set);
  }
  // "MemTotal:       24553636 kB"
  std::vector<std::string> mem = absl::StrSplit(
      ProcField("/proc/meminfo", "MemTotal"), ' ', absl::SkipEmpty());
  int64_t kib = 0;
  if (!mem.empty() && absl::SimpleAtoi(mem[0], &kib)) {
    info.ram_bytes = kib * 1024;
  }
  struct utsname u;
  if (uname(&u) == 0) {
    info.kernel = absl::StrCat(u.sysname, " ", u.release, " ", u.machine);
  }
  info.nats_server = NatsServerVersion();
  if (external_server) {
    info.nats_server =
        absl::StrCat(info.nats_server.empty() ? "unknown" : info.nats_server,
                     " installed here; the run used the server at --nats_url");
  }
  info.compiler = Compiler();
  info.build_type = BuildType();
  info.rounds = rounds;
  return info;
}

absl::Status WriteMarkdown(const std::vector<SizeResults>& sizes,
                           const RunInfo& info, const std::string& path) {
  return WriteFile(path, Markdown(sizes, info));
}

absl::Status WriteLatencyPlot(const std::vector<SizeResults>& sizes,
                              const RunInfo& info, const std::string& path) {
  return WriteFile(path, Plot(sizes, info));
}

}  // namespace natsgw::bench
