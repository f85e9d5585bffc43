// Process crashes against a real nats-server (issue 8 §1, plan items F10,
// F11 and F16):
//
//   - a natsgw producer (fault_child produce) killed with SIGKILL while its
//     acks arrive faster than it records them, then restarted: it replays
//     its last messages with the same message IDs, the stream answers
//     `duplicate` for every one it already had, and holds each ID once;
//   - a natsgw consumer (fault_child consume, a StreamConsumer with a KV
//     idempotency store) killed mid-batch with one message committed but not
//     acknowledged and others in its handlers: another worker, already
//     running, gets them all again after ack_wait; the committed one is
//     skipped, the others handled once; the redeliveries show in the
//     delivery count and natsgw_js_redeliveries_total;
//   - the example e-mail service stopped with SIGTERM while events and RPCs
//     are in flight: it exits 0 in time, the RPCs it had are answered, and
//     nothing it started is left half done (the restarted service never
//     finds a side effect without its acknowledgement).
//
// Each case prints one FAULT-RESULT line with its figures.
#include <nats/nats.h>
#include <prometheus/registry.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "fault/fault_support.h"
#include "fault/loss_checker.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/metric_value.h"
#include "harness/nats_server_fixture.h"
#include "harness/subprocess.h"
#include "harness/sync_points.h"
#include "integration/user_events.h"
#include "natsgw/connection.h"
#include "natsgw/jetstream.h"
#include "natsgw/kv_idempotency_store.h"
#include "natsgw/logger.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/stream_publisher.h"
#ifdef NATSGW_EMAIL_SERVICE_BINARY
#include "natsgw/schemas/email_natsgw.h"
#include "natsgw/schemas/users_natsgw.h"
#endif

namespace natsgw {
namespace {

namespace fs = std::filesystem;
using ::natsgw::testing::Eventually;
using ::natsgw::testing::FaultResultLine;
using ::natsgw::testing::LossChecker;
using ::natsgw::testing::Ms;
using ::natsgw::testing::PollUntil;
using ::natsgw::testing::UnavailabilityMeter;

constexpr char kStream[] = "EVENTS";
constexpr char kSubject[] = "events.created";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The space-separated fields of each line of `path` whose first field is
// `word`.
std::vector<std::vector<std::string>> Lines(const std::string& path,
                                            absl::string_view word) {
  std::vector<std::vector<std::string>> out;
  for (absl::string_view line : absl::StrSplit(ReadFile(path), '\n')) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (!fields.empty() && fields[0] == word) out.push_back(std::move(fields));
  }
  return out;
}

uint64_t ToU64(const std::string& text) {
  uint64_t v = 0;
  EXPECT_TRUE(absl::SimpleAtoi(text, &v)) << "'" << text << "'";
  return v;
}

// What a line "<word> <counter> <sequence> <duplicate>" says.
struct AckLine {
  uint64_t sequence = 0;
  bool duplicate = false;
};
std::map<uint64_t, AckLine> AckLines(const std::string& path,
                                     absl::string_view word) {
  std::map<uint64_t, AckLine> out;
  for (const auto& f : Lines(path, word)) {
    if (f.size() < 4) continue;
    out[ToU64(f[1])] = AckLine{ToU64(f[2]), f[3] == "1"};
  }
  return out;
}

// Reads a stream back by sequence with plain nats.c (js_GetMsg), so the
// verdict does not depend on natsgw's consumer. Thread-compatible.
class StreamReader {
 public:
  static absl::StatusOr<std::unique_ptr<StreamReader>> Connect(
      const std::string& url) {
    auto reader = std::unique_ptr<StreamReader>(new StreamReader());
    natsStatus s = natsConnection_ConnectTo(&reader->nc_, url.c_str());
    if (s == NATS_OK)
      s = natsConnection_JetStream(&reader->js_, reader->nc_, nullptr);
    if (s != NATS_OK) {
      return absl::UnavailableError(
          absl::StrCat("nats.c connection: ", natsStatus_GetText(s)));
    }
    return reader;
  }
  ~StreamReader() {
    if (js_ != nullptr) jsCtx_Destroy(js_);
    if (nc_ != nullptr) natsConnection_Destroy(nc_);
  }

  // Reads sequences 1..last_sequence of `stream` into `checker` (message ID
  // and payload must both be "p<p>-<c>"); counts empty sequences in *gaps.
  absl::Status ReadAll(const std::string& stream, uint64_t last_sequence,
                       LossChecker& checker, uint64_t* gaps) {
    *gaps = 0;
    for (uint64_t seq = 1; seq <= last_sequence; ++seq) {
      natsMsg* msg = nullptr;
      jsErrCode err = static_cast<jsErrCode>(0);
      const natsStatus s =
          js_GetMsg(&msg, js_, stream.c_str(), seq, nullptr, &err);
      if (s == NATS_NOT_FOUND || err == JSNoMessageFoundErr) {
        natsMsg_Destroy(msg);
        ++*gaps;
        continue;
      }
      if (s != NATS_OK) {
        natsMsg_Destroy(msg);
        return absl::UnavailableError(absl::StrCat(
            "reading ", stream, " #", seq, ": ", natsStatus_GetText(s)));
      }
      const char* id = nullptr;
      std::string message_id;
      if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK &&
          id != nullptr) {
        message_id = id;
      }
      const std::string data(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
      natsMsg_Destroy(msg);
      const auto key = LossChecker::ParseMessageId(message_id);
      if (!key.has_value() || data != message_id) {
        checker.ReadUnknown(absl::StrCat(message_id, " '", data, "'"), seq);
        continue;
      }
      checker.Read(key->first, key->second, seq);
    }
    return absl::OkStatus();
  }

 private:
  StreamReader() = default;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
};

// One nats-server and one temporary directory (children's output, logs,
// journals) per test; children are killed and reaped at the end.
// Thread-compatible, like any gtest fixture.
class CrashFaultTest : public testing::NatsServerTest {
 protected:
  void SetUp() override {
    NatsServerTest::SetUp();
    if (HasFatalFailure()) return;
    dir_ = fs::temp_directory_path() /
           absl::StrCat("natsgw-crash-fault-", getpid(), "-",
                        absl::ToUnixNanos(absl::Now()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    children_.clear();  // killed and reaped
    js_.reset();
    conn_.reset();
    if (HasFailure()) {
      for (const auto& entry : fs::directory_iterator(dir_)) {
        if (!entry.is_regular_file()) continue;
        std::string text = ReadFile(entry.path());
        if (text.size() > 4000) text = "..." + text.substr(text.size() - 4000);
        std::cerr << "---- " << entry.path().filename().string() << " ----\n"
                  << text << std::endl;
      }
    }
    fs::remove_all(dir_);
    NatsServerTest::TearDown();
  }

  ConnectionOptions Options() {
    ConnectionOptions options;
    options.servers = {server().url()};
    options.name = "CrashFaultTest";
    options.registry = registry_;
    options.reconnect.wait = absl::Milliseconds(100);
    options.logger =
        std::make_shared<StderrLogger>(absl::LogSeverity::kWarning);
    return options;
  }

  // The test's own connection and JetStream context, with the stream.
  void ConnectAndCreateStream() {
    auto conn = Connection::Create(Options());
    ASSERT_TRUE(conn.ok()) << conn.status();
    conn_ = *std::move(conn);
    auto js = JetStream::Create(*conn_);
    ASSERT_TRUE(js.ok()) << js.status();
    js_ = *std::move(js);
    StreamConfig c;
    c.name = kStream;
    c.subjects = {"events.>"};
    c.duplicate_window = absl::Minutes(2);
    auto state = js_->EnsureStream(c);
    ASSERT_TRUE(state.ok()) << state.status();
  }

  // Starts fault_child with `args`, its output in <dir>/<out>.
  testing::BackgroundProcess* StartChild(std::vector<std::string> args,
                                         const std::string& out) {
    args.insert(args.begin(), NATSGW_FAULT_CHILD_BINARY);
    auto p = testing::BackgroundProcess::Start(args, dir_ + "/" + out);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return nullptr;
    children_.push_back(*std::move(p));
    return children_.back().get();
  }

  // Waits until file <dir>/<name> has `count` lines starting with `word`.
  bool WaitForLines(const std::string& name, absl::string_view word,
                    size_t count, absl::Duration timeout) {
    return Eventually(
        [&] { return Lines(dir_ + "/" + name, word).size() >= count; },
        timeout);
  }

  // Reads the whole stream back into `checker`; returns the stream state.
  StreamState ReadBack(LossChecker& checker, uint64_t* gaps) {
    auto state = js_->GetStream(kStream);
    EXPECT_TRUE(state.ok()) << state.status();
    if (!state.ok()) return {};
    auto reader = StreamReader::Connect(server().url());
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return *state;
    absl::Status read =
        (*reader)->ReadAll(kStream, state->last_sequence, checker, gaps);
    EXPECT_TRUE(read.ok()) << read;
    return *state;
  }

  std::shared_ptr<prometheus::Registry> registry_ =
      std::make_shared<prometheus::Registry>();
  std::string dir_;
  std::vector<std::unique_ptr<testing::BackgroundProcess>> children_;
  std::unique_ptr<Connection> conn_;
  std::unique_ptr<JetStream> js_;
};

// F10. The producer's acks outrun its ack log (the recording stalls after
// 100), it is killed while publishing, and restarted: it replays from 20
// messages before the first unrecorded ack. Every replay of a message the
// stream had is answered duplicate=true at the sequence of the first copy,
// and the stream holds every message ID exactly once.
TEST_F(CrashFaultTest, ProducerKilledBeforeRecordingAcksReplaysAsDuplicates) {
  constexpr int kRecordLimit = 100;
  constexpr int kReplay = 20;
  constexpr int kExtra = 50;
  ConnectAndCreateStream();
  ASSERT_FALSE(HasFatalFailure());
  const std::string files = dir_ + "/producer";
  fs::create_directories(files);
  const std::vector<std::string> common = {
      "produce", absl::StrCat("--url=", server().url()),
      absl::StrCat("--stream=", kStream), absl::StrCat("--subject=", kSubject),
      absl::StrCat("--dir=", files)};

  std::vector<std::string> args = common;
  args.push_back(absl::StrCat("--record_limit=", kRecordLimit));
  args.push_back("--max_messages=20000");
  testing::BackgroundProcess* first = StartChild(args, "produce-1.out");
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(WaitForLines("produce-1.out", "STALLED", 1, absl::Seconds(30)));
  first->Signal(SIGKILL);
  absl::StatusOr<int> exit_code = first->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  ASSERT_EQ(*exit_code, 128 + SIGKILL) << "the producer ended by itself";

  // What the crash left behind: the outbox (intent.log), the acks the
  // producer recorded (acks.log), and every ack it actually received
  // (truth.log, the test's view only).
  LossChecker checker;
  std::set<uint64_t> attempted;
  for (const auto& f : Lines(files + "/intent.log", "attempt")) {
    attempted.insert(ToU64(f[1]));
  }
  const std::map<uint64_t, AckLine> recorded =
      AckLines(files + "/acks.log", "acked");
  const std::map<uint64_t, AckLine> received =
      AckLines(files + "/truth.log", "ack");
  EXPECT_TRUE(Lines(files + "/truth.log", "failed").empty())
      << ReadFile(files + "/truth.log").substr(0, 2000);
  for (uint64_t c : attempted) checker.Attempted(0, c);
  for (const auto& [c, ack] : received) {
    checker.Acked(0, c, ack.sequence, ack.duplicate);
    EXPECT_FALSE(ack.duplicate) << "first publish of p0-" << c;
  }
  ASSERT_EQ(recorded.size(), static_cast<size_t>(kRecordLimit));
  for (const auto& [c, ack] : recorded) {
    ASSERT_TRUE(received.contains(c)) << c;
    EXPECT_EQ(received.at(c).sequence, ack.sequence) << c;
  }
  size_t unrecorded = 0;
  for (const auto& [c, ack] : received) unrecorded += !recorded.contains(c);
  const size_t in_flight = attempted.size() - received.size();
  ASSERT_GE(unrecorded, 8u) << "the kill must fall after unrecorded acks";
  ASSERT_FALSE(attempted.empty());
  const uint64_t last_attempted = *attempted.rbegin();
  uint64_t first_unrecorded = 0;
  while (recorded.contains(first_unrecorded)) ++first_unrecorded;
  const uint64_t from =
      first_unrecorded > kReplay ? first_unrecorded - kReplay : 0;

  // Restarted, it replays.
  args = common;
  args.push_back(absl::StrCat("--replay=", kReplay));
  args.push_back(absl::StrCat("--extra=", kExtra));
  const absl::Time replay_start = absl::Now();
  testing::BackgroundProcess* second = StartChild(args, "produce-2.out");
  ASSERT_NE(second, nullptr);
  exit_code = second->Wait(absl::Seconds(60));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  ASSERT_EQ(*exit_code, 0) << ReadFile(dir_ + "/produce-2.out");
  const absl::Duration replay_time = absl::Now() - replay_start;
  const std::map<uint64_t, AckLine> replayed =
      AckLines(dir_ + "/produce-2.out", "replayed");
  const std::map<uint64_t, AckLine> published =
      AckLines(dir_ + "/produce-2.out", "published");

  ASSERT_FALSE(replayed.empty());
  EXPECT_EQ(replayed.begin()->first, from);
  EXPECT_EQ(replayed.rbegin()->first, last_attempted);
  EXPECT_EQ(replayed.size(), last_attempted - from + 1);
  EXPECT_EQ(published.size(), static_cast<size_t>(kExtra));
  int replayed_recorded = 0;
  int replayed_unrecorded = 0;
  int in_flight_stored = 0;
  int in_flight_not_stored = 0;
  for (const auto& [c, ack] : replayed) {
    checker.Acked(0, c, ack.sequence, ack.duplicate);
    if (received.contains(c)) {
      // The stream had it: a duplicate, at the first copy's sequence.
      EXPECT_TRUE(ack.duplicate) << "replay of acked p0-" << c;
      EXPECT_EQ(ack.sequence, received.at(c).sequence) << "p0-" << c;
      ++(recorded.contains(c) ? replayed_recorded : replayed_unrecorded);
    } else {
      // In flight at the kill: stored or not, both are fine, once.
      ++(ack.duplicate ? in_flight_stored : in_flight_not_stored);
    }
  }
  EXPECT_GE(replayed_recorded, kReplay);
  EXPECT_EQ(replayed_unrecorded, static_cast<int>(unrecorded));
  for (const auto& [c, ack] : published) {
    checker.Attempted(0, c);
    checker.Acked(0, c, ack.sequence, ack.duplicate);
    EXPECT_FALSE(ack.duplicate) << "new message p0-" << c;
  }

  // The stream: every ID once, nothing else.
  uint64_t gaps = 0;
  const StreamState state = ReadBack(checker, &gaps);
  const LossChecker::Report report = checker.Check();
  EXPECT_EQ(state.messages, last_attempted + 1 + kExtra);
  EXPECT_EQ(gaps, 0u);
  EXPECT_TRUE(report.ok()) << report.ToString();
  EXPECT_EQ(report.read_distinct, last_attempted + 1 + kExtra);
  EXPECT_EQ(report.recovered, 0u) << report.ToString();
  std::cout << report.ToString() << "\n"
            << FaultResultLine(
                   "F10_producer_killed_before_recording_acks", report,
                   UnavailabilityMeter(),
                   {{"recorded_acks", static_cast<int64_t>(recorded.size())},
                    {"unrecorded_acks", static_cast<int64_t>(unrecorded)},
                    {"in_flight_at_kill", static_cast<int64_t>(in_flight)},
                    {"replayed", static_cast<int64_t>(replayed.size())},
                    {"replay_dup_recorded", replayed_recorded},
                    {"replay_dup_unrecorded", replayed_unrecorded},
                    {"in_flight_stored", in_flight_stored},
                    {"in_flight_not_stored", in_flight_not_stored},
                    {"stream_messages", static_cast<int64_t>(state.messages)},
                    {"replay_ms", Ms(replay_time)}})
            << std::endl;
}

// F11, the part the e-mail crash test (a restart of the same service) does
// not show: the consumer process is killed at a moment the journal pins down
// exactly (one message committed in the shared KV store but not
// acknowledged, the other workers holding messages before their side
// effect), and another replica, already running, takes everything over after
// ack_wait. Nothing is handled twice, nothing is lost, and the redeliveries
// are visible in the delivery count and the metrics.
TEST_F(CrashFaultTest, ConsumerKilledBetweenCommitAndAckIsTakenOverOnce) {
  constexpr int kMessages = 60;
  constexpr int kWorkers = 4;
  constexpr char kBucket[] = "fault-idempotency";
  constexpr char kDurable[] = "workers";
  const absl::Duration ack_wait = absl::Seconds(1);
  ConnectAndCreateStream();
  ASSERT_FALSE(HasFatalFailure());
  LossChecker checker;
  {
    auto publisher = StreamPublisher::Create(*js_, {.stream = kStream});
    ASSERT_TRUE(publisher.ok()) << publisher.status();
    for (int c = 0; c < kMessages; ++c) {
      const std::string id = LossChecker::MessageIdFor(0, c);
      checker.Attempted(0, c);
      StreamPublishOptions o;
      o.message_id = id;
      auto ack = (*publisher)->Publish(kSubject, id, o);
      ASSERT_TRUE(ack.ok()) << ack.status();
      checker.Acked(0, c, ack->sequence, ack->duplicate);
    }
  }

  // Worker A, in its own process.
  testing::BackgroundProcess* a = StartChild(
      {"consume", absl::StrCat("--url=", server().url()),
       absl::StrCat("--stream=", kStream), absl::StrCat("--durable=", kDurable),
       absl::StrCat("--bucket=", kBucket),
       absl::StrCat("--journal=", dir_, "/journal"),
       absl::StrCat("--workers=", kWorkers),
       absl::StrCat("--ack_wait_ms=", absl::ToInt64Milliseconds(ack_wait)),
       "--handler_ms=50", "--crash_after_commits=10"},
      "consume.out");
  ASSERT_NE(a, nullptr);
  // Every worker of A has stopped: one at the crash point, the others
  // holding a message (see fault_child.cc).
  ASSERT_TRUE(WaitForLines("journal", "blocked", kWorkers, absl::Seconds(30)))
      << ReadFile(dir_ + "/consume.out");

  // Worker B: another replica of the same durable consumer, sharing the KV
  // store, running before A dies.
  std::mutex mu;
  std::map<std::string, std::vector<uint64_t>> b_deliveries;
  ConnectionOptions ob = Options();
  ob.name = "worker-b";
  auto b_conn = Connection::Create(ob);
  ASSERT_TRUE(b_conn.ok()) << b_conn.status();
  auto b_js = JetStream::Create(**b_conn);
  ASSERT_TRUE(b_js.ok());
  auto b_store = KvIdempotencyStore::Create(
      **b_js, {.bucket = kBucket, .ttl = absl::Minutes(5)});
  ASSERT_TRUE(b_store.ok()) << b_store.status();
  StreamConsumerOptions o;
  o.consumer.stream = kStream;
  o.consumer.durable = kDurable;
  o.consumer.ack_wait = ack_wait;
  o.workers = kWorkers;
  o.fetch_wait = absl::Milliseconds(200);
  o.max_deliveries = 10;
  o.nak_backoff.initial_backoff = absl::Milliseconds(50);
  o.nak_backoff.max_backoff = absl::Milliseconds(200);
  o.idempotency = *b_store;
  auto b = StreamConsumer::Create(
      **b_js, o, [&](const Delivery& d) -> DeliveryOutcome {
        const std::string& id = d.message().message_id;
        {
          std::lock_guard<std::mutex> lock(mu);
          b_deliveries[id].push_back(d.delivery_count());
        }
        if (auto key = LossChecker::ParseMessageId(id)) {
          checker.Processed(key->first, key->second);
        }
        return DeliveryOutcome::Ack();
      });
  ASSERT_TRUE(b.ok()) << b.status();

  a->Signal(SIGKILL);
  const absl::Time killed = absl::Now();
  absl::StatusOr<int> exit_code = a->Wait(absl::Seconds(10));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  ASSERT_EQ(*exit_code, 128 + SIGKILL);

  // What A did, from its journal (complete: single-write lines, page cache).
  const std::string journal = dir_ + "/journal";
  std::map<std::string, int> a_effects;
  for (const auto& f : Lines(journal, "effect")) ++a_effects[f[1]];
  std::set<std::string> a_committed;
  for (const auto& f : Lines(journal, "committed")) a_committed.insert(f[1]);
  std::set<std::string> held;  // in a handler, side effect not done
  for (const auto& f : Lines(journal, "held")) held.insert(f[1]);
  std::set<std::string> committed_unacked;  // blocked after the commit
  for (const auto& f : Lines(journal, "blocked")) {
    if (!held.contains(f[1])) committed_unacked.insert(f[1]);
  }
  const std::vector<std::vector<std::string>> crash =
      Lines(journal, "crash-point");
  ASSERT_EQ(crash.size(), 1u);
  const std::string crash_id = crash[0][1];
  EXPECT_TRUE(committed_unacked.contains(crash_id));
  EXPECT_EQ(held.size() + committed_unacked.size(),
            static_cast<size_t>(kWorkers));
  for (const auto& [id, n] : a_effects) {
    auto key = LossChecker::ParseMessageId(id);
    ASSERT_TRUE(key.has_value()) << id;
    for (int i = 0; i < n; ++i) checker.Processed(key->first, key->second);
  }

  // B finishes the stream: everything handled, the committed ones skipped.
  auto settled = [&] {
    const StreamConsumerStats s = (*b)->stats();
    auto consumer = js_->GetConsumer(kStream, kDurable);
    return checker.Check().processed_distinct == kMessages &&
           s.skipped_duplicates >=
               static_cast<int64_t>(committed_unacked.size()) &&
           consumer.ok() && consumer->ack_pending == 0 &&
           consumer->pending == 0;
  };
  ASSERT_TRUE(PollUntil(settled, absl::Seconds(30), absl::Milliseconds(50)))
      << checker.Check().ToString();
  const absl::Duration takeover = absl::Now() - killed;
  ASSERT_TRUE((*b)->Stop(absl::Seconds(5)).ok());
  const StreamConsumerStats stats = (*b)->stats();

  std::lock_guard<std::mutex> lock(mu);
  // Committed but not acknowledged: redelivered to B and skipped there,
  // never handled again.
  for (const std::string& id : committed_unacked) {
    EXPECT_EQ(a_effects[id], 1) << id;
    EXPECT_FALSE(b_deliveries.contains(id)) << id << " handled twice";
  }
  EXPECT_EQ(stats.skipped_duplicates,
            static_cast<int64_t>(committed_unacked.size()));
  // Held by A without a side effect: redelivered to B and handled once.
  for (const std::string& id : held) {
    EXPECT_FALSE(a_effects.contains(id)) << id;
    ASSERT_TRUE(b_deliveries.contains(id)) << id << " never redelivered";
    EXPECT_EQ(b_deliveries[id].size(), 1u) << id;
    EXPECT_GE(b_deliveries[id].front(), 2u)
        << id << ": the delivery count shows the redelivery";
  }
  // Redeliveries counted, in the stats and the metric alike.
  EXPECT_GE(stats.redelivered, kWorkers);
  EXPECT_EQ(testing::MetricValue(*registry_, "natsgw_js_redeliveries_total",
                                 {{"stream", kStream}, {"consumer", kDurable}})
                .value_or(-1),
            static_cast<double>(stats.redelivered));
  EXPECT_EQ(testing::MetricValue(*registry_, "natsgw_js_deliveries_total",
                                 {{"stream", kStream},
                                  {"consumer", kDurable},
                                  {"outcome", "skipped_duplicate"}})
                .value_or(-1),
            static_cast<double>(stats.skipped_duplicates));

  uint64_t gaps = 0;
  const StreamState state = ReadBack(checker, &gaps);
  const LossChecker::Report report = checker.Check();
  EXPECT_EQ(state.messages, static_cast<uint64_t>(kMessages));
  EXPECT_TRUE(report.ok()) << report.ToString();
  EXPECT_EQ(report.processed_distinct, static_cast<uint64_t>(kMessages));
  EXPECT_EQ(report.processed_duplicates, 0u) << report.ToString();
  EXPECT_EQ(report.unprocessed_count, 0u) << report.ToString();
  int64_t a_handled = 0;
  for (const auto& [id, n] : a_effects) a_handled += n;
  std::cout << report.ToString() << "\n"
            << FaultResultLine(
                   "F11_consumer_killed_between_commit_and_ack", report,
                   UnavailabilityMeter(),
                   {{"handled_by_killed", a_handled},
                    {"committed_unacked_at_kill",
                     static_cast<int64_t>(committed_unacked.size())},
                    {"held_at_kill", static_cast<int64_t>(held.size())},
                    {"redelivered", stats.redelivered},
                    {"skipped_duplicates", stats.skipped_duplicates},
                    {"takeover_ms", Ms(takeover)},
                    {"ack_wait_ms", Ms(ack_wait)}})
            << std::endl;
  b->reset();
}

#ifdef NATSGW_EMAIL_SERVICE_BINARY
// F16, the part service_lifecycle_test (SIGTERM while idle) and
// StopFinishesRunningWorkAndHandsBackTheRest (in-process Stop) leave open: the
// real e-mail service gets SIGTERM in the middle of a batch of events while
// RPC callers keep calling it. It exits 0 within its shutdown deadlines plus
// a second; every RPC ends OK or UNAVAILABLE (no responder once it is gone)
// within its deadline, none times out unanswered; and the events it started
// were finished and acknowledged: restarted, it finishes the batch without
// once finding an e-mail already sent for an unacknowledged event (which a
// SIGKILL leaves behind, see email_crash_test).
TEST_F(CrashFaultTest, ServiceStoppedWhileBusyFinishesWhatItStarted) {
  constexpr int kUsers = 200;
  constexpr int kCallers = 2;
  const absl::Duration rpc_deadline = absl::Seconds(2);
  // The service's own shutdown deadlines: events->Stop(10s), then the
  // endpoint's Drain(5s).
  const absl::Duration shutdown_deadline = absl::Seconds(15);
  fs::create_directories(dir_ + "/mail");
  const std::vector<std::string> email_args = {
      absl::StrCat("--nats_url=", server().url()),
      "--metrics_port=-1",
      absl::StrCat("--mail_dir=", dir_, "/mail"),
      "--workers=4",
      "--send_delay_ms=50",
      "--ack_wait=2s"};
  auto start_service = [&](const std::string& log) {
    std::vector<std::string> argv = {NATSGW_EMAIL_SERVICE_BINARY};
    argv.insert(argv.end(), email_args.begin(), email_args.end());
    auto p = testing::BackgroundProcess::Start(argv, dir_ + "/" + log);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return static_cast<testing::BackgroundProcess*>(nullptr);
    children_.push_back(*std::move(p));
    EXPECT_TRUE(Eventually(
        [&] {
          return absl::StrContains(ReadFile(dir_ + "/" + log),
                                   "email-service ready");
        },
        absl::Seconds(20)));
    return children_.back().get();
  };
  // Welcome e-mails in the spool, by user.
  auto mails = [&] {
    std::map<std::string, int> per_user;
    for (const auto& entry : fs::directory_iterator(dir_ + "/mail")) {
      if (entry.path().extension() != ".eml") continue;
      const std::string mail = ReadFile(entry.path());
      const size_t at = mail.find("User-Id: ");
      if (at == std::string::npos) continue;
      ++per_user[mail.substr(at + 9, mail.find('\n', at) - at - 9)];
    }
    return per_user;
  };
  auto event_mails = [&] {
    size_t n = 0;
    for (const auto& [user, count] : mails()) n += absl::StartsWith(user, "u-");
    return n;
  };

  testing::BackgroundProcess* service = start_service("email-1.log");
  ASSERT_NE(service, nullptr);
  ASSERT_FALSE(HasFailure());

  auto conn = Connection::Create(Options());
  ASSERT_TRUE(conn.ok()) << conn.status();
  auto js = JetStream::Create(**conn);
  ASSERT_TRUE(js.ok());
  auto publisher = StreamPublisher::Create(**js, {.stream = "USERS"});
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  absl::Status published = testing::PublishUsersRegistered(**publisher, kUsers);
  ASSERT_TRUE(published.ok()) << published;

  // RPC callers, each call recorded with its outcome and duration.
  struct Call {
    absl::Time start;
    absl::Duration took;
    absl::StatusCode code;
  };
  std::mutex mu;
  std::vector<Call> calls;
  std::atomic<bool> stop{false};
  auto client = email::EmailClient::Create(**conn);
  ASSERT_TRUE(client.ok()) << client.status();
  std::vector<std::thread> callers;
  for (int t = 0; t < kCallers; ++t) {
    callers.emplace_back([&, t] {
      const absl::Time until = absl::Now() + absl::Seconds(60);
      for (int i = 0; i < 2000 && !stop.load() && absl::Now() < until; ++i) {
        const std::string user = absl::StrCat("rpc-", t, "-", i);
        CallOptions options;
        options.timeout = rpc_deadline;
        const absl::Time start = absl::Now();
        auto reply = client->SendWelcomeEmail(
            [&](flatbuffers::FlatBufferBuilder& fbb) {
              return email::CreateSendWelcomeEmailRequestDirect(
                  fbb, user.c_str(), "rpc@example.com", "Caller");
            },
            options);
        {
          std::lock_guard<std::mutex> lock(mu);
          calls.push_back({start, absl::Now() - start, reply.status().code()});
        }
        if (absl::IsUnavailable(reply.status())) {
          // Nobody serves it (any more): do not spin.
          absl::SleepFor(absl::Milliseconds(20));
        }
      }
    });
  }

  // SIGTERM in the middle of the batch.
  ASSERT_TRUE(
      Eventually([&] { return event_mails() >= 40; }, absl::Seconds(30)));
  service->Signal(SIGTERM);
  const absl::Time term = absl::Now();
  absl::StatusOr<int> exit_code =
      service->Wait(shutdown_deadline + absl::Seconds(5));
  const absl::Duration exit_after = absl::Now() - term;
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  EXPECT_LE(exit_after, shutdown_deadline + absl::Seconds(1));
  const size_t at_exit = event_mails();
  EXPECT_LT(at_exit, static_cast<size_t>(kUsers)) << "not mid-batch";
  // Calls made after the exit meet nobody: UNAVAILABLE at once.
  absl::SleepFor(absl::Milliseconds(300));
  stop.store(true);
  for (auto& t : callers) t.join();

  int ok = 0, unavailable = 0, other = 0, ok_after_term = 0;
  absl::Duration longest = absl::ZeroDuration();
  for (const Call& c : calls) {
    longest = std::max(longest, c.took);
    EXPECT_LE(c.took, rpc_deadline + absl::Milliseconds(500));
    if (c.code == absl::StatusCode::kOk) {
      ++ok;
      if (c.start + c.took > term) ++ok_after_term;
    } else if (c.code == absl::StatusCode::kUnavailable) {
      ++unavailable;
    } else {
      ++other;
      ADD_FAILURE() << "RPC ended " << absl::StatusCodeToString(c.code)
                    << " after " << c.took;
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(unavailable, 0) << "no call after the exit";

  // Restarted, it finishes the batch; nothing the first run started is
  // found done but unacknowledged.
  service = start_service("email-2.log");
  ASSERT_NE(service, nullptr);
  ASSERT_TRUE(
      Eventually([&] { return event_mails() >= kUsers; }, absl::Seconds(60)))
      << event_mails();
  absl::SleepFor(absl::Milliseconds(500));  // redeliveries would show now
  service->Signal(SIGTERM);
  exit_code = service->Wait(shutdown_deadline + absl::Seconds(5));
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  size_t event_users = 0;
  for (const auto& [user, n] : mails()) {
    EXPECT_EQ(n, 1) << user;
    event_users += absl::StartsWith(user, "u-");
  }
  EXPECT_EQ(event_users, static_cast<size_t>(kUsers));
  size_t refused = 0;
  for (const char* log : {"email-1.log", "email-2.log"}) {
    const std::string text = ReadFile(dir_ + "/" + log);
    for (size_t at = text.find("already had"); at != std::string::npos;
         at = text.find("already had", at + 1)) {
      ++refused;
    }
  }
  EXPECT_EQ(refused, 0u) << "a graceful stop left a side effect unrecorded";
  std::cout << "FAULT-RESULT {\"test\":\"F16_service_sigterm_while_busy\""
            << ",\"events\":" << kUsers << ",\"mails_at_exit\":" << at_exit
            << ",\"exit_ms\":" << Ms(exit_after)
            << ",\"rpc_calls\":" << calls.size() << ",\"rpc_ok\":" << ok
            << ",\"rpc_ok_after_sigterm\":" << ok_after_term
            << ",\"rpc_unavailable\":" << unavailable
            << ",\"rpc_other\":" << other
            << ",\"rpc_longest_ms\":" << Ms(longest)
            << ",\"refused_duplicates\":" << refused << "}" << std::endl;
  publisher->reset();
}
#endif  // NATSGW_EMAIL_SERVICE_BINARY

}  // namespace
}  // namespace natsgw
