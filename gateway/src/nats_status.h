// The one table that maps nats.c's natsStatus to absl::StatusCode, and the
// helper that turns a failed nats.c call into an absl::Status.
//
// Thread-safety: pure functions, except NatsError which reads nats.c's
// thread-local error text of the calling thread.
#ifndef NATSGW_GATEWAY_SRC_NATS_STATUS_H_
#define NATSGW_GATEWAY_SRC_NATS_STATUS_H_

#include <nats/nats.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace natsgw::internal {

// Initializes the nats.c library once per process (thread-safe). nats.c
// initializes itself lazily on connect, but freeing a message before that
// crashes, so every entry point that creates messages calls this first.
absl::Status EnsureNatsLibrary();

// The canonical code for a natsStatus. Every value of the enum has an entry;
// unknown future values map to UNKNOWN.
absl::StatusCode StatusCodeFromNats(natsStatus s);

// An absl::Status for a failed nats.c call: code from the table, message
// "<context>: <nats.c text>" plus nats.c's last error detail for this thread
// when it adds something. NATS_OK gives OK.
absl::Status NatsError(natsStatus s, absl::string_view context);

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_NATS_STATUS_H_
