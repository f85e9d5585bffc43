// Integration tests of the nats-server test harness itself: every other
// integration test trusts it to start, stop, pause, restart and clean up real
// servers, and to report failures with the server log.

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/http_client.h"
#include "harness/nats_server.h"
#include "harness/nats_server_fixture.h"
#include "nats/nats.h"

namespace natsgw::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Generous bounds: waits end as soon as the condition holds, so these only
// matter when something is broken (or the machine is very slow).
constexpr absl::Duration kReadyTimeout = absl::Seconds(20);
// Long enough that a live server always answers, short enough that the
// paused-server probes (which must time out) keep the test fast.
constexpr absl::Duration kStalledProbeTimeout = absl::Milliseconds(300);

// True if no process with this pid exists (a zombie would still exist: this
// also proves the harness reaped it).
bool ProcessGone(pid_t pid) { return kill(pid, 0) != 0 && errno == ESRCH; }

int HealthzStatus(const NatsServer& server) {
  absl::StatusOr<HttpResponse> r =
      HttpGet("127.0.0.1", server.monitor_port(), "/healthz");
  return r.ok() ? r->status : -1;
}

// A port that nobody listens on: bound (so the kernel hands out a free one)
// and closed again without listen().
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (fd >= 0 &&
      bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  if (fd >= 0) close(fd);
  return port;
}

// Creates a file-backed JetStream stream "HARNESS" on subject "harness.>"
// and publishes `count` messages to it, using the real client library.
absl::Status CreateStreamAndPublish(const std::string& url, int count) {
  natsConnection* nc = nullptr;
  natsStatus s = natsConnection_ConnectTo(&nc, url.c_str());
  if (s != NATS_OK) {
    return absl::UnavailableError(
        absl::StrCat("connect: ", natsStatus_GetText(s)));
  }
  std::unique_ptr<natsConnection, decltype(&natsConnection_Destroy)> conn(
      nc, &natsConnection_Destroy);
  jsCtx* js = nullptr;
  s = natsConnection_JetStream(&js, nc, nullptr);
  if (s != NATS_OK) {
    return absl::InternalError(
        absl::StrCat("jetstream: ", natsStatus_GetText(s)));
  }
  std::unique_ptr<jsCtx, decltype(&jsCtx_Destroy)> ctx(js, &jsCtx_Destroy);
  jsStreamConfig config;
  jsStreamConfig_Init(&config);
  config.Name = "HARNESS";
  const char* subjects[] = {"harness.>"};
  config.Subjects = subjects;
  config.SubjectsLen = 1;
  config.Storage = js_FileStorage;
  jsStreamInfo* info = nullptr;
  jsErrCode err = static_cast<jsErrCode>(0);
  s = js_AddStream(&info, js, &config, nullptr, &err);
  jsStreamInfo_Destroy(info);
  if (s != NATS_OK) {
    return absl::InternalError(
        absl::StrCat("add stream: ", natsStatus_GetText(s), " (", err, ")"));
  }
  for (int i = 0; i < count; ++i) {
    const std::string data = absl::StrCat("message ", i);
    jsPubAck* ack = nullptr;
    s = js_Publish(&ack, js, "harness.test", data.data(),
                   static_cast<int>(data.size()), nullptr, &err);
    jsPubAck_Destroy(ack);
    if (s != NATS_OK) {
      return absl::InternalError(
          absl::StrCat("publish: ", natsStatus_GetText(s), " (", err, ")"));
    }
  }
  return absl::OkStatus();
}

// The "messages" count JetStream reports on the monitoring port, or -1.
int64_t JetStreamMessages(const NatsServer& server) {
  absl::StatusOr<HttpResponse> jsz =
      HttpGet("127.0.0.1", server.monitor_port(), "/jsz");
  if (!jsz.ok() || jsz->status != 200) return -1;
  // "messages": 3, on a line of its own in the pretty-printed JSON.
  const size_t key = jsz->body.find("\"messages\":");
  if (key == std::string::npos) return -1;
  return std::strtoll(jsz->body.c_str() + key + 11, nullptr, 10);
}

using SingleServerTest = NatsServerTest;

TEST_F(SingleServerTest, StartsOnEphemeralLoopbackPortAndIsHealthy) {
  EXPECT_GT(server().port(), 0);
  EXPECT_NE(server().port(), 4222);
  EXPECT_GT(server().monitor_port(), 0);
  EXPECT_NE(server().monitor_port(), 8222);
  EXPECT_EQ(server().cluster_port(), 0);
  EXPECT_EQ(server().url(), absl::StrCat("nats://127.0.0.1:", server().port()));
  EXPECT_TRUE(server().running());
  EXPECT_GT(server().pid(), 0);
  EXPECT_TRUE(std::filesystem::is_directory(server().dir()));
  EXPECT_TRUE(std::filesystem::is_directory(server().dir() + "/js"));

  absl::StatusOr<HttpResponse> health =
      HttpGet("127.0.0.1", server().monitor_port(), "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  EXPECT_THAT(health->content_type, HasSubstr("application/json"));
  EXPECT_THAT(health->body, HasSubstr("ok"));
  EXPECT_TRUE(server().ProbeClientPort(absl::Seconds(5)).ok());
  EXPECT_THAT(server().LogTail(), HasSubstr("Server is ready"));
}

TEST_F(SingleServerTest, LogTailReturnsTheLastLines) {
  const std::string tail = server().LogTail(3);
  EXPECT_EQ(std::vector<std::string>(absl::StrSplit(tail, '\n')).size(), 3u)
      << tail;
  EXPECT_EQ(server().LogTail(0), "");
}

TEST_F(SingleServerTest, KillThenRestartKeepsPortsAndJetStreamData) {
  ASSERT_TRUE(CreateStreamAndPublish(server().url(), 3).ok());
  EXPECT_EQ(JetStreamMessages(server()), 3);
  const int port = server().port();
  const int monitor_port = server().monitor_port();
  const pid_t old_pid = server().pid();

  ASSERT_TRUE(server().Kill().ok());
  EXPECT_EQ(server().pid(), 0);
  EXPECT_FALSE(server().running());
  EXPECT_TRUE(ProcessGone(old_pid));
  EXPECT_TRUE(absl::IsUnavailable(server().ProbeClientPort(absl::Seconds(1))));
  EXPECT_TRUE(server().Kill().ok()) << "Kill() of a dead server is a no-op";

  absl::Status restarted = server().Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_EQ(server().port(), port);
  EXPECT_EQ(server().monitor_port(), monitor_port);
  EXPECT_NE(server().pid(), old_pid);
  EXPECT_TRUE(server().running());
  EXPECT_EQ(HealthzStatus(server()), 200);
  EXPECT_TRUE(server().ProbeClientPort(absl::Seconds(5)).ok());
  // Same store directory: the file-backed stream survived the crash.
  EXPECT_EQ(JetStreamMessages(server()), 3);
  EXPECT_THAT(server().LogTail(200), HasSubstr("launch #2"));
}

TEST_F(SingleServerTest, RestartOfRunningServerStopsItFirst) {
  const int port = server().port();
  const pid_t old_pid = server().pid();
  ASSERT_TRUE(server().Restart().ok());
  EXPECT_TRUE(ProcessGone(old_pid));
  EXPECT_EQ(server().port(), port);
  EXPECT_EQ(HealthzStatus(server()), 200);
}

TEST_F(SingleServerTest, PauseStallsProbesAndResumeRestoresThem) {
  ASSERT_TRUE(server().Pause().ok());
  EXPECT_TRUE(server().paused());
  EXPECT_TRUE(server().running());
  EXPECT_TRUE(server().Pause().ok()) << "Pause() twice is a no-op";

  // The kernel still accepts the connection; nobody answers on it.
  absl::StatusOr<HttpResponse> stalled = HttpGet(
      "127.0.0.1", server().monitor_port(), "/healthz", kStalledProbeTimeout);
  EXPECT_TRUE(absl::IsDeadlineExceeded(stalled.status())) << stalled.status();
  EXPECT_TRUE(
      absl::IsDeadlineExceeded(server().ProbeClientPort(kStalledProbeTimeout)));
  EXPECT_TRUE(
      absl::IsDeadlineExceeded(server().WaitReady(kStalledProbeTimeout)));

  ASSERT_TRUE(server().Resume().ok());
  EXPECT_FALSE(server().paused());
  absl::Status ready = server().WaitReady(kReadyTimeout);
  EXPECT_TRUE(ready.ok()) << ready;
  EXPECT_EQ(HealthzStatus(server()), 200);
  EXPECT_TRUE(server().ProbeClientPort(absl::Seconds(5)).ok());
}

TEST_F(SingleServerTest, StopLeavesNoProcess) {
  const pid_t pid = server().pid();
  ASSERT_TRUE(server().Stop().ok());
  EXPECT_EQ(server().pid(), 0);
  EXPECT_FALSE(server().running());
  EXPECT_TRUE(ProcessGone(pid));
  // SIGTERM, not SIGKILL: the server shut down by itself.
  EXPECT_THAT(server().LogTail(20), HasSubstr("Server Exiting"));
  EXPECT_TRUE(server().Stop().ok()) << "Stop() of a stopped server is a no-op";
  EXPECT_TRUE(absl::IsFailedPrecondition(server().Pause()));
  EXPECT_TRUE(absl::IsFailedPrecondition(server().Resume()));
  EXPECT_TRUE(absl::IsFailedPrecondition(server().WaitReady(absl::Seconds(1))));
}

TEST_F(SingleServerTest, StopOfPausedServerStillStopsIt) {
  const pid_t pid = server().pid();
  ASSERT_TRUE(server().Pause().ok());
  ASSERT_TRUE(server().Stop().ok());
  EXPECT_TRUE(ProcessGone(pid));
  EXPECT_FALSE(server().paused());
}

TEST(NatsServerLifecycleTest, DestructorKillsAndReapsAndRemovesDirectory) {
  absl::StatusOr<std::unique_ptr<NatsServer>> server = NatsServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  const pid_t pid = (*server)->pid();
  const std::string dir = (*server)->dir();
  ASSERT_GT(pid, 0);
  // Paused, to prove that a stopped process cannot make teardown hang.
  ASSERT_TRUE((*server)->Pause().ok());
  server->reset();
  EXPECT_TRUE(ProcessGone(pid));
  const char* keep = getenv("NATSGW_KEEP_TEST_DIRS");
  if (keep == nullptr || std::string(keep) != "1") {
    EXPECT_FALSE(std::filesystem::exists(dir));
  }
}

TEST(NatsServerLifecycleTest, SeveralServersGetDistinctPorts) {
  absl::StatusOr<std::unique_ptr<NatsServer>> a = NatsServer::Start();
  absl::StatusOr<std::unique_ptr<NatsServer>> b = NatsServer::Start();
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  std::set<int> ports = {(*a)->port(), (*a)->monitor_port(), (*b)->port(),
                         (*b)->monitor_port()};
  EXPECT_EQ(ports.size(), 4u);
  EXPECT_NE((*a)->dir(), (*b)->dir());
  ASSERT_TRUE((*a)->Kill().ok());
  EXPECT_EQ(HealthzStatus(**b), 200);
}

TEST(NatsServerLifecycleTest, BadConfigFailsStartWithLogTail) {
  NatsServerOptions options;
  options.extra_config = "this_option_does_not_exist: {{{";
  options.start_timeout = absl::Seconds(10);
  absl::StatusOr<std::unique_ptr<NatsServer>> server =
      NatsServer::Start(options);
  ASSERT_FALSE(server.ok());
  // The message quotes the server's own complaint, from the log.
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr("during startup; log tail"));
}

TEST(NatsServerLifecycleTest, MissingBinaryIsAClearError) {
  const char* old = getenv("NATS_SERVER_EXE");
  const std::string saved = old != nullptr ? old : "";
  setenv("NATS_SERVER_EXE", "/nonexistent/nats-server", 1);
  absl::StatusOr<std::unique_ptr<NatsServer>> server = NatsServer::Start();
  if (old != nullptr) {
    setenv("NATS_SERVER_EXE", saved.c_str(), 1);
  } else {
    unsetenv("NATS_SERVER_EXE");
  }
  ASSERT_FALSE(server.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(server.status())) << server.status();
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr("NATS_SERVER_EXE"));
}

TEST_F(SingleServerTest, HttpGetReportsNotFoundAsStatus) {
  absl::StatusOr<HttpResponse> r =
      HttpGet("127.0.0.1", server().monitor_port(), "/no-such-endpoint");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
}

TEST(HttpGetTest, ClosedPortIsUnavailable) {
  const int port = ClosedPort();
  ASSERT_GT(port, 0);
  absl::StatusOr<HttpResponse> r = HttpGet("127.0.0.1", port, "/metrics");
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("refused"));
}

TEST(HttpGetTest, RejectsBadArguments) {
  EXPECT_TRUE(absl::IsInvalidArgument(HttpGet("127.0.0.1", 0, "/").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(HttpGet("127.0.0.1", 80, "no-slash").status()));
}

using ClusterTest = NatsClusterTest;

TEST_F(ClusterTest, FormsAndSurvivesLeaderKillAndRestart) {
  ASSERT_EQ(cluster().size(), 3);
  std::set<int> ports;
  for (int i = 0; i < cluster().size(); ++i) {
    EXPECT_EQ(cluster().node(i).server_name(), absl::StrCat("n", i + 1));
    EXPECT_GT(cluster().node(i).cluster_port(), 0);
    ports.insert(cluster().node(i).port());
    ports.insert(cluster().node(i).monitor_port());
    ports.insert(cluster().node(i).cluster_port());
    EXPECT_EQ(HealthzStatus(cluster().node(i)), 200);
  }
  EXPECT_EQ(ports.size(), 9u);
  EXPECT_EQ(cluster().url_list().size(), 3u);
  EXPECT_EQ(cluster().urls(), absl::StrJoin(cluster().url_list(), ","));

  // A meta leader is elected and visible in /jsz.
  absl::StatusOr<int> leader = cluster().MetaLeader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  absl::StatusOr<HttpResponse> jsz =
      HttpGet("127.0.0.1", cluster().node(0).monitor_port(), "/jsz");
  ASSERT_TRUE(jsz.ok()) << jsz.status();
  EXPECT_THAT(jsz->body, HasSubstr("\"meta_cluster\""));
  EXPECT_THAT(jsz->body,
              HasSubstr(absl::StrCat("\"leader\": \"n", *leader + 1, "\"")));

  // Kill the leader: the other two elect a new one.
  NatsServer& victim = cluster().node(*leader);
  const int victim_cluster_port = victim.cluster_port();
  ASSERT_TRUE(victim.Kill().ok());
  absl::Status healthy = cluster().WaitHealthy(kReadyTimeout);
  ASSERT_TRUE(healthy.ok()) << healthy;
  absl::StatusOr<int> new_leader = cluster().MetaLeader();
  ASSERT_TRUE(new_leader.ok()) << new_leader.status();
  EXPECT_NE(*new_leader, *leader);

  // Bring it back on the same ports: it rejoins.
  absl::Status restarted = victim.Restart();
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_EQ(victim.cluster_port(), victim_cluster_port);
  healthy = cluster().WaitHealthy(kReadyTimeout);
  EXPECT_TRUE(healthy.ok()) << healthy;
  absl::StatusOr<std::string> seen_by_victim = victim.MetaLeader();
  ASSERT_TRUE(seen_by_victim.ok()) << seen_by_victim.status();
  EXPECT_EQ(*seen_by_victim, absl::StrCat("n", *new_leader + 1));
}

TEST_F(ClusterTest, PausedNodeIsToleratedAndRejoinsOnResume) {
  NatsServer& follower =
      cluster().node((cluster().MetaLeader().value_or(0) + 1) % 3);
  ASSERT_TRUE(follower.Pause().ok());
  absl::Status healthy = cluster().WaitHealthy(kReadyTimeout);
  EXPECT_TRUE(healthy.ok()) << healthy;
  ASSERT_TRUE(follower.Resume().ok());
  healthy = cluster().WaitHealthy(kReadyTimeout);
  EXPECT_TRUE(healthy.ok()) << healthy;
  EXPECT_EQ(HealthzStatus(follower), 200);
}

TEST_F(ClusterTest, MajorityRestartWithRestartNoWait) {
  const pid_t pid1 = cluster().node(0).pid();
  ASSERT_TRUE(cluster().node(0).Kill().ok());
  ASSERT_TRUE(cluster().node(1).Kill().ok());
  EXPECT_TRUE(ProcessGone(pid1));
  // Alone, node 3 has no quorum; the restarted nodes could not pass
  // WaitReady one at a time, hence RestartNoWait + WaitHealthy.
  ASSERT_TRUE(cluster().node(0).RestartNoWait().ok());
  ASSERT_TRUE(cluster().node(1).RestartNoWait().ok());
  absl::Status healthy = cluster().WaitHealthy(kReadyTimeout);
  EXPECT_TRUE(healthy.ok()) << healthy;
  EXPECT_TRUE(cluster().MetaLeader().ok());
}

}  // namespace
}  // namespace natsgw::testing
