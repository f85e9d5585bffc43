// natsgw sub <subject>: prints every message on a subject (wildcards
// allowed) decoded to JSON, with its trace ID and delivery latency.
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli.h"
#include "flags.h"
#include "natsgw/status_macros.h"
#include "natsgw/validation.h"

ABSL_FLAG(std::string, queue, "",
          "sub: join this queue group (each message goes to one member)");

namespace natsgw::cli {
namespace {

bool HasWildcard(absl::string_view subject) {
  for (absl::string_view token : absl::StrSplit(subject, '.')) {
    if (token == "*" || token == ">") return true;
  }
  return false;
}

// What the subscription's handler needs. The handler runs on the
// subscription's own thread (calls never overlap); `mu` guards what main()
// reads while it runs.
class Printer {
 public:
  Printer(const tools::SchemaSet* schemas, std::string fixed_type, int limit)
      : schemas_(schemas), fixed_type_(std::move(fixed_type)), limit_(limit) {}

  void Handle(const Message& message) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (limit_ > 0 && received_ >= limit_) return;
    }
    Out(Format(message));
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++received_;
      if (limit_ > 0 && received_ >= limit_) done_.notify_all();
    }
  }

  // Waits until `limit` messages have been printed (true), `deadline`
  // passes or an interrupt arrives (false).
  bool WaitDone(absl::Time deadline) {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (limit_ > 0 && received_ >= limit_) return true;
        if (Interrupted() || absl::Now() >= deadline) return false;
        // Short slices: Ctrl-C is announced on another condition variable.
        done_.wait_for(lock, std::chrono::milliseconds(50));
      }
    }
  }

  int received() const {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }

 private:
  // The table of messages on `subject`, or why there is none.
  absl::StatusOr<std::string> TypeFor(const std::string& subject) {
    if (!fixed_type_.empty()) return fixed_type_;
    auto it = types_.find(subject);
    if (it == types_.end()) {
      it =
          types_.emplace(subject, schemas_->EventTypeForSubject(subject)).first;
    }
    return it->second;
  }

  std::string Format(const Message& message) {
    const bool json = absl::GetFlag(FLAGS_json);
    const bool verbose = absl::GetFlag(FLAGS_verbose);
    const std::string trace = message.trace.TraceIdHex();
    std::optional<absl::Duration> latency;
    if (message.sent_at.has_value()) {
      latency = message.received_at - *message.sent_at;
    }
    // Decoded JSON, or why not.
    std::optional<std::string> decoded;
    std::string reason;
    if (schemas_ != nullptr) {
      absl::StatusOr<std::string> type = TypeFor(message.subject);
      if (!type.ok()) {
        reason = std::string(type.status().message());
      } else {
        tools::JsonOptions print;
        print.compact = true;
        absl::StatusOr<std::string> text =
            schemas_->BinaryToJson(*type, message.data, {}, print);
        if (text.ok()) {
          decoded = *std::move(text);
        } else {
          reason = std::string(text.status().message());
        }
      }
    }
    if (json) {
      std::string out = absl::StrCat(
          "{\"time\":",
          JsonString(absl::FormatTime(absl::RFC3339_full, message.received_at,
                                      absl::UTCTimeZone())),
          ",\"subject\":", JsonString(message.subject),
          ",\"trace_id\":", JsonString(trace),
          ",\"message_id\":", JsonString(message.message_id));
      if (latency.has_value()) {
        absl::StrAppend(&out,
                        absl::StrFormat(",\"latency_us\":%.1f",
                                        absl::ToDoubleMicroseconds(*latency)));
      }
      if (verbose) {
        std::vector<std::string> headers;
        for (const HeaderField& field : message.headers) {
          headers.push_back(absl::StrCat("[", JsonString(field.key), ",",
                                         JsonString(field.value), "]"));
        }
        absl::StrAppend(&out, ",\"headers\":[", absl::StrJoin(headers, ","),
                        "]");
      }
      if (decoded.has_value()) {
        absl::StrAppend(&out, ",\"data\":", *decoded);
      } else {
        absl::StrAppend(&out, ",\"data_base64\":",
                        JsonString(absl::Base64Escape(message.data)));
        if (!reason.empty()) {
          absl::StrAppend(&out, ",\"error\":", JsonString(reason));
        }
      }
      return absl::StrCat(out, "}\n");
    }
    std::string out = absl::StrCat(
        absl::FormatTime("%H:%M:%E3S", message.received_at,
                         absl::LocalTimeZone()),
        " ", message.subject, " trace=", trace,
        " latency=", latency.has_value() ? HumanDuration(*latency) : "-");
    if (decoded.has_value()) {
      absl::StrAppend(&out, " ", *decoded, "\n");
    } else if (schemas_ == nullptr) {
      // --raw: the payload's bytes as they are, on the lines that follow.
      absl::StrAppend(&out, " (", message.data.size(), " bytes)\n",
                      message.data, "\n");
    } else {
      absl::StrAppend(
          &out, " not decoded (", reason, "); ", message.data.size(),
          " bytes, base64: ", absl::Base64Escape(message.data), "\n");
    }
    if (verbose) {
      for (const HeaderField& field : message.headers) {
        absl::StrAppend(&out, "  ", field.key, ": ", field.value, "\n");
      }
    }
    return out;
  }

  const tools::SchemaSet* const schemas_;
  const std::string fixed_type_;
  const int limit_;
  // Event types by concrete subject (only the handler's thread uses it).
  std::map<std::string, absl::StatusOr<std::string>> types_;
  mutable std::mutex mu_;
  std::condition_variable done_;
  int received_ = 0;
};

absl::Status RunSub(const Invocation& invocation) {
  const std::string& subject = invocation.args[0];
  if (absl::Status valid = ValidateSubscribeSubject(subject); !valid.ok()) {
    return UsageError(valid.message());
  }
  const std::string queue = absl::GetFlag(FLAGS_queue);
  if (absl::Status valid = ValidateQueueGroup(queue); !valid.ok()) {
    return UsageError(valid.message());
  }
  const int count = invocation.Given("count") ? absl::GetFlag(FLAGS_count) : 0;
  if (count < 0) return UsageError("--count must not be negative");
  absl::Duration timeout = absl::InfiniteDuration();
  if (invocation.Given("timeout")) {
    timeout = absl::GetFlag(FLAGS_timeout);
    if (timeout <= absl::ZeroDuration()) {
      return UsageError("--timeout must be positive");
    }
  }
  const bool raw = absl::GetFlag(FLAGS_raw);
  const std::string type = absl::GetFlag(FLAGS_type);
  if (raw && !type.empty()) {
    return UsageError(
        "--type names the table messages are decoded as; --raw "
        "prints them as they are: give one of them");
  }
  // --timeout is the command's whole run time, discovery included.
  const absl::Time start = absl::Now();
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connect());

  std::unique_ptr<tools::SchemaSet> schemas;
  std::string fixed_type;
  if (!raw) {
    NATSGW_ASSIGN_OR_RETURN(schemas, LoadSchemas());
    if (!type.empty() || !HasWildcard(subject)) {
      // One table for every message: known before the first one, so a
      // missing schema is reported at once.
      NATSGW_ASSIGN_OR_RETURN(fixed_type,
                              ResolveEventType(*conn, *schemas, subject, type));
    } else if (schemas->Describe().empty()) {
      // A wildcard and no local schema: the services' schemas are all there
      // is. Without them, messages are shown undecoded, with the reason.
      (void)AddDiscoveredSchemas(*conn, *schemas);
    }
  }

  EnableGracefulInterrupt();
  Printer printer(schemas.get(), fixed_type, count);
  absl::StatusOr<std::unique_ptr<Subscription>> subscription = conn->Subscribe(
      subject, queue, [&printer](const Message& m) { printer.Handle(m); });
  if (!subscription.ok()) return subscription.status();
  Err(absl::StrCat(
      "subscribed to ", subject,
      queue.empty() ? "" : absl::StrCat(" (queue group ", queue, ")"),
      count > 0 ? absl::StrCat(", until ", count,
                               count == 1 ? " message" : " messages")
                : "",
      "; Ctrl-C to stop\n"));
  const bool complete = printer.WaitDone(start + timeout);
  // Waits for a handler call in progress: nothing prints after this.
  subscription->reset();
  conn.reset();
  const int received = printer.received();
  const std::string took = HumanDuration(absl::Now() - start);
  const int of = count > 0 ? count : received;
  Err(absl::StrCat("received ", received,
                   count > 0 ? absl::StrCat(" of ", count) : "",
                   of == 1 ? " message" : " messages", " in ", took,
                   Interrupted() ? " (interrupted)" : "", "\n"));
  if (count > 0 && !complete) {
    return Interrupted()
               ? absl::CancelledError(absl::StrCat("interrupted after ",
                                                   received, " of ", count,
                                                   " messages"))
               : absl::DeadlineExceededError(absl::StrCat(
                     "received ", received, " of ", count, " messages within ",
                     absl::FormatDuration(timeout)));
  }
  return absl::OkStatus();
}

}  // namespace

const Command& SubCommand() {
  static const Command* command = new Command{
      .name = "sub",
      .synopsis = "sub <subject>",
      .summary = "print the messages on a subject (wildcards allowed) as JSON",
      .description =
          "Subscribes to <subject> (\"*\" matches one token, a final \">\" "
          "the rest) and prints one line per message: local time, subject, "
          "trace ID, delivery latency (from the send timestamp natsgw "
          "senders stamp, Natsgw-Sent-At-Ns, to its arrival; \"-\" without "
          "one) and the payload decoded to JSON. The table is --type, or "
          "the one the subject names (\"<prefix>.events.<Event>\"), from "
          "the local schemas or the binary schemas the running services "
          "announce. A payload that cannot be decoded is shown in base64 "
          "with the reason.\n\n"
          "Runs until Ctrl-C, --count messages or --timeout, then prints "
          "how many messages arrived on stderr. Exit status 1 when --count "
          "was given and not reached.",
      .flags =
          {
              {"count", "N", "Exit after N messages (default: no limit)"},
              {"timeout", "DURATION",
               "Exit after this long (default: no limit)"},
              {"queue", "GROUP",
               "Join this queue group: each message goes to one member"},
              {"type", "TABLE",
               "Fully qualified table of the messages; default: the one "
               "each subject names"},
              {"json", "",
               "One JSON object per line: time, subject, trace_id, "
               "message_id, latency_us and data (or data_base64 and error)"},
              {"raw", "", "No schema: print the payloads' bytes as they are"},
              {"verbose", "", "Also print every message's headers"},
              {"schema", "PATHS",
               "Comma-separated .fbs/.bfbs files or directories (default "
               "$NATSGW_SCHEMA_PATH, colon-separated)"},
              {"schema_include", "DIRS",
               "Comma-separated include directories for .fbs files"},
              {"wait", "DURATION",
               "How long to collect $SRV.INFO answers for the services' "
               "schemas (default 1s)"},
          },
      .examples =
          "natsgw sub 'users.events.>'\n"
          "natsgw sub users.events.UserRegistered --count=1 --timeout=30s "
          "--json | jq .data.email\n"
          "natsgw sub orders.created --type=shop.OrderCreated "
          "--schema=shop.fbs --queue=audit",
      .min_args = 1,
      .max_args = 1,
      .run = RunSub,
  };
  return *command;
}

}  // namespace natsgw::cli
