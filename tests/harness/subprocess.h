// harness/subprocess.h: runs a program to completion with its output
// captured, bounded in time, for tests that drive real tools (natsgw-gen,
// node with nats.js, the CLI).
//
//   absl::StatusOr<natsgw::testing::ProcessResult> r =
//       natsgw::testing::RunProcess({"/usr/bin/node", "check.js"},
//                                   absl::Seconds(60));
//   ASSERT_TRUE(r.ok()) << r.status();
//   EXPECT_EQ(r->exit_code, 0) << r->output;
//
// The child gets stdout and stderr on one pipe (interleaved as written) and
// runs in a process group of its own, which is killed as a whole (SIGKILL)
// when the timeout passes, so nothing it started keeps the pipe open; it is
// also killed if the test process dies (PR_SET_PDEATHSIG). No child outlives
// its test.
//
// Errors: INTERNAL if the pipe or fork fails. A program that cannot be
// executed is reported as exit code 127, as by a shell.
//
// Thread-safety: RunProcess may be called from several threads at once.
#ifndef NATSGW_TESTS_HARNESS_SUBPROCESS_H_
#define NATSGW_TESTS_HARNESS_SUBPROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace natsgw::testing {

struct ProcessResult {
  // Exit code, or 128 + signal number if the child was killed.
  int exit_code = -1;
  // stdout and stderr, interleaved.
  std::string output;
  // True if the child was killed because `timeout` passed.
  bool timed_out = false;
};

// Runs argv[0] (an absolute path, not searched on PATH) with arguments
// argv[1..] and waits for it to exit, for at most `timeout`.
absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         absl::Duration timeout);

// Runs `promtool check metrics` (Debian package prometheus) on a Prometheus
// text exposition, as a scrape would read it. OK when it passes;
// INVALID_ARGUMENT with promtool's output when it does not; NOT_FOUND when
// promtool is not installed.
absl::Status PromtoolCheckMetrics(absl::string_view exposition);

// A program running in the background, its stdout and stderr appended to a
// file, for tests that crash and restart services. Started in a process group
// of its own and killed with its parent (PR_SET_PDEATHSIG); the destructor
// SIGKILLs the group and reaps the process, so none outlives its test.
//
// Thread-safety: thread-compatible.
class BackgroundProcess {
 public:
  // Starts argv[0] (an absolute path) with arguments argv[1..].
  static absl::StatusOr<std::unique_ptr<BackgroundProcess>> Start(
      const std::vector<std::string>& argv, const std::string& output_path);
  ~BackgroundProcess();

  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  // Sends `signal` to the process group.
  void Signal(int signal);
  // SIGSTOPs the process group and waits, up to `timeout`, until every
  // thread of the process is stopped: a stop is asynchronous, and until it
  // reaches them the other threads keep answering. DEADLINE_EXCEEDED if
  // some thread is still running then; FAILED_PRECONDITION if it exited.
  absl::Status Stop(absl::Duration timeout = absl::Seconds(5));
  // Waits for the process to exit, up to `timeout`; returns its exit code
  // (128 + signal if killed). DEADLINE_EXCEEDED if it is still running.
  absl::StatusOr<int> Wait(absl::Duration timeout);
  pid_t pid() const { return pid_; }

 private:
  explicit BackgroundProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
  bool reaped_ = false;
  int exit_code_ = -1;
};

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_HARNESS_SUBPROCESS_H_
