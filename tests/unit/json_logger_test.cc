#include "natsgw/json_logger.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/logger.h"
#include "natsgw/trace_context.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::SizeIs;

// A temporary file that a JsonLogger writes to through a FILE*.
class TempStream {
 public:
  TempStream() : file_(std::tmpfile()) {}
  ~TempStream() {
    if (file_ != nullptr) std::fclose(file_);
  }
  std::FILE* get() const { return file_; }

  // Everything written so far, split into lines (without the last, empty
  // piece after the final '\n').
  std::vector<std::string> Lines() const {
    std::fflush(file_);
    std::string text;
    char buffer[4096];
    off_t offset = 0;
    for (;;) {
      const ssize_t n = ::pread(fileno(file_), buffer, sizeof(buffer), offset);
      if (n <= 0) break;
      text.append(buffer, static_cast<size_t>(n));
      offset += n;
    }
    std::vector<std::string> lines = absl::StrSplit(text, '\n');
    EXPECT_TRUE(lines.back().empty()) << "output does not end with a newline";
    lines.pop_back();
    return lines;
  }

  std::vector<nlohmann::json> Entries() const {
    std::vector<nlohmann::json> entries;
    for (const std::string& line : Lines()) {
      nlohmann::json entry = nlohmann::json::parse(line, nullptr, false);
      EXPECT_FALSE(entry.is_discarded()) << "not JSON: " << line;
      entries.push_back(std::move(entry));
    }
    return entries;
  }

 private:
  std::FILE* const file_;
};

TEST(JsonLoggerTest, WritesOneObjectPerLineWithTheDocumentedMembers) {
  TempStream out;
  ASSERT_NE(out.get(), nullptr);
  JsonLogger logger({.name = "user-service"}, out.get());
  const absl::Time before = absl::Now();
  logger.Log(absl::LogSeverity::kWarning, "disconnected from NATS");
  const absl::Time after = absl::Now();

  const std::vector<std::string> lines = out.Lines();
  ASSERT_THAT(lines, SizeIs(1));
  // Members in the documented order.
  EXPECT_THAT(lines[0], MatchesRegex(R"([{]"ts":"[^"]+","level":"warning",)"
                                     R"("logger":"user-service",)"
                                     R"("msg":"disconnected from NATS"[}])"));
  const nlohmann::json entry = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(entry.size(), 4u);
  EXPECT_FALSE(entry.contains("trace_id"));
  EXPECT_FALSE(entry.contains("span_id"));

  const std::string ts = entry["ts"];
  EXPECT_THAT(ts, MatchesRegex(
                      R"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})"
                      R"([.][0-9]{6}Z)"));
  absl::Time parsed;
  std::string error;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full, ts, &parsed, &error))
      << error;
  // Microsecond precision: truncated, never later than the clock.
  EXPECT_GE(parsed, absl::FromUnixMicros(absl::ToUnixMicros(before)));
  EXPECT_LE(parsed, after);
}

TEST(JsonLoggerTest, MapsSeveritiesToLowerCaseLevels) {
  TempStream out;
  JsonLogger logger({.min_severity = kDebugSeverity}, out.get());
  logger.Log(kDebugSeverity, "d");
  logger.Log(absl::LogSeverity::kInfo, "i");
  logger.Log(absl::LogSeverity::kWarning, "w");
  logger.Log(absl::LogSeverity::kError, "e");
  logger.Log(absl::LogSeverity::kFatal, "f");  // written, does not abort
  std::vector<std::string> levels;
  for (const nlohmann::json& entry : out.Entries()) {
    levels.push_back(entry["level"]);
    EXPECT_EQ(entry["logger"], "natsgw");
  }
  EXPECT_THAT(levels,
              ElementsAre("debug", "info", "warning", "error", "fatal"));
}

TEST(JsonLoggerTest, DropsEntriesBelowTheMinimumSeverity) {
  TempStream out;
  JsonLogger logger({.min_severity = absl::LogSeverity::kWarning}, out.get());
  logger.Log(kDebugSeverity, "debug");
  logger.Log(absl::LogSeverity::kInfo, "info");
  logger.Log(absl::LogSeverity::kWarning, "warning");
  logger.Log(absl::LogSeverity::kError, "error");
  const LogField fields[] = {{"k", "v"}};
  logger.LogStructured({.severity = absl::LogSeverity::kInfo,
                        .message = "structured info",
                        .fields = fields});
  std::vector<std::string> messages;
  for (const nlohmann::json& entry : out.Entries())
    messages.push_back(entry["msg"]);
  EXPECT_THAT(messages, ElementsAre("warning", "error"));
}

TEST(JsonLoggerTest, CarriesTheCurrentTraceOnlyInsideAScope) {
  TempStream out;
  JsonLogger logger({}, out.get());
  const TraceContext trace = TraceContext::NewRoot();
  logger.Log(absl::LogSeverity::kInfo, "before");
  {
    ScopedTraceContext scope(trace);
    logger.Log(absl::LogSeverity::kInfo, "inside");
    const TraceContext child = trace.Child();
    ScopedTraceContext inner(child);
    logger.Log(absl::LogSeverity::kInfo, "nested");
  }
  logger.Log(absl::LogSeverity::kInfo, "after");
  // Another thread does not see this thread's trace.
  ScopedTraceContext scope(trace);
  std::thread([&] { logger.Log(absl::LogSeverity::kInfo, "other"); }).join();

  const std::vector<nlohmann::json> entries = out.Entries();
  ASSERT_THAT(entries, SizeIs(5));
  EXPECT_FALSE(entries[0].contains("trace_id"));
  EXPECT_EQ(entries[1]["trace_id"], trace.TraceIdHex());
  EXPECT_EQ(entries[1]["span_id"], trace.SpanIdHex());
  EXPECT_EQ(entries[2]["trace_id"], trace.TraceIdHex());
  EXPECT_NE(entries[2]["span_id"], trace.SpanIdHex());
  EXPECT_THAT(std::string(entries[2]["span_id"]), SizeIs(16));
  EXPECT_FALSE(entries[3].contains("trace_id"));
  EXPECT_FALSE(entries[3].contains("span_id"));
  EXPECT_EQ(entries[4]["msg"], "other");
  EXPECT_FALSE(entries[4].contains("trace_id"));
}

TEST(JsonLoggerTest, EscapesAnythingIntoValidJson) {
  TempStream out;
  JsonLogger logger({.name = "a\"b"}, out.get());
  const std::string nasty =
      std::string("quote\" backslash\\ newline\n tab\t nul") + '\0' +
      " ctl\x01 utf8 \xC3\xA9 invalid \xFF\xFE end";
  logger.Log(absl::LogSeverity::kError, nasty);
  const std::vector<std::string> lines = out.Lines();
  ASSERT_THAT(lines, SizeIs(1));  // the newline in the message is escaped
  const nlohmann::json entry = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(entry["logger"], "a\"b");
  const std::string msg = entry["msg"];
  EXPECT_THAT(msg, HasSubstr("quote\" backslash\\ newline\n tab\t nul"));
  EXPECT_THAT(msg, HasSubstr("\xC3\xA9"));
  EXPECT_THAT(msg, HasSubstr(" end"));
  EXPECT_THAT(msg, Not(HasSubstr("\xFF")));
}

TEST(JsonLoggerTest, WritesStructuredFieldsAsMembers) {
  TempStream out;
  JsonLogger logger({}, out.get());
  const LogField fields[] = {{"subject", "users.RegisterUser"},
                             {"attempt", "2"},
                             {"msg", "collides"},
                             {"password", "hunter2"},
                             {"url", "nats://u:hunter2@h:4222"}};
  logger.LogStructured({.severity = absl::LogSeverity::kWarning,
                        .message = "retrying",
                        .fields = fields});
  const std::vector<nlohmann::json> entries = out.Entries();
  ASSERT_THAT(entries, SizeIs(1));
  const nlohmann::json& e = entries[0];
  EXPECT_EQ(e["msg"], "retrying");
  EXPECT_EQ(e["subject"], "users.RegisterUser");
  EXPECT_EQ(e["attempt"], "2");
  EXPECT_EQ(e["field_msg"], "collides");
  EXPECT_EQ(e["url"], "nats://u:[REDACTED]@h:4222");
  EXPECT_EQ(e["password"], "[REDACTED]");
  EXPECT_THAT(e.dump(), Not(HasSubstr("hunter2")));
}

TEST(JsonLoggerTest, TheDefaultStructuredEntryFlattensIntoTheMessage) {
  class Keeping : public Logger {
   public:
    void Log(absl::LogSeverity, absl::string_view message) override {
      last = std::string(message);
    }
    std::string last;
  } keeping;
  const LogField fields[] = {
      {"subject", "a.b"}, {"why", "two words"}, {"auth_token", "t0k"}};
  keeping.LogStructured({.message = "dropped", .fields = fields});
  EXPECT_EQ(keeping.last,
            "dropped subject=a.b why=\"two words\" auth_token=[REDACTED]");
}

TEST(JsonLoggerTest, NeverWritesASecret) {
  TempStream out;
  JsonLogger logger({}, out.get());
  const std::string secret = "Zq9hunter2Xy";
  logger.Log(absl::LogSeverity::kError,
             absl::StrCat("cannot connect to NATS at nats://admin:", secret,
                          "@127.0.0.1:4222: Authorization Violation"));
  logger.Log(absl::LogSeverity::kError,
             absl::StrCat("config {\"password\":\"", secret, "\"}"));
  logger.Log(absl::LogSeverity::kError,
             absl::StrCat("nats://", secret, "@127.0.0.1:4222"));
  const std::vector<std::string> lines = out.Lines();
  ASSERT_THAT(lines, SizeIs(3));
  for (const std::string& line : lines) {
    EXPECT_THAT(line, Not(HasSubstr(secret)));
    EXPECT_THAT(line, HasSubstr("[REDACTED]"));
  }
  EXPECT_THAT(lines[0], HasSubstr("nats://admin:[REDACTED]@127.0.0.1:4222"));
}

TEST(JsonLoggerTest, CutsOverlongMessages) {
  TempStream out;
  JsonLogger logger({.max_message_bytes = 10}, out.get());
  logger.Log(absl::LogSeverity::kInfo, "0123456789abcdef");
  // A two-byte character at the cut is not split.
  logger.Log(absl::LogSeverity::kInfo, "012345678\xC3\xA9");
  logger.Log(absl::LogSeverity::kInfo, "short");
  const std::vector<nlohmann::json> entries = out.Entries();
  ASSERT_THAT(entries, SizeIs(3));
  EXPECT_EQ(entries[0]["msg"], "0123456789");
  EXPECT_EQ(entries[0]["truncated"], true);
  EXPECT_EQ(entries[1]["msg"], "012345678");
  EXPECT_FALSE(entries[2].contains("truncated"));
}

TEST(JsonLoggerTest, ConcurrentWritersProduceOnlyWholeLines) {
  std::string path_template =
      absl::StrCat(::testing::TempDir(), "natsgw-json-logger-XXXXXX");
  const int fd = ::mkstemp(path_template.data());
  ASSERT_GE(fd, 0);
  ::close(fd);
  const std::string path = path_template;
  constexpr int kThreads = 8;
  constexpr int kLinesPerThread = 500;
  {
    absl::StatusOr<std::unique_ptr<JsonLogger>> logger =
        JsonLogger::Create(path, {.name = "concurrency"});
    ASSERT_TRUE(logger.ok()) << logger.status();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        ScopedTraceContext scope(TraceContext::NewRoot());
        // Long enough that a line cannot fit in one stdio buffer.
        const std::string padding(5000 + t, 'x');
        for (int i = 0; i < kLinesPerThread; ++i) {
          (*logger)->Log(absl::LogSeverity::kInfo,
                         absl::StrCat("thread ", t, " line ", i, " ", padding));
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
    EXPECT_EQ((*logger)->failed_writes(), 0u);
  }
  std::ifstream in(path);
  std::string line;
  std::vector<int> next(kThreads, 0);
  int count = 0;
  while (std::getline(in, line)) {
    ++count;
    const nlohmann::json entry = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(entry.is_discarded()) << "torn line " << count;
    const std::vector<std::string> words =
        absl::StrSplit(std::string(entry["msg"]), ' ');
    ASSERT_THAT(words, SizeIs(5));
    const int t = std::stoi(words[1]);
    ASSERT_GE(t, 0);
    ASSERT_LT(t, kThreads);
    // Each thread's lines in its own order, none lost.
    EXPECT_EQ(std::stoi(words[3]), next[t]);
    next[t] = std::stoi(words[3]) + 1;
    EXPECT_EQ(words[4].size(), 5000u + t);
    EXPECT_TRUE(entry.contains("trace_id"));
  }
  EXPECT_EQ(count, kThreads * kLinesPerThread);
  std::remove(path.c_str());
}

TEST(JsonLoggerTest, CreateAppendsAndReportsUnopenableFiles) {
  std::string dir =
      absl::StrCat(::testing::TempDir(), "natsgw-json-logger-dir-XXXXXX");
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  const std::string path = absl::StrCat(dir, "/service.jsonl");
  for (int round = 0; round < 2; ++round) {
    absl::StatusOr<std::unique_ptr<JsonLogger>> logger =
        JsonLogger::Create(path);
    ASSERT_TRUE(logger.ok()) << logger.status();
    (*logger)->Log(absl::LogSeverity::kInfo, absl::StrCat("round ", round));
  }
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_THAT(std::vector<std::string>(
                  absl::StrSplit(text.str(), '\n', absl::SkipEmpty())),
              SizeIs(2));

  absl::StatusOr<std::unique_ptr<JsonLogger>> missing =
      JsonLogger::Create(absl::StrCat(dir, "/no/such/dir/x.jsonl"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no/such/dir"));
  std::remove(path.c_str());
  ::rmdir(dir.c_str());
}

TEST(StderrLoggerTest, RedactsAndFilters) {
  ::testing::internal::CaptureStderr();
  StderrLogger logger(absl::LogSeverity::kWarning);
  logger.Log(absl::LogSeverity::kInfo, "quiet");
  logger.Log(absl::LogSeverity::kError, "nats://u:hunter2@h:4222 failed");
  const std::string text = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(text, "ERROR natsgw: nats://u:[REDACTED]@h:4222 failed\n");
}

}  // namespace
}  // namespace natsgw
