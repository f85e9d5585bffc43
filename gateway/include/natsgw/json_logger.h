// natsgw/json_logger.h: a Logger that writes one JSON object per line.
//
// The default sink of natsgw services: machine-readable lines that log
// collectors (Loki, Elasticsearch, Cloud Logging, `jq`) parse without
// configuration, joined to traces by `trace_id`:
//
//   {"ts":"2024-05-01T09:30:12.345678Z","level":"warning",
//    "logger":"user-service","msg":"disconnected from NATS (rpc connection)",
//    "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}
//
// (one line in the output). Members, in this order:
//   ts        RFC 3339 UTC time with microseconds.
//   level     "debug" (below kInfo, see kDebugSeverity), "info", "warning",
//             "error" or "fatal". Writing a fatal entry does not abort.
//   logger    JsonLoggerOptions::name, e.g. the service name.
//   msg       the message, with secrets masked by RedactSecrets().
//   trace_id, span_id
//             32 and 16 lower-case hex digits of CurrentTraceContext() on
//             the logging thread (inside a natsgw handler: the handled
//             message's trace); absent when the thread has no trace.
//   truncated true, only when msg was cut at max_message_bytes.
// LogStructured() adds its fields as further string members (values
// redacted too, and masked whole under a key that names a secret, see
// IsSecretKey()); a field named like one of the members above is written as
// "field_<name>" instead.
//
//   auto logger = std::make_shared<natsgw::JsonLogger>(
//       natsgw::JsonLoggerOptions{.name = "user-service"});  // stderr
//   absl::StatusOr<std::unique_ptr<natsgw::JsonLogger>> file =
//       natsgw::JsonLogger::Create("/var/log/users.jsonl", {.name = "users"});
//
// Thread-safety: thread-safe. Each entry is formatted outside the lock and
// written with one write(2) of the whole line under it, so lines from
// concurrent threads never interleave, and a file opened by Create() is in
// append mode, so several processes may share it.
#ifndef NATSGW_JSON_LOGGER_H_
#define NATSGW_JSON_LOGGER_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/log_severity.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "natsgw/logger.h"

namespace natsgw {

struct JsonLoggerOptions {
  // The "logger" member: who is logging, e.g. the service name.
  std::string name = "natsgw";
  // Entries below this severity are dropped (kDebugSeverity keeps all).
  absl::LogSeverity min_severity = absl::LogSeverity::kInfo;
  // Longer messages are cut to this many bytes (after redaction) and marked
  // "truncated": true, so that one entry cannot produce an unbounded line.
  size_t max_message_bytes = 64 * 1024;
};

class JsonLogger final : public Logger {
 public:
  // Writes to `out` (default stderr), which must outlive the logger and is
  // not closed by it. Anything buffered in `out` by other writers is flushed
  // before each line, so lines keep their order relative to them.
  explicit JsonLogger(JsonLoggerOptions options = {}, std::FILE* out = stderr);

  // Appends to the file at `path`, creating it (mode 0640) if needed.
  // Fails (with the errno text) if it cannot be opened for writing.
  static absl::StatusOr<std::unique_ptr<JsonLogger>> Create(
      const std::string& path, JsonLoggerOptions options = {});

  JsonLogger(const JsonLogger&) = delete;
  JsonLogger& operator=(const JsonLogger&) = delete;
  ~JsonLogger() override;

  void Log(absl::LogSeverity severity, absl::string_view message) override;
  void LogStructured(const LogRecord& record) override;

  const JsonLoggerOptions& options() const { return options_; }

  // Lines that could not be written (a failed write(2), e.g. a full disk or
  // a closed pipe); such entries are dropped, and counted here.
  uint64_t failed_writes() const {
    return failed_writes_.load(std::memory_order_relaxed);
  }

 private:
  JsonLogger(JsonLoggerOptions options, std::FILE* stream, int fd,
             bool owns_fd);
  void Write(const std::string& line);

  const JsonLoggerOptions options_;
  // Flushed before each write; null for a file opened by Create().
  std::FILE* const stream_;
  const int fd_;
  const bool owns_fd_;
  std::mutex mu_;  // serializes writes to fd_
  std::atomic<uint64_t> failed_writes_{0};
};

}  // namespace natsgw

#endif  // NATSGW_JSON_LOGGER_H_
