// natsgw/event_topic.h: an event topic, the contract between the publishers
// and the subscribers of one kind of event: the subject (or subject
// template) it travels on, the FlatBuffers root type of its payload and the
// file identifier that payload is finished with. It is to pub/sub what
// MethodDescriptor (natsgw/rpc_method.h) is to request/reply, and is shared
// by both sides: TypedPublisher (natsgw/typed_publisher.h) and
// SubscribeTyped (natsgw/typed_subscriber.h).
//
//   // users.fbs: table UserRegistered, file_identifier "NGUS".
//   inline constexpr natsgw::EventTopic<natsgw::users::UserRegistered>
//       kUserRegistered{.subject = "users.events.UserRegistered",
//                       .file_identifier = "NGUS",
//                       .type_name = "natsgw.users.UserRegistered"};
//
//   // A subject template: '*' tokens are filled in per publish
//   // ("orders.eu.created"); subscribers may use it as it is.
//   inline constexpr natsgw::EventTopic<acme::OrderCreated> kOrderCreated{
//       .subject = "orders.*.created", .file_identifier = "ACOR"};
//
//   natsgw::SubjectMatches("orders.*.created", "orders.eu.created");  // true
//
// Why the type is a template parameter: a publisher or subscriber made from
// a topic can only build or read that topic's type, so a payload type cannot
// drift from its subject at one call site. The identifier is still data,
// because flatc does not expose a table's file identifier as a type trait
// (only the schema's root_type gets an accessor); it is the schema's
// `file_identifier`, which natsgw-gen also emits, for a schema that declares
// an rpc_service, as `<Service>Methods::kService.file_identifier`.
//
// Subjects follow schemas/README.md section 2: events on
// `<service>.events.<Event>`. Metrics are labelled with the template, not
// the concrete subject, so they stay bounded whatever fills a wildcard
// token; the contract still wants a small, fixed set of values there (a
// region, a tenant), with IDs in the payload or a header.
//
// Thread-safety: EventTopic is an immutable value (usually a constexpr
// constant); the functions are pure.
#ifndef NATSGW_EVENT_TOPIC_H_
#define NATSGW_EVENT_TOPIC_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "natsgw/validation.h"

namespace natsgw {

// The events of type T (a flatc-generated table) on `subject`. The views are
// copied by whatever is made from the topic, so they need only outlive that
// call; constexpr constants of string literals are the usual form.
template <class T>
struct EventTopic {
  using Type = T;

  // A subject ("users.events.UserRegistered") or a subject template whose
  // tokens may be the wildcard '*' and whose last token may be '>'
  // ("orders.*.created"). Publishers fill a template per message;
  // subscribers subscribe to it as a pattern.
  absl::string_view subject;
  // The file_identifier of the schema declaring T (4 characters, "NGUS").
  absl::string_view file_identifier;
  // Namespace-qualified type name ("natsgw.users.UserRegistered") for error
  // messages and logs; optional (empty: the subject is named instead).
  absl::string_view type_name = {};
};

// True if the concrete subject `subject` is matched by `pattern` the way the
// NATS server matches it: token by token, '*' matching exactly one token and
// a final '>' one or more. Neither argument is validated; a wildcard
// character in `subject` only matches itself.
bool SubjectMatches(absl::string_view pattern, absl::string_view subject);

// True if `subject` has a wildcard token ('*' or '>'): a template, not a
// subject one can publish to.
bool IsSubjectTemplate(absl::string_view subject);

// INVALID_ARGUMENT naming the problem if `subject` is not a valid subject or
// subject template (ValidateSubscribeSubject) or `file_identifier` does not
// have exactly 4 characters.
absl::Status ValidateEventTopic(absl::string_view subject,
                                absl::string_view file_identifier,
                                const MessageLimits& limits = {});

template <class T>
absl::Status ValidateEventTopic(const EventTopic<T>& topic,
                                const MessageLimits& limits = {}) {
  return ValidateEventTopic(topic.subject, topic.file_identifier, limits);
}

}  // namespace natsgw

#endif  // NATSGW_EVENT_TOPIC_H_
