#include "generator.h"

#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "flatbuffers/idl.h"
#include "flatbuffers/util.h"

namespace natsgw::gen {
namespace {

// ---------------------------------------------------------------------------
// Locating declarations for diagnostics.
//
// flatbuffers::Parser records no line numbers for definitions, so errors
// found after parsing (ours) look the declaration up in the source: a small
// scanner that yields identifiers with their line, skipping comments and
// string literals. It only places messages; the schema itself is understood
// through the Parser.

struct Token {
  std::string text;
  int line;
};

std::vector<Token> Identifiers(const std::string& source) {
  std::vector<Token> out;
  int line = 1;
  size_t i = 0;
  const size_t n = source.size();
  while (i < n) {
    const char c = source[i];
    if (c == '\n') {
      ++line;
      ++i;
    } else if (c == '/' && i + 1 < n && source[i + 1] == '/') {
      while (i < n && source[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && source[i + 1] == '*') {
      i += 2;
      while (i + 1 < n && !(source[i] == '*' && source[i + 1] == '/')) {
        if (source[i] == '\n') ++line;
        ++i;
      }
      i += 2;
    } else if (c == '"') {
      ++i;
      while (i < n && source[i] != '"' && source[i] != '\n') {
        if (source[i] == '\\') ++i;
        ++i;
      }
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      const size_t start = i;
      while (i < n && (std::isalnum(static_cast<unsigned char>(source[i])) ||
                       source[i] == '_')) {
        ++i;
      }
      out.push_back({source.substr(start, i - start), line});
    } else {
      ++i;
    }
  }
  return out;
}

// Line of `rpc_service <service>` and, if `method` is not empty, of the first
// identifier `method` after it. 0 if not found.
int DeclarationLine(const std::vector<Token>& tokens,
                    const std::string& service, const std::string& method) {
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    if (tokens[i].text != "rpc_service" || tokens[i + 1].text != service) {
      continue;
    }
    if (method.empty()) return tokens[i + 1].line;
    for (size_t j = i + 2; j < tokens.size(); ++j) {
      if (tokens[j].text == "rpc_service") break;
      if (tokens[j].text == method) return tokens[j].line;
    }
    return tokens[i + 1].line;
  }
  return 0;
}

// FlatBuffers reports a type that is used but never defined at the end of
// the file, adding ", originally at: <file>:<line>" for the use. Editors jump
// to the first "<file>:<line>:", so put the use first.
std::string PointAtOrigin(absl::string_view message) {
  constexpr absl::string_view kOrigin = ", originally at: ";
  const size_t at = message.rfind(kOrigin);
  const size_t error = message.find(": error: ");
  if (at == absl::string_view::npos || error == absl::string_view::npos ||
      error > at) {
    return std::string(message);
  }
  return absl::StrCat(message.substr(at + kOrigin.size()),
                      ": error: ", message.substr(error + 9, at - error - 9));
}

// ---------------------------------------------------------------------------
// Names.

const std::set<std::string>& CppKeywords() {
  static const auto* const kKeywords = new std::set<std::string>{
      "alignas",       "alignof",     "and",
      "and_eq",        "asm",         "auto",
      "bitand",        "bitor",       "bool",
      "break",         "case",        "catch",
      "char",          "char8_t",     "char16_t",
      "char32_t",      "class",       "compl",
      "concept",       "const",       "consteval",
      "constexpr",     "constinit",   "const_cast",
      "continue",      "co_await",    "co_return",
      "co_yield",      "decltype",    "default",
      "delete",        "do",          "double",
      "dynamic_cast",  "else",        "enum",
      "explicit",      "export",      "extern",
      "false",         "float",       "for",
      "friend",        "goto",        "if",
      "inline",        "int",         "long",
      "mutable",       "namespace",   "new",
      "noexcept",      "not",         "not_eq",
      "nullptr",       "operator",    "or",
      "or_eq",         "private",     "protected",
      "public",        "register",    "reinterpret_cast",
      "requires",      "return",      "short",
      "signed",        "sizeof",      "static",
      "static_assert", "static_cast", "struct",
      "switch",        "template",    "this",
      "thread_local",  "throw",       "true",
      "try",           "typedef",     "typeid",
      "typename",      "union",       "unsigned",
      "using",         "virtual",     "void",
      "volatile",      "wchar_t",     "while",
      "xor",           "xor_eq"};
  return *kKeywords;
}

// "natsgw.echo.EchoRequest" for a definition in namespace natsgw.echo.
std::string SchemaName(const flatbuffers::Definition& def) {
  if (def.defined_namespace == nullptr) return def.name;
  return def.defined_namespace->GetFullyQualifiedName(def.name);
}

// "::natsgw::echo::EchoRequest".
std::string CppName(const flatbuffers::Definition& def) {
  std::string out;
  if (def.defined_namespace != nullptr) {
    for (const std::string& component : def.defined_namespace->components) {
      absl::StrAppend(&out, "::", component);
    }
  }
  absl::StrAppend(&out, "::", def.name);
  return out;
}

std::string CppStringLiteral(const std::string& s) {
  return absl::StrCat("\"", absl::CEscape(s), "\"");
}

std::string IncludeGuard(const std::string& prefix, const std::string& stem) {
  std::string guard = "NATSGW_GENERATED_";
  for (char c :
       absl::StrCat(prefix, prefix.empty() ? "" : "/", stem, "_natsgw_h_")) {
    guard.push_back(std::isalnum(static_cast<unsigned char>(c))
                        ? absl::ascii_toupper(static_cast<unsigned char>(c))
                        : '_');
  }
  return guard;
}

// The name of the generated binary schema constant: unique per include
// prefix and stem, as the include guard is, since two schemas with one stem
// may be included together.
std::string BfbsConstant(const std::string& prefix, const std::string& stem) {
  std::string name = "kBfbs_";
  for (char c : absl::StrCat(prefix, prefix.empty() ? "" : "_", stem)) {
    const char out = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    // No "__": such names are reserved.
    if (out == '_' && name.back() == '_') continue;
    name.push_back(out);
  }
  return name;
}

// `bytes` as the lines of a C++ string literal (adjacent literals, each line
// indented by `indent`): printable ASCII as is, everything else (and '"',
// '\\', '?') as a three-digit octal escape, which cannot swallow a digit
// that follows it as a hex escape would.
std::string ByteStringLiteral(absl::string_view bytes,
                              const std::string& indent) {
  constexpr size_t kLineChars = 72;
  std::string out = indent + "\"";
  size_t line = 0;
  for (unsigned char c : bytes) {
    if (line >= kLineChars) {
      out += "\"\n" + indent + "\"";
      line = 0;
    }
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '?') {
      out.push_back(static_cast<char>(c));
      line += 1;
    } else {
      out.push_back('\\');
      out.push_back(static_cast<char>('0' + ((c >> 6) & 7)));
      out.push_back(static_cast<char>('0' + ((c >> 3) & 7)));
      out.push_back(static_cast<char>('0' + (c & 7)));
      line += 4;
    }
  }
  out += "\"";
  return out;
}

// Doc comments from the schema (`/// text`), re-emitted as `// text`.
void EmitDoc(std::ostringstream& out, const flatbuffers::Definition& def,
             const std::string& indent) {
  for (const std::string& line : def.doc_comment) {
    out << indent << "//" << line << "\n";
  }
}

// ---------------------------------------------------------------------------
// The model the emitter works from.

struct MethodModel {
  std::string name;
  std::string request_cpp, response_cpp;
  std::string request_schema, response_schema;
  bool idempotent = false;
  const flatbuffers::RPCCall* def = nullptr;
};

struct ServiceModel {
  std::string name;
  std::string full_name;
  std::string prefix;
  std::vector<std::string> namespace_components;
  std::vector<MethodModel> methods;
  const flatbuffers::ServiceDef* def = nullptr;
};

class Emitter {
 public:
  Emitter(std::string schema_file, std::string stem, std::string identifier,
          std::string guard, std::string bfbs, std::string bfbs_constant)
      : schema_file_(std::move(schema_file)),
        stem_(std::move(stem)),
        identifier_(std::move(identifier)),
        guard_(std::move(guard)),
        bfbs_(std::move(bfbs)),
        bfbs_constant_(std::move(bfbs_constant)) {}

  std::string Emit(const std::vector<ServiceModel>& services) {
    EmitPrologue(services);
    if (!services.empty()) EmitBinarySchema();
    for (const ServiceModel& service : services) {
      OpenNamespace(service.namespace_components);
      EmitMethods(service);
      EmitClient(service);
      EmitServiceBase(service);
      CloseNamespace(service.namespace_components);
    }
    out_ << "#endif  // " << guard_ << "\n";
    return out_.str();
  }

 private:
  void EmitPrologue(const std::vector<ServiceModel>& services) {
    out_ << "// Generated by natsgw-gen from " << schema_file_
         << ". Do not edit: change the schema\n"
         << "// and rebuild.\n//\n";
    if (services.empty()) {
      out_ << "// " << schema_file_
           << " declares no rpc_service; this header only includes flatc's\n"
           << "// output so that every schema has one.\n";
    }
    for (const ServiceModel& service : services) {
      out_ << "// rpc_service " << service.full_name << ": subject prefix \""
           << service.prefix << "\" (overridable), file identifier \""
           << identifier_ << "\"\n";
      for (const MethodModel& m : service.methods) {
        out_ << "//   " << service.prefix << "." << m.name << "  "
             << m.request_schema << " -> " << m.response_schema
             << (m.idempotent ? "  (idempotent)" : "") << "\n";
      }
    }
    if (!services.empty()) {
      out_ << "//\n"
           << "// Per rpc_service S: SMethods (descriptors), SClient (typed "
              "client, see\n"
           << "// natsgw/rpc_client.h) and SServiceBase (implement it and "
              "Start() it, see\n"
           << "// natsgw/typed_service.h).\n";
    }
    out_ << "#ifndef " << guard_ << "\n#define " << guard_ << "\n\n";
    if (!services.empty()) {
      out_ << "#include <future>\n"
           << "#include <memory>\n"
           << "#include <utility>\n\n"
           << "#include \"absl/status/status.h\"\n"
           << "#include \"absl/status/statusor.h\"\n"
           << "#include \"flatbuffers/flatbuffers.h\"\n"
           << "#include \"natsgw/connection.h\"\n"
           << "#include \"natsgw/rpc_client.h\"\n"
           << "#include \"natsgw/rpc_method.h\"\n"
           << "#include \"natsgw/server_context.h\"\n"
           << "#include \"natsgw/service.h\"\n"
           << "#include \"natsgw/typed_service.h\"\n";
    }
    out_ << "#include \"" << stem_ << "_generated.h\"\n\n";
  }

  // One constant per file, shared by the descriptors of all its services
  // (which may live in different namespaces).
  void EmitBinarySchema() {
    out_ << "namespace natsgw_generated {\n\n"
         << "// The binary schema of " << schema_file_
         << " and its includes (reflection.fbs's Schema,\n"
         << "// " << bfbs_.size()
         << " bytes): ServiceDescriptor::schema_bfbs, announced as service "
            "metadata\n"
         << "// fbs.bfbs.\n"
         << "inline constexpr char " << bfbs_constant_ << "[] =\n"
         << ByteStringLiteral(bfbs_, "    ") << ";\n\n"
         << "}  // namespace natsgw_generated\n\n";
  }

  void OpenNamespace(const std::vector<std::string>& components) {
    if (components.empty()) return;
    out_ << "namespace " << absl::StrJoin(components, "::") << " {\n\n";
  }

  void CloseNamespace(const std::vector<std::string>& components) {
    if (components.empty()) return;
    out_ << "}  // namespace " << absl::StrJoin(components, "::") << "\n\n";
  }

  void EmitMethods(const ServiceModel& s) {
    out_ << "// Static descriptions of rpc_service " << s.full_name
         << " (natsgw/rpc_method.h).\n"
         << "struct " << s.name << "Methods {\n"
         << "  static constexpr ::natsgw::ServiceDescriptor kService{\n"
         << "      /*name=*/" << CppStringLiteral(s.name) << ",\n"
         << "      /*full_name=*/" << CppStringLiteral(s.full_name) << ",\n"
         << "      /*default_prefix=*/" << CppStringLiteral(s.prefix) << ",\n"
         << "      /*schema_file=*/" << CppStringLiteral(schema_file_) << ",\n"
         << "      /*file_identifier=*/" << CppStringLiteral(identifier_)
         << ",\n"
         << "      /*schema_bfbs=*/::absl::string_view(\n"
         << "          ::natsgw_generated::" << bfbs_constant_ << ",\n"
         << "          sizeof(::natsgw_generated::" << bfbs_constant_
         << ") - 1)};\n";
    for (const MethodModel& m : s.methods) {
      out_ << "  static constexpr ::natsgw::MethodDescriptor k" << m.name
           << "{\n"
           << "      /*service=*/" << CppStringLiteral(s.name) << ",\n"
           << "      /*method=*/" << CppStringLiteral(m.name) << ",\n"
           << "      /*full_service_name=*/" << CppStringLiteral(s.full_name)
           << ",\n"
           << "      /*request_type=*/" << CppStringLiteral(m.request_schema)
           << ",\n"
           << "      /*response_type=*/" << CppStringLiteral(m.response_schema)
           << ",\n"
           << "      /*file_identifier=*/" << CppStringLiteral(identifier_)
           << ",\n"
           << "      /*default_prefix=*/" << CppStringLiteral(s.prefix) << ",\n"
           << "      /*schema_file=*/" << CppStringLiteral(schema_file_)
           << ",\n"
           << "      /*idempotent=*/" << (m.idempotent ? "true" : "false")
           << "};\n";
    }
    out_ << "};\n\n";
  }

  void EmitClient(const ServiceModel& s) {
    const std::string cls = s.name + "Client";
    EmitDoc(out_, *s.def, "");
    out_ << "// Typed client of rpc_service " << s.full_name
         << ". Every call is verified,\n"
         << "// traced and timed; idempotent methods are retried "
            "(ClientOptions::retry).\n"
         << "//\n"
         << "//   NATSGW_ASSIGN_OR_RETURN(auto client, " << cls
         << "::Create(*connection));\n"
         << "//\n"
         << "// Thread-safe and cheap to copy. The Connection must outlive "
            "the client and\n"
         << "// every call in flight.\n"
         << "class " << cls << " {\n"
         << " public:\n"
         << "  using Methods = " << s.name << "Methods;\n\n"
         << "  // INVALID_ARGUMENT if `options` are unusable "
            "(natsgw::RpcChannel::Create).\n"
         << "  static absl::StatusOr<" << cls
         << "> Create(::natsgw::Connection& connection,\n"
         << "      ::natsgw::ClientOptions options = {}) {\n"
         << "    absl::StatusOr<::natsgw::RpcChannel> channel =\n"
         << "        ::natsgw::RpcChannel::Create(connection, "
            "std::move(options));\n"
         << "    if (!channel.ok()) return channel.status();\n"
         << "    return " << cls << "(*std::move(channel));\n"
         << "  }\n\n"
         << "  explicit " << cls << "(::natsgw::RpcChannel channel)\n"
         << "      : channel_(std::move(channel)) {}\n\n"
         << "  const ::natsgw::RpcChannel& channel() const { return channel_; "
            "}\n";
    for (const MethodModel& m : s.methods) {
      const std::string response =
          absl::StrCat("::natsgw::Response<", m.response_cpp, ">");
      const std::string builder =
          absl::StrCat("::natsgw::RequestBuilder<", m.request_cpp, ">");
      const std::string call_args = absl::StrCat(
          "<", m.request_cpp, ", ", m.response_cpp, ">(Methods::k", m.name);
      out_ << "\n";
      EmitDoc(out_, *m.def, "  ");
      out_ << "  // " << s.prefix << "." << m.name
           << ": waits for the verified reply.\n"
           << "  absl::StatusOr<" << response << "> " << m.name << "(\n"
           << "      " << builder << " build,\n"
           << "      const ::natsgw::CallOptions& options = {}) const {\n"
           << "    return channel_.Call" << call_args << ", build, options);\n"
           << "  }\n"
           << "  // " << s.prefix << "." << m.name
           << ": the future becomes ready with the reply.\n"
           << "  std::future<absl::StatusOr<" << response << ">> " << m.name
           << "Async(\n"
           << "      " << builder << " build,\n"
           << "      const ::natsgw::CallOptions& options = {}) const {\n"
           << "    return channel_.CallAsync" << call_args
           << ", build, options);\n"
           << "  }\n"
           << "  // " << s.prefix << "." << m.name
           << ": `done` gets the reply exactly once.\n"
           << "  void " << m.name << "Async(\n"
           << "      " << builder << " build,\n"
           << "      ::natsgw::ResponseCallback<" << m.response_cpp
           << "> done,\n"
           << "      const ::natsgw::CallOptions& options = {}) const {\n"
           << "    channel_.CallAsync" << call_args
           << ", build, std::move(done),\n"
           << "        options);\n"
           << "  }\n";
    }
    out_ << "\n private:\n"
         << "  ::natsgw::RpcChannel channel_;\n"
         << "};\n\n";
  }

  void EmitServiceBase(const ServiceModel& s) {
    const std::string cls = s.name + "ServiceBase";
    out_ << "// Implements rpc_service " << s.full_name
         << ": derive, override every method,\n"
         << "// then Start() serves them as a NATS Services API service "
            "named \""
         << s.prefix << "\"\n"
         << "// (TypedServiceOptions::name overrides). Requests are verified "
            "before a\n"
         << "// method runs; the reply is built in ctx.builder() and "
            "finished by the\n"
         << "// framework.\n"
         << "//\n"
         << "// Thread-safety: methods run on the endpoints' delivery "
            "threads, or\n"
         << "// concurrently on ServeOptions::workers threads; the object "
            "must outlive\n"
         << "// the Service that Start() returns.\n"
         << "class " << cls << " {\n"
         << " public:\n"
         << "  using Methods = " << s.name << "Methods;\n\n"
         << "  virtual ~" << cls << "() = default;\n";
    for (const MethodModel& m : s.methods) {
      out_ << "\n";
      EmitDoc(out_, *m.def, "  ");
      out_ << "  // Serves " << s.prefix << "." << m.name
           << ": returns the root of the reply built in\n"
           << "  // ctx.builder(), or an error the caller receives with the "
              "same code.\n"
           << "  virtual absl::StatusOr<flatbuffers::Offset<" << m.response_cpp
           << ">> " << m.name << "(\n"
           << "      const " << m.request_cpp
           << "& request, ::natsgw::ServerContext& ctx) = 0;\n";
    }
    out_ << "\n"
         << "  // The service definition Start() uses (for hand-made "
            "changes).\n"
         << "  ::natsgw::ServiceConfig MakeServiceConfig(\n"
         << "      const ::natsgw::TypedServiceOptions& options = {}) {\n"
         << "    ::natsgw::ServiceConfig config =\n"
         << "        ::natsgw::MakeServiceConfig(Methods::kService, "
            "options);\n"
         << "    config.endpoints.reserve(" << s.methods.size() << ");\n";
    for (const MethodModel& m : s.methods) {
      out_ << "    config.endpoints.push_back(\n"
           << "        ::natsgw::MakeTypedEndpoint<" << m.request_cpp << ", "
           << m.response_cpp << ">(\n"
           << "            Methods::k" << m.name << ",\n"
           << "            [this](const " << m.request_cpp
           << "& request, ::natsgw::ServerContext& ctx) {\n"
           << "              return " << m.name << "(request, ctx);\n"
           << "            },\n"
           << "            options));\n";
    }
    out_ << "    return config;\n"
         << "  }\n\n"
         << "  // Serves every method on `connection` until the returned "
            "Service is\n"
         << "  // stopped or destroyed. INVALID_ARGUMENT for unusable options; "
            "errors of\n"
         << "  // natsgw::Service::Start otherwise.\n"
         << "  absl::StatusOr<std::unique_ptr<::natsgw::Service>> Start(\n"
         << "      ::natsgw::Connection& connection,\n"
         << "      const ::natsgw::TypedServiceOptions& options = {}) {\n"
         << "    absl::Status valid = "
            "::natsgw::ValidateTypedServiceOptions(options);\n"
         << "    if (!valid.ok()) return valid;\n"
         << "    return ::natsgw::Service::Start(connection, "
            "MakeServiceConfig(options));\n"
         << "  }\n"
         << "};\n\n";
  }

  const std::string schema_file_;
  const std::string stem_;
  const std::string identifier_;
  const std::string guard_;
  const std::string bfbs_;
  const std::string bfbs_constant_;
  std::ostringstream out_;
};

}  // namespace

std::string DefaultPrefix(const std::string& service_name) {
  return absl::AsciiStrToLower(service_name);
}

GenResult GenerateFromSource(const std::string& schema_path,
                             const std::string& source,
                             const GenOptions& options) {
  GenResult result;
  const std::string schema_file = flatbuffers::StripPath(schema_path);
  const std::string stem = flatbuffers::StripExtension(schema_file);
  result.file_name = stem + "_natsgw.h";

  auto error = [&](int line, const std::string& what) {
    result.errors.push_back(
        {absl::StrCat(schema_path, ":", line > 0 ? absl::StrCat(line, ":") : "",
                      " error: ", what)});
  };

  // As flatc: the schema's own directory first, then the -I directories.
  const std::string own_dir = flatbuffers::StripFileName(schema_path);
  std::vector<const char*> include_paths;
  include_paths.push_back(own_dir.empty() ? "." : own_dir.c_str());
  for (const std::string& dir : options.include_dirs) {
    include_paths.push_back(dir.c_str());
  }
  include_paths.push_back(nullptr);

  flatbuffers::IDLOptions idl_options;
  // Built-in attributes such as (idempotent) stay in the binary schema.
  idl_options.binary_schema_builtins = true;
  flatbuffers::Parser parser(idl_options);
  if (!parser.Parse(source.c_str(), include_paths.data(),
                    schema_path.c_str())) {
    // FlatBuffers' message already reads "<file>:<line>: <col>: error: ...".
    for (absl::string_view line : absl::StrSplit(parser.error_, '\n')) {
      if (!line.empty()) result.errors.push_back({PointAtOrigin(line)});
    }
    return result;
  }

  const std::vector<Token> tokens = Identifiers(source);
  std::vector<ServiceModel> services;
  std::map<std::string, std::string> prefixes;  // prefix -> service
  for (const flatbuffers::ServiceDef* def : parser.services_.vec) {
    // Services of included schemas belong to their own generated headers.
    if (def->file != schema_path) continue;
    ++result.services;
    const int line = DeclarationLine(tokens, def->name, "");
    ServiceModel s;
    s.def = def;
    s.name = def->name;
    s.full_name = SchemaName(*def);
    s.prefix = DefaultPrefix(def->name);
    if (def->defined_namespace != nullptr) {
      s.namespace_components = def->defined_namespace->components;
    }
    if (auto [it, inserted] = prefixes.emplace(s.prefix, s.name); !inserted) {
      error(line, absl::StrCat("rpc_service ", s.name,
                               " has the same subject prefix \"", s.prefix,
                               "\" as rpc_service ", it->second,
                               "; rename one of them"));
    }
    if (def->calls.vec.empty()) {
      error(line, absl::StrCat("rpc_service ", s.name, " declares no method"));
    }
    if (parser.file_identifier_.size() != flatbuffers::kFileIdentifierLength) {
      error(line,
            absl::StrCat("rpc_service ", s.name,
                         ": the schema declares no file_identifier, but every "
                         "natsgw payload must carry one; add e.g. "
                         "`file_identifier \"ABCD\";`"));
    }
    const std::set<std::string> reserved = {
        "Service",           "Create",
        "channel",           "Start",
        "MakeServiceConfig", "Methods",
        s.name + "Client",   s.name + "ServiceBase",
        s.name + "Methods"};
    std::set<std::string> method_names;
    for (const flatbuffers::RPCCall* call : def->calls.vec) {
      method_names.insert(call->name);
    }
    for (const flatbuffers::RPCCall* call : def->calls.vec) {
      const int method_line = DeclarationLine(tokens, def->name, call->name);
      auto method_error = [&](const std::string& what) {
        error(method_line, absl::StrCat("rpc_service ", s.name, ", method ",
                                        call->name, ": ", what));
      };
      if (reserved.count(call->name) > 0) {
        method_error(
            absl::StrCat("the name is taken by a member of the "
                         "generated ",
                         s.name, "Methods, ", s.name, "Client or ", s.name,
                         "ServiceBase; rename the method"));
      }
      if (CppKeywords().count(call->name) > 0) {
        method_error("the name is a C++ keyword; rename the method");
      }
      if (call->name.size() > 5 &&
          call->name.compare(call->name.size() - 5, 5, "Async") == 0 &&
          method_names.count(call->name.substr(0, call->name.size() - 5)) > 0) {
        method_error(absl::StrCat(
            "collides with the asynchronous form of method ",
            call->name.substr(0, call->name.size() - 5), "; rename it"));
      }
      if (call->request == nullptr || call->response == nullptr ||
          call->request->fixed || call->response->fixed) {
        method_error("request and response must be tables, not structs");
        continue;
      }
      MethodModel m;
      m.def = call;
      m.name = call->name;
      m.request_cpp = CppName(*call->request);
      m.response_cpp = CppName(*call->response);
      m.request_schema = SchemaName(*call->request);
      m.response_schema = SchemaName(*call->response);
      const flatbuffers::Value* idempotent =
          call->attributes.Lookup("idempotent");
      // Presence marks the method, as for gRPC's generators (FlatBuffers
      // gives a bare attribute no value).
      m.idempotent = idempotent != nullptr;
      s.methods.push_back(std::move(m));
    }
    services.push_back(std::move(s));
  }
  if (!result.errors.empty()) return result;

  // The schema as reflection.fbs's Schema: deterministic, and free of the
  // paths it was read from (FlatBuffers 2.0.8 records no file names).
  std::string bfbs;
  if (!services.empty()) {
    parser.Serialize();
    bfbs.assign(
        reinterpret_cast<const char*>(parser.builder_.GetBufferPointer()),
        parser.builder_.GetSize());
  }
  Emitter emitter(schema_file, stem, parser.file_identifier_,
                  IncludeGuard(options.include_prefix, stem), std::move(bfbs),
                  BfbsConstant(options.include_prefix, stem));
  result.header = emitter.Emit(services);
  return result;
}

GenResult GenerateFromFile(const std::string& schema_path,
                           const GenOptions& options) {
  std::string source;
  if (!flatbuffers::LoadFile(schema_path.c_str(), /*binary=*/false, &source)) {
    GenResult result;
    result.errors.push_back(
        {absl::StrCat(schema_path, ": error: cannot read the schema file")});
    return result;
  }
  return GenerateFromSource(schema_path, source, options);
}

}  // namespace natsgw::gen
