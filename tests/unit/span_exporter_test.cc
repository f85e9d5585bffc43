// Spans without a server: the JSON-lines exporter's format and its file
// writing under concurrent writers, the sampling rule and its validation,
// the span recorder the message paths use, and the attribute names.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/connection.h"
#include "natsgw/json_span_exporter.h"
#include "natsgw/span_sink.h"
#include "natsgw/trace_context.h"
#include "natsgw/trace_sampling.h"
#include "nlohmann/json.hpp"
#include "span.h"

namespace natsgw {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;
namespace attr = span_attributes;

TraceContext Ctx(absl::string_view traceparent,
                 absl::string_view tracestate = {}) {
  absl::StatusOr<TraceContext> t = TraceContext::Parse(traceparent, tracestate);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : TraceContext();
}

// Records every span, for the test thread.
class CapturingSink : public SpanSink {
 public:
  void OnStart(const SpanData& span) override {
    std::lock_guard<std::mutex> lock(mu_);
    started_.push_back(span);
  }
  void OnEnd(const SpanData& span) override {
    std::lock_guard<std::mutex> lock(mu_);
    ended_.push_back(span);
  }
  std::vector<SpanData> started() {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }
  std::vector<SpanData> ended() {
    std::lock_guard<std::mutex> lock(mu_);
    return ended_;
  }

 private:
  std::mutex mu_;
  std::vector<SpanData> started_;
  std::vector<SpanData> ended_;
};

SpanData ClientSpan() {
  SpanData span;
  span.name = "natsgw.users.Users/RegisterUser";
  span.kind = SpanKind::kClient;
  span.context =
      Ctx("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "k=v");
  span.parent_span_id =
      Ctx("00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01").span_id();
  span.start = absl::FromUnixNanos(1714564800000001234);
  span.end = span.start + absl::Microseconds(350);
  span.status_code = absl::StatusCode::kDeadlineExceeded;
  span.status_message = "no reply \"in time\"\n";
  span.attributes.emplace_back(std::string(attr::kMessagingSystem),
                               std::string("nats"));
  span.attributes.emplace_back(std::string(attr::kNatsRequestAttempts),
                               int64_t{3});
  span.attributes.emplace_back("ratio", 0.5);
  span.attributes.emplace_back(std::string(attr::kNatsRequestHedge), true);
  span.links.push_back(
      Ctx("00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01", "a=b"));
  return span;
}

TEST(JsonLinesSpanExporterTest, LineCarriesEveryFieldWithItsJsonType) {
  const std::string line =
      JsonLinesSpanExporter::ToJsonLine(ClientSpan(), "user-service");
  EXPECT_EQ(line.find('\n'), std::string::npos) << "one line per span";
  const Json j = Json::parse(line);
  EXPECT_EQ(j["name"], "natsgw.users.Users/RegisterUser");
  EXPECT_EQ(j["kind"], "client");
  EXPECT_EQ(j["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(j["span_id"], "00f067aa0ba902b7");
  EXPECT_EQ(j["parent_span_id"], "b7ad6b7169203331");
  EXPECT_EQ(j["trace_state"], "k=v");
  EXPECT_EQ(j["sampled"], true);
  EXPECT_EQ(j["start_time"], "2024-05-01T12:00:00.000001234Z");
  EXPECT_EQ(j["start_time_unix_nano"].get<int64_t>(), 1714564800000001234);
  EXPECT_EQ(j["end_time_unix_nano"].get<int64_t>(), 1714564800000351234);
  EXPECT_EQ(j["duration_ns"].get<int64_t>(), 350000);
  EXPECT_EQ(j["status"]["code"], "DEADLINE_EXCEEDED");
  EXPECT_EQ(j["status"]["message"], "no reply \"in time\"\n");
  EXPECT_EQ(j["attributes"]["messaging.system"], "nats");
  EXPECT_TRUE(
      j["attributes"]["messaging.nats.request.attempts"].is_number_integer());
  EXPECT_EQ(j["attributes"]["messaging.nats.request.attempts"], 3);
  EXPECT_TRUE(j["attributes"]["ratio"].is_number_float());
  EXPECT_EQ(j["attributes"]["messaging.nats.request.hedge"], true);
  ASSERT_EQ(j["links"].size(), 1u);
  EXPECT_EQ(j["links"][0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(j["links"][0]["span_id"], "b9c7c989f97918e1");
  EXPECT_EQ(j["links"][0]["trace_state"], "a=b");
  EXPECT_EQ(j["service.name"], "user-service");
}

TEST(JsonLinesSpanExporterTest, RootSpanHasAnEmptyParentAndNoServiceName) {
  SpanData span;
  span.name = "publish users.events.UserRegistered";
  span.kind = SpanKind::kProducer;
  span.context = TraceContext::NewRoot();
  span.start = absl::Now();
  span.end = span.start;
  const Json j = Json::parse(JsonLinesSpanExporter::ToJsonLine(span));
  EXPECT_EQ(j["parent_span_id"], "");
  EXPECT_EQ(j["kind"], "producer");
  EXPECT_EQ(j["status"]["code"], "OK");
  EXPECT_TRUE(j["attributes"].is_object());
  EXPECT_TRUE(j["links"].is_array());
  EXPECT_FALSE(j.contains("service.name"));
}

TEST(JsonLinesSpanExporterTest, InvalidUtf8IsReplacedNotThrown) {
  SpanData span = ClientSpan();
  span.name = "publish bad.\xff\xfe";
  span.attributes.emplace_back(std::string(attr::kMessagingDestinationName),
                               std::string("bad.\xc3"));
  std::ostringstream out;
  auto exporter = JsonLinesSpanExporter::ToStream(out);
  exporter->OnEnd(span);
  EXPECT_EQ(exporter->write_errors(), 0);
  const std::string text = out.str();
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  const Json j = Json::parse(text);
  EXPECT_THAT(j["name"].get<std::string>(), HasSubstr("publish bad."));
}

TEST(JsonLinesSpanExporterTest, SpanKindNames) {
  EXPECT_EQ(SpanKindName(SpanKind::kInternal), "internal");
  EXPECT_EQ(SpanKindName(SpanKind::kClient), "client");
  EXPECT_EQ(SpanKindName(SpanKind::kServer), "server");
  EXPECT_EQ(SpanKindName(SpanKind::kProducer), "producer");
  EXPECT_EQ(SpanKindName(SpanKind::kConsumer), "consumer");
}

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl =
        absl::StrCat(base != nullptr ? base : "/tmp", "/natsgw-spans-XXXXXX");
    char* made = mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::string> ReadLines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(JsonLinesSpanExporterTest, FileRoundTripsUnderConcurrentWriters) {
  TempDir dir;
  const std::string path = absl::StrCat(dir.path(), "/spans.jsonl");
  // Two exporters on one file, as two services sharing a trace file.
  auto first = JsonLinesSpanExporter::Create(path, "a");
  auto second = JsonLinesSpanExporter::Create(path, "b");
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  constexpr int kThreads = 8;
  constexpr int kSpansEach = 400;
  std::vector<std::thread> threads;
  std::mutex mu;
  std::set<std::string> written;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      JsonLinesSpanExporter& exporter = t % 2 == 0 ? **first : **second;
      for (int i = 0; i < kSpansEach; ++i) {
        SpanData span = ClientSpan();
        span.context = TraceContext::NewRoot();
        // Long enough that a line is written in more than one piece if it
        // were not written whole.
        span.status_message = std::string(2000 + i, 'x');
        exporter.OnEnd(span);
        std::lock_guard<std::mutex> lock(mu);
        written.insert(span.context.SpanIdHex());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ((*first)->write_errors(), 0);
  EXPECT_EQ((*second)->write_errors(), 0);

  const std::vector<std::string> lines = ReadLines(path);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kSpansEach));
  std::set<std::string> read;
  int from_a = 0;
  for (const std::string& line : lines) {
    const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << "not one JSON object: " << line;
    read.insert(j["span_id"].get<std::string>());
    if (j["service.name"] == "a") ++from_a;
  }
  EXPECT_EQ(read, written);
  EXPECT_EQ(from_a, kThreads / 2 * kSpansEach);
}

TEST(JsonLinesSpanExporterTest, CreateAppendsToAnExistingFile) {
  TempDir dir;
  const std::string path = absl::StrCat(dir.path(), "/spans.jsonl");
  for (int round = 0; round < 2; ++round) {
    auto exporter = JsonLinesSpanExporter::Create(path);
    ASSERT_TRUE(exporter.ok()) << exporter.status();
    (*exporter)->OnEnd(ClientSpan());
  }
  EXPECT_EQ(ReadLines(path).size(), 2u);
}

TEST(JsonLinesSpanExporterTest, CreateRefusesUnusablePaths) {
  EXPECT_TRUE(
      absl::IsInvalidArgument(JsonLinesSpanExporter::Create("").status()));
  TempDir dir;
  absl::Status missing =
      JsonLinesSpanExporter::Create(absl::StrCat(dir.path(), "/no/such/x"))
          .status();
  EXPECT_TRUE(absl::IsNotFound(missing)) << missing;
  EXPECT_THAT(missing.message(), HasSubstr("/no/such/x"));
}

// --- Sampling ---------------------------------------------------------------

TEST(TraceSamplingTest, RatioMustBeBetweenZeroAndOne) {
  for (double ok : {0.0, 0.001, 0.5, 1.0}) {
    EXPECT_TRUE(ValidateTraceSampleRatio(ok).ok()) << ok;
  }
  for (double bad : {-0.01, 1.01, 2.0, std::numeric_limits<double>::quiet_NaN(),
                     std::numeric_limits<double>::infinity()}) {
    absl::Status s = ValidateTraceSampleRatio(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(s.message(), HasSubstr("trace_sample_ratio"));
    EXPECT_THAT(s.message(), HasSubstr("between 0 and 1"));
  }
}

TEST(TraceSamplingTest, ConnectionCreateRefusesABadRatioBeforeConnecting) {
  ConnectionOptions options;
  // Nothing listens there: the options are refused before any connect.
  options.servers = {"nats://127.0.0.1:1"};
  options.trace_sample_ratio = 1.5;
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connection::Create(options);
  ASSERT_FALSE(conn.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(conn.status())) << conn.status();
  EXPECT_THAT(conn.status().message(), HasSubstr("trace_sample_ratio"));
  options.trace_sample_ratio = -1;
  EXPECT_TRUE(absl::IsInvalidArgument(Connection::Create(options).status()));
}

TraceContext::TraceId IdWithLowWord(uint64_t low) {
  TraceContext::TraceId id{};
  id[0] = 0x4b;
  for (int i = 0; i < 8; ++i) {
    id[15 - i] = static_cast<uint8_t>(low >> (8 * i));
  }
  return id;
}

TEST(TraceSamplingTest, DecisionIsTheTraceIdRatioRule) {
  // The last 8 bytes of the trace ID, big-endian, against ratio * 2^64.
  EXPECT_TRUE(SampledAtRatio(IdWithLowWord(0), 0.001));
  EXPECT_FALSE(SampledAtRatio(IdWithLowWord(0), 0.0));
  EXPECT_TRUE(SampledAtRatio(IdWithLowWord(0x7fffffffffffffff), 0.5));
  EXPECT_FALSE(SampledAtRatio(IdWithLowWord(0x8000000000000000), 0.5));
  EXPECT_FALSE(SampledAtRatio(IdWithLowWord(~uint64_t{0}), 0.999));
  EXPECT_TRUE(SampledAtRatio(IdWithLowWord(~uint64_t{0}), 1.0));
  // The same ID always gets the same answer (every service agrees).
  const TraceContext root = TraceContext::NewRoot();
  const bool first = SampledAtRatio(root.trace_id(), 0.3);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(SampledAtRatio(root.trace_id(), 0.3), first);
  }
}

TEST(TraceSamplingTest, NewRootTraceSamplesAboutTheRatio) {
  constexpr int kRoots = 20000;
  for (double ratio : {0.0, 0.25, 1.0}) {
    int sampled = 0;
    for (int i = 0; i < kRoots; ++i) {
      const TraceContext root = NewRootTrace(ratio);
      ASSERT_TRUE(root.valid());
      // The flag is the rule's answer for that very ID.
      ASSERT_EQ(root.sampled(), SampledAtRatio(root.trace_id(), ratio));
      if (root.sampled()) ++sampled;
    }
    // 0.25 +- 0.05 is over 16 standard deviations of a binomial(20000, .25).
    EXPECT_NEAR(static_cast<double>(sampled) / kRoots, ratio, 0.05) << ratio;
  }
  // An unsampled root says so on the wire; its children inherit that.
  const TraceContext off = NewRootTrace(0.0);
  EXPECT_EQ(off.ToTraceParent().substr(53), "00");
  EXPECT_FALSE(off.Child().sampled());
  EXPECT_EQ(off.Child().trace_id(), off.trace_id());
}

// --- The span recorder ------------------------------------------------------

TEST(SpanRecorderTest, InertWithoutASinkOrForAnUnsampledTrace) {
  auto sink = std::make_shared<CapturingSink>();
  internal::Span no_sink = internal::Span::Start(
      nullptr, SpanKind::kProducer, "publish x", TraceContext::NewRoot(), {});
  EXPECT_FALSE(no_sink.recording());
  internal::Span unsampled = internal::Span::Start(
      sink, SpanKind::kProducer, "publish x", NewRootTrace(0.0), std::nullopt);
  EXPECT_FALSE(unsampled.recording());
  unsampled.SetString(attr::kMessagingSystem, "nats");
  unsampled.SetStatus(absl::InternalError("x"));
  unsampled.ReportStart();
  unsampled.End();
  EXPECT_FALSE(
      unsampled.StartChild(SpanKind::kClient, "c", TraceContext::NewRoot())
          .recording());
  EXPECT_TRUE(sink->started().empty());
  EXPECT_TRUE(sink->ended().empty());
}

TEST(SpanRecorderTest, ReportsStartAndEndOnceWithChildrenLinked) {
  auto sink = std::make_shared<CapturingSink>();
  const TraceContext parent = TraceContext::NewRoot();
  const TraceContext ctx = parent.Child();
  {
    internal::Span span = internal::Span::Start(
        sink, SpanKind::kClient, "svc/Method", ctx, parent.span_id());
    ASSERT_TRUE(span.recording());
    span.SetString(attr::kRpcMethod, "svc/Method");
    span.ReportStart();
    internal::Span child =
        span.StartChild(SpanKind::kClient, span.name(), ctx.Child());
    ASSERT_TRUE(child.recording());
    child.SetStatus(absl::UnavailableError("no responders"));
    // Moved: only the new owner reports.
    internal::Span moved = std::move(child);
    EXPECT_FALSE(child.recording());  // NOLINT(bugprone-use-after-move)
    moved.End();
    moved.End();
    span.SetInt(attr::kNatsRequestAttempts, 2);
    // `span` ends when it goes out of scope.
  }
  ASSERT_EQ(sink->started().size(), 1u);
  EXPECT_EQ(sink->started()[0].end, absl::InfinitePast());
  const std::vector<SpanData> ended = sink->ended();
  ASSERT_EQ(ended.size(), 2u);
  const SpanData& child = ended[0];
  const SpanData& call = ended[1];
  EXPECT_EQ(call.name, "svc/Method");
  EXPECT_EQ(call.context, ctx);
  EXPECT_EQ(call.parent_span_id, parent.span_id());
  EXPECT_GE(call.end, call.start);
  ASSERT_NE(call.Attribute(attr::kNatsRequestAttempts), nullptr);
  EXPECT_EQ(std::get<int64_t>(*call.Attribute(attr::kNatsRequestAttempts)), 2);
  EXPECT_EQ(child.parent_span_id, ctx.span_id());
  EXPECT_EQ(child.context.trace_id(), ctx.trace_id());
  EXPECT_EQ(child.status_code, absl::StatusCode::kUnavailable);
  ASSERT_NE(child.Attribute(attr::kErrorType), nullptr);
  EXPECT_EQ(std::get<std::string>(*child.Attribute(attr::kErrorType)),
            "UNAVAILABLE");
}

TEST(SpanRecorderTest, ASinkThatThrowsDoesNotEscape) {
  class Throwing : public SpanSink {
   public:
    void OnStart(const SpanData&) override { throw std::runtime_error("s"); }
    void OnEnd(const SpanData&) override { throw std::runtime_error("e"); }
  };
  auto sink = std::make_shared<Throwing>();
  internal::Span span = internal::Span::Start(sink, SpanKind::kConsumer, "p",
                                              TraceContext::NewRoot(), {});
  EXPECT_NO_THROW(span.ReportStart());
  EXPECT_NO_THROW(span.End());
}

std::string StringAttr(const SpanData& span, absl::string_view key) {
  const SpanAttributeValue* v = span.Attribute(key);
  return v != nullptr && std::holds_alternative<std::string>(*v)
             ? std::get<std::string>(*v)
             : "<unset>";
}

TEST(SpanRecorderTest, InboxesNeverNameASpanOrADestination) {
  EXPECT_EQ(internal::MessagingSpanName("publish", "orders.1.created",
                                        "orders.*.created"),
            "publish orders.*.created");
  EXPECT_EQ(internal::MessagingSpanName("publish", "orders.created", ""),
            "publish orders.created");
  EXPECT_EQ(internal::MessagingSpanName("publish", "_INBOX.abc.1", ""),
            "publish");
  EXPECT_EQ(
      internal::MessagingSpanName("process", "_INBOX.abc.1", "_INBOX.abc.*"),
      "process");

  auto sink = std::make_shared<CapturingSink>();
  {
    internal::Span inbox = internal::Span::Start(
        sink, SpanKind::kProducer, "publish", TraceContext::NewRoot(), {});
    internal::SetMessagingAttributes(inbox, "send", "publish", "_INBOX.abc.7",
                                     "");
    internal::Span plain =
        internal::Span::Start(sink, SpanKind::kConsumer, "process orders.*",
                              TraceContext::NewRoot(), {});
    internal::SetMessagingAttributes(plain, "process", "process", "orders.1",
                                     "orders.*");
  }
  const std::vector<SpanData> ended = sink->ended();
  ASSERT_EQ(ended.size(), 2u);
  const SpanData& plain = ended[0];
  const SpanData& inbox = ended[1];
  EXPECT_EQ(inbox.Attribute(attr::kMessagingDestinationName), nullptr);
  ASSERT_NE(inbox.Attribute(attr::kMessagingDestinationTemporary), nullptr);
  EXPECT_TRUE(
      std::get<bool>(*inbox.Attribute(attr::kMessagingDestinationTemporary)));
  EXPECT_EQ(StringAttr(inbox, attr::kMessagingSystem), "nats");
  EXPECT_EQ(StringAttr(inbox, attr::kMessagingOperationType), "send");
  EXPECT_EQ(StringAttr(inbox, attr::kMessagingOperationName), "publish");
  EXPECT_EQ(StringAttr(plain, attr::kMessagingDestinationName), "orders.1");
  EXPECT_EQ(StringAttr(plain, attr::kMessagingDestinationTemplate), "orders.*");
  EXPECT_EQ(plain.Attribute(attr::kMessagingDestinationTemporary), nullptr);
}

TEST(SpanRecorderTest, ServerAddressComesFromTheUrlWithoutCredentials) {
  auto sink = std::make_shared<CapturingSink>();
  {
    internal::Span a = internal::Span::Start(sink, SpanKind::kClient, "a",
                                             TraceContext::NewRoot(), {});
    internal::SetServerAttributes(a, "nats://user:secret@nats-0.nats:4222");
    internal::Span b = internal::Span::Start(sink, SpanKind::kClient, "b",
                                             TraceContext::NewRoot(), {});
    internal::SetServerAttributes(b, "nats://[::1]:4223");
    internal::Span c = internal::Span::Start(sink, SpanKind::kClient, "c",
                                             TraceContext::NewRoot(), {});
    internal::SetServerAttributes(c, "");
  }
  const std::vector<SpanData> ended = sink->ended();
  ASSERT_EQ(ended.size(), 3u);
  // Destroyed in reverse order: c, b, a.
  EXPECT_EQ(ended[0].Attribute(attr::kServerAddress), nullptr);
  EXPECT_EQ(StringAttr(ended[1], attr::kServerAddress), "::1");
  EXPECT_EQ(std::get<int64_t>(*ended[1].Attribute(attr::kServerPort)), 4223);
  EXPECT_EQ(StringAttr(ended[2], attr::kServerAddress), "nats-0.nats");
  EXPECT_EQ(std::get<int64_t>(*ended[2].Attribute(attr::kServerPort)), 4222);
  for (const SpanData& span : ended) {
    for (const auto& [key, value] : span.attributes) {
      if (std::holds_alternative<std::string>(value)) {
        EXPECT_THAT(std::get<std::string>(value),
                    ::testing::Not(HasSubstr("secret")));
      }
    }
  }
}

TEST(SpanAttributesTest, NamesFollowTheOpenTelemetryConventions) {
  // The semantic-convention names exporters and backends key on.
  EXPECT_EQ(attr::kMessagingSystem, "messaging.system");
  EXPECT_EQ(attr::kMessagingSystemNats, "nats");
  EXPECT_EQ(attr::kMessagingOperationType, "messaging.operation.type");
  EXPECT_EQ(attr::kMessagingOperationName, "messaging.operation.name");
  EXPECT_EQ(attr::kMessagingDestinationName, "messaging.destination.name");
  EXPECT_EQ(attr::kMessagingDestinationTemplate,
            "messaging.destination.template");
  EXPECT_EQ(attr::kMessagingDestinationTemporary,
            "messaging.destination.temporary");
  EXPECT_EQ(attr::kMessagingConsumerGroupName, "messaging.consumer.group.name");
  EXPECT_EQ(attr::kMessagingMessageId, "messaging.message.id");
  EXPECT_EQ(attr::kMessagingMessageBodySize, "messaging.message.body.size");
  EXPECT_EQ(attr::kMessagingClientId, "messaging.client.id");
  EXPECT_EQ(attr::kRpcSystemName, "rpc.system.name");
  EXPECT_EQ(attr::kRpcMethod, "rpc.method");
  EXPECT_EQ(attr::kRpcStatusCode, "rpc.status_code");
  EXPECT_EQ(attr::kErrorType, "error.type");
  EXPECT_EQ(attr::kServerAddress, "server.address");
  EXPECT_EQ(attr::kServerPort, "server.port");
  // natsgw's own live under messaging.nats.*.
  for (absl::string_view own :
       {attr::kNatsRequestAttempts, attr::kNatsRequestAttempt,
        attr::kNatsRequestHedge, attr::kNatsRequestOutcome,
        attr::kNatsTraceReplaced, attr::kNatsJetStreamStream,
        attr::kNatsJetStreamConsumer, attr::kNatsJetStreamSequence,
        attr::kNatsJetStreamDeliveryCount, attr::kNatsJetStreamAttempts,
        attr::kNatsJetStreamDuplicate, attr::kNatsJetStreamOutcome}) {
    EXPECT_TRUE(absl::StartsWith(own, "messaging.nats.")) << own;
  }
}

}  // namespace
}  // namespace natsgw
