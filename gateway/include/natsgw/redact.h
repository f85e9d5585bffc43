// natsgw/redact.h: masking secrets in text before it reaches a log line, a
// status message or a metric label.
//
// NATS credentials travel in places that end up in diagnostics: server URLs
// carry `user:password@` or `token@`, configuration dumps carry
// `password=...`, and creds files carry a JWT and an NKey seed. natsgw's own
// loggers (JsonLogger, StderrLogger) and the messages natsgw builds from
// server URLs pass through these functions; a custom Logger should do the
// same.
//
//   RedactSecrets("cannot connect to nats://alice:s3cret@nats-0:4222")
//     == "cannot connect to nats://alice:[REDACTED]@nats-0:4222"
//   RedactUrl("alice:s3cret@nats-0:4222") == "alice:[REDACTED]@nats-0:4222"
//
// What is masked (each replaced by "[REDACTED]" unless said otherwise):
// - the password of `scheme://user:password@host` (the user name stays) and
//   the whole user part of `scheme://token@host` (NATS token auth), for any
//   scheme;
// - the value after a key naming a secret, in the forms `key=value`,
//   `key: value`, `"key": "value"` and `'key': 'value'`: keys containing
//   password, passwd, passphrase, secret, token, credential, authorization,
//   api_key/apikey or private_key (any case), and keys with a component
//   (separated by `_`, `-` or `.`) that is pass, pwd, seed, jwt, auth or
//   creds. `Bearer <x>` / `Basic <x>` after such a key masks <x>;
// - NKey seeds: 58 base32 characters starting with `S` and a key-type letter
//   (U, A, O, N, C, X), e.g. `SUAM...`;
// - JWTs: `eyJ...` with three dot-separated base64url parts;
// - armored blocks such as the two of a NATS creds file
//   (`-----BEGIN NATS USER JWT----- ... ------END NATS USER JWT------`,
//   `-----BEGIN USER NKEY SEED----- ...`): the whole block becomes
//   "[REDACTED NATS USER JWT]"; a block without its END line is masked to
//   the end of the text.
// Subjects, trace and span IDs, message IDs, public NKeys and e-mail
// addresses are left alone. Redaction errs on the side of masking: a value
// after `token:` in prose may be masked too.
//
// Cost: a line with none of the trigger characters and words ("://" with
// '@', "eyJ", "-----BEGIN", a possible seed, or one of the key words next to
// '=' or ':') is scanned once without allocating beyond the returned copy.
// No regular expressions.
//
// Thread-safety: the functions are pure; call them from any thread.
#ifndef NATSGW_REDACT_H_
#define NATSGW_REDACT_H_

#include <string>

#include "absl/strings/string_view.h"

namespace natsgw {

// What a masked secret is replaced with.
inline constexpr absl::string_view kRedacted = "[REDACTED]";

// `text` with every secret described in the file comment masked. Idempotent:
// RedactSecrets(RedactSecrets(t)) == RedactSecrets(t).
std::string RedactSecrets(absl::string_view text);

// A server URL (or a comma-separated list of them, as nats.c accepts) with
// its credentials masked, also without a scheme ("user:pass@host:4222",
// which nats.c reads as nats://...) and also when the password has
// characters a URL would need escaped, followed by RedactSecrets(). Use it
// where the text is known to be a URL.
std::string RedactUrl(absl::string_view url);

// True when `key` names a secret by the rules above (e.g. "password",
// "auth_token", "nkey_seed"): a structured log field under such a key is
// masked whole, whatever its value looks like.
bool IsSecretKey(absl::string_view key);

// True when RedactSecrets() could change `text` (the cheap pre-scan it
// starts with). False means `text` is certainly free of what it masks.
bool MayContainSecrets(absl::string_view text);

}  // namespace natsgw

#endif  // NATSGW_REDACT_H_
