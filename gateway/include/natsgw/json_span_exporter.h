// natsgw/json_span_exporter.h: a SpanSink (natsgw/span_sink.h) that writes
// every ended span as one JSON object per line ("JSON lines"), to a file or a
// stream, for jq, log shippers or a later import into a tracing backend.
//
//   NATSGW_ASSIGN_OR_RETURN(
//       std::shared_ptr<natsgw::JsonLinesSpanExporter> spans,
//       natsgw::JsonLinesSpanExporter::Create("/var/log/users/spans.jsonl",
//                                            "user-service"));
//   options.span_sink = spans;   // natsgw::ConnectionOptions
//
//   $ jq -c 'select(.trace_id == "4bf92f35...")' spans.jsonl
//
// One line (wrapped here):
//
//   {"name":"users.Users/RegisterUser","kind":"client",
//    "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",
//    "span_id":"00f067aa0ba902b7","parent_span_id":"",
//    "trace_state":"","sampled":true,
//    "start_time":"2024-05-01T12:00:00.000001234Z",
//    "start_time_unix_nano":1714564800000001234,
//    "end_time_unix_nano":1714564800000351234,"duration_ns":350000,
//    "status":{"code":"OK","message":""},
//    "attributes":{"messaging.system":"nats","rpc.method":"...",...},
//    "links":[],"service.name":"user-service"}
//
// Fields: every field is always present. `kind` is SpanKindName(). IDs are
// lower-case hex; `parent_span_id` is "" for a root span. Times are UTC:
// `start_time` is RFC 3339 with nanoseconds for people, the *_unix_nano
// integers are for programs (they exceed 2^53: read them as 64-bit
// integers, not doubles). `status.code` is the canonical absl::StatusCode
// name. `attributes` keeps each value's JSON type (string, integer, number,
// boolean). `links` holds {"trace_id","span_id","trace_state"} objects.
// `service.name` is the name given to Create (omitted when empty), so that
// the lines of several services can share one file.
//
// Writing: each span is one write of one complete line (text + '\n') made
// under a lock, so lines of concurrent spans never interleave; a file is
// opened for appending (O_APPEND), so several exporters or processes may
// append to the same file without interleaving lines either. Every line is
// handed to the operating system (file) or flushed (stream) at once, so a
// crash loses nothing already written. A failed write is counted in
// write_errors() and otherwise ignored: tracing never fails a message.
//
// Thread-safety: thread-safe; OnEnd may be called concurrently.
#ifndef NATSGW_JSON_SPAN_EXPORTER_H_
#define NATSGW_JSON_SPAN_EXPORTER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "natsgw/span_sink.h"

namespace natsgw {

class JsonLinesSpanExporter : public SpanSink {
 public:
  // Appends to the file at `path`, creating it (mode 0644) if missing.
  // INVALID_ARGUMENT for an empty path; the open error's code (e.g.
  // NOT_FOUND for a missing directory, PERMISSION_DENIED) otherwise.
  static absl::StatusOr<std::unique_ptr<JsonLinesSpanExporter>> Create(
      absl::string_view path, absl::string_view service_name = {});

  // Writes to `out`, which must outlive the exporter (e.g. std::cout).
  static std::unique_ptr<JsonLinesSpanExporter> ToStream(
      std::ostream& out, absl::string_view service_name = {});

  ~JsonLinesSpanExporter() override;

  JsonLinesSpanExporter(const JsonLinesSpanExporter&) = delete;
  JsonLinesSpanExporter& operator=(const JsonLinesSpanExporter&) = delete;

  void OnEnd(const SpanData& span) override;

  // The line OnEnd writes for `span`, without the trailing newline.
  static std::string ToJsonLine(const SpanData& span,
                                absl::string_view service_name = {});

  // Spans whose line could not be written.
  int64_t write_errors() const {
    return write_errors_.load(std::memory_order_relaxed);
  }

 private:
  JsonLinesSpanExporter(int fd, std::ostream* stream,
                        absl::string_view service_name);

  void Write(const std::string& line);

  const int fd_;                // -1 when writing to stream_
  std::ostream* const stream_;  // null when writing to fd_
  const std::string service_name_;
  std::mutex mu_;  // one line at a time (guards the stream / fd writes)
  std::atomic<int64_t> write_errors_{0};
};

}  // namespace natsgw

#endif  // NATSGW_JSON_SPAN_EXPORTER_H_
