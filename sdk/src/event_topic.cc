#include "natsgw/event_topic.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "flatbuffers/flatbuffers.h"

namespace natsgw {
namespace {

// Splits off the first '.'-separated token of `rest`, consuming it and the
// separator.
absl::string_view NextToken(absl::string_view& rest) {
  const size_t dot = rest.find('.');
  absl::string_view token = rest.substr(0, dot);
  rest = dot == absl::string_view::npos ? absl::string_view()
                                        : rest.substr(dot + 1);
  return token;
}

}  // namespace

bool SubjectMatches(absl::string_view pattern, absl::string_view subject) {
  if (pattern.empty() || subject.empty()) return false;
  absl::string_view p = pattern;
  absl::string_view s = subject;
  // A trailing '.' leaves an empty last token that NextToken cannot tell
  // from the end, so track the ends explicitly.
  bool p_done = false;
  bool s_done = false;
  while (!p_done) {
    p_done = p.find('.') == absl::string_view::npos;
    const absl::string_view pt = NextToken(p);
    if (s_done) return false;  // The pattern has more tokens.
    s_done = s.find('.') == absl::string_view::npos;
    const absl::string_view st = NextToken(s);
    // '>' matches this token and everything after it.
    if (pt == ">" && p_done) return true;
    if (pt != "*" && pt != st) return false;
  }
  return s_done;
}

bool IsSubjectTemplate(absl::string_view subject) {
  absl::string_view rest = subject;
  while (!rest.empty()) {
    const absl::string_view token = NextToken(rest);
    if (token == "*" || token == ">") return true;
  }
  return false;
}

absl::Status ValidateEventTopic(absl::string_view subject,
                                absl::string_view file_identifier,
                                const MessageLimits& limits) {
  if (absl::Status s = ValidateSubscribeSubject(subject, limits); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("event topic: ", s.message()));
  }
  if (file_identifier.size() != flatbuffers::kFileIdentifierLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "event topic '", subject, "': the file identifier \"",
        absl::CHexEscape(file_identifier), "\" does not have 4 characters"));
  }
  return absl::OkStatus();
}

}  // namespace natsgw
