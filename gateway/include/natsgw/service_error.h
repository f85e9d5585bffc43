// natsgw/service_error.h: how an absl::Status travels in a reply and comes
// back out, and how a failed call's trace ID (and, for typed calls, its
// message ID) rides on its status.
//
// A handler that returns a non-OK status produces a reply with an empty body
// and three headers:
//
//   Nats-Service-Error:      <the status message>         (NATS Services API)
//   Nats-Service-Error-Code: <HTTP-like code, e.g. 404>   (NATS Services API)
//   Natsgw-Status:           <canonical code number, e.g. 5 for NOT_FOUND>
//
// The caller rebuilds the same absl::Status (code and message) from them.
// Replies from other NATS Services API implementations (nats.go, nats.js)
// carry only the first two; their numeric code is mapped back with
// StatusCodeFromServiceErrorCode().
//
//   absl::StatusOr<natsgw::Message> reply = conn->Request(...);
//   if (!reply.ok()) {
//     std::optional<std::string> trace =
//     natsgw::TraceIdFromStatus(reply.status());
//   }
//
// Thread-safety: pure functions; safe from any thread.
#ifndef NATSGW_SERVICE_ERROR_H_
#define NATSGW_SERVICE_ERROR_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "natsgw/headers.h"

namespace natsgw {

// The HTTP-like code written to Nats-Service-Error-Code for a canonical code:
// INVALID_ARGUMENT/FAILED_PRECONDITION/OUT_OF_RANGE 400, UNAUTHENTICATED 401,
// PERMISSION_DENIED 403, NOT_FOUND 404, ALREADY_EXISTS/ABORTED 409,
// RESOURCE_EXHAUSTED 429, CANCELLED 499, UNKNOWN/INTERNAL/DATA_LOSS 500,
// UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, OK 200.
int ServiceErrorCodeFromStatusCode(absl::StatusCode code);

// The reverse mapping for replies that carry only Nats-Service-Error-Code:
// 400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
// 404 NOT_FOUND, 408 DEADLINE_EXCEEDED, 409 ABORTED, 429 RESOURCE_EXHAUSTED,
// 499 CANCELLED, 501 UNIMPLEMENTED, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED,
// any other 4xx FAILED_PRECONDITION, any other 5xx INTERNAL, anything else
// UNKNOWN.
absl::StatusCode StatusCodeFromServiceErrorCode(int service_error_code);

// Adds the three error headers for a non-OK `status` to `headers`. The
// message is made header-safe: control characters become spaces, surrounding
// whitespace is trimmed, and it is cut at 4096 bytes. An OK status adds
// nothing.
void AddErrorHeaders(const absl::Status& status, Headers& headers);

// The status a reply carrying `headers` stands for: OK when none of the error
// headers is present, otherwise the code from Natsgw-Status (preferred) or
// Nats-Service-Error-Code, and the message from Nats-Service-Error.
absl::Status StatusFromErrorHeaders(const Headers& headers);

// The status payload under which natsgw records the trace ID of a failed call
// (absl::Status::SetPayload).
inline constexpr absl::string_view kTraceIdPayloadUrl =
    "type.natsgw.dev/natsgw.TraceId";

// Returns `status` with the trace ID (32 hex digits) attached as a payload.
absl::Status WithTraceId(absl::Status status, absl::string_view trace_id_hex);

// The trace ID attached by WithTraceId, if any.
std::optional<std::string> TraceIdFromStatus(const absl::Status& status);

// The status payload under which typed calls (natsgw/rpc_client.h) record the
// Nats-Msg-Id of a call that was sent and then failed, so that a failure can
// be matched with the server's logs and de-duplication records.
inline constexpr absl::string_view kMessageIdPayloadUrl =
    "type.natsgw.dev/natsgw.MessageId";

// Returns `status` with `message_id` attached (not for OK or an empty ID).
absl::Status WithMessageId(absl::Status status, absl::string_view message_id);

// The message ID attached by WithMessageId, if any.
std::optional<std::string> MessageIdFromStatus(const absl::Status& status);

}  // namespace natsgw

#endif  // NATSGW_SERVICE_ERROR_H_
