// natsgw/wire_headers.h: names of the NATS headers that make up natsgw's wire
// contract (schemas/README.md is the specification; this is its C++ mirror).
//
// natsgw manages these headers itself: a caller cannot set them through
// PublishOptions/RequestOptions headers (doing so is INVALID_ARGUMENT), and
// natsgw reads them case-insensitively on input.
//
// Thread-safety: constants only.
#ifndef NATSGW_WIRE_HEADERS_H_
#define NATSGW_WIRE_HEADERS_H_

#include "absl/strings/string_view.h"

namespace natsgw {

// W3C Trace Context, written lower-case as the W3C spec and NATS tooling use.
inline constexpr absl::string_view kTraceParentHeader = "traceparent";
inline constexpr absl::string_view kTraceStateHeader = "tracestate";

// Unique message ID; JetStream uses the same header for de-duplication.
inline constexpr absl::string_view kMessageIdHeader = "Nats-Msg-Id";

// Send time: decimal nanoseconds since the Unix epoch (UTC) on the sender's
// clock. Used for end-to-end latency and ordering diagnostics.
inline constexpr absl::string_view kSentAtHeader = "Natsgw-Sent-At-Ns";

// Requests only: the caller's remaining time budget when it sent the request,
// decimal microseconds (relative, so clock skew between hosts is irrelevant).
inline constexpr absl::string_view kTimeoutHeader = "Natsgw-Timeout-Us";

// Error replies (NATS Services API convention): human-readable description and
// an HTTP-like numeric code for NATS tooling.
inline constexpr absl::string_view kServiceErrorHeader = "Nats-Service-Error";
inline constexpr absl::string_view kServiceErrorCodeHeader =
    "Nats-Service-Error-Code";

// Error replies: the canonical status code (decimal absl::StatusCode / gRPC
// code number), which maps 1:1 back to absl::StatusCode.
inline constexpr absl::string_view kStatusCodeHeader = "Natsgw-Status";

// Every header whose name starts with this prefix is reserved for natsgw.
inline constexpr absl::string_view kReservedHeaderPrefix = "Natsgw-";

// Written by the NATS server / nats.c for status messages (for example the
// 503 "no responders" reply); an application header with this name would be
// mistaken for one, so it is reserved too.
inline constexpr absl::string_view kNatsStatusHeader = "Status";
inline constexpr absl::string_view kNatsDescriptionHeader = "Description";

// True if `key` (any ASCII case) is one natsgw manages: the names above or
// any `Natsgw-` name.
bool IsReservedHeader(absl::string_view key);

}  // namespace natsgw

#endif  // NATSGW_WIRE_HEADERS_H_
