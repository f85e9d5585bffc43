// The natsgw command-line tool end to end: the real `natsgw` binary, run as
// a subprocess against a real nats-server (JetStream) and the real
// user-service and email-service binaries, checked on its stdout, stderr
// and exit status: calls with a local schema and with the schema the
// services announce, --json, --count/--concurrency summaries, a pub/sub
// round trip on trace IDs, services ls/info/stats, bench, --help, and the
// error paths with their exit statuses.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/nats_server.h"
#include "harness/subprocess.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kNatsgw[] = NATSGW_CLI_BINARY;
const std::string kSchemas = absl::StrCat(NATSGW_SOURCE_DIR, "/schemas");
// A port nothing listens on (TCP port 1, tcpmux, is never served here).
constexpr char kUnreachableUrl[] = "nats://127.0.0.1:1";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// What one natsgw run printed and how it ended.
struct CliRun {
  int exit_code = -1;
  std::string out;
  std::string err;
  absl::Duration took;
};

void PrintTo(const CliRun& run, std::ostream* os) {
  *os << "exit " << run.exit_code << "\n--- stdout ---\n"
      << run.out << "\n--- stderr ---\n"
      << run.err;
}

// A temporary directory, removed with the object.
class TempDir {
 public:
  TempDir()
      : path_(fs::temp_directory_path() /
              absl::StrCat("natsgw-cli-", getpid(), "-",
                           absl::ToUnixNanos(absl::Now()))) {
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(absl::string_view name) const {
    return absl::StrCat(path_, "/", name);
  }

 private:
  std::string path_;
};

// The shell line that runs natsgw with stdin and stderr redirected and
// without the environment variables that would change its defaults (the
// test's own environment may set them). $1: stdin, $2: stderr file.
constexpr char kWrapper[] =
    "in=$1; err=$2; shift 2; "
    "exec env -u NATS_URL -u NATSGW_SCHEMA_PATH \"$@\" <\"$in\" 2>\"$err\"";

// Runs natsgw with `args`, `stdin_text` on stdin, for at most 60 s.
CliRun Natsgw(const TempDir& dir, std::vector<std::string> args,
              const std::string& stdin_text = "") {
  static int n = 0;
  const std::string in = dir.File(absl::StrCat("stdin-", n));
  const std::string err = dir.File(absl::StrCat("stderr-", n++));
  std::ofstream(in) << stdin_text;
  std::vector<std::string> argv = {"/bin/sh", "-c", kWrapper, "sh",
                                   in,        err,  kNatsgw};
  argv.insert(argv.end(), args.begin(), args.end());
  const absl::Time start = absl::Now();
  absl::StatusOr<testing::ProcessResult> result =
      testing::RunProcess(argv, absl::Seconds(60));
  CliRun run;
  run.took = absl::Now() - start;
  if (!result.ok()) {
    ADD_FAILURE() << result.status();
    return run;
  }
  EXPECT_FALSE(result->timed_out) << "natsgw " << absl::StrJoin(args, " ");
  run.exit_code = result->exit_code;
  run.out = result->output;
  run.err = ReadFile(err);
  return run;
}

// natsgw running in the background (e.g. `sub`), stdout and stderr in
// files.
struct Background {
  std::unique_ptr<testing::BackgroundProcess> process;
  std::string out_path;
  std::string err_path;
  std::string out() const { return ReadFile(out_path); }
  std::string err() const { return ReadFile(err_path); }
};

Background StartNatsgw(const TempDir& dir, const std::string& name,
                       std::vector<std::string> args) {
  Background bg{nullptr, dir.File(name + ".out"), dir.File(name + ".err")};
  std::vector<std::string> argv = {"/bin/sh",   "-c",        kWrapper, "sh",
                                   "/dev/null", bg.err_path, kNatsgw};
  argv.insert(argv.end(), args.begin(), args.end());
  auto process = testing::BackgroundProcess::Start(argv, bg.out_path);
  EXPECT_TRUE(process.ok()) << process.status();
  if (process.ok()) bg.process = *std::move(process);
  return bg;
}

const std::regex kTraceLine(R"(trace=([0-9a-f]{32}) latency=\d)");

// The trace ID of `trace=<id> latency=...` in `text`, or "".
std::string TraceOf(const std::string& text) {
  std::smatch m;
  return std::regex_search(text, m, kTraceLine) ? m[1].str() : "";
}

// Runs without a server: usage, help and what is checked before connecting.
class CliUsageTest : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(CliUsageTest, HelpOnEveryCommand) {
  CliRun top = Natsgw(dir_, {"--help"});
  EXPECT_EQ(top.exit_code, 0) << ::testing::PrintToString(top);
  for (const char* text :
       {"call", "pub", "sub", "services", "bench", "Exit status",
        "4    cannot connect to NATS", "--nats_url"}) {
    EXPECT_THAT(top.out, HasSubstr(text));
  }
  // No command at all: the same text, as a usage error on stderr.
  CliRun none = Natsgw(dir_, {});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("Commands:"));

  for (const char* command : {"call", "pub", "sub", "services", "bench"}) {
    SCOPED_TRACE(command);
    CliRun help = Natsgw(dir_, {command, "--help"});
    EXPECT_EQ(help.exit_code, 0) << ::testing::PrintToString(help);
    EXPECT_THAT(help.out, HasSubstr(absl::StrCat("Usage: natsgw ", command)));
    EXPECT_THAT(help.out, HasSubstr("Examples:"));
    EXPECT_THAT(help.out, HasSubstr("Exit status:"));
    // `natsgw help <command>` is the same text.
    CliRun help2 = Natsgw(dir_, {"help", command});
    EXPECT_EQ(help2.exit_code, 0);
    EXPECT_EQ(help2.out, help.out);
  }
  // Each command lists only its own flags.
  CliRun call = Natsgw(dir_, {"call", "--help"});
  EXPECT_THAT(call.out, AllOf(HasSubstr("--timeout=DURATION"),
                              HasSubstr("--concurrency=N"),
                              HasSubstr("--header=KEY=VALUE")));
  EXPECT_THAT(call.out, Not(HasSubstr("--queue")));
  CliRun sub = Natsgw(dir_, {"sub", "--help"});
  EXPECT_THAT(sub.out, HasSubstr("--queue=GROUP"));
  EXPECT_THAT(sub.out, Not(HasSubstr("--concurrency")));
  CliRun services = Natsgw(dir_, {"help", "services"});
  EXPECT_THAT(services.out, AllOf(HasSubstr("ls"), HasSubstr("info"),
                                  HasSubstr("stats"), HasSubstr("--wait")));

  CliRun full = Natsgw(dir_, {"--helpfull"});
  EXPECT_EQ(full.exit_code, 0);
  EXPECT_THAT(full.out, HasSubstr("Flags from sdk/tools/natsgw/"));
  CliRun version = Natsgw(dir_, {"--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_THAT(version.out, ContainsRegex(R"(^natsgw [0-9]+\.[0-9]+\.[0-9]+)"));
}

TEST_F(CliUsageTest, UsageErrorsExitTwo) {
  CliRun unknown_command = Natsgw(dir_, {"frobnicate"});
  EXPECT_EQ(unknown_command.exit_code, 2);
  EXPECT_THAT(unknown_command.err, HasSubstr("unknown command \"frobnicate\""));

  CliRun unknown_flag =
      Natsgw(dir_, {"call", "users.RegisterUser", "--bogus=1"});
  EXPECT_EQ(unknown_flag.exit_code, 2);
  EXPECT_THAT(unknown_flag.err, HasSubstr("unknown flag --bogus"));

  // A flag of another command is refused, naming both.
  CliRun other = Natsgw(dir_, {"call", "users.RegisterUser", "--queue=q"});
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_THAT(other.err, HasSubstr("flag --queue does not apply to natsgw "
                                   "call (it is a flag of natsgw sub)"));
  CliRun other2 = Natsgw(dir_, {"services", "ls", "--count=3"});
  EXPECT_EQ(other2.exit_code, 2);
  EXPECT_THAT(other2.err,
              HasSubstr("--count does not apply to natsgw services"));

  CliRun missing = Natsgw(dir_, {"call"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("usage: natsgw call <subject> [json]"));

  CliRun bad_value = Natsgw(dir_, {"call", "a.b", "{}", "--timeout=soon"});
  EXPECT_EQ(bad_value.exit_code, 2);
  EXPECT_THAT(bad_value.err, HasSubstr("--timeout"));

  CliRun bad_subject = Natsgw(dir_, {"call", "a.>", "{}"});
  EXPECT_EQ(bad_subject.exit_code, 2);

  CliRun bad_header =
      Natsgw(dir_, {"call", "a.b", "x", "--raw", "--header=no-equals-sign"});
  EXPECT_EQ(bad_header.exit_code, 2);
  EXPECT_THAT(bad_header.err, HasSubstr("KEY=VALUE"));
  CliRun reserved =
      Natsgw(dir_, {"call", "a.b", "x", "--raw", "--header=traceparent=00-x"});
  EXPECT_EQ(reserved.exit_code, 2);
  EXPECT_THAT(reserved.err, HasSubstr("reserved"));
}

// JSON is checked against a local schema before connecting: no server is
// needed to learn that it is wrong.
TEST_F(CliUsageTest, JsonThatDoesNotMatchTheSchemaExitsTwo) {
  const std::vector<std::string> common = {
      "call", "users.RegisterUser", absl::StrCat("--schema=", kSchemas),
      absl::StrCat("--nats_url=", kUnreachableUrl)};
  auto with = [&](std::string json) {
    std::vector<std::string> args = common;
    args.push_back(std::move(json));
    return Natsgw(dir_, args);
  };
  CliRun syntax = with(R"({"email": })");
  EXPECT_EQ(syntax.exit_code, 2) << ::testing::PrintToString(syntax);
  EXPECT_THAT(syntax.err, AllOf(HasSubstr("natsgw.users.RegisterUserRequest"),
                                HasSubstr("line 1"), HasSubstr("column")));
  CliRun unknown_field = with(R"({"emial": "a@b.c"})");
  EXPECT_EQ(unknown_field.exit_code, 2);
  EXPECT_THAT(unknown_field.err, HasSubstr("unknown field: emial"));
  CliRun missing = with(R"({"display_name": "Ada"})");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.err, HasSubstr("required field is missing: email"));
  CliRun wrong_type = with(R"({"email": 42})");
  EXPECT_EQ(wrong_type.exit_code, 2);

  // The event of `pub` likewise.
  CliRun pub =
      Natsgw(dir_, {"pub", "users.events.UserRegistered", R"({"user_id": 1})",
                    absl::StrCat("--schema=", kSchemas),
                    absl::StrCat("--nats_url=", kUnreachableUrl)});
  EXPECT_EQ(pub.exit_code, 2) << ::testing::PrintToString(pub);
}

TEST_F(CliUsageTest, UnreachableNatsExitsFour) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"call", "users.RegisterUser", "{}"},
           {"services", "ls"},
           {"sub", "a.b", "--raw"}}) {
    args.push_back(absl::StrCat("--nats_url=", kUnreachableUrl));
    CliRun run = Natsgw(dir_, args);
    EXPECT_EQ(run.exit_code, 4) << ::testing::PrintToString(run);
    EXPECT_THAT(run.err, HasSubstr("cannot connect to NATS"));
    EXPECT_LT(run.took, absl::Seconds(15));
  }
}

// A nats-server with JetStream, the user-service and the email-service,
// started per test (ctest runs every test in a process of its own).
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = testing::NatsServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    nats_url_ = absl::StrCat("--nats_url=", server_->url());
    users_ = StartService(NATSGW_USER_SERVICE_BINARY, "user-service");
    emails_ = StartService(NATSGW_EMAIL_SERVICE_BINARY, "email-service");
    for (const char* name : {"user-service", "email-service"}) {
      const std::string log = dir_.File(absl::StrCat(name, ".log"));
      ASSERT_TRUE(testing::Eventually(
          [&] {
            return absl::StrContains(ReadFile(log),
                                     absl::StrCat(name, " ready"));
          },
          absl::Seconds(30)))
          << name << " did not start:\n"
          << ReadFile(log);
    }
  }

  void TearDown() override {
    if (HasFailure()) {
      for (const char* name : {"user-service", "email-service"}) {
        std::cerr << "---- " << name << " ----\n"
                  << ReadFile(dir_.File(absl::StrCat(name, ".log")))
                  << std::endl;
      }
    }
  }

  std::unique_ptr<testing::BackgroundProcess> StartService(
      const char* binary, const std::string& name) {
    auto process = testing::BackgroundProcess::Start(
        {binary, nats_url_, "--metrics_port=-1"},
        dir_.File(absl::StrCat(name, ".log")));
    EXPECT_TRUE(process.ok()) << process.status();
    return process.ok() ? *std::move(process) : nullptr;
  }

  // natsgw <args> --nats_url=<the test's server>.
  CliRun Cli(std::vector<std::string> args,
             const std::string& stdin_text = "") {
    args.push_back(nats_url_);
    return Natsgw(dir_, std::move(args), stdin_text);
  }

  TempDir dir_;
  std::unique_ptr<testing::NatsServer> server_;
  std::string nats_url_;
  std::unique_ptr<testing::BackgroundProcess> users_;
  std::unique_ptr<testing::BackgroundProcess> emails_;
};

TEST_F(CliTest, CallWithLocalSchema) {
  const std::string schema = absl::StrCat("--schema=", kSchemas);
  CliRun ok =
      Cli({"call", "users.RegisterUser",
           R"({"email": "ada@example.com", "display_name": "Ada"})", schema});
  ASSERT_EQ(ok.exit_code, 0) << ::testing::PrintToString(ok);
  // stdout is the reply alone, as JSON.
  nlohmann::json reply = nlohmann::json::parse(ok.out, nullptr, false);
  ASSERT_FALSE(reply.is_discarded()) << ok.out;
  EXPECT_TRUE(absl::StartsWith(reply.value("user_id", ""), "u-")) << ok.out;
  EXPECT_GT(reply.value("created_at_unix_ms", 0LL), 0);
  EXPECT_NE(TraceOf(ok.err), "") << ok.err;

  // The same e-mail again: the service's ALREADY_EXISTS, with the trace.
  CliRun again = Cli({"call", "users.RegisterUser",
                      R"({"email": "ada@example.com"})", schema});
  EXPECT_EQ(again.exit_code, 1) << ::testing::PrintToString(again);
  EXPECT_THAT(again.err,
              ContainsRegex("natsgw: ALREADY_EXISTS: a user with email "
                            "ada@example.com is already registered \\(trace "
                            "[0-9a-f]{32}\\)"));
  EXPECT_EQ(again.out, "");

  // From stdin ("-"), with --json and --verbose: one JSON object.
  CliRun json = Cli({"call", "users.RegisterUser", "-", schema, "--json",
                     "--verbose", "--header=Tenant=acme"},
                    R"({"email": "bob@example.com"})");
  ASSERT_EQ(json.exit_code, 0) << ::testing::PrintToString(json);
  nlohmann::json object = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(object.is_object()) << json.out;
  EXPECT_EQ(object["subject"], "users.RegisterUser");
  EXPECT_THAT(object.value("trace_id", ""), ContainsRegex("^[0-9a-f]{32}$"));
  EXPECT_GT(object.value("latency_us", 0.0), 0);
  EXPECT_TRUE(absl::StartsWith(object["reply"].value("user_id", ""), "u-"));
  EXPECT_TRUE(object["headers"].contains("traceparent")) << json.out;
  // The trace on stdout is the one on stderr.
  EXPECT_EQ(TraceOf(json.err), object["trace_id"]) << json.err;

  // An error with --json: the error object on stdout, the line on stderr.
  CliRun json_error = Cli({"call", "users.RegisterUser",
                           R"({"email": "no-at-sign"})", schema, "--json"});
  EXPECT_EQ(json_error.exit_code, 1);
  object = nlohmann::json::parse(json_error.out, nullptr, false);
  ASSERT_TRUE(object.is_object()) << json_error.out;
  EXPECT_EQ(object["error"]["code"], "INVALID_ARGUMENT");
  EXPECT_THAT(json_error.err, HasSubstr("natsgw: INVALID_ARGUMENT: email"));
}

// No schema at hand: the types and the binary schema come from the
// service's $SRV.INFO metadata (fbs.request_type, fbs.bfbs).
TEST_F(CliTest, CallDiscoversTheSchemaFromServiceMetadata) {
  CliRun run =
      Cli({"call", "users.RegisterUser", R"({"email": "carol@example.com"})"});
  ASSERT_EQ(run.exit_code, 0) << ::testing::PrintToString(run);
  nlohmann::json reply = nlohmann::json::parse(run.out, nullptr, false);
  ASSERT_FALSE(reply.is_discarded()) << run.out;
  EXPECT_TRUE(absl::StartsWith(reply.value("user_id", ""), "u-"));
  EXPECT_NE(TraceOf(run.err), "");

  // The discovered schema checks the JSON too.
  CliRun bad = Cli({"call", "users.RegisterUser", R"({"emial": "x@y.z"})"});
  EXPECT_EQ(bad.exit_code, 2) << ::testing::PrintToString(bad);
  EXPECT_THAT(bad.err, HasSubstr("unknown field: emial"));

  // Nothing serves it and no schema has it: exit 3, saying what was tried.
  CliRun none = Cli({"call", "nothing.Here", "{}"});
  EXPECT_EQ(none.exit_code, 3) << ::testing::PrintToString(none);
  EXPECT_THAT(none.err, AllOf(HasSubstr("NOT_FOUND"), HasSubstr("--schema")));
  CliRun pub_none = Cli({"pub", "nothing.events.Happened", "{}"});
  EXPECT_EQ(pub_none.exit_code, 3) << ::testing::PrintToString(pub_none);
}

TEST_F(CliTest, CountAndConcurrencyPrintASummary) {
  // The first registration succeeds, the 19 others are duplicates.
  CliRun run =
      Cli({"call", "users.RegisterUser", R"({"email": "dave@example.com"})",
           "--count=20", "--concurrency=4", "--progress"});
  EXPECT_EQ(run.exit_code, 1) << ::testing::PrintToString(run);
  EXPECT_THAT(run.out,
              HasSubstr("calls       20 (ok 1, failed 19: ALREADY_EXISTS 19)"));
  EXPECT_THAT(run.out,
              AllOf(ContainsRegex("latency +min [0-9.]+ [um]?s  p50 "),
                    HasSubstr(" p90 "), HasSubstr(" p99 "), HasSubstr(" max "),
                    ContainsRegex("throughput  [0-9]+ calls/s "
                                  "\\(20 in .*, concurrency 4\\)")));
  // The progress bar, and one line per kind of failure.
  EXPECT_THAT(run.err, HasSubstr("20/20 100%"));
  EXPECT_THAT(run.err, ContainsRegex("natsgw: ALREADY_EXISTS: 19 calls, the "
                                     "first: .* \\(trace [0-9a-f]{32}\\)"));

  CliRun json = Cli({"call", "email.SendWelcomeEmail",
                     R"({"user_id": "u-1", "email": "dave@example.com"})",
                     "--count=30", "--concurrency=3", "--json"});
  ASSERT_EQ(json.exit_code, 0) << ::testing::PrintToString(json);
  nlohmann::json summary = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(summary.is_object()) << json.out;
  EXPECT_EQ(summary["count"], 30);
  EXPECT_EQ(summary["ok"], 30);
  EXPECT_TRUE(summary["errors"].empty());
  EXPECT_LE(summary["latency_us"]["min"].get<double>(),
            summary["latency_us"]["p50"].get<double>());
  EXPECT_LE(summary["latency_us"]["p50"].get<double>(),
            summary["latency_us"]["max"].get<double>());
  EXPECT_GT(summary["throughput_per_s"].get<double>(), 0);
  // Not a terminal and no --progress: no bar.
  EXPECT_THAT(json.err, Not(HasSubstr("100%")));
}

// sub runs first; pub's message and the event of a registration arrive
// decoded, each on the trace that caused it.
TEST_F(CliTest, PubSubRoundTripOnTraceIds) {
  Background json_sub =
      StartNatsgw(dir_, "sub-json",
                  {"sub", "users.events.UserRegistered", "--count=2",
                   "--timeout=30s", "--json", "--verbose", nats_url_});
  Background text_sub = StartNatsgw(
      dir_, "sub-text",
      {"sub", "users.events.>", "--count=2", "--timeout=30s", nats_url_});
  for (const Background* bg : {&json_sub, &text_sub}) {
    ASSERT_TRUE(testing::Eventually(
        [&] { return absl::StrContains(bg->err(), "subscribed to"); },
        absl::Seconds(20)))
        << bg->err();
  }

  // --header repeats: every one is sent.
  CliRun pub = Cli({"pub", "users.events.UserRegistered",
                    R"({"user_id": "u-pub", "email": "pub@example.com"})",
                    "--header=Tenant=acme", "--header=Region=eu-west"});
  ASSERT_EQ(pub.exit_code, 0) << ::testing::PrintToString(pub);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      pub.out, m,
      std::regex(
          R"(published users\.events\.UserRegistered trace=([0-9a-f]{32}) id=(\S+))")))
      << pub.out;
  const std::string pub_trace = m[1];
  const std::string pub_id = m[2];

  CliRun call =
      Cli({"call", "users.RegisterUser", R"({"email": "erin@example.com"})"});
  ASSERT_EQ(call.exit_code, 0) << ::testing::PrintToString(call);
  const std::string call_trace = TraceOf(call.err);

  for (Background* bg : {&json_sub, &text_sub}) {
    absl::StatusOr<int> exit_code = bg->process->Wait(absl::Seconds(30));
    ASSERT_TRUE(exit_code.ok()) << bg->err();
    EXPECT_EQ(*exit_code, 0) << bg->err();
    EXPECT_THAT(bg->err(), HasSubstr("received 2 of 2 messages"));
  }
  std::vector<nlohmann::json> lines;
  for (absl::string_view line :
       absl::StrSplit(json_sub.out(), '\n', absl::SkipEmpty())) {
    lines.push_back(nlohmann::json::parse(line, nullptr, false));
    ASSERT_TRUE(lines.back().is_object()) << line;
  }
  ASSERT_EQ(lines.size(), 2u) << json_sub.out();
  EXPECT_EQ(lines[0]["trace_id"], pub_trace);
  EXPECT_EQ(lines[0]["message_id"], pub_id);
  EXPECT_EQ(lines[0]["data"]["email"], "pub@example.com");
  EXPECT_GE(lines[0]["latency_us"].get<double>(), 0);
  const nlohmann::json& headers = lines[0]["headers"];
  EXPECT_NE(std::find(headers.begin(), headers.end(),
                      nlohmann::json::array({"Tenant", "acme"})),
            headers.end())
      << headers;
  EXPECT_NE(std::find(headers.begin(), headers.end(),
                      nlohmann::json::array({"Region", "eu-west"})),
            headers.end())
      << headers;
  // The user service's event continues the call's trace.
  EXPECT_EQ(lines[1]["trace_id"], call_trace);
  EXPECT_EQ(lines[1]["data"]["email"], "erin@example.com");

  const std::string text = text_sub.out();
  EXPECT_THAT(text, ContainsRegex(absl::StrCat(
                        "users\\.events\\.UserRegistered trace=", pub_trace,
                        " latency=[-0-9.]+ [um]?s \\{.*pub@example\\.com")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("trace=", call_trace)));
}

TEST_F(CliTest, SubUndecodablePayloadsAndCountNotReached) {
  Background sub = StartNatsgw(dir_, "sub",
                               {"sub", "users.events.>", "--count=1",
                                "--timeout=30s", "--json", nats_url_});
  ASSERT_TRUE(testing::Eventually(
      [&] { return absl::StrContains(sub.err(), "subscribed to"); },
      absl::Seconds(20)))
      << sub.err();
  // Bytes that are no UserRegistered: shown in base64 with the reason.
  CliRun pub =
      Cli({"pub", "users.events.UserRegistered", "not a flatbuffer", "--raw"});
  ASSERT_EQ(pub.exit_code, 0) << ::testing::PrintToString(pub);
  absl::StatusOr<int> exit_code = sub.process->Wait(absl::Seconds(30));
  ASSERT_TRUE(exit_code.ok());
  EXPECT_EQ(*exit_code, 0) << sub.err();
  nlohmann::json line = nlohmann::json::parse(sub.out(), nullptr, false);
  ASSERT_TRUE(line.is_object()) << sub.out();
  EXPECT_EQ(line["data_base64"], "bm90IGEgZmxhdGJ1ZmZlcg==");
  EXPECT_FALSE(line.value("error", "").empty()) << sub.out();

  // --count not reached within --timeout: exit 1.
  CliRun timeout = Cli(
      {"sub", "nothing.happens.here", "--raw", "--count=1", "--timeout=500ms"});
  EXPECT_EQ(timeout.exit_code, 1) << ::testing::PrintToString(timeout);
  EXPECT_THAT(timeout.err, HasSubstr("DEADLINE_EXCEEDED: received 0 of 1"));
  // A literal subject no schema knows: exit 3 (use --raw or --type).
  CliRun no_schema =
      Cli({"sub", "nothing.events.Happened", "--count=1", "--timeout=500ms"});
  EXPECT_EQ(no_schema.exit_code, 3) << ::testing::PrintToString(no_schema);
}

// A responder whose replies are not the method's response type: a single
// call and every call of a --count run fail with DATA_LOSS.
TEST_F(CliTest, UndecodableRepliesAreFailedCalls) {
  ConnectionOptions options;
  options.servers = {server_->url()};
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  auto endpoint = (*conn)->Serve("echo.Echo", "q",
                                 [](const Message&) -> absl::StatusOr<Reply> {
                                   return Reply{std::string(37, '\xff'), {}};
                                 });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  const std::string schema =
      absl::StrCat("--schema=", NATSGW_SOURCE_DIR, "/schemas/echo.fbs");

  CliRun one = Cli({"call", "echo.Echo", R"({"tag": 1})", schema});
  EXPECT_EQ(one.exit_code, 1) << ::testing::PrintToString(one);
  EXPECT_THAT(one.err, HasSubstr("DATA_LOSS: the reply (37 bytes"));

  CliRun many = Cli({"call", "echo.Echo", R"({"tag": 1})", schema, "--count=5",
                     "--concurrency=2", "--json"});
  EXPECT_EQ(many.exit_code, 1) << ::testing::PrintToString(many);
  nlohmann::json summary = nlohmann::json::parse(many.out, nullptr, false);
  ASSERT_TRUE(summary.is_object()) << many.out;
  EXPECT_EQ(summary["ok"], 0) << many.out;
  EXPECT_EQ(summary["count"], 5) << many.out;

  CliRun bench = Cli(
      {"bench", "echo.Echo", R"({"tag": 1})", schema, "--count=5", "--json"});
  EXPECT_EQ(bench.exit_code, 1) << ::testing::PrintToString(bench);
}

TEST_F(CliTest, ServicesLsInfoStats) {
  // Answers on loopback take milliseconds; half a second is plenty.
  const std::string kWait = "--wait=500ms";
  ASSERT_EQ(
      Cli({"call", "users.RegisterUser", R"({"email": "frank@example.com"})"})
          .exit_code,
      0);
  ASSERT_EQ(
      Cli({"call", "users.RegisterUser", R"({"email": "frank@example.com"})"})
          .exit_code,
      1);

  CliRun ls = Cli({"services", "ls", kWait});
  ASSERT_EQ(ls.exit_code, 0) << ::testing::PrintToString(ls);
  EXPECT_THAT(ls.out, ContainsRegex("^NAME +VERSION +INSTANCES +ENDPOINTS "
                                    "+DESCRIPTION\n"));
  EXPECT_THAT(ls.out, ContainsRegex("\nemail +[0-9.]+ +1 +"
                                    "email\\.SendWelcomeEmail +"));
  EXPECT_THAT(ls.out, ContainsRegex("\nusers +[0-9.]+ +1 +"
                                    "users\\.RegisterUser +"));
  CliRun ls_json = Cli({"services", "ls", "--json", kWait});
  ASSERT_EQ(ls_json.exit_code, 0);
  nlohmann::json list = nlohmann::json::parse(ls_json.out, nullptr, false);
  ASSERT_TRUE(list.is_array()) << ls_json.out;
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[1]["name"], "users");
  EXPECT_EQ(list[1]["instances"].size(), 1u);
  EXPECT_EQ(list[1]["endpoints"][0], "users.RegisterUser");

  CliRun info = Cli({"services", "info", "users", kWait});
  ASSERT_EQ(info.exit_code, 0) << ::testing::PrintToString(info);
  EXPECT_THAT(info.out, ContainsRegex("RegisterUser +users\\.RegisterUser +q "
                                      "+natsgw\\.users\\.RegisterUserRequest "
                                      "-> natsgw\\.users\\.RegisterUserReply"));
  EXPECT_THAT(info.out, HasSubstr("fbs.bfbs=("));
  EXPECT_THAT(info.out, Not(HasSubstr("email.SendWelcomeEmail")));
  CliRun info_json = Cli({"services", "info", "--json", kWait});
  nlohmann::json infos = nlohmann::json::parse(info_json.out, nullptr, false);
  ASSERT_TRUE(infos.is_array()) << info_json.out;
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_EQ(infos[0]["type"], "io.nats.micro.v1.info_response");

  CliRun stats = Cli({"services", "stats", "users", kWait});
  ASSERT_EQ(stats.exit_code, 0) << ::testing::PrintToString(stats);
  EXPECT_THAT(stats.out, ContainsRegex("^SERVICE +INSTANCE +ENDPOINT +SUBJECT "
                                       "+REQUESTS +ERRORS +AVG TIME +LAST "
                                       "ERROR\n"));
  EXPECT_THAT(stats.out,
              ContainsRegex("\nusers +\\S+ +RegisterUser +users\\.RegisterUser "
                            "+2 +1 +[0-9.]+ [um]?s +.*already registered"));
  CliRun stats_json = Cli({"services", "stats", "--json", kWait});
  nlohmann::json all = nlohmann::json::parse(stats_json.out, nullptr, false);
  ASSERT_TRUE(all.is_array()) << stats_json.out;
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[1]["endpoints"][0]["num_requests"], 2);

  // A service nobody runs.
  CliRun nobody = Cli({"services", "info", "nosuch", kWait});
  EXPECT_EQ(nobody.exit_code, 1);
  EXPECT_THAT(nobody.err, HasSubstr("no instance of service \"nosuch\""));
}

TEST_F(CliTest, BenchCallsAndPublishes) {
  CliRun calls = Cli({"bench", "email.SendWelcomeEmail",
                      R"({"user_id": "u-1", "email": "gina@example.com"})",
                      "--count=200", "--concurrency=2", "--json"});
  ASSERT_EQ(calls.exit_code, 0) << ::testing::PrintToString(calls);
  nlohmann::json summary = nlohmann::json::parse(calls.out, nullptr, false);
  ASSERT_TRUE(summary.is_object()) << calls.out;
  EXPECT_EQ(summary["count"], 200);
  EXPECT_EQ(summary["ok"], 200);
  EXPECT_EQ(summary["unit"], "calls");
  std::cout << "natsgw bench (calls, concurrency 2): " << calls.out;

  // For a while rather than a count; text summary.
  CliRun timed = Cli({"bench", "email.SendWelcomeEmail",
                      R"({"user_id": "u-1", "email": "gina@example.com"})",
                      "--duration=1s", "--concurrency=4"});
  ASSERT_EQ(timed.exit_code, 0) << ::testing::PrintToString(timed);
  EXPECT_THAT(timed.out, ContainsRegex("throughput  [0-9]+ calls/s"));
  EXPECT_LT(timed.took, absl::Seconds(20));
  std::cout << "natsgw bench --duration=1s --concurrency=4:\n" << timed.out;

  CliRun publishes = Cli({"bench", "bench.raw", "payload", "--raw", "--publish",
                          "--count=5000", "--json"});
  ASSERT_EQ(publishes.exit_code, 0) << ::testing::PrintToString(publishes);
  summary = nlohmann::json::parse(publishes.out, nullptr, false);
  ASSERT_TRUE(summary.is_object()) << publishes.out;
  EXPECT_EQ(summary["unit"], "publishes");
  EXPECT_EQ(summary["ok"], 5000);
  std::cout << "natsgw bench --publish: " << publishes.out;

  // Nothing serves the subject: every call fails, exit 1.
  CliRun nobody = Cli({"bench", "nothing.Here", "x", "--raw", "--count=5"});
  EXPECT_EQ(nobody.exit_code, 1) << ::testing::PrintToString(nobody);
  EXPECT_THAT(nobody.out, HasSubstr("failed 5: UNAVAILABLE 5"));
}

TEST_F(CliTest, NoRespondersAndTimeoutExitOne) {
  // Nothing serves the subject: UNAVAILABLE at once, with --raw and with a
  // schema that has the method (echo.Echo: no echo service runs).
  CliRun raw = Cli({"call", "nothing.Here", "x", "--raw"});
  EXPECT_EQ(raw.exit_code, 1) << ::testing::PrintToString(raw);
  EXPECT_THAT(raw.err, ContainsRegex("natsgw: UNAVAILABLE: no responders .* "
                                     "\\(trace [0-9a-f]{32}\\)"));
  CliRun echo =
      Cli({"call", "echo.Echo", "{}", absl::StrCat("--schema=", kSchemas)});
  EXPECT_EQ(echo.exit_code, 1) << ::testing::PrintToString(echo);
  EXPECT_THAT(echo.err, HasSubstr("UNAVAILABLE"));

  // A frozen service: the call ends at --timeout with DEADLINE_EXCEEDED.
  ASSERT_TRUE(users_->Stop().ok());
  CliRun frozen =
      Cli({"call", "users.RegisterUser", R"({"email": "hank@example.com"})",
           "--timeout=1s", absl::StrCat("--schema=", kSchemas)});
  users_->Signal(SIGCONT);
  EXPECT_EQ(frozen.exit_code, 1) << ::testing::PrintToString(frozen);
  EXPECT_THAT(frozen.err,
              ContainsRegex("natsgw: DEADLINE_EXCEEDED: .* \\(trace "
                            "[0-9a-f]{32}\\)"));
  EXPECT_GE(frozen.took, absl::Seconds(1));
  EXPECT_LT(frozen.took, absl::Seconds(15));
}

// Ctrl-C ends `sub` and `bench` gracefully: summary printed, status as
// documented, nothing left running.
TEST_F(CliTest, InterruptStopsSubAndBenchWithASummary) {
  Background sub = StartNatsgw(dir_, "sub", {"sub", "a.b", "--raw", nats_url_});
  ASSERT_TRUE(testing::Eventually(
      [&] { return absl::StrContains(sub.err(), "subscribed to"); },
      absl::Seconds(20)));
  sub.process->Signal(SIGINT);
  absl::StatusOr<int> sub_exit = sub.process->Wait(absl::Seconds(10));
  ASSERT_TRUE(sub_exit.ok()) << sub.err();
  EXPECT_EQ(*sub_exit, 0) << sub.err();
  EXPECT_THAT(sub.err(), HasSubstr("received 0 messages"));

  Background bench =
      StartNatsgw(dir_, "bench",
                  {"bench", "email.SendWelcomeEmail",
                   R"({"user_id": "u-1", "email": "ida@example.com"})",
                   "--duration=60s", nats_url_});
  ASSERT_TRUE(testing::Eventually(
      [&] { return absl::StrContains(bench.err(), "bench: calls"); },
      absl::Seconds(20)));
  absl::SleepFor(absl::Milliseconds(300));
  bench.process->Signal(SIGINT);
  absl::StatusOr<int> bench_exit = bench.process->Wait(absl::Seconds(10));
  ASSERT_TRUE(bench_exit.ok()) << "bench did not stop on SIGINT";
  EXPECT_EQ(*bench_exit, 0) << bench.err();
  EXPECT_THAT(bench.out(), AllOf(HasSubstr("interrupted (Ctrl-C)"),
                                 HasSubstr("throughput")));
}

}  // namespace
}  // namespace natsgw
