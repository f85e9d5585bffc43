// natsgw/logger.h: the sink natsgw writes its own diagnostics to.
//
// natsgw never writes to stdout/stderr on its own: connection events
// (disconnect, reconnect, slow consumer, permission violation) and handler
// failures go to the Logger passed in ConnectionOptions. main() chooses it:
//
//   options.logger = std::make_shared<natsgw::StderrLogger>(
//       absl::LogSeverity::kInfo);
//
// Thread-safety: Log() is called from natsgw's internal threads (nats.c
// callback and delivery threads) concurrently; implementations must be
// thread-safe and should not block for long.
#ifndef NATSGW_LOGGER_H_
#define NATSGW_LOGGER_H_

#include <memory>
#include <mutex>

#include "absl/base/log_severity.h"
#include "absl/strings/string_view.h"

namespace natsgw {

class Logger {
 public:
  virtual ~Logger() = default;
  virtual void Log(absl::LogSeverity severity, absl::string_view message) = 0;
};

// Discards everything. The default when no logger is configured.
class NullLogger final : public Logger {
 public:
  void Log(absl::LogSeverity, absl::string_view) override {}
};

// Writes one line per entry to stderr ("W natsgw: <message>"), dropping
// entries below `min_severity`. Lines from concurrent threads never interleave.
class StderrLogger final : public Logger {
 public:
  explicit StderrLogger(
      absl::LogSeverity min_severity = absl::LogSeverity::kInfo)
      : min_severity_(min_severity) {}
  void Log(absl::LogSeverity severity, absl::string_view message) override;

 private:
  const absl::LogSeverity min_severity_;
  std::mutex mu_;
};

}  // namespace natsgw

#endif  // NATSGW_LOGGER_H_
