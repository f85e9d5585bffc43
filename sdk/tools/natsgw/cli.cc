#include "cli.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "example_support.h"
#include "flags.h"
#include "natsgw/redact.h"
#include "natsgw/service_error.h"
#include "natsgw/status_macros.h"
#include "natsgw/validation.h"

namespace natsgw::cli {
namespace {

// Status payloads: the exit status a failed command ends with, and the mark
// of a failure already reported (or a usage error, printed differently).
constexpr absl::string_view kExitStatusPayload = "natsgw.cli/exit-status";
constexpr absl::string_view kReportedPayload = "natsgw.cli/reported";
constexpr absl::string_view kUsagePayload = "natsgw.cli/usage";

// Largest JSON document read from stdin.
constexpr size_t kMaxStdinBytes = 64 << 20;

std::mutex g_output_mu;

// Ctrl-C state, shared by the signal thread (main.cc) and the command.
std::atomic<bool> g_graceful{false};
std::atomic<bool> g_interrupted{false};
std::mutex g_interrupt_mu;
std::condition_variable g_interrupt_cv;

std::vector<std::string> SplitList(absl::string_view text, char separator) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(text, separator)) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

}  // namespace

absl::Status WithExitStatus(absl::Status status, int exit_status) {
  if (status.ok()) return status;
  status.SetPayload(kExitStatusPayload, absl::Cord(absl::StrCat(exit_status)));
  return status;
}

int ExitStatusOf(const absl::Status& status) {
  if (status.ok()) return kExitOk;
  auto payload = status.GetPayload(kExitStatusPayload);
  int exit_status = kExitFailed;
  if (payload.has_value() &&
      absl::SimpleAtoi(std::string(*payload), &exit_status)) {
    return exit_status;
  }
  return kExitFailed;
}

absl::Status UsageError(absl::string_view message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kUsagePayload, absl::Cord("1"));
  return WithExitStatus(std::move(status), kExitUsage);
}

absl::Status Reported(int exit_status) {
  absl::Status status = absl::UnknownError("reported");
  status.SetPayload(kReportedPayload, absl::Cord("1"));
  return WithExitStatus(std::move(status), exit_status);
}

bool IsReported(const absl::Status& status) {
  return status.GetPayload(kReportedPayload).has_value();
}

void Out(absl::string_view text) {
  std::lock_guard<std::mutex> lock(g_output_mu);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

void Err(absl::string_view text) {
  std::lock_guard<std::mutex> lock(g_output_mu);
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
}

void PrintError(const absl::Status& status) {
  if (status.ok() || IsReported(status)) return;
  // Messages may quote what a user typed or a server said: credentials in
  // them are masked like everywhere else in natsgw.
  const std::string message = RedactSecrets(status.message());
  if (status.GetPayload(kUsagePayload).has_value()) {
    Err(absl::StrCat("natsgw: ", message, "\n"));
    return;
  }
  std::string line = absl::StrCat(
      "natsgw: ", absl::StatusCodeToString(status.code()), ": ", message);
  if (std::optional<std::string> trace = TraceIdFromStatus(status)) {
    absl::StrAppend(&line, " (trace ", *trace, ")");
  }
  Err(absl::StrCat(line, "\n"));
}

void EnableGracefulInterrupt() { g_graceful.store(true); }

bool Interrupted() { return g_interrupted.load(); }

bool WaitForInterrupt(absl::Time deadline) {
  std::unique_lock<std::mutex> lock(g_interrupt_mu);
  auto interrupted = [] { return g_interrupted.load(); };
  if (deadline == absl::InfiniteFuture()) {
    g_interrupt_cv.wait(lock, interrupted);
    return true;
  }
  return g_interrupt_cv.wait_until(lock, absl::ToChronoTime(deadline),
                                   interrupted);
}

// Called by the signal thread (main.cc) for SIGINT/SIGTERM.
void OnInterruptSignal() {
  if (!g_graceful.load() || g_interrupted.load()) {
    // Not a command that stops gracefully, or the second Ctrl-C: end now,
    // on a fresh line (a progress bar may be half drawn).
    static constexpr char kNewline[] = "\n";
    (void)!write(STDERR_FILENO, kNewline, 1);
    _exit(kExitInterrupted);
  }
  {
    std::lock_guard<std::mutex> lock(g_interrupt_mu);
    g_interrupted.store(true);
  }
  g_interrupt_cv.notify_all();
}

absl::StatusOr<std::unique_ptr<Connection>> Connect() {
  absl::StatusOr<ConnectionOptions> options =
      examples::ConnectionOptionsFromFlags("natsgw");
  if (!options.ok()) return WithExitStatus(options.status(), kExitUsage);
  // A command line tool reports an unreachable server rather than waiting.
  options->retry_on_failed_connect = false;
  const std::string servers = absl::StrJoin(options->servers, ",");
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connection::Create(*std::move(options));
  if (!conn.ok()) {
    // The gateway's message names the servers when it could not reach
    // them; other failures (credentials, TLS) say what went wrong.
    const absl::string_view message = conn.status().message();
    return WithExitStatus(
        absl::Status(conn.status().code(),
                     absl::StartsWith(message, "cannot connect")
                         ? std::string(message)
                         : absl::StrCat("cannot connect to NATS at ",
                                        RedactSecrets(servers), ": ", message)),
        conn.status().code() == absl::StatusCode::kInvalidArgument
            ? kExitUsage
            : kExitNoConnection);
  }
  return conn;
}

absl::StatusOr<std::unique_ptr<tools::SchemaSet>> LoadSchemas() {
  std::vector<std::string> paths;
  if (const std::string flag = absl::GetFlag(FLAGS_schema); !flag.empty()) {
    paths = SplitList(flag, ',');
  } else if (const char* env = std::getenv("NATSGW_SCHEMA_PATH")) {
    paths = SplitList(env, ':');
  }
  const std::vector<std::string> includes =
      SplitList(absl::GetFlag(FLAGS_schema_include), ',');
  absl::StatusOr<std::unique_ptr<tools::SchemaSet>> schemas =
      tools::SchemaSet::Load(paths, includes);
  if (!schemas.ok()) {
    return WithExitStatus(
        absl::Status(
            schemas.status().code(),
            absl::StrCat("loading schemas: ", schemas.status().message())),
        kExitUsage);
  }
  return schemas;
}

absl::StatusOr<tools::MethodInfo> ResolveCallMethod(Connection& conn,
                                                    tools::SchemaSet& schemas,
                                                    absl::string_view subject) {
  absl::StatusOr<tools::MethodInfo> method =
      tools::ResolveMethod(conn, schemas, subject, absl::GetFlag(FLAGS_wait));
  if (method.ok()) return method;
  const absl::StatusCode code = method.status().code();
  // Not found, claimed twice, or announced in a form that does not load:
  // no usable schema. Anything else (e.g. the connection) is a failure.
  const bool no_schema = code == absl::StatusCode::kNotFound ||
                         code == absl::StatusCode::kFailedPrecondition ||
                         code == absl::StatusCode::kInvalidArgument;
  return WithExitStatus(method.status(),
                        no_schema ? kExitNoSchema : kExitFailed);
}

absl::StatusOr<int> AddDiscoveredSchemas(Connection& conn,
                                         tools::SchemaSet& schemas) {
  tools::DiscoverOptions options;
  options.wait = absl::GetFlag(FLAGS_wait);
  absl::StatusOr<std::vector<tools::ServiceInfo>> infos =
      tools::DiscoverInfo(conn, options);
  if (!infos.ok()) return infos.status();
  int added = 0;
  for (const tools::AnnouncedSchema& schema : tools::AnnouncedSchemas(*infos)) {
    // A schema whose endpoint types are all known already (loaded locally)
    // is not loaded twice: the same service twice would claim its subjects
    // twice.
    bool all_known = !schema.request_types.empty();
    for (const std::string& type : schema.request_types) {
      if (type.empty() || !schemas.HasTable(type)) all_known = false;
    }
    if (all_known) continue;
    // A schema that clashes with one already loaded is skipped: what is
    // loaded keeps working, and a lookup that still fails says so.
    if (schemas
            .AddBinarySchema(schema.bfbs,
                             absl::StrCat("$SRV.INFO of ", schema.service))
            .ok()) {
      ++added;
    }
  }
  return added;
}

absl::StatusOr<std::string> ResolveEventType(Connection& conn,
                                             tools::SchemaSet& schemas,
                                             absl::string_view subject,
                                             absl::string_view type) {
  auto lookup = [&]() -> absl::StatusOr<std::string> {
    if (type.empty()) return schemas.EventTypeForSubject(subject);
    if (schemas.HasTable(type)) return std::string(type);
    return absl::NotFoundError(
        absl::StrCat("no loaded schema defines table ", type));
  };
  absl::StatusOr<std::string> found = lookup();
  if (found.ok()) return found;
  if (found.status().code() == absl::StatusCode::kNotFound) {
    absl::StatusOr<int> added = AddDiscoveredSchemas(conn, schemas);
    if (!added.ok()) return WithExitStatus(added.status(), kExitFailed);
    if (*added > 0) found = lookup();
    if (found.ok()) return found;
  }
  const std::string hint =
      type.empty() ? absl::StrCat(
                         "; load its schema with --schema, name the table "
                         "with --type, or use --raw")
                   : "; load its schema with --schema";
  return WithExitStatus(
      absl::Status(found.status().code(),
                   absl::StrCat(found.status().message(),
                                " (local schemas and the schemas the running "
                                "services announce were searched)",
                                hint)),
      kExitNoSchema);
}

absl::StatusOr<Headers> ParseHeaders(const std::vector<std::string>& values) {
  Headers headers;
  for (const std::string& value : values) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(value, absl::MaxSplits('=', 1));
    if (kv.first.empty() || kv.first.size() == value.size()) {
      return UsageError(absl::StrCat("--header \"", value,
                                     "\" must be KEY=VALUE, e.g. "
                                     "--header=Tenant=acme"));
    }
    headers.Add(kv.first, kv.second);
  }
  if (absl::Status valid = ValidateApplicationHeaders(headers); !valid.ok()) {
    return UsageError(absl::StrCat("--header: ", valid.message()));
  }
  return headers;
}

absl::StatusOr<std::string> ReadPayloadArgument(
    const std::vector<std::string>& args, size_t index) {
  if (index < args.size() && args[index] != "-") return args[index];
  if (isatty(STDIN_FILENO)) {
    Err("natsgw: reading the message from stdin (end it with Ctrl-D)\n");
  }
  std::string data;
  char buffer[65536];
  for (;;) {
    const size_t n = std::fread(buffer, 1, sizeof(buffer), stdin);
    data.append(buffer, n);
    if (data.size() > kMaxStdinBytes) {
      return UsageError(absl::StrCat("the message on stdin is larger than ",
                                     kMaxStdinBytes, " bytes"));
    }
    if (n < sizeof(buffer)) break;
  }
  if (std::ferror(stdin)) {
    return WithExitStatus(absl::DataLossError("reading stdin failed"),
                          kExitFailed);
  }
  return data;
}

absl::StatusOr<std::string> DecodeReply(const tools::SchemaSet& schemas,
                                        const tools::MethodInfo& method,
                                        absl::string_view data,
                                        const tools::JsonOptions& print) {
  // A method's payloads carry its service's identifier, which differs from
  // the type's own when the type comes from an included schema.
  tools::VerifyOptions verify;
  verify.file_identifier = method.file_identifier;
  absl::StatusOr<std::string> decoded =
      schemas.BinaryToJson(method.response_type, data, verify, print);
  if (decoded.ok()) return decoded;
  // Shown whole only when short: the point is to see what came back.
  constexpr size_t kShownBytes = 256;
  return absl::DataLossError(
      absl::StrCat("the reply (", data.size(), " bytes, base64 ",
                   absl::Base64Escape(data.substr(0, kShownBytes)),
                   data.size() > kShownBytes ? "..." : "", ") is not a valid ",
                   method.response_type, ": ", decoded.status().message()));
}

absl::StatusOr<std::string> EncodeJson(const tools::SchemaSet& schemas,
                                       absl::string_view type,
                                       absl::string_view json,
                                       absl::string_view file_identifier) {
  absl::StatusOr<std::string> data =
      file_identifier.empty()
          ? schemas.JsonToBinary(type, json)
          : schemas.JsonToBinary(type, json, file_identifier);
  if (data.ok()) return data;
  return WithExitStatus(data.status(),
                        data.status().code() == absl::StatusCode::kNotFound
                            ? kExitNoSchema
                            : kExitUsage);
}

absl::StatusOr<OutgoingPayload> OutgoingPayload::Prepare(Kind kind,
                                                         std::string subject,
                                                         std::string type,
                                                         bool raw,
                                                         std::string input) {
  OutgoingPayload out;
  out.kind_ = kind;
  out.subject_ = std::move(subject);
  out.type_ = std::move(type);
  if (raw) {
    out.bytes_ = std::move(input);
    out.encoded_ = true;
    return out;
  }
  out.input_ = std::move(input);
  NATSGW_ASSIGN_OR_RETURN(out.schemas_, LoadSchemas());
  if (kind == Kind::kCall) {
    absl::StatusOr<tools::MethodInfo> local =
        out.schemas_->MethodForSubject(out.subject_);
    if (local.ok()) {
      out.method_ = *std::move(local);
      NATSGW_RETURN_IF_ERROR(
          out.Encode(out.method_->request_type, out.method_->file_identifier));
    }
  } else {
    absl::StatusOr<std::string> local =
        out.type_.empty() ? out.schemas_->EventTypeForSubject(out.subject_)
                          : absl::StatusOr<std::string>(out.type_);
    if (local.ok() && out.schemas_->HasTable(*local)) {
      NATSGW_RETURN_IF_ERROR(out.Encode(*local, ""));
    }
  }
  return out;
}

absl::Status OutgoingPayload::Resolve(Connection& conn) {
  if (encoded_) return absl::OkStatus();
  if (kind_ == Kind::kCall) {
    NATSGW_ASSIGN_OR_RETURN(method_,
                            ResolveCallMethod(conn, *schemas_, subject_));
    return Encode(method_->request_type, method_->file_identifier);
  }
  NATSGW_ASSIGN_OR_RETURN(std::string type,
                          ResolveEventType(conn, *schemas_, subject_, type_));
  return Encode(type, "");
}

absl::Status OutgoingPayload::Encode(const std::string& type,
                                     const std::string& file_identifier) {
  NATSGW_ASSIGN_OR_RETURN(bytes_,
                          EncodeJson(*schemas_, type, input_, file_identifier));
  encoded_ = true;
  return absl::OkStatus();
}

std::string JsonString(absl::string_view text) {
  // Invalid UTF-8 (a payload shown verbatim) is replaced, not thrown on.
  return nlohmann::json(std::string(text))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string HumanDuration(absl::Duration d) {
  const double us = absl::ToDoubleMicroseconds(d);
  if (std::abs(us) < 10000) return absl::StrFormat("%.0f us", us);
  if (std::abs(us) < 1000000) return absl::StrFormat("%.1f ms", us / 1000);
  return absl::StrFormat("%.2f s", us / 1000000);
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (row.size() > widths.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    absl::StrAppend(&out, absl::StripTrailingAsciiWhitespace(line), "\n");
  }
  return out;
}

}  // namespace natsgw::cli
