// Interop with a real peer: a natsgw::Service on a real nats-server, checked
// by tests/interop/services_check.js with the nats.js services client (npm
// `nats`): every PING/INFO/STATS reply, on all three control subjects,
// validated against the JSON schemas the nats CLI uses and compared with the
// configuration; its endpoints called from nats.js (echo bytes, a service
// error decoded by nats.js); STATS counting exactly those calls; and a reset
// instance reporting zeros next to one that was not reset.
//
// Node and tests/interop/node_modules are installed by scripts/lib/setup.sh;
// without them this test fails (it does not skip), saying what to run.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gateway_test_fixture.h"
#include "gtest/gtest.h"
#include "harness/nats_server_fixture.h"
#include "harness/subprocess.h"
#include "natsgw/connection.h"
#include "natsgw/logger.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/service.h"
#include "natsgw/typed_service.h"

#ifndef NATSGW_SOURCE_DIR
#error "NATSGW_SOURCE_DIR must be defined (the checkout's absolute path)"
#endif

namespace natsgw {
namespace {

using ::natsgw::testing::GatewayTest;
using ::natsgw::testing::ProcessResult;
using ::natsgw::testing::RunProcess;

// Bounds the node child; the script has its own 60 s watchdog, so this only
// catches a wedged runtime.
constexpr absl::Duration kChildTimeout = absl::Seconds(90);

bool IsExecutable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// `which node`: $NATSGW_NODE if set, else the first `node` on $PATH. On
// failure, says why.
absl::StatusOr<std::string> FindNode() {
  if (const char* explicit_node = std::getenv("NATSGW_NODE");
      explicit_node != nullptr && explicit_node[0] != '\0') {
    if (IsExecutable(explicit_node)) return std::string(explicit_node);
    return absl::NotFoundError(absl::StrCat("$NATSGW_NODE is \"", explicit_node,
                                            "\", not an executable file"));
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "", ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/node");
    if (IsExecutable(candidate)) return candidate;
  }
  return absl::NotFoundError(absl::StrCat("node is not on $PATH (",
                                          path != nullptr ? path : "",
                                          ") and $NATSGW_NODE is not set"));
}

class ServicesInteropTest : public GatewayTest {
 protected:
  void SetUp() override {
    GatewayTest::SetUp();
    if (HasFatalFailure()) return;
    interop_dir_ = absl::StrCat(NATSGW_SOURCE_DIR, "/tests/interop");
    absl::StatusOr<std::string> node = FindNode();
    ASSERT_TRUE(node.ok())
        << node.status().message()
        << ": the nats.js interop tests need Node.js (>= 18). ./scripts/test "
           "installs it (scripts/lib/setup.sh, natsgw_install_npm), or run "
           "`apt-get install nodejs npm`";
    node_ = *std::move(node);
    for (const char* package : {"nats", "ajv", "ajv-formats"}) {
      ASSERT_TRUE(Exists(absl::StrCat(interop_dir_, "/node_modules/", package,
                                      "/package.json")))
          << "npm package \"" << package << "\" is missing from "
          << interop_dir_
          << "/node_modules: run `npm ci --no-audit --no-fund` there "
             "(./scripts/test does it, see natsgw_install_npm in "
             "scripts/lib/setup.sh)";
    }
  }

  // Runs services_check.js against `service`, one of `instances` instances
  // of InteropConfig() on the server, with `extra` arguments, and returns its
  // result.
  ProcessResult Check(const Service& service, int instances,
                      const std::string& payload,
                      const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {
        "--instances",     absl::StrCat(instances),
        "--expect-json",   kExpectedIdentity,
        "--echo-subject",  "interop.echo",
        "--payload-hex",   absl::BytesToHexString(payload),
        "--error-subject", "interop.fail",
        "--error-code",    "404",
        "--error-message", "no such thing",
    };
    args.insert(args.end(), extra.begin(), extra.end());
    return RunCheck(service, args);
  }

  // Runs services_check.js against `service` with `args` after --url,
  // --name and --id.
  ProcessResult RunCheck(const Service& service,
                         const std::vector<std::string>& args) {
    std::vector<std::string> argv = {
        node_,    absl::StrCat(interop_dir_, "/services_check.js"),
        "--url",  server().url(),
        "--name", service.config().name,
        "--id",   service.id(),
    };
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<ProcessResult> result = RunProcess(argv, kChildTimeout);
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) return {};
    EXPECT_FALSE(result->timed_out)
        << "node did not finish within " << kChildTimeout;
    // In the test log either way: the failures, or how many checks passed.
    std::cout << result->output << std::flush;
    return *std::move(result);
  }

  // What InteropConfig() must look like to nats.js, written out by hand (not
  // derived from the config) so that an encoding or resolution mistake in
  // the documents shows: JSON escapes, non-ASCII text, the default queue
  // group "q" and the disabled one "", {} for empty metadata.
  static constexpr char kExpectedIdentity[] = R"json({
    "version": "1.0.0-beta.2+sha.5114f85",
    "description": "Echo \"service\" \\ with\nnewline and caf\u00e9",
    "metadata": {"k8s.pod": "interop-0", "quote\"key": "v\tal"},
    "endpoints": [
      {"name": "echo", "subject": "interop.echo", "queue_group": "q",
       "metadata": {"content-type": "application/octet-stream"}},
      {"name": "fail", "subject": "interop.fail", "queue_group": "",
       "metadata": {}}
    ]
  })json";

  static ServiceConfig InteropConfig() {
    ServiceConfig config;
    config.name = "natsgw-interop";
    config.version = "1.0.0-beta.2+sha.5114f85";
    // Characters JSON must escape, and non-ASCII text.
    config.description = "Echo \"service\" \\ with\nnewline and caf\xc3\xa9";
    config.metadata = {{"k8s.pod", "interop-0"}, {"quote\"key", "v\tal"}};
    EndpointConfig echo;
    echo.name = "echo";
    echo.subject = "interop.echo";
    echo.metadata = {{"content-type", "application/octet-stream"}};
    ServeOptions pool;
    pool.workers = 2;  // the worker-pool path, besides the inline one below
    echo.serve = pool;
    echo.handler = [](const Message& m) -> absl::StatusOr<Reply> {
      return Reply{m.data, {}};  // untyped: the request bytes back
    };
    config.endpoints.push_back(std::move(echo));
    EndpointConfig fail;
    fail.name = "fail";
    fail.subject = "interop.fail";
    fail.queue_group = "";  // no queue group: queue_group "" in INFO/STATS
    fail.handler = [](const Message&) -> absl::StatusOr<Reply> {
      return absl::NotFoundError("no such thing");
    };
    config.endpoints.push_back(std::move(fail));
    return config;
  }

  std::string interop_dir_;
  std::string node_;
};

TEST_F(ServicesInteropTest, NatsJsDiscoversValidatesAndCallsTheService) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  absl::StatusOr<std::unique_ptr<Service>> service =
      Service::Start(*conn, InteropConfig());
  ASSERT_TRUE(service.ok()) << service.status();

  // Binary-safe: NUL, high bytes, and text.
  const std::string payload = std::string("\x00\xff\x7f hello \x01", 10);
  ProcessResult result = Check(**service, /*instances=*/1, payload);
  EXPECT_EQ(result.exit_code, 0) << "services_check.js failed: see its output";
  EXPECT_NE(result.output.find("services_check: OK"), std::string::npos);
}

// Two instances, one of them reset after serving: nats.js must get valid
// documents from both on the all-services and by-name subjects, the reset
// one reporting zeros and a new `started`, the other its calls; and the calls
// the script makes are counted across both (echo in queue group "q" by one
// instance each, the error endpoint without a queue group by both).
TEST_F(ServicesInteropTest, TwoInstancesAndAfterReset) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  absl::StatusOr<std::unique_ptr<Service>> a =
      Service::Start(*conn, InteropConfig());
  ASSERT_TRUE(a.ok()) << a.status();
  auto other_conn = Connect();
  ASSERT_NE(other_conn, nullptr);
  absl::StatusOr<std::unique_ptr<Service>> b =
      Service::Start(*other_conn, InteropConfig());
  ASSERT_TRUE(b.ok()) << b.status();

  // Statistics for the reset to clear: both instances handle every call to
  // interop.fail (no queue group).
  constexpr int kCalls = 3;
  for (int i = 0; i < kCalls; ++i) {
    absl::StatusOr<Message> reply =
        conn->Request("interop.fail", "x", absl::Seconds(5));
    EXPECT_EQ(reply.status().code(), absl::StatusCode::kNotFound)
        << reply.status();
  }
  // The first reply may be b's, sent before a has recorded its own call;
  // wait for a's records (bounded), so that none lands after the reset.
  constexpr size_t kFail = 1;  // index of "fail" in InteropConfig()
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while ((*a)->stats()[kFail].num_requests < kCalls && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ((*a)->stats()[kFail].num_requests, kCalls);
  const absl::Time before_reset = absl::Now();
  (*a)->ResetStats();

  ProcessResult result = Check(**b, /*instances=*/2, "payload",
                               {"--reset-id", (*a)->id(), "--reset-after-ns",
                                absl::StrCat(absl::ToUnixNanos(before_reset))});
  EXPECT_EQ(result.exit_code, 0) << "services_check.js failed: see its output";
  EXPECT_NE(result.output.find("services_check: OK"), std::string::npos);
}

// A typed service (natsgw-gen's EchoServiceBase): nats.js discovers it,
// sees the FlatBuffers contract in the endpoint metadata, and calls it with
// a FlatBuffer, getting the exact reply bytes the typed handler builds.
class InteropEcho : public echo::EchoServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<echo::EchoReply>> Echo(
      const echo::EchoRequest& request, ServerContext& ctx) override {
    flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
    return echo::CreateEchoReply(
        fbb,
        fbb.CreateVector(request.payload()->data(), request.payload()->size()),
        request.tag() + 1);
  }
};

// Bytes of a finished EchoRequest or EchoReply (same layout) with
// `payload` and `tag`, finished with echo.fbs's identifier as natsgw does.
template <class Create>
std::string EchoBytes(Create create, absl::string_view payload, uint64_t tag) {
  flatbuffers::FlatBufferBuilder fbb;
  auto data = fbb.CreateVector(reinterpret_cast<const uint8_t*>(payload.data()),
                               payload.size());
  fbb.Finish(create(fbb, data, tag), "NGEC");
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                     fbb.GetSize());
}

TEST_F(ServicesInteropTest, NatsJsDiscoversAndCallsATypedService) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  InteropEcho impl;
  TypedServiceOptions options;
  options.version = "2.0.1";
  absl::StatusOr<std::unique_ptr<Service>> service = impl.Start(*conn, options);
  ASSERT_TRUE(service.ok()) << service.status();

  // What natsgw-gen's stubs register for echo.fbs, written out by hand
  // (but for the binary schema, which is the generated one).
  const std::string typed_identity = absl::StrCat(
      R"json({
    "version": "2.0.1",
    "description": "natsgw.echo.Echo (echo.fbs)",
    "metadata": {"fbs.schema": "echo.fbs", "fbs.service": "natsgw.echo.Echo",
                 "fbs.bfbs": ")json",
      absl::Base64Escape(echo::EchoMethods::kService.schema_bfbs), R"json("},
    "endpoints": [
      {"name": "Echo", "subject": "echo.Echo", "queue_group": "q",
       "metadata": {"fbs.file_identifier": "NGEC",
                    "fbs.request_type": "natsgw.echo.EchoRequest",
                    "fbs.response_type": "natsgw.echo.EchoReply",
                    "fbs.schema": "echo.fbs"}}
    ]
  })json");
  const std::string request = EchoBytes(
      [](flatbuffers::FlatBufferBuilder& fbb, auto data, uint64_t tag) {
        return echo::CreateEchoRequest(fbb, data, tag);
      },
      "from nats.js", 41);
  const std::string reply = EchoBytes(
      [](flatbuffers::FlatBufferBuilder& fbb, auto data, uint64_t tag) {
        return echo::CreateEchoReply(fbb, data, tag);
      },
      "from nats.js", 42);
  ProcessResult result = RunCheck(
      **service, {"--expect-json", typed_identity, "--call-subject",
                  "echo.Echo", "--request-hex", absl::BytesToHexString(request),
                  "--reply-hex", absl::BytesToHexString(reply)});
  EXPECT_EQ(result.exit_code, 0) << "services_check.js failed: see its output";
  EXPECT_NE(result.output.find("services_check: OK"), std::string::npos);
}

}  // namespace
}  // namespace natsgw
