// Conversion between natsgw's view of a message and nats.c's natsMsg:
// stamping outgoing messages with the wire-contract headers, and parsing
// those headers out of incoming ones.
//
// Thread-safety: safe from any thread (the retired-message batch is guarded by
// a mutex of its own).
#ifndef NATSGW_GATEWAY_SRC_NATS_MESSAGE_H_
#define NATSGW_GATEWAY_SRC_NATS_MESSAGE_H_

#include <nats/nats.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "natsgw/headers.h"
#include "natsgw/message.h"
#include "natsgw/trace_context.h"

namespace natsgw::internal {

// Destroys `msg`, batched: nats.c hands every destroyed natsMsg to its
// library-wide collector thread and wakes that thread whenever it is idle,
// which on a request/reply path is one extra thread wake-up (and context
// switch) per message, competing for the CPUs the next hop needs. Retired
// messages are destroyed together once 32 are pending or they hold 256 KiB
// of payload, so the collector wakes once per batch. At most that much waits
// between batches; FlushRetiredNatsMsgs() destroys it at once.
void RetireNatsMsg(natsMsg* msg);

// Destroys every retired message now (Connection::Close calls it, so that a
// closed connection leaves nothing of its traffic behind).
void FlushRetiredNatsMsgs();

struct NatsMsgDeleter {
  void operator()(natsMsg* msg) const { RetireNatsMsg(msg); }
};
// The single owner of a natsMsg.
using NatsMsgPtr = std::unique_ptr<natsMsg, NatsMsgDeleter>;

// What natsgw stamps on an outgoing message.
// The views must stay valid while the Stamp is used, and end in a NUL
// (nats.c takes C strings): a std::string's, or a buffer such as
// WriteMessageId's.
struct Stamp {
  TraceContext trace;  // written as traceparent (+ tracestate)
  absl::string_view message_id;
  absl::Time sent_at;
  // Requests only: remaining budget, written as Natsgw-Timeout-Us.
  std::optional<absl::Duration> timeout;
  // Requests only: the subject the reply is to be sent to (not a header).
  absl::string_view reply;
};

// Builds a natsMsg carrying `data`, the stamp headers, `app_headers` (already
// validated by the caller) and `extra_headers` (natsgw's own, e.g. error
// headers; not validated). Fails with INVALID_ARGUMENT if payload plus header
// block exceeds `max_payload` bytes.
absl::StatusOr<NatsMsgPtr> BuildNatsMsg(absl::string_view subject,
                                        absl::string_view data,
                                        const Headers& app_headers,
                                        const Headers* extra_headers,
                                        const Stamp& stamp,
                                        int64_t max_payload);

// Whether BuildNatsMsg hands nats.c the header block already encoded (see
// nats_message.cc), rather than building it through nats.c's header API.
bool EncodedHeadersInUse();
// Tests only: with false, BuildNatsMsg uses nats.c's public header API even
// where the encoded form is available.
void UseEncodedHeadersForTesting(bool use);

// Size in bytes of the NATS header block ("NATS/1.0\r\n" ... "\r\n") that
// BuildNatsMsg would produce for these headers.
size_t HeaderBlockBytes(const Headers& app_headers,
                        const Headers* extra_headers, const Stamp& stamp);

// Why a received message's trace was replaced.
enum class TraceOrigin { kReceived, kMissing, kInvalid };

// Reads a received natsMsg into a Message (copying payload and headers).
// `received_at` is used for `received_at` and as the base of `deadline`. A
// message without a valid traceparent gets a new trace, sampled at
// `root_sample_ratio` (natsgw/trace_sampling.h) like any trace the
// connection starts.
Message ReadNatsMsg(natsMsg* msg, absl::Time received_at,
                    double root_sample_ratio, TraceOrigin* origin);

// The same into `into`, every field of which is overwritten: a Message
// reused for message after message keeps its strings' and headers' storage,
// so that in the steady state reading a message allocates nothing.
void ReadNatsMsgInto(natsMsg* msg, absl::Time received_at,
                     double root_sample_ratio, TraceOrigin* origin,
                     Message& into);

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_NATS_MESSAGE_H_
