// natsgw/typed_subscriber.h: typed subscriptions to one event type.
// SubscribeTyped<T> subscribes to a topic's subject pattern and hands each
// message to the handler as an Event<T>: the payload verified as T
// (natsgw/verified.h) plus the message's metadata.
//
//   NATSGW_ASSIGN_OR_RETURN(
//       std::unique_ptr<natsgw::Subscription> sub,
//       natsgw::SubscribeTyped(
//           *conn, kUserRegistered, "email-service",  // natsgw/event_topic.h
//           [&](natsgw::Event<natsgw::users::UserRegistered> event) {
//             SendWelcome(event->email()->str());
//             // Publishes and calls made here continue event.trace.
//             std::cout << event.subject << " " << event.message_id;
//             if (auto latency = event.delivery_latency()) {
//               std::cout << " after " << absl::FormatDuration(*latency);
//             }
//           }));
//
// A payload that fails verification (wrong file identifier, malformed, over
// a VerifyLimits limit) never reaches the handler. It is counted in
// natsgw_messages_invalid_total{subject="<subscription pattern>"} (or
// SubscribeOptions::metric_subject) in the connection's registry, and reported
// to the connection's logger (ConnectionOptions::logger) as a warning naming
// the rule it broke, the concrete subject, the message ID and the trace; at
// most one report per subscription per second, the next one saying how many
// were not reported. natsgw_messages_received_total counts every message, valid
// or not.
//
// See natsgw/typed_publisher.h for why publishing and subscribing are
// separate headers.
//
// Threads: the handler runs as a Connection::Subscribe handler with
// SubscriberOptions::subscribe. By default that is the subscription's
// delivery thread, one message at a time, in order; with subscribe.workers
// > 0 it is a task queue's threads, concurrently with itself (the handler
// must then be thread-safe) and not in order. It may block (see
// natsgw/subscribe_options.h for what happens to the messages meanwhile)
// and may call any Connection method. It runs with the message's trace as
// the thread's current trace (natsgw/trace_context.h), so what it publishes
// or requests continues the producer's trace; when the connection reports
// spans (ConnectionOptions::span_sink) and the trace is sampled, the current
// trace is the handler's CONSUMER span "process <topic subject>" (same trace
// ID, its own span ID), so those sends are children of it. An Event may be
// moved to another thread (it owns its payload); work done there continues
// the trace only inside a ScopedTraceContext(event.trace). The handler is
// destroyed after the subscription ends.
//
// Thread-safety: SubscribeTyped may be called from any thread; Event<T> is
// a value type (concurrent const access is safe).
#ifndef NATSGW_TYPED_SUBSCRIBER_H_
#define NATSGW_TYPED_SUBSCRIBER_H_

#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "natsgw/connection.h"
#include "natsgw/event_topic.h"
#include "natsgw/headers.h"
#include "natsgw/message.h"
#include "natsgw/subscribe_options.h"
#include "natsgw/subscription.h"
#include "natsgw/trace_context.h"
#include "natsgw/verified.h"

namespace natsgw {

struct SubscriberOptions {
  // Limits every payload is verified under.
  VerifyLimits verify;
  // How the handler runs (inline, or on a task queue of `workers` threads)
  // and what happens when messages arrive faster than it runs
  // (natsgw/subscribe_options.h). Verification runs where the handler runs,
  // so with workers it is spread over them too. subscribe.metric_subject,
  // if set, also labels natsgw_messages_invalid_total.
  SubscribeOptions subscribe;
};

// One received event. The payload was copied once, into aligned storage the
// Event owns, so the Event may outlive the handler call and move to another
// thread.
template <class T>
struct Event {
  // The payload, verified as T.
  Verified<T> payload;
  // The concrete subject it was published to ("orders.eu.created" for a
  // subscription to "orders.*.created").
  std::string subject;
  // Every header as received, natsgw's own included.
  Headers headers;
  // The producer's trace (a new root if it sent none or an invalid one; then
  // trace_replaced is true).
  TraceContext trace;
  bool trace_replaced = false;
  // Nats-Msg-Id, or empty if the producer set none; stable across a
  // producer's retries, so it can key de-duplication.
  std::string message_id;
  // When the producer sent it, on the producer's clock (Natsgw-Sent-At-Ns);
  // unset if it did not say.
  std::optional<absl::Time> sent_at;
  // When natsgw took it off the connection, on this host's clock.
  absl::Time received_at;

  // received_at - sent_at: publish-to-delivery latency, including any clock
  // skew between the two hosts (so possibly negative); unset without
  // sent_at.
  std::optional<absl::Duration> delivery_latency() const {
    if (!sent_at) return std::nullopt;
    return received_at - *sent_at;
  }

  const T* operator->() const { return payload.get(); }
  const T& operator*() const { return *payload; }
};

// Runs for every valid event of a subscription (see the file comment for
// its thread). Takes the Event by value so that it can keep or move it; a
// handler taking `const Event<T>&` works too.
template <class T>
using EventHandler = absl::AnyInvocable<void(Event<T> event)>;

namespace internal {

// Verifies one message and, if it passes, runs the application's handler
// with it; otherwise returns the verification failure (nothing ran).
using VerifyAndDeliver =
    absl::AnyInvocable<absl::Status(const Message& message)>;

// Validates the arguments, registers the invalid-message counter and
// subscribes with a handler that runs `deliver` and records its failures.
absl::StatusOr<std::unique_ptr<Subscription>> SubscribeVerified(
    Connection& connection, absl::string_view subject,
    absl::string_view file_identifier, absl::string_view type_name,
    absl::string_view queue_group, const SubscriberOptions& options,
    VerifyAndDeliver deliver);

// INVALID_ARGUMENT for an empty handler, counted in `connection`'s
// natsgw_errors_total{operation="subscribe"}.
absl::Status EmptyEventHandler(const Connection& connection);

}  // namespace internal

// Calls `handler` with every message on `topic.subject` (a subject or a
// pattern with '*' / '>' wildcards) whose payload verifies as T. With a
// non-empty `queue_group` each message goes to one member of the group
// (schemas/README.md: consumers use a group named after the consuming
// service, so each event is handled once per service). To listen to part of
// a template's subjects ("orders.eu.created" of "orders.*.created"), pass a
// topic with the narrower subject.
//
// Returns once the server has registered the interest (as
// Connection::Subscribe). INVALID_ARGUMENT, with no subscription made, for
// an invalid subject, queue group, file identifier, verify limits or
// subscribe options, or an empty handler; ALREADY_EXISTS if the registry has a
// metric named natsgw_messages_invalid_total of another type; otherwise what
// Connection::Subscribe returns. Destroying the Subscription stops delivery
// (natsgw/subscription.h).
template <class T>
absl::StatusOr<std::unique_ptr<Subscription>> SubscribeTyped(
    Connection& connection, const EventTopic<T>& topic,
    absl::string_view queue_group,
    std::type_identity_t<EventHandler<T>> handler,
    const SubscriberOptions& options = {}) {
  if (!handler) return internal::EmptyEventHandler(connection);
  return internal::SubscribeVerified(
      connection, topic.subject, topic.file_identifier, topic.type_name,
      queue_group, options,
      [handler = std::move(handler),
       file_identifier = std::string(topic.file_identifier),
       limits = options.verify](const Message& m) mutable -> absl::Status {
        absl::StatusOr<Verified<T>> payload =
            Verified<T>::FromView(m.data, file_identifier, limits);
        if (!payload.ok()) return payload.status();
        handler(Event<T>{*std::move(payload), m.subject, m.headers, m.trace,
                         m.trace_replaced, m.message_id, m.sent_at,
                         m.received_at});
        return absl::OkStatus();
      });
}

}  // namespace natsgw

#endif  // NATSGW_TYPED_SUBSCRIBER_H_
