#include "harness/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace natsgw::testing {
namespace {

// Starts argv[0] with stdout and stderr on `out`, in a process group of its
// own, killed if this process dies. Returns the child's pid.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, int out) {
  // Everything the child needs is built before fork(): after it, only
  // async-signal-safe calls are allowed in a multi-threaded process.
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    dup2(out, STDOUT_FILENO);
    dup2(out, STDERR_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  // Also here, so that the group exists before any kill(-pid) by the caller
  // whichever process runs first (EACCES once the child has exec'd: it did
  // it itself).
  setpgid(pid, pid);
  return pid;
}

}  // namespace

absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  if (argv.empty()) return absl::InvalidArgumentError("RunProcess: empty argv");
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  absl::StatusOr<pid_t> started = Spawn(argv, fds[1]);
  close(fds[1]);
  if (!started.ok()) {
    close(fds[0]);
    return started.status();
  }
  const pid_t pid = *started;

  ProcessResult result;
  const absl::Time deadline = absl::Now() + timeout;
  char buf[4096];
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      result.timed_out = true;
      kill(-pid, SIGKILL);
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready =
        poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) {
      // Cannot happen with one valid descriptor; never leave the child.
      const int error = errno;
      kill(-pid, SIGKILL);
      close(fds[0]);
      while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
      return absl::InternalError(absl::StrCat("poll: ", std::strerror(error)));
    }
    if (ready == 0) continue;  // timeout: re-checked at the top
    const ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF (or a read error): the child closed its output
    result.output.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  // EOF normally means the child has exited, but it may have closed its
  // output and kept running: wait only until the deadline, then kill it.
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      return absl::InternalError(
          absl::StrCat("waitpid: ", std::strerror(errno)));
    }
    if (r == 0 && !result.timed_out && absl::Now() >= deadline) {
      result.timed_out = true;
      kill(-pid, SIGKILL);
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  result.exit_code = WIFEXITED(status)     ? WEXITSTATUS(status)
                     : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                           : -1;
  return result;
}

absl::StatusOr<std::unique_ptr<BackgroundProcess>> BackgroundProcess::Start(
    const std::vector<std::string>& argv, const std::string& output_path) {
  if (argv.empty()) {
    return absl::InvalidArgumentError("BackgroundProcess: empty argv");
  }
  const int out = open(output_path.c_str(),
                       O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out < 0) {
    return absl::InternalError(
        absl::StrCat("open ", output_path, ": ", std::strerror(errno)));
  }
  absl::StatusOr<pid_t> pid = Spawn(argv, out);
  close(out);
  if (!pid.ok()) return pid.status();
  return std::unique_ptr<BackgroundProcess>(new BackgroundProcess(*pid));
}

BackgroundProcess::~BackgroundProcess() {
  if (reaped_) return;
  kill(-pid_, SIGKILL);
  while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
}

void BackgroundProcess::Signal(int signal) {
  if (!reaped_) kill(-pid_, signal);
}

namespace {

// True when every thread of `pid` is in state T (stopped) or t (traced).
// False while one runs, or when /proc has no such process.
bool AllThreadsStopped(pid_t pid) {
  std::error_code error;
  const std::filesystem::path tasks =
      std::filesystem::path("/proc") / std::to_string(pid) / "task";
  std::filesystem::directory_iterator it(tasks, error);
  if (error) return false;
  bool any = false;
  for (const auto& task : it) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    // "<tid> (<comm>) <state> ...": comm may hold spaces and parentheses.
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
    const char state = stat[paren + 2];
    if (state != 'T' && state != 't') return false;
    any = true;
  }
  return any;
}

}  // namespace

absl::Status BackgroundProcess::Stop(absl::Duration timeout) {
  if (reaped_) {
    return absl::FailedPreconditionError("Stop(): the process has exited");
  }
  kill(-pid_, SIGSTOP);
  const absl::Time deadline = absl::Now() + timeout;
  while (!AllThreadsStopped(pid_)) {
    if (kill(pid_, 0) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("Stop(): pid ", pid_, " is gone"));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("Stop(): pid ", pid_, " not stopped after ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> BackgroundProcess::Wait(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!reaped_) {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      exit_code_ = WIFEXITED(status)     ? WEXITSTATUS(status)
                   : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                         : -1;
      break;
    }
    if (r < 0 && errno != EINTR) {
      return absl::InternalError(
          absl::StrCat("waitpid: ", std::strerror(errno)));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError("the process is still running");
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return exit_code_;
}

absl::Status PromtoolCheckMetrics(absl::string_view exposition) {
  const char* tmp = std::getenv("TMPDIR");
  std::string path = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                                  "/natsgw-scrape-XXXXXX");
  const int fd = mkstemp(path.data());
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("mkstemp: ", strerror(errno)));
  }
  {
    std::ofstream out(path, std::ios::trunc);
    out << exposition;
  }
  close(fd);
  absl::StatusOr<ProcessResult> lint = RunProcess(
      {"/bin/sh", "-c",
       "command -v promtool >/dev/null || { echo 'promtool not found: install "
       "the Debian package prometheus'; exit 127; }; promtool check metrics "
       "< \"$0\"",
       path},
      absl::Seconds(60));
  unlink(path.c_str());
  if (!lint.ok()) return lint.status();
  if (lint->exit_code == 127) return absl::NotFoundError(lint->output);
  if (lint->exit_code != 0) return absl::InvalidArgumentError(lint->output);
  return absl::OkStatus();
}

}  // namespace natsgw::testing
