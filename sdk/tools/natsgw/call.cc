// natsgw call <subject> [json]: one request (or --count of them) to the
// method served on the subject, JSON in and out.
#include <unistd.h>

#include <map>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli.h"
#include "flags.h"
#include "load.h"
#include "natsgw/service_error.h"
#include "natsgw/status_macros.h"
#include "natsgw/validation.h"

namespace natsgw::cli {
namespace {

// Most calls in flight at once: beyond this the CLI, not the service, is
// what is being measured.
constexpr int kMaxConcurrency = 1024;

// The reply's headers as a JSON object (repeated keys joined with ", ", as
// HTTP does).
std::string HeadersJson(const Headers& headers) {
  std::map<std::string, std::vector<std::string>> by_key;
  for (const HeaderField& field : headers) {
    by_key[field.key].push_back(field.value);
  }
  std::vector<std::string> members;
  for (const auto& [key, values] : by_key) {
    members.push_back(absl::StrCat(JsonString(key), ":",
                                   JsonString(absl::StrJoin(values, ", "))));
  }
  return absl::StrCat("{", absl::StrJoin(members, ","), "}");
}

std::string HeaderLines(const Headers& headers) {
  std::string out;
  for (const HeaderField& field : headers) {
    absl::StrAppend(&out, "  ", field.key, ": ", field.value, "\n");
  }
  return out;
}

absl::Status OneCall(Connection& conn, const tools::SchemaSet* schemas,
                     const tools::MethodInfo& method,
                     const std::string& subject, const std::string& payload,
                     const RequestOptions& options, absl::Duration timeout) {
  const bool json = absl::GetFlag(FLAGS_json);
  const bool verbose = absl::GetFlag(FLAGS_verbose);
  std::optional<SendInfo> sent;
  const absl::Time start = absl::Now();
  absl::StatusOr<Message> reply =
      conn.Request(subject, payload, timeout, options, &sent);
  const absl::Duration latency = absl::Now() - start;
  std::string trace;
  if (sent.has_value()) {
    trace = sent->trace.TraceIdHex();
  } else if (!reply.ok()) {
    trace = TraceIdFromStatus(reply.status()).value_or("");
  }
  const std::string prefix = absl::StrCat(
      "{\"subject\":", JsonString(subject), ",\"trace_id\":", JsonString(trace),
      absl::StrFormat(",\"latency_us\":%.1f",
                      absl::ToDoubleMicroseconds(latency)));
  if (!reply.ok()) {
    absl::Status status = reply.status();
    if (!trace.empty() && !TraceIdFromStatus(status).has_value()) {
      status = WithTraceId(status, trace);
    }
    if (json) {
      Out(absl::StrCat(prefix, ",\"error\":{\"code\":",
                       JsonString(absl::StatusCodeToString(status.code())),
                       ",\"message\":", JsonString(status.message()), "}}\n"));
    }
    return status;
  }
  std::string body;
  if (schemas == nullptr) {
    body = reply->data;
  } else {
    tools::JsonOptions print;
    print.compact = json;
    absl::StatusOr<std::string> decoded =
        DecodeReply(*schemas, method, reply->data, print);
    if (!decoded.ok()) return WithTraceId(decoded.status(), trace);
    body = *std::move(decoded);
  }
  if (json) {
    std::string out = prefix;
    if (verbose)
      absl::StrAppend(&out, ",\"headers\":", HeadersJson(reply->headers));
    if (schemas == nullptr) {
      absl::StrAppend(
          &out, ",\"reply_base64\":", JsonString(absl::Base64Escape(body)));
    } else {
      absl::StrAppend(&out, ",\"reply\":", body);
    }
    Out(absl::StrCat(out, "}\n"));
  } else {
    // The reply alone on stdout, so that it pipes into jq; the rest on
    // stderr.
    Out(schemas == nullptr ? body : absl::StrCat(body, "\n"));
  }
  Err(absl::StrCat("trace=", trace, " latency=", HumanDuration(latency), "\n",
                   verbose ? HeaderLines(reply->headers) : ""));
  return absl::OkStatus();
}

absl::Status RunCall(const Invocation& invocation) {
  const std::string& subject = invocation.args[0];
  if (absl::Status valid = ValidatePublishSubject(subject); !valid.ok()) {
    return UsageError(valid.message());
  }
  const int count = invocation.Given("count") ? absl::GetFlag(FLAGS_count) : 1;
  const int concurrency = absl::GetFlag(FLAGS_concurrency);
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  if (count < 1) return UsageError("--count must be at least 1");
  if (concurrency < 1 || concurrency > kMaxConcurrency) {
    return UsageError(
        absl::StrCat("--concurrency must be 1..", kMaxConcurrency));
  }
  if (timeout <= absl::ZeroDuration()) {
    return UsageError("--timeout must be positive");
  }
  RequestOptions options;
  NATSGW_ASSIGN_OR_RETURN(options.headers, ParseHeaders(invocation.headers));
  NATSGW_ASSIGN_OR_RETURN(std::string input,
                          ReadPayloadArgument(invocation.args, 1));
  NATSGW_ASSIGN_OR_RETURN(
      OutgoingPayload outgoing,
      OutgoingPayload::Prepare(OutgoingPayload::Kind::kCall, subject, "",
                               absl::GetFlag(FLAGS_raw), std::move(input)));
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connect());
  NATSGW_RETURN_IF_ERROR(outgoing.Resolve(*conn));
  const std::string& payload = outgoing.bytes();
  tools::SchemaSet* const schemas = outgoing.schemas();
  const tools::MethodInfo method =
      outgoing.method() != nullptr ? *outgoing.method() : tools::MethodInfo{};

  if (count == 1) {
    return OneCall(*conn, schemas, method, subject, payload, options, timeout);
  }

  EnableGracefulInterrupt();
  LoadOptions load;
  load.count = count;
  load.concurrency = concurrency;
  load.progress = absl::GetFlag(FLAGS_progress) || isatty(STDERR_FILENO);
  load.unit = "calls";
  const LoadResult result = RunLoad(load, [&]() -> absl::Status {
    absl::StatusOr<Message> reply =
        conn->Request(subject, payload, timeout, options);
    if (!reply.ok() || schemas == nullptr) return reply.status();
    // A reply that is not the method's response type is a failed call.
    return DecodeReply(*schemas, method, reply->data).status();
  });
  conn.reset();
  // One example of each kind of failure, with a trace to look it up by.
  PrintFailures(result, load);
  if (absl::GetFlag(FLAGS_json)) {
    Out(FormatSummaryJson(result, load, {{"subject", JsonString(subject)}}));
  } else {
    Out(FormatSummary(result, load));
  }
  return result.ok == count ? absl::OkStatus() : Reported(kExitFailed);
}

}  // namespace

const Command& CallCommand() {
  static const Command* command = new Command{
      .name = "call",
      .synopsis = "call <subject> [json]",
      .summary = "call the method served on a subject, JSON in and out",
      .description =
          "Calls the method served on <subject> with the JSON document "
          "[json] (from stdin when absent or \"-\"), turned into the "
          "method's FlatBuffers request type, and prints the reply as JSON "
          "on stdout; the call's trace ID and latency go to stderr "
          "(\"trace=<32 hex digits> latency=<time>\"), so stdout pipes into "
          "jq.\n\n"
          "The method's types come from the local schemas (--schema, "
          "$NATSGW_SCHEMA_PATH) if one of their rpc_services serves the "
          "subject (\"<service lower-cased>.<Method>\"), else from the "
          "Services API metadata of the running services ($SRV.INFO: "
          "fbs.request_type, fbs.response_type, and the binary schema in "
          "fbs.bfbs), so a natsgw service can be called with no schema at "
          "hand.\n\n"
          "A remote error is printed as \"natsgw: <CODE>: <message> (trace "
          "<id>)\" and exits with status 1.\n\n"
          "With --count N, makes N calls (--concurrency at once), shows a "
          "progress bar on stderr when it is a terminal (or with --progress) "
          "and prints a summary instead of the replies: calls, failures by "
          "status code, latency min/p50/p90/p99/max, throughput. Ctrl-C "
          "stops early and still prints it.",
      .flags =
          {
              {"timeout", "DURATION",
               "How long to wait for each reply (default 5s)"},
              {"header", "KEY=VALUE",
               "Request header; repeat for more (natsgw's own headers, "
               "e.g. traceparent, are refused)"},
              {"json", "",
               "Print one JSON object: subject, trace_id, latency_us and "
               "reply (or error); with --count, the summary as JSON"},
              {"raw", "",
               "No schema: send the argument's bytes as they are and print "
               "the reply's bytes"},
              {"count", "N", "Make N calls and print a summary (default 1)"},
              {"concurrency", "N",
               "Calls in flight at once with --count (default 1, at most "
               "1024)"},
              {"progress", "",
               "Show the progress bar of --count even when stderr is not a "
               "terminal"},
              {"verbose", "", "Also print the reply's headers"},
              {"schema", "PATHS",
               "Comma-separated .fbs/.bfbs files or directories (default "
               "$NATSGW_SCHEMA_PATH, colon-separated)"},
              {"schema_include", "DIRS",
               "Comma-separated include directories for .fbs files"},
              {"wait", "DURATION",
               "How long to collect $SRV.INFO answers when the subject is "
               "not in a local schema (default 1s)"},
          },
      .examples =
          "natsgw call users.RegisterUser '{\"email\": \"ada@example.com\"}'\n"
          "natsgw call users.RegisterUser '{\"email\": \"ada@example.com\"}' "
          "--schema=schemas/ | jq -r .user_id\n"
          "echo '{\"email\": \"bob@example.com\"}' | natsgw call "
          "users.RegisterUser --header=Tenant=acme --timeout=2s\n"
          "natsgw call email.SendWelcomeEmail '{\"user_id\": \"u-1\", "
          "\"email\": \"ada@example.com\"}' --count=1000 --concurrency=8",
      .min_args = 1,
      .max_args = 2,
      .run = RunCall,
  };
  return *command;
}

}  // namespace natsgw::cli
