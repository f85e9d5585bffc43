#include "edge_rules.h"

#include <civetweb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "natsgw/service_error.h"
#include "natsgw/validation.h"
#include "natsgw/wire_headers.h"
#include "nlohmann/json.hpp"

namespace natsgw::edge {
namespace {

// Untrusted text in an error message: escaped and shortened.
std::string Quote(absl::string_view text) {
  constexpr size_t kMaxShown = 80;
  std::string shown = absl::CHexEscape(text.substr(0, kMaxShown));
  if (text.size() > kMaxShown) absl::StrAppend(&shown, "...");
  return absl::StrCat("\"", shown, "\"");
}

absl::string_view FirstToken(absl::string_view subject) {
  return subject.substr(0, subject.find('.'));
}

// RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" )
// *"=".
bool IsB64Token(absl::string_view token) {
  size_t i = 0;
  while (i < token.size()) {
    const char c = token[i];
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
        c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
      ++i;
    } else {
      break;
    }
  }
  if (i == 0) return false;
  while (i < token.size() && token[i] == '=') ++i;
  return i == token.size();
}

}  // namespace

int HttpStatusForCode(absl::StatusCode code) {
  // The Services API's error codes are HTTP-like and follow the same table,
  // so one function serves both.
  return ServiceErrorCodeFromStatusCode(code);
}

std::string ErrorBody(absl::StatusCode code, absl::string_view message,
                      absl::string_view trace_id) {
  nlohmann::json body;
  body["code"] = absl::StatusCodeToString(code);
  body["message"] = std::string(message);
  if (!trace_id.empty()) body["trace_id"] = std::string(trace_id);
  // Messages may quote caller input that is not UTF-8: replaced, not thrown.
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";
}

bool IsReservedSubject(absl::string_view subject) {
  const absl::string_view first = FirstToken(subject);
  return absl::StartsWith(first, "$") || first == "_INBOX";
}

bool PatternCovers(absl::string_view pattern, absl::string_view requested) {
  const std::vector<absl::string_view> p = absl::StrSplit(pattern, '.');
  const std::vector<absl::string_view> r = absl::StrSplit(requested, '.');
  for (size_t i = 0; i < p.size(); ++i) {
    // '>' matches one or more further tokens, whatever they are.
    if (p[i] == ">") return i < r.size();
    if (i >= r.size()) return false;
    if (p[i] == "*") {
      // '*' matches exactly one token: a literal or another '*', never
      // the several tokens a '>' stands for.
      if (r[i] == ">") return false;
      continue;
    }
    if (p[i] != r[i]) return false;
  }
  return p.size() == r.size();
}

absl::StatusOr<SubjectAllowList> SubjectAllowList::Parse(
    absl::string_view list) {
  SubjectAllowList out;
  for (absl::string_view entry : absl::StrSplit(list, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (entry.empty()) continue;
    if (absl::Status s = ValidateSubscribeSubject(entry); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("allow-list entry ", Quote(entry), ": ", s.message()));
    }
    if (IsReservedSubject(entry)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "allow-list entry ", Quote(entry),
          " is a reserved subject ($-prefixed or _INBOX), which the edge "
          "never lets an HTTP caller reach; remove it"));
    }
    out.patterns_.emplace_back(entry);
  }
  return out;
}

std::optional<std::string> SubjectAllowList::Match(
    absl::string_view requested) const {
  if (IsReservedSubject(requested)) return std::nullopt;
  for (const std::string& pattern : patterns_) {
    if (PatternCovers(pattern, requested)) return pattern;
  }
  return std::nullopt;
}

TokenSet::Digest TokenSet::Sha256(absl::string_view data) {
  Digest digest{};
  unsigned int size = 0;
  // EVP_Digest cannot fail for SHA-256 on in-memory data short of memory
  // exhaustion; a zero digest then matches no stored token's.
  if (EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(),
                 nullptr) != 1) {
    digest.fill(0);
  }
  return digest;
}

absl::StatusOr<TokenSet> TokenSet::Parse(absl::string_view contents,
                                         absl::string_view origin) {
  TokenSet out;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || absl::StartsWith(line, "#")) continue;
    // The message names the line, never its content: it is a secret.
    if (!IsB64Token(line)) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, " line ", line_number,
          ": not a bearer token (letters, digits and -._~+/ with optional "
          "trailing '=', one token per line)"));
    }
    if (line.size() < kMinTokenBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          origin, " line ", line_number, ": a token needs at least ",
          kMinTokenBytes, " characters"));
    }
    out.digests_.push_back(Sha256(line));
  }
  if (out.digests_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, " holds no bearer token (one per line; '#' starts a comment)"));
  }
  return out;
}

absl::StatusOr<TokenSet> TokenSet::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string why = absl::StrCat("cannot read bearer tokens file ",
                                         path, ": ", std::strerror(err));
    if (err == EACCES) return absl::PermissionDeniedError(why);
    return absl::NotFoundError(why);
  }
  std::stringstream contents;
  contents << in.rdbuf();
  return Parse(contents.str(), path);
}

bool TokenSet::Contains(absl::string_view presented) const {
  const Digest digest = Sha256(presented);
  // No early exit: every stored digest is compared, in constant time each.
  int matched = 0;
  for (const Digest& d : digests_) {
    matched |= CRYPTO_memcmp(d.data(), digest.data(), d.size()) == 0 ? 1 : 0;
  }
  return matched != 0;
}

std::optional<absl::string_view> BearerToken(absl::string_view authorization) {
  constexpr absl::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() ||
      !absl::StartsWithIgnoreCase(authorization, kScheme) ||
      authorization[kScheme.size()] != ' ') {
    return std::nullopt;
  }
  absl::string_view token = authorization.substr(kScheme.size());
  token = absl::StripAsciiWhitespace(token);
  if (token.empty() || !IsB64Token(token)) return std::nullopt;
  return token;
}

bool NamesReplySubject(absl::string_view name) {
  // Debian's Abseil has no StrContainsIgnoreCase.
  const std::string lower = absl::AsciiStrToLower(name);
  return absl::StrContains(lower, "reply") || absl::StrContains(lower, "inbox");
}

absl::StatusOr<Headers> TranslateHeaders(std::span<const HttpHeader> headers) {
  Headers out;
  for (const HttpHeader& h : headers) {
    // Only translated headers reach NATS: any other header (X-Inbox-Id, an
    // application's own Reply-To) is ignored, so it is no reply attempt.
    if (!absl::StartsWithIgnoreCase(h.name, kHeaderPrefix)) continue;
    const absl::string_view key = h.name.substr(kHeaderPrefix.size());
    if (NamesReplySubject(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "header ", Quote(h.name), " is refused: ", kReplySubjectRule));
    }
    if (key.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("header ", Quote(h.name), " names no NATS header after ",
                       kHeaderPrefix));
    }
    if (IsReservedHeader(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "header ", Quote(h.name), ": NATS header ", Quote(key),
          " is reserved (natsgw sets traceparent, tracestate, Nats-Msg-Id, "
          "Status, Description and Natsgw-* itself; send a W3C traceparent "
          "header to continue a trace)"));
    }
    if (absl::StartsWithIgnoreCase(key, "Nats-")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "header ", Quote(h.name), ": NATS header ", Quote(key),
          " is refused: Nats-* headers steer the NATS server and JetStream"));
    }
    out.Add(key, h.value);
  }
  if (absl::Status s = ValidateApplicationHeaders(out); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(kHeaderPrefix, "* headers: ", s.message()));
  }
  return out;
}

absl::StatusOr<std::vector<QueryParam>> ParseQuery(
    absl::string_view query, std::span<const absl::string_view> accepted) {
  std::vector<QueryParam> out;
  for (absl::string_view part : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    const size_t eq = part.find('=');
    const absl::string_view raw_name = part.substr(0, eq);
    const absl::string_view raw_value = eq == absl::string_view::npos
                                            ? absl::string_view()
                                            : part.substr(eq + 1);
    // civetweb's decoder: %XX escapes, and '+' as a space (form encoding).
    auto decode = [](absl::string_view in) {
      std::string buf(in.size() + 1, '\0');
      const int n = mg_url_decode(in.data(), static_cast<int>(in.size()),
                                  buf.data(), static_cast<int>(buf.size()),
                                  /*is_form_url_encoded=*/1);
      buf.resize(n < 0 ? 0 : static_cast<size_t>(n));
      return buf;
    };
    QueryParam param{decode(raw_name), decode(raw_value)};
    if (NamesReplySubject(param.name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("query parameter ", Quote(param.name),
                       " is refused: ", kReplySubjectRule));
    }
    bool known = false;
    for (absl::string_view a : accepted) known = known || param.name == a;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown query parameter ", Quote(param.name),
          "; this route accepts ",
          accepted.empty()
              ? std::string("none")
              : absl::StrJoin(accepted.begin(), accepted.end(), ", ")));
    }
    for (const QueryParam& seen : out) {
      if (seen.name == param.name) {
        return absl::InvalidArgumentError(absl::StrCat(
            "query parameter ", Quote(param.name), " is given twice"));
      }
    }
    out.push_back(std::move(param));
  }
  return out;
}

absl::StatusOr<absl::Duration> ParseTimeoutMs(absl::string_view value,
                                              absl::Duration fallback,
                                              absl::Duration max) {
  if (value.empty()) return std::min(fallback, max);
  constexpr int64_t kMaxMs = 86400000;  // a day
  int64_t ms = 0;
  if (!absl::SimpleAtoi(value, &ms) || ms < 1 || ms > kMaxMs ||
      !absl::ascii_isdigit(static_cast<unsigned char>(value.front()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("timeout_ms ", Quote(value),
                     " must be a whole number of milliseconds, 1..", kMaxMs));
  }
  return std::min(absl::Milliseconds(ms), max);
}

bool IsJsonContentType(absl::string_view content_type) {
  absl::string_view media = content_type.substr(0, content_type.find(';'));
  media = absl::StripAsciiWhitespace(media);
  return absl::EqualsIgnoreCase(media, "application/json");
}

}  // namespace natsgw::edge
