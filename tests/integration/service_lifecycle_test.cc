// The contract the Kubernetes manifests (k8s/services/) rely on, checked on
// the real example binaries against a real nats-server that requires a
// password: NATS URL and credentials from the environment (as a ConfigMap and
// a Secret provide them), /healthz and /readyz on the metrics port, GET
// /drainz as the preStop hook (drains, then answers; readiness goes 503), and
// exit status 0 on the SIGTERM that follows; and the prod overlay's
// replicated streams on a 3-node cluster.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/http_client.h"
#include "harness/nats_server.h"
#include "harness/subprocess.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/jetstream.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

namespace fs = std::filesystem;
using ::natsgw::testing::HttpGet;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUser[] = "natsgw";
constexpr char kPassword[] = "pw-k8s-3f9d21-not-in-logs";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct Binary {
  const char* name;
  const char* path;
};
// Names the parameter in test output (instead of its bytes).
void PrintTo(const Binary& binary, std::ostream* os) { *os << binary.name; }

class ServiceLifecycleTest : public ::testing::TestWithParam<Binary> {
 protected:
  void SetUp() override {
    testing::NatsServerOptions options;
    options.extra_config =
        absl::StrCat("authorization { users: [ {user: ", kUser,
                     ", password: \"", kPassword, "\"} ] }\n");
    auto server = testing::NatsServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    dir_ = fs::temp_directory_path() /
           absl::StrCat("natsgw-lifecycle-", getpid(), "-",
                        absl::ToUnixNanos(absl::Now()));
    fs::create_directories(dir_ + "/mail");
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- " << GetParam().name << " output ----\n"
                << ReadFile(log()) << std::endl;
    }
    process_.reset();
    fs::remove_all(dir_);
  }

  std::string log() const { return dir_ + "/service.log"; }

  // Starts the binary the way the Deployment does: everything but the port
  // comes from the environment.
  void Start(const std::string& password) {
    std::vector<std::string> argv = {"/usr/bin/env",
                                     absl::StrCat("NATS_URL=", server_->url()),
                                     absl::StrCat("NATS_USER=", kUser),
                                     absl::StrCat("NATS_PASSWORD=", password),
                                     GetParam().path,
                                     "--metrics_port=0"};
    if (absl::StrContains(GetParam().name, "email")) {
      argv.push_back(absl::StrCat("--mail_dir=", dir_, "/mail"));
    }
    auto p = testing::BackgroundProcess::Start(argv, log());
    ASSERT_TRUE(p.ok()) << p.status();
    process_ = *std::move(p);
  }

  // The metrics port from the ready line ("... drain at
  // http://127.0.0.1:<port>/drainz").
  std::optional<int> WaitForReadyPort() {
    static const std::regex kDrainAt(
        R"(drain at http://127\.0\.0\.1:(\d+)/drainz)");
    std::optional<int> port;
    testing::Eventually(
        [&] {
          std::smatch m;
          const std::string text = ReadFile(log());
          if (std::regex_search(text, m, kDrainAt)) port = std::stoi(m[1]);
          return port.has_value();
        },
        absl::Seconds(20));
    return port;
  }

  std::unique_ptr<testing::NatsServer> server_;
  std::string dir_;
  std::unique_ptr<testing::BackgroundProcess> process_;
};

TEST_P(ServiceLifecycleTest, CredentialsFromEnvProbesDrainAndCleanExit) {
  Start(kPassword);
  std::optional<int> port = WaitForReadyPort();
  ASSERT_TRUE(port.has_value()) << "no ready line";

  auto health = HttpGet("127.0.0.1", *port, "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  auto ready = HttpGet("127.0.0.1", *port, "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->status, 200) << ready->body;

  // preStop: answers only once the service has drained.
  auto drain = HttpGet("127.0.0.1", *port, "/drainz");
  ASSERT_TRUE(drain.ok()) << drain.status();
  EXPECT_EQ(drain->status, 200) << drain->body;
  EXPECT_EQ(nlohmann::json::parse(drain->body)["status"], "drained");
  EXPECT_THAT(ReadFile(log()), HasSubstr("drained, waiting for SIGTERM"));
  ready = HttpGet("127.0.0.1", *port, "/readyz");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 503);
  // Still alive: the kubelet must not restart a draining pod.
  health = HttpGet("127.0.0.1", *port, "/healthz");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);

  process_->Signal(SIGTERM);
  absl::StatusOr<int> exit_code = process_->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  const std::string output = ReadFile(log());
  EXPECT_THAT(output, HasSubstr("SIGTERM received, shutting down"));
  EXPECT_THAT(output, Not(HasSubstr(kPassword)));
}

TEST_P(ServiceLifecycleTest,
       WrongPasswordExitsUnauthenticatedWithoutLeakingIt) {
  Start("wrong-pw-0c4e");
  absl::StatusOr<int> exit_code = process_->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 1);
  const std::string output = ReadFile(log());
  EXPECT_THAT(output, HasSubstr("UNAUTHENTICATED"));
  EXPECT_THAT(output, Not(HasSubstr("wrong-pw-0c4e")));
}

// The prod overlay's settings on a 3-node JetStream cluster: credentials
// from the environment, every stream and the KV bucket replicated three
// times (--stream_replicas=3), and the whole scenario working through it.
TEST(ServiceLifecycleClusterTest,
     ProdSettingsReplicateStreamsOnAThreeNodeCluster) {
  testing::NatsServerOptions base;
  base.extra_config = absl::StrCat("authorization { users: [ {user: ", kUser,
                                   ", password: \"", kPassword, "\"} ] }\n");
  auto cluster = testing::NatsCluster::Start(3, base);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  const std::string dir = fs::temp_directory_path() /
                          absl::StrCat("natsgw-lifecycle-cluster-", getpid(),
                                       "-", absl::ToUnixNanos(absl::Now()));
  fs::create_directories(dir + "/mail");
  // Removed however the test ends.
  struct RemoveDir {
    std::string path;
    ~RemoveDir() { fs::remove_all(path); }
  } remove_dir{dir};
  const std::vector<std::string> env = {
      "/usr/bin/env", absl::StrCat("NATS_URL=", (*cluster)->urls()),
      absl::StrCat("NATS_USER=", kUser),
      absl::StrCat("NATS_PASSWORD=", kPassword)};
  auto start = [&](const char* binary, std::vector<std::string> args,
                   const std::string& log) {
    std::vector<std::string> argv = env;
    argv.push_back(binary);
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::BackgroundProcess::Start(argv, log);
  };
  auto ready = [](const std::string& log, const char* name) {
    return testing::Eventually(
        [&] {
          return absl::StrContains(ReadFile(log), absl::StrCat(name, " ready"));
        },
        absl::Seconds(30));
  };
  auto users =
      start(NATSGW_USER_SERVICE_BINARY,
            {"--metrics_port=-1", "--stream_replicas=3"}, dir + "/user.log");
  ASSERT_TRUE(users.ok()) << users.status();
  ASSERT_TRUE(ready(dir + "/user.log", "user-service"))
      << ReadFile(dir + "/user.log");
  auto emails = start(NATSGW_EMAIL_SERVICE_BINARY,
                      {"--metrics_port=-1", "--stream_replicas=3",
                       absl::StrCat("--mail_dir=", dir, "/mail")},
                      dir + "/email.log");
  ASSERT_TRUE(emails.ok()) << emails.status();
  ASSERT_TRUE(ready(dir + "/email.log", "email-service"))
      << ReadFile(dir + "/email.log");

  // The calls and the welcome e-mails, end to end through the cluster.
  std::vector<std::string> client = env;
  client.insert(client.end(), {NATSGW_REGISTER_USERS_BINARY, "--count=3",
                               "--log_format=text"});
  auto run = testing::RunProcess(client, absl::Seconds(60));
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->output;

  // Three replicas of everything the services declared.
  ConnectionOptions options;
  options.servers = (*cluster)->url_list();
  options.credentials.user = kUser;
  options.credentials.password = kPassword;
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  auto js = JetStream::Create(**conn);
  ASSERT_TRUE(js.ok()) << js.status();
  for (const char* stream :
       {"USERS", "DEAD_LETTERS", "KV_email-service-idempotency"}) {
    auto state = (*js)->GetStream(stream);
    ASSERT_TRUE(state.ok()) << stream << ": " << state.status();
    EXPECT_EQ(state->config.replicas, 3) << stream;
  }

  for (auto* p : {users->get(), emails->get()}) {
    p->Signal(SIGTERM);
    absl::StatusOr<int> exit_code = p->Wait(absl::Seconds(30));
    ASSERT_TRUE(exit_code.ok()) << exit_code.status();
    EXPECT_EQ(*exit_code, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Examples, ServiceLifecycleTest,
    ::testing::Values(Binary{"user_service", NATSGW_USER_SERVICE_BINARY},
                      Binary{"email_service", NATSGW_EMAIL_SERVICE_BINARY}),
    [](const ::testing::TestParamInfo<Binary>& info) {
      return std::string(info.param.name);
    });

}  // namespace
}  // namespace natsgw
