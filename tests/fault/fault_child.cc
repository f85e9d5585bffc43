// fault_child: a small natsgw program that the process-crash fault tests
// (crash_fault_test.cc) run as a separate process and kill with SIGKILL at a
// chosen moment, then start again. Two roles:
//
//   fault_child produce --url=URL --stream=S --subject=SUBJ --dir=DIR
//       [--record_limit=M] [--max_messages=N] [--replay=K] [--extra=Q]
//   fault_child consume --url=URL --stream=S --durable=D --bucket=B
//       --journal=FILE [--workers=W] [--ack_wait_ms=A] [--handler_ms=H]
//       [--crash_after_commits=M]
//
// produce, first run (no --replay): a producer with an outbox. It publishes
// messages 0, 1, 2, ... of producer 0 (message ID and payload "p0-<c>")
// asynchronously through a StreamPublisher, writing "attempt <c>" to
// DIR/intent.log before each send and "acked <c> <seq> <dup>" to
// DIR/acks.log for each ack. After M acks the recording stalls (as if the
// disk holding the ack log stopped): further acks are no longer recorded,
// only reported to the test in DIR/truth.log, and once at least 8 of them
// arrived "STALLED" is printed. Publishing continues (at most N messages, at
// most 30 s) until the test kills the process: the kill lands between
// publishes and the recording of their acks.
//
// produce --replay=K: the restarted producer. It reads the two logs, finds
// the first message whose ack was not recorded, and publishes again, with
// the same message IDs and synchronously, from K messages before it up to the
// last one it attempted (printing "replayed <c> <seq> <dup>"), then Q new
// messages ("published <c> <seq> <dup>"), then "DONE".
//
// consume: one replica of a durable pull consumer (StreamConsumer) whose
// idempotency store is a KV bucket shared with the other replicas. The
// handler appends "start <id> <delivery>" and, after --handler_ms, "effect
// <id> <delivery>" (the side effect) to the journal. Each idempotency key
// committed is journaled as "committed <id>". The M-th commit is the crash
// point ("crash-point <id>"): from then on no worker acknowledges anything.
// The committing worker stops right there, after the commit and before the
// ack; a worker finishing its handler's sleep, or starting a new delivery,
// stops before the side effect ("held <id> <delivery>"); a worker whose side
// effect was already done stops after its commit, like the crash point. Each
// stop is journaled as "blocked <id>", so once there are W such lines every
// worker holds a message and nothing moves: the test kills the process at a
// moment where the journal says exactly what was done, committed and held.
// Prints "READY" once consuming; exits 0 on SIGTERM after a graceful Stop.
//
// Journal and log lines are single write(2) calls on O_APPEND files, so a
// SIGKILL never leaves half a line and the test reads exactly what happened.
// Exit status: 0 done, 1 an error (printed), 2 bad arguments, 3 a crash
// point that was never killed.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "fault/loss_checker.h"
#include "natsgw/connection.h"
#include "natsgw/idempotency_store.h"
#include "natsgw/jetstream.h"
#include "natsgw/kv_idempotency_store.h"
#include "natsgw/logger.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/stream_publisher.h"

namespace natsgw::fault_child {
namespace {

using ::natsgw::testing::LossChecker;

// An append-only line file. Thread-safe (a mutex per file; each line is
// one write(2) on an O_APPEND descriptor).
class LineFile {
 public:
  // fd 1 (stdout) when `path` is empty.
  explicit LineFile(const std::string& path) {
    fd_ = path.empty() ? 1
                       : open(path.c_str(),
                              O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }
  ~LineFile() {
    if (fd_ > 2) close(fd_);
  }
  LineFile(const LineFile&) = delete;
  LineFile& operator=(const LineFile&) = delete;

  bool ok() const { return fd_ >= 0; }

  void Write(const std::string& line) {
    const std::string text = line + "\n";
    std::lock_guard<std::mutex> lock(mu_);
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = write(fd_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      done += static_cast<size_t>(n);
    }
  }

 private:
  std::mutex mu_;
  int fd_ = -1;
};

// Standard output, line by line. Never destroyed: natsgw's threads may
// still write to it while the process exits.
LineFile& Out() {
  static LineFile* out = new LineFile("");
  return *out;
}

std::map<std::string, std::string> ParseFlags(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) continue;
    const size_t eq = arg.find('=');
    if (eq == std::string::npos) {
      flags[arg.substr(2)] = "true";
    } else {
      flags[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
    }
  }
  return flags;
}

int64_t IntFlag(const std::map<std::string, std::string>& flags,
                const std::string& name, int64_t fallback) {
  auto it = flags.find(name);
  int64_t value = fallback;
  if (it != flags.end() && !absl::SimpleAtoi(it->second, &value)) {
    return fallback;
  }
  return value;
}

std::string StrFlag(const std::map<std::string, std::string>& flags,
                    const std::string& name) {
  auto it = flags.find(name);
  return it == flags.end() ? "" : it->second;
}

absl::StatusOr<std::unique_ptr<Connection>> Connect(const std::string& url,
                                                    const std::string& name) {
  ConnectionOptions options;
  options.servers = {url};
  options.name = name;
  options.reconnect.wait = absl::Milliseconds(100);
  options.logger = std::make_shared<StderrLogger>(absl::LogSeverity::kWarning);
  return Connection::Create(options);
}

// A connection and the JetStream context on it, destroyed in that order
// reversed (the context first).
struct JetStreamSession {
  std::unique_ptr<Connection> conn;
  std::unique_ptr<JetStream> js;
};

// Connects to `url` as `name` and opens JetStream; on failure writes why to
// the output file and returns nullopt.
std::optional<JetStreamSession> ConnectJetStream(const std::string& url,
                                                 const std::string& name) {
  auto conn = Connect(url, name);
  if (!conn.ok()) {
    Out().Write(absl::StrCat("connect: ", conn.status().ToString()));
    return std::nullopt;
  }
  auto js = JetStream::Create(**conn);
  if (!js.ok()) {
    Out().Write(absl::StrCat("jetstream: ", js.status().ToString()));
    return std::nullopt;
  }
  return JetStreamSession{*std::move(conn), *std::move(js)};
}

// Blocks SIGTERM and SIGINT in every thread started afterwards, so the main
// thread can wait for them with sigtimedwait.
void BlockShutdownSignals(sigset_t* set) {
  sigemptyset(set);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
  pthread_sigmask(SIG_BLOCK, set, nullptr);
}

// Waits for SIGTERM/SIGINT, at most `timeout`; true if one came.
bool WaitForShutdown(const sigset_t& set, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (absl::Now() < until) {
    const timespec ts = absl::ToTimespec(std::min(
        absl::Seconds(1), std::max(absl::ZeroDuration(), until - absl::Now())));
    const int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig == SIGTERM || sig == SIGINT) return true;
  }
  return false;
}

// The numbers in lines "<word> <c> ..." of `path` whose first word is `word`.
std::vector<std::vector<std::string>> LinesStartingWith(
    const std::string& path, const std::string& word) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> out;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (!fields.empty() && fields[0] == word) out.push_back(std::move(fields));
  }
  return out;
}

// ---------------------------------------------------------------------------
// produce

int ProduceFirstRun(StreamPublisher& publisher, const std::string& subject,
                    const std::string& dir, int64_t record_limit,
                    int64_t max_messages) {
  LineFile intent(dir + "/intent.log");
  LineFile acks(dir + "/acks.log");
  LineFile truth(dir + "/truth.log");
  if (!intent.ok() || !acks.ok() || !truth.ok()) {
    Out().Write(absl::StrCat("cannot open the logs in ", dir));
    return 1;
  }
  // Counted under its own mutex: callbacks run on several natsgw threads.
  std::mutex mu;
  int64_t recorded = 0;
  int64_t unrecorded = 0;
  bool stalled_said = false;
  std::atomic<int64_t> failed{0};

  const absl::Time until = absl::Now() + absl::Seconds(30);
  for (int64_t c = 0; c < max_messages && absl::Now() < until; ++c) {
    const std::string id = LossChecker::MessageIdFor(0, c);
    intent.Write(absl::StrCat("attempt ", c));
    StreamPublishOptions o;
    o.message_id = id;
    absl::Status sent = publisher.PublishAsync(
        subject, id, o, [&, c](absl::StatusOr<PublishAck> ack) {
          if (!ack.ok()) {
            failed.fetch_add(1);
            truth.Write(
                absl::StrCat("failed ", c, " ", ack.status().ToString()));
            return;
          }
          const std::string fields =
              absl::StrCat(c, " ", ack->sequence, " ", ack->duplicate ? 1 : 0);
          truth.Write(absl::StrCat("ack ", fields));
          std::lock_guard<std::mutex> lock(mu);
          if (recorded < record_limit) {
            acks.Write(absl::StrCat("acked ", fields));
            ++recorded;
            return;
          }
          ++unrecorded;
          if (unrecorded >= 8 && !stalled_said) {
            stalled_said = true;
            Out().Write("STALLED");
          }
        });
    if (!sent.ok()) {
      truth.Write(absl::StrCat("failed ", c, " ", sent.ToString()));
      failed.fetch_add(1);
    }
  }
  publisher.WaitForAcks(absl::Seconds(10)).IgnoreError();
  Out().Write(absl::StrCat("FINISHED failed=", failed.load()));
  // The test kills the process before this; if it does not, say so.
  absl::SleepFor(absl::Seconds(30));
  return 3;
}

int ProduceReplay(StreamPublisher& publisher, const std::string& subject,
                  const std::string& dir, int64_t replay, int64_t extra) {
  std::set<int64_t> recorded;
  for (const auto& f : LinesStartingWith(dir + "/acks.log", "acked")) {
    int64_t c = 0;
    if (f.size() >= 2 && absl::SimpleAtoi(f[1], &c)) recorded.insert(c);
  }
  int64_t last_attempted = -1;
  for (const auto& f : LinesStartingWith(dir + "/intent.log", "attempt")) {
    int64_t c = 0;
    if (f.size() >= 2 && absl::SimpleAtoi(f[1], &c)) {
      last_attempted = std::max(last_attempted, c);
    }
  }
  int64_t first_unrecorded = 0;
  while (recorded.contains(first_unrecorded)) ++first_unrecorded;
  const int64_t from = std::max<int64_t>(0, first_unrecorded - replay);
  Out().Write(absl::StrCat("RESUMING first_unrecorded=", first_unrecorded,
                           " from=", from, " last_attempted=", last_attempted));
  LineFile acks(dir + "/acks.log");
  auto publish = [&](int64_t c, const char* word) {
    const std::string id = LossChecker::MessageIdFor(0, c);
    StreamPublishOptions o;
    o.message_id = id;
    absl::StatusOr<PublishAck> ack = publisher.Publish(subject, id, o);
    if (!ack.ok()) {
      Out().Write(absl::StrCat("failed ", c, " ", ack.status().ToString()));
      return false;
    }
    const std::string fields =
        absl::StrCat(c, " ", ack->sequence, " ", ack->duplicate ? 1 : 0);
    acks.Write(absl::StrCat("acked ", fields));
    Out().Write(absl::StrCat(word, " ", fields));
    return true;
  };
  for (int64_t c = from; c <= last_attempted; ++c) {
    if (!publish(c, "replayed")) return 1;
  }
  for (int64_t c = last_attempted + 1; c <= last_attempted + extra; ++c) {
    if (!publish(c, "published")) return 1;
  }
  Out().Write("DONE");
  return 0;
}

int Produce(const std::map<std::string, std::string>& flags) {
  const std::string url = StrFlag(flags, "url");
  const std::string stream = StrFlag(flags, "stream");
  const std::string subject = StrFlag(flags, "subject");
  const std::string dir = StrFlag(flags, "dir");
  if (url.empty() || stream.empty() || subject.empty() || dir.empty()) {
    Out().Write("produce needs --url, --stream, --subject and --dir");
    return 2;
  }
  std::optional<JetStreamSession> session =
      ConnectJetStream(url, "fault-child-producer");
  if (!session.has_value()) return 1;
  StreamPublisherOptions po;
  po.stream = stream;
  po.max_pending = 64;
  auto publisher = StreamPublisher::Create(*session->js, po);
  if (!publisher.ok()) {
    Out().Write(absl::StrCat("publisher: ", publisher.status().ToString()));
    return 1;
  }
  const int64_t replay = IntFlag(flags, "replay", -1);
  int rc = 0;
  if (replay < 0) {
    rc = ProduceFirstRun(**publisher, subject, dir,
                         IntFlag(flags, "record_limit", 100),
                         IntFlag(flags, "max_messages", 20000));
  } else {
    rc = ProduceReplay(**publisher, subject, dir, replay,
                       IntFlag(flags, "extra", 0));
  }
  publisher->reset();
  return rc;
}

// ---------------------------------------------------------------------------
// consume

// Blocks the calling worker until the process is killed (bounded: a crash
// point nobody kills ends the process with status 3).
[[noreturn]] void BlockUntilKilled(LineFile& journal, absl::string_view id) {
  journal.Write(absl::StrCat("blocked ", id));
  absl::SleepFor(absl::Seconds(30));
  _exit(3);
}

// Journals every commit and, from the crash_after-th on, stops the
// committing worker dead: the message is recorded as handled in the shared
// store but never acknowledged. Thread-safe (delegates to a thread-safe
// store; the counter and flag are atomic).
class CrashPointStore : public IdempotencyStore {
 public:
  CrashPointStore(std::shared_ptr<IdempotencyStore> inner, int64_t crash_after,
                  LineFile& journal)
      : inner_(std::move(inner)),
        crash_after_(crash_after),
        journal_(journal) {}

  // True once the crash point was reached: workers must not go on.
  bool crashed() const { return crashed_.load(); }

  absl::StatusOr<ClaimResult> Claim(absl::string_view key,
                                    absl::Duration lease) override {
    return inner_->Claim(key, lease);
  }
  absl::Status Commit(absl::string_view key) override {
    absl::Status s = inner_->Commit(key);
    if (!s.ok()) return s;
    journal_.Write(absl::StrCat("committed ", key));
    if (commits_.fetch_add(1) + 1 == crash_after_) {
      journal_.Write(absl::StrCat("crash-point ", key));
      crashed_.store(true);
    }
    // The test kills the process now; the ack never goes out.
    if (crashed_.load()) BlockUntilKilled(journal_, key);
    return s;
  }
  absl::Status Release(absl::string_view key) override {
    return inner_->Release(key);
  }
  absl::Duration ttl() const override { return inner_->ttl(); }

 private:
  const std::shared_ptr<IdempotencyStore> inner_;
  const int64_t crash_after_;
  LineFile& journal_;
  std::atomic<int64_t> commits_{0};
  std::atomic<bool> crashed_{false};
};

int Consume(const std::map<std::string, std::string>& flags) {
  const std::string url = StrFlag(flags, "url");
  const std::string stream = StrFlag(flags, "stream");
  const std::string durable = StrFlag(flags, "durable");
  const std::string bucket = StrFlag(flags, "bucket");
  const std::string journal_path = StrFlag(flags, "journal");
  if (url.empty() || stream.empty() || durable.empty() || bucket.empty() ||
      journal_path.empty()) {
    Out().Write(
        "consume needs --url, --stream, --durable, --bucket and --journal");
    return 2;
  }
  sigset_t shutdown;
  BlockShutdownSignals(&shutdown);
  LineFile journal(journal_path);
  std::optional<JetStreamSession> session =
      ConnectJetStream(url, "fault-child-consumer");
  if (!session.has_value()) return 1;
  auto kv = KvIdempotencyStore::Create(
      *session->js, {.bucket = bucket, .ttl = absl::Minutes(5)});
  if (!kv.ok()) {
    Out().Write(absl::StrCat("kv: ", kv.status().ToString()));
    return 1;
  }
  StreamConsumerOptions o;
  o.consumer.stream = stream;
  o.consumer.durable = durable;
  o.consumer.ack_wait = absl::Milliseconds(IntFlag(flags, "ack_wait_ms", 1000));
  o.workers = static_cast<int>(IntFlag(flags, "workers", 4));
  o.fetch_wait = absl::Milliseconds(200);
  o.max_deliveries = 10;
  o.nak_backoff.initial_backoff = absl::Milliseconds(50);
  o.nak_backoff.max_backoff = absl::Milliseconds(200);
  auto store = std::make_shared<CrashPointStore>(
      *kv, IntFlag(flags, "crash_after_commits", -1), journal);
  o.idempotency = store;
  const absl::Duration work =
      absl::Milliseconds(IntFlag(flags, "handler_ms", 50));
  auto consumer = StreamConsumer::Create(
      *session->js, o, [&](const Delivery& d) -> DeliveryOutcome {
        const std::string& id = d.message().message_id;
        journal.Write(absl::StrCat("start ", id, " ", d.delivery_count()));
        absl::SleepFor(work);
        if (store->crashed()) {
          journal.Write(absl::StrCat("held ", id, " ", d.delivery_count()));
          BlockUntilKilled(journal, id);
        }
        journal.Write(absl::StrCat("effect ", id, " ", d.delivery_count()));
        return DeliveryOutcome::Ack();
      });
  if (!consumer.ok()) {
    Out().Write(absl::StrCat("consumer: ", consumer.status().ToString()));
    return 1;
  }
  Out().Write("READY");
  WaitForShutdown(shutdown, absl::Seconds(60));
  absl::Status stopped = (*consumer)->Stop(absl::Seconds(5));
  Out().Write(absl::StrCat("STOPPED ", stopped.ToString()));
  return 0;
}

}  // namespace
}  // namespace natsgw::fault_child

int main(int argc, char** argv) {
  using namespace natsgw::fault_child;  // NOLINT(build/namespaces)
  if (argc < 2) {
    Out().Write("usage: fault_child produce|consume --flag=value ...");
    return 2;
  }
  const std::string role = argv[1];
  const auto flags = ParseFlags(argc, argv);
  if (role == "produce") return Produce(flags);
  if (role == "consume") return Consume(flags);
  Out().Write(absl::StrCat("unknown role '", role, "'"));
  return 2;
}
