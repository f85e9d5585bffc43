// Fuzz target: the schema-aware JSON <-> FlatBuffers layer of the natsgw CLI
// and natsgw-edge (natsgw::tools::SchemaSet, sdk/tools/common/schema_set.h).
//
// Both directions take bytes from anyone: a binary schema announced in a
// service's $SRV.INFO answer (AddBinarySchema), JSON typed by a user or sent
// to natsgw-edge (JsonToBinary), and a reply or event off the bus
// (BinaryToJson). FlatBuffers 2.0.8 trusts a deserialized schema and parts of
// a buffer its reflection verifier accepted; SchemaSet checks both before
// FlatBuffers sees them, and this target looks for what those checks miss.
//
// Input layout:
//   byte 0      mode (value % 3):
//                 0  schema: the rest is a binary schema (.bfbs);
//                 1  JSON: the rest is JSON for a table of users.fbs,
//                    translated to a buffer and back;
//                 2  buffer: the rest is a buffer of a table of users.fbs,
//                    translated to JSON and back.
//   byte 1      options: bits 0-1 the users.fbs table (RegisterUserRequest,
//               RegisterUserReply, UserRegistered; 3 picks the first again),
//               bit 2 compact JSON, bit 3 print default values, bit 4 do not
//               check the file identifier, bit 5 tight verify limits, bit 6
//               (schema mode) load users.fbs's binary schema first
//   ...         the data
//
// Checked:
//   - nothing crashes, hangs or trips a sanitizer, whatever the schema or
//     buffer (SchemaSet's guards against FlatBuffers' trust in its input);
//   - every refusal of the input is a clean INVALID_ARGUMENT (bounded, no raw
//     control byte), and a refused binary schema names its origin;
//   - JSON -> buffer: when the first parse succeeds, the buffer carries the
//     file identifier asked for, prints as JSON, and JSON -> buffer -> JSON
//     -> buffer is stable (the second buffer prints as the same JSON, and
//     the second translation gives the same buffer);
//   - buffer -> JSON: an accepted buffer prints as JSON that parses back and
//     is then stable as above; accepted under tight limits means accepted
//     under the defaults, and accepted with the file identifier checked
//     means accepted without the check;
//   - a binary schema that loads can be handed out again (BinarySchema) and
//     loads into another set; each of its tables translates "{}" and the
//     input bytes themselves without crashing, and what it accepts prints.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "flatbuffers/reflection.h"
#include "fuzz_support.h"
#include "natsgw/schemas/users_natsgw.h"
#include "schema_set.h"

namespace natsgw::fuzz {
namespace {

using tools::JsonOptions;
using tools::SchemaSet;
using tools::VerifyOptions;

constexpr absl::string_view kUsersTables[] = {
    "natsgw.users.RegisterUserRequest",
    "natsgw.users.RegisterUserReply",
    "natsgw.users.UserRegistered",
};
constexpr absl::string_view kUsersIdentifier = "NGUS";
// Error messages quote names and values from the input; this bounds them.
constexpr size_t kMaxMessageBytes = 4096;
// Tables of a fuzzed schema that are translated, per input.
constexpr int kMaxTablesTried = 8;

absl::string_view UsersBfbs() {
  return natsgw::users::UsersMethods::kService.schema_bfbs;
}

std::unique_ptr<SchemaSet> EmptySet() {
  absl::StatusOr<std::unique_ptr<SchemaSet>> set = SchemaSet::Load({});
  FUZZ_CHECK(set.ok(), "empty SchemaSet: ", set.status().ToString());
  return *std::move(set);
}

// The users.fbs set, made once: translations do not change it.
const SchemaSet& UsersSet() {
  static const SchemaSet* const set = [] {
    std::unique_ptr<SchemaSet> s = EmptySet();
    const absl::Status added = s->AddBinarySchema(UsersBfbs(), "users.bfbs");
    FUZZ_CHECK(added.ok(), "users.bfbs: ", added.ToString());
    return s.release();
  }();
  return *set;
}

void CheckRefusal(const absl::Status& status, absl::string_view what) {
  FUZZ_CHECK(IsCleanInvalidArgument(status, kMaxMessageBytes), what,
             " refused with something other than a clean INVALID_ARGUMENT: ",
             status.ToString());
}

VerifyOptions TightLimits(VerifyOptions verify) {
  verify.max_depth = 3;
  verify.max_tables = 4;
  verify.max_bytes = 256;
  return verify;
}

// `json` printed from a buffer of `type`: JSON -> buffer -> JSON -> buffer
// from there on must be stable (the first printing may still differ: a
// buffer may store a default value explicitly, which a rebuilt one leaves
// out). With `strict`, the JSON must parse back (the schemas natsgw itself
// ships); otherwise a refusal is allowed but must be clean (a fuzzed schema
// may hold what FlatBuffers prints but cannot parse again).
void CheckStable(const SchemaSet& set, absl::string_view type,
                 absl::string_view json, absl::string_view identifier,
                 const JsonOptions& options, bool strict) {
  const absl::StatusOr<std::string> bin =
      set.JsonToBinary(type, json, identifier);
  if (!bin.ok()) {
    FUZZ_CHECK(!strict, type,
               ": printed JSON does not parse back: ", bin.status().ToString(),
               "\nJSON: ", json);
    CheckRefusal(bin.status(), "printed JSON");
    return;
  }
  VerifyOptions verify;
  verify.check_identifier = !identifier.empty();
  verify.file_identifier = std::string(identifier);
  const absl::StatusOr<std::string> printed =
      set.BinaryToJson(type, *bin, verify, options);
  FUZZ_CHECK(printed.ok(), type, ": buffer made from printed JSON is refused: ",
             printed.status().ToString(), "\nJSON: ", json);
  const absl::StatusOr<std::string> bin_again =
      set.JsonToBinary(type, *printed, identifier);
  FUZZ_CHECK(bin_again.ok(), type, ": printed JSON does not parse back: ",
             bin_again.status().ToString(), "\nJSON: ", *printed);
  const absl::StatusOr<std::string> printed_again =
      set.BinaryToJson(type, *bin_again, verify, options);
  FUZZ_CHECK(
      printed_again.ok() && *printed_again == *printed, type,
      ": JSON changes on a round trip:\n", *printed, "\n->\n",
      printed_again.ok() ? *printed_again : printed_again.status().ToString());
  const absl::StatusOr<std::string> bin_third =
      set.JsonToBinary(type, *printed_again, identifier);
  FUZZ_CHECK(bin_third.ok() && *bin_third == *bin_again, type,
             ": the same JSON gives different buffers");
}

// Mode 1: JSON -> buffer -> JSON -> buffer against users.fbs.
void JsonMode(absl::string_view type, absl::string_view json,
              const JsonOptions& options) {
  const SchemaSet& set = UsersSet();
  const absl::StatusOr<std::string> bin = set.JsonToBinary(type, json);
  if (!bin.ok()) {
    CheckRefusal(bin.status(), "JSON");
    FUZZ_CHECK(absl::StartsWith(bin.status().message(), type),
               "refusal does not name the type: ", bin.status().message());
    return;
  }
  FUZZ_CHECK(bin->size() >= 8 && bin->substr(4, 4) == kUsersIdentifier, type,
             ": buffer lacks the file identifier ", kUsersIdentifier);
  const absl::StatusOr<std::string> printed =
      set.BinaryToJson(type, *bin, VerifyOptions{}, options);
  FUZZ_CHECK(printed.ok(), type, ": a buffer JsonToBinary made is refused: ",
             printed.status().ToString(), "\nJSON: ", json);
  CheckStable(set, type, json, kUsersIdentifier, options, /*strict=*/true);

  // Without a file identifier: the same content, the identifier left out.
  const absl::StatusOr<std::string> bare = set.JsonToBinary(type, json, "");
  FUZZ_CHECK(bare.ok(), type,
             ": accepted with an identifier, refused without: ",
             bare.status().ToString());
  VerifyOptions unchecked;
  unchecked.check_identifier = false;
  const absl::StatusOr<std::string> bare_printed =
      set.BinaryToJson(type, *bare, unchecked, options);
  FUZZ_CHECK(bare_printed.ok() && *bare_printed == *printed, type,
             ": the identifier changes the content: ",
             bare_printed.status().ToString());
}

// Mode 2: buffer -> JSON -> buffer -> JSON against users.fbs.
void BufferMode(absl::string_view type, absl::string_view data,
                const JsonOptions& options, bool check_identifier, bool tight) {
  const SchemaSet& set = UsersSet();
  VerifyOptions verify;
  verify.check_identifier = check_identifier;
  if (tight) verify = TightLimits(verify);
  const absl::StatusOr<std::string> json =
      set.BinaryToJson(type, data, verify, options);
  if (!json.ok()) {
    CheckRefusal(json.status(), "buffer");
    return;
  }
  // Limits only tighten.
  VerifyOptions loose;
  loose.check_identifier = false;
  const absl::StatusOr<std::string> loosely =
      set.BinaryToJson(type, data, loose, options);
  FUZZ_CHECK(loosely.ok() && *loosely == *json, type,
             ": accepted under tight limits or with the identifier checked, "
             "but not under the defaults without it: ",
             loosely.status().ToString());
  CheckStable(set, type, *json, check_identifier ? kUsersIdentifier : "",
              options, /*strict=*/true);
}

// Mode 0: a binary schema from the bus.
void SchemaMode(absl::string_view input, const JsonOptions& options,
                bool users_first) {
  // Aligned, as a schema read from a file or decoded from base64 is:
  // reflection reads scalars through plain pointers.
  std::vector<uint64_t> storage(input.size() / 8 + 1);
  std::memcpy(storage.data(), input.data(), input.size());
  const absl::string_view bfbs(reinterpret_cast<const char*>(storage.data()),
                               input.size());
  std::unique_ptr<SchemaSet> set = EmptySet();
  if (users_first) {
    const absl::Status added = set->AddBinarySchema(UsersBfbs(), "users.bfbs");
    FUZZ_CHECK(added.ok(), "users.bfbs: ", added.ToString());
  }
  const absl::Status added = set->AddBinarySchema(bfbs, "fuzzed schema");
  if (!added.ok()) {
    CheckRefusal(added, "binary schema");
    FUZZ_CHECK(absl::StrContains(added.message(), "fuzzed schema"),
               "refusal does not name the origin: ", added.message());
    return;
  }
  // The set in every other respect, then each table (AddBinarySchema
  // verified the buffer as reflection.fbs's Schema).
  for (const tools::MethodInfo& m : set->Methods()) {
    (void)set->MethodForSubject(m.subject);
    (void)set->EventTypeForSubject(absl::StrCat(m.subject, ".events.X"));
  }
  (void)set->Describe();
  const reflection::Schema* schema = reflection::GetSchema(bfbs.data());
  int tried = 0;
  for (const reflection::Object* object : *schema->objects()) {
    if (object->is_struct()) continue;
    if (++tried > kMaxTablesTried) break;
    const std::string type = object->name()->str();
    if (!set->HasTable(type)) continue;  // defined differently by users.fbs
    (void)set->EventTypeForSubject(absl::StrCat("x.events.", type));

    const absl::StatusOr<std::string> again = set->BinarySchema(type);
    FUZZ_CHECK(again.ok(), type, ": BinarySchema: ", again.status().ToString());
    std::unique_ptr<SchemaSet> other = EmptySet();
    const absl::Status reloaded = other->AddBinarySchema(*again, "again");
    FUZZ_CHECK(reloaded.ok(), type,
               ": the schema BinarySchema hands out does not load: ",
               reloaded.ToString());

    const absl::StatusOr<std::string> identifier = set->FileIdentifier(type);
    FUZZ_CHECK(identifier.ok(), type,
               ": FileIdentifier: ", identifier.status().ToString());
    const absl::StatusOr<std::string> empty = set->JsonToBinary(type, "{}");
    if (empty.ok()) {
      const absl::StatusOr<std::string> printed =
          set->BinaryToJson(type, *empty, VerifyOptions{}, options);
      if (printed.ok()) {
        CheckStable(*set, type, *printed, *identifier, options,
                    /*strict=*/false);
      } else {
        CheckRefusal(printed.status(), "buffer of {}");
      }
    } else {
      CheckRefusal(empty.status(), "{}");
    }
    // The schema's own bytes as a buffer of the table: bytes no builder
    // made, checked against a schema no compiler made.
    VerifyOptions unchecked;
    unchecked.check_identifier = false;
    const absl::StatusOr<std::string> printed =
        set->BinaryToJson(type, bfbs, unchecked, options);
    if (printed.ok()) {
      CheckStable(*set, type, *printed, "", options, /*strict=*/false);
    } else {
      CheckRefusal(printed.status(), "schema bytes as a buffer");
    }
  }
}

}  // namespace
}  // namespace natsgw::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace natsgw::fuzz;  // NOLINT(build/namespaces)
  Input in(data, size);
  const uint8_t mode = in.Byte() % 3;
  const uint8_t options = in.Byte();
  const absl::string_view type = kUsersTables[(options & 3) % 3];
  natsgw::tools::JsonOptions json;
  json.compact = (options & 4) != 0;
  json.defaults = (options & 8) != 0;
  const absl::string_view rest = in.Rest();
  switch (mode) {
    case 0:
      SchemaMode(rest, json, (options & 64) != 0);
      break;
    case 1:
      JsonMode(type, rest, json);
      break;
    default:
      BufferMode(type, rest, json, (options & 16) == 0, (options & 32) != 0);
      break;
  }
  return 0;
}
