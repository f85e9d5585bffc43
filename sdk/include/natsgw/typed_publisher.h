// natsgw/typed_publisher.h: typed fire-and-forget publishing of one event
// type. TypedPublisher<T> builds T in the thread's reusable builder
// (natsgw/builder_lease.h), finishes it with the topic's file identifier and
// publishes it through Connection::Publish, so every event carries a trace,
// a message ID and a send timestamp, and is timed into metrics.
//
//   NATSGW_ASSIGN_OR_RETURN(
//       auto publisher,
//       natsgw::TypedPublisher<natsgw::users::UserRegistered>::Create(
//           *conn, kUserRegistered));            // natsgw/event_topic.h
//   NATSGW_ASSIGN_OR_RETURN(
//       natsgw::SendInfo sent,
//       publisher.Publish([&](flatbuffers::FlatBufferBuilder& fbb) {
//         return natsgw::users::CreateUserRegisteredDirect(
//             fbb, user_id.c_str(), email.c_str());
//       }));
//   std::cout << "trace " << sent.trace.TraceIdHex() << " id "
//             << sent.message_id;
//
//   // A publisher of a topic whose subject is a template
//   // ("orders.*.created") names a concrete subject that matches it:
//   order_created.PublishTo("orders.eu.created", build);
//
//   // A buffer built elsewhere (a cache, another process) is verified
//   // first: a malformed one is INVALID_ARGUMENT and nothing is sent.
//   publisher.PublishBuffer(bytes);
//
// Publishing and subscribing are separate headers (this one and
// natsgw/typed_subscriber.h) because they are separate roles, usually in
// separate services, as the RPC client (rpc_client.h) and service
// (typed_service.h) are; the topic they share is natsgw/event_topic.h.
//
// Metrics and spans: every publish is recorded under the topic's subject
// (the template), not the concrete subject, unless
// PublishOptions::metric_subject says otherwise; label cardinality is
// bounded by the number of topics. The same template names the publish's
// PRODUCER span, "publish <topic subject>" (natsgw/span_sink.h).
//
// Delivery is core NATS: at most once, to the subscribers present when the
// event is published (Connection::Publish). The send options
// (natsgw/send_options.h) work as for Connection::Publish: headers, an
// explicit trace (default: the thread's current trace, so an event published
// from a handler continues the handled message's trace) and a message ID
// (default: a new random one; set a deterministic one to let consumers
// de-duplicate).
//
// Threads: every method runs on the calling thread, calls the builder
// function there before returning, and does not block beyond what
// Connection::Publish does (buffering, see ConnectionOptions).
//
// Thread-safety: TypedPublisher is thread-safe and cheap to copy (copies
// share one immutable state). The Connection must outlive every use of a
// publisher.
#ifndef NATSGW_TYPED_PUBLISHER_H_
#define NATSGW_TYPED_PUBLISHER_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "flatbuffers/flatbuffers.h"
#include "natsgw/builder_lease.h"
#include "natsgw/connection.h"
#include "natsgw/event_topic.h"
#include "natsgw/send_options.h"
#include "natsgw/verified.h"

namespace natsgw {

struct PublisherOptions {
  // Limits a buffer given to PublishBuffer is verified under (the limits its
  // subscribers are likely to apply; a buffer they would reject is refused
  // here, before it costs anyone a delivery).
  VerifyLimits verify;
};

// Builds the event's root table into the given (empty) builder and returns
// its offset; do not Finish() it. Runs on the calling thread before the
// publish function returns.
template <class T>
using EventBuilder =
    absl::FunctionRef<flatbuffers::Offset<T>(flatbuffers::FlatBufferBuilder&)>;

namespace internal {

// What every copy of one TypedPublisher shares.
struct PublisherState {
  Connection* connection;
  // The topic's subject (possibly a template) and contract.
  std::string subject;
  std::string file_identifier;
  // For messages: the type name, or the subject if none was given.
  std::string what;
  bool is_template;
  PublisherOptions options;
};

absl::StatusOr<std::shared_ptr<const PublisherState>> NewPublisherState(
    Connection& connection, absl::string_view subject,
    absl::string_view file_identifier, absl::string_view type_name,
    PublisherOptions options);

// `status` (not OK), counted as a refused publish in the connection's
// natsgw_errors_total{operation="publish"}.
absl::Status Refused(const PublisherState& state, absl::Status status);

// `subject` if it is a valid subject matched by the topic's template, the
// topic's own subject if `subject` is empty and the topic is no template;
// INVALID_ARGUMENT (counted, see Refused) otherwise.
absl::StatusOr<absl::string_view> ResolveSubject(const PublisherState& state,
                                                 absl::string_view subject);

// INVALID_ARGUMENT naming the rule, for a buffer that failed verification
// (counted, see Refused).
absl::Status InvalidBuffer(const PublisherState& state,
                           absl::string_view subject,
                           const absl::Status& verify_status);

// Connection::Publish with the topic's subject as the default
// metric_subject.
absl::StatusOr<SendInfo> PublishFinished(const PublisherState& state,
                                         absl::string_view subject,
                                         absl::string_view bytes,
                                         const PublishOptions& options);

// Verifies `bytes` (at any address) as a buffer with root T: in place when
// they are 8-byte aligned, else in an aligned copy.
template <class T>
absl::Status VerifyAnywhere(absl::string_view bytes,
                            absl::string_view file_identifier,
                            const VerifyLimits& limits) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  if (AlignedBytes::IsAligned(data)) {
    return VerifyAligned<T>(data, bytes.size(), file_identifier, limits);
  }
  const AlignedBytes copy = AlignedBytes::Copy(bytes);
  return VerifyAligned<T>(copy.data(), copy.size(), file_identifier, limits);
}

}  // namespace internal

template <class T>
class TypedPublisher {
 public:
  // INVALID_ARGUMENT if the topic (subject syntax, under the connection's
  // MessageLimits; identifier length) or the options (verify limits) are
  // unusable. Nothing is sent.
  static absl::StatusOr<TypedPublisher> Create(Connection& connection,
                                               const EventTopic<T>& topic,
                                               PublisherOptions options = {}) {
    absl::StatusOr<std::shared_ptr<const internal::PublisherState>> state =
        internal::NewPublisherState(connection, topic.subject,
                                    topic.file_identifier, topic.type_name,
                                    std::move(options));
    if (!state.ok()) return state.status();
    return TypedPublisher(*std::move(state));
  }

  // The topic's subject (or template) and file identifier.
  const std::string& subject() const { return state_->subject; }
  const std::string& file_identifier() const { return state_->file_identifier; }

  // Builds the event with `build` and publishes it to the topic's subject.
  // INVALID_ARGUMENT, with nothing sent, if the topic's subject is a
  // template (use PublishTo) or `build` returns a null offset; otherwise
  // whatever Connection::Publish returns.
  absl::StatusOr<SendInfo> Publish(EventBuilder<T> build,
                                   const PublishOptions& options = {}) const {
    return PublishTo(absl::string_view(), build, options);
  }

  // As Publish, to `subject`: a concrete subject that the topic's subject
  // (template) matches, e.g. "orders.eu.created" for "orders.*.created".
  // Empty: the topic's own subject. A subject the template does not match
  // is INVALID_ARGUMENT and nothing is sent.
  absl::StatusOr<SendInfo> PublishTo(absl::string_view subject,
                                     EventBuilder<T> build,
                                     const PublishOptions& options = {}) const {
    absl::StatusOr<absl::string_view> to =
        internal::ResolveSubject(*state_, subject);
    if (!to.ok()) return to.status();
    BuilderLease lease;
    flatbuffers::FlatBufferBuilder& fbb = lease.builder();
    const flatbuffers::Offset<T> root = build(fbb);
    absl::Status finished = internal::FinishWithIdentifier(
        fbb, root.o, state_->file_identifier, state_->what);
    if (!finished.ok()) return internal::Refused(*state_, std::move(finished));
    // Publish copies the bytes before returning, so the lease may end then.
    return internal::PublishFinished(*state_, *to, lease.bytes(), options);
  }

  // Publishes a finished buffer (e.g. built by other code, or kept from an
  // earlier message) to the topic's subject after verifying it as T with the
  // topic's file identifier under PublisherOptions::verify. A buffer that
  // fails is INVALID_ARGUMENT naming the rule ("file identifier",
  // "malformed", ...; see natsgw/verified.h) and nothing is sent.
  absl::StatusOr<SendInfo> PublishBuffer(
      absl::string_view bytes, const PublishOptions& options = {}) const {
    return PublishBufferTo(absl::string_view(), bytes, options);
  }

  // As PublishBuffer, to `subject` (see PublishTo).
  absl::StatusOr<SendInfo> PublishBufferTo(
      absl::string_view subject, absl::string_view bytes,
      const PublishOptions& options = {}) const {
    absl::StatusOr<absl::string_view> to =
        internal::ResolveSubject(*state_, subject);
    if (!to.ok()) return to.status();
    absl::Status verified = internal::VerifyAnywhere<T>(
        bytes, state_->file_identifier, state_->options.verify);
    if (!verified.ok()) return internal::InvalidBuffer(*state_, *to, verified);
    return internal::PublishFinished(*state_, *to, bytes, options);
  }

 private:
  explicit TypedPublisher(std::shared_ptr<const internal::PublisherState> state)
      : state_(std::move(state)) {}

  std::shared_ptr<const internal::PublisherState> state_;
};

}  // namespace natsgw

#endif  // NATSGW_TYPED_PUBLISHER_H_
