// natsgw-bench's report (report.h) on hand-made results: the Markdown's
// tables and goals, the SVG's structure and escaping, and write errors.
#include "report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "bench_common.h"

namespace natsgw::bench {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Result Latency(const std::string& name, double p50, double p90, double p99,
               double ops) {
  Result r;
  r.scenario = name;
  r.ops = 1000;
  r.p50_us = p50;
  r.p90_us = p90;
  r.p99_us = p99;
  r.max_us = p99 * 2;
  r.ops_per_s = ops;
  return r;
}

Result ThroughputOnly(const std::string& name, double ops) {
  Result r;
  r.scenario = name;
  r.ops = 1000;
  r.ops_per_s = ops;
  return r;
}

// A 64 B run: some goals met, some missed, gRPC's sync call not measured.
SizeResults Size64() {
  SizeResults s;
  s.payload_bytes = 64;
  s.results.push_back(Latency("raw_request_default", 1000, 1100, 1300, 990));
  s.results.push_back(Latency("raw_request_asap", 300, 400, 600, 3100));
  Result rpc = Latency("rpc_sync", 309, 420, 660, 3000);
  rpc.figures["p50_vs_raw_request_asap"] = 1.03;
  rpc.figures["p99_vs_raw_request_asap"] = 1.1;
  rpc.figures["p50_vs_raw_request_default"] = 0.309;
  s.results.push_back(rpc);
  s.results.push_back(Latency("rpc_async_16", 700, 900, 1500, 20000));
  s.results.push_back(Latency("rpc_async_64", 2200, 3000, 5400, 26000));
  s.results.push_back(Latency("grpc_unary_async", 90, 120, 300, 10000));
  s.results.push_back(Latency("raw_publish_same_bytes", 1.2, 2, 30, 200000));
  Result publish = Latency("gateway_publish", 2.5, 4, 45, 150000);
  publish.figures["allocs_per_op"] = 0;
  publish.figures["ops_vs_raw_publish_same_bytes"] = 0.75;
  s.results.push_back(publish);
  Result request = Latency("gateway_serve", 310, 410, 620, 3050);
  request.figures["allocs_per_op"] = 0;
  s.results.push_back(request);
  Result pubsub = Latency("pubsub_e2e", 80, 120, 400, 11000);
  pubsub.figures["allocs_per_op"] = 2;
  s.results.push_back(pubsub);
  s.results.push_back(ThroughputOnly("js_consume", 5000));
  Result scale = Latency("scale_connections_100", 400, 500, 900, 2500);
  scale.figures["rss_bytes"] = 50 * 1024 * 1024;
  scale.figures["connections"] = 100;
  scale.figures["p50_vs_rpc_sync"] = 1.29;
  s.results.push_back(scale);
  Result in_flight = ThroughputOnly("scale_in_flight_64", 30000);
  in_flight.figures["rss_bytes"] = 30 * 1024 * 1024;
  in_flight.figures["in_flight"] = 64;
  s.results.push_back(in_flight);
  Result metrics = ThroughputOnly("overhead_metrics", 8e6);
  metrics.figures["ns_per_op"] = 120;
  metrics.figures["publish_ns"] = 60;
  s.results.push_back(metrics);
  Result trace = ThroughputOnly("overhead_trace_context", 2e7);
  trace.figures["ns_per_op"] = 50;
  s.results.push_back(trace);
  Result spans = ThroughputOnly("overhead_spans", 5e5);
  spans.figures["ns_per_op"] = 2000;
  spans.figures["no_sink_ns"] = 25;
  s.results.push_back(spans);
  return s;
}

SizeResults Size1KiB() {
  SizeResults s;
  s.payload_bytes = 1024;
  s.results.push_back(Latency("raw_request_asap", 320, 420, 640, 3000));
  s.results.push_back(Latency("rpc_sync", 330, 450, 700, 2900));
  return s;
}

RunInfo Info() {
  RunInfo info;
  info.command = "natsgw-bench --payload=all";
  info.date_utc = "2024-05-31 12:00:00 UTC";
  info.cpu_model = "Test CPU";
  info.cpus_online = 2;
  info.cpus_available = 2;
  info.ram_bytes = int64_t{8} << 30;
  info.kernel = "Linux 6.1.0 x86_64";
  info.nats_server = "v2.9.10";
  info.compiler = "GCC 12.2.0";
  info.build_type = "RelWithDebInfo";
  info.rounds = 3;
  return info;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A file of its own for the running test (ctest runs the cases as parallel
// processes).
std::string TempPath(absl::string_view ext) {
  const ::testing::TestInfo* test =
      ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat(::testing::TempDir(), "/report_test_",
                      test->test_suite_name(), "_", test->name(), "_", getpid(),
                      ext);
}

std::string Markdown(const std::vector<SizeResults>& sizes) {
  const std::string path = TempPath(".md");
  absl::Status s = WriteMarkdown(sizes, Info(), path);
  EXPECT_TRUE(s.ok()) << s;
  std::string text = ReadFile(path);
  std::remove(path.c_str());
  return text;
}

std::string Svg(const std::vector<SizeResults>& sizes) {
  const std::string path = TempPath(".svg");
  absl::Status s = WriteLatencyPlot(sizes, Info(), path);
  EXPECT_TRUE(s.ok()) << s;
  std::string text = ReadFile(path);
  std::remove(path.c_str());
  return text;
}

// The Markdown table row whose first cell is `first`, or "" if none.
std::string RowOf(const std::string& markdown, const std::string& first) {
  for (absl::string_view line : absl::StrSplit(markdown, '\n')) {
    if (absl::StartsWith(line, absl::StrCat("| ", first, " |"))) {
      return std::string(line);
    }
  }
  return "";
}

// The last cell of a table row.
std::string LastCell(const std::string& row) {
  std::vector<std::string> cells = absl::StrSplit(row, " | ");
  if (cells.empty()) return "";
  std::string last = cells.back();
  if (absl::EndsWith(last, " |")) last.resize(last.size() - 2);
  return last;
}

TEST(ReportMarkdown, HeaderDescribesTheRun) {
  const std::string md = Markdown({Size64()});
  EXPECT_THAT(md, HasSubstr("2024-05-31 12:00:00 UTC"));
  EXPECT_THAT(md, HasSubstr("Test CPU, 2 CPUs, 8.0 GiB RAM"));
  EXPECT_THAT(md, HasSubstr("**nats-server:** v2.9.10"));
  EXPECT_THAT(md, HasSubstr("`natsgw-bench --payload=all`"));
  EXPECT_THAT(md, HasSubstr("GCC 12.2.0, RelWithDebInfo"));
}

TEST(ReportMarkdown, OneTablePerPayloadSize) {
  const std::string md = Markdown({Size64(), Size1KiB()});
  EXPECT_THAT(md, HasSubstr("## 64 B payload\n\n| Scenario | p50 µs | p90 µs "
                            "| p99 µs | ops/s | vs |"));
  EXPECT_THAT(md, HasSubstr("## 1 KiB payload\n\n| Scenario |"));
  EXPECT_EQ(RowOf(md, "`raw_request_asap`"),
            "| `raw_request_asap` | 300 | 400 | 600 | 3100 |  |  |");
  EXPECT_THAT(RowOf(md, "`rpc_sync`"),
              HasSubstr("| 309 | 420 | 660 | 3000 | p50 0.31× "
                        "raw_request_default; p50 1.03×, p99 1.10× "
                        "raw_request_asap |"));
  EXPECT_THAT(RowOf(md, "`gateway_publish`"),
              HasSubstr("| 2.5 | 4.0 | 45 | 150 k |"));
  // Non-ratio figures get their own column.
  EXPECT_THAT(RowOf(md, "`gateway_publish`"), HasSubstr("| allocs_per_op 0 |"));
}

TEST(ReportMarkdown, ThroughputOnlyRowsHaveNoLatency) {
  const std::string md = Markdown({Size64()});
  EXPECT_THAT(RowOf(md, "`js_consume`"),
              HasSubstr("| `js_consume` | — | — | — | 5000 |"));
}

TEST(ReportMarkdown, ScalingTablesShowFiguresAsColumns) {
  const std::string md = Markdown({Size64()});
  // One table per family, with its own figures as columns.
  EXPECT_THAT(md, HasSubstr("## Scaling\n\n### `scale_connections_*`\n\n"
                            "| Scenario | p50 µs | p90 µs | p99 µs | ops/s | "
                            "connections | rss_bytes | vs |"));
  EXPECT_EQ(RowOf(md, "`scale_connections_100`"),
            "| `scale_connections_100` | 400 | 500 | 900 | 2500 | 100 | "
            "50.0 MiB | p50 1.29× rpc_sync |");
  // A family without latencies has no latency columns.
  EXPECT_THAT(md, HasSubstr("### `scale_in_flight_*`\n\n| Scenario | ops/s | "
                            "in_flight | rss_bytes | vs |"));
  EXPECT_EQ(RowOf(md, "`scale_in_flight_64`"),
            "| `scale_in_flight_64` | 30.0 k | 64 | 30.0 MiB |  |");
  // Not repeated in the per-size table.
  EXPECT_EQ(md.find("`scale_connections_100`"),
            md.rfind("`scale_connections_100`"));
}

TEST(ReportMarkdown, OverheadTableListsNsPerOp) {
  const std::string md = Markdown({Size64()});
  EXPECT_THAT(md, HasSubstr("## Overhead"));
  EXPECT_EQ(RowOf(md, "`overhead_metrics`"),
            "| `overhead_metrics` | 120 | publish_ns 60 |");
  EXPECT_EQ(RowOf(md, "`overhead_spans`"),
            "| `overhead_spans` | 2000 | no_sink_ns 25 |");
}

TEST(ReportMarkdown, GoalsMetMissedAndNotMeasured) {
  const std::string md = Markdown({Size64(), Size1KiB()});
  EXPECT_THAT(md, HasSubstr("## Goals (64 B payload)"));
  const std::string asap_p50 =
      RowOf(md, "Typed call p50 vs nats.c request (SendAsap)");
  EXPECT_THAT(asap_p50, HasSubstr("| ≤ 1.05× | **1.03×** = `rpc_sync` p50 "
                                  "309 µs / `raw_request_asap` p50 300 µs |"));
  EXPECT_EQ(LastCell(asap_p50), "met");
  EXPECT_EQ(LastCell(RowOf(md, "Typed call p99 vs nats.c request (SendAsap)")),
            "met");
  const std::string def =
      RowOf(md, "Typed call p50 vs nats.c request (default options)");
  EXPECT_THAT(def, HasSubstr("**0.31×**"));
  EXPECT_EQ(LastCell(def), "**missed**");
  EXPECT_EQ(LastCell(RowOf(md, "Typed call p50 vs gRPC C++ unary call")),
            "not measured (no `grpc_unary_sync`)");
  // No grpc_unary_async_best: grpc_unary_async is the baseline; the best of
  // the rpc_async_* is the numerator.
  const std::string async =
      RowOf(md, "Asynchronous call throughput vs gRPC C++ async");
  EXPECT_THAT(async, HasSubstr("**2.60×** = `rpc_async_64` 26.0 k ops/s "
                               "(highest of 2) / `grpc_unary_async` 10.0 k"));
  EXPECT_EQ(LastCell(async), "met");
  const std::string publish =
      RowOf(md, "Publish throughput vs nats.c publishing the same bytes");
  EXPECT_THAT(publish, HasSubstr("**0.75×**"));
  EXPECT_EQ(LastCell(publish), "**missed**");
  const std::string overhead = RowOf(md, "Metrics and tracing per message");
  EXPECT_THAT(overhead, HasSubstr("| < 200 ns | **195 ns** = "));
  EXPECT_EQ(LastCell(overhead), "met");
  const std::string allocs =
      RowOf(md, "Heap allocations per message (publish, handle, reply)");
  EXPECT_THAT(allocs, HasSubstr("**2** = `pubsub_e2e` allocs_per_op 2"));
  EXPECT_EQ(LastCell(allocs), "**missed**");
  EXPECT_THAT(md, HasSubstr("4 met, 3 missed, 1 not measured."));
}

TEST(ReportMarkdown, GoalsSkipOptionalPartsAndReportMissingInputs) {
  SizeResults s = Size64();
  std::vector<Result> kept;
  for (Result& r : s.results) {
    if (r.scenario == "overhead_spans") continue;
    if (r.scenario == "pubsub_e2e") r.figures["allocs_per_op"] = 0;
    if (r.scenario == "raw_request_default") continue;
    kept.push_back(r);
  }
  s.results = kept;
  std::string md = Markdown({s});
  // overhead_spans is optional: the sum is metrics + trace context.
  EXPECT_THAT(RowOf(md, "Metrics and tracing per message"),
              HasSubstr("**170 ns**"));
  EXPECT_EQ(LastCell(RowOf(
                md, "Heap allocations per message (publish, handle, reply)")),
            "met");
  EXPECT_EQ(
      LastCell(RowOf(md, "Typed call p50 vs nats.c request (default options)")),
      "not measured (no `raw_request_default`)");

  // overhead_trace_context is required; so are the rpc_async_* and the
  // allocation counts.
  kept.clear();
  for (Result& r : s.results) {
    if (r.scenario == "overhead_trace_context" ||
        absl::StartsWith(r.scenario, "rpc_async_")) {
      continue;
    }
    r.figures.erase("allocs_per_op");
    kept.push_back(r);
  }
  s.results = kept;
  md = Markdown({s});
  EXPECT_EQ(LastCell(RowOf(md, "Metrics and tracing per message")),
            "not measured (no `overhead_trace_context`)");
  EXPECT_EQ(
      LastCell(RowOf(md, "Asynchronous call throughput vs gRPC C++ async")),
      "not measured (no `rpc_async_*`)");
  EXPECT_EQ(LastCell(RowOf(
                md, "Heap allocations per message (publish, handle, reply)")),
            "not measured (no allocs_per_op on `gateway_publish`, "
            "`gateway_serve`, `pubsub_e2e*`)");
}

TEST(ReportMarkdown, GoalsUse64BytesAndFindPayloadIndependentScenarios) {
  // The overhead scenarios run only with the first size (here 1 KiB); the
  // goals are still checked at 64 B.
  SizeResults first = Size1KiB();
  SizeResults second = Size64();
  std::vector<Result> network;
  for (Result& r : second.results) {
    if (absl::StartsWith(r.scenario, "overhead_")) {
      first.results.push_back(r);
    } else {
      network.push_back(r);
    }
  }
  second.results = network;
  const std::string md = Markdown({first, second});
  EXPECT_THAT(md, HasSubstr("## Goals (64 B payload)"));
  EXPECT_THAT(RowOf(md, "Typed call p50 vs nats.c request (SendAsap)"),
              HasSubstr("**1.03×**"));
  EXPECT_EQ(LastCell(RowOf(md, "Metrics and tracing per message")), "met");
}

TEST(ReportMarkdown, EmptyRun) {
  const std::string md = Markdown({});
  EXPECT_THAT(md, HasSubstr("No results."));
  EXPECT_THAT(md, Not(HasSubstr("## Goals")));
}

// Checks that `xml` nests its elements properly and escapes text: every
// open tag is closed in order, and '&' starts an entity.
::testing::AssertionResult WellFormed(const std::string& xml) {
  std::vector<std::string> open;
  size_t i = 0;
  int elements = 0;
  while (i < xml.size()) {
    if (xml[i] == '&') {
      const size_t semi = xml.find(';', i);
      const std::string entity = xml.substr(i, semi - i + 1);
      if (entity != "&amp;" && entity != "&lt;" && entity != "&gt;" &&
          entity != "&quot;" && entity != "&apos;") {
        return ::testing::AssertionFailure()
               << "bad entity at " << i << ": " << xml.substr(i, 10);
      }
      i = semi + 1;
      continue;
    }
    if (xml[i] != '<') {
      ++i;
      continue;
    }
    if (xml.compare(i, 2, "<?") == 0) {
      i = xml.find("?>", i) + 2;
      continue;
    }
    const size_t end = xml.find('>', i);
    if (end == std::string::npos) {
      return ::testing::AssertionFailure() << "unterminated tag at " << i;
    }
    const std::string tag = xml.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.empty()) return ::testing::AssertionFailure() << "empty tag";
    if (tag[0] == '/') {
      if (open.empty() || open.back() != tag.substr(1)) {
        return ::testing::AssertionFailure()
               << "</" << tag.substr(1) << "> closes "
               << (open.empty() ? "nothing" : open.back());
      }
      open.pop_back();
      continue;
    }
    if (tag.find('<') != std::string::npos) {
      return ::testing::AssertionFailure() << "'<' inside tag: " << tag;
    }
    ++elements;
    const std::string name = tag.substr(0, tag.find_first_of(" \n/"));
    if (tag.back() != '/') open.push_back(name);
  }
  if (!open.empty()) {
    return ::testing::AssertionFailure() << "<" << open.back() << "> unclosed";
  }
  if (elements == 0) return ::testing::AssertionFailure() << "no elements";
  return ::testing::AssertionSuccess();
}

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos;
       at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

TEST(ReportPlot, OneMarkerPerPercentilePerScenarioAndSize) {
  const std::string svg = Svg({Size64(), Size1KiB()});
  EXPECT_TRUE(WellFormed(svg));
  EXPECT_TRUE(absl::StartsWith(svg, "<?xml")) << svg.substr(0, 40);
  EXPECT_THAT(svg, HasSubstr("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_THAT(svg, Not(HasSubstr("<script")));
  EXPECT_THAT(svg, Not(HasSubstr("href")));
  // Scenarios with latencies: 64 B has 11 (not js_consume, not the three
  // overhead_*), 1 KiB has 2.
  for (const char* p : {"class=\"p50\"", "class=\"p90\"", "class=\"p99\""}) {
    EXPECT_EQ(Count(svg, p), 13) << p;
  }
  EXPECT_THAT(svg, Not(HasSubstr(">js_consume<")));
  EXPECT_THAT(svg, HasSubstr(">rpc_sync<"));
  EXPECT_THAT(svg, HasSubstr(">64 B payload<"));
  EXPECT_THAT(svg, HasSubstr(">1 KiB payload<"));
  EXPECT_THAT(svg, HasSubstr("2024-05-31 12:00:00 UTC"));
  EXPECT_THAT(svg, HasSubstr("Test CPU"));
}

TEST(ReportPlot, LogAxisHasDecadeTicks) {
  // Values from 1.2 µs to 5.4 ms: decades from 1 µs to 10 ms.
  const std::string svg = Svg({Size64()});
  for (const char* label :
       {">1 µs<", ">10 µs<", ">100 µs<", ">1 ms<", ">10 ms<"}) {
    EXPECT_THAT(svg, HasSubstr(label));
  }
  EXPECT_THAT(svg, Not(HasSubstr(">0.1 µs<")));
  EXPECT_THAT(svg, Not(HasSubstr(">100 ms<")));
  EXPECT_EQ(Count(svg, "class=\"tick\""), 5);

  // Sub-microsecond values extend the axis down.
  SizeResults fast;
  fast.payload_bytes = 64;
  fast.results.push_back(Latency("raw_publish", 0.12, 0.3, 0.9, 4e6));
  const std::string svg2 = Svg({fast});
  EXPECT_THAT(svg2, HasSubstr(">0.1 µs<"));
  EXPECT_THAT(svg2, HasSubstr(">1 µs<"));
  EXPECT_EQ(Count(svg2, "class=\"tick\""), 2);
}

TEST(ReportPlot, EscapesNames) {
  SizeResults s;
  s.payload_bytes = 64;
  s.results.push_back(Latency("a<b&c", 10, 20, 30, 100));
  const std::string svg = Svg({s});
  EXPECT_TRUE(WellFormed(svg));
  EXPECT_THAT(svg, HasSubstr(">a&lt;b&amp;c<"));
  EXPECT_THAT(svg, Not(HasSubstr("a<b")));
}

TEST(ReportPlot, NoLatencies) {
  SizeResults s;
  s.payload_bytes = 64;
  s.results.push_back(ThroughputOnly("js_consume", 5000));
  const std::string svg = Svg({s});
  EXPECT_TRUE(WellFormed(svg));
  EXPECT_THAT(svg, HasSubstr("no latency results"));
  EXPECT_EQ(Count(svg, "class=\"p50\""), 0);
}

TEST(ReportFiles, UnwritablePathNamesPathAndError) {
  const std::string missing = TempPath("-missing") + "/results.md";
  absl::Status s = WriteMarkdown({Size64()}, Info(), missing);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(missing));
  EXPECT_THAT(std::string(s.message()), HasSubstr("No such file or directory"));

  // A directory is not a file.
  s = WriteLatencyPlot({Size64()}, Info(), ::testing::TempDir());
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("Is a directory"));
}

TEST(ReportRunInfo, DescribesCommandAndMachine) {
  std::string a0 = "/some/where/natsgw-bench", a1 = "--payload=all",
              a2 = "--scenarios=a b", a3 = "it's";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data()};
  const RunInfo info = DescribeRun(4, argv, 5);
  EXPECT_EQ(info.command,
            "natsgw-bench --payload=all '--scenarios=a b' 'it'\\''s'");
  EXPECT_EQ(info.rounds, 5);
  EXPECT_TRUE(absl::EndsWith(info.date_utc, " UTC")) << info.date_utc;
  EXPECT_GT(info.cpus_online, 0);
  EXPECT_GT(info.cpus_available, 0);
  EXPECT_FALSE(info.kernel.empty());
  EXPECT_FALSE(info.compiler.empty());
  EXPECT_FALSE(info.build_type.empty());
  EXPECT_THAT(info.nats_server, Not(HasSubstr("--nats_url")));

  std::string b1 = "--nats_url=nats://127.0.0.1:4222";
  char* argv2[] = {a0.data(), b1.data()};
  EXPECT_THAT(DescribeRun(2, argv2, 1).nats_server,
              HasSubstr("the run used the server at --nats_url"));
}

}  // namespace
}  // namespace natsgw::bench
