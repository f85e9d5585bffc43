// monitoring/ proven against a real Prometheus: the example services run on
// a real nats-server under a bounded load; a real Prometheus server (Debian
// `prometheus`) scrapes them with the repository's scrape configuration and
// evaluates the repository's recording and alerting rules; the test reads
// the results through Prometheus's HTTP API. The services' /healthz and
// /readyz are probed too, before and while NATS is away.
//
// The configuration is used as committed except for two things a test cannot
// avoid changing, both in a copy: the targets file names the ports the
// services got, and the intervals shrink from 15s to 1s so that rates and
// alerts settle in seconds instead of minutes.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/http_client.h"
#include "harness/nats_server_fixture.h"
#include "harness/subprocess.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/schemas/users_natsgw.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

namespace fs = std::filesystem;
using ::natsgw::testing::BackgroundProcess;
using ::natsgw::testing::Eventually;
using ::natsgw::testing::HttpGet;

constexpr char kPrometheus[] = "/usr/bin/prometheus";
// Upper bound on each wait for Prometheus to see something; with 1s
// intervals everything settles within a few seconds.
constexpr absl::Duration kSettle = absl::Seconds(60);

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// A TCP port that was free a moment ago on 127.0.0.1.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string UrlEncode(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

class PrometheusEndToEndTest : public testing::NatsServerTest {
 protected:
  void SetUp() override {
    NatsServerTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(fs::exists(kPrometheus))
        << kPrometheus
        << " is missing: install the Debian package 'prometheus' "
           "(./scripts/test does)";
    dir_ = fs::temp_directory_path() /
           absl::StrCat("natsgw-prometheus-e2e-", getpid(), "-",
                        absl::ToUnixNanos(absl::Now()));
    fs::create_directories(dir_);
  }

  void TearDown() override {
    if (HasFailure()) {
      for (const char* log :
           {"user-service.log", "email-service.log", "prometheus.log"}) {
        std::cerr << "---- " << log << " ----\n"
                  << ReadFile(dir_ / log) << std::endl;
      }
    }
    // Processes first (their destructors SIGKILL and reap), then the files.
    prometheus_.reset();
    for (auto& service : services_) {
      if (service) service->Signal(SIGTERM);
    }
    for (auto& service : services_) {
      if (service) service->Wait(absl::Seconds(15)).IgnoreError();
    }
    services_.clear();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
    NatsServerTest::TearDown();
  }

  // Starts an example service with a free metrics port; returns the port.
  std::optional<int> StartService(const std::string& binary,
                                  const std::string& name) {
    const fs::path log = dir_ / absl::StrCat(name, ".log");
    auto p = BackgroundProcess::Start(
        {binary, absl::StrCat("--nats_url=", server().url()),
         "--metrics_port=0"},
        log.string());
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return std::nullopt;
    services_.push_back(*std::move(p));
    // "<name> ready: ..., metrics at http://127.0.0.1:<port>/metrics, ..."
    std::optional<int> port;
    Eventually(
        [&] {
          const std::string text = ReadFile(log);
          const size_t ready = text.find(absl::StrCat(name, " ready"));
          if (ready == std::string::npos) return false;
          const std::string marker = "metrics at http://127.0.0.1:";
          const size_t at = text.find(marker, ready);
          if (at == std::string::npos) return false;
          const size_t start = at + marker.size();
          int value = 0;
          if (!absl::SimpleAtoi(
                  text.substr(start, text.find('/', start) - start), &value)) {
            return false;
          }
          port = value;
          return true;
        },
        absl::Seconds(20));
    EXPECT_TRUE(port.has_value()) << name << " did not print its metrics URL";
    return port;
  }

  // Copies monitoring/prometheus, points it at the services and shrinks the
  // intervals, then starts Prometheus on it.
  void StartPrometheus(int user_port, int email_port) {
    const fs::path config_dir = dir_ / "prometheus";
    fs::copy(fs::path(NATSGW_SOURCE_DIR) / "monitoring" / "prometheus",
             config_dir, fs::copy_options::recursive);
    const fs::path config = config_dir / "prometheus.yml";
    const std::string original = ReadFile(config);
    const std::string fast = absl::StrReplaceAll(
        original, {{"scrape_interval: 15s", "scrape_interval: 1s"},
                   {"evaluation_interval: 15s", "evaluation_interval: 1s"},
                   {"scrape_timeout: 10s", "scrape_timeout: 1s"}});
    // If the committed intervals change, this test must be told.
    ASSERT_EQ(absl::StrReplaceAll(fast, {{": 1s", ": 15s"}}),
              absl::StrReplaceAll(
                  original, {{"scrape_timeout: 10s", "scrape_timeout: 15s"}}))
        << "monitoring/prometheus/prometheus.yml no longer has the 15s/10s "
           "intervals this test shortens";
    ASSERT_NE(fast, original);
    WriteFile(config, fast);
    // The committed targets are the example services' default ports.
    for (const auto& entry : fs::directory_iterator(config_dir / "targets")) {
      fs::remove(entry.path());
    }
    WriteFile(config_dir / "targets" / "example-services.json",
              nlohmann::json::array(
                  {{{"targets", {absl::StrCat("127.0.0.1:", user_port)}},
                    {"labels", {{"service", "user-service"}}}},
                   {{"targets", {absl::StrCat("127.0.0.1:", email_port)}},
                    {"labels", {{"service", "email-service"}}}}})
                  .dump(2));

    // A port taken between FreePort() and Prometheus binding it makes
    // Prometheus exit; try another.
    for (int attempt = 0; attempt < 3 && prometheus_ == nullptr; ++attempt) {
      port_ = FreePort();
      ASSERT_GT(port_, 0);
      auto p = BackgroundProcess::Start(
          {kPrometheus, absl::StrCat("--config.file=", config.string()),
           absl::StrCat("--storage.tsdb.path=", (dir_ / "data").string()),
           absl::StrCat("--web.listen-address=127.0.0.1:", port_),
           "--log.level=warn"},
          (dir_ / "prometheus.log").string());
      ASSERT_TRUE(p.ok()) << p.status();
      const bool ready = Eventually(
          [&] {
            auto r = HttpGet("127.0.0.1", port_, "/-/ready");
            return r.ok() && r->status == 200;
          },
          absl::Seconds(30));
      if (ready) prometheus_ = *std::move(p);
    }
    ASSERT_NE(prometheus_, nullptr) << "Prometheus did not become ready";
  }

  // GET /api/v1/<path>; the "data" member of a successful answer.
  std::optional<nlohmann::json> Api(const std::string& path) {
    auto r = HttpGet("127.0.0.1", port_, absl::StrCat("/api/v1/", path));
    if (!r.ok() || r->status != 200) return std::nullopt;
    nlohmann::json body = nlohmann::json::parse(r->body, nullptr, false);
    if (body.is_discarded() || body.value("status", "") != "success") {
      return std::nullopt;
    }
    return body["data"];
  }

  // The instant vector of `promql` (its "result" array), or nullopt.
  std::optional<nlohmann::json> Query(const std::string& promql) {
    std::optional<nlohmann::json> data =
        Api(absl::StrCat("query?query=", UrlEncode(promql)));
    if (!data) return std::nullopt;
    return (*data)["result"];
  }

  // The value of the first sample of `promql`, if any.
  std::optional<double> Scalar(const std::string& promql) {
    std::optional<nlohmann::json> result = Query(promql);
    if (!result || result->empty()) return std::nullopt;
    double v = 0;
    if (!absl::SimpleAtod((*result)[0]["value"][1].get<std::string>(), &v)) {
      return std::nullopt;
    }
    return v;
  }

  // The state ("pending", "firing") of `alertname`, or "" if inactive.
  std::string AlertState(const std::string& alertname) {
    std::optional<nlohmann::json> data = Api("alerts");
    if (!data) return "";
    for (const auto& alert : (*data)["alerts"]) {
      if (alert["labels"].value("alertname", "") == alertname) {
        return alert.value("state", "");
      }
    }
    return "";
  }

  fs::path dir_;
  int port_ = 0;
  std::vector<std::unique_ptr<BackgroundProcess>> services_;
  std::unique_ptr<BackgroundProcess> prometheus_;
};

TEST_F(PrometheusEndToEndTest, HistogramsRulesAndAlertsEvaluateOnRealTraffic) {
  std::optional<int> user_port =
      StartService(NATSGW_USER_SERVICE_BINARY, "user-service");
  std::optional<int> email_port =
      StartService(NATSGW_EMAIL_SERVICE_BINARY, "email-service");
  ASSERT_TRUE(user_port && email_port);
  ASSERT_NO_FATAL_FAILURE(StartPrometheus(*user_port, *email_port));

  ConnectionOptions options;
  options.servers = {server().url()};
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ClientOptions client_options;
  client_options.timeout = absl::Seconds(5);
  auto client = users::UsersClient::Create(**conn, client_options);
  ASSERT_TRUE(client.ok()) << client.status();

  int registered = 0;
  int refused = 0;
  // One registration; `valid` false sends an e-mail address without '@',
  // which the service refuses with INVALID_ARGUMENT.
  auto register_one = [&](bool valid) {
    const int n = registered + refused;
    const std::string email = valid ? absl::StrCat("user", n, "@example.com")
                                    : absl::StrCat("not-an-address-", n);
    auto reply = client->RegisterUser([&](flatbuffers::FlatBufferBuilder& fbb) {
      return users::CreateRegisterUserRequestDirect(fbb, email.c_str(), "U");
    });
    if (valid) {
      EXPECT_TRUE(reply.ok()) << reply.status();
      ++registered;
    } else {
      EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
      ++refused;
    }
  };
  // Load that keeps going across scrapes (a counter first seen at its final
  // value has no rate); bounded by count and time.
  auto load = [&](bool valid, absl::FunctionRef<bool()> done) {
    const absl::Time end = absl::Now() + kSettle;
    for (int i = 0; i < 3000 && absl::Now() < end; ++i) {
      register_one(valid);
      if (i % 10 == 9 && done()) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return done();
  };

  // 0. Beside /metrics, both services answer the probes: alive and ready.
  for (int port : {*user_port, *email_port}) {
    auto health = HttpGet("127.0.0.1", port, "/healthz");
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(health->status, 200) << health->body;
    auto ready = HttpGet("127.0.0.1", port, "/readyz");
    ASSERT_TRUE(ready.ok()) << ready.status();
    EXPECT_EQ(ready->status, 200) << ready->body;
    EXPECT_THAT(ready->body, ::testing::HasSubstr(R"("nats":"ok")"));
  }

  // 1. Both services are scraped.
  ASSERT_TRUE(Eventually(
      [&] {
        return Scalar(R"(count(up{job="natsgw"} == 1))").value_or(0) == 2;
      },
      kSettle))
      << Query(R"(up)").value_or(nlohmann::json()).dump();
  EXPECT_EQ(AlertState("NatsgwRequestErrorRatioHigh"), "");

  // 2. The latency histograms arrive, and the recording rules evaluate to
  // sane values: quantiles within the buckets, p50 <= p99, a positive rate.
  const std::string p99 =
      R"(job_subject:natsgw_server_request_duration_seconds:p99_rate1m{subject="users.RegisterUser"})";
  const std::string p50 =
      R"(job_subject:natsgw_server_request_duration_seconds:p50_rate1m{subject="users.RegisterUser"})";
  const std::string throughput =
      R"(job_subject:natsgw_server_request_duration_seconds_count:rate1m{subject="users.RegisterUser"})";
  ASSERT_TRUE(load(/*valid=*/true, [&] {
    std::optional<double> v = Scalar(p99);
    return v && std::isfinite(*v) && Scalar(throughput).value_or(0) > 0;
  })) << "recording rules did not produce values";
  EXPECT_GT(registered, 0);

  std::optional<nlohmann::json> buckets = Query(
      R"(natsgw_server_request_duration_seconds_bucket{subject="users.RegisterUser",code="OK"})");
  ASSERT_TRUE(buckets.has_value());
  EXPECT_EQ(buckets->size(), 16u) << buckets->dump();  // 15 bounds and +Inf
  EXPECT_GT(
      Scalar(
          R"(sum(natsgw_js_published_total{stream="USERS",result="stored"}))")
          .value_or(0),
      0);

  const double p99_value = Scalar(p99).value_or(-1);
  const double p50_value = Scalar(p50).value_or(-1);
  EXPECT_GT(p99_value, 0);
  EXPECT_LE(p99_value, 2.5);  // the largest finite bucket
  EXPECT_GE(p50_value, 0);
  EXPECT_LE(p50_value, p99_value);
  EXPECT_GT(Scalar(throughput).value_or(0), 0);
  // No error yet: the ratio is 0, or absent while no code but OK exists.
  EXPECT_EQ(
      Scalar(
          R"(job_subject:natsgw_server_request_errors:ratio_rate1m{subject="users.RegisterUser"})")
          .value_or(0),
      0);
  // The e-mail service consumed the events.
  EXPECT_TRUE(Eventually(
      [&] {
        return Scalar(
                   R"(sum(job_stream_consumer_outcome:natsgw_js_deliveries:rate1m{outcome="ack"}))")
                   .value_or(0) > 0;
      },
      kSettle));

  // 3. Injected errors: the error-ratio alert goes pending (and, given its
  // for: 2m, would fire if they went on).
  std::string state;
  EXPECT_TRUE(load(/*valid=*/false,
                   [&] {
                     state = AlertState("NatsgwRequestErrorRatioHigh");
                     return state == "pending" || state == "firing";
                   }))
      << "NatsgwRequestErrorRatioHigh stayed inactive after " << refused
      << " refused registrations; ratio "
      << Scalar(
             R"(job_subject:natsgw_server_request_errors:ratio_rate1m{subject="users.RegisterUser"})")
             .value_or(-1);
  EXPECT_GT(
      Scalar(
          R"(job_subject:natsgw_server_request_errors:ratio_rate1m{subject="users.RegisterUser"})")
          .value_or(0),
      0.05);
  // Caller mistakes are not faults.
  EXPECT_EQ(AlertState("NatsgwRequestFaultRatioHigh"), "");

  // 4. Without NATS the services stay alive but stop being ready, and are
  // ready again once it is back.
  ASSERT_TRUE(server().Stop().ok());
  for (int port : {*user_port, *email_port}) {
    std::string body;
    EXPECT_TRUE(Eventually([&] {
      auto ready = HttpGet("127.0.0.1", port, "/readyz");
      if (!ready.ok()) return false;
      body = ready->body;
      return ready->status == 503;
    })) << body;
    EXPECT_THAT(body, ::testing::HasSubstr("NATS connection is"));
    auto health = HttpGet("127.0.0.1", port, "/healthz");
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(health->status, 200);
  }
  ASSERT_TRUE(server().Restart().ok());
  for (int port : {*user_port, *email_port}) {
    EXPECT_TRUE(Eventually([&] {
      auto ready = HttpGet("127.0.0.1", port, "/readyz");
      return ready.ok() && ready->status == 200;
    }));
  }
}

}  // namespace
}  // namespace natsgw
