#include "harness/nats_server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "harness/http_client.h"
#include "harness/socket.h"

namespace natsgw::testing {
namespace {

using internal::ErrnoText;
using internal::ScopedFd;

// How often startup/readiness/exit are polled. Short enough that waits end
// promptly, long enough not to burn a core on a 2-core CI machine.
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);
// Upper bound for one readiness probe, so that a stalled server cannot eat
// the whole WaitReady budget in one go.
constexpr absl::Duration kMaxProbeTimeout = absl::Seconds(1);
// How long Stop() lets the server shut down gracefully before SIGKILL.
constexpr absl::Duration kStopGrace = absl::Seconds(10);
// How long Pause() waits for the kernel to report the process stopped.
constexpr absl::Duration kPauseTimeout = absl::Seconds(5);
// Log lines quoted in startup / readiness error messages.
constexpr int kFailureLogLines = 30;
// LogTail() reads at most this much of the end of the log: enough for any
// sensible number of lines, bounded even if a test enabled trace logging.
constexpr std::streamoff kMaxLogTailBytes = 1 << 20;
constexpr char kDefaultClusterName[] = "natsgw-test";
constexpr char kLoopback[] = "127.0.0.1";

// ---------------------------------------------------------------------------
// Environment.

std::string TempRoot() {
  const char* tmp = getenv("TMPDIR");
  return tmp != nullptr && *tmp != '\0' ? std::string(tmp) : "/tmp";
}

bool KeepTestDirs() {
  const char* keep = getenv("NATSGW_KEEP_TEST_DIRS");
  return keep != nullptr && absl::string_view(keep) == "1";
}

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

absl::StatusOr<std::string> FindServerExe() {
  const char* env = getenv("NATS_SERVER_EXE");
  if (env != nullptr && *env != '\0') {
    if (!IsExecutableFile(env)) {
      return absl::FailedPreconditionError(
          absl::StrCat("NATS_SERVER_EXE=", env, " is not an executable file"));
    }
    return std::string(env);
  }
  const char* path = getenv("PATH");
  if (path != nullptr) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
      std::string candidate = absl::StrCat(dir, "/nats-server");
      if (IsExecutableFile(candidate)) return candidate;
    }
  }
  // Debian installs it in /usr/sbin, which is not on a non-root user's PATH.
  const std::string fallback = "/usr/sbin/nats-server";
  if (IsExecutableFile(fallback)) return fallback;
  return absl::NotFoundError(
      "nats-server not found: set NATS_SERVER_EXE, put nats-server on PATH "
      "or install it (Debian package nats-server)");
}

// ---------------------------------------------------------------------------
// Just enough JSON to read nats-server's ports file and monitoring output,
// whose shapes are fixed; no JSON library is a dependency of the harness.

absl::string_view SkipSpace(absl::string_view s) {
  while (!s.empty() && absl::ascii_isspace(static_cast<unsigned char>(s[0]))) {
    s.remove_prefix(1);
  }
  return s;
}

// Length of the JSON value at the start of `s`, or npos if malformed.
size_t ValueLength(absl::string_view s) {
  if (s.empty()) return absl::string_view::npos;
  if (s[0] == '"') {
    for (size_t i = 1; i < s.size(); ++i) {
      if (s[i] == '\\') {
        ++i;
      } else if (s[i] == '"') {
        return i + 1;
      }
    }
    return absl::string_view::npos;
  }
  if (s[0] == '{' || s[0] == '[') {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if (in_string) {
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          in_string = false;
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
    }
    return absl::string_view::npos;
  }
  // Number, true, false, null.
  size_t i = 0;
  while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ']' &&
         !absl::ascii_isspace(static_cast<unsigned char>(s[i]))) {
    ++i;
  }
  return i == 0 ? absl::string_view::npos : i;
}

// The raw text of member `key` of the JSON object `object`, or nullopt.
std::optional<absl::string_view> Member(absl::string_view object,
                                        absl::string_view key) {
  object = SkipSpace(object);
  if (object.empty() || object[0] != '{') return std::nullopt;
  object.remove_prefix(1);
  for (;;) {
    object = SkipSpace(object);
    if (!object.empty() && object[0] == ',') {
      object = SkipSpace(object.substr(1));
    }
    if (object.empty() || object[0] != '"') return std::nullopt;
    const size_t key_len = ValueLength(object);
    if (key_len == absl::string_view::npos) return std::nullopt;
    const absl::string_view name = object.substr(1, key_len - 2);
    object = SkipSpace(object.substr(key_len));
    if (object.empty() || object[0] != ':') return std::nullopt;
    object = SkipSpace(object.substr(1));
    const size_t value_len = ValueLength(object);
    if (value_len == absl::string_view::npos) return std::nullopt;
    if (name == key) return object.substr(0, value_len);
    object.remove_prefix(value_len);
  }
}

// The contents of a JSON string value (escapes are not decoded: the values
// read here are names and URLs without any).
std::optional<std::string> StringValue(std::optional<absl::string_view> v) {
  if (!v.has_value() || v->size() < 2 || v->front() != '"') return std::nullopt;
  return std::string(v->substr(1, v->size() - 2));
}

// The first element of a JSON array of strings.
std::optional<std::string> FirstString(std::optional<absl::string_view> v) {
  if (!v.has_value() || v->empty() || v->front() != '[') return std::nullopt;
  absl::string_view rest = SkipSpace(v->substr(1));
  const size_t len = ValueLength(rest);
  if (len == absl::string_view::npos) return std::nullopt;
  return StringValue(rest.substr(0, len));
}

// The port of "scheme://host:port", or 0.
int UrlPort(absl::string_view url) {
  const size_t colon = url.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(url.substr(colon + 1), &port) || port <= 0 ||
      port > 65535) {
    return 0;
  }
  return port;
}

// ---------------------------------------------------------------------------
// Files and processes.

std::string Quote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) {
    return absl::StrCat("exited with status ", WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status), " (",
                        strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("ended with wait status ", status);
}

// Blocking waitpid() that survives EINTR.
void ReapBlocking(pid_t pid, int* status) {
  while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
}

// The one-letter process state from /proc/<pid>/stat ('T' when stopped by a
// signal), or '?' if unreadable.
char ProcessState(pid_t pid) {
  absl::StatusOr<std::string> stat =
      ReadWholeFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return '?';
  // "pid (comm) S ...": comm may contain spaces and parentheses, so look for
  // the last ')'.
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat->size()) return '?';
  return (*stat)[paren + 2];
}

bool IsAddressInUse(const absl::Status& status) {
  return absl::StrContains(status.message(), "address already in use");
}

// Binds `n` sockets to 127.0.0.1:0 at the same time (so the ports are
// distinct), reads the kernel's choices and releases them. Another process
// may take one before the server binds it; callers retry in that case.
absl::StatusOr<std::vector<int>> PickFreePorts(int n) {
  std::vector<ScopedFd> sockets;
  std::vector<int> ports;
  for (int i = 0; i < n; ++i) {
    ScopedFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      return absl::InternalError(absl::StrCat("socket(): ", ErrnoText(errno)));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return absl::InternalError(
          absl::StrCat("picking a free port: ", ErrnoText(errno)));
    }
    ports.push_back(ntohs(addr.sin_port));
    sockets.push_back(std::move(fd));
  }
  return ports;
}

// The ports a server reported in its ports file.
struct ListenPorts {
  int client = 0;
  int monitor = 0;
  int route = 0;  // 0 when not clustered.
};

// nats-server writes <ports_file_dir>/<argv0 basename>_<pid>.ports once all
// its listeners are up, e.g. {"nats":["nats://127.0.0.1:36241"],
// "monitoring":["http://127.0.0.1:46191"],"cluster":[...]}. Returns nullopt
// until the file exists and is complete: it may be caught half-written, and
// is then simply read again on the next poll.
std::optional<ListenPorts> ReadPortsFile(const std::string& dir, pid_t pid,
                                         bool clustered) {
  const std::string suffix = absl::StrCat("_", pid, ".ports");
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (!absl::EndsWith(it->path().filename().string(), suffix)) continue;
    absl::StatusOr<std::string> json = ReadWholeFile(it->path().string());
    if (!json.ok()) return std::nullopt;
    ListenPorts ports;
    ports.client = UrlPort(FirstString(Member(*json, "nats")).value_or(""));
    ports.monitor =
        UrlPort(FirstString(Member(*json, "monitoring")).value_or(""));
    ports.route = UrlPort(FirstString(Member(*json, "cluster")).value_or(""));
    if (ports.client == 0 || ports.monitor == 0 ||
        (clustered && ports.route == 0)) {
      return std::nullopt;
    }
    return ports;
  }
  return std::nullopt;
}

// Ports files left by killed processes (a graceful exit removes its own)
// would only confuse a human reading the directory.
void RemovePortsFiles(const std::string& dir) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->path().extension() == ".ports") {
      std::error_code ignored;
      std::filesystem::remove(it->path(), ignored);
    }
  }
}

// Forks and execs args[0] with `args`, stdin from /dev/null and
// stdout/stderr appended to `log_path`. Returns once exec() has succeeded
// (or with its errno if it failed).
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& args,
                            const std::string& log_path) {
  // Everything the child needs is prepared before fork(): in a multithreaded
  // process the child may only make async-signal-safe calls until exec.
  std::vector<std::string> arg_copies = args;
  std::vector<char*> argv;
  for (std::string& arg : arg_copies) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // The server writes its log itself (-l); its stdout/stderr go to the same
  // file so that a Go panic or a config error ends up in the failure report.
  ScopedFd log_fd(
      open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log_fd.valid()) {
    return absl::InternalError(
        absl::StrCat("cannot open ", log_path, ": ", ErrnoText(errno)));
  }
  ScopedFd null_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_fd.valid()) {
    return absl::InternalError(
        absl::StrCat("cannot open /dev/null: ", ErrnoText(errno)));
  }
  // The child reports a failed exec() through this close-on-exec pipe; EOF
  // means exec() succeeded.
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2(): ", ErrnoText(errno)));
  }
  ScopedFd exec_err_read(pipe_fds[0]);
  ScopedFd exec_err_write(pipe_fds[1]);
  const pid_t parent = getpid();
  long max_fd = sysconf(_SC_OPEN_MAX);
  if (max_fd < 0 || max_fd > 65536) max_fd = 65536;

  const pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError(absl::StrCat("fork(): ", ErrnoText(errno)));
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    // Die with the parent so that a crashed or killed test binary leaves no
    // server behind; the getppid() check closes the race where the parent
    // died before prctl().
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    // Ignored signals and the blocked mask survive exec; the server must
    // start with defaults whatever the test process set up.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    }
    dup2(null_fd.get(), STDIN_FILENO);
    dup2(log_fd.get(), STDOUT_FILENO);
    dup2(log_fd.get(), STDERR_FILENO);
    // Descriptors the test opened without O_CLOEXEC (sockets to other
    // servers, for instance) must not leak into the server: a leaked client
    // socket would keep a connection open after the test closed it.
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
      for (int fd = 3; fd < max_fd; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    execv(argv[0], argv.data());
    const int err = errno;
    [[maybe_unused]] ssize_t n = write(exec_err_write.get(), &err, sizeof(err));
    _exit(127);
  }

  exec_err_write.reset();
  int exec_errno = 0;
  ssize_t got;
  while ((got = read(exec_err_read.get(), &exec_errno, sizeof(exec_errno))) <
             0 &&
         errno == EINTR) {
  }
  if (got == static_cast<ssize_t>(sizeof(exec_errno))) {
    int ignored;
    ReapBlocking(pid, &ignored);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot execute ", args[0], ": ", ErrnoText(exec_errno)));
  }
  return pid;
}

absl::Status WithContext(const absl::Status& status, absl::string_view prefix,
                         absl::string_view suffix = "") {
  return absl::Status(status.code(),
                      absl::StrCat(prefix, status.message(), suffix));
}

}  // namespace

// ---------------------------------------------------------------------------
// NatsServer

NatsServer::NatsServer(NatsServerOptions options, std::string exe,
                       std::string dir, bool keep_dir)
    : options_(std::move(options)),
      exe_(std::move(exe)),
      dir_(std::move(dir)),
      keep_dir_(keep_dir) {}

absl::StatusOr<std::unique_ptr<NatsServer>> NatsServer::Create(
    NatsServerOptions options) {
  if (options.start_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("start_timeout must be positive");
  }
  if (options.cluster_port < 0 || options.cluster_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad cluster_port ", options.cluster_port));
  }
  absl::StatusOr<std::string> exe = FindServerExe();
  if (!exe.ok()) return exe.status();
  std::string dir_template = absl::StrCat(TempRoot(), "/natsgw-nats-XXXXXX");
  if (mkdtemp(dir_template.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp(", dir_template, ") failed: ", ErrnoText(errno)));
  }
  return std::unique_ptr<NatsServer>(new NatsServer(
      std::move(options), *std::move(exe), dir_template, KeepTestDirs()));
}

absl::StatusOr<std::unique_ptr<NatsServer>> NatsServer::Start(
    NatsServerOptions options) {
  absl::StatusOr<std::unique_ptr<NatsServer>> server =
      Create(std::move(options));
  if (!server.ok()) return server.status();
  NatsServer& s = **server;
  std::lock_guard<std::mutex> lock(s.mu_);
  const absl::Time deadline = absl::Now() + s.options_.start_timeout;
  absl::Status status = s.LaunchLocked(deadline);
  if (status.ok()) status = s.WaitReadyLocked(deadline - absl::Now());
  if (!status.ok()) {
    s.KillAndReapLocked();
    return WithContext(
        status, "starting nats-server: ",
        s.keep_dir_ ? absl::StrCat("\n(kept ", s.dir_, ")") : "");
  }
  return server;
}

NatsServer::~NatsServer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    KillAndReapLocked();
  }
  if (keep_dir_) {
    fprintf(stderr, "natsgw test harness: kept nats-server directory %s\n",
            dir_.c_str());
    return;
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string NatsServer::url() const {
  return absl::StrCat("nats://", kLoopback, ":", port_);
}

std::string NatsServer::log_path() const {
  return absl::StrCat(dir_, "/nats-server.log");
}

bool NatsServer::running() const {
  const pid_t pid = pid_.load(std::memory_order_acquire);
  if (pid == 0) return false;
  // WNOWAIT peeks without reaping, so this accessor does not interfere with
  // the lifecycle calls (and needs no lock).
  siginfo_t info{};
  if (waitid(P_PID, static_cast<id_t>(pid), &info,
             WEXITED | WNOHANG | WNOWAIT) != 0) {
    return false;  // Already reaped.
  }
  return info.si_pid == 0;
}

void NatsServer::Note(const std::string& text) const {
  const std::string line =
      absl::StrCat("[natsgw-test-harness] ",
                   absl::FormatTime("%Y/%m/%d %H:%M:%E6S", absl::Now(),
                                    absl::LocalTimeZone()),
                   " [TST] ", text, "\n");
  // O_APPEND, like the server's own log writer, so lines never overwrite
  // each other.
  ScopedFd fd(open(log_path().c_str(),
                   O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (fd.valid()) {
    // Best effort: a lost note only makes a failure report less detailed.
    [[maybe_unused]] ssize_t n = write(fd.get(), line.data(), line.size());
  }
}

absl::Status NatsServer::WriteConfig() const {
  // Ports are ephemeral (-1) on the first launch; afterwards the learned ones
  // are written explicitly so that a restarted server is reachable where
  // clients (and peers' routes) expect it.
  const bool pinned = launches_ > 0;
  std::string conf =
      "# Generated by the natsgw test harness; rewritten on every start.\n";
  absl::StrAppend(&conf, "host: ", Quote(kLoopback), "\n");
  absl::StrAppend(&conf, "port: ", pinned ? port_ : -1, "\n");
  absl::StrAppend(
      &conf, "http: ",
      Quote(absl::StrCat(kLoopback, ":", pinned ? monitor_port_ : -1)), "\n");
  absl::StrAppend(&conf, "ports_file_dir: ", Quote(dir_), "\n");
  if (!options_.server_name.empty()) {
    absl::StrAppend(&conf, "server_name: ", Quote(options_.server_name), "\n");
  }
  if (options_.jetstream) {
    absl::StrAppend(
        &conf, "jetstream {\n  store_dir: ", Quote(absl::StrCat(dir_, "/js")),
        "\n", options_.jetstream_extra_config, "\n}\n");
  }
  if (!options_.cluster_name.empty()) {
    int route_port = -1;
    if (pinned) {
      route_port = cluster_port_;
    } else if (options_.cluster_port > 0) {
      route_port = options_.cluster_port;
    }
    absl::StrAppend(&conf, "cluster {\n  name: ", Quote(options_.cluster_name),
                    "\n  host: ", Quote(kLoopback), "\n  port: ", route_port,
                    "\n  routes: [\n");
    for (const std::string& route : options_.routes) {
      absl::StrAppend(&conf, "    ", Quote(route), "\n");
    }
    absl::StrAppend(&conf, "  ]\n}\n");
  }
  if (!options_.extra_config.empty()) {
    absl::StrAppend(&conf, "# extra_config\n", options_.extra_config, "\n");
  }
  const std::string path = absl::StrCat(dir_, "/nats-server.conf");
  std::ofstream out(path, std::ios::trunc);
  out << conf;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status NatsServer::LaunchLocked(absl::Time deadline) {
  absl::Status status = WriteConfig();
  if (!status.ok()) return status;
  RemovePortsFiles(dir_);
  const std::vector<std::string> args = {
      exe_, "-c", absl::StrCat(dir_, "/nats-server.conf"), "-l", log_path()};
  Note(absl::StrCat("launch #", launches_ + 1, ": ", absl::StrJoin(args, " ")));
  absl::StatusOr<pid_t> pid = Spawn(args, log_path());
  if (!pid.ok()) return pid.status();
  pid_.store(*pid, std::memory_order_release);
  paused_.store(false, std::memory_order_release);
  ++launches_;

  std::optional<ListenPorts> ports;
  absl::Status last = absl::UnavailableError("no ports file yet");
  for (;;) {
    std::string how;
    if (ReapIfExitedLocked(&how)) {
      return absl::UnavailableError(absl::StrCat("nats-server ", how,
                                                 " during startup; log tail:\n",
                                                 LogTail(kFailureLogLines)));
    }
    if (!ports.has_value()) {
      ports = ReadPortsFile(dir_, *pid, !options_.cluster_name.empty());
      if (ports.has_value() && launches_ == 1) {
        port_ = ports->client;
        monitor_port_ = ports->monitor;
        cluster_port_ = ports->route;
      } else if (ports.has_value() &&
                 (ports->client != port_ || ports->monitor != monitor_port_ ||
                  ports->route != cluster_port_)) {
        KillAndReapLocked();
        return absl::InternalError(absl::StrCat(
            "restarted nats-server listens on ports ", ports->client, "/",
            ports->monitor, "/", ports->route, " instead of ", port_, "/",
            monitor_port_, "/", cluster_port_));
      }
    }
    if (ports.has_value()) {
      last = ProbeClientPort(std::clamp(
          deadline - absl::Now(), absl::Milliseconds(1), kMaxProbeTimeout));
      if (last.ok()) return absl::OkStatus();
    }
    if (absl::Now() >= deadline) {
      KillAndReapLocked();
      return absl::DeadlineExceededError(absl::StrCat(
          "nats-server did not start listening in time (", last.message(),
          "); log tail:\n", LogTail(kFailureLogLines)));
    }
    absl::SleepFor(kPollInterval);
  }
}

bool NatsServer::ReapIfExitedLocked(std::string* how) {
  const pid_t pid = pid_.load(std::memory_order_acquire);
  if (pid == 0) return false;
  int status = 0;
  pid_t r;
  while ((r = waitpid(pid, &status, WNOHANG)) < 0 && errno == EINTR) {
  }
  if (r == 0) return false;
  *how = r == pid ? DescribeWaitStatus(status)
                  : std::string("was reaped by someone else");
  pid_.store(0, std::memory_order_release);
  paused_.store(false, std::memory_order_release);
  Note(absl::StrCat("pid ", pid, " ", *how));
  return true;
}

void NatsServer::KillAndReapLocked() {
  const pid_t pid = pid_.load(std::memory_order_acquire);
  if (pid == 0) return;
  // SIGKILL also ends a stopped process; the SIGCONT is belt and braces for
  // the reap, which must not hang on a process stuck in the stopped state.
  kill(pid, SIGCONT);
  kill(pid, SIGKILL);
  int status = 0;
  ReapBlocking(pid, &status);
  pid_.store(0, std::memory_order_release);
  paused_.store(false, std::memory_order_release);
  Note(absl::StrCat("pid ", pid, " ", DescribeWaitStatus(status)));
}

absl::Status NatsServer::StopLocked() {
  const pid_t pid = pid_.load(std::memory_order_acquire);
  if (pid == 0) return absl::OkStatus();
  Note(absl::StrCat("stopping pid ", pid, " with SIGTERM"));
  // A stopped process would not act on SIGTERM until continued.
  kill(pid, SIGCONT);
  kill(pid, SIGTERM);
  const absl::Time deadline = absl::Now() + kStopGrace;
  std::string how;
  while (absl::Now() < deadline) {
    if (ReapIfExitedLocked(&how)) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(10));
  }
  Note(absl::StrCat("pid ", pid, " ignored SIGTERM for ",
                    absl::FormatDuration(kStopGrace), "; sending SIGKILL"));
  KillAndReapLocked();
  return absl::OkStatus();
}

absl::Status NatsServer::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  return StopLocked();
}

absl::Status NatsServer::Kill() {
  std::lock_guard<std::mutex> lock(mu_);
  if (pid_.load(std::memory_order_acquire) != 0) Note("killing with SIGKILL");
  KillAndReapLocked();
  return absl::OkStatus();
}

absl::Status NatsServer::Restart() { return RestartImpl(/*wait_ready=*/true); }

absl::Status NatsServer::RestartNoWait() {
  return RestartImpl(/*wait_ready=*/false);
}

absl::Status NatsServer::RestartImpl(bool wait_ready) {
  std::lock_guard<std::mutex> lock(mu_);
  if (launches_ == 0) {
    return absl::FailedPreconditionError("Restart() before a successful start");
  }
  absl::Status status = StopLocked();
  if (!status.ok()) return status;
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  for (;;) {
    status = LaunchLocked(deadline);
    if (status.ok()) break;
    // The old process's ports are free once it is reaped (Go listeners set
    // SO_REUSEADDR, so TIME_WAIT does not block them), but in the meantime
    // an unrelated outgoing connection may have been given one of them as
    // its local port. That is transient; the port cannot be changed, since
    // clients and peers expect it, so wait and retry.
    if (!IsAddressInUse(status) ||
        absl::Now() + absl::Milliseconds(250) >= deadline) {
      return WithContext(status, "restarting nats-server: ");
    }
    Note("a port is still in use; retrying");
    absl::SleepFor(absl::Milliseconds(250));
  }
  if (!wait_ready) return absl::OkStatus();
  status = WaitReadyLocked(deadline - absl::Now());
  if (!status.ok()) return WithContext(status, "restarting nats-server: ");
  return absl::OkStatus();
}

absl::Status NatsServer::Pause() {
  std::lock_guard<std::mutex> lock(mu_);
  const pid_t pid = pid_.load(std::memory_order_acquire);
  if (pid == 0) return absl::FailedPreconditionError("Pause(): not running");
  if (paused_.load(std::memory_order_acquire)) return absl::OkStatus();
  if (kill(pid, SIGSTOP) != 0) {
    return absl::InternalError(
        absl::StrCat("kill(SIGSTOP): ", ErrnoText(errno)));
  }
  // Signal delivery is asynchronous; a test that pauses and then probes must
  // not race the kernel, so wait for the stopped state to be visible.
  const absl::Time deadline = absl::Now() + kPauseTimeout;
  for (;;) {
    const char state = ProcessState(pid);
    if (state == 'T' || state == 't') break;
    std::string how;
    if (ReapIfExitedLocked(&how)) {
      return absl::FailedPreconditionError(
          absl::StrCat("Pause(): nats-server ", how));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("Pause(): pid ", pid, " not stopped after ",
                       absl::FormatDuration(kPauseTimeout), " (state '",
                       std::string(1, state), "')"));
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  paused_.store(true, std::memory_order_release);
  Note(absl::StrCat("paused pid ", pid, " with SIGSTOP"));
  return absl::OkStatus();
}

absl::Status NatsServer::Resume() {
  std::lock_guard<std::mutex> lock(mu_);
  const pid_t pid = pid_.load(std::memory_order_acquire);
  if (pid == 0) return absl::FailedPreconditionError("Resume(): not running");
  if (kill(pid, SIGCONT) != 0) {
    return absl::InternalError(
        absl::StrCat("kill(SIGCONT): ", ErrnoText(errno)));
  }
  paused_.store(false, std::memory_order_release);
  Note(absl::StrCat("resumed pid ", pid, " with SIGCONT"));
  return absl::OkStatus();
}

absl::Status NatsServer::WaitReady(absl::Duration timeout) {
  std::lock_guard<std::mutex> lock(mu_);
  return WaitReadyLocked(timeout);
}

absl::Status NatsServer::WaitReadyLocked(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last = absl::UnavailableError("not probed yet");
  for (;;) {
    if (pid_.load(std::memory_order_acquire) == 0) {
      return absl::FailedPreconditionError("nats-server is not running");
    }
    std::string how;
    if (ReapIfExitedLocked(&how)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "nats-server ", how, "; log tail:\n", LogTail(kFailureLogLines)));
    }
    const absl::Duration probe_timeout = std::clamp(
        deadline - absl::Now(), absl::Milliseconds(1), kMaxProbeTimeout);
    last = ProbeClientPort(probe_timeout);
    if (last.ok()) {
      absl::StatusOr<HttpResponse> health =
          HttpGet(kLoopback, monitor_port_, "/healthz", probe_timeout);
      if (health.ok() && health->status == 200) return absl::OkStatus();
      last = health.ok() ? absl::UnavailableError(absl::StrCat(
                               "/healthz answered ", health->status, ": ",
                               absl::StripAsciiWhitespace(health->body)))
                         : health.status();
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("nats-server ", url(), " not ready after ",
                       absl::FormatDuration(timeout), ": ", last.message(),
                       "; log tail:\n", LogTail(kFailureLogLines)));
    }
    absl::SleepFor(kPollInterval);
  }
}

absl::Status NatsServer::ProbeClientPort(absl::Duration timeout) const {
  if (port_ == 0) return absl::FailedPreconditionError("no client port yet");
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<ScopedFd> fd =
      internal::TcpConnect(kLoopback, port_, deadline);
  if (!fd.ok()) return fd.status();
  // A NATS server greets every client with "INFO {...}\r\n" before anything
  // else; the kernel alone (e.g. for a stopped server) never sends it.
  std::string greeting;
  char buf[512];
  while (greeting.size() < 5) {
    absl::StatusOr<size_t> n =
        internal::RecvSome(fd->get(), buf, sizeof(buf), deadline);
    if (!n.ok()) {
      return WithContext(n.status(),
                         absl::StrCat("waiting for INFO from ", url(), ": "));
    }
    if (*n == 0) {
      return absl::UnavailableError(
          absl::StrCat(url(), " closed the connection before sending INFO"));
    }
    greeting.append(buf, *n);
  }
  if (!absl::StartsWith(greeting, "INFO ")) {
    return absl::UnavailableError(absl::StrCat(
        url(), " sent '", greeting.substr(0, 40), "' instead of INFO"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> NatsServer::MetaLeader(
    absl::Duration timeout) const {
  absl::StatusOr<HttpResponse> jsz =
      HttpGet(kLoopback, monitor_port_, "/jsz", timeout);
  if (!jsz.ok()) return jsz.status();
  if (jsz->status != 200) {
    return absl::UnavailableError(absl::StrCat("/jsz answered ", jsz->status));
  }
  // {"...", "meta_cluster": {"name": ..., "leader": "n2", ...}}; the leader
  // member is omitted while no leader is known.
  std::optional<absl::string_view> meta = Member(jsz->body, "meta_cluster");
  std::optional<std::string> leader =
      meta.has_value() ? StringValue(Member(*meta, "leader")) : std::nullopt;
  if (!leader.has_value() || leader->empty()) {
    return absl::UnavailableError(
        absl::StrCat(server_name().empty() ? url() : server_name(),
                     " knows no JetStream meta leader"));
  }
  return *leader;
}

std::string NatsServer::LogTail(int lines) const {
  std::ifstream in(log_path(), std::ios::binary);
  if (!in) return absl::StrCat("(no log at ", log_path(), ")");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  const std::streamoff start =
      std::max<std::streamoff>(0, size - kMaxLogTailBytes);
  in.seekg(start);
  std::ostringstream content;
  content << in.rdbuf();
  std::string text = content.str();
  if (lines <= 0) return "";
  // Walk back over `lines` line breaks, ignoring a final one.
  size_t end = text.size();
  if (end > 0 && text[end - 1] == '\n') --end;
  size_t begin = end;
  int count = 0;
  while (begin > 0) {
    const size_t nl = text.rfind('\n', begin - 1);
    if (nl == std::string::npos) {
      begin = 0;
      break;
    }
    if (++count == lines) {
      begin = nl + 1;
      break;
    }
    begin = nl;
  }
  return text.substr(begin, end - begin);
}

// ---------------------------------------------------------------------------
// NatsCluster

absl::StatusOr<std::unique_ptr<NatsCluster>> NatsCluster::Start(
    int nodes, NatsServerOptions base) {
  if (nodes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("bad node count ", nodes));
  }
  if (base.cluster_name.empty()) base.cluster_name = kDefaultClusterName;
  const absl::Time deadline = absl::Now() + base.start_timeout;
  constexpr int kMaxAttempts = 5;
  absl::Status last;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    absl::StatusOr<std::vector<int>> ports = PickFreePorts(nodes);
    if (!ports.ok()) return ports.status();
    std::vector<std::string> routes;
    for (int port : *ports) {
      routes.push_back(absl::StrCat("nats-route://", kLoopback, ":", port));
    }
    std::vector<std::unique_ptr<NatsServer>> servers;
    bool port_taken = false;
    for (int i = 0; i < nodes; ++i) {
      NatsServerOptions options = base;
      options.server_name = absl::StrCat("n", i + 1);
      options.cluster_port = (*ports)[i];
      options.routes = routes;
      absl::StatusOr<std::unique_ptr<NatsServer>> server =
          NatsServer::Create(std::move(options));
      if (!server.ok()) return server.status();
      absl::Status launched;
      {
        // Only launched here, not waited for: a JetStream node's /healthz
        // stays 503 until a quorum of nodes has elected a meta leader.
        std::lock_guard<std::mutex> lock((*server)->mu_);
        launched = (*server)->LaunchLocked(deadline);
      }
      if (!launched.ok()) {
        if (IsAddressInUse(launched)) {
          last = launched;
          port_taken = true;
          break;
        }
        return WithContext(
            launched, absl::StrCat("starting cluster node n", i + 1, ": "));
      }
      servers.push_back(*std::move(server));
    }
    // Destroying `servers` kills the nodes already started; try new ports.
    if (port_taken) continue;
    std::unique_ptr<NatsCluster> cluster(new NatsCluster(std::move(servers)));
    absl::Status healthy = cluster->WaitHealthy(deadline - absl::Now());
    if (!healthy.ok()) {
      return WithContext(healthy, "starting cluster: ",
                         absl::StrCat("\n", cluster->LogTails()));
    }
    return cluster;
  }
  return WithContext(last, absl::StrCat("starting cluster: route ports taken ",
                                        kMaxAttempts, " times in a row: "));
}

NatsServer& NatsCluster::node(int i) { return *nodes_.at(i); }

const NatsServer& NatsCluster::node(int i) const { return *nodes_.at(i); }

std::vector<std::string> NatsCluster::url_list() const {
  std::vector<std::string> urls;
  for (const auto& node : nodes_) urls.push_back(node->url());
  return urls;
}

std::string NatsCluster::urls() const { return absl::StrJoin(url_list(), ","); }

int NatsCluster::IndexOf(const std::string& server_name) const {
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i]->server_name() == server_name) return i;
  }
  return -1;
}

absl::Status NatsCluster::CheckHealthy(absl::Duration probe_timeout) const {
  // A paused node is alive but cannot answer; the cluster is expected to
  // carry on without it, so it is treated like a stopped one.
  std::vector<int> active;
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i]->running() && !nodes_[i]->paused()) active.push_back(i);
  }
  if (active.empty()) {
    return absl::FailedPreconditionError("no cluster node is running");
  }
  const bool jetstream = nodes_[active[0]]->options_.jetstream;
  std::string leader;
  for (int i : active) {
    const NatsServer& n = *nodes_[i];
    const std::string name = n.server_name();
    absl::StatusOr<HttpResponse> health =
        HttpGet(kLoopback, n.monitor_port(), "/healthz", probe_timeout);
    if (!health.ok()) return WithContext(health.status(), name + " /healthz: ");
    if (health->status != 200) {
      return absl::UnavailableError(
          absl::StrCat(name, " /healthz answered ", health->status, ": ",
                       absl::StripAsciiWhitespace(health->body)));
    }
    if (active.size() > 1) {
      absl::StatusOr<HttpResponse> routez =
          HttpGet(kLoopback, n.monitor_port(), "/routez", probe_timeout);
      if (!routez.ok()) {
        return WithContext(routez.status(), name + " /routez: ");
      }
      int routes = -1;
      const std::optional<absl::string_view> num =
          Member(routez->body, "num_routes");
      if (!num.has_value() || !absl::SimpleAtoi(*num, &routes) ||
          routes < static_cast<int>(active.size()) - 1) {
        return absl::UnavailableError(absl::StrCat(
            name, " has ", routes, " routes, expected ", active.size() - 1));
      }
    }
    if (jetstream) {
      absl::StatusOr<std::string> l = n.MetaLeader(probe_timeout);
      if (!l.ok()) return l.status();
      if (leader.empty()) {
        leader = *l;
      } else if (*l != leader) {
        return absl::UnavailableError(absl::StrCat(
            "nodes disagree on the meta leader: ", leader, " vs ", *l));
      }
    }
  }
  if (jetstream) {
    const int index = IndexOf(leader);
    if (index < 0 ||
        std::find(active.begin(), active.end(), index) == active.end()) {
      return absl::UnavailableError(
          absl::StrCat("meta leader ", leader,
                       " is not a running node (yet to notice it "
                       "is gone)"));
    }
  }
  return absl::OkStatus();
}

absl::Status NatsCluster::WaitHealthy(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const absl::Duration probe_timeout = std::clamp(
        deadline - absl::Now(), absl::Milliseconds(1), kMaxProbeTimeout);
    absl::Status status = CheckHealthy(probe_timeout);
    if (status.ok() || absl::IsFailedPrecondition(status)) return status;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("cluster not healthy after ",
                       absl::FormatDuration(timeout), ": ", status.message()));
    }
    absl::SleepFor(kPollInterval * 5);
  }
}

absl::StatusOr<int> NatsCluster::MetaLeader() const {
  absl::Status last = absl::UnavailableError("no cluster node is running");
  for (const auto& n : nodes_) {
    if (!n->running() || n->paused()) continue;
    absl::StatusOr<std::string> leader = n->MetaLeader();
    if (!leader.ok()) {
      last = leader.status();
      continue;
    }
    const int index = IndexOf(*leader);
    if (index >= 0) return index;
    last = absl::UnavailableError(
        absl::StrCat("unknown meta leader '", *leader, "'"));
  }
  return last;
}

std::string NatsCluster::LogTails(int lines) const {
  std::string out;
  for (const auto& n : nodes_) {
    absl::StrAppend(&out, "==== ", n->server_name(), " (", n->url(), ", ",
                    n->running() ? "running" : "not running", ", ", n->dir(),
                    ") last ", lines, " log lines ====\n", n->LogTail(lines),
                    "\n");
  }
  return out;
}

}  // namespace natsgw::testing
