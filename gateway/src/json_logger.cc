#include "natsgw/json_logger.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "append_file.h"
#include "natsgw/redact.h"
#include "natsgw/status_macros.h"
#include "natsgw/trace_context.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

using Json = nlohmann::ordered_json;

absl::string_view LevelName(absl::LogSeverity severity) {
  if (severity < absl::LogSeverity::kInfo) return "debug";
  switch (severity) {
    case absl::LogSeverity::kInfo:
      return "info";
    case absl::LogSeverity::kWarning:
      return "warning";
    case absl::LogSeverity::kError:
      return "error";
    default:
      return "fatal";
  }
}

bool IsReservedMember(absl::string_view key) {
  return key == "ts" || key == "level" || key == "logger" || key == "msg" ||
         key == "trace_id" || key == "span_id" || key == "truncated";
}

// Cuts `text` to at most `max` bytes without splitting a UTF-8 sequence.
void Truncate(std::string& text, size_t max) {
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  text.resize(cut);
}

}  // namespace

JsonLogger::JsonLogger(JsonLoggerOptions options, std::FILE* out)
    : JsonLogger(std::move(options), out, out != nullptr ? fileno(out) : -1,
                 /*owns_fd=*/false) {}

JsonLogger::JsonLogger(JsonLoggerOptions options, std::FILE* stream, int fd,
                       bool owns_fd)
    : options_(std::move(options)),
      stream_(stream),
      fd_(fd),
      owns_fd_(owns_fd) {}

absl::StatusOr<std::unique_ptr<JsonLogger>> JsonLogger::Create(
    const std::string& path, JsonLoggerOptions options) {
  NATSGW_ASSIGN_OR_RETURN(const int fd,
                          internal::OpenForAppend(path, "log file", 0640));
  return std::unique_ptr<JsonLogger>(
      new JsonLogger(std::move(options), nullptr, fd, /*owns_fd=*/true));
}

JsonLogger::~JsonLogger() {
  if (owns_fd_) ::close(fd_);
}

void JsonLogger::Log(absl::LogSeverity severity, absl::string_view message) {
  LogStructured(
      LogRecord{.severity = severity, .message = message, .fields = {}});
}

void JsonLogger::LogStructured(const LogRecord& record) {
  if (record.severity < options_.min_severity) return;
  const absl::Time now = absl::Now();
  std::string message = RedactSecrets(record.message);
  const bool truncated = message.size() > options_.max_message_bytes;
  if (truncated) Truncate(message, options_.max_message_bytes);

  Json entry = Json::object();
  entry["ts"] =
      absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", now, absl::UTCTimeZone());
  entry["level"] = LevelName(record.severity);
  entry["logger"] = options_.name;
  entry["msg"] = std::move(message);
  if (std::optional<TraceContext> trace = CurrentTraceContext();
      trace.has_value() && trace->valid()) {
    entry["trace_id"] = trace->TraceIdHex();
    entry["span_id"] = trace->SpanIdHex();
  }
  if (truncated) entry["truncated"] = true;
  for (const LogField& field : record.fields) {
    const std::string key = IsReservedMember(field.key)
                                ? absl::StrCat("field_", field.key)
                                : std::string(field.key);
    entry[key] = IsSecretKey(field.key) ? std::string(kRedacted)
                                        : RedactSecrets(field.value);
  }
  // Invalid UTF-8 (e.g. bytes of a subject from the wire) becomes U+FFFD
  // rather than an exception.
  std::string line = entry.dump(-1, ' ', /*ensure_ascii=*/false,
                                Json::error_handler_t::replace);
  line.push_back('\n');
  Write(line);
}

void JsonLogger::Write(const std::string& line) {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ < 0) {
    failed_writes_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (stream_ != nullptr) std::fflush(stream_);
  if (!internal::WriteAll(fd_, line)) {
    failed_writes_.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace natsgw
