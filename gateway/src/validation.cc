#include "natsgw/validation.h"

#include <iterator>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "natsgw/wire_headers.h"

namespace natsgw {
namespace {

// Every header natsgw itself may put on a message (or a server status adds),
// for the prefix rule of ValidateApplicationHeaders.
constexpr absl::string_view kHeadersNatsgwWrites[] = {
    kTraceParentHeader,      kTraceStateHeader, kMessageIdHeader,
    kSentAtHeader,           kTimeoutHeader,    kServiceErrorHeader,
    kServiceErrorCodeHeader, kStatusCodeHeader, kNatsStatusHeader,
    kNatsDescriptionHeader};

// Quotes untrusted text for an error message: escaped, and shortened so a
// 1 MiB "subject" does not become a 1 MiB log line.
std::string Quote(absl::string_view text) {
  constexpr size_t kMaxShown = 80;
  std::string shown = absl::CHexEscape(text.substr(0, kMaxShown));
  if (text.size() > kMaxShown) absl::StrAppend(&shown, "...");
  return absl::StrCat("\"", shown, "\"");
}

bool IsPrintableNonSpace(unsigned char c) { return c >= 0x21 && c <= 0x7e; }

absl::Status CheckPrintable(absl::string_view what, absl::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (!IsPrintableNonSpace(c)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s %s has byte 0x%02x at offset %d; only printable ASCII without "
          "whitespace (0x21-0x7e) is allowed",
          what, Quote(text), c, i));
    }
  }
  return absl::OkStatus();
}

// Describes the first rule `subject` breaks; called only once the fast scan
// in ValidateSubject has found a problem, so it may be slow.
absl::Status DescribeSubjectError(absl::string_view subject,
                                  bool allow_wildcards) {
  if (absl::Status s = CheckPrintable("subject", subject); !s.ok()) return s;
  size_t token_start = 0;
  int token_number = 1;
  while (true) {
    size_t dot = subject.find('.', token_start);
    const bool last = dot == absl::string_view::npos;
    absl::string_view token = subject.substr(
        token_start, last ? absl::string_view::npos : dot - token_start);
    if (token.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "subject %s has an empty token %d; tokens between '.' must be "
          "non-empty",
          Quote(subject), token_number));
    }
    if (token == "*" || token == ">") {
      if (!allow_wildcards) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "subject %s token %d is the wildcard '%s'; wildcards are only "
            "allowed when subscribing",
            Quote(subject), token_number, token));
      }
      if (token == ">" && !last) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "subject %s has the wildcard '>' as token %d; '>' is only allowed "
            "as the last token",
            Quote(subject), token_number));
      }
    } else if (token.find_first_of("*>") != absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "subject %s token %d %s mixes a wildcard character with other "
          "characters; '*' and '>' must be whole tokens",
          Quote(subject), token_number, Quote(token)));
    }
    if (last) break;
    token_start = dot + 1;
    ++token_number;
  }
  return absl::InternalError("subject rejected for no known rule");
}

absl::Status ValidateSubject(absl::string_view subject,
                             const MessageLimits& limits,
                             bool allow_wildcards) {
  if (subject.empty()) {
    return absl::InvalidArgumentError("subject is empty");
  }
  if (subject.size() > limits.max_subject_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "subject %s is %d bytes long; the limit is %d "
        "(MessageLimits::max_subject_bytes)",
        Quote(subject), subject.size(), limits.max_subject_bytes));
  }
  // One pass over the bytes (this runs for every message sent); the error
  // message is worked out separately, only when something is wrong.
  size_t token_length = 0;
  bool token_has_wildcard = false;
  bool previous_was_gt = false;  // the last complete token was ">"
  bool ok = true;
  for (size_t i = 0; i <= subject.size() && ok; ++i) {
    const bool end = i == subject.size();
    const unsigned char c = end ? '.' : static_cast<unsigned char>(subject[i]);
    if (c == '.') {
      if (token_length == 0 || previous_was_gt) {
        ok = false;
      } else if (token_has_wildcard) {
        const char first = subject[i - token_length];
        ok = allow_wildcards && token_length == 1;
        previous_was_gt = first == '>';
      }
      token_length = 0;
      token_has_wildcard = false;
    } else if (!IsPrintableNonSpace(c)) {
      ok = false;
    } else {
      token_has_wildcard |= (c == '*' || c == '>');
      ++token_length;
    }
  }
  if (ok) return absl::OkStatus();
  return DescribeSubjectError(subject, allow_wildcards);
}

bool IsTokenChar(unsigned char c) {
  // RFC 7230 section 3.2.6 tchar.
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
      (c >= 'A' && c <= 'Z')) {
    return true;
  }
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

}  // namespace

absl::Status ValidatePublishSubject(absl::string_view subject,
                                    const MessageLimits& limits) {
  return ValidateSubject(subject, limits, /*allow_wildcards=*/false);
}

absl::Status ValidateSubscribeSubject(absl::string_view subject,
                                      const MessageLimits& limits) {
  return ValidateSubject(subject, limits, /*allow_wildcards=*/true);
}

absl::Status ValidateQueueGroup(absl::string_view queue_group,
                                const MessageLimits& limits) {
  if (queue_group.empty()) return absl::OkStatus();
  if (queue_group.size() > limits.max_subject_bytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "queue group %s is %d bytes long; the limit is %d "
        "(MessageLimits::max_subject_bytes)",
        Quote(queue_group), queue_group.size(), limits.max_subject_bytes));
  }
  if (absl::Status s = CheckPrintable("queue group", queue_group); !s.ok()) {
    return s;
  }
  if (queue_group.find_first_of("*>") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "queue group %s contains a wildcard character; '*' and '>' are not "
        "allowed in queue group names",
        Quote(queue_group)));
  }
  return absl::OkStatus();
}

absl::Status ValidateHeaderKey(absl::string_view key,
                               const MessageLimits& limits) {
  if (key.empty()) return absl::InvalidArgumentError("header key is empty");
  if (key.size() > limits.max_header_key_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("header key %s is %d bytes long; the limit is %d "
                        "(MessageLimits::max_header_key_bytes)",
                        Quote(key), key.size(), limits.max_header_key_bytes));
  }
  for (size_t i = 0; i < key.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(key[i]);
    if (!IsTokenChar(c)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "header key %s has byte 0x%02x at offset %d; keys must be RFC 7230 "
          "tokens (letters, digits and !#$%%&'*+-.^_`|~)",
          Quote(key), c, i));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateHeaderValue(absl::string_view value,
                                 const MessageLimits& limits) {
  if (value.size() > limits.max_header_value_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("header value of %d bytes exceeds the limit of %d "
                        "(MessageLimits::max_header_value_bytes)",
                        value.size(), limits.max_header_value_bytes));
  }
  for (size_t i = 0; i < value.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "header value %s has control byte 0x%02x at offset %d; CR, LF, NUL "
          "and other control characters would break the NATS header block",
          Quote(value), c, i));
    }
  }
  if (value.empty()) {
    // nats.c 3.4.1 cannot read an empty value back: its header parser takes
    // the next line as the value, and an empty last header makes it drop the
    // whole header block (trace, message ID and deadline with it).
    return absl::InvalidArgumentError(
        "header value is empty; nats.c cannot read an empty header value "
        "back (omit the header instead)");
  }
  if (value.front() == ' ' || value.front() == '\t' || value.back() == ' ' ||
      value.back() == '\t') {
    return absl::InvalidArgumentError(absl::StrFormat(
        "header value %s has leading or trailing whitespace, which NATS "
        "parsers strip",
        Quote(value)));
  }
  return absl::OkStatus();
}

std::string SanitizeHeaderValue(absl::string_view text, size_t max_bytes) {
  std::string out(text.substr(0, max_bytes));
  for (char& c : out) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = ' ';
  }
  absl::StripAsciiWhitespace(&out);
  return out;
}

absl::Status ValidateApplicationHeaders(const Headers& headers,
                                        const MessageLimits& limits) {
  if (headers.size() > limits.max_header_count) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d headers exceed the limit of %d (MessageLimits::max_header_count)",
        headers.size(), limits.max_header_count));
  }
  for (const HeaderField& field : headers) {
    if (absl::Status s = ValidateHeaderKey(field.key, limits); !s.ok()) {
      return s;
    }
    if (IsReservedHeader(field.key)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "header key %s is reserved: natsgw sets traceparent, tracestate, "
          "Nats-Msg-Id, Nats-Service-Error*, Status, Description and Natsgw-* "
          "itself (use the trace/message_id options instead)",
          Quote(field.key)));
    }
    if (absl::Status s = ValidateHeaderValue(field.value, limits); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("header ", Quote(field.key), ": ", s.message()));
    }
  }
  // nats.c 3.4.1's header table finds a key by comparing only as many bytes
  // as the key being looked up has, so a key that is a proper prefix of
  // another key in the same message ("Tena" and "Tenant", "trace" and
  // natsgw's "traceparent") is merged into it on receipt and lost. The
  // header count is bounded by max_header_count, so the pairwise scan is
  // cheap.
  for (auto it = headers.begin(); it != headers.end(); ++it) {
    const absl::string_view key = it->key;
    for (absl::string_view own : kHeadersNatsgwWrites) {
      if (key.size() < own.size() && absl::StartsWithIgnoreCase(own, key)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "header key %s is a prefix of natsgw's header %s; nats.c would "
            "merge the two on receipt (a key must not be a prefix of another)",
            Quote(key), own));
      }
    }
    for (auto later = std::next(it); later != headers.end(); ++later) {
      const absl::string_view other = later->key;
      const bool prefix =
          key.size() < other.size()   ? absl::StartsWithIgnoreCase(other, key)
          : other.size() < key.size() ? absl::StartsWithIgnoreCase(key, other)
                                      : false;
      if (prefix) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "header keys %s and %s: one is a prefix of the other, and nats.c "
            "would merge them on receipt (a key must not be a prefix of "
            "another)",
            Quote(key), Quote(other)));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateMessageId(absl::string_view message_id) {
  constexpr size_t kMaxMessageIdBytes = 128;
  if (message_id.empty()) {
    return absl::InvalidArgumentError("message ID is empty");
  }
  if (message_id.size() > kMaxMessageIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("message ID is %d bytes long; the limit is %d",
                        message_id.size(), kMaxMessageIdBytes));
  }
  return CheckPrintable("message ID", message_id);
}

}  // namespace natsgw
