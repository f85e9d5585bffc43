#include "natsgw/logger.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"

namespace natsgw {

void StderrLogger::Log(absl::LogSeverity severity, absl::string_view message) {
  if (static_cast<int>(severity) < static_cast<int>(min_severity_)) return;
  // One fwrite of a complete line so concurrent entries do not interleave
  // even when other code writes to stderr without this mutex.
  std::string line =
      absl::StrCat(absl::LogSeverityName(severity), " natsgw: ", message, "\n");
  std::lock_guard<std::mutex> lock(mu_);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace natsgw
