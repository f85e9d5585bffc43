// harness/nats_server.h: real nats-server processes for integration tests.
//
// Defines NatsServerOptions, NatsServer (one nats-server child process with
// its own temporary directory) and NatsCluster (N servers forming a JetStream
// cluster with full-mesh routes). Integration tests never mock NATS: they run
// the real server, and fault tests stop, kill, pause and restart it.
//
//   absl::StatusOr<std::unique_ptr<NatsServer>> server = NatsServer::Start();
//   if (!server.ok()) return server.status();
//   Connect((*server)->url());  // "nats://127.0.0.1:<ephemeral port>"
//   (*server)->Kill();          // crash it...
//   (*server)->Restart();       // ...same ports, same JetStream store
//
//   auto cluster = NatsCluster::Start();  // 3 JetStream nodes, n1..n3
//   Connect((*cluster)->urls());          // "nats://127.0.0.1:a,nats://..."
//   absl::StatusOr<int> leader = (*cluster)->MetaLeader();
//   (*cluster)->node(*leader).Kill();
//   (*cluster)->WaitHealthy(absl::Seconds(20));  // a new leader is elected
//
// Every server listens on 127.0.0.1 only, on ports chosen by the kernel (never
// a fixed port: other nats-servers may run on the same machine), keeps its
// JetStream store, generated config, ports file and log in a fresh directory
// under $TMPDIR (default /tmp), and is killed and reaped when its owner is
// destroyed, even when a test fails. The child also asks the kernel to
// SIGKILL it when the parent dies, so a crashed test leaves no server behind.
// Caveat of that mechanism: the kernel ties it to the *thread* that started
// the server, so start servers from a thread that outlives them (the test's
// main thread, typically), never from a short-lived helper thread.
//
// The binary is $NATS_SERVER_EXE if set, else `nats-server` on $PATH, else
// /usr/sbin/nats-server. Set NATSGW_KEEP_TEST_DIRS=1 to keep the temporary
// directories (with the logs) after the test for inspection.
//
// This library does not depend on GoogleTest, so benchmarks can use it too;
// see harness/nats_server_fixture.h for the gtest fixtures.
//
// Thread-safety: NatsServer and NatsCluster are thread-safe. Lifecycle calls
// (Stop, Kill, Restart, Pause, Resume, WaitReady) on one server are
// serialized by an internal mutex, so a call may block while another thread's
// Restart() waits for readiness; accessors never block on that mutex.
// Child processes are reaped with waitpid() on their pid, so the rest of the
// test process must not reap children it did not create (no waitpid(-1)).
#ifndef NATSGW_TESTS_HARNESS_NATS_SERVER_H_
#define NATSGW_TESTS_HARNESS_NATS_SERVER_H_

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace natsgw::testing {

// How to configure one nats-server. Thread-compatible plain value.
struct NatsServerOptions {
  // Enables JetStream with its store in <dir>/js.
  bool jetstream = true;
  // The server's name (`server_name`); required to be unique in a cluster.
  // Empty: the server picks one (its id). NatsCluster names nodes n1..nN.
  std::string server_name;
  // Appended verbatim to the generated config file, so tests can set any
  // server option (e.g. "debug: true", "max_payload: 2MB", "accounts {...}").
  // A top-level key set here overrides the harness's own value for it; a
  // `jetstream {}` block here would replace the harness's whole block,
  // store_dir included, so tune JetStream with jetstream_extra_config.
  std::string extra_config;
  // Inserted verbatim inside the `jetstream { }` block, e.g.
  // "max_memory_store: 256MB". Ignored without JetStream.
  std::string jetstream_extra_config;
  // Bounds Start() and Restart(): process start, ports, readiness.
  absl::Duration start_timeout = absl::Seconds(20);

  // Clustering. NatsCluster fills these in; set them by hand only to build a
  // custom topology. An empty cluster_name means no `cluster {}` block.
  std::string cluster_name;
  // The route listen port; 0 lets the kernel choose (then read back from the
  // ports file). A JetStream cluster node needs routes to start at all, and a
  // route needs the peer's port up front, which is why NatsCluster picks the
  // ports before starting any node.
  int cluster_port = 0;
  // Route URLs, e.g. "nats-route://127.0.0.1:6222". Listing the node itself
  // is harmless (the server detects and drops the self-route).
  std::vector<std::string> routes;
};

// One nats-server child process and its temporary directory.
//
// Thread-safe (see the file comment). url(), port(), monitor_port(),
// cluster_port(), dir() and log_path() never change after Start() returns;
// pid() and running() reflect the latest lifecycle call.
class NatsServer {
 public:
  // Writes a config, starts the process and waits until it is ready
  // (WaitReady). On failure the process is killed, the directory removed
  // (unless NATSGW_KEEP_TEST_DIRS=1), and the status message contains the
  // tail of the server log.
  static absl::StatusOr<std::unique_ptr<NatsServer>> Start(
      NatsServerOptions options = {});

  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  // Kills the process (SIGCONT, so a paused server cannot linger, then
  // SIGKILL), reaps it and removes the directory unless
  // NATSGW_KEEP_TEST_DIRS=1.
  ~NatsServer();

  // "nats://127.0.0.1:<port>".
  std::string url() const;
  // Client port.
  int port() const { return port_; }
  // HTTP monitoring port (/healthz, /varz, /jsz, ...).
  int monitor_port() const { return monitor_port_; }
  // Route port; 0 when not clustered.
  int cluster_port() const { return cluster_port_; }
  // The configured server_name (may be empty).
  const std::string& server_name() const { return options_.server_name; }
  // The process id; 0 when not running.
  pid_t pid() const { return pid_.load(std::memory_order_acquire); }
  // True while a started process has not exited (a paused server is running).
  bool running() const;
  // True between Pause() and Resume().
  bool paused() const { return paused_.load(std::memory_order_acquire); }
  // The temporary directory holding config, store, ports file and log.
  const std::string& dir() const { return dir_; }
  // The server log; kept across restarts (appended to), with a line from the
  // harness marking each lifecycle event.
  std::string log_path() const;

  // Graceful stop: SIGTERM (after SIGCONT if paused), wait up to 10 s, then
  // SIGKILL; reaps the process. OK if it was not running.
  absl::Status Stop();
  // Crash: SIGKILL; reaps the process. OK if it was not running.
  absl::Status Kill();
  // Starts the server again with the same client, monitoring and cluster
  // ports and the same store directory (so clients reconnect and JetStream
  // data survives), and waits until it is ready. Stops it gracefully first
  // if it is running. Bounded by options.start_timeout.
  //
  // A clustered JetStream node only reports ready once it sees a meta
  // leader, which needs a quorum of running nodes: to restart a majority of
  // a cluster, use RestartNoWait() on each and then NatsCluster::WaitHealthy.
  absl::Status Restart();
  // Like Restart(), but returns once the process accepts client connections,
  // without waiting for /healthz.
  absl::Status RestartNoWait();
  // SIGSTOP: the process freezes (the kernel still completes TCP handshakes,
  // but nothing is answered), like a server stalled by GC, swap or a VM
  // pause. Returns once the kernel reports the process stopped. No-op if
  // already paused; kFailedPrecondition if not running.
  absl::Status Pause();
  // SIGCONT; undoes Pause(). kFailedPrecondition if not running.
  absl::Status Resume();
  // Waits until the client port answers with the NATS INFO line and
  // GET /healthz on the monitoring port returns 200. kDeadlineExceeded after
  // `timeout`; kFailedPrecondition (with the log tail) if the process exited.
  absl::Status WaitReady(absl::Duration timeout);
  // Connects to the client port and waits for the server's INFO line: the
  // cheapest proof that the server (not merely the kernel) is serving
  // clients. kDeadlineExceeded when paused, kUnavailable when not listening.
  absl::Status ProbeClientPort(absl::Duration timeout) const;
  // The JetStream meta leader's server name as this server's /jsz reports
  // it. kUnavailable if it is unreachable or knows no leader (yet).
  absl::StatusOr<std::string> MetaLeader(
      absl::Duration timeout = absl::Seconds(2)) const;

  // The last `lines` lines of the server log (for failure reports); a short
  // explanation instead if the log cannot be read.
  std::string LogTail(int lines = 50) const;

 private:
  friend class NatsCluster;

  NatsServer(NatsServerOptions options, std::string exe, std::string dir,
             bool keep_dir);

  // Creates the directory and the object without starting anything.
  static absl::StatusOr<std::unique_ptr<NatsServer>> Create(
      NatsServerOptions options);
  // Writes the config and starts the process, and waits (until `deadline`)
  // for the ports file and an answering client port. On the first launch the
  // ports are learned from the ports file; afterwards they are pinned. On
  // failure the process is gone and the status carries the log tail.
  absl::Status LaunchLocked(absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Restart(), with or without the readiness wait.
  absl::Status RestartImpl(bool wait_ready);
  absl::Status WaitReadyLocked(absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status StopLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SIGCONT + SIGKILL + waitpid. No-op if not running.
  void KillAndReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // If the process has exited, reaps it, clears pid_ and returns true with a
  // description of how it ended in `*how`.
  bool ReapIfExitedLocked(std::string* how) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status WriteConfig() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends a "[natsgw-test-harness] ..." line to the log so that failure
  // reports show what the test did to the server and when.
  void Note(const std::string& text) const;

  const NatsServerOptions options_;
  const std::string exe_;
  const std::string dir_;
  const bool keep_dir_;
  // Learned on the first launch, then fixed: written only by Start() (and by
  // NatsCluster while it starts nodes), before the object is shared.
  int port_ = 0;
  int monitor_port_ = 0;
  int cluster_port_ = 0;

  // Serializes lifecycle calls; held across their waits.
  std::mutex mu_;
  // Number of processes started so far (0 before the first launch).
  int launches_ ABSL_GUARDED_BY(mu_) = 0;
  // Written under mu_; atomic so that accessors can read without it.
  std::atomic<pid_t> pid_{0};
  std::atomic<bool> paused_{false};
};

// A cluster of nats-servers with full-mesh routes, JetStream by default.
//
// Thread-safe: the set of nodes is fixed at Start(); each node is a
// thread-safe NatsServer.
class NatsCluster {
 public:
  // Starts `nodes` servers named n1..nN (JetStream unless base.jetstream is
  // false) in cluster base.cluster_name (default "natsgw-test") and waits
  // until WaitHealthy succeeds, within base.start_timeout. Route ports are
  // picked up front; if one has been taken in the meantime the whole
  // cluster is retried on new ports. base.server_name, cluster_port and
  // routes are ignored.
  static absl::StatusOr<std::unique_ptr<NatsCluster>> Start(
      int nodes = 3, NatsServerOptions base = {});

  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;
  // Kills and reaps every node.
  ~NatsCluster() = default;

  // Node `i`, 0-based (node(0) is "n1"). `i` must be in [0, size()).
  NatsServer& node(int i);
  const NatsServer& node(int i) const;
  int size() const { return static_cast<int>(nodes_.size()); }
  // Comma-separated client URLs of all nodes (stopped ones included, so a
  // client can reconnect to them once restarted): the form nats.c accepts
  // in natsOptions_SetURL.
  std::string urls() const;
  std::vector<std::string> url_list() const;

  // Waits until every running node answers /healthz with 200, has routes to
  // all other running nodes and, with JetStream, all running nodes report
  // the same meta leader, which is itself a running node. After a leader is
  // killed this therefore waits for the re-election. Paused nodes count as
  // not running (they cannot answer; the rest must cope without them).
  // kFailedPrecondition if no node runs; kDeadlineExceeded (with the last
  // problem seen) on timeout.
  absl::Status WaitHealthy(absl::Duration timeout);
  // The index of the node that the first answering running (unpaused) node
  // reports as JetStream meta leader. kUnavailable if none is known.
  absl::StatusOr<int> MetaLeader() const;
  // The index of the node named `server_name`, or -1.
  int IndexOf(const std::string& server_name) const;

  // Every node's log tail, each under a header naming the node.
  std::string LogTails(int lines = 30) const;

 private:
  explicit NatsCluster(std::vector<std::unique_ptr<NatsServer>> nodes)
      : nodes_(std::move(nodes)) {}
  // One checking pass of WaitHealthy: OK or the first problem found.
  absl::Status CheckHealthy(absl::Duration probe_timeout) const;

  const std::vector<std::unique_ptr<NatsServer>> nodes_;
};

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_HARNESS_NATS_SERVER_H_
