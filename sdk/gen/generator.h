// natsgw-gen's core: reads a FlatBuffers schema with FlatBuffers' own parser
// (flatbuffers::Parser from flatbuffers/idl.h, the one flatc uses) and emits,
// for every `rpc_service` declared in that file, a header with
//
//   <Service>Methods      constexpr natsgw::ServiceDescriptor kService and
//                         one natsgw::MethodDescriptor k<Method> per method;
//                         kService.schema_bfbs is the binary schema of the
//                         file and its includes (Parser::Serialize() with
//                         built-in attributes, so (idempotent) survives),
//                         emitted once per file as
//                         natsgw_generated::kBfbs_<prefix>_<stem>;
//   <Service>Client       a typed client over natsgw::RpcChannel: per method a
//                         blocking <Method>(), a future <Method>Async() and a
//                         callback <Method>Async();
//   <Service>ServiceBase  a base class with one pure virtual method per RPC
//                         and Start(), which serves them as a NATS Services
//                         API service.
//
// The header includes flatc's `<stem>_generated.h`, which natsgw_generate()
// (cmake/NatsgwGenerate.cmake) produces next to it.
//
// Rules checked beyond what FlatBuffers' parser checks (each a GenError with
// the file and line of the offending declaration):
//   - a schema that declares an rpc_service must declare a file_identifier:
//     every natsgw payload carries one (schemas/README.md section 1);
//   - request and response types are tables (FlatBuffers already requires
//     this; checked again so the message is ours);
//   - no two services of one file share a subject prefix (the lower-cased
//     service name), and no method name collides with a generated member
//     (Service, Create, channel, Start, MakeServiceConfig, <M>Async for an
//     existing <M>) or is a C++ keyword.
//
// Thread-safety: pure functions.
#ifndef NATSGW_SDK_GEN_GENERATOR_H_
#define NATSGW_SDK_GEN_GENERATOR_H_

#include <string>
#include <vector>

namespace natsgw::gen {

struct GenOptions {
  // Directories searched for `include "x.fbs";` (after the schema's own
  // directory, as flatc does).
  std::vector<std::string> include_dirs;
  // Where the generated headers will be included from, e.g. "natsgw/schemas":
  // only used to make the include guard unique.
  std::string include_prefix;
};

// One diagnostic, formatted as compilers do: "<file>:<line>: error: <what>"
// (FlatBuffers' own parse errors keep its format, which also starts with
// "<file>:<line>:").
struct GenError {
  std::string message;
};

struct GenResult {
  // Empty when `errors` is not.
  std::string header;
  // The file name the header should be written to: "<stem>_natsgw.h".
  std::string file_name;
  std::vector<GenError> errors;
  // rpc_service declarations found in the schema (not in its includes).
  int services = 0;
};

// Parses `schema_path` (loaded from disk) and generates its header.
GenResult GenerateFromFile(const std::string& schema_path,
                           const GenOptions& options);

// As GenerateFromFile, with the schema text given; `schema_path` names it in
// diagnostics and locates its includes.
GenResult GenerateFromSource(const std::string& schema_path,
                             const std::string& source,
                             const GenOptions& options);

// The subject prefix of a service by default: its name in lower case.
std::string DefaultPrefix(const std::string& service_name);

}  // namespace natsgw::gen

#endif  // NATSGW_SDK_GEN_GENERATOR_H_
