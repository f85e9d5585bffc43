// natsgw/validation.h: the rules a subject, queue group or header must follow
// before natsgw writes it to a NATS connection.
//
// nats.c 3.4.1 sends whatever it is given: a subject with a space in it or a
// header value with a CR/LF would corrupt the protocol stream or be split by
// the server. natsgw checks everything first; a violation is INVALID_ARGUMENT
// whose message names the rule, and nothing is sent.
//
//   absl::Status s = natsgw::ValidatePublishSubject("orders.>");
//   // INVALID_ARGUMENT: subject "orders.>" token 2 is the wildcard '>';
//   //                   wildcards are only allowed when subscribing
//
// Thread-safety: pure functions; safe from any thread.
#ifndef NATSGW_VALIDATION_H_
#define NATSGW_VALIDATION_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "natsgw/headers.h"

namespace natsgw {

// Size limits checked before sending. At a limit the call fails with
// INVALID_ARGUMENT naming the limit; nothing is sent and the error counter
// natsgw_errors_total{code="INVALID_ARGUMENT"} is incremented.
struct MessageLimits {
  // Longest subject (and queue group) in bytes. NATS itself only bounds the
  // whole protocol line (4 KiB); 256 keeps subjects readable and far from it.
  size_t max_subject_bytes = 256;
  // Most application headers on one message (natsgw's own are not counted).
  size_t max_header_count = 64;
  size_t max_header_key_bytes = 128;
  size_t max_header_value_bytes = 4096;
};

// A subject to publish or send a request to: one or more '.'-separated
// non-empty tokens of printable ASCII (0x21-0x7e), no whitespace or control
// characters, no wildcard tokens ('*', '>'), at most
// `limits.max_subject_bytes`.
absl::Status ValidatePublishSubject(absl::string_view subject,
                                    const MessageLimits& limits = {});

// A subject to subscribe to: as ValidatePublishSubject, but a token may be the
// wildcard '*' and the last token may be '>'. A token that merely contains a
// wildcard character ("a*", ">b") is rejected because the server would treat
// it literally, which is never what the author meant.
absl::Status ValidateSubscribeSubject(absl::string_view subject,
                                      const MessageLimits& limits = {});

// A queue group name: empty (meaning "no queue group"), or printable ASCII
// without whitespace and without wildcard characters, at most
// `limits.max_subject_bytes`.
absl::Status ValidateQueueGroup(absl::string_view queue_group,
                                const MessageLimits& limits = {});

// A header key: 1..limits.max_header_key_bytes characters from the RFC 7230
// token set (letters, digits and !#$%&'*+-.^_`|~); no ':' or whitespace.
absl::Status ValidateHeaderKey(absl::string_view key,
                               const MessageLimits& limits = {});

// A header value: 1..limits.max_header_value_bytes; no CR, LF, NUL or other
// control characters except horizontal tab; no leading or trailing
// whitespace (NATS parsers trim it, so it would not survive the trip). Not
// empty: nats.c cannot read an empty value back. Bytes >= 0x80 (UTF-8) are
// allowed.
absl::Status ValidateHeaderValue(absl::string_view value,
                                 const MessageLimits& limits = {});

// Free text (an error message, a reason) made into a header value that
// ValidateHeaderValue accepts, unless it comes out empty: control characters
// become spaces, surrounding whitespace is removed, and it is cut to
// `max_bytes` (at a byte boundary). Callers omit the header when the result
// is empty.
std::string SanitizeHeaderValue(absl::string_view text, size_t max_bytes);

// Application headers for an outgoing message: every key and value valid, at
// most limits.max_header_count fields, no key that natsgw manages itself
// (natsgw/wire_headers.h: traceparent, tracestate, Nats-Msg-Id, Status,
// Description, Nats-Service-Error*, Natsgw-*), and no key that is a proper
// prefix (ignoring case) of another key on the message or of one of those:
// nats.c's header table would merge the two on receipt. The same key may
// repeat (a header with several values).
absl::Status ValidateApplicationHeaders(const Headers& headers,
                                        const MessageLimits& limits = {});

// A caller-supplied message ID: 1..128 characters of printable ASCII without
// whitespace.
absl::Status ValidateMessageId(absl::string_view message_id);

}  // namespace natsgw

#endif  // NATSGW_VALIDATION_H_
