// natsgw/message.h: a message as natsgw delivers it to application code, and
// the handler signatures that receive messages.
//
// A Message is what a Subscribe handler is given, what a Serve handler is
// given as the request, and what Connection::Request returns as the reply.
// natsgw has already parsed its metadata headers: `trace` is always valid (a
// missing or malformed `traceparent` is replaced by a new trace, never
// forwarded), and `message_id`, `sent_at` and `deadline` are filled in when the
// sender provided them.
//
//   auto sub = conn->Subscribe("users.events.>", "", [](const natsgw::Message&
//   m) {
//     std::cout << m.subject << " trace=" << m.trace.TraceIdHex() << "\n";
//   });
//
// Thread-safety: a value type; concurrent const access is safe.
#ifndef NATSGW_MESSAGE_H_
#define NATSGW_MESSAGE_H_

#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "natsgw/headers.h"
#include "natsgw/trace_context.h"

namespace natsgw {

struct Message {
  // The concrete subject the message was published to.
  std::string subject;
  // Payload bytes (binary-safe; usually a FlatBuffer).
  std::string data;
  // Every header as received, natsgw's own included.
  Headers headers;
  // The trace this message belongs to. Inside a handler, messages sent from
  // the handler's thread continue this trace automatically.
  TraceContext trace;
  // True if the sender's traceparent was missing or invalid and `trace` is a
  // new root started on receipt.
  bool trace_replaced = false;
  // Nats-Msg-Id, or empty if the sender set none.
  std::string message_id;
  // Natsgw-Sent-At-Ns, if present and well-formed (sender's clock).
  std::optional<absl::Time> sent_at;
  // Requests only: receive time plus the sender's remaining budget
  // (Natsgw-Timeout-Us), on this host's clock.
  std::optional<absl::Time> deadline;
  // When natsgw took the message from nats.c, on this host's clock.
  absl::Time received_at;
};

// The answer a Serve handler produces.
struct Reply {
  std::string data;
  // Application headers (validated like PublishOptions::headers; a reserved or
  // malformed header turns the reply into an INTERNAL error reply).
  Headers headers;
};

// Runs for every message of a subscription. See Connection::Subscribe for the
// thread it runs on.
using MessageHandler = absl::AnyInvocable<void(const Message& message)>;

// Runs for every request of a served endpoint and returns the reply, or a
// status that the caller receives with the same code and message.
using RequestHandler =
    absl::AnyInvocable<absl::StatusOr<Reply>(const Message& request)>;

}  // namespace natsgw

#endif  // NATSGW_MESSAGE_H_
