#include "nats_auth.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace natsgw::internal {
namespace {

// FAILED_PRECONDITION naming `field` and `path` unless the file is readable.
// A path is not a secret; the file's content is.
absl::Status CheckReadable(absl::string_view field, const std::string& path) {
  if (access(path.c_str(), R_OK) == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      field, ": cannot read \"", path, "\": ", std::strerror(errno)));
}

}  // namespace

absl::Status ValidateCredentials(const NatsCredentials& c) {
  const bool nkey = !c.nkey.empty() || !c.nkey_seed_file.empty();
  const int kinds = (!c.user.empty() || !c.password.empty() ? 1 : 0) +
                    (!c.token.empty() ? 1 : 0) +
                    (!c.creds_file.empty() ? 1 : 0) + (nkey ? 1 : 0);
  if (kinds > 1) {
    return absl::InvalidArgumentError(
        "credentials: set only one of user/password, token, creds_file and "
        "nkey/nkey_seed_file");
  }
  if (c.user.empty() != c.password.empty()) {
    return absl::InvalidArgumentError(
        "credentials: user and password must be given together");
  }
  if (nkey && (c.nkey.empty() || c.nkey_seed_file.empty())) {
    return absl::InvalidArgumentError(
        "credentials: nkey and nkey_seed_file must be given together");
  }
  if (!c.nkey.empty() && !absl::StartsWith(c.nkey, "U")) {
    return absl::InvalidArgumentError(
        "credentials: nkey must be a user's public NKey (starting with U)");
  }
  if (!c.creds_file.empty()) {
    if (absl::Status s = CheckReadable("credentials: creds_file", c.creds_file);
        !s.ok()) {
      return s;
    }
  }
  if (!c.nkey_seed_file.empty()) {
    return CheckReadable("credentials: nkey_seed_file", c.nkey_seed_file);
  }
  return absl::OkStatus();
}

absl::Status ValidateTls(const TlsOptions& tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "tls: cert_file and key_file must be given together");
  }
  for (const auto& [field, path] :
       {std::pair<const char*, const std::string&>{"tls: ca_file", tls.ca_file},
        {"tls: cert_file", tls.cert_file},
        {"tls: key_file", tls.key_file}}) {
    if (path.empty()) continue;
    if (absl::Status s = CheckReadable(field, path); !s.ok()) return s;
  }
  return absl::OkStatus();
}

bool TlsRequested(const TlsOptions& tls) {
  return tls.enabled || !tls.ca_file.empty() || !tls.cert_file.empty() ||
         !tls.expected_hostname.empty();
}

natsStatus ApplyCredentials(natsOptions* opts, const NatsCredentials& c) {
  natsStatus s = NATS_OK;
  if (!c.user.empty()) {
    s = natsOptions_SetUserInfo(opts, c.user.c_str(), c.password.c_str());
  }
  if (s == NATS_OK && !c.token.empty()) {
    s = natsOptions_SetToken(opts, c.token.c_str());
  }
  if (s == NATS_OK && !c.creds_file.empty()) {
    // One file holds both the JWT and the seed.
    s = natsOptions_SetUserCredentialsFromFiles(opts, c.creds_file.c_str(),
                                                nullptr);
  }
  if (s == NATS_OK && !c.nkey.empty()) {
    s = natsOptions_SetNKeyFromSeed(opts, c.nkey.c_str(),
                                    c.nkey_seed_file.c_str());
  }
  return s;
}

natsStatus ApplyTls(natsOptions* opts, const TlsOptions& tls) {
  if (!TlsRequested(tls)) return NATS_OK;
  natsStatus s = natsOptions_SetSecure(opts, true);
  if (s == NATS_OK && !tls.ca_file.empty()) {
    s = natsOptions_LoadCATrustedCertificates(opts, tls.ca_file.c_str());
  }
  if (s == NATS_OK && !tls.cert_file.empty()) {
    s = natsOptions_LoadCertificatesChain(opts, tls.cert_file.c_str(),
                                          tls.key_file.c_str());
  }
  if (s == NATS_OK && !tls.expected_hostname.empty()) {
    s = natsOptions_SetExpectedHostname(opts, tls.expected_hostname.c_str());
  }
  return s;
}

}  // namespace natsgw::internal
