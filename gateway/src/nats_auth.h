// How a connection authenticates and encrypts: ConnectionOptions'
// NatsCredentials and TlsOptions checked, then handed to nats.c.
//
// Thread-safety: stateless functions.
#ifndef NATSGW_GATEWAY_SRC_NATS_AUTH_H_
#define NATSGW_GATEWAY_SRC_NATS_AUTH_H_

#include <nats/nats.h>

#include "absl/status/status.h"
#include "natsgw/connection_options.h"

namespace natsgw::internal {

// INVALID_ARGUMENT for a mix of kinds or an incomplete kind,
// FAILED_PRECONDITION for a file that cannot be read. Messages name the
// field, never a value.
absl::Status ValidateCredentials(const NatsCredentials& credentials);
absl::Status ValidateTls(const TlsOptions& tls);

// Sets the (validated) credentials / TLS settings on `opts`.
natsStatus ApplyCredentials(natsOptions* opts,
                            const NatsCredentials& credentials);
natsStatus ApplyTls(natsOptions* opts, const TlsOptions& tls);

// Whether any TLS setting asks for TLS.
bool TlsRequested(const TlsOptions& tls);

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_NATS_AUTH_H_
