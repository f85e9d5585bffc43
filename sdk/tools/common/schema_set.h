// schema_set.h: FlatBuffers schemas loaded at run time, and the JSON <->
// FlatBuffers translation the natsgw CLI and natsgw-edge are built on.
//
// Schemas come from .fbs files (parsed with FlatBuffers' own parser, include
// directories searched as flatc does), from binary schemas (.bfbs, as
// `flatc --binary --schema` writes them), from directories (every .fbs and
// .bfbs file in them) or from a running service's $SRV.INFO answer (service
// metadata "fbs.bfbs": the base64 of its binary schema, see discovery.h).
//
//   NATSGW_ASSIGN_OR_RETURN(auto schemas,
//                           natsgw::tools::SchemaSet::Load({"schemas/"}));
//   NATSGW_ASSIGN_OR_RETURN(natsgw::tools::MethodInfo m,
//                           schemas->MethodForSubject("users.RegisterUser"));
//   NATSGW_ASSIGN_OR_RETURN(std::string request,
//       schemas->JsonToBinary(m.request_type, R"({"email":"a@b.c"})",
//                             m.file_identifier));
//   ... send it, get `reply` ...
//   natsgw::tools::VerifyOptions verify;
//   verify.file_identifier = m.file_identifier;
//   NATSGW_ASSIGN_OR_RETURN(std::string json,
//       schemas->BinaryToJson(m.response_type, reply.data, verify));
//
// File identifiers: natsgw finishes both payloads of a method with the
// identifier of the schema that declares its rpc_service
// (MethodInfo::file_identifier), which differs from the identifier of the
// schema declaring the type when the type comes from an included schema.
// Pass the method's identifier for RPC payloads, as above; without it the
// identifier of the schema declaring the type is used. A binary schema does
// not record which file declared a type: its types carry its own identifier.
//
// Errors name the rule broken and the place:
//   INVALID_ARGUMENT   JSON that does not match the type (FlatBuffers'
//                      message, with line and column), a buffer that fails
//                      verification (size, depth, bounds, file identifier),
//                      a schema that does not parse;
//   NOT_FOUND          an unknown type, a subject no loaded rpc_service serves;
//   FAILED_PRECONDITION a subject two loaded services claim, a type name two
//                      schemas define differently;
//   NOT_FOUND / PERMISSION_DENIED from the file system when loading.
//
// Limits: fields marked nested_flatbuffer or flexbuffer are read and printed
// as the [ubyte] they are on the wire (FlatBuffers' verifier does not look
// inside them); vectors of unions and structs nested more than 64 deep are
// not supported (a schema using them does not load). JSON is parsed with
// FlatBuffers' parser in strict mode: field names must be quoted.
//
// Thread-safety: every method may be called concurrently from any number of
// threads, AddBinarySchema included (a reader sees the set before or after
// the addition, never half of it). flatbuffers::Parser is not thread-safe:
// each translation uses a parser of its own, from a small pool per schema
// guarded by one mutex, so translations of one schema run in parallel.
#ifndef NATSGW_SDK_TOOLS_COMMON_SCHEMA_SET_H_
#define NATSGW_SDK_TOOLS_COMMON_SCHEMA_SET_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace natsgw::tools {

// One method of a loaded rpc_service, or one endpoint discovered through the
// Services API (then `subject` is the one the endpoint announced).
struct MethodInfo {
  std::string subject;          // "users.RegisterUser"
  std::string service;          // "natsgw.users.Users"
  std::string method;           // "RegisterUser"
  std::string request_type;     // "natsgw.users.RegisterUserRequest"
  std::string response_type;    // "natsgw.users.RegisterUserReply"
  std::string file_identifier;  // "NGUS", empty if the schema has none
  bool idempotent = false;
};

// Limits a received buffer is verified under before it is turned into JSON.
struct VerifyOptions {
  size_t max_bytes = 64 << 20;
  int max_depth = 64;
  int max_tables = 1000000;
  // Require the schema's file identifier (when it has one).
  bool check_identifier = true;
  // The identifier to require instead of the one of the schema declaring the
  // type (see the file comment; RPC payloads: MethodInfo::file_identifier).
  // Empty: the declaring schema's. Ignored unless check_identifier.
  std::string file_identifier;
};

struct JsonOptions {
  // One line ("{"a": 1}") rather than indented.
  bool compact = false;
  // Also print scalar fields that hold their default value.
  bool defaults = false;
};

class SchemaSet {
 public:
  // Loads every path: a .fbs file, a .bfbs file or a directory (its .fbs and
  // .bfbs files, not recursing). `include_dirs` are searched for the
  // includes of .fbs files, after the including file's own directory; an
  // included file is loaded too (it declares its own types and services). A
  // file reached twice is loaded once. An empty `paths` gives an empty set
  // (every lookup NOT_FOUND). A directory without schema files, or a file
  // that is neither .fbs nor .bfbs, is INVALID_ARGUMENT.
  static absl::StatusOr<std::unique_ptr<SchemaSet>> Load(
      const std::vector<std::string>& paths,
      const std::vector<std::string>& include_dirs = {});

  SchemaSet(const SchemaSet&) = delete;
  SchemaSet& operator=(const SchemaSet&) = delete;
  ~SchemaSet();

  // Adds a binary schema (reflection.fbs's Schema, as .bfbs); `origin`
  // names it in error messages ("$SRV.INFO of users"). The bytes may come
  // from anyone on the bus: they are verified, and checked for references a
  // well-formed schema cannot have, before use (INVALID_ARGUMENT naming
  // `origin`). At most 16 MiB. Adding a schema identical to one already
  // loaded changes nothing.
  absl::Status AddBinarySchema(absl::string_view bfbs,
                               absl::string_view origin);

  // Every method of every loaded rpc_service, with its default subject
  // ("<rpc_service name lower-cased>.<Method>", schemas/README.md section 2),
  // sorted by subject. A method two schemas declare alike is listed once;
  // different methods claiming one subject are all listed.
  std::vector<MethodInfo> Methods() const;

  // The method served on `subject` under its default prefix. NOT_FOUND
  // names the subjects that are served.
  absl::StatusOr<MethodInfo> MethodForSubject(absl::string_view subject) const;

  // The event type of an event subject "<prefix>.events.<Event>": the table
  // named <Event> (unqualified) in the loaded schemas; NOT_FOUND when none,
  // FAILED_PRECONDITION when more than one schema defines such a table and
  // no single one of them also serves an rpc_service under <prefix>.
  // INVALID_ARGUMENT for a subject not of that shape.
  absl::StatusOr<std::string> EventTypeForSubject(
      absl::string_view subject) const;

  // True if `type` (fully qualified, "natsgw.users.UserRegistered") is a
  // table of a loaded schema (and not defined differently by two).
  bool HasTable(absl::string_view type) const;

  // The file identifier of the schema declaring `type` (empty if none).
  absl::StatusOr<std::string> FileIdentifier(absl::string_view type) const;

  // JSON -> FlatBuffers: the finished buffer (with the declaring schema's
  // file identifier) of table `type`. JSON is parsed by FlatBuffers' parser:
  // unknown fields, wrong types, missing required fields and nesting beyond
  // 64 levels are INVALID_ARGUMENT naming the field and position, prefixed
  // by the type ("natsgw.users.RegisterUserRequest: line 1, column 20:
  // required field is missing: email in RegisterUserRequest"). The caller
  // bounds the size of `json`.
  absl::StatusOr<std::string> JsonToBinary(absl::string_view type,
                                           absl::string_view json) const;
  // The same, finished with `file_identifier` (4 characters; empty: none)
  // instead of the declaring schema's.
  absl::StatusOr<std::string> JsonToBinary(
      absl::string_view type, absl::string_view json,
      absl::string_view file_identifier) const;

  // FlatBuffers -> JSON: verifies `data` as table `type` under `verify`
  // (INVALID_ARGUMENT naming what failed: "size limit", "truncated", "file
  // identifier", "depth or table limit", "verification"), then prints it as
  // strict JSON (RFC 8259: a value JSON cannot hold, a NaN or infinite
  // float or a string that is not UTF-8, is INVALID_ARGUMENT).
  absl::StatusOr<std::string> BinaryToJson(absl::string_view type,
                                           absl::string_view data,
                                           const VerifyOptions& verify = {},
                                           const JsonOptions& json = {}) const;

  // The binary schema declaring `type` (what "fbs.bfbs" carries): for a .fbs
  // file, the file and its includes, serialized as natsgw-gen does.
  absl::StatusOr<std::string> BinarySchema(absl::string_view type) const;

  // A line per loaded schema: "<origin>: <n> tables, services <names>"
  // (origin: the path, "<path> (included by <path>)", or AddBinarySchema's
  // origin), in load order.
  std::vector<std::string> Describe() const;

 private:
  class Impl;
  explicit SchemaSet(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace natsgw::tools

#endif  // NATSGW_SDK_TOOLS_COMMON_SCHEMA_SET_H_
