// natsgw/stream_consumer.h: at-least-once consumption from a JetStream
// durable pull consumer, with a worker pool, acknowledgements, redelivery
// backoff, dead-lettering and consumer-side idempotency.
//
//   natsgw::StreamConsumerOptions options;
//   options.consumer.stream = "USERS";
//   options.consumer.durable = "email-service";
//   options.workers = 4;
//   options.max_deliveries = 5;
//   options.dead_letter_subject = "dlq.email-service";
//   options.idempotency = kv_store;   // default: in memory
//   NATSGW_ASSIGN_OR_RETURN(auto consumer, natsgw::StreamConsumer::Create(
//       *js, options, [](const natsgw::Delivery& d) -> natsgw::DeliveryOutcome
//       {
//         if (absl::Status s = SendEmail(d.message().data); !s.ok()) return s;
//         return natsgw::DeliveryOutcome::Ack();
//       }));
//   ...
//   consumer->Stop(absl::Seconds(10));   // graceful: see Stop()
//
// Flow control: the consumer pulls only as many messages as it has free
// worker slots (TaskQueue vacancies: idle workers, plus `prefetch` waiting
// places if configured), so what the process holds unacknowledged is
// bounded by workers + prefetch.
//
// For each delivery:
//   1. A message delivered more than max_deliveries times goes to the dead
//      letter without running the handler (a poison message that crashes
//      the process every time still ends there).
//   2. With a message ID, the idempotency store is asked (see
//      natsgw/idempotency_store.h): handled before -> Ack without running the
//      handler (counted as skipped_duplicate); another replica is handling it
//      -> Nak with a delay.
//   3. The handler runs on a worker with the producer's trace as the current
//      trace. While it runs, an in-progress heartbeat resets the server's
//      ack timer every in_progress_interval.
//   4. Its outcome is applied: Ack (after committing the idempotency key);
//      Nak (delay: the outcome's, or nak_backoff for the delivery count),
//      becoming a dead letter at max_deliveries; Term (dead letter now).
// A dead letter is published to dead_letter_subject with the original
// payload, application headers, trace and message ID, plus Dead-Letter-*
// headers (reason, stream, consumer, sequence, deliveries, subject); once
// that publish succeeds the message is terminated (+TERM). If it fails the
// message is Nak'ed and dead-lettered on its next delivery.
//
// Thread-safety: thread-safe. The handler runs on the consumer's worker
// threads, several at once (up to `workers`); it may block (long work should
// stay within the heartbeat's reach, i.e. the process must stay alive) and
// may call any Connection method. It is destroyed after Stop() returns.
#ifndef NATSGW_STREAM_CONSUMER_H_
#define NATSGW_STREAM_CONSUMER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "natsgw/idempotency_store.h"
#include "natsgw/jetstream.h"
#include "natsgw/message.h"
#include "natsgw/retry_policy.h"
#include "natsgw/stream_config.h"

namespace natsgw {

// One delivery of a stored message, as the handler sees it.
//
// Thread-safety: const methods are safe from any thread while the handler
// runs; the object is destroyed after the handler returns.
class Delivery {
 public:
  class Control;  // how InProgress reaches the server (internal)
  Delivery(Message message, std::string stream, std::string consumer,
           uint64_t delivery_count, uint64_t stream_sequence,
           uint64_t consumer_sequence, uint64_t pending, absl::Time stored_at,
           std::shared_ptr<Control> control);

  // Payload, headers, the producer's trace, message ID and send time.
  const Message& message() const { return message_; }
  const std::string& stream() const { return stream_; }
  const std::string& consumer() const { return consumer_; }
  // 1 on the first delivery; above 1 the message was delivered before (and
  // not acknowledged: failed, timed out, or its handler's process died).
  uint64_t delivery_count() const { return delivery_count_; }
  uint64_t stream_sequence() const { return stream_sequence_; }
  uint64_t consumer_sequence() const { return consumer_sequence_; }
  // Messages still waiting for this consumer after this one.
  uint64_t pending() const { return pending_; }
  // When the stream stored the message (server clock).
  absl::Time stored_at() const { return stored_at_; }

  // Tells the server the handler is still working, restarting its ack
  // timer. The consumer already does so every in_progress_interval; call it
  // for finer control.
  absl::Status InProgress() const;

 private:
  Message message_;
  std::string stream_;
  std::string consumer_;
  uint64_t delivery_count_;
  uint64_t stream_sequence_;
  uint64_t consumer_sequence_;
  uint64_t pending_;
  absl::Time stored_at_;
  std::shared_ptr<Control> control_;
};

// What the handler decided.
class DeliveryOutcome {
 public:
  enum class Kind { kAck, kNak, kTerm };

  // Done: acknowledge.
  static DeliveryOutcome Ack() { return DeliveryOutcome(Kind::kAck, {}, {}); }
  // Failed, may succeed later: redeliver after `delay` (default: the
  // consumer's nak_backoff for the delivery count).
  static DeliveryOutcome Nak(absl::Status reason,
                             std::optional<absl::Duration> delay = {}) {
    return DeliveryOutcome(Kind::kNak, std::move(reason), delay);
  }
  // Failed for good: dead-letter and terminate now.
  static DeliveryOutcome Term(absl::Status reason) {
    return DeliveryOutcome(Kind::kTerm, std::move(reason), {});
  }
  // OK -> Ack; a code listed in StreamConsumerOptions::permanent_codes ->
  // Term; any other error -> Nak with backoff. (Implicit, so a handler may
  // simply return a status.)
  DeliveryOutcome(absl::Status status);  // NOLINT(runtime/explicit)

  Kind kind() const { return kind_; }
  const absl::Status& reason() const { return reason_; }
  const std::optional<absl::Duration>& delay() const { return delay_; }
  // True for an outcome made from a status (to be classified by the
  // consumer's permanent_codes).
  bool from_status() const { return from_status_; }

 private:
  DeliveryOutcome(Kind kind, absl::Status reason,
                  std::optional<absl::Duration> delay)
      : kind_(kind), reason_(std::move(reason)), delay_(delay) {}

  Kind kind_;
  absl::Status reason_;
  std::optional<absl::Duration> delay_;
  bool from_status_ = false;
};

using DeliveryHandler =
    absl::AnyInvocable<DeliveryOutcome(const Delivery& delivery)>;

struct StreamConsumerOptions {
  // The durable pull consumer (created, or verified, by Create).
  ConsumerConfig consumer;
  // Handler threads; also the most messages held unacknowledged at once.
  int workers = 4;
  // Messages pulled ahead of idle workers, waiting in the consumer's bounded
  // queue. 0 (the default) pulls only for idle workers, so nothing waits
  // unhandled in the process. Raising it saves pull round trips for short
  // handlers, at a cost: a waiting message gets no in-progress heartbeat, so
  // its wait counts against ack_wait.
  int prefetch = 0;
  // Most messages asked for per pull.
  int max_batch = 64;
  // How long one pull waits on the server for messages. Bounds how long
  // Stop() waits for the pulling thread.
  absl::Duration fetch_wait = absl::Milliseconds(500);
  // Deliveries before a message becomes a dead letter (>= 1).
  int max_deliveries = 5;
  // Delay before a Nak'ed message is redelivered, by delivery count
  // (retry n = delivery n): initial_backoff * multiplier^(n-1), capped, with
  // jitter. max_attempts is ignored.
  RetryPolicy nak_backoff = {.max_attempts = 1,
                             .initial_backoff = absl::Seconds(1),
                             .max_backoff = absl::Minutes(1),
                             .multiplier = 2.0,
                             .jitter = 0.2};
  // Status codes a handler returns for failures that no retry will fix: the
  // message is dead-lettered at once.
  std::vector<absl::StatusCode> permanent_codes = {
      absl::StatusCode::kInvalidArgument, absl::StatusCode::kFailedPrecondition,
      absl::StatusCode::kOutOfRange, absl::StatusCode::kUnimplemented,
      absl::StatusCode::kPermissionDenied};
  // Where dead letters are published (a subject a dead-letter stream
  // captures, e.g. "dlq.email-service"). Empty: dead letters are terminated,
  // counted and logged only.
  std::string dead_letter_subject;
  // If set, dead letters are published to this stream with an ack (at least
  // once); otherwise with a core NATS publish.
  std::string dead_letter_stream;
  // Consumer-side de-duplication on the message ID. Null: an
  // InMemoryIdempotencyStore with the smallest allowed TTL. Its ttl() must
  // cover ack_wait x max_deliveries + every nak backoff (checked by Create).
  std::shared_ptr<IdempotencyStore> idempotency;
  // Heartbeat period while a handler runs; zero: ack_wait / 3.
  absl::Duration in_progress_interval = absl::ZeroDuration();
};

struct StreamConsumerStats {
  int64_t delivered = 0;
  int64_t redelivered = 0;
  int64_t acked = 0;
  int64_t naked = 0;
  int64_t terminated = 0;
  int64_t dead_lettered = 0;
  int64_t skipped_duplicates = 0;
  int64_t in_progress = 0;
};

class StreamConsumer {
 public:
  // Checks the options (INVALID_ARGUMENT; FAILED_PRECONDITION if the
  // idempotency TTL is too short, naming the required minimum; either is
  // counted in natsgw_errors_total{operation="subscribe"} and nothing is
  // asked of the server), creates or verifies the consumer
  // (JetStream::EnsureConsumer) and starts pulling.
  static absl::StatusOr<std::unique_ptr<StreamConsumer>> Create(
      JetStream& js, StreamConsumerOptions options, DeliveryHandler handler);
  // Stop(absl::Seconds(30)) if not stopped yet.
  ~StreamConsumer();

  StreamConsumer(const StreamConsumer&) = delete;
  StreamConsumer& operator=(const StreamConsumer&) = delete;

  // Graceful shutdown: stops pulling, lets running handlers finish and
  // their outcomes be applied, Naks (for immediate redelivery elsewhere)
  // what has not started when `timeout` passes, flushes the acks to the
  // server. OK if nothing was left unhandled; DEADLINE_EXCEEDED naming how
  // many deliveries were handed back. Idempotent. Not from a handler.
  absl::Status Stop(absl::Duration timeout);

  StreamConsumerStats stats() const;
  // The minimum idempotency TTL for these options: ack_wait x max_deliveries
  // plus the longest nak backoff for every redelivery.
  static absl::Duration RequiredIdempotencyTtl(
      const StreamConsumerOptions& options);

  class Impl;

 private:
  explicit StreamConsumer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace natsgw

#endif  // NATSGW_STREAM_CONSUMER_H_
