// natsgw-bench's report: a run's results as a Markdown document and as an
// SVG plot of latency percentiles.
//
// The Markdown opens with what the run was (RunInfo), checks the
// performance goals against the run's own figures, then gives one table per
// payload size, a "Scaling" table (scale_* scenarios) and an "Overhead"
// table (overhead_* scenarios). The SVG draws p50, p90 and p99 of every
// scenario that measures latency on a logarithmic microsecond axis, one
// panel per payload size; it is self-contained (no scripts, no external
// fonts or images).
//
//   const RunInfo info = DescribeRun(argc, argv, rounds);
//   absl::Status s = WriteMarkdown(by_size, info, "results.md");
//   if (s.ok()) s = WriteLatencyPlot(by_size, info, "latency.svg");
//
// Thread-safety: the functions are thread-compatible. DescribeRun() starts
// `nats-server --version` as a child process and waits for it.
#ifndef NATSGW_TESTS_BENCH_REPORT_H_
#define NATSGW_TESTS_BENCH_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench_common.h"

namespace natsgw::bench {

// What a run was and where it ran: printed at the top of the Markdown and in
// the plot's title, so that figures are never read without their machine.
// Empty strings and zeros mean "unknown".
struct RunInfo {
  std::string command;     // the command line, shell-quoted; the program
                           // named without its directory
  std::string date_utc;    // when the run ended, "2024-05-31 12:34:56 UTC"
  std::string cpu_model;   // /proc/cpuinfo "model name"
  int cpus_online = 0;     // processors online
  int cpus_available = 0;  // processors this process may run on (nproc)
  bool virtual_machine = false;  // the CPU reports a hypervisor
  int64_t ram_bytes = 0;         // /proc/meminfo MemTotal
  std::string kernel;            // uname: "Linux 6.1.0-21-amd64 x86_64"
  std::string nats_server;       // `nats-server --version`: "v2.9.10"; with
                                 // a note when the run used --nats_url
  std::string compiler;          // "GCC 12.2.0", "Clang 14.0.6"
  std::string build_type;        // CMake's: "RelWithDebInfo"; with the
                                 // sanitizer, if one was compiled in
  int rounds = 0;                // rounds per scenario (each figure is the
                                 // median round)
};

// Describes this run: `argc`/`argv` as main() received them, `rounds` as
// run. Never fails: what cannot be found out is left empty.
RunInfo DescribeRun(int argc, char** argv, int rounds);

// Writes `sizes` (natsgw_bench.cc's results, in table order, with their
// ratios in Result::figures) as a Markdown document to `path`, replacing it.
// Errors: when the file cannot be written, the status absl::ErrnoToStatus()
// makes of the failing call's errno, its message naming `path` and the
// system's error text ("cannot write <path>: Permission denied").
absl::Status WriteMarkdown(const std::vector<SizeResults>& sizes,
                           const RunInfo& info, const std::string& path);

// Writes an SVG plot of the latency percentiles of `sizes` to `path`,
// replacing it. Errors as WriteMarkdown().
absl::Status WriteLatencyPlot(const std::vector<SizeResults>& sizes,
                              const RunInfo& info, const std::string& path);

}  // namespace natsgw::bench

#endif  // NATSGW_TESTS_BENCH_REPORT_H_
