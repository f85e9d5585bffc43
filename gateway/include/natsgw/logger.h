// natsgw/logger.h: the sink natsgw writes its own diagnostics to.
//
// Connection events (disconnect, reconnect, slow consumer, permission
// violation) and handler failures go to the Logger in ConnectionOptions;
// without one, warnings and errors go to stderr as JSON lines (JsonLogger),
// and a NullLogger silences natsgw. main() chooses:
//
//   options.logger = std::make_shared<natsgw::JsonLogger>(
//       natsgw::JsonLoggerOptions{.name = "user-service"});  // JSON lines
//   options.logger = std::make_shared<natsgw::StderrLogger>(
//       absl::LogSeverity::kInfo);                           // plain text
//
// To plug in another sink, implement Log(severity, message); override
// LogStructured() as well to receive key/value fields unflattened. Secrets
// (passwords, tokens, NKey seeds, JWTs, creds files) must not reach a log
// line: the built-in sinks pass every message through RedactSecrets()
// (natsgw/redact.h), and so should yours.
//
// Thread-safety: Log() and LogStructured() are called from natsgw's internal
// threads (nats.c callback and delivery threads) concurrently;
// implementations must be thread-safe and should not block for long.
#ifndef NATSGW_LOGGER_H_
#define NATSGW_LOGGER_H_

#include <memory>
#include <mutex>
#include <span>

#include "absl/base/log_severity.h"
#include "absl/strings/string_view.h"

namespace natsgw {

// A severity below absl::LogSeverity::kInfo, for detail that is off by
// default. absl::LogSeverity has no debug level; sinks that name levels call
// every severity below kInfo "debug". natsgw itself logs nothing below kInfo.
inline constexpr absl::LogSeverity kDebugSeverity =
    static_cast<absl::LogSeverity>(-1);

// One key/value pair of a structured entry, e.g. {"subject", "users.Get"}.
struct LogField {
  absl::string_view key;
  absl::string_view value;
};

// A structured entry. The views are valid only for the duration of the
// LogStructured() call that receives it.
struct LogRecord {
  absl::LogSeverity severity = absl::LogSeverity::kInfo;
  absl::string_view message;
  std::span<const LogField> fields;
};

class Logger {
 public:
  virtual ~Logger() = default;

  virtual void Log(absl::LogSeverity severity, absl::string_view message) = 0;

  // A structured entry. The default appends the fields to the message as
  // ` key=value` (values with spaces, quotes or '=' in double quotes; the
  // value of a key naming a secret, see IsSecretKey(), masked) and calls
  // Log(), so every Logger accepts structured entries; JsonLogger writes the
  // fields as members of the JSON object instead.
  virtual void LogStructured(const LogRecord& record);
};

// Discards everything. The default when no logger is configured.
class NullLogger final : public Logger {
 public:
  void Log(absl::LogSeverity, absl::string_view) override {}
  void LogStructured(const LogRecord&) override {}
};

// Writes one line per entry to stderr ("WARNING natsgw: <message>"), with
// secrets masked by RedactSecrets(), dropping entries below `min_severity`.
// Lines from concurrent threads never interleave.
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
