// natsgw-edge end to end: a real nats-server with JetStream, the real
// user-service and email-service binaries, and two real natsgw-edge
// processes (one with the schemas, bearer tokens and narrow allow-lists; one
// with no schema at all, which must learn the methods from $SRV.INFO, and
// allow-lists of '>'), driven over HTTP by tests/edge/edge_check.mjs (Node's
// built-in fetch) and by curl for the drain:
//   - calls, publishes and server-sent event subscriptions, the caller's
//     trace continued into NATS and back out in events, probes and metrics,
//     and every error path (401, 403, 400, 413, 415, 404, 405, 409, 429,
//     503, 504), checked by the script;
//   - that nothing a refused request carried reached NATS: a tap subscriber
//     on '>' counts every message, and what it saw must match what the
//     script says it sent;
//   - SIGTERM ends an open stream with `event: shutdown` and the process
//     exits 0; GET /drainz makes readiness and new requests 503 first.
// It also prints the latency of a call through the edge next to the same
// call made directly over NATS (figures, not assertions).
//
// Node and curl are installed by scripts/lib/setup.sh; without them the test
// fails, saying what is missing.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/http_client.h"
#include "harness/nats_server.h"
#include "harness/subprocess.h"
#include "natsgw/connection.h"
#include "natsgw/logger.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/typed_service.h"
#include "nlohmann/json.hpp"

#ifndef NATSGW_SOURCE_DIR
#error "NATSGW_SOURCE_DIR must be defined (the checkout's absolute path)"
#endif

namespace natsgw {
namespace {

namespace fs = std::filesystem;
using ::natsgw::testing::BackgroundProcess;
using ::natsgw::testing::HttpGet;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Polls `done` every 20 ms for at most `timeout`.
template <class Pred>
bool WaitFor(Pred done, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > until) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

bool IsExecutable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

// $NATSGW_NODE, else `node` on $PATH.
std::optional<std::string> FindProgram(const char* name, const char* env) {
  if (const char* explicit_path = std::getenv(env);
      explicit_path != nullptr && explicit_path[0] != '\0') {
    if (IsExecutable(explicit_path)) return std::string(explicit_path);
    return std::nullopt;
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "", ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (IsExecutable(candidate)) return candidate;
  }
  return std::nullopt;
}

// The echo service of the latency figures: the typed stub natsgw-gen makes
// from schemas/echo.fbs, answering the tag plus one.
class EchoImpl : public echo::EchoServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<echo::EchoReply>> Echo(
      const echo::EchoRequest& request, ServerContext& ctx) override {
    flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
    const auto* payload = request.payload();
    return echo::CreateEchoReply(
        fbb,
        payload != nullptr ? fbb.CreateVector(payload->data(), payload->size())
                           : 0,
        request.tag() + 1);
  }
};

// Every message a subscriber on '>' sees, by subject.
class Tap {
 public:
  void Record(const Message& m) {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_[m.subject];
    if (m.subject == "users.RegisterUser") {
      register_traces_.push_back(m.trace.TraceIdHex());
    }
    if (absl::StartsWith(m.subject, "edge.test.")) {
      if (auto tenant = m.headers.Get("Tenant"); tenant.has_value()) {
        tenants_.emplace_back(*tenant);
      }
    }
  }
  int Count(const std::string& subject) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = count_.find(subject);
    return it == count_.end() ? 0 : it->second;
  }
  int CountPrefix(absl::string_view prefix) {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& [subject, count] : count_) {
      if (absl::StartsWith(subject, prefix)) n += count;
    }
    return n;
  }
  std::vector<std::string> RegisterTraces() {
    std::lock_guard<std::mutex> lock(mu_);
    return register_traces_;
  }
  std::vector<std::string> Tenants() {
    std::lock_guard<std::mutex> lock(mu_);
    return tenants_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> count_;
  std::vector<std::string> register_traces_;
  std::vector<std::string> tenants_;
};

struct EdgeProcess {
  std::unique_ptr<BackgroundProcess> process;
  std::string log;
  std::string url;  // http://127.0.0.1:<api port>
  int port = 0;     // API port
  int metrics_port = 0;
};

class EdgeE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::optional<std::string> node = FindProgram("node", "NATSGW_NODE");
    ASSERT_TRUE(node.has_value())
        << "node is not on $PATH and $NATSGW_NODE is not set: the edge's "
           "end-to-end test runs tests/edge/edge_check.mjs with Node.js "
           "(>= 20). ./scripts/test installs it (scripts/lib/setup.sh), or "
           "run `apt-get install nodejs`";
    node_ = *node;
    std::optional<std::string> curl = FindProgram("curl", "NATSGW_CURL");
    ASSERT_TRUE(curl.has_value())
        << "curl is not on $PATH: install it (apt-get install curl)";
    curl_ = *curl;
    auto server = testing::NatsServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    dir_ = fs::temp_directory_path() /
           absl::StrCat("natsgw-edge-e2e-", getpid(), "-",
                        absl::ToUnixNanos(absl::Now()));
    fs::create_directories(dir_);
  }

  void TearDown() override {
    if (HasFailure()) {
      for (const char* log : {"user.log", "email.log", "edge.log",
                              "edge-discovery.log", "sse.txt"}) {
        std::cerr << "---- " << log << " ----\n"
                  << ReadFile(dir_ + "/" + log) << std::endl;
      }
    }
    edge_.process.reset();
    discovery_edge_.process.reset();
    users_.reset();
    emails_.reset();
    fs::remove_all(dir_);
  }

  std::unique_ptr<BackgroundProcess> StartService(const char* binary,
                                                  const std::string& log,
                                                  const char* name) {
    auto p = BackgroundProcess::Start(
        {binary, absl::StrCat("--nats_url=", server_->url()),
         "--metrics_port=-1", "--log_format=text"},
        log);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return nullptr;
    EXPECT_TRUE(WaitFor(
        [&] {
          return absl::StrContains(ReadFile(log), absl::StrCat(name, " ready"));
        },
        absl::Seconds(20)))
        << name << " is not ready:\n"
        << ReadFile(log);
    return *std::move(p);
  }

  // Starts natsgw-edge with `flags` (after the NATS URL and ports) and waits
  // for its ready line.
  EdgeProcess StartEdge(const std::string& log,
                        const std::vector<std::string>& flags) {
    EdgeProcess edge;
    edge.log = log;
    // Without $NATSGW_SCHEMA_PATH: the schemas are the flags' alone.
    std::vector<std::string> argv = {
        "/usr/bin/env",
        "-u",
        "NATSGW_SCHEMA_PATH",
        NATSGW_EDGE_BINARY,
        absl::StrCat("--nats_url=", server_->url()),
        "--listen_address=127.0.0.1",
        "--port=0",
        "--metrics_port=0",
        "--log_format=text"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto p = BackgroundProcess::Start(argv, log);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return edge;
    edge.process = *std::move(p);
    static const std::regex kReady(
        R"(natsgw-edge ready: HTTP/JSON API on (http://127\.0\.0\.1:(\d+)) .*drain at http://127\.0\.0\.1:(\d+)/drainz)");
    std::smatch m;
    std::string text;
    EXPECT_TRUE(WaitFor(
        [&] {
          text = ReadFile(log);
          return std::regex_search(text, m, kReady);
        },
        absl::Seconds(20)))
        << "natsgw-edge is not ready:\n"
        << ReadFile(log);
    if (!m.empty()) {
      edge.url = m[1];
      edge.port = std::stoi(m[2]);
      edge.metrics_port = std::stoi(m[3]);
    }
    return edge;
  }

  std::unique_ptr<testing::NatsServer> server_;
  std::string dir_;
  std::string node_;
  std::string curl_;
  std::unique_ptr<BackgroundProcess> users_;
  std::unique_ptr<BackgroundProcess> emails_;
  EdgeProcess edge_;
  EdgeProcess discovery_edge_;
};

std::string Percentiles(std::vector<absl::Duration> samples) {
  if (samples.empty()) return "no samples";
  std::sort(samples.begin(), samples.end());
  auto at = [&](double p) {
    return absl::ToInt64Microseconds(samples[std::min(
        samples.size() - 1, static_cast<size_t>(p * samples.size()))]);
  };
  return absl::StrFormat("%d calls, p50 %d us, p99 %d us", samples.size(),
                         at(0.5), at(0.99));
}

TEST_F(EdgeE2eTest, CallsPublishesStreamsErrorsAndDrainOverHttp) {
  const absl::Time test_start = absl::Now();
  users_ = StartService(NATSGW_USER_SERVICE_BINARY, dir_ + "/user.log",
                        "user-service");
  ASSERT_NE(users_, nullptr);
  emails_ = StartService(NATSGW_EMAIL_SERVICE_BINARY, dir_ + "/email.log",
                         "email-service");
  ASSERT_NE(emails_, nullptr);

  // The tap, and the echo service of the latency figures.
  ConnectionOptions options;
  options.servers = {server_->url()};
  options.name = "edge-e2e-tap";
  options.logger = std::make_shared<StderrLogger>(absl::LogSeverity::kWarning);
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  Tap tap;
  auto tap_sub =
      (*conn)->Subscribe(">", "", [&tap](const Message& m) { tap.Record(m); });
  ASSERT_TRUE(tap_sub.ok()) << tap_sub.status();
  EchoImpl echo_impl;
  auto echo_service = echo_impl.Start(**conn);
  ASSERT_TRUE(echo_service.ok()) << echo_service.status();

  const std::string token = absl::StrCat("tok-edge-e2e-", getpid(), "-",
                                         absl::ToUnixMicros(absl::Now()));
  {
    std::ofstream tokens(dir_ + "/tokens");
    tokens << "# natsgw-edge tokens of the end-to-end test\n"
           << "tok-someone-else-0123456789\n"
           << token << "\n";
  }
  edge_ = StartEdge(
      dir_ + "/edge.log",
      {absl::StrCat("--schema=", NATSGW_SOURCE_DIR, "/schemas"),
       "--allow_call=users.RegisterUser,email.SendWelcomeEmail,echo.*",
       "--allow_publish=edge.test.>,edge.refused.>",
       "--allow_subscribe=users.events.>,email.events.>,edge.test.>",
       absl::StrCat("--bearer_tokens_file=", dir_, "/tokens"),
       "--max_streams=3", "--http_threads=8", "--max_body_bytes=65536",
       "--sse_keepalive=1s", "--discovery_wait=300ms"});
  ASSERT_FALSE(edge_.url.empty());
  discovery_edge_ =
      StartEdge(dir_ + "/edge-discovery.log",
                {"--allow_call=>", "--allow_publish=>", "--allow_subscribe=>",
                 "--allow_unauthenticated", "--discovery_wait=300ms"});
  ASSERT_FALSE(discovery_edge_.url.empty());
  const absl::Time started = absl::Now();

  // ---- the HTTP client's checks ----
  constexpr int kLatencyCalls = 200;
  const std::vector<std::string> check = {
      node_,
      absl::StrCat(NATSGW_SOURCE_DIR, "/tests/edge/edge_check.mjs"),
      edge_.url,
      token,
      "--discovery-url",
      discovery_edge_.url,
      "--metrics-url",
      absl::StrCat("http://127.0.0.1:", edge_.metrics_port, "/metrics"),
      "--user-log",
      dir_ + "/user.log",
      "--user-service-pid",
      absl::StrCat(users_->pid()),
      "--email-service-pid",
      absl::StrCat(emails_->pid()),
      "--max-body-bytes",
      "65536",
      "--max-streams",
      "3",
      "--latency-calls",
      absl::StrCat(kLatencyCalls)};
  auto run_check = [&](const std::string& phase) {
    std::vector<std::string> argv = check;
    argv.insert(argv.end(), {"--phase", phase});
    absl::StatusOr<testing::ProcessResult> run =
        testing::RunProcess(argv, absl::Seconds(90));
    EXPECT_TRUE(run.ok()) << run.status();
    if (!run.ok()) return testing::ProcessResult{};
    std::cout << run->output << std::flush;
    EXPECT_FALSE(run->timed_out);
    EXPECT_EQ(run->exit_code, 0)
        << "edge_check.mjs --phase " << phase << " failed: see its output";
    EXPECT_THAT(run->output, HasSubstr("edge_check: OK"));
    return *std::move(run);
  };
  const testing::ProcessResult run = run_check("main");
  const absl::Time checked = absl::Now();

  static const std::regex kSummary(R"(EDGE_CHECK_SUMMARY (\{.*\}))");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(run.output, m, kSummary)) << run.output;
  const nlohmann::json summary = nlohmann::json::parse(m[1].str());
  const int register_requests = summary.value("register_requests", -1);

  // ---- what reached NATS ----
  // Every users.RegisterUser request the script counted, and no other.
  EXPECT_TRUE(WaitFor(
      [&] { return tap.Count("users.RegisterUser") >= register_requests; },
      absl::Seconds(5)));
  ASSERT_TRUE((*conn)->Flush(absl::Seconds(5)).ok());
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(tap.Count("users.RegisterUser"), register_requests)
      << "requests the edge refused reached NATS";
  const std::vector<std::string> traces = tap.RegisterTraces();
  EXPECT_THAT(traces, ::testing::Contains(summary.value("trace_id", "")))
      << "the caller's trace ID did not reach NATS";
  // The positive controls: the tap does see what the edge published, with
  // the application header the caller sent as Natsgw-Header-Tenant.
  EXPECT_EQ(tap.Count("edge.test.Ping"), 1);
  EXPECT_EQ(tap.Count("edge.test.events.UserRegistered"), 1);
  EXPECT_THAT(tap.Tenants(), ::testing::ElementsAre("acme"));
  // Nothing of what was refused.
  EXPECT_EQ(tap.CountPrefix("edge.refused."), 0);
  EXPECT_EQ(tap.CountPrefix("edge.other."), 0);
  EXPECT_EQ(tap.Count("users.DeleteAllUsers"), 0);
  EXPECT_EQ(tap.Count("echo.Nobody"), 0);
  for (const char* reserved :
       {"$SRV.PING", "$SRV.STATS", "$SYS.REQ.SERVER.PING", "_INBOX.edge-check",
        "$JS.API.STREAM.DELETE.USERS", "$KV.email-service-idempotency.x"}) {
    EXPECT_EQ(tap.Count(reserved), 0) << reserved;
  }

  // ---- a service that is gone: 503 ----
  // The tap is interest in every subject, so NATS would never answer "no
  // responders" while it listens.
  ASSERT_TRUE((*tap_sub)->Unsubscribe().ok());
  ASSERT_TRUE((*conn)->Flush(absl::Seconds(5)).ok());
  run_check("gone");

  // ---- latency: through the edge (Node's fetch, a new HTTP connection per
  // call) and directly (natsgw::Connection), same service ----
  std::vector<absl::Duration> direct;
  {
    flatbuffers::FlatBufferBuilder fbb;
    const uint8_t payload[] = {1, 2, 3};
    fbb.Finish(echo::CreateEchoRequest(fbb, fbb.CreateVector(payload, 3), 7),
               "NGEC");
    const std::string request(
        reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    for (int i = 0; i < kLatencyCalls && absl::Now() < deadline; ++i) {
      const absl::Time t0 = absl::Now();
      auto reply = (*conn)->Request("echo.Echo", request, absl::Seconds(5));
      ASSERT_TRUE(reply.ok()) << reply.status();
      direct.push_back(absl::Now() - t0);
    }
  }
  if (summary.contains("latency")) {
    const nlohmann::json& l = summary["latency"];
    auto p = [&](const char* part) {
      if (!l.contains(part) || !l[part].is_object()) return std::string("?");
      return absl::StrCat("p50 ", l[part].value("p50_us", 0), " us, p99 ",
                          l[part].value("p99_us", 0), " us");
    };
    std::cout << "[figures] echo.Echo through natsgw-edge, "
              << l.value("calls", 0)
              << " calls: as Node's fetch sees it (a new HTTP connection "
                 "each) "
              << p("client") << "; inside the edge " << p("edge")
              << "; of which the NATS request " << p("nats") << "\n"
              << "[figures] echo.Echo directly (natsgw::Connection::Request): "
              << Percentiles(direct) << std::endl;
  }

  // ---- SIGHUP re-reads the tokens file ----
  const std::string new_token = absl::StrCat(token, "-rotated");
  {
    std::ofstream tokens(dir_ + "/tokens", std::ios::trunc);
    tokens << new_token << "\n";
  }
  edge_.process->Signal(SIGHUP);
  // The HTTP status of a call with `bearer` (an empty body: 400 once
  // authenticated, 401 before).
  auto status_with = [&](const std::string& bearer) {
    auto r = testing::RunProcess(
        {curl_, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
         absl::StrCat("Authorization: Bearer ", bearer), "-H",
         "Content-Type: application/json", "-d", "{}",
         absl::StrCat(edge_.url, "/v1/call/users.RegisterUser")},
        absl::Seconds(10));
    return r.ok() ? r->output : std::string("curl failed");
  };
  EXPECT_TRUE(WaitFor([&] { return status_with(new_token) == "400"; },
                      absl::Seconds(10)))
      << ReadFile(edge_.log);
  EXPECT_EQ(status_with(token), "401");
  EXPECT_THAT(ReadFile(edge_.log),
              HasSubstr("SIGHUP: bearer tokens reloaded (1)"));

  // ---- drain ----
  // The discovery edge through its preStop hook: drained, then not ready
  // and refusing new requests, still alive until SIGTERM.
  auto drained = HttpGet("127.0.0.1", discovery_edge_.metrics_port, "/drainz",
                         absl::Seconds(20));
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(drained->status, 200) << drained->body;
  EXPECT_THAT(drained->body, HasSubstr("drained"));
  for (int port : {discovery_edge_.port, discovery_edge_.metrics_port}) {
    auto ready = HttpGet("127.0.0.1", port, "/readyz");
    ASSERT_TRUE(ready.ok()) << ready.status();
    EXPECT_EQ(ready->status, 503) << port << ": " << ready->body;
  }
  auto refused = HttpGet("127.0.0.1", discovery_edge_.port,
                         "/v1/subscribe/users.events.UserRegistered");
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->status, 503);
  EXPECT_THAT(refused->body, HasSubstr("draining"));
  auto health = HttpGet("127.0.0.1", discovery_edge_.port, "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);

  // The script's streams ended with its process: the edge notices at its
  // next write (a keep-alive comment at the latest) and frees their slots.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto scrape = HttpGet("127.0.0.1", edge_.metrics_port, "/metrics");
        return scrape.ok() &&
               absl::StrContains(scrape->body, "\nnatsgw_edge_sse_streams 0\n");
      },
      absl::Seconds(10)))
      << "event streams whose client left are still counted";

  // The first edge on SIGTERM with a stream open (curl -N).
  const std::string sse = dir_ + "/sse.txt";
  auto stream = BackgroundProcess::Start(
      {curl_, "-sN", "-H", absl::StrCat("Authorization: Bearer ", new_token),
       absl::StrCat(edge_.url, "/v1/subscribe/users.events.%3E")},
      sse);
  ASSERT_TRUE(stream.ok()) << stream.status();
  ASSERT_TRUE(WaitFor(
      [&] {
        return absl::StrContains(ReadFile(sse),
                                 ": subscribed to users.events.>");
      },
      absl::Seconds(10)))
      << ReadFile(sse);
  const absl::Time sigterm = absl::Now();
  edge_.process->Signal(SIGTERM);
  absl::StatusOr<int> code = edge_.process->Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadFile(edge_.log);
  const absl::Duration drain_took = absl::Now() - sigterm;
  absl::StatusOr<int> curl_code = (*stream)->Wait(absl::Seconds(10));
  ASSERT_TRUE(curl_code.ok()) << curl_code.status();
  EXPECT_EQ(*curl_code, 0);
  EXPECT_THAT(ReadFile(sse),
              HasSubstr("event: shutdown\ndata: {\"reason\":\"draining\"}"));
  EXPECT_THAT(ReadFile(edge_.log),
              HasSubstr("SIGTERM received, shutting down"));
  EXPECT_THAT(ReadFile(edge_.log), HasSubstr("natsgw-edge: stopped"));
  // The tokens never show in the edge's output.
  EXPECT_THAT(ReadFile(edge_.log), ::testing::Not(HasSubstr(token)));
  EXPECT_THAT(ReadFile(edge_.log), ::testing::Not(HasSubstr(new_token)));

  discovery_edge_.process->Signal(SIGTERM);
  code = discovery_edge_.process->Wait(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << ReadFile(discovery_edge_.log);

  std::cout << "[figures] start-up "
            << absl::FormatDuration(started - test_start) << ", edge_check.mjs "
            << absl::FormatDuration(checked - started)
            << ", SIGTERM to exit with a stream open "
            << absl::FormatDuration(drain_took) << std::endl;
}

// Flags the edge refuses to start with: exit status 2 and a message naming
// the flag, before any connection is made (no server needed).
TEST(EdgeFlagsTest, RefusesUnsafeOrInvalidSettings) {
  struct Case {
    std::vector<std::string> flags;
    const char* message;
  };
  const std::string tokens =
      ::testing::TempDir() + "edge_flags_test_tokens.txt";
  {
    std::ofstream out(tokens);
    out << "tok-flags-test-0123456789\n";
  }
  const std::vector<Case> cases = {
      {{"--allow_call=users.RegisterUser"}, "--allow_unauthenticated"},
      {{"--allow_call=users.RegisterUser",
        absl::StrCat("--bearer_tokens_file=", tokens),
        "--allow_unauthenticated"},
       "contradict"},
      {{absl::StrCat("--bearer_tokens_file=", tokens)}, "--allow_call"},
      {{"--allow_call=$SRV.>", "--allow_unauthenticated"}, "--allow_call"},
      {{"--allow_subscribe=a..b", "--allow_unauthenticated"},
       "--allow_subscribe"},
      {{"--allow_call=x", "--bearer_tokens_file=/nonexistent/tokens"},
       "--bearer_tokens_file"},
      {{"--allow_call=x", "--allow_unauthenticated", "--max_streams=10",
        "--http_threads=12"},
       "http_threads"},
      {{"--allow_call=x", "--allow_unauthenticated", "--timeout=60s",
        "--max_timeout=30s"},
       "max_timeout"},
      {{"--allow_call=x", "--allow_unauthenticated",
        "--schema=/nonexistent/schemas"},
       "--schema"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {"/usr/bin/env", "-u", "NATSGW_SCHEMA_PATH",
                                     NATSGW_EDGE_BINARY,
                                     "--nats_url=nats://127.0.0.1:1"};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    auto r = testing::RunProcess(argv, absl::Seconds(20));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, 2) << c.flags.back() << ": " << r->output;
    EXPECT_THAT(r->output, HasSubstr(c.message)) << c.flags.back();
  }
  std::remove(tokens.c_str());
}

}  // namespace
}  // namespace natsgw
