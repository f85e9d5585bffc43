#include "natsgw/stream_publisher.h"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "call_context.h"
#include "jetstream_impl.h"
#include "metrics.h"
#include "natsgw/message_id.h"
#include "natsgw/service_error.h"
#include "natsgw/status_macros.h"
#include "natsgw/trace_sampling.h"
#include "natsgw/validation.h"
#include "nlohmann/json.hpp"
#include "random.h"
#include "scheduler.h"

namespace natsgw {
namespace {

using Json = nlohmann::json;

// Field `key` of `object` if present with the expected JSON type, else
// `fallback`: the ack comes from whoever answers on the subject, and
// nlohmann's value() throws on a mistyped field.
int IntField(const Json& object, const char* key, int fallback) {
  const auto it = object.find(key);
  return it != object.end() && it->is_number_integer() ? it->get<int>()
                                                       : fallback;
}
uint64_t UnsignedField(const Json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_number_unsigned() ? it->get<uint64_t>()
                                                        : 0;
}
std::string StringField(const Json& object, const char* key,
                        std::string fallback) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>()
                                               : fallback;
}
bool BoolField(const Json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

// The stream's answer to one attempt: a PublishAck, or the status the
// stream's error maps to.
absl::StatusOr<PublishAck> ParseAck(const Message& reply,
                                    absl::string_view subject) {
  const Json j = Json::parse(reply.data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::UnknownError(absl::StrCat(
        "publishing to '", subject,
        "': the reply is not a JetStream acknowledgement (is the subject "
        "served by a responder instead of captured by a stream?)"));
  }
  if (const auto e = j.find("error"); e != j.end() && e->is_object()) {
    const int code = IntField(*e, "code", 0);
    const int err_code = IntField(*e, "err_code", 0);
    const std::string text = StringField(*e, "description", "?");
    const std::string message = absl::StrCat(
        "publishing to '", subject, "': the stream refused it: ", text,
        " (JetStream error ", err_code, ")");
    if (code == 503) return absl::UnavailableError(message);
    // What the publisher can add to the server's description.
    const absl::string_view hint =
        err_code == JSStreamNotMatchErr
            ? "; the subject is captured by another stream than the "
              "publisher's"
        : err_code == JSStreamMessageExceedsMaximumErr
            ? "; the message exceeds the stream's max_msg_size"
            : "";
    if (std::optional<absl::StatusCode> mapped =
            internal::StatusCodeForJetStreamError(err_code)) {
      return absl::Status(*mapped, absl::StrCat(message, hint));
    }
    if (code == 400) return absl::FailedPreconditionError(message);
    return absl::UnknownError(message);
  }
  PublishAck ack;
  ack.stream = StringField(j, "stream", "");
  ack.sequence = UnsignedField(j, "seq");
  ack.duplicate = BoolField(j, "duplicate");
  if (ack.stream.empty() || ack.sequence == 0) {
    return absl::UnknownError(absl::StrCat(
        "publishing to '", subject,
        "': malformed JetStream ack: ", reply.data.substr(0, 200)));
  }
  return ack;
}

}  // namespace

absl::Duration StreamPublishRetryBudget(const StreamPublisherOptions& o) {
  absl::Duration budget = o.attempt_timeout * o.retry.max_attempts;
  for (int retry = 1; retry < o.retry.max_attempts; ++retry) {
    budget += BackoffDelay(o.retry, retry, /*random01=*/1.0);
  }
  return budget;
}

class StreamPublisher::Impl {
 public:
  Impl(JetStream& js, StreamPublisherOptions options,
       std::shared_ptr<internal::JetStreamMetrics> metrics)
      : conn_(js.connection()),
        options_(std::move(options)),
        metrics_(std::move(metrics)),
        stored_(metrics_->published->Add(
            {{"stream", options_.stream}, {"result", "stored"}})),
        duplicate_(metrics_->published->Add(
            {{"stream", options_.stream}, {"result", "duplicate"}})),
        failed_(metrics_->published->Add(
            {{"stream", options_.stream}, {"result", "failed"}})),
        retries_(metrics_->publish_retries->Add({{"stream", options_.stream}})),
        duration_(metrics_->publish_duration->Add({{"stream", options_.stream}},
                                                  internal::LatencyBuckets())),
        pending_gauge_(
            metrics_->publish_pending->Add({{"stream", options_.stream}})) {}

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closing_ = true;
      cv_.notify_all();
    }
    WaitForAcks(absl::InfiniteDuration()).IgnoreError();
    scheduler_.Stop();
  }

  const StreamPublisherOptions& options() const { return options_; }

  // One publish, whichever way it is driven.
  struct Op {
    std::string subject;
    // Asynchronous publishes only (their retries are sent from other
    // threads); a blocking publish sends the caller's bytes.
    std::string data;
    RequestOptions request;
    // Guards `sent`, which the thread sending the first attempt writes
    // while that attempt's reply may already be read on another thread.
    std::shared_ptr<std::mutex> sent_mu = std::make_shared<std::mutex>();
    SendInfo sent;
    int attempts = 0;
    absl::Time start;
    // The caller's inherited deadline (inside a handler), if any.
    std::optional<absl::Time> deadline;
    AckCallback done;  // async only
    // The PRODUCER span of the whole publish (StartSpan), ended by Finish;
    // each attempt's request is a CLIENT span, its child.
    internal::Span span;
    // Whether `request.trace` is a root this publisher made (StartSpan).
    bool new_root = false;
  };

  absl::StatusOr<Op> Prepare(absl::string_view subject,
                             const StreamPublishOptions& o) const {
    if (!o.reply_to.empty()) {
      return absl::InvalidArgumentError(
          "StreamPublishOptions.reply_to must be empty: a JetStream publish "
          "receives its ack on natsgw's own inbox");
    }
    Op op;
    op.subject = std::string(subject);
    op.start = absl::Now();
    op.deadline = internal::CurrentDeadline();
    RequestOptions& r = op.request;
    r.headers = o.headers;
    op.sent.sent_at = op.start;
    r.metric_subject = o.metric_subject;
    r.message_id = o.message_id ? *o.message_id : NewMessageId();
    if (absl::Status s = ValidateMessageId(*r.message_id); !s.ok()) return s;
    // Every attempt continues one trace (a new span each).
    TraceChoice choice =
        ChooseTrace(o.trace, conn_.options().trace_sample_ratio);
    r.trace = choice.trace;
    r.trace_is_new_root =
        choice.generated ||
        (o.trace_is_new_root && o.trace.has_value() && o.trace->valid());
    op.new_root = choice.generated;
    op.sent.trace = r.trace->Child();
    op.sent.message_id = MessageId(*r.message_id);
    // Set after the caller's headers were validated by the send: these are
    // ours. A caller setting them too would send two values.
    for (absl::string_view key :
         {"Nats-Expected-Stream", "Nats-Expected-Last-Sequence",
          "Nats-Expected-Last-Subject-Sequence", "Nats-Expected-Last-Msg-Id"}) {
      if (r.headers.Contains(key)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "header ", key,
            " is set by StreamPublisher; use StreamPublisherOptions::stream "
            "or StreamPublishOptions::expected_*"));
      }
    }
    r.headers.Add("Nats-Expected-Stream", options_.stream);
    if (o.expected_last_sequence) {
      r.headers.Add("Nats-Expected-Last-Sequence",
                    absl::StrCat(*o.expected_last_sequence));
    }
    if (o.expected_last_subject_sequence) {
      r.headers.Add("Nats-Expected-Last-Subject-Sequence",
                    absl::StrCat(*o.expected_last_subject_sequence));
    }
    if (o.expected_last_message_id) {
      NATSGW_RETURN_IF_ERROR(ValidateHeaderValue(*o.expected_last_message_id));
      r.headers.Add("Nats-Expected-Last-Msg-Id", *o.expected_last_message_id);
    }
    return op;
  }

  // Starts op's PRODUCER span, once the publish is accepted, and makes the
  // attempts its children.
  void StartSpan(Op& op, const StreamPublishOptions& o,
                 size_t data_size) const {
    const std::shared_ptr<SpanSink>& sink = conn_.impl().span_sink();
    RequestOptions& r = op.request;
    if (!internal::SpanWanted(sink.get(), *r.trace)) return;
    // A root made here is this span's own context; anything else is its
    // parent (unless the caller says it is a new root of its own).
    const TraceContext producer = op.new_root ? *r.trace : r.trace->Child();
    std::optional<TraceContext::SpanId> parent;
    if (!r.trace_is_new_root) parent = r.trace->span_id();
    op.span = internal::Span::Start(
        sink, SpanKind::kProducer,
        internal::MessagingSpanName("publish", op.subject, o.metric_subject),
        producer, parent, op.start);
    internal::SetMessagingAttributes(op.span, "send", "publish", op.subject,
                                     o.metric_subject);
    op.span.SetString(span_attributes::kMessagingMessageId, *r.message_id);
    op.span.SetInt(span_attributes::kMessagingMessageBodySize,
                   static_cast<int64_t>(data_size));
    op.span.SetString(span_attributes::kNatsJetStreamStream, options_.stream);
    conn_.impl().SetClientAttributes(op.span);
    op.span.ReportStart();
    r.trace = producer;
    r.trace_is_new_root = false;
  }

  // The attempt's timeout, or zero if the caller's deadline has passed.
  absl::Duration AttemptTimeout(const Op& op) const {
    absl::Duration t = options_.attempt_timeout;
    if (op.deadline) t = std::min(t, *op.deadline - absl::Now());
    return t;
  }

  // Whether a failed attempt is tried again, and after what pause.
  std::optional<absl::Duration> RetryAfter(const Op& op,
                                           const absl::Status& status) const {
    if (op.attempts >= options_.retry.max_attempts) return std::nullopt;
    if (!conn_.impl().CheckOpen().ok()) return std::nullopt;
    const bool retryable = status.code() == absl::StatusCode::kDeadlineExceeded
                               ? !op.deadline || absl::Now() < *op.deadline
                               : options_.retry.IsRetryable(status.code());
    if (!retryable) return std::nullopt;
    const absl::Duration pause =
        BackoffDelay(options_.retry, op.attempts, internal::Random01());
    if (op.deadline && absl::Now() + pause >= *op.deadline) return std::nullopt;
    return pause;
  }

  // The attempt's outcome: the reply read as an ack.
  static absl::StatusOr<PublishAck> ReadReply(const Op& op,
                                              absl::StatusOr<Message> reply) {
    if (!reply.ok()) return reply.status();
    return ParseAck(*reply, op.subject);
  }

  absl::StatusOr<PublishAck> Finish(Op& op, absl::StatusOr<PublishAck> ack) {
    duration_.Observe(internal::Seconds(absl::Now() - op.start));
    if (op.span.recording()) {
      op.span.SetInt(span_attributes::kNatsJetStreamAttempts, op.attempts);
      if (ack.ok()) {
        op.span.SetInt(span_attributes::kNatsJetStreamSequence,
                       static_cast<int64_t>(ack->sequence));
        op.span.SetBool(span_attributes::kNatsJetStreamDuplicate,
                        ack->duplicate);
      }
      op.span.SetStatus(ack.status());
      op.span.End();
    }
    if (!ack.ok()) {
      failed_.Increment();
      std::string message(ack.status().message());
      if (op.attempts > 1) {
        absl::StrAppend(&message, " (after ", op.attempts, " attempts)");
      }
      std::lock_guard<std::mutex> lock(*op.sent_mu);
      return WithTraceId(absl::Status(ack.status().code(), message),
                         op.sent.trace.TraceIdHex());
    }
    (ack->duplicate ? duplicate_ : stored_).Increment();
    {
      std::lock_guard<std::mutex> lock(*op.sent_mu);
      ack->sent = op.sent;
    }
    ack->attempts = op.attempts;
    return ack;
  }

  absl::StatusOr<PublishAck> Publish(absl::string_view subject,
                                     absl::string_view data,
                                     const StreamPublishOptions& o) {
    absl::StatusOr<Op> prepared = Prepare(subject, o);
    if (!prepared.ok()) {
      // Refused before sending (a bad message ID or header): a failed
      // publish like any other, which Finish() would count.
      failed_.Increment();
      return prepared.status();
    }
    Op& op = *prepared;
    StartSpan(op, o, data.size());
    for (;;) {
      ++op.attempts;
      std::optional<SendInfo> sent;
      absl::StatusOr<PublishAck> ack;
      const absl::Duration timeout = AttemptTimeout(op);
      if (timeout <= absl::ZeroDuration()) {
        ack = absl::DeadlineExceededError(absl::StrCat(
            "publishing to '", op.subject,
            "': the deadline of the request being handled has passed"));
      } else {
        ack = ReadReply(
            op, conn_.Request(op.subject, data, timeout, op.request, &sent));
      }
      if (sent && op.attempts == 1) op.sent = *sent;
      if (ack.ok()) return Finish(op, std::move(ack));
      // Refused before anything was sent: no attempt will do better.
      if (!sent && absl::IsInvalidArgument(ack.status())) {
        return Finish(op, std::move(ack));
      }
      std::optional<absl::Duration> pause = RetryAfter(op, ack.status());
      if (!pause) return Finish(op, std::move(ack));
      retries_.Increment();
      std::this_thread::sleep_for(absl::ToChronoNanoseconds(*pause));
    }
  }

  absl::Status PublishAsync(absl::string_view subject, absl::string_view data,
                            const StreamPublishOptions& o, AckCallback done) {
    absl::Status accepted = StartAsync(subject, data, o, std::move(done));
    // A publish refused here never reaches Finish() (its callback is not
    // called), so it is counted as failed here.
    if (!accepted.ok()) failed_.Increment();
    return accepted;
  }

  // PublishAsync up to the first attempt: an error means nothing was sent
  // and `done` will not be called.
  absl::Status StartAsync(absl::string_view subject, absl::string_view data,
                          const StreamPublishOptions& o, AckCallback done) {
    if (!done) {
      return absl::InvalidArgumentError("PublishAsync: callback is empty");
    }
    NATSGW_ASSIGN_OR_RETURN(Op prepared, Prepare(subject, o));
    // The send checks it too, but only after waiting for room: bad input is
    // refused at once.
    NATSGW_RETURN_IF_ERROR(ValidatePublishSubject(subject));
    prepared.data = std::string(data);
    {
      std::unique_lock<std::mutex> lock(mu_);
      const bool room = cv_.wait_for(
          lock, absl::ToChronoNanoseconds(options_.pending_wait),
          [this] { return closing_ || pending_ < options_.max_pending; });
      if (closing_) {
        return absl::UnavailableError("the stream publisher is closing");
      }
      if (!room) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "publishing to '", subject, "': ", options_.max_pending,
            " asynchronous publishes to stream \"", options_.stream,
            "\" stayed unacknowledged for ",
            absl::FormatDuration(options_.pending_wait),
            " (StreamPublisherOptions::max_pending)"));
      }
      ++pending_;
    }
    pending_gauge_.Increment();
    auto op = std::make_shared<Op>(std::move(prepared));
    op->done = std::move(done);
    StartSpan(*op, o, data.size());
    // The first attempt is sent from the caller's thread so that a publish
    // rejected outright is reported here, with nothing sent.
    ++op->attempts;
    absl::StatusOr<SendInfo> sent = SendAttempt(op);
    if (!sent.ok()) {
      if (absl::IsInvalidArgument(sent.status())) {
        op->span.SetStatus(sent.status());
        op->span.End();
        Release();
        return sent.status();
      }
      // E.g. not connected right now: retried like a lost ack.
      OnAttempt(op, sent.status());
    }
    return absl::OkStatus();
  }

  absl::StatusOr<SendInfo> SendAttempt(const std::shared_ptr<Op>& op) {
    const absl::Duration timeout = AttemptTimeout(*op);
    if (timeout <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat(
          "publishing to '", op->subject,
          "': the deadline of the request being handled has passed"));
    }
    // Held until `sent` is recorded: the reply handler's Finish waits for
    // it. RequestAsync never runs its callback on this thread.
    std::lock_guard<std::mutex> lock(*op->sent_mu);
    absl::StatusOr<SendInfo> sent =
        conn_.RequestAsync(op->subject, op->data, timeout, op->request,
                           [this, op](absl::StatusOr<Message> reply) {
                             OnAttempt(op, ReadReply(*op, std::move(reply)));
                           });
    if (sent.ok() && op->attempts == 1) op->sent = *sent;
    return sent;
  }

  // Runs on a reply, timer or retry thread.
  void OnAttempt(const std::shared_ptr<Op>& op,
                 absl::StatusOr<PublishAck> ack) {
    if (!ack.ok()) {
      if (std::optional<absl::Duration> pause = RetryAfter(*op, ack.status())) {
        retries_.Increment();
        const bool scheduled =
            scheduler_.RunAt(absl::Now() + *pause, [this, op] { Retry(op); });
        if (scheduled) return;
      }
    }
    Complete(op, Finish(*op, std::move(ack)));
  }

  void Retry(const std::shared_ptr<Op>& op) {
    ++op->attempts;
    absl::StatusOr<SendInfo> sent = SendAttempt(op);
    if (!sent.ok()) OnAttempt(op, sent.status());
  }

  void Complete(const std::shared_ptr<Op>& op,
                absl::StatusOr<PublishAck> result) {
    AckCallback done = std::move(op->done);
    done(std::move(result));
    Release();
  }

  void Release() {
    pending_gauge_.Decrement();
    std::lock_guard<std::mutex> lock(mu_);
    --pending_;
    cv_.notify_all();
  }

  absl::Status WaitForAcks(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    auto drained = [this] { return pending_ == 0; };
    if (timeout == absl::InfiniteDuration()) {
      cv_.wait(lock, drained);
    } else if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                             drained)) {
      return absl::DeadlineExceededError(absl::StrCat(
          pending_, " asynchronous publishes to stream \"", options_.stream,
          "\" still await their ack after ", absl::FormatDuration(timeout)));
    }
    return absl::OkStatus();
  }

  size_t pending() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pending_;
  }

 private:
  Connection& conn_;
  const StreamPublisherOptions options_;
  const std::shared_ptr<internal::JetStreamMetrics> metrics_;
  prometheus::Counter& stored_;
  prometheus::Counter& duplicate_;
  prometheus::Counter& failed_;
  prometheus::Counter& retries_;
  prometheus::Histogram& duration_;
  prometheus::Gauge& pending_gauge_;
  internal::Scheduler scheduler_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
};

absl::StatusOr<std::unique_ptr<StreamPublisher>> StreamPublisher::Create(
    JetStream& js, StreamPublisherOptions options) {
  NATSGW_RETURN_IF_ERROR(ValidateJetStreamName(options.stream, "stream name"));
  if (options.attempt_timeout < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError(
        "StreamPublisherOptions::attempt_timeout must be at least 1ms");
  }
  NATSGW_RETURN_IF_ERROR(ValidateRetryPolicy(options.retry));
  if (options.max_pending < 1) {
    return absl::InvalidArgumentError(
        "StreamPublisherOptions::max_pending must be at least 1");
  }
  if (options.pending_wait < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "StreamPublisherOptions::pending_wait must not be negative");
  }
  NATSGW_ASSIGN_OR_RETURN(StreamState stream, js.GetStream(options.stream));
  const absl::Duration budget = StreamPublishRetryBudget(options);
  if (budget >= stream.config.duplicate_window) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the publisher's worst-case retry budget (",
        absl::FormatDuration(budget), " = ", options.retry.max_attempts,
        " attempts x ", absl::FormatDuration(options.attempt_timeout),
        " + backoffs) is not shorter than stream \"", options.stream,
        "\"'s duplicate window (",
        absl::FormatDuration(stream.config.duplicate_window),
        "): a late retry could be stored twice; lower max_attempts, "
        "attempt_timeout or the backoffs, or widen the window"));
  }
  NATSGW_ASSIGN_OR_RETURN(
      std::shared_ptr<internal::JetStreamMetrics> metrics,
      internal::JetStreamMetrics::Create(*js.connection().registry()));
  try {
    auto impl =
        std::make_unique<Impl>(js, std::move(options), std::move(metrics));
    return std::unique_ptr<StreamPublisher>(
        new StreamPublisher(std::move(impl)));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("registering JetStream metrics: ", e.what()));
  }
}

StreamPublisher::StreamPublisher(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
StreamPublisher::~StreamPublisher() = default;

absl::StatusOr<PublishAck> StreamPublisher::Publish(
    absl::string_view subject, absl::string_view data,
    const StreamPublishOptions& options) {
  return impl_->Publish(subject, data, options);
}

absl::Status StreamPublisher::PublishAsync(absl::string_view subject,
                                           absl::string_view data,
                                           const StreamPublishOptions& options,
                                           AckCallback done) {
  return impl_->PublishAsync(subject, data, options, std::move(done));
}

absl::Status StreamPublisher::WaitForAcks(absl::Duration timeout) {
  return impl_->WaitForAcks(timeout);
}

size_t StreamPublisher::pending() const { return impl_->pending(); }

absl::Duration StreamPublisher::RetryBudget() const {
  return StreamPublishRetryBudget(impl_->options());
}

const StreamPublisherOptions& StreamPublisher::options() const {
  return impl_->options();
}

}  // namespace natsgw
