// natsgw/stream_publisher.h: at-least-once publishing to a JetStream stream,
// with server-side de-duplication, acknowledgements and safe retries.
//
//   natsgw::StreamPublisherOptions options;
//   options.stream = "USERS";
//   NATSGW_ASSIGN_OR_RETURN(auto publisher,
//                           natsgw::StreamPublisher::Create(*js, options));
//
//   natsgw::StreamPublishOptions publish;
//   publish.message_id = "user-registered-u-1234";   // de-duplication key
//   NATSGW_ASSIGN_OR_RETURN(natsgw::PublishAck ack,
//       publisher->Publish("users.events.UserRegistered", bytes, publish));
//   // ack.sequence: where the stream stored it; ack.duplicate: it had it.
//
//   // Or without waiting, at most options.max_pending acks outstanding:
//   publisher->PublishAsync(subject, bytes, publish,
//       [](absl::StatusOr<natsgw::PublishAck> ack) { ... });
//   publisher->WaitForAcks(absl::Seconds(5));   // e.g. before shutting down
//
// Guarantee: a publish that returns (or calls back with) a PublishAck is
// stored in the stream (replicated per the stream's replicas). Every message
// carries a Nats-Msg-Id (a new random one unless the caller sets it), and
// every attempt of one publish carries the same ID, so a retry after a lost
// ack is stored once: the server reports it as `duplicate`. That holds while
// the retries end within the stream's duplicate window, which Create checks:
// the worst-case retry budget (attempts x attempt_timeout + the longest
// backoffs) must be shorter than the window. A caller replaying messages
// after a crash should set message_id deterministically (derived from the
// business event), so the replay is de-duplicated too.
//
// Retried (with exponential backoff and jitter, RetryPolicy): an attempt
// whose ack did not arrive within attempt_timeout; no responders or a lost
// connection (UNAVAILABLE, e.g. no stream leader during an election); the
// stream temporarily unavailable (JetStream error 503). Not retried, failing
// at once: message too large or invalid input (INVALID_ARGUMENT), a stream or
// expected-sequence mismatch (FAILED_PRECONDITION), anything else the stream
// refuses. Every error names the stream, the subject and the rule, and every
// failed or refused publish (PublishAsync's refusals included) is counted in
// natsgw_js_published_total{result="failed"}.
//
// Thread-safety: thread-safe. AckCallbacks run on natsgw's reply, timer or
// retry thread; they must not block and may run concurrently with each other.
// Destroying the publisher waits for outstanding asynchronous publishes to
// complete (bounded by the retry budget).
#ifndef NATSGW_STREAM_PUBLISHER_H_
#define NATSGW_STREAM_PUBLISHER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "natsgw/jetstream.h"
#include "natsgw/retry_policy.h"
#include "natsgw/send_options.h"

namespace natsgw {

struct StreamPublisherOptions {
  // The stream acks must come from (sent as Nats-Expected-Stream: a subject
  // captured by another stream, or none, fails instead of being stored
  // elsewhere). Required.
  std::string stream;
  // How long one attempt waits for the stream's ack.
  absl::Duration attempt_timeout = absl::Seconds(2);
  // Attempts and backoff. Attempt timeouts are always retryable; other codes
  // as listed in retry.retryable_codes. The default rides out a stream
  // leader election (4 to 9 s in nats-server 2.9), during which attempts
  // fail at once with no responders: its backoffs alone add up to 10.5 to
  // 21 s; its worst case (every attempt timing out) is about 51 s, well
  // inside the default 2 minute duplicate window.
  RetryPolicy retry = {.max_attempts = 15,
                       .initial_backoff = absl::Milliseconds(100),
                       .max_backoff = absl::Seconds(2),
                       .multiplier = 2.0,
                       .jitter = 0.5,
                       .retryable_codes = {absl::StatusCode::kUnavailable}};
  // Asynchronous publishes awaiting their ack at most; PublishAsync waits up
  // to pending_wait for one to complete, then fails RESOURCE_EXHAUSTED.
  size_t max_pending = 256;
  absl::Duration pending_wait = absl::Seconds(5);
};

// Options of one publish: those of Connection::Publish plus optimistic
// concurrency checks done by the stream (FAILED_PRECONDITION when they fail).
struct StreamPublishOptions : SendOptions {
  // The stream's last sequence must be this (Nats-Expected-Last-Sequence).
  std::optional<uint64_t> expected_last_sequence;
  // The last sequence stored on this subject (Nats-Expected-Last-Subject-
  // Sequence).
  std::optional<uint64_t> expected_last_subject_sequence;
  // The stream's last message ID (Nats-Expected-Last-Msg-Id).
  std::optional<std::string> expected_last_message_id;
};

// The stream's acknowledgement of a stored message.
struct PublishAck {
  std::string stream;
  uint64_t sequence = 0;
  // The stream already had a message with this Nats-Msg-Id (within its
  // duplicate window) and did not store it again; `sequence` is the first
  // copy's.
  bool duplicate = false;
  // Trace, message ID and first send time.
  SendInfo sent;
  // Attempts made (1 if the first was acknowledged).
  int attempts = 0;
};

class StreamPublisher {
 public:
  // Looks the stream up (NOT_FOUND if it does not exist: declare it with
  // JetStream::EnsureStream) and checks the options: INVALID_ARGUMENT for
  // bad values, FAILED_PRECONDITION if the worst-case retry budget is not
  // shorter than the stream's duplicate window.
  static absl::StatusOr<std::unique_ptr<StreamPublisher>> Create(
      JetStream& js, StreamPublisherOptions options);
  ~StreamPublisher();

  StreamPublisher(const StreamPublisher&) = delete;
  StreamPublisher& operator=(const StreamPublisher&) = delete;

  // Publishes and waits for the ack, retrying as configured. Errors as in the
  // file comment; a failed publish carries its trace ID (TraceIdFromStatus).
  absl::StatusOr<PublishAck> Publish(absl::string_view subject,
                                     absl::string_view data,
                                     const StreamPublishOptions& options = {});

  // Publishes without waiting for the ack: `done` receives the ack or the
  // final error exactly once, unless PublishAsync itself returns an error
  // (nothing was sent and `done` is never called): INVALID_ARGUMENT for bad
  // input, RESOURCE_EXHAUSTED when max_pending acks stayed outstanding for
  // pending_wait, UNAVAILABLE when the publisher is closing. `done` runs on
  // the calling thread if the first attempt fails at once and is not retried
  // (e.g. the connection is closed).
  using AckCallback = absl::AnyInvocable<void(absl::StatusOr<PublishAck>)>;
  absl::Status PublishAsync(absl::string_view subject, absl::string_view data,
                            const StreamPublishOptions& options,
                            AckCallback done);

  // Waits until every asynchronous publish has completed (its callback has
  // returned). DEADLINE_EXCEEDED naming how many are still outstanding.
  absl::Status WaitForAcks(absl::Duration timeout);

  // Asynchronous publishes awaiting their ack.
  size_t pending() const;

  // Worst-case time one publish may spend retrying (what Create compares
  // with the duplicate window).
  absl::Duration RetryBudget() const;

  const StreamPublisherOptions& options() const;

  class Impl;

 private:
  explicit StreamPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The worst-case duration of `options`' retries: max_attempts x
// attempt_timeout plus every backoff at its largest (no jitter reduction).
absl::Duration StreamPublishRetryBudget(const StreamPublisherOptions& options);

}  // namespace natsgw

#endif  // NATSGW_STREAM_PUBLISHER_H_
