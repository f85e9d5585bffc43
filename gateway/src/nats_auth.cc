#include "nats_auth.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nats_status.h"
#include "natsgw/redact.h"
#include "nlohmann/json.hpp"

namespace natsgw::internal {
namespace {

// FAILED_PRECONDITION naming `field` and `path` unless the file is readable.
// A path is not a secret; the file's content is.
absl::Status CheckReadable(absl::string_view field, const std::string& path) {
  if (access(path.c_str(), R_OK) == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      field, ": cannot read \"", path, "\": ", std::strerror(errno)));
}

// nats.c starts its error text with the source location, "(conn.c:733): ",
// which says nothing to a user.
absl::string_view StripSourceLocation(absl::string_view detail) {
  if (!absl::StartsWith(detail, "(")) return detail;
  const size_t end = detail.find("): ");
  if (end == absl::string_view::npos ||
      detail.substr(0, end).find(' ') != absl::string_view::npos) {
    return detail;
  }
  return detail.substr(end + 3);
}

bool ContainsAny(absl::string_view lower_text,
                 std::initializer_list<absl::string_view> needles) {
  for (absl::string_view needle : needles) {
    if (absl::StrContains(lower_text, needle)) return true;
  }
  return false;
}

std::string Quoted(const std::string& path) {
  return absl::StrCat("\"", path, "\"");
}

// Why a TLS handshake the client rejected failed, in terms of TlsOptions.
// Empty when the detail does not say.
std::string ServerCertificateHint(absl::string_view lower_detail,
                                  const TlsOptions& tls) {
  if (ContainsAny(lower_detail, {"hostname mismatch", "ip address mismatch",
                                 "email address mismatch"})) {
    if (!tls.expected_hostname.empty()) {
      return absl::StrCat(
          "the server's certificate does not carry tls.expected_hostname ",
          Quoted(tls.expected_hostname));
    }
    return "the server's certificate does not carry the host of the server "
           "URL; set tls.expected_hostname to a name it carries";
  }
  if (ContainsAny(lower_detail, {"issuer certificate", "self-signed",
                                 "self signed", "unknown ca"})) {
    if (!tls.ca_file.empty()) {
      return absl::StrCat(
          "the server's certificate is not signed by a CA in tls.ca_file ",
          Quoted(tls.ca_file));
    }
    return "the server's certificate is not signed by a CA in the system's "
           "CA store; set tls.ca_file to the CA that signed it";
  }
  if (absl::StrContains(lower_detail, "expired")) {
    return "the server's certificate has expired";
  }
  if (absl::StrContains(lower_detail, "not yet valid")) {
    return "the server's certificate is not valid yet";
  }
  return "";
}

// What to do about a client certificate the server did not accept.
std::string ClientCertificateHint(const TlsOptions& tls) {
  if (tls.cert_file.empty()) {
    return "the server probably requires a client certificate "
           "(tls { verify: true }); set tls.cert_file and tls.key_file";
  }
  return absl::StrCat(
      "the server probably rejected the client certificate tls.cert_file ",
      Quoted(tls.cert_file),
      ": check that a CA the server trusts signed it, that it is valid now "
      "and that it allows client authentication");
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

bool TlsRequested(const TlsOptions& tls,
                  const std::vector<std::string>& servers) {
  if (TlsRequested(tls)) return true;
  for (const std::string& url : servers) {
    // nats.c accepts a comma-separated list in one entry too.
    for (absl::string_view one : absl::StrSplit(url, ',')) {
      one = absl::StripAsciiWhitespace(one);
      if (absl::StartsWithIgnoreCase(one, "tls://")) return true;
    }
  }
  return false;
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

natsStatus ApplyTls(natsOptions* opts, const TlsOptions& tls,
                    const std::vector<std::string>& servers) {
  natsStatus s = ApplyTls(opts, tls);
  if (s == NATS_OK && !TlsRequested(tls) && TlsRequested(tls, servers)) {
    s = natsOptions_SetSecure(opts, true);
  }
  return s;
}

absl::Status ConnectFailure(natsStatus s, const TlsOptions& tls,
                            absl::string_view servers,
                            absl::string_view nats_detail) {
  if (s == NATS_OK) return absl::OkStatus();
  std::string detail = RedactSecrets(StripSourceLocation(nats_detail));
  if (detail.empty()) detail = natsStatus_GetText(s);
  const std::string lower = absl::AsciiStrToLower(detail);
  // Said when nats.c switched to TLS on its own, because the server requires
  // it, so that a user who asked for none sees where TLS came from.
  const bool asked_for_tls =
      TlsRequested(tls) ||
      absl::StrContains(absl::AsciiStrToLower(servers), "tls://");
  const absl::string_view upgraded =
      asked_for_tls ? ""
                    : "; no tls option was set, but the server requires TLS, "
                      "so the connection used it";

  // A TLS alert from the server refusing the client certificate, seen in
  // the handshake (NATS_SSL_ERROR) or, with TLS 1.3, on the first read or
  // write after it (NATS_IO_ERROR).
  if ((s == NATS_SSL_ERROR || s == NATS_IO_ERROR) &&
      absl::StrContains(lower, "alert") &&
      ContainsAny(lower,
                  {"certificate required", "bad certificate", "unknown ca",
                   "certificate unknown", "unsupported certificate",
                   "certificate expired", "certificate revoked"})) {
    return absl::UnauthenticatedError(
        absl::StrCat("NATS at ", servers, " refused the TLS handshake: ",
                     ClientCertificateHint(tls), " (", detail, ")"));
  }
  // The server closed the connection right after the TLS handshake without
  // an -ERR: nats.c then reads nothing where it expects the PONG answering
  // its CONNECT+PING ("Expected 'PONG', got ''"), or fails to write the
  // CONNECT ("SSL_write error"). A server verifying client certificates does
  // exactly that when it rejects one (with TLS 1.3 the client's side of the
  // handshake completes before the server checks the certificate). Retrying
  // unchanged cannot help, so the code is UNAUTHENTICATED, like any refused
  // identity, rather than UNAVAILABLE, which invites retries.
  if ((s == NATS_PROTOCOL_ERROR && absl::StrContains(lower, "got ''")) ||
      (s == NATS_IO_ERROR && ContainsAny(lower, {"ssl_write", "ssl_read"}))) {
    return absl::UnauthenticatedError(
        absl::StrCat("NATS at ", servers,
                     " closed the connection during the TLS handshake or "
                     "CONNECT without giving a reason: ",
                     ClientCertificateHint(tls), " (", detail, ")"));
  }

  switch (s) {
    case NATS_SSL_ERROR: {
      const std::string hint = ServerCertificateHint(lower, tls);
      if (!hint.empty() || absl::StrContains(lower, "certificate") ||
          absl::StrContains(lower, "verif")) {
        return absl::UnavailableError(absl::StrCat(
            "TLS verification failed connecting to NATS at ", servers, ": ",
            hint.empty() ? detail : absl::StrCat(hint, " (", detail, ")"),
            upgraded));
      }
      return absl::UnavailableError(
          absl::StrCat("TLS handshake failed connecting to NATS at ", servers,
                       ": ", detail, upgraded));
    }
    case NATS_SECURE_CONNECTION_WANTED:
      return absl::FailedPreconditionError(absl::StrCat(
          "the client requires TLS but the server at ", servers,
          " does not offer it; the connection was closed before anything "
          "was sent (there is no plain-text fallback)"));
    case NATS_SECURE_CONNECTION_REQUIRED:
      return absl::FailedPreconditionError(absl::StrCat(
          "the server at ", servers,
          " requires TLS but the client did not enable it; set the tls "
          "options (tls.ca_file for a private CA)"));
    case NATS_CONNECTION_AUTH_FAILED: {
      std::string message =
          absl::StrCat("the NATS server at ", servers,
                       " rejected the credentials (", detail, ")");
      if (!tls.cert_file.empty()) {
        absl::StrAppend(&message,
                        "; if the server maps client certificates to users "
                        "(tls { verify_and_map: true }), none matches "
                        "tls.cert_file ",
                        Quoted(tls.cert_file));
      }
      return absl::UnauthenticatedError(message);
    }
    default:
      break;
  }
  std::string message = absl::StrCat("cannot connect to NATS at ", servers,
                                     ": ", natsStatus_GetText(s));
  if (!absl::StrContains(message, detail)) {
    absl::StrAppend(&message, ": ", detail);
  }
  return absl::Status(s == NATS_NO_SERVER ? absl::StatusCode::kUnavailable
                                          : StatusCodeFromNats(s),
                      message);
}

namespace {

// The `exp` claim of the user JWT in a creds file (the line after
// "-----BEGIN NATS USER JWT-----"), if it has one. The claims of a JWT are
// not secret; the file's seed is never read.
std::optional<absl::Time> CredsJwtExpiry(const std::string& creds_file) {
  std::ifstream in(creds_file);
  std::string line;
  bool jwt_next = false;
  while (std::getline(in, line)) {
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (!jwt_next) {
      jwt_next = absl::StrContains(text, "BEGIN NATS USER JWT");
      continue;
    }
    std::vector<absl::string_view> parts = absl::StrSplit(text, '.');
    std::string claims;
    if (parts.size() != 3 || !absl::WebSafeBase64Unescape(parts[1], &claims)) {
      return std::nullopt;
    }
    const nlohmann::json json =
        nlohmann::json::parse(claims, nullptr, /*allow_exceptions=*/false);
    if (!json.is_object() || !json.contains("exp") ||
        !json["exp"].is_number_integer()) {
      return std::nullopt;
    }
    return absl::FromUnixSeconds(json["exp"].get<int64_t>());
  }
  return std::nullopt;
}

}  // namespace

absl::Status ExplainAuthFailure(absl::Status status,
                                const NatsCredentials& credentials) {
  if (status.code() != absl::StatusCode::kUnauthenticated ||
      credentials.creds_file.empty()) {
    return status;
  }
  const std::optional<absl::Time> exp = CredsJwtExpiry(credentials.creds_file);
  if (!exp.has_value() || *exp > absl::Now()) return status;
  return absl::Status(
      status.code(),
      absl::StrCat(
          status.message(), "; the user JWT in creds_file \"",
          credentials.creds_file, "\" expired at ",
          absl::FormatTime(absl::RFC3339_sec, *exp, absl::UTCTimeZone())));
}

}  // namespace natsgw::internal
