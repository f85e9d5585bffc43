// How a connection authenticates and encrypts: ConnectionOptions'
// NatsCredentials and TlsOptions checked, then handed to nats.c.
//
// Thread-safety: stateless functions.
#ifndef NATSGW_GATEWAY_SRC_NATS_AUTH_H_
#define NATSGW_GATEWAY_SRC_NATS_AUTH_H_

#include <nats/nats.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
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
// Like ApplyTls(opts, tls), and also requires TLS when a server URL has the
// tls:// scheme: nats.c 3.4.1 treats tls:// like nats:// and would talk
// plain text to a server that does not offer TLS.
natsStatus ApplyTls(natsOptions* opts, const TlsOptions& tls,
                    const std::vector<std::string>& servers);

// Whether any TLS setting asks for TLS.
bool TlsRequested(const TlsOptions& tls);
// Whether `tls` or the scheme of a URL in `servers` asks for TLS.
bool TlsRequested(const TlsOptions& tls,
                  const std::vector<std::string>& servers);

// The status for a failed natsConnection_Connect: `s` is what it returned,
// `nats_detail` nats.c's last error text of the connecting thread (may be
// empty), `servers` the server list as it may be shown (credentials already
// masked). The message says why in terms of the options to change:
//   NATS_SSL_ERROR                 UNAVAILABLE "TLS verification failed ..."
//                                  (server certificate not trusted, host name
//                                  mismatch) or "TLS handshake failed ...";
//                                  UNAUTHENTICATED when the server's alert
//                                  rejects the client certificate
//   the server closing the TLS
//     session without a word       UNAUTHENTICATED: what a server with
//     (NATS_PROTOCOL_ERROR          tls { verify: true } does to a client
//     "got ''", NATS_IO_ERROR       without an acceptable certificate
//     "SSL_write error")
//   NATS_SECURE_CONNECTION_WANTED  FAILED_PRECONDITION: TLS asked for, the
//                                  server offers none; nothing was sent
//   NATS_SECURE_CONNECTION_REQUIRED FAILED_PRECONDITION
//   NATS_CONNECTION_AUTH_FAILED    UNAUTHENTICATED "NATS rejected the
//                                  credentials: ..."
//   anything else                  StatusCodeFromNats(s) (NATS_NO_SERVER:
//                                  UNAVAILABLE)
// File paths may appear in the message; secrets never do (the detail goes
// through RedactSecrets). NATS_OK gives OK.
absl::Status ConnectFailure(natsStatus s, const TlsOptions& tls,
                            absl::string_view servers,
                            absl::string_view nats_detail);

// `status` (from ConnectFailure) with what the credentials themselves tell
// about an UNAUTHENTICATED refusal: for a creds file whose user JWT has
// expired, "; the user JWT in creds_file \"<path>\" expired at <UTC time>"
// (the server says only "Authorization Violation"). Any other status is
// returned as it is. Reads the file; only the JWT's `exp` claim is used.
absl::Status ExplainAuthFailure(absl::Status status,
                                const NatsCredentials& credentials);

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_NATS_AUTH_H_
