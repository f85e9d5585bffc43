#include "natsgw/json_span_exporter.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <utility>
#include <variant>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "append_file.h"
#include "natsgw/status_macros.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

using Json = nlohmann::json;

// Lower-case hex, as TraceContext::SpanIdHex writes its own span ID.
std::string SpanIdHex(const TraceContext::SpanId& id) {
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(id.data()), id.size()));
}

}  // namespace

JsonLinesSpanExporter::JsonLinesSpanExporter(int fd, std::ostream* stream,
                                             absl::string_view service_name)
    : fd_(fd), stream_(stream), service_name_(service_name) {}

JsonLinesSpanExporter::~JsonLinesSpanExporter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::unique_ptr<JsonLinesSpanExporter>>
JsonLinesSpanExporter::Create(absl::string_view path,
                              absl::string_view service_name) {
  if (path.empty()) {
    return absl::InvalidArgumentError(
        "JsonLinesSpanExporter: the file path is empty");
  }
  NATSGW_ASSIGN_OR_RETURN(
      const int fd,
      internal::OpenForAppend(std::string(path), "span file", 0644));
  return std::unique_ptr<JsonLinesSpanExporter>(
      new JsonLinesSpanExporter(fd, nullptr, service_name));
}

std::unique_ptr<JsonLinesSpanExporter> JsonLinesSpanExporter::ToStream(
    std::ostream& out, absl::string_view service_name) {
  return std::unique_ptr<JsonLinesSpanExporter>(
      new JsonLinesSpanExporter(-1, &out, service_name));
}

std::string JsonLinesSpanExporter::ToJsonLine(const SpanData& span,
                                              absl::string_view service_name) {
  // Insertion order is kept (ordered_json), so lines read naturally: name
  // and IDs first, attributes last.
  nlohmann::ordered_json j;
  j["name"] = span.name;
  j["kind"] = std::string(SpanKindName(span.kind));
  j["trace_id"] = span.context.TraceIdHex();
  j["span_id"] = span.context.SpanIdHex();
  j["parent_span_id"] =
      span.parent_span_id ? SpanIdHex(*span.parent_span_id) : std::string();
  j["trace_state"] = span.context.trace_state();
  j["sampled"] = span.context.sampled();
  j["start_time"] = absl::FormatTime("%Y-%m-%d%ET%H:%M:%E9SZ", span.start,
                                     absl::UTCTimeZone());
  j["start_time_unix_nano"] = absl::ToUnixNanos(span.start);
  j["end_time_unix_nano"] = absl::ToUnixNanos(span.end);
  j["duration_ns"] = absl::ToInt64Nanoseconds(span.end - span.start);
  nlohmann::ordered_json status;
  status["code"] = absl::StatusCodeToString(span.status_code);
  status["message"] = span.status_message;
  j["status"] = std::move(status);
  nlohmann::ordered_json attributes = nlohmann::ordered_json::object();
  for (const auto& [key, value] : span.attributes) {
    std::visit([&, &k = key](const auto& v) { attributes[k] = v; }, value);
  }
  j["attributes"] = std::move(attributes);
  nlohmann::ordered_json links = nlohmann::ordered_json::array();
  for (const TraceContext& link : span.links) {
    links.push_back({{"trace_id", link.TraceIdHex()},
                     {"span_id", link.SpanIdHex()},
                     {"trace_state", link.trace_state()}});
  }
  j["links"] = std::move(links);
  if (!service_name.empty()) j["service.name"] = std::string(service_name);
  // Invalid UTF-8 (a subject or message is arbitrary bytes) is replaced
  // rather than thrown about.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

void JsonLinesSpanExporter::OnEnd(const SpanData& span) {
  std::string line;
  try {
    line = ToJsonLine(span, service_name_);
  } catch (...) {
    write_errors_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  line.push_back('\n');
  Write(line);
}

void JsonLinesSpanExporter::Write(const std::string& line) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stream_ != nullptr) {
    stream_->write(line.data(), static_cast<std::streamsize>(line.size()));
    stream_->flush();
    if (!*stream_) {
      stream_->clear();
      write_errors_.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }
  // One write() per line: with O_APPEND the kernel places it whole at the
  // end of the file, so other writers of the file cannot split it.
  if (!internal::WriteAll(fd_, line)) {
    write_errors_.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace natsgw
