// cli.h: what every natsgw command shares: the command table, the parsed
// command line, exit statuses, error reporting, output, Ctrl-C handling, and
// the NATS connection and schemas built from the shared flags.
//
// A command returns an absl::Status; main() turns it into the process exit
// status (ExitStatusOf) and, unless it was already reported, a line
// "natsgw: <CODE>: <message> (trace <id>)" on stderr.
//
// Thread-safety: Out()/Err() and the Interrupt functions may be used from
// any thread; the rest is for the command's main thread.
#ifndef NATSGW_SDK_TOOLS_NATSGW_CLI_H_
#define NATSGW_SDK_TOOLS_NATSGW_CLI_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "discovery.h"
#include "natsgw/connection.h"
#include "natsgw/headers.h"
#include "schema_set.h"

namespace natsgw::cli {

// Process exit statuses (listed by `natsgw --help` and docs/cli.md).
inline constexpr int kExitOk = 0;
// The operation failed: a remote error, a timeout, no responders, --count
// not reached.
inline constexpr int kExitFailed = 1;
// Unknown command or flag, bad argument, JSON that does not match the
// schema, bad header.
inline constexpr int kExitUsage = 2;
// No schema for the subject or type.
inline constexpr int kExitNoSchema = 3;
// Cannot connect to NATS.
inline constexpr int kExitNoConnection = 4;
// Ctrl-C (or SIGTERM) before a command that cannot stop gracefully was done.
inline constexpr int kExitInterrupted = 130;

// `status` carrying the exit status the process ends with when a command
// returns it (a status without one exits with kExitFailed).
absl::Status WithExitStatus(absl::Status status, int exit_status);
// The exit status `status` ends the process with: 0 for OK.
int ExitStatusOf(const absl::Status& status);
// A usage error (kExitUsage) with `message`.
absl::Status UsageError(absl::string_view message);
// A failure the command has already reported itself (e.g. in a summary):
// main() prints nothing more and exits with `exit_status`.
absl::Status Reported(int exit_status);
bool IsReported(const absl::Status& status);

// The command line of one invocation, after flag parsing.
struct Invocation {
  // "call", "pub", "sub", "services", "bench".
  std::string command;
  // Positional arguments after the command name.
  std::vector<std::string> args;
  // Flags given on the command line (names without dashes).
  absl::flat_hash_set<std::string> given;
  // Every --header value, in order (a flag keeps only the last).
  std::vector<std::string> headers;

  bool Given(absl::string_view flag) const {
    return given.contains(std::string(flag));
  }
};

// One flag a command takes, with what it means for that command.
struct FlagDoc {
  absl::string_view name;
  // Placeholder of the value in help ("DURATION"); empty for a bool flag.
  absl::string_view value;
  absl::string_view help;
};

struct Command {
  absl::string_view name;
  // "call <subject> [json]".
  absl::string_view synopsis;
  // One line for `natsgw --help`.
  absl::string_view summary;
  // Paragraphs for `natsgw help <command>`.
  absl::string_view description;
  // The command's own flags (the connection and logging flags apply to
  // every command).
  std::vector<FlagDoc> flags;
  // Copy-paste examples, one per line.
  absl::string_view examples;
  int min_args = 0;
  int max_args = 0;
  absl::Status (*run)(const Invocation& invocation) = nullptr;
};

// The commands, in the order `natsgw --help` lists them.
const std::vector<Command>& Commands();

// Each command's entry (defined in its own file).
const Command& CallCommand();
const Command& PubCommand();
const Command& SubCommand();
const Command& ServicesCommand();
const Command& BenchCommand();

// Writes to stdout / stderr, whole strings at once, flushed (lines from
// several threads never interleave).
void Out(absl::string_view text);
void Err(absl::string_view text);

// Prints "natsgw: <CODE>: <message> (trace <id>)" on stderr.
void PrintError(const absl::Status& status);

// Ctrl-C. By default SIGINT/SIGTERM end the process at once with
// kExitInterrupted; a command that can stop gracefully (print its summary,
// close its subscription) calls EnableGracefulInterrupt(), then polls
// Interrupted() or waits with WaitForInterrupt(). A second signal always
// ends the process at once.
void EnableGracefulInterrupt();
bool Interrupted();
// Blocks until the deadline passes (false) or an interrupt arrives (true).
bool WaitForInterrupt(absl::Time deadline);
// What main()'s signal thread calls for each SIGINT/SIGTERM.
void OnInterruptSignal();

// Connects with the shared connection flags (--nats_url, credentials, TLS,
// logging). Failures carry kExitNoConnection (kExitUsage for bad options).
absl::StatusOr<std::unique_ptr<Connection>> Connect();

// Loads --schema (default $NATSGW_SCHEMA_PATH) with --schema_include; an
// empty set when neither is given. Failures carry kExitUsage.
absl::StatusOr<std::unique_ptr<tools::SchemaSet>> LoadSchemas();

// The method served on `subject`: local schemas first, then the Services
// API metadata of the running services. Not found, claimed twice or
// announced in a form that does not load carries kExitNoSchema.
absl::StatusOr<tools::MethodInfo> ResolveCallMethod(Connection& conn,
                                                    tools::SchemaSet& schemas,
                                                    absl::string_view subject);

// The table of an event: `type` if not empty (fully qualified), else the
// event type the subject names ("<prefix>.events.<Event>"). Looks in the
// local schemas first, then in the binary schemas the running services
// announce (metadata fbs.bfbs). Not found carries kExitNoSchema.
absl::StatusOr<std::string> ResolveEventType(Connection& conn,
                                             tools::SchemaSet& schemas,
                                             absl::string_view subject,
                                             absl::string_view type);

// Adds the binary schema of every service answering $SRV.INFO within --wait
// to `schemas` (each distinct schema once). Returns how many were added.
absl::StatusOr<int> AddDiscoveredSchemas(Connection& conn,
                                         tools::SchemaSet& schemas);

// The --header values as headers; a malformed or reserved one is a usage
// error naming it.
absl::StatusOr<Headers> ParseHeaders(const std::vector<std::string>& values);

// The JSON document of a call or publish: `args[index]` unless absent or
// "-", else stdin (at most 64 MiB).
absl::StatusOr<std::string> ReadPayloadArgument(
    const std::vector<std::string>& args, size_t index);

// The reply of `method` as JSON: DATA_LOSS naming the reply's size, its
// base64 and what failed when it is not a valid response_type (verified
// with the method's file identifier).
absl::StatusOr<std::string> DecodeReply(const tools::SchemaSet& schemas,
                                        const tools::MethodInfo& method,
                                        absl::string_view data,
                                        const tools::JsonOptions& print = {});

// JSON -> FlatBuffers, a mismatch being a usage error. The buffer is
// finished with `file_identifier` when given (a method's payloads carry its
// service's: MethodInfo::file_identifier), else the declaring schema's.
absl::StatusOr<std::string> EncodeJson(const tools::SchemaSet& schemas,
                                       absl::string_view type,
                                       absl::string_view json,
                                       absl::string_view file_identifier = "");

// What `call`, `pub` and `bench` send: the input as it is (--raw), or JSON
// encoded as the method's request (a call) or the event's table (--type,
// else the one the subject names). When the local schemas have the type it
// is encoded by Prepare, before connecting, so a mistake costs no round
// trip and needs no server; otherwise Resolve finds it through the
// services' metadata once connected.
//
// Thread-safety: thread-compatible.
class OutgoingPayload {
 public:
  enum class Kind { kCall, kEvent };

  static absl::StatusOr<OutgoingPayload> Prepare(Kind kind, std::string subject,
                                                 std::string type, bool raw,
                                                 std::string input);
  // Encodes what Prepare could not; does nothing if it did.
  absl::Status Resolve(Connection& conn);

  const std::string& bytes() const { return bytes_; }
  // The called method once known (a call with a schema), else null.
  const tools::MethodInfo* method() const {
    return method_.has_value() ? &*method_ : nullptr;
  }
  // Null with --raw.
  tools::SchemaSet* schemas() const { return schemas_.get(); }

 private:
  absl::Status Encode(const std::string& type,
                      const std::string& file_identifier);

  Kind kind_ = Kind::kCall;
  std::string subject_, type_, input_, bytes_;
  bool encoded_ = false;
  std::unique_ptr<tools::SchemaSet> schemas_;
  std::optional<tools::MethodInfo> method_;
};

// Strict JSON of `text` (quoted and escaped).
std::string JsonString(absl::string_view text);

// "123 us" below 10 ms, "12.3 ms" below 1 s, "1.23 s" above.
std::string HumanDuration(absl::Duration d);

// Rows padded into columns (two spaces apart), the first row a header; the
// last column is not padded.
std::string FormatTable(const std::vector<std::vector<std::string>>& rows);

}  // namespace natsgw::cli

#endif  // NATSGW_SDK_TOOLS_NATSGW_CLI_H_
