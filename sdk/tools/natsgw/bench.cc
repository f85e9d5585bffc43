// natsgw bench <subject> [json]: a quick load check, calls (or publishes)
// as fast as --concurrency allows for --duration or --count, then
// throughput and latency percentiles.
#include <unistd.h>

#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli.h"
#include "flags.h"
#include "load.h"
#include "natsgw/status_macros.h"
#include "natsgw/validation.h"

ABSL_FLAG(absl::Duration, duration, absl::Seconds(5),
          "bench: how long to run (at most 10m)");
ABSL_FLAG(bool, publish, false,
          "bench: publish the message instead of calling");

namespace natsgw::cli {
namespace {

// A quick check, not a soak: a run is bounded in time whatever --count says.
constexpr absl::Duration kMaxDuration = absl::Minutes(10);
constexpr int kMaxConcurrency = 1024;

absl::Status RunBench(const Invocation& invocation) {
  const std::string& subject = invocation.args[0];
  if (absl::Status valid = ValidatePublishSubject(subject); !valid.ok()) {
    return UsageError(valid.message());
  }
  const bool publish = absl::GetFlag(FLAGS_publish);
  LoadOptions load;
  load.unit = publish ? "publishes" : "calls";
  load.count = invocation.Given("count") ? absl::GetFlag(FLAGS_count) : 0;
  if (invocation.Given("count") && load.count < 1) {
    return UsageError("--count must be at least 1");
  }
  // --count alone runs until the count is reached, within the bound.
  load.duration = invocation.Given("duration") || load.count == 0
                      ? absl::GetFlag(FLAGS_duration)
                      : kMaxDuration;
  if (load.duration <= absl::ZeroDuration() || load.duration > kMaxDuration) {
    return UsageError(absl::StrCat("--duration must be positive and at most ",
                                   absl::FormatDuration(kMaxDuration)));
  }
  load.concurrency = absl::GetFlag(FLAGS_concurrency);
  if (load.concurrency < 1 || load.concurrency > kMaxConcurrency) {
    return UsageError(
        absl::StrCat("--concurrency must be 1..", kMaxConcurrency));
  }
  load.progress = absl::GetFlag(FLAGS_progress) || isatty(STDERR_FILENO);
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  if (timeout <= absl::ZeroDuration()) {
    return UsageError("--timeout must be positive");
  }
  const bool raw = absl::GetFlag(FLAGS_raw);
  if (invocation.Given("type") && (raw || !publish)) {
    return UsageError(
        "--type applies to --publish without --raw (a call's "
        "types are the method's)");
  }
  RequestOptions options;
  NATSGW_ASSIGN_OR_RETURN(options.headers, ParseHeaders(invocation.headers));
  NATSGW_ASSIGN_OR_RETURN(std::string input,
                          ReadPayloadArgument(invocation.args, 1));
  NATSGW_ASSIGN_OR_RETURN(
      OutgoingPayload outgoing,
      OutgoingPayload::Prepare(publish ? OutgoingPayload::Kind::kEvent
                                       : OutgoingPayload::Kind::kCall,
                               subject, absl::GetFlag(FLAGS_type), raw,
                               std::move(input)));
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connect());
  NATSGW_RETURN_IF_ERROR(outgoing.Resolve(*conn));
  const std::string& payload = outgoing.bytes();
  const tools::MethodInfo* method = outgoing.method();

  Err(absl::StrCat("bench: ", load.unit, " to ", subject, ", ", payload.size(),
                   " bytes each, concurrency ", load.concurrency, ", ",
                   load.count > 0
                       ? absl::StrCat(load.count, " ", load.unit, " within ",
                                      absl::FormatDuration(load.duration))
                       : absl::FormatDuration(load.duration),
                   "\n"));
  EnableGracefulInterrupt();
  LoadResult result;
  if (publish) {
    const PublishOptions& publish_options = options;
    result = RunLoad(load, [&]() -> absl::Status {
      return conn->Publish(subject, payload, publish_options).status();
    });
    // Publishes are buffered: the run ends when the server has them all.
    const absl::Time flush_start = absl::Now();
    absl::Status flushed = conn->Flush(timeout);
    result.elapsed += absl::Now() - flush_start;
    if (!flushed.ok()) {
      PrintError(absl::Status(
          flushed.code(),
          absl::StrCat("the server did not confirm the publishes: ",
                       flushed.message())));
    }
  } else {
    result = RunLoad(load, [&]() -> absl::Status {
      absl::StatusOr<Message> reply =
          conn->Request(subject, payload, timeout, options);
      if (!reply.ok() || method == nullptr) return reply.status();
      // A reply that is not the method's response type is a failed call.
      return DecodeReply(*outgoing.schemas(), *method, reply->data).status();
    });
  }
  conn.reset();
  PrintFailures(result, load);
  if (absl::GetFlag(FLAGS_json)) {
    Out(FormatSummaryJson(result, load,
                          {{"subject", JsonString(subject)},
                           {"payload_bytes", absl::StrCat(payload.size())}}));
  } else {
    Out(FormatSummary(result, load));
  }
  return result.ok == result.done && result.done > 0 ? absl::OkStatus()
                                                     : Reported(kExitFailed);
}

}  // namespace

const Command& BenchCommand() {
  static const Command* command = new Command{
      .name = "bench",
      .synopsis = "bench <subject> [json]",
      .summary = "a quick load check: throughput and latency percentiles",
      .description =
          "Calls the method served on <subject> with [json] (from stdin when "
          "absent or \"-\"; resolved and encoded as `natsgw call` does) from "
          "--concurrency threads for --duration or until --count calls, "
          "then prints calls, failures by status code, latency "
          "min/p50/p90/p99/max/mean and throughput. A progress bar is drawn "
          "on stderr when it is a terminal (or with --progress). Ctrl-C "
          "stops early and still prints the summary.\n\n"
          "With --publish, publishes the message instead (as `natsgw pub`: "
          "--type or the table the subject names); the latency is then the "
          "time a publish takes to be buffered, and the run ends once the "
          "server has confirmed every message.\n\n"
          "Exit status 1 if any operation failed. The client shares the "
          "machine with what it measures: for careful numbers, see "
          "natsgw-bench.",
      .flags =
          {
              {"duration", "DURATION",
               "How long to run (default 5s; with --count alone, until the "
               "count is reached; at most 10m)"},
              {"count", "N", "Stop after N operations"},
              {"concurrency", "N",
               "Operations in flight at once (default 1, at most 1024)"},
              {"publish", "", "Publish instead of calling"},
              {"timeout", "DURATION",
               "How long to wait for each reply (default 5s)"},
              {"header", "KEY=VALUE", "Header to send; repeat for more"},
              {"type", "TABLE",
               "With --publish: fully qualified table of the message"},
              {"raw", "", "No schema: send the argument's bytes as they are"},
              {"json", "", "Print the summary as one JSON object"},
              {"progress", "",
               "Show the progress bar even when stderr is not a terminal"},
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
          "natsgw bench email.SendWelcomeEmail '{\"user_id\": \"u-1\", "
          "\"email\": \"ada@example.com\"}' --concurrency=8\n"
          "natsgw bench email.SendWelcomeEmail '{\"user_id\": \"u-1\", "
          "\"email\": \"ada@example.com\"}' --count=10000 --json\n"
          "natsgw bench users.events.UserRegistered '{\"user_id\": \"u-1\", "
          "\"email\": \"ada@example.com\"}' --publish --duration=10s",
      .min_args = 1,
      .max_args = 2,
      .run = RunBench,
  };
  return *command;
}

}  // namespace natsgw::cli
