#include "natsgw/redact.h"

#include <cstddef>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace natsgw {
namespace {

constexpr size_t kNpos = absl::string_view::npos;

// Starts every mask, kRedacted and the "[REDACTED <label>]" of a block alike:
// text that starts with it is not masked again.
constexpr absl::string_view kMaskPrefix = "[REDACTED";

// NKey seeds: 'S', a key-type letter, then base32; 58 characters in all
// (https://github.com/nats-io/nkeys).
constexpr size_t kSeedLength = 58;

// Debian's Abseil has its own string_view, which std::string cannot append.
void Append(std::string& out, absl::string_view s) {
  out.append(s.data(), s.size());
}

bool IsAlnum(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c));
}

bool IsBase32(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
}

bool IsBase64Url(char c) { return IsAlnum(c) || c == '-' || c == '_'; }

bool IsSeedType(char c) {
  return c == 'U' || c == 'A' || c == 'O' || c == 'N' || c == 'C' || c == 'X';
}

// `text` at `i` starts with `word` (lower case), ignoring case.
bool StartsWithLower(absl::string_view text, size_t i, absl::string_view word) {
  if (text.size() - i < word.size()) return false;
  for (size_t k = 0; k < word.size(); ++k) {
    if (absl::ascii_tolower(static_cast<unsigned char>(text[i + k])) !=
        word[k]) {
      return false;
    }
  }
  return true;
}

// A seed starts at `i` (checked: boundary before, exact length, boundary
// after).
bool SeedAt(absl::string_view t, size_t i) {
  if (i + kSeedLength > t.size()) return false;
  if (t[i] != 'S' || !IsSeedType(t[i + 1])) return false;
  if (i > 0 && IsAlnum(t[i - 1])) return false;
  for (size_t k = i; k < i + kSeedLength; ++k) {
    if (!IsBase32(t[k])) return false;
  }
  return i + kSeedLength == t.size() || !IsAlnum(t[i + kSeedLength]);
}

// Substrings that make a key name a secret (key lower-cased).
constexpr absl::string_view kSecretKeyParts[] = {
    "password", "passwd",      "passphrase",    "secret",
    "token",    "credential",  "authorization", "apikey",
    "api_key",  "private_key", "privatekey"};

// Whole components (split at '_', '-', '.') that make a key name a secret.
constexpr absl::string_view kSecretKeyComponents[] = {"pass", "pwd",  "seed",
                                                      "jwt",  "auth", "creds"};

bool IsKeyChar(char c) {
  return IsAlnum(c) || c == '_' || c == '-' || c == '.';
}

// Ends an unquoted value. Deliberately short: a value is masked up to here,
// so stopping early would leave the rest of a secret in the output.
bool IsValueEnd(char c) {
  return absl::ascii_isspace(static_cast<unsigned char>(c)) || c == ',' ||
         c == ';' || c == '&' || c == '"' || c == '\'' || c == ')' ||
         c == '}' || c == ']';
}

// Ends the authority part of a URL.
bool IsAuthorityEnd(char c) {
  return absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '/' ||
         c == '?' || c == '#' || c == '"' || c == '\'' || c == '<' ||
         c == '>' || c == '`' || c == ',' || c == '\\';
}

// Appends the masked form of `userinfo` (the part before '@' of a URL's
// authority): "user:[REDACTED]" or "[REDACTED]" for a bare token.
void AppendMaskedUserInfo(absl::string_view userinfo, std::string* out) {
  const size_t colon = userinfo.find(':');
  if (colon != kNpos) Append(*out, userinfo.substr(0, colon + 1));
  Append(*out, kRedacted);
}

bool AlreadyMasked(absl::string_view userinfo) {
  return absl::EndsWith(userinfo, kRedacted);
}

bool AllDigits(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// The position of the '@' that ends the user part of the authority starting
// at `start`, or npos when there is none.
size_t FindUserInfoEnd(absl::string_view in, size_t start) {
  size_t end = start;
  while (end < in.size() && !IsAuthorityEnd(in[end])) ++end;
  const absl::string_view authority = in.substr(start, end - start);
  // The last '@': a password with an unescaped '@' is still masked whole.
  const size_t at = authority.rfind('@');
  if (at != kNpos) return at == 0 ? kNpos : start + at;
  // An unescaped '/', '?', '#', ',' or backslash in a password ends the
  // authority early. When what came before looks like "user:password" rather
  // than "host:port", the '@' is looked for up to the next space or quote.
  const size_t colon = authority.find(':');
  if (colon == kNpos || authority[0] == '[' ||
      (colon + 1 < authority.size() &&
       AllDigits(authority.substr(colon + 1)))) {
    return kNpos;
  }
  for (size_t i = end; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '@') return i;
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '"' ||
        c == '\'' || c == '<' || c == '>' || c == '`') {
      break;
    }
  }
  return kNpos;
}

// Each pass rewrites `*text` only when it finds something to mask.

// -----BEGIN <LABEL>----- ... -----END <LABEL>----- (NATS creds files write
// six dashes around END; extra dashes are swallowed).
void RedactArmoredBlocks(std::string* text) {
  static constexpr absl::string_view kBegin = "-----BEGIN ";
  absl::string_view in = *text;
  if (in.find(kBegin) == kNpos) return;
  std::string out;
  size_t copied = 0;
  size_t search = 0;
  size_t begin;
  while ((begin = in.find(kBegin, search)) != kNpos) {
    const size_t label_start = begin + kBegin.size();
    const size_t label_end = in.find("-----", label_start);
    if (label_end == kNpos || label_end - label_start > 64 ||
        in.substr(label_start, label_end - label_start).find('\n') != kNpos) {
      search = label_start;
      continue;
    }
    const absl::string_view label =
        in.substr(label_start, label_end - label_start);
    const std::string end_marker = absl::StrCat("END ", label, "-----");
    size_t block_end = in.find(end_marker, label_end + 5);
    if (block_end == kNpos) {
      block_end = in.size();
    } else {
      block_end += end_marker.size();
      while (block_end < in.size() && in[block_end] == '-') ++block_end;
    }
    size_t block_start = begin;
    while (block_start > copied && in[block_start - 1] == '-') --block_start;
    Append(out, in.substr(copied, block_start - copied));
    absl::StrAppend(&out, "[REDACTED ", label, "]");
    copied = block_end;
    search = block_end;
  }
  if (copied == 0) return;
  Append(out, in.substr(copied));
  *text = std::move(out);
}

// scheme://userinfo@host
void RedactUrlUserInfo(std::string* text) {
  absl::string_view in = *text;
  if (in.find("://") == kNpos || in.find('@') == kNpos) return;
  std::string out;
  size_t copied = 0;
  size_t search = 0;
  size_t scheme_end;
  while ((scheme_end = in.find("://", search)) != kNpos) {
    const size_t start = scheme_end + 3;
    search = start;
    const size_t at = FindUserInfoEnd(in, start);
    if (at == kNpos) continue;
    search = at;
    const absl::string_view userinfo = in.substr(start, at - start);
    if (AlreadyMasked(userinfo)) continue;
    Append(out, in.substr(copied, start - copied));
    AppendMaskedUserInfo(userinfo, &out);
    copied = at;  // from the '@' on
  }
  if (copied == 0) return;
  Append(out, in.substr(copied));
  *text = std::move(out);
}

// eyJ<base64url>.<base64url>.<base64url>
void RedactJwts(std::string* text) {
  absl::string_view in = *text;
  if (in.find("eyJ") == kNpos) return;
  std::string out;
  size_t copied = 0;
  size_t search = 0;
  size_t begin;
  while ((begin = in.find("eyJ", search)) != kNpos) {
    search = begin + 3;
    if (begin > 0 && IsBase64Url(in[begin - 1])) continue;
    size_t i = begin;
    size_t part_length[3] = {0, 0, 0};
    int part = 0;
    for (; i < in.size(); ++i) {
      if (IsBase64Url(in[i])) {
        ++part_length[part];
      } else if (in[i] == '.' && part < 2) {
        ++part;
      } else {
        break;
      }
    }
    // A header of at least {"alg":..} and a non-empty payload; the
    // signature may be empty (alg "none").
    if (part != 2 || part_length[0] < 10 || part_length[1] < 2) continue;
    Append(out, in.substr(copied, begin - copied));
    Append(out, kRedacted);
    copied = i;
    search = i;
  }
  if (copied == 0) return;
  Append(out, in.substr(copied));
  *text = std::move(out);
}

void RedactSeeds(std::string* text) {
  absl::string_view in = *text;
  std::string out;
  size_t copied = 0;
  bool found = false;
  for (size_t i = in.find('S'); i != kNpos; i = in.find('S', i + 1)) {
    if (!SeedAt(in, i)) continue;
    found = true;
    Append(out, in.substr(copied, i - copied));
    Append(out, kRedacted);
    copied = i + kSeedLength;
    i = copied - 1;
  }
  if (!found) return;
  Append(out, in.substr(copied));
  *text = std::move(out);
}

// key=value, key: value, "key": "value", 'key': 'value', and the same with
// the quotes escaped (JSON inside a string).
void RedactKeyValues(std::string* text) {
  absl::string_view in = *text;
  std::string out;
  size_t copied = 0;
  bool found = false;
  for (size_t i = 0; i < in.size(); ++i) {
    const char sep = in[i];
    if (sep != '=' && sep != ':') continue;
    if (sep == ':' && in.substr(i + 1, 2) == "//") continue;  // a URL scheme
    // The key: back over spaces, an optional (escaped) closing quote, then
    // key characters.
    size_t k = i;
    while (k > copied && in[k - 1] == ' ') --k;
    if (k > copied && (in[k - 1] == '"' || in[k - 1] == '\'')) {
      --k;
      if (k > copied && in[k - 1] == '\\') --k;
    }
    const size_t key_end = k;
    while (k > copied && IsKeyChar(in[k - 1])) --k;
    if (!IsSecretKey(in.substr(k, key_end - k))) continue;

    size_t v = i + 1;
    while (v < in.size() && in[v] == ' ') ++v;
    if (v >= in.size()) continue;
    size_t value_start;
    size_t value_end;
    if (in[v] == '"' || in[v] == '\'') {
      const char quote = in[v];
      value_start = v + 1;
      value_end = value_start;
      while (value_end < in.size() && in[value_end] != quote) {
        value_end += (quote == '"' && in[value_end] == '\\') ? 2 : 1;
      }
      if (value_end > in.size()) value_end = in.size();
    } else if (in.substr(v, 2) == "\\\"") {
      value_start = v + 2;
      value_end = in.find("\\\"", value_start);
      if (value_end == kNpos) value_end = in.size();
    } else {
      value_start = v;
      value_end = v;
      while (value_end < in.size() && !IsValueEnd(in[value_end])) ++value_end;
      // "Authorization: Bearer <credential>": the scheme stays readable.
      const absl::string_view word = in.substr(v, value_end - v);
      if ((absl::EqualsIgnoreCase(word, "bearer") ||
           absl::EqualsIgnoreCase(word, "basic")) &&
          value_end + 1 < in.size() && in[value_end] == ' ' &&
          !IsValueEnd(in[value_end + 1])) {
        value_start = value_end + 1;
        value_end = value_start;
        while (value_end < in.size() && !IsValueEnd(in[value_end])) {
          ++value_end;
        }
      }
    }
    if (value_end <= value_start) continue;
    if (absl::StartsWith(in.substr(value_start), kMaskPrefix)) continue;
    found = true;
    Append(out, in.substr(copied, value_start - copied));
    Append(out, kRedacted);
    copied = value_end;
    i = value_end - 1;
  }
  if (!found) return;
  Append(out, in.substr(copied));
  *text = std::move(out);
}

// Whether a secret-naming key may start at `i` (a superset of
// IsSecretKey's rules: the start of each of its words).
bool KeyHintAt(absl::string_view text, size_t i) {
  switch (absl::ascii_tolower(static_cast<unsigned char>(text[i]))) {
    case 'a':
      return StartsWithLower(text, i, "auth") ||
             StartsWithLower(text, i, "apikey") ||
             StartsWithLower(text, i, "api_key");
    case 'c':
      return StartsWithLower(text, i, "cred");
    case 'j':
      return StartsWithLower(text, i, "jwt");
    case 'p':
      return StartsWithLower(text, i, "pass") ||
             StartsWithLower(text, i, "pwd") ||
             StartsWithLower(text, i, "private_key") ||
             StartsWithLower(text, i, "privatekey");
    case 's':
      return StartsWithLower(text, i, "secret") ||
             StartsWithLower(text, i, "seed");
    case 't':
      return StartsWithLower(text, i, "token");
    default:
      return false;
  }
}

}  // namespace

bool IsSecretKey(absl::string_view key) {
  if (key.empty() || key.size() > 64) return false;
  const std::string lower = absl::AsciiStrToLower(key);
  for (absl::string_view part : kSecretKeyParts) {
    if (absl::StrContains(lower, part)) return true;
  }
  for (absl::string_view component :
       absl::StrSplit(lower, absl::ByAnyChar("_-."))) {
    for (absl::string_view secret : kSecretKeyComponents) {
      if (component == secret) return true;
    }
  }
  return false;
}

bool MayContainSecrets(absl::string_view text) {
  // One pass: most lines have none of the triggers, and this runs for every
  // line logged.
  bool scheme = false;     // "://"
  bool at = false;         // '@'
  bool separator = false;  // '=' or ':'
  bool key_hint = false;   // a word that may start a secret-naming key
  for (size_t i = 0; i < text.size(); ++i) {
    switch (text[i]) {
      case '@':
        at = true;
        break;
      case ':':
        separator = true;
        if (absl::StartsWith(text.substr(i), "://")) scheme = true;
        break;
      case '=':
        separator = true;
        break;
      case 'e':
        if (absl::StartsWith(text.substr(i), "eyJ")) return true;
        break;
      case '-':
        if (absl::StartsWith(text.substr(i), "-----BEGIN ")) return true;
        break;
      case 'S':
        if (SeedAt(text, i)) return true;
        break;
      default:
        break;
    }
    if (!key_hint && KeyHintAt(text, i)) key_hint = true;
  }
  return (scheme && at) || (separator && key_hint);
}

std::string RedactSecrets(absl::string_view text) {
  std::string out(text);
  if (!MayContainSecrets(text)) return out;
  // Blocks first: they hold a JWT and a seed that would otherwise be masked
  // piecemeal, leaving the block's structure behind.
  RedactArmoredBlocks(&out);
  RedactUrlUserInfo(&out);
  RedactJwts(&out);
  RedactSeeds(&out);
  RedactKeyValues(&out);
  return out;
}

std::string RedactUrl(absl::string_view url) {
  // nats.c accepts several URLs separated by commas. Within one URL the user
  // part runs to the last '@', wherever it is: the text is known to be a URL,
  // so a password with spaces, '/' or '#' is masked whole too.
  std::string out;
  bool first = true;
  for (absl::string_view piece : absl::StrSplit(url, ',')) {
    if (!first) out.push_back(',');
    first = false;
    const size_t scheme_end = piece.find("://");
    const size_t start = scheme_end == kNpos ? 0 : scheme_end + 3;
    const size_t at = piece.rfind('@');
    if (at == kNpos || at <= start ||
        AlreadyMasked(piece.substr(start, at - start))) {
      Append(out, piece);
      continue;
    }
    Append(out, piece.substr(0, start));
    AppendMaskedUserInfo(piece.substr(start, at - start), &out);
    Append(out, piece.substr(at));
  }
  return RedactSecrets(out);
}

}  // namespace natsgw
