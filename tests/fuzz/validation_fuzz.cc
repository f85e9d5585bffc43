// Fuzz target: the rules every subject, queue group, header and message ID
// must pass before natsgw writes it to a connection (natsgw/validation.h),
// and subject matching (natsgw/event_topic.h), against reference versions
// written here from the documented rules.
//
// Input layout:
//   byte 0      MessageLimits: 0 the defaults, else small limits derived
//               from it (so that every limit is reached)
//   ...         the text, tried as each kind of value; as a header list it
//               is read as "key:value" lines; for subject matching it is
//               split at the first space into pattern and subject
//
// Checked: each validator accepts exactly what its reference accepts; every
// rejection is INVALID_ARGUMENT with a message of bounded size and no raw
// control byte (the offending text is quoted escaped and cut), whatever the
// size of the input; publish-valid subjects are subscribe-valid, match
// themselves and are no templates.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "fuzz_support.h"
#include "natsgw/event_topic.h"
#include "natsgw/headers.h"
#include "natsgw/message_id.h"
#include "natsgw/validation.h"
#include "natsgw/wire_headers.h"

namespace natsgw::fuzz {
namespace {

// Longest message a rejection may have: the quoted text is cut at 80
// characters, escaped at most 4 bytes each, and some rules quote twice.
constexpr size_t kMaxMessageBytes = 1024;

// --- Reference rules -------------------------------------------------------

bool Printable(absl::string_view s) {
  for (char c : s) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x21 || b > 0x7e) return false;
  }
  return true;
}

bool HasWildcardChar(absl::string_view s) {
  return s.find_first_of("*>") != absl::string_view::npos;
}

std::vector<absl::string_view> Tokens(absl::string_view s) {
  return absl::StrSplit(s, '.');
}

bool RefSubject(absl::string_view s, const MessageLimits& limits,
                bool wildcards) {
  if (s.empty() || s.size() > limits.max_subject_bytes || !Printable(s)) {
    return false;
  }
  const std::vector<absl::string_view> tokens = Tokens(s);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const absl::string_view t = tokens[i];
    if (t.empty()) return false;
    if (!HasWildcardChar(t)) continue;
    if (!wildcards) return false;
    if (t == "*") continue;
    if (t == ">" && i + 1 == tokens.size()) continue;
    return false;
  }
  return true;
}

bool RefQueueGroup(absl::string_view q, const MessageLimits& limits) {
  return q.empty() || (q.size() <= limits.max_subject_bytes && Printable(q) &&
                       !HasWildcardChar(q));
}

bool RefHeaderKey(absl::string_view k, const MessageLimits& limits) {
  if (k.empty() || k.size() > limits.max_header_key_bytes) return false;
  for (char c : k) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        absl::string_view("!#$%&'*+-.^_`|~").find(c) ==
            absl::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool RefHeaderValue(absl::string_view v, const MessageLimits& limits) {
  if (v.size() > limits.max_header_value_bytes) return false;
  for (char c : v) {
    const auto b = static_cast<unsigned char>(c);
    if ((b < 0x20 && b != '\t') || b == 0x7f) return false;
  }
  auto blank = [](char c) { return c == ' ' || c == '\t'; };
  return !v.empty() && !blank(v.front()) && !blank(v.back());
}

bool RefReserved(absl::string_view key) {
  const std::string lower = absl::AsciiStrToLower(key);
  for (absl::string_view name :
       {"traceparent", "tracestate", "nats-msg-id", "nats-service-error",
        "nats-service-error-code", "status", "description"}) {
    if (lower == name) return true;
  }
  return absl::StartsWith(lower, "natsgw-");
}

// True if `a` is shorter than `b` and starts it, ignoring ASCII case.
bool RefProperPrefix(absl::string_view a, absl::string_view b) {
  return a.size() < b.size() &&
         absl::AsciiStrToLower(b).rfind(absl::AsciiStrToLower(a), 0) == 0;
}

bool RefApplicationHeaders(const Headers& headers,
                           const MessageLimits& limits) {
  if (headers.size() > limits.max_header_count) return false;
  for (const HeaderField& f : headers) {
    if (!RefHeaderKey(f.key, limits) || RefReserved(f.key) ||
        !RefHeaderValue(f.value, limits)) {
      return false;
    }
    // nats.c merges a key into a longer one it prefixes, including the
    // headers natsgw writes itself.
    for (absl::string_view own :
         {"traceparent", "tracestate", "Nats-Msg-Id", "Natsgw-Sent-At-Ns",
          "Natsgw-Timeout-Us", "Nats-Service-Error", "Nats-Service-Error-Code",
          "Natsgw-Status", "Status", "Description"}) {
      if (RefProperPrefix(f.key, own)) return false;
    }
    for (const HeaderField& g : headers) {
      if (RefProperPrefix(f.key, g.key)) return false;
    }
  }
  return true;
}

bool RefMessageId(absl::string_view id) {
  return !id.empty() && id.size() <= MessageId::kMaxBytes && Printable(id);
}

// Token by token; '*' matches one token, a final '>' one or more.
bool RefMatches(absl::string_view pattern, absl::string_view subject) {
  if (pattern.empty() || subject.empty()) return false;
  const std::vector<absl::string_view> p = Tokens(pattern);
  const std::vector<absl::string_view> s = Tokens(subject);
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == ">" && i + 1 == p.size()) return s.size() > i;
    if (i >= s.size()) return false;
    if (p[i] != "*" && p[i] != s[i]) return false;
  }
  return p.size() == s.size();
}

bool RefIsTemplate(absl::string_view subject) {
  if (subject.empty()) return false;
  for (absl::string_view t : Tokens(subject)) {
    if (t == "*" || t == ">") return true;
  }
  return false;
}

// --- Checks ----------------------------------------------------------------

void Expect(absl::string_view what, absl::string_view text,
            const absl::Status& status, bool expected) {
  FUZZ_CHECK(status.ok() == expected, what, " \"", absl::CHexEscape(text),
             "\": natsgw says ", status.ToString(), ", the rule says ",
             expected ? "valid" : "invalid");
  if (!status.ok()) {
    FUZZ_CHECK(IsCleanInvalidArgument(status, kMaxMessageBytes), what,
               " rejection is not a clean, bounded INVALID_ARGUMENT: ",
               absl::CHexEscape(status.ToString()));
  }
}

MessageLimits LimitsFromByte(uint8_t b) {
  MessageLimits limits;
  if (b == 0) return limits;
  limits.max_subject_bytes = b;
  limits.max_header_count = b % 8;
  limits.max_header_key_bytes = b / 2 + 1;
  limits.max_header_value_bytes = size_t{b} * 4;
  return limits;
}

}  // namespace
}  // namespace natsgw::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace natsgw;        // NOLINT(build/namespaces)
  using namespace natsgw::fuzz;  // NOLINT(build/namespaces)
  Input in(data, size);
  const MessageLimits limits = LimitsFromByte(in.Byte());
  const absl::string_view text = in.Rest();

  const absl::Status publish = ValidatePublishSubject(text, limits);
  const absl::Status subscribe = ValidateSubscribeSubject(text, limits);
  Expect("publish subject", text, publish, RefSubject(text, limits, false));
  Expect("subscribe subject", text, subscribe, RefSubject(text, limits, true));
  Expect("queue group", text, ValidateQueueGroup(text, limits),
         RefQueueGroup(text, limits));
  Expect("header key", text, ValidateHeaderKey(text, limits),
         RefHeaderKey(text, limits));
  Expect("header value", text, ValidateHeaderValue(text, limits),
         RefHeaderValue(text, limits));
  Expect("message ID", text, ValidateMessageId(text), RefMessageId(text));
  FUZZ_CHECK(IsReservedHeader(text) == RefReserved(text), "IsReservedHeader(\"",
             absl::CHexEscape(text), "\")");
  const Headers lines = HeaderLines(text);
  Expect("header lines", text, ValidateApplicationHeaders(lines, limits),
         RefApplicationHeaders(lines, limits));

  // Event topics: a subscribe-valid subject and a 4-character identifier.
  const absl::string_view identifier = text.substr(0, text.size() % 6);
  Expect("event topic", text, ValidateEventTopic(text, identifier, limits),
         subscribe.ok() && identifier.size() == 4);

  FUZZ_CHECK(IsSubjectTemplate(text) == RefIsTemplate(text),
             "IsSubjectTemplate(\"", absl::CHexEscape(text), "\")");
  if (publish.ok()) {
    FUZZ_CHECK(subscribe.ok(), "publish-valid but not subscribe-valid");
    FUZZ_CHECK(!IsSubjectTemplate(text), "a publish-valid template");
    FUZZ_CHECK(SubjectMatches(text, text), "does not match itself");
    FUZZ_CHECK(SubjectMatches(">", text), "'>' does not match it");
  } else if (subscribe.ok()) {
    FUZZ_CHECK(IsSubjectTemplate(text),
               "subscribe-valid, no template, yet not publish-valid");
  }

  const size_t space = text.find(' ');
  if (space != absl::string_view::npos) {
    const absl::string_view pattern = text.substr(0, space);
    const absl::string_view subject = text.substr(space + 1);
    FUZZ_CHECK(SubjectMatches(pattern, subject) == RefMatches(pattern, subject),
               "SubjectMatches(\"", absl::CHexEscape(pattern), "\", \"",
               absl::CHexEscape(subject), "\")");
  }
  return 0;
}
