// edge_rules.h: the rules natsgw-edge applies to every HTTP request before
// anything reaches NATS, as pure functions and small value types so they can
// be tested without a server: the HTTP status of a canonical status code,
// reserved subjects, subject allow-lists, bearer tokens, the translation of
// HTTP headers into NATS application headers, and the query parameters a
// route accepts.
//
//   NATSGW_ASSIGN_OR_RETURN(natsgw::edge::SubjectAllowList calls,
//       natsgw::edge::SubjectAllowList::Parse("users.RegisterUser,email.*"));
//   std::optional<std::string> pattern = calls.Match("email.SendWelcomeEmail");
//   // "email.*": the pattern is also the call's metric label, so the label
//   // set stays as small as the allow-list whatever subjects callers send.
//
// Thread-safety: free functions are pure; SubjectAllowList and TokenSet are
// immutable after construction, so concurrent const use is safe.
#ifndef NATSGW_SDK_TOOLS_EDGE_EDGE_RULES_H_
#define NATSGW_SDK_TOOLS_EDGE_EDGE_RULES_H_

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "natsgw/headers.h"

namespace natsgw::edge {

// The HTTP status for a canonical status code (grpc-gateway's table): OK 200;
// INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE 400; UNAUTHENTICATED
// 401; PERMISSION_DENIED 403; NOT_FOUND 404; ALREADY_EXISTS, ABORTED 409;
// RESOURCE_EXHAUSTED 429; CANCELLED 499; UNIMPLEMENTED 501; UNAVAILABLE 503;
// DEADLINE_EXCEEDED 504; everything else (UNKNOWN, INTERNAL, DATA_LOSS and
// values outside the enum) 500.
int HttpStatusForCode(absl::StatusCode code);

// The JSON body of an error response:
// {"code":"NOT_FOUND","message":"...","trace_id":"..."}, "trace_id" only when
// `trace_id` is not empty. Bytes that are not UTF-8 are replaced, so the body
// is always valid JSON. Ends with a newline.
std::string ErrorBody(absl::StatusCode code, absl::string_view message,
                      absl::string_view trace_id = {});

// True for subjects (and patterns) in the namespaces NATS and natsgw keep for
// themselves, which no HTTP caller may use whatever the allow-lists say: a
// first token starting with '$' ($SRV service discovery, $JS and $KV
// JetStream, $SYS, $O object stores, ...) or equal to "_INBOX" (replies of
// other clients). A first token that is a wildcard is not reserved by itself:
// a subscription to "*.x" or ">" is checked against the allow-list, and the
// reserved subjects it would match are filtered out on delivery.
bool IsReservedSubject(absl::string_view subject);

// True if every subject matched by `requested` (a subject or a subscription
// pattern with '*' and '>') is also matched by `pattern`. For a literal
// `requested` this is NATS's own matching rule. Both are assumed valid
// (ValidateSubscribeSubject).
bool PatternCovers(absl::string_view pattern, absl::string_view requested);

// A comma-separated list of NATS subject patterns: what one route of the edge
// may reach. Empty means nothing is allowed.
class SubjectAllowList {
 public:
  SubjectAllowList() = default;

  // Parses "a.b,c.*,d.>" (spaces around commas ignored; empty entries
  // skipped). INVALID_ARGUMENT naming the entry for a pattern the gateway's
  // subscribe rules reject or one that is reserved (IsReservedSubject):
  // listing it would have no effect, which is never what was meant.
  static absl::StatusOr<SubjectAllowList> Parse(absl::string_view list);

  // The first pattern that covers `requested` (PatternCovers), or nullopt.
  // Reserved subjects are never matched.
  std::optional<std::string> Match(absl::string_view requested) const;

  bool empty() const { return patterns_.empty(); }
  const std::vector<std::string>& patterns() const { return patterns_; }

 private:
  std::vector<std::string> patterns_;
};

// The bearer tokens callers may present. Only SHA-256 digests are kept, and
// a presented token is compared with every one of them in constant time, so
// neither the time taken nor the process memory says which characters
// matched.
class TokenSet {
 public:
  TokenSet() = default;

  // One token per line; surrounding whitespace and empty lines are ignored,
  // as are lines starting with '#'. A token is at least kMinTokenBytes
  // characters of the RFC 6750 token alphabet (letters, digits, "-._~+/" and
  // trailing '='). INVALID_ARGUMENT naming the line (never its content) for
  // any other line, and for a file without a token. `origin` names the file
  // in messages.
  static absl::StatusOr<TokenSet> Parse(absl::string_view contents,
                                        absl::string_view origin);
  // Reads and parses `path`: NOT_FOUND or PERMISSION_DENIED when it cannot
  // be read.
  static absl::StatusOr<TokenSet> Load(const std::string& path);

  static constexpr size_t kMinTokenBytes = 16;

  // True if `presented` is one of the tokens.
  bool Contains(absl::string_view presented) const;

  size_t size() const { return digests_.size(); }

 private:
  using Digest = std::array<uint8_t, 32>;
  static Digest Sha256(absl::string_view data);
  std::vector<Digest> digests_;
};

// The token of an `Authorization: Bearer <token>` header value (the scheme
// in any case, one or more spaces after it), or nullopt for another scheme
// or a malformed value.
std::optional<absl::string_view> BearerToken(absl::string_view authorization);

// One HTTP request header as received.
struct HttpHeader {
  absl::string_view name;
  absl::string_view value;
};

// HTTP headers named `Natsgw-Header-<Key>` (prefix in any case) become NATS
// application headers `<Key>` with the same value; every other header is
// ignored. INVALID_ARGUMENT naming the rule for: a key natsgw manages
// (natsgw/wire_headers.h: traceparent, Nats-Msg-Id, Natsgw-*, Status, ...)
// or any `Nats-` key (JetStream reads those: Nats-Expected-Stream,
// Nats-Rollup, ...); a `Natsgw-Header-<Key>` whose key contains "reply" or
// "inbox" (kReplySubjectRule; other headers never reach NATS, so their names
// do not matter); and whatever the gateway's header
// rules refuse (natsgw::ValidateApplicationHeaders: key alphabet, sizes,
// counts, keys that are prefixes of others).
inline constexpr absl::string_view kHeaderPrefix = "Natsgw-Header-";
absl::StatusOr<Headers> TranslateHeaders(std::span<const HttpHeader> headers);

// The message of every refusal of a caller-chosen reply subject.
inline constexpr absl::string_view kReplySubjectRule =
    "the edge chooses reply subjects itself: a caller can never set one";

// True if `name` (a header or query parameter name) looks like an attempt to
// choose a reply subject: it contains "reply" or "inbox" in any case.
bool NamesReplySubject(absl::string_view name);

// The query parameters of a request: name -> decoded value. INVALID_ARGUMENT
// for a parameter not in `accepted` (naming it and the accepted ones; a
// reply-ish name gets kReplySubjectRule), or for one given twice.
struct QueryParam {
  std::string name;
  std::string value;
};
absl::StatusOr<std::vector<QueryParam>> ParseQuery(
    absl::string_view query, std::span<const absl::string_view> accepted);

// ?timeout_ms=: a decimal number of milliseconds, 1..86400000. The result is
// min(value, `max`); an absent value (empty) gives `fallback`.
// INVALID_ARGUMENT naming the parameter otherwise.
absl::StatusOr<absl::Duration> ParseTimeoutMs(absl::string_view value,
                                              absl::Duration fallback,
                                              absl::Duration max);

// True if `content_type` names JSON: "application/json" in any case, with
// optional parameters (e.g. "; charset=utf-8").
bool IsJsonContentType(absl::string_view content_type);

}  // namespace natsgw::edge

#endif  // NATSGW_SDK_TOOLS_EDGE_EDGE_RULES_H_
