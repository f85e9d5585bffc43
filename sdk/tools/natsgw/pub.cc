// natsgw pub <subject> [json]: publishes an event, JSON turned into the
// event's FlatBuffers table.
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli.h"
#include "flags.h"
#include "natsgw/status_macros.h"
#include "natsgw/validation.h"

namespace natsgw::cli {
namespace {

absl::Status RunPub(const Invocation& invocation) {
  const std::string& subject = invocation.args[0];
  if (absl::Status valid = ValidatePublishSubject(subject); !valid.ok()) {
    return UsageError(valid.message());
  }
  const int count = invocation.Given("count") ? absl::GetFlag(FLAGS_count) : 1;
  if (count < 1) return UsageError("--count must be at least 1");
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  if (timeout <= absl::ZeroDuration()) {
    return UsageError("--timeout must be positive");
  }
  const bool raw = absl::GetFlag(FLAGS_raw);
  if (raw && invocation.Given("type")) {
    return UsageError(
        "--type names the table JSON is turned into; --raw "
        "sends bytes as they are: give one of them");
  }
  PublishOptions options;
  NATSGW_ASSIGN_OR_RETURN(options.headers, ParseHeaders(invocation.headers));
  NATSGW_ASSIGN_OR_RETURN(std::string input,
                          ReadPayloadArgument(invocation.args, 1));
  NATSGW_ASSIGN_OR_RETURN(
      OutgoingPayload outgoing,
      OutgoingPayload::Prepare(OutgoingPayload::Kind::kEvent, subject,
                               absl::GetFlag(FLAGS_type), raw,
                               std::move(input)));
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connect());
  NATSGW_RETURN_IF_ERROR(outgoing.Resolve(*conn));
  const std::string& payload = outgoing.bytes();

  EnableGracefulInterrupt();
  const bool json = absl::GetFlag(FLAGS_json);
  int published = 0;
  absl::Status failed;
  for (; published < count && !Interrupted(); ++published) {
    absl::StatusOr<SendInfo> sent = conn->Publish(subject, payload, options);
    if (!sent.ok()) {
      failed = sent.status();
      break;
    }
    const std::string trace = sent->trace.TraceIdHex();
    if (json) {
      Out(absl::StrCat(
          "{\"subject\":", JsonString(subject),
          ",\"trace_id\":", JsonString(trace), ",\"message_id\":",
          JsonString(sent->message_id.view()), ",\"sent_at\":",
          JsonString(absl::FormatTime(absl::RFC3339_full, sent->sent_at,
                                      absl::UTCTimeZone())),
          "}\n"));
    } else {
      Out(absl::StrCat("published ", subject, " trace=", trace,
                       " id=", sent->message_id.view(), "\n"));
    }
  }
  // Publishes are buffered: only a flush proves the server has them.
  absl::Status flushed = conn->Flush(timeout);
  if (!failed.ok()) return failed;
  if (!flushed.ok()) {
    return absl::Status(
        flushed.code(),
        absl::StrCat("the server did not confirm the ", published,
                     " message(s) within ", absl::FormatDuration(timeout), ": ",
                     flushed.message()));
  }
  if (published < count) {
    return absl::CancelledError(absl::StrCat("interrupted after ", published,
                                             " of ", count, " messages"));
  }
  return absl::OkStatus();
}

}  // namespace

const Command& PubCommand() {
  static const Command* command = new Command{
      .name = "pub",
      .synopsis = "pub <subject> [json]",
      .summary = "publish an event, JSON turned into its FlatBuffers table",
      .description =
          "Publishes the JSON document [json] (from stdin when absent or "
          "\"-\") on <subject>, turned into the event's FlatBuffers table: "
          "--type, or the table the subject names "
          "(\"<prefix>.events.<Event>\", e.g. users.events.UserRegistered -> "
          "the table UserRegistered), looked up in the local schemas, then "
          "in the binary schemas the running services announce. Prints the "
          "trace ID and message ID of every message, and waits until the "
          "server has confirmed them (--timeout).\n\n"
          "A subject a JetStream stream captures is stored by the stream: "
          "this is a plain NATS publish, so there is no stream "
          "acknowledgement.",
      .flags =
          {
              {"type", "TABLE",
               "Fully qualified table of the message (e.g. "
               "natsgw.users.UserRegistered); default: the one the subject "
               "names"},
              {"count", "N", "Publish the message N times (default 1)"},
              {"header", "KEY=VALUE", "Message header; repeat for more"},
              {"json", "",
               "Print a JSON line per message: subject, trace_id, "
               "message_id, sent_at"},
              {"raw", "",
               "No schema: publish the argument's bytes as they are"},
              {"timeout", "DURATION",
               "How long to wait for the server to confirm the messages "
               "(default 5s)"},
              {"schema", "PATHS",
               "Comma-separated .fbs/.bfbs files or directories (default "
               "$NATSGW_SCHEMA_PATH, colon-separated)"},
              {"schema_include", "DIRS",
               "Comma-separated include directories for .fbs files"},
              {"wait", "DURATION",
               "How long to collect $SRV.INFO answers when the type is not "
               "in a local schema (default 1s)"},
          },
      .examples =
          "natsgw pub users.events.UserRegistered '{\"user_id\": \"u-1\", "
          "\"email\": \"ada@example.com\"}'\n"
          "natsgw pub orders.created '{\"id\": 7}' "
          "--type=shop.OrderCreated --schema=shop.fbs --count=10\n"
          "printf 'hello' | natsgw pub chat.room1 --raw",
      .min_args = 1,
      .max_args = 2,
      .run = RunPub,
  };
  return *command;
}

}  // namespace natsgw::cli
