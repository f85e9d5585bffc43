#include "natsgw/logger.h"

#include <cstdio>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "natsgw/redact.h"

namespace natsgw {

void Logger::LogStructured(const LogRecord& record) {
  std::string text(record.message);
  for (LogField field : record.fields) {
    // Masked here because the sink's Log() may not redact at all.
    if (IsSecretKey(field.key)) field.value = kRedacted;
    const bool quote =
        field.value.empty() ||
        field.value.find_first_of(" \t\r\n\"=") != absl::string_view::npos;
    if (quote) {
      absl::StrAppend(&text, " ", field.key, "=\"", absl::CEscape(field.value),
                      "\"");
    } else {
      absl::StrAppend(&text, " ", field.key, "=", field.value);
    }
  }
  Log(record.severity, text);
}

void StderrLogger::Log(absl::LogSeverity severity, absl::string_view message) {
  if (severity < min_severity_) return;
  // One fwrite of a complete line so concurrent entries do not interleave
  // even when other code writes to stderr without this mutex.
  std::string line = absl::StrCat(severity < absl::LogSeverity::kInfo
                                      ? "DEBUG"
                                      : absl::LogSeverityName(severity),
                                  " natsgw: ", RedactSecrets(message), "\n");
  std::lock_guard<std::mutex> lock(mu_);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace natsgw
