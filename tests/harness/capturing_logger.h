// harness/capturing_logger.h: a natsgw::Logger that keeps what it is given,
// for tests that check what natsgw reports.
//
//   auto logger = std::make_shared<natsgw::testing::CapturingLogger>();
//   options.logger = logger;
//   ...
//   EXPECT_THAT(logger->Matching("dropped"), SizeIs(1));
//
// Header-only: the test that includes it links natsgw::gateway.
//
// Thread-safety: thread-safe.
#ifndef NATSGW_TESTS_HARNESS_CAPTURING_LOGGER_H_
#define NATSGW_TESTS_HARNESS_CAPTURING_LOGGER_H_

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/log_severity.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "natsgw/logger.h"

namespace natsgw::testing {

class CapturingLogger : public Logger {
 public:
  // Keeps lines at `min_severity` and above.
  explicit CapturingLogger(
      absl::LogSeverity min_severity = absl::LogSeverity::kInfo)
      : min_severity_(min_severity) {}

  void Log(absl::LogSeverity severity, absl::string_view message) override {
    if (severity < min_severity_) return;
    std::lock_guard<std::mutex> lock(mu_);
    lines_.emplace_back(message);
  }

  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mu_);
    return lines_;
  }

  // The lines that mention `text`.
  std::vector<std::string> Matching(absl::string_view text) {
    std::vector<std::string> out;
    for (std::string& line : lines()) {
      if (absl::StrContains(line, text)) out.push_back(std::move(line));
    }
    return out;
  }

 private:
  const absl::LogSeverity min_severity_;
  std::mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_HARNESS_CAPTURING_LOGGER_H_
