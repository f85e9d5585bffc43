#include "natsgw/stream_consumer.h"

#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "jetstream_impl.h"
#include "metrics.h"
#include "nats_message.h"
#include "nats_status.h"
#include "natsgw/status_macros.h"
#include "natsgw/stream_publisher.h"
#include "natsgw/task_queue.h"
#include "natsgw/validation.h"
#include "natsgw/wire_headers.h"
#include "random.h"
#include "scheduler.h"

namespace natsgw {
namespace {

// Dead-Letter-Reason is cut to this many bytes.
constexpr size_t kMaxReasonBytes = 512;

struct SubscriptionDeleter {
  void operator()(natsSubscription* s) const { natsSubscription_Destroy(s); }
};
using SubscriptionPtr = std::unique_ptr<natsSubscription, SubscriptionDeleter>;

// What the reply subject of a JetStream delivery says about it:
//   $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>
// or, from servers that add a domain and account hash (2.9+ may),
//   $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.
//       <ns>.<pending>.<token>
struct AckMetadata {
  std::string stream;
  std::string consumer;
  uint64_t delivered = 0;
  uint64_t stream_seq = 0;
  uint64_t consumer_seq = 0;
  int64_t timestamp_ns = 0;
  uint64_t pending = 0;
};

bool ParseAckSubject(absl::string_view reply, AckMetadata* out) {
  std::vector<absl::string_view> t = absl::StrSplit(reply, '.');
  if (t.size() < 9 || t[0] != "$JS" || t[1] != "ACK") return false;
  size_t base = 2;
  if (t.size() >= 11) base = 4;  // domain and account hash first
  if (t.size() < base + 7) return false;
  out->stream = std::string(t[base]);
  out->consumer = std::string(t[base + 1]);
  return absl::SimpleAtoi(t[base + 2], &out->delivered) &&
         absl::SimpleAtoi(t[base + 3], &out->stream_seq) &&
         absl::SimpleAtoi(t[base + 4], &out->consumer_seq) &&
         absl::SimpleAtoi(t[base + 5], &out->timestamp_ns) &&
         absl::SimpleAtoi(t[base + 6], &out->pending);
}

}  // namespace

// Sends acknowledgements for one delivery.
//
// Thread-safety: thread-safe (nats.c publishes are).
class Delivery::Control {
 public:
  Control(natsConnection* nc, std::string reply, prometheus::Counter* beats,
          std::atomic<int64_t>* beat_count)
      : nc_(nc),
        reply_(std::move(reply)),
        beats_(beats),
        beat_count_(beat_count) {}

  absl::Status Send(absl::string_view body, absl::string_view what) {
    natsStatus s = natsConnection_Publish(nc_, reply_.c_str(), body.data(),
                                          static_cast<int>(body.size()));
    if (s != NATS_OK) {
      return internal::NatsError(
          s, absl::StrCat("sending ", what, " for a JetStream delivery"));
    }
    return absl::OkStatus();
  }

  absl::Status InProgress() {
    NATSGW_RETURN_IF_ERROR(Send("+WPI", "an in-progress heartbeat"));
    beats_->Increment();
    beat_count_->fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }

 private:
  natsConnection* const nc_;
  const std::string reply_;
  prometheus::Counter* const beats_;
  std::atomic<int64_t>* const beat_count_;
};

Delivery::Delivery(Message message, std::string stream, std::string consumer,
                   uint64_t delivery_count, uint64_t stream_sequence,
                   uint64_t consumer_sequence, uint64_t pending,
                   absl::Time stored_at, std::shared_ptr<Control> control)
    : message_(std::move(message)),
      stream_(std::move(stream)),
      consumer_(std::move(consumer)),
      delivery_count_(delivery_count),
      stream_sequence_(stream_sequence),
      consumer_sequence_(consumer_sequence),
      pending_(pending),
      stored_at_(stored_at),
      control_(std::move(control)) {}

absl::Status Delivery::InProgress() const { return control_->InProgress(); }

DeliveryOutcome::DeliveryOutcome(absl::Status status)
    : kind_(status.ok() ? Kind::kAck : Kind::kNak),
      reason_(std::move(status)),
      from_status_(true) {}

absl::Duration StreamConsumer::RequiredIdempotencyTtl(
    const StreamConsumerOptions& o) {
  absl::Duration ttl = o.consumer.ack_wait * o.max_deliveries;
  for (int n = 1; n < o.max_deliveries; ++n) {
    ttl += BackoffDelay(o.nak_backoff, n, /*random01=*/1.0);
  }
  return ttl;
}

class StreamConsumer::Impl {
 public:
  Impl(JetStream& js, StreamConsumerOptions options, DeliveryHandler handler,
       std::shared_ptr<internal::JetStreamMetrics> metrics)
      : js_(js),
        conn_(js.connection()),
        nc_(js.impl().conn_impl().rpc_connection()),
        options_(std::move(options)),
        handler_(std::move(handler)),
        metrics_(std::move(metrics)),
        labels_({{"stream", options_.consumer.stream},
                 {"consumer", options_.consumer.durable}}),
        ack_(Outcome("ack")),
        nak_(Outcome("nak")),
        term_(Outcome("term")),
        dead_letter_(Outcome("dead_letter")),
        skipped_(Outcome("skipped_duplicate")),
        redeliveries_(metrics_->redeliveries->Add(labels_)),
        dead_lettered_(metrics_->dead_lettered->Add(labels_)),
        beats_(metrics_->in_progress->Add(labels_)),
        handler_duration_(metrics_->handler_duration->Add(
            labels_, internal::LatencyBuckets())),
        delivery_latency_(metrics_->delivery_latency->Add(
            labels_, internal::LatencyBuckets())),
        heartbeat_(options_.in_progress_interval > absl::ZeroDuration()
                       ? options_.in_progress_interval
                       : options_.consumer.ack_wait / 3) {}

  ~Impl() { Stop(absl::Seconds(30)).IgnoreError(); }

  absl::Status Start(JetStream& js) {
    if (!options_.dead_letter_stream.empty()) {
      StreamPublisherOptions dlq;
      dlq.stream = options_.dead_letter_stream;
      NATSGW_ASSIGN_OR_RETURN(dead_letters_,
                              StreamPublisher::Create(js, std::move(dlq)));
    }
    TaskQueueOptions q;
    q.name = absl::StrCat("js:", options_.consumer.stream, ":",
                          options_.consumer.durable);
    q.workers = options_.workers;
    // By default no waiting room: a message is pulled only for an idle
    // worker.
    q.capacity = static_cast<size_t>(options_.prefetch);
    q.overflow = OverflowPolicy::kBlock;
    q.block_timeout = absl::InfiniteDuration();
    q.registry = conn_.registry();
    q.logger = conn_.options().logger;
    NATSGW_ASSIGN_OR_RETURN(queue_, TaskQueue::Create(std::move(q)));

    char* inbox = nullptr;
    natsStatus s = natsInbox_Create(&inbox);
    if (s != NATS_OK) return internal::NatsError(s, "creating a pull inbox");
    inbox_ = inbox;
    natsInbox_Destroy(inbox);
    natsSubscription* sub = nullptr;
    s = natsConnection_SubscribeSync(&sub, nc_, inbox_.c_str());
    if (s != NATS_OK) {
      return internal::NatsError(s, "subscribing the pull inbox");
    }
    sub_.reset(sub);
    // Deliveries are bounded by the pulls, not by nats.c's pending limits.
    natsSubscription_SetPendingLimits(sub, -1, -1);
    next_subject_ =
        absl::StrCat("$JS.API.CONSUMER.MSG.NEXT.", options_.consumer.stream,
                     ".", options_.consumer.durable);
    puller_ = std::thread([this] { PullLoop(); });
    return absl::OkStatus();
  }

  absl::Status Stop(absl::Duration timeout) {
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (stopped_) return stop_status_;
    stopped_ = true;
    const absl::Time deadline = absl::Now() + timeout;
    stopping_.store(true);
    absl::Status status = absl::OkStatus();
    if (queue_ != nullptr) {
      // Intake stops now: what the pull in progress still brings is handed
      // back (Nak) at once, while accepted work runs until the deadline.
      status = queue_->Shutdown(
          std::max(deadline - absl::Now(), absl::ZeroDuration()));
      if (!status.ok()) {
        status = absl::DeadlineExceededError(absl::StrCat(
            "consumer \"", options_.consumer.durable, "\": ", status.message(),
            "; they were handed back to the stream (Nak) for redelivery"));
      }
    }
    // The pull in progress ends within fetch_wait (plus a margin).
    if (puller_.joinable()) puller_.join();
    heartbeats_.Stop();
    if (conn_.state() == ConnectionState::kConnected) {
      // Acks, naks, terms and dead letters published without a stream are
      // out before the caller closes the connection.
      absl::Status flushed = conn_.Flush(absl::Seconds(5));
      if (!flushed.ok() && status.ok()) status = flushed;
    }
    if (sub_ != nullptr) natsSubscription_Unsubscribe(sub_.get());
    sub_.reset();
    if (dead_letters_ != nullptr) {
      dead_letters_->WaitForAcks(absl::Seconds(5)).IgnoreError();
    }
    stop_status_ = status;
    return status;
  }

  StreamConsumerStats stats() const {
    StreamConsumerStats s;
    s.delivered = delivered_.load();
    s.redelivered = redelivered_.load();
    s.acked = acked_.load();
    s.naked = naked_.load();
    s.terminated = terminated_.load();
    s.dead_lettered = dead_lettered_count_.load();
    s.skipped_duplicates = skipped_count_.load();
    s.in_progress = beat_count_.load();
    return s;
  }

 private:
  prometheus::Counter& Outcome(absl::string_view outcome) {
    std::map<std::string, std::string> labels = labels_;
    labels["outcome"] = std::string(outcome);
    return metrics_->deliveries->Add(labels);
  }

  void Log(absl::LogSeverity severity, absl::string_view text) const {
    if (conn_.options().logger != nullptr) {
      conn_.options().logger->Log(
          severity, absl::StrCat("consumer \"", options_.consumer.durable,
                                 "\" on stream \"", options_.consumer.stream,
                                 "\": ", text));
    }
  }

  void PullLoop() {
    while (!stopping_.load()) {
      const size_t free = queue_->WaitForVacancy(absl::Milliseconds(200));
      if (free == 0) continue;
      Pull(std::min<size_t>(free, static_cast<size_t>(options_.max_batch)));
    }
  }

  // One pull request for `batch` messages; returns when the server has
  // delivered them all or says the request ended (expired, no messages).
  void Pull(size_t batch) {
    const std::string request = absl::StrCat(
        "{\"batch\":", batch,
        ",\"expires\":", absl::ToInt64Nanoseconds(options_.fetch_wait), "}");
    natsStatus s = natsConnection_PublishRequest(
        nc_, next_subject_.c_str(), inbox_.c_str(), request.data(),
        static_cast<int>(request.size()));
    if (s != NATS_OK) {
      // Not connected (or closed): wait for nats.c to reconnect.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      return;
    }
    // The server ends the request after fetch_wait (408); the margin covers
    // a lost status message.
    const absl::Time give_up = absl::Now() + options_.fetch_wait +
                               std::max(options_.fetch_wait, absl::Seconds(1));
    size_t received = 0;
    while (received < batch && absl::Now() < give_up) {
      natsMsg* raw = nullptr;
      s = natsSubscription_NextMsg(&raw, sub_.get(), 100);
      if (s == NATS_TIMEOUT) continue;
      if (s != NATS_OK) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return;
      }
      internal::NatsMsgPtr msg(raw);
      const char* reply = natsMsg_GetReply(msg.get());
      AckMetadata meta;
      if (reply != nullptr && ParseAckSubject(reply, &meta)) {
        // A stored message, whatever its headers say: the server's own
        // status messages carry no ack subject, while a message a plain
        // client stored with a forged "Status: 404" header does, and taking
        // it for a status would leave it unhandled and redelivered forever.
        ++received;
        Dispatch(std::move(msg), reply, meta);
        continue;
      }
      const char* status = nullptr;
      if (natsMsgHeader_Get(msg.get(), "Status", &status) == NATS_OK &&
          status != nullptr) {
        const absl::string_view code(status);
        // 100: idle heartbeat; 404 (no messages) and 408 (expired): this
        // request is over, normally.
        if (code == "100") continue;
        if (code == "404" || code == "408") {
          last_pull_problem_.clear();
          return;
        }
        // Anything else (409: consumer deleted, leader changed, limits) ends
        // the request too, but pulling again at once would only repeat it.
        const char* description = nullptr;
        natsMsgHeader_Get(msg.get(), "Description", &description);
        const std::string problem =
            absl::StrCat(code, " ", description != nullptr ? description : "");
        if (problem != last_pull_problem_) {
          Log(absl::LogSeverity::kWarning,
              absl::StrCat("pull request ended with status ", problem,
                           "; pulling again every 250ms"));
          last_pull_problem_ = problem;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
        return;
      }
      Log(absl::LogSeverity::kWarning,
          absl::StrCat("ignored a message on the pull inbox without a "
                       "JetStream ack subject (subject ",
                       natsMsg_GetSubject(msg.get()), ")"));
    }
    if (received < batch && !stopping_.load()) {
      // The server always ends a pull (408 when it expires); silence means
      // nobody took the request: no JetStream, or no such consumer.
      absl::StatusOr<ConsumerState> state =
          js_.GetConsumer(options_.consumer.stream, options_.consumer.durable);
      const std::string problem =
          state.ok() ? std::string()
                     : absl::StrCat("pull request unanswered: ",
                                    state.status().ToString());
      if (!problem.empty() && problem != last_pull_problem_) {
        Log(absl::LogSeverity::kWarning, problem);
      }
      last_pull_problem_ = problem;
    }
  }

  void Dispatch(internal::NatsMsgPtr msg, const char* reply,
                const AckMetadata& meta) {
    internal::TraceOrigin origin;
    Message m = internal::ReadNatsMsg(
        msg.get(), absl::Now(), conn_.options().trace_sample_ratio, &origin);
    auto control =
        std::make_shared<Delivery::Control>(nc_, reply, &beats_, &beat_count_);
    auto delivery = std::make_shared<Delivery>(
        std::move(m), meta.stream, meta.consumer, meta.delivered,
        meta.stream_seq, meta.consumer_seq, meta.pending,
        absl::FromUnixNanos(meta.timestamp_ns), control);
    msg.reset();
    Task task;
    task.run = [this, delivery, control] { Process(*delivery, control); };
    task.discard = [this, delivery, control](absl::Status why) {
      // Not started (stopping): back to the stream for another replica.
      Log(absl::LogSeverity::kInfo,
          absl::StrCat("handing back stream sequence ",
                       delivery->stream_sequence(), ": ", why.message()));
      Nak(*control, absl::ZeroDuration());
    };
    queue_->Submit(std::move(task)).IgnoreError();
  }

  // `outcome` is the natsgw_js_deliveries_total counter of what this ack
  // settles (ack_ or skipped_): each delivery is counted under exactly one
  // outcome, while Stats().acked counts every ack sent.
  void Ack(Delivery::Control& c, prometheus::Counter& outcome) {
    if (absl::Status s = c.Send("+ACK", "an ack"); !s.ok()) {
      Log(absl::LogSeverity::kWarning, s.ToString());
    }
    outcome.Increment();
    acked_.fetch_add(1);
  }

  void Nak(Delivery::Control& c, absl::Duration delay) {
    const std::string body =
        delay > absl::ZeroDuration()
            ? absl::StrCat("-NAK {\"delay\":", absl::ToInt64Nanoseconds(delay),
                           "}")
            : std::string("-NAK");
    if (absl::Status s = c.Send(body, "a nak"); !s.ok()) {
      Log(absl::LogSeverity::kWarning, s.ToString());
    }
    nak_.Increment();
    naked_.fetch_add(1);
  }

  // Like Ack(): `outcome` is term_ or dead_letter_.
  void Term(Delivery::Control& c, prometheus::Counter& outcome) {
    if (absl::Status s = c.Send("+TERM", "a term"); !s.ok()) {
      Log(absl::LogSeverity::kWarning, s.ToString());
    }
    outcome.Increment();
    terminated_.fetch_add(1);
  }

  absl::Duration Backoff(uint64_t delivery_count) const {
    return BackoffDelay(
        options_.nak_backoff,
        static_cast<int>(std::min<uint64_t>(delivery_count, 1000)),
        internal::Random01());
  }

  // Publishes the message to the dead-letter subject, then terminates it;
  // returns the outcome: "dead_letter", or "nak" if it could not be
  // published. `current`: the trace the dead letter continues.
  absl::string_view DeadLetter(const Delivery& d, Delivery::Control& c,
                               const absl::Status& reason,
                               const TraceContext& current) {
    Log(absl::LogSeverity::kWarning,
        absl::StrCat("dead letter: stream sequence ", d.stream_sequence(),
                     " (message ID ", d.message().message_id, ") after ",
                     d.delivery_count(), " deliveries: ", reason.ToString()));
    if (!options_.dead_letter_subject.empty()) {
      StreamPublishOptions p;
      p.trace = current;
      // The stored message need not follow natsgw's rules: a plain client
      // may have stored it with any message ID and headers. Whatever would
      // make the dead-letter publish itself invalid is left out, or the
      // message would be redelivered and dead-lettered again forever.
      const std::string& id = d.message().message_id;
      if (!id.empty() && ValidateMessageId(id).ok()) {
        // Dead-lettering the same message twice is de-duplicated.
        p.message_id = id;
      }
      for (const HeaderField& h : d.message().headers) {
        // natsgw's own headers are written anew; JetStream's Nats-* headers
        // (e.g. Nats-Expected-Stream) would make the dead-letter publish fail.
        if (IsReservedHeader(h.key) ||
            absl::StartsWithIgnoreCase(h.key, "Nats-") ||
            !ValidateHeaderKey(h.key).ok() ||
            !ValidateHeaderValue(h.value).ok()) {
          continue;
        }
        p.headers.Add(h.key, h.value);
      }
      Headers own;
      // A reason is arbitrary error text: made a valid header value (and
      // bounded), so it can never make the dead letter itself invalid.
      own.Add("Dead-Letter-Reason",
              SanitizeHeaderValue(reason.ToString(), kMaxReasonBytes));
      own.Add("Dead-Letter-Stream", d.stream());
      own.Add("Dead-Letter-Consumer", d.consumer());
      own.Add("Dead-Letter-Sequence", absl::StrCat(d.stream_sequence()));
      own.Add("Dead-Letter-Deliveries", absl::StrCat(d.delivery_count()));
      own.Add("Dead-Letter-Subject", d.message().subject);
      for (const HeaderField& h : own) p.headers.Add(h.key, h.value);
      // Valid one by one, the original headers may still break a rule
      // together (too many, or keys that are prefixes of each other or of
      // ours): then the dead letter carries only its own.
      if (!ValidateApplicationHeaders(p.headers).ok()) p.headers = own;
      p.metric_subject = options_.dead_letter_subject;
      absl::Status published =
          dead_letters_ != nullptr
              ? dead_letters_
                    ->Publish(options_.dead_letter_subject, d.message().data, p)
                    .status()
              : conn_.Publish(options_.dead_letter_subject, d.message().data, p)
                    .status();
      if (!published.ok()) {
        Log(absl::LogSeverity::kError,
            absl::StrCat("could not publish the dead letter to ",
                         options_.dead_letter_subject, ": ",
                         published.ToString(), "; redelivering it later"));
        Nak(c, Backoff(d.delivery_count()));
        return "nak";
      }
    }
    dead_lettered_.Increment();
    dead_lettered_count_.fetch_add(1);
    Term(c, dead_letter_);
    return "dead_letter";
  }

  // The CONSUMER span of one delivery (inert unless spans are wanted): a
  // child of the producer's span, linked to it, as for a subscription.
  internal::Span StartSpan(const Delivery& d) const {
    const Message& m = d.message();
    const std::shared_ptr<SpanSink>& sink = conn_.impl().span_sink();
    if (!internal::SpanWanted(sink.get(), m.trace)) return {};
    // The filter subject is the low-cardinality template; without one, the
    // stream stands for all its subjects.
    const std::string& destination = options_.consumer.filter_subject.empty()
                                         ? options_.consumer.stream
                                         : options_.consumer.filter_subject;
    std::optional<TraceContext::SpanId> parent;
    if (!m.trace_replaced) parent = m.trace.span_id();
    internal::Span span = internal::Span::Start(
        sink, SpanKind::kConsumer,
        internal::MessagingSpanName("process", m.subject, destination),
        m.trace_replaced ? m.trace : m.trace.Child(), parent);
    internal::SetMessagingAttributes(span, "process", "process", m.subject,
                                     destination);
    span.SetString(span_attributes::kMessagingConsumerGroupName,
                   options_.consumer.durable);
    if (!m.message_id.empty()) {
      span.SetString(span_attributes::kMessagingMessageId, m.message_id);
    }
    span.SetInt(span_attributes::kMessagingMessageBodySize,
                static_cast<int64_t>(m.data.size()));
    span.SetString(span_attributes::kNatsJetStreamStream, d.stream());
    span.SetString(span_attributes::kNatsJetStreamConsumer, d.consumer());
    span.SetInt(span_attributes::kNatsJetStreamSequence,
                static_cast<int64_t>(d.stream_sequence()));
    span.SetInt(span_attributes::kNatsJetStreamDeliveryCount,
                static_cast<int64_t>(d.delivery_count()));
    conn_.impl().SetClientAttributes(span);
    if (m.trace_replaced) {
      span.SetBool(span_attributes::kNatsTraceReplaced, true);
    } else {
      span.AddLink(m.trace);
    }
    span.ReportStart();
    return span;
  }

  void Process(const Delivery& d,
               const std::shared_ptr<Delivery::Control>& control) {
    internal::Span span = StartSpan(d);
    absl::Status reason;
    const absl::string_view outcome = Settle(d, control, span, reason);
    if (span.recording()) {
      span.SetString(span_attributes::kNatsJetStreamOutcome, outcome);
      span.SetStatus(reason);
      span.End();
    }
  }

  // Runs the handler for `d` (unless it is settled without) and settles the
  // delivery; returns the outcome (span_attributes::kNatsJetStreamOutcome)
  // and sets `reason` to why it was not acknowledged.
  absl::string_view Settle(const Delivery& d,
                           const std::shared_ptr<Delivery::Control>& control,
                           internal::Span& span, absl::Status& reason) {
    Delivery::Control& c = *control;
    const TraceContext& current =
        span.recording() ? span.context() : d.message().trace;
    delivered_.fetch_add(1);
    if (d.delivery_count() > 1) {
      redeliveries_.Increment();
      redelivered_.fetch_add(1);
    }
    delivery_latency_.Observe(internal::Seconds(
        std::max(absl::Now() - d.stored_at(), absl::ZeroDuration())));
    if (d.delivery_count() > static_cast<uint64_t>(options_.max_deliveries)) {
      reason = absl::FailedPreconditionError(absl::StrCat(
          "delivered ", d.delivery_count(),
          " times, more than max_deliveries (", options_.max_deliveries,
          "); its handler never acknowledged it"));
      return DeadLetter(d, c, reason, current);
    }
    const std::string& key = d.message().message_id;
    IdempotencyStore& store = *options_.idempotency;
    bool claimed = false;
    if (!key.empty()) {
      absl::StatusOr<ClaimResult> claim =
          store.Claim(key, options_.consumer.ack_wait);
      if (!claim.ok()) {
        // Without knowing whether it ran before, running it risks a second
        // side effect: try again later.
        Log(absl::LogSeverity::kWarning,
            absl::StrCat("idempotency store unavailable, redelivering later: ",
                         claim.status().ToString()));
        Nak(c, Backoff(d.delivery_count()));
        reason = claim.status();
        return "nak";
      }
      if (*claim == ClaimResult::kDone) {
        skipped_count_.fetch_add(1);
        Ack(c, skipped_);
        return "skipped_duplicate";
      }
      if (*claim == ClaimResult::kBusy) {
        Nak(c, options_.consumer.ack_wait);
        reason = absl::AbortedError(
            "another delivery of this message ID is being handled");
        return "nak";
      }
      claimed = true;
    }

    // Heartbeats while the handler runs.
    auto running = std::make_shared<std::atomic<bool>>(true);
    ScheduleHeartbeat(running, control);
    const absl::Time start = absl::Now();
    DeliveryOutcome outcome = RunHandler(d, current);
    running->store(false);
    handler_duration_.Observe(internal::Seconds(absl::Now() - start));

    DeliveryOutcome::Kind kind = outcome.kind();
    if (outcome.from_status() && !outcome.reason().ok() &&
        std::find(options_.permanent_codes.begin(),
                  options_.permanent_codes.end(),
                  outcome.reason().code()) != options_.permanent_codes.end()) {
      kind = DeliveryOutcome::Kind::kTerm;
    }
    switch (kind) {
      case DeliveryOutcome::Kind::kAck:
        if (claimed) {
          if (absl::Status s = store.Commit(key); !s.ok()) {
            // Acknowledged anyway: a redelivery would repeat the side
            // effect for certain, a lost key only if the message comes
            // again.
            Log(absl::LogSeverity::kWarning,
                absl::StrCat("could not record message ID ", key,
                             " as handled: ", s.ToString()));
          }
        }
        Ack(c, ack_);
        return "ack";
      case DeliveryOutcome::Kind::kNak:
        if (claimed) store.Release(key).IgnoreError();
        reason = outcome.reason();
        if (d.delivery_count() >=
            static_cast<uint64_t>(options_.max_deliveries)) {
          return DeadLetter(d, c, outcome.reason(), current);
        }
        Nak(c,
            outcome.delay() ? *outcome.delay() : Backoff(d.delivery_count()));
        return "nak";
      case DeliveryOutcome::Kind::kTerm:
        if (claimed) store.Release(key).IgnoreError();
        reason = outcome.reason();
        return DeadLetter(d, c, outcome.reason(), current);
    }
    return "ack";  // not reached: every kind is handled above
  }

  // `current`: the thread's trace while the handler runs.
  DeliveryOutcome RunHandler(const Delivery& d, const TraceContext& current) {
    ScopedTraceContext trace(current);
    try {
      return handler_(d);
    } catch (const std::exception& e) {
      return DeliveryOutcome::Nak(absl::InternalError(
          absl::StrCat("the handler threw an exception: ", e.what())));
    } catch (...) {
      return DeliveryOutcome::Nak(
          absl::InternalError("the handler threw a non-standard exception"));
    }
  }

  void ScheduleHeartbeat(std::shared_ptr<std::atomic<bool>> running,
                         std::shared_ptr<Delivery::Control> control) {
    heartbeats_.RunAt(
        absl::Now() + heartbeat_, [this, running, control]() mutable {
          if (!running->load()) return;
          control->InProgress().IgnoreError();
          ScheduleHeartbeat(std::move(running), std::move(control));
        });
  }

  JetStream& js_;
  Connection& conn_;
  natsConnection* const nc_;
  const StreamConsumerOptions options_;
  DeliveryHandler handler_;
  const std::shared_ptr<internal::JetStreamMetrics> metrics_;
  const std::map<std::string, std::string> labels_;
  prometheus::Counter& ack_;
  prometheus::Counter& nak_;
  prometheus::Counter& term_;
  prometheus::Counter& dead_letter_;
  prometheus::Counter& skipped_;
  prometheus::Counter& redeliveries_;
  prometheus::Counter& dead_lettered_;
  prometheus::Counter& beats_;
  prometheus::Histogram& handler_duration_;
  prometheus::Histogram& delivery_latency_;
  const absl::Duration heartbeat_;

  std::unique_ptr<StreamPublisher> dead_letters_;
  std::unique_ptr<TaskQueue> queue_;
  // Declared after the queue: heartbeats refer to deliveries the queue's
  // tasks own, and Stop() ends the queue first.
  internal::Scheduler heartbeats_;
  std::string inbox_;
  std::string next_subject_;
  SubscriptionPtr sub_;
  std::thread puller_;
  // The puller's last unusual pull status, so a lasting one is logged once.
  // Used by the puller thread only.
  std::string last_pull_problem_;
  std::atomic<bool> stopping_{false};

  std::mutex stop_mu_;
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
  absl::Status stop_status_ ABSL_GUARDED_BY(stop_mu_);

  std::atomic<int64_t> delivered_{0}, redelivered_{0}, acked_{0}, naked_{0},
      terminated_{0}, dead_lettered_count_{0}, skipped_count_{0},
      beat_count_{0};
};

namespace {

// The rules of StreamConsumer::Create's arguments; fills in the default
// idempotency store.
absl::Status CheckOptions(StreamConsumerOptions& options,
                          const DeliveryHandler& handler);

}  // namespace

absl::StatusOr<std::unique_ptr<StreamConsumer>> StreamConsumer::Create(
    JetStream& js, StreamConsumerOptions options, DeliveryHandler handler) {
  absl::Status valid = CheckOptions(options, handler);
  if (!valid.ok()) {
    // Refused before anything is asked of the server: counted like a
    // refused Subscribe, which is what starting a consumer is.
    js.connection().impl().metrics().RecordError(
        internal::Operation::kSubscribe, valid.code());
    return valid;
  }
  NATSGW_RETURN_IF_ERROR(js.EnsureConsumer(options.consumer).status());
  NATSGW_ASSIGN_OR_RETURN(
      std::shared_ptr<internal::JetStreamMetrics> metrics,
      internal::JetStreamMetrics::Create(*js.connection().registry()));
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(js, std::move(options), std::move(handler),
                                  std::move(metrics));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("registering JetStream metrics: ", e.what()));
  }
  NATSGW_RETURN_IF_ERROR(impl->Start(js));
  return std::unique_ptr<StreamConsumer>(new StreamConsumer(std::move(impl)));
}

namespace {

absl::Status CheckOptions(StreamConsumerOptions& options,
                          const DeliveryHandler& handler) {
  if (!handler) {
    return absl::InvalidArgumentError("StreamConsumer: handler is empty");
  }
  NATSGW_RETURN_IF_ERROR(ValidateConsumerConfig(options.consumer));
  if (options.workers < 1) {
    return absl::InvalidArgumentError(
        "StreamConsumerOptions::workers must be at least 1");
  }
  if (options.prefetch < 0) {
    return absl::InvalidArgumentError(
        "StreamConsumerOptions::prefetch must not be negative");
  }
  if (options.max_batch < 1) {
    return absl::InvalidArgumentError(
        "StreamConsumerOptions::max_batch must be at least 1");
  }
  if (options.fetch_wait < absl::Milliseconds(10)) {
    return absl::InvalidArgumentError(
        "StreamConsumerOptions::fetch_wait must be at least 10ms");
  }
  if (options.max_deliveries < 1) {
    return absl::InvalidArgumentError(
        "StreamConsumerOptions::max_deliveries must be at least 1");
  }
  if (options.consumer.max_deliver != -1 &&
      options.consumer.max_deliver <= options.max_deliveries) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ConsumerConfig::max_deliver (", options.consumer.max_deliver,
        ") must be -1 or above StreamConsumerOptions::max_deliveries (",
        options.max_deliveries,
        "): at the server's limit a message stops being delivered before "
        "natsgw can dead-letter it"));
  }
  if (options.in_progress_interval < absl::ZeroDuration() ||
      (options.in_progress_interval > absl::ZeroDuration() &&
       options.in_progress_interval >= options.consumer.ack_wait)) {
    return absl::InvalidArgumentError(
        "StreamConsumerOptions::in_progress_interval must be below "
        "ConsumerConfig::ack_wait (zero: ack_wait / 3)");
  }
  {
    RetryPolicy backoff = options.nak_backoff;
    backoff.max_attempts = 1;
    NATSGW_RETURN_IF_ERROR(ValidateRetryPolicy(backoff));
  }
  if (!options.dead_letter_subject.empty()) {
    NATSGW_RETURN_IF_ERROR(ValidatePublishSubject(options.dead_letter_subject));
  } else if (!options.dead_letter_stream.empty()) {
    return absl::InvalidArgumentError(
        "StreamConsumerOptions::dead_letter_stream needs a "
        "dead_letter_subject");
  }
  const absl::Duration required =
      StreamConsumer::RequiredIdempotencyTtl(options);
  if (options.idempotency == nullptr) {
    options.idempotency = std::make_shared<InMemoryIdempotencyStore>(
        std::max(required, absl::Minutes(10)));
  } else if (options.idempotency->ttl() < required) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the idempotency store keeps keys for ",
        absl::FormatDuration(options.idempotency->ttl()),
        ", less than a message can keep being redelivered (ack_wait ",
        absl::FormatDuration(options.consumer.ack_wait), " x ",
        options.max_deliveries,
        " deliveries + nak backoffs = ", absl::FormatDuration(required),
        "): a late redelivery would run its side effect again"));
  }
  return absl::OkStatus();
}

}  // namespace

StreamConsumer::StreamConsumer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
StreamConsumer::~StreamConsumer() = default;

absl::Status StreamConsumer::Stop(absl::Duration timeout) {
  return impl_->Stop(timeout);
}

StreamConsumerStats StreamConsumer::stats() const { return impl_->stats(); }

}  // namespace natsgw
