// The flags several natsgw commands share. Their help here is the general
// meaning (what --helpfull shows); `natsgw help <command>` shows what each
// means for that command, and its default there.
#include "flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, schema, "",
          "FlatBuffers schemas: comma-separated .fbs or .bfbs files or "
          "directories (their .fbs and .bfbs files). Default: "
          "$NATSGW_SCHEMA_PATH (colon-separated); without either, schemas "
          "come from the running services' Services API metadata");
ABSL_FLAG(std::string, schema_include, "",
          "Comma-separated directories searched for the `include`s of .fbs "
          "files (after the including file's own directory)");
ABSL_FLAG(absl::Duration, wait, absl::Seconds(1),
          "How long Services API answers ($SRV.PING/INFO/STATS) are "
          "collected");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(5),
          "call, bench: how long to wait for each reply; pub: for the "
          "server to confirm the messages; sub: stop after this long");
ABSL_FLAG(std::string, header, "",
          "Header KEY=VALUE to send (repeat the flag for more)");
ABSL_FLAG(std::string, type, "",
          "Fully qualified FlatBuffers table of the messages (e.g. "
          "natsgw.users.UserRegistered); default: the event type the subject "
          "names (<prefix>.events.<Event>)");
ABSL_FLAG(int, count, 0,
          "call, pub: how many to send (default 1); sub: stop after this "
          "many messages; bench: stop after this many operations (0: no "
          "limit)");
ABSL_FLAG(int, concurrency, 1, "Operations in flight at once (call, bench)");
ABSL_FLAG(bool, json, false, "Machine-readable output: JSON (lines)");
ABSL_FLAG(bool, raw, false,
          "No schema: send the argument's bytes as they are, print payloads "
          "as they are");
ABSL_FLAG(bool, progress, false,
          "Show the progress bar on stderr even when it is not a terminal");
ABSL_FLAG(bool, verbose, false,
          "Also print headers (call: of the reply, on stderr; sub: of each "
          "message)");
