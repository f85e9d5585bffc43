#include "schema_set.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <sstream>
#include <tuple>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "flatbuffers/idl.h"
#include "flatbuffers/reflection.h"
#include "flatbuffers/util.h"
#include "natsgw/status_macros.h"
#include "nlohmann/json.hpp"

namespace natsgw::tools {
namespace {

// A binary schema from the bus is announced in 128 KiB of metadata; files
// may be larger, but nothing near this.
constexpr size_t kMaxBinarySchemaBytes = 16 << 20;
// Lists in error messages stop after this many entries.
constexpr size_t kMaxListed = 12;
// Structs nested deeper than this are refused in a binary schema: the
// printer and the JSON parser recurse once per level.
constexpr int kMaxStructNesting = 64;

namespace fs = std::filesystem;

// Bytes at an 8-byte aligned address: FlatBuffers reads scalars through
// plain pointers, and its verifier refuses misaligned ones.
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(absl::string_view bytes)
      : words_((bytes.size() + 7) / 8), size_(bytes.size()) {
    if (!bytes.empty()) std::memcpy(words_.data(), bytes.data(), bytes.size());
  }
  const uint8_t* data() const {
    return reinterpret_cast<const uint8_t*>(words_.data());
  }
  size_t size() const { return size_; }
  absl::string_view view() const {
    return absl::string_view(reinterpret_cast<const char*>(words_.data()),
                             size_);
  }

 private:
  std::vector<uint64_t> words_;
  size_t size_ = 0;
};

flatbuffers::IDLOptions ParserOptions() {
  flatbuffers::IDLOptions options;
  // (idempotent) and the other built-in attributes survive Serialize().
  options.binary_schema_builtins = true;
  // Input must be JSON (quoted field names); output is JSON.
  options.strict_json = true;
  return options;
}

std::string QualifiedName(const flatbuffers::Definition& def) {
  if (def.defined_namespace == nullptr) return def.name;
  return def.defined_namespace->GetFullyQualifiedName(def.name);
}

std::string ListSome(const std::vector<std::string>& items) {
  if (items.empty()) return "none";
  if (items.size() <= kMaxListed) return absl::StrJoin(items, ", ");
  std::vector<std::string> head(items.begin(), items.begin() + kMaxListed);
  return absl::StrCat(absl::StrJoin(head, ", "), " and ",
                      items.size() - kMaxListed, " more");
}

// Whether `source` (a .fbs file's text) declares a file_identifier itself:
// after parsing, Parser::file_identifier_ may hold an included file's.
bool DeclaresFileIdentifier(absl::string_view source) {
  size_t i = 0;
  const size_t n = source.size();
  while (i < n) {
    const char c = source[i];
    if (c == '/' && i + 1 < n && source[i + 1] == '/') {
      while (i < n && source[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < n && source[i + 1] == '*') {
      i += 2;
      while (i + 1 < n && !(source[i] == '*' && source[i + 1] == '/')) ++i;
      i += 2;
    } else if (c == '"') {
      ++i;
      while (i < n && source[i] != '"' && source[i] != '\n') {
        if (source[i] == '\\') ++i;
        ++i;
      }
      ++i;
    } else if (absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_') {
      const size_t start = i;
      while (i < n &&
             (absl::ascii_isalnum(static_cast<unsigned char>(source[i])) ||
              source[i] == '_')) {
        ++i;
      }
      if (source.substr(start, i - start) == "file_identifier") return true;
    } else {
      ++i;
    }
  }
  return false;
}

// "line 1, column 20: unknown field: x" from FlatBuffers'
// "[<file>:]1: 20: error: unknown field: x" (one message per line).
std::string ReadableParseError(absl::string_view error) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(error, '\n')) {
    if (line.empty()) continue;
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::MaxSplits(": ", 3));
    int line_no = 0, column = 0;
    if (parts.size() == 4 && absl::SimpleAtoi(parts[0], &line_no) &&
        absl::SimpleAtoi(parts[1], &column) &&
        (parts[2] == "error" || parts[2] == "warning")) {
      out.push_back(absl::StrCat("line ", line_no, ", column ", column, ": ",
                                 parts[2] == "warning" ? "warning: " : "",
                                 parts[3]));
    } else {
      out.push_back(std::string(line));
    }
  }
  // The message quotes the input; raw control bytes must not reach logs,
  // HTTP bodies or headers.
  std::string joined = absl::StrJoin(out, "; ");
  std::string escaped;
  for (char c : joined) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      absl::StrAppend(&escaped, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      escaped.push_back(c);
    }
  }
  return escaped;
}

// ---------------------------------------------------------------------------
// Checks of a schema that came as bytes. flatbuffers::Parser::Deserialize
// verifies the buffer but trusts what it says; the JSON parser, the text
// printer and reflection's verifier then follow its references without
// checking them again. A schema announced on the bus must not be able to
// make them read out of bounds or recurse without end.

std::string TypeName(flatbuffers::BaseType t) {
  static const char* const kNames[] = {
#define FLATBUFFERS_TD(ENUM, ...) #ENUM,
      FLATBUFFERS_GEN_TYPES(FLATBUFFERS_TD)
#undef FLATBUFFERS_TD
  };
  const int i = static_cast<int>(t);
  if (i < 0 || i >= static_cast<int>(sizeof(kNames) / sizeof(kNames[0]))) {
    return absl::StrCat("type #", i);
  }
  return kNames[i];
}

bool KnownBaseType(flatbuffers::BaseType t) {
  return t >= flatbuffers::BASE_TYPE_NONE && t <= flatbuffers::BASE_TYPE_ARRAY;
}

absl::Status Malformed(const flatbuffers::StructDef& def,
                       const flatbuffers::FieldDef& field,
                       absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("field ", QualifiedName(def), ".", field.name, ": ", what));
}

absl::Status CheckUnionEnum(const flatbuffers::EnumDef* def,
                            absl::string_view where) {
  if (def == nullptr || !def->is_union) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": a union field without its union"));
  }
  for (const flatbuffers::EnumVal* val : def->Vals()) {
    const flatbuffers::Type& t = val->union_type;
    const bool ok =
        t.base_type == flatbuffers::BASE_TYPE_NONE ||
        t.base_type == flatbuffers::BASE_TYPE_STRING ||
        (t.base_type == flatbuffers::BASE_TYPE_STRUCT && t.struct_def);
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("union ", QualifiedName(*def), " member ", val->name,
                       " has type ", TypeName(t.base_type)));
    }
  }
  return absl::OkStatus();
}

// A fixed struct: only scalars, structs and arrays of them, each inside
// the struct's bytes (nesting was bounded by SchemaPrecheck).
absl::Status CheckFixedStruct(const flatbuffers::StructDef& def) {
  for (const flatbuffers::FieldDef* field : def.fields.vec) {
    const flatbuffers::Type& t = field->value.type;
    const flatbuffers::BaseType inner =
        t.base_type == flatbuffers::BASE_TYPE_ARRAY ? t.element : t.base_type;
    if (!(flatbuffers::IsScalar(inner) ||
          inner == flatbuffers::BASE_TYPE_STRUCT) ||
        (t.base_type == flatbuffers::BASE_TYPE_ARRAY && t.fixed_length == 0)) {
      return Malformed(
          def, *field,
          absl::StrCat("a struct cannot hold a ", TypeName(t.base_type)));
    }
    if (inner == flatbuffers::BASE_TYPE_STRUCT) {
      if (t.struct_def == nullptr || !t.struct_def->fixed) {
        return Malformed(def, *field, "a struct can only hold structs");
      }
    }
    const size_t element = inner == flatbuffers::BASE_TYPE_STRUCT
                               ? t.struct_def->bytesize
                               : flatbuffers::SizeOf(inner);
    const size_t count =
        t.base_type == flatbuffers::BASE_TYPE_ARRAY ? t.fixed_length : 1;
    if (static_cast<size_t>(field->value.offset) + element * count >
        def.bytesize) {
      return Malformed(def, *field, "lies outside its struct's bytes");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTableField(const flatbuffers::StructDef& def,
                             const flatbuffers::FieldDef& field) {
  const flatbuffers::Type& t = field.value.type;
  if (!KnownBaseType(t.base_type) ||
      t.base_type == flatbuffers::BASE_TYPE_NONE ||
      t.base_type == flatbuffers::BASE_TYPE_ARRAY) {
    return Malformed(
        def, field,
        absl::StrCat("a table cannot hold a ", TypeName(t.base_type)));
  }
  if (t.base_type == flatbuffers::BASE_TYPE_VECTOR) {
    const flatbuffers::BaseType e = t.element;
    if (!KnownBaseType(e) || e == flatbuffers::BASE_TYPE_NONE ||
        e == flatbuffers::BASE_TYPE_VECTOR ||
        e == flatbuffers::BASE_TYPE_ARRAY) {
      return Malformed(def, field,
                       absl::StrCat("a vector cannot hold a ", TypeName(e)));
    }
  }
  const flatbuffers::BaseType inner =
      t.base_type == flatbuffers::BASE_TYPE_VECTOR ? t.element : t.base_type;
  if (inner == flatbuffers::BASE_TYPE_STRUCT) {
    if (t.struct_def == nullptr) {
      return Malformed(def, field, "refers to no table or struct");
    }
  }
  const std::string where = absl::StrCat(QualifiedName(def), ".", field.name);
  if (inner == flatbuffers::BASE_TYPE_UNION) {
    NATSGW_RETURN_IF_ERROR(CheckUnionEnum(t.enum_def, where));
    // The union's type field sits in the slot before it, where the verifier
    // and the printer both look.
    bool has_type_field = false;
    for (const flatbuffers::FieldDef* other : def.fields.vec) {
      const flatbuffers::Type& ot = other->value.type;
      const flatbuffers::BaseType other_inner =
          ot.base_type == flatbuffers::BASE_TYPE_VECTOR ? ot.element
                                                        : ot.base_type;
      if (other->value.offset + sizeof(flatbuffers::voffset_t) ==
              field.value.offset &&
          other_inner == flatbuffers::BASE_TYPE_UTYPE &&
          (ot.base_type == flatbuffers::BASE_TYPE_VECTOR) ==
              (t.base_type == flatbuffers::BASE_TYPE_VECTOR) &&
          other->value.type.enum_def == t.enum_def &&
          other->deprecated == field.deprecated) {
        has_type_field = true;
      }
    }
    if (!has_type_field) {
      return Malformed(def, field, "a union field without its type field");
    }
  }
  if (inner == flatbuffers::BASE_TYPE_UTYPE) {
    NATSGW_RETURN_IF_ERROR(CheckUnionEnum(t.enum_def, where));
  }
  return absl::OkStatus();
}

absl::Status CheckDeserialized(const flatbuffers::Parser& parser) {
  for (const flatbuffers::StructDef* def : parser.structs_.vec) {
    if (def->fixed) {
      NATSGW_RETURN_IF_ERROR(CheckFixedStruct(*def));
      continue;
    }
    for (const flatbuffers::FieldDef* field : def->fields.vec) {
      NATSGW_RETURN_IF_ERROR(CheckTableField(*def, *field));
    }
  }
  for (const flatbuffers::EnumDef* def : parser.enums_.vec) {
    if (def->is_union) {
      NATSGW_RETURN_IF_ERROR(CheckUnionEnum(def, QualifiedName(*def)));
    }
  }
  for (const flatbuffers::ServiceDef* service : parser.services_.vec) {
    for (const flatbuffers::RPCCall* call : service->calls.vec) {
      if (call->request == nullptr || call->response == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("rpc_service ", QualifiedName(*service), " method ",
                         call->name, " lacks its request or response type"));
      }
    }
  }
  return absl::OkStatus();
}

// Before flatbuffers::Parser::Deserialize sees a schema: FlatBuffers 2.0.8
// trusts its input there. A field id beyond the field count writes out of
// bounds; a duplicate name leaves a dangling pointer behind (a crash when
// the parser is destroyed); a struct whose declared size disagrees with its
// fields fails an assert(), which Debian's build keeps. Everything
// Deserialize relies on is checked here, on the verified buffer.
class SchemaPrecheck {
 public:
  explicit SchemaPrecheck(const reflection::Schema& schema) : schema_(schema) {}

  absl::Status Run() {
    if (schema_.objects() == nullptr || schema_.enums() == nullptr) {
      return Bad("objects or enums missing");
    }
    // Deserialize walks every file's included_filenames without checking
    // that the (optional) vector is there.
    if (schema_.fbs_files() != nullptr) {
      for (const reflection::SchemaFile* file : *schema_.fbs_files()) {
        if (file->included_filenames() == nullptr) {
          return Bad("a schema file entry without included_filenames");
        }
      }
    }
    // Buffers are finished with it, which FlatBuffers asserts is 4 bytes.
    if (schema_.file_ident() != nullptr && schema_.file_ident()->size() != 0 &&
        (schema_.file_ident()->size() != flatbuffers::kFileIdentifierLength ||
         std::strlen(schema_.file_ident()->c_str()) !=
             flatbuffers::kFileIdentifierLength)) {
      return Bad("a file identifier that is not 4 characters");
    }
    const auto& objects = *schema_.objects();
    const auto& enums = *schema_.enums();
    // Objects and enums share one namespace of type names.
    std::set<std::string> types;
    for (const reflection::Object* object : objects) {
      NATSGW_RETURN_IF_ERROR(Name(object->name(), /*dotted=*/true, "object"));
      if (!types.insert(object->name()->str()).second) {
        return Bad(absl::StrCat("type ", object->name()->str(), " twice"));
      }
    }
    for (const reflection::Enum* e : enums) {
      NATSGW_RETURN_IF_ERROR(Name(e->name(), /*dotted=*/true, "enum"));
      if (!types.insert(e->name()->str()).second) {
        return Bad(absl::StrCat("type ", e->name()->str(), " twice"));
      }
    }
    for (const reflection::Enum* e : enums) NATSGW_RETURN_IF_ERROR(Enum(*e));
    for (const reflection::Object* object : objects) {
      NATSGW_RETURN_IF_ERROR(Object(*object));
    }
    NATSGW_RETURN_IF_ERROR(StructNesting());
    if (schema_.services() != nullptr) {
      std::set<std::string> services;
      for (const reflection::Service* service : *schema_.services()) {
        NATSGW_RETURN_IF_ERROR(Service(*service));
        if (!services.insert(service->name()->str()).second) {
          return Bad(
              absl::StrCat("service ", service->name()->str(), " twice"));
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  static absl::Status Bad(absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed binary schema: ", what));
  }

  // [A-Za-z0-9_]+, with '.' between components when `dotted`.
  static absl::Status Name(const flatbuffers::String* name, bool dotted,
                           absl::string_view kind) {
    if (name == nullptr || name->size() == 0 || name->size() > 1024) {
      return Bad(absl::StrCat(kind, " without a usable name"));
    }
    const absl::string_view text(name->c_str(), name->size());
    // Not split at all unless dotted: splitting at '\0' would let a NUL in.
    const std::vector<absl::string_view> parts =
        dotted ? absl::StrSplit(text, '.')
               : std::vector<absl::string_view>{text};
    for (absl::string_view part : parts) {
      if (part.empty()) {
        return Bad(
            absl::StrCat(kind, " name \"", absl::CHexEscape(text), "\""));
      }
      for (char c : part) {
        if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') {
          return Bad(
              absl::StrCat(kind, " name \"", absl::CHexEscape(text), "\""));
        }
      }
    }
    return absl::OkStatus();
  }

  static absl::Status Attributes(
      const flatbuffers::Vector<flatbuffers::Offset<reflection::KeyValue>>*
          attributes,
      absl::string_view owner) {
    if (attributes == nullptr) return absl::OkStatus();
    std::set<std::string> keys;
    for (const reflection::KeyValue* kv : *attributes) {
      if (kv->key() == nullptr || !keys.insert(kv->key()->str()).second) {
        return Bad(absl::StrCat(owner, ": an attribute twice"));
      }
    }
    return absl::OkStatus();
  }

  bool ObjectIndex(int32_t index) const {
    return index >= 0 &&
           static_cast<uint32_t>(index) < schema_.objects()->size();
  }
  bool EnumIndex(int32_t index) const {
    return index >= 0 && static_cast<uint32_t>(index) < schema_.enums()->size();
  }
  bool UnionIndex(int32_t index) const {
    return EnumIndex(index) && schema_.enums()->Get(index)->is_union();
  }
  bool StructIndex(int32_t index) const {
    return ObjectIndex(index) && schema_.objects()->Get(index)->is_struct();
  }
  static bool Scalar(reflection::BaseType t) {
    return t >= reflection::Bool && t <= reflection::Double;
  }
  static bool Integer(reflection::BaseType t) {
    return t >= reflection::UType && t <= reflection::ULong;
  }
  static bool Known(reflection::BaseType t) {
    return t >= reflection::None && t <= reflection::Array;
  }
  // Whether base_type and element hold known values, read as the int8 they
  // are on the wire: reflection::BaseType is an unscoped enum without a
  // fixed underlying type, so the accessors' cast of a value outside its
  // range (0-31) is undefined, and a compiler may fold the check above away.
  static bool KnownType(const reflection::Type& t) {
    const auto& table = reinterpret_cast<const flatbuffers::Table&>(t);
    for (flatbuffers::voffset_t slot :
         {reflection::Type::VT_BASE_TYPE, reflection::Type::VT_ELEMENT}) {
      const int8_t v = table.GetField<int8_t>(slot, 0);
      if (v < reflection::None || v > reflection::Array) return false;
    }
    return true;
  }

  absl::Status Enum(const reflection::Enum& e) {
    const std::string owner = absl::StrCat("enum ", e.name()->str());
    NATSGW_RETURN_IF_ERROR(Attributes(e.attributes(), owner));
    const reflection::Type* underlying = e.underlying_type();
    if (underlying == nullptr || !KnownType(*underlying) ||
        !(e.is_union() ? underlying->base_type() == reflection::UType
                       : Integer(underlying->base_type()))) {
      return Bad(absl::StrCat(owner, ": not an integer type"));
    }
    if (underlying->index() != -1 && !EnumIndex(underlying->index())) {
      return Bad(absl::StrCat(owner, ": bad type index"));
    }
    if (e.values() == nullptr) return Bad(absl::StrCat(owner, ": no values"));
    std::set<std::string> names;
    for (const reflection::EnumVal* val : *e.values()) {
      NATSGW_RETURN_IF_ERROR(Name(val->name(), /*dotted=*/false, owner));
      if (!names.insert(val->name()->str()).second) {
        return Bad(
            absl::StrCat(owner, ": value ", val->name()->str(), " twice"));
      }
      const reflection::Type* t = val->union_type();
      if (!e.is_union()) {
        if (t != nullptr && t->base_type() != reflection::None) {
          return Bad(absl::StrCat(owner, ": value ", val->name()->str(),
                                  " has a type"));
        }
        continue;
      }
      // A union: NONE (0) holds nothing, every other member a table, a
      // struct or a string (the parser asserts on anything else).
      // Reflection's verifier picks a member by its position, the printer
      // by its value: they must agree.
      if (val->value() != static_cast<int64_t>(names.size() - 1)) {
        return Bad(absl::StrCat(owner, ": union values are not 0..n-1"));
      }
      const reflection::BaseType b =
          t == nullptr ? reflection::MaxBaseType : t->base_type();
      const bool ok =
          val->value() == 0
              ? b == reflection::None && t->index() == -1
              : val->value() > 0 && val->value() <= 0xff &&
                    ((b == reflection::String && t->index() == -1) ||
                     (b == reflection::Obj && ObjectIndex(t->index())));
      if (!ok) {
        return Bad(absl::StrCat(owner, ": value ", val->name()->str(),
                                " has a bad type"));
      }
    }
    return absl::OkStatus();
  }

  // The size FlatBuffers' InlineSize() gives a struct field of this type.
  size_t InlineSize(const reflection::Type& t) const {
    if (t.base_type() == reflection::Obj) {
      return static_cast<size_t>(schema_.objects()->Get(t.index())->bytesize());
    }
    if (t.base_type() == reflection::Array) {
      const size_t element =
          t.element() == reflection::Obj
              ? static_cast<size_t>(
                    schema_.objects()->Get(t.index())->bytesize())
              : flatbuffers::SizeOf(
                    static_cast<flatbuffers::BaseType>(t.element()));
      return element * t.fixed_length();
    }
    return flatbuffers::SizeOf(
        static_cast<flatbuffers::BaseType>(t.base_type()));
  }

  static const reflection::KeyValue* Attribute(const reflection::Field& field,
                                               const char* key) {
    if (field.attributes() == nullptr) return nullptr;
    for (const reflection::KeyValue* kv : *field.attributes()) {
      if (kv->key() != nullptr && kv->key()->str() == key) return kv;
    }
    return nullptr;
  }

  static bool DefaultFits(const reflection::Field& field) {
    const int64_t v = field.default_integer();
    switch (field.type()->base_type()) {
      case reflection::UType:
      case reflection::Bool:
      case reflection::UByte:
        return v >= 0 && v <= 0xff;
      case reflection::Byte:
        return v >= -0x80 && v <= 0x7f;
      case reflection::Short:
        return v >= -0x8000 && v <= 0x7fff;
      case reflection::UShort:
        return v >= 0 && v <= 0xffff;
      case reflection::Int:
        return v >= INT32_MIN && v <= INT32_MAX;
      case reflection::UInt:
        return v >= 0 && v <= UINT32_MAX;
      case reflection::ULong:
        return v >= 0;
      case reflection::Float: {
        const double d = field.default_real();
        return !std::isfinite(d) || std::fabs(d) <= FLT_MAX;
      }
      default:
        return true;
    }
  }

  absl::Status Field(const reflection::Object& object,
                     const reflection::Field& field) {
    const std::string owner =
        absl::StrCat("field ", object.name()->str(), ".", field.name()->str());
    NATSGW_RETURN_IF_ERROR(Attributes(field.attributes(), owner));
    if (field.required() && field.optional()) {
      return Bad(absl::StrCat(owner, ": both required and optional"));
    }
    const reflection::Type* t = field.type();
    if (t == nullptr || !KnownType(*t)) {
      return Bad(absl::StrCat(owner, ": unknown type"));
    }
    const reflection::BaseType b = t->base_type();
    const bool series = b == reflection::Vector || b == reflection::Array;
    const reflection::BaseType inner = series ? t->element() : b;
    bool index_ok;
    if (inner == reflection::Obj) {
      index_ok = ObjectIndex(t->index());
    } else if (inner == reflection::Union || inner == reflection::UType) {
      index_ok = UnionIndex(t->index());
    } else if (Integer(inner)) {
      index_ok = t->index() == -1 || EnumIndex(t->index());
    } else {
      index_ok = t->index() == -1;
    }
    if (!index_ok) return Bad(absl::StrCat(owner, ": bad type index"));
    // FlatBuffers asserts that a default parses as the field's type.
    if (!DefaultFits(field)) {
      return Bad(absl::StrCat(owner, ": default value out of range"));
    }
    // What Deserialize refuses of these attributes it refuses after keeping
    // a pointer to the field it then deletes.
    if (const reflection::KeyValue* kv = Attribute(field, "flexbuffer");
        kv != nullptr &&
        !(b == reflection::Vector && t->element() == reflection::UByte)) {
      return Bad(absl::StrCat(owner, ": flexbuffer on a field not [ubyte]"));
    }
    if (const reflection::KeyValue* kv = Attribute(field, "nested_flatbuffer");
        kv != nullptr &&
        (kv->value() == nullptr ||
         schema_.objects()->LookupByKey(kv->value()->c_str()) == nullptr)) {
      return Bad(absl::StrCat(owner,
                              ": nested_flatbuffer names no table of the "
                              "schema (by its full name)"));
    }

    if (object.is_struct()) {
      const bool ok = (Scalar(b) && t->index() == -1) ||
                      (b == reflection::Obj && StructIndex(t->index())) ||
                      (b == reflection::Array && t->fixed_length() > 0 &&
                       ((Scalar(inner) && t->index() == -1) ||
                        (inner == reflection::Obj && StructIndex(t->index()))));
      if (!ok && !(Integer(b) && EnumIndex(t->index()) &&
                   !schema_.enums()->Get(t->index())->is_union())) {
        return Bad(absl::StrCat(owner, ": a struct cannot hold this type"));
      }
    } else {
      if (b == reflection::None || b == reflection::Array ||
          (b == reflection::Vector &&
           (inner == reflection::None || inner == reflection::Vector ||
            inner == reflection::Array))) {
        return Bad(absl::StrCat(owner, ": a table cannot hold this type"));
      }
      // FlatBuffers 2.0.8's reflection verifier does not verify the
      // members of a vector of unions, which the printer then reads.
      if (b == reflection::Vector &&
          (inner == reflection::Union || inner == reflection::UType)) {
        return Bad(
            absl::StrCat(owner, ": vectors of unions are not supported"));
      }
      // Where flatc puts field `id`: two fields in one slot would make the
      // builder assert.
      if (field.offset() != 4 + 2 * field.id()) {
        return Bad(absl::StrCat(owner, ": offset ", field.offset(),
                                " does not match id ", field.id()));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Object(const reflection::Object& object) {
    const std::string owner = absl::StrCat("object ", object.name()->str());
    NATSGW_RETURN_IF_ERROR(Attributes(object.attributes(), owner));
    const int32_t minalign = object.minalign();
    if (minalign < 1 || minalign > 32 || (minalign & (minalign - 1)) != 0) {
      return Bad(absl::StrCat(owner, ": alignment ", minalign));
    }
    if (object.fields() == nullptr)
      return Bad(absl::StrCat(owner, ": no fields"));
    const auto& fields = *object.fields();
    // Field ids: a permutation of 0..n-1.
    std::vector<int> by_id(fields.size(), -1);
    std::set<std::string> names;
    for (uint32_t i = 0; i < fields.size(); ++i) {
      const reflection::Field* field = fields.Get(i);
      NATSGW_RETURN_IF_ERROR(Name(field->name(), /*dotted=*/false, owner));
      if (!names.insert(field->name()->str()).second) {
        return Bad(
            absl::StrCat(owner, ": field ", field->name()->str(), " twice"));
      }
      if (field->id() >= fields.size() || by_id[field->id()] != -1) {
        return Bad(
            absl::StrCat(owner, ": field ids are not 0..", fields.size() - 1));
      }
      by_id[field->id()] = static_cast<int>(i);
      NATSGW_RETURN_IF_ERROR(Field(object, *field));
    }
    // A key: one per object, a scalar or a string (as flatc allows).
    int keys = 0;
    for (const reflection::Field* field : fields) {
      if (!field->key()) continue;
      const reflection::BaseType b = field->type()->base_type();
      if (++keys > 1 || !(Scalar(b) || b == reflection::String)) {
        return Bad(absl::StrCat(owner, ": key field ", field->name()->str()));
      }
    }
    if (!object.is_struct()) {
      if (object.bytesize() != 0) {
        return Bad(absl::StrCat(owner, ": a table with a size"));
      }
      return absl::OkStatus();
    }
    // Deserialize's own layout arithmetic, which it asserts on; and every
    // field inside the struct, in id order, without overlap.
    if (object.bytesize() <= 0 || object.bytesize() > (1 << 16)) {
      return Bad(absl::StrCat(owner, ": size ", object.bytesize()));
    }
    size_t total = 0;
    size_t end = 0;
    for (size_t i = 0; i < by_id.size(); ++i) {
      const reflection::Field* field = fields.Get(by_id[i]);
      const size_t size = InlineSize(*field->type());
      if (field->offset() < end ||
          field->offset() + size > static_cast<size_t>(object.bytesize())) {
        return Bad(absl::StrCat(owner, ": field ", field->name()->str(),
                                " overlaps or lies outside the struct"));
      }
      end = field->offset() + size;
      const reflection::Field* next =
          i + 1 < by_id.size() ? fields.Get(by_id[i + 1]) : nullptr;
      total += size;
      total +=
          next != nullptr
              ? static_cast<size_t>(next->offset() - field->offset()) - size
              : flatbuffers::PaddingBytes(total, static_cast<size_t>(minalign));
    }
    if (static_cast<int>(total) != object.bytesize()) {
      return Bad(absl::StrCat(owner, ": fields fill ", total, " bytes of ",
                              object.bytesize()));
    }
    return absl::OkStatus();
  }

  // A struct holding itself, directly or not, would make the printer and
  // the JSON parser recurse without end, and a deep chain of structs would
  // take them deep into the stack: nesting is bounded.
  absl::Status StructNesting() {
    const auto& objects = *schema_.objects();
    // 0: not seen; -1: being visited; n > 0: nesting depth of the struct.
    std::vector<int> depth(objects.size(), 0);
    // `level` bounds this check's own recursion.
    std::function<int(uint32_t, int)> visit = [&](uint32_t i,
                                                  int level) -> int {
      if (level > kMaxStructNesting) return -1;
      if (depth[i] != 0) return depth[i];  // -1 (a cycle) or known
      depth[i] = -1;
      int deepest = 0;
      for (const reflection::Field* field : *objects.Get(i)->fields()) {
        const reflection::Type* t = field->type();
        if ((t->base_type() == reflection::Obj ||
             (t->base_type() == reflection::Array &&
              t->element() == reflection::Obj)) &&
            StructIndex(t->index())) {
          const int inner = visit(static_cast<uint32_t>(t->index()), level + 1);
          if (inner < 0) return -1;
          deepest = std::max(deepest, inner);
        }
      }
      depth[i] = deepest + 1 > kMaxStructNesting ? -1 : deepest + 1;
      return depth[i];
    };
    for (uint32_t i = 0; i < objects.size(); ++i) {
      if (objects.Get(i)->is_struct() && visit(i, 1) < 0) {
        return Bad(absl::StrCat("struct ", objects.Get(i)->name()->str(),
                                " holds itself or nests more than ",
                                kMaxStructNesting, " structs deep"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Service(const reflection::Service& service) {
    NATSGW_RETURN_IF_ERROR(Name(service.name(), /*dotted=*/true, "service"));
    const std::string owner = absl::StrCat("service ", service.name()->str());
    NATSGW_RETURN_IF_ERROR(Attributes(service.attributes(), owner));
    if (service.calls() == nullptr) return absl::OkStatus();
    std::set<std::string> calls;
    for (const reflection::RPCCall* call : *service.calls()) {
      NATSGW_RETURN_IF_ERROR(Name(call->name(), /*dotted=*/false, owner));
      if (!calls.insert(call->name()->str()).second) {
        return Bad(
            absl::StrCat(owner, ": method ", call->name()->str(), " twice"));
      }
      NATSGW_RETURN_IF_ERROR(Attributes(call->attributes(), owner));
      for (const reflection::Object* type :
           {call->request(), call->response()}) {
        const reflection::Object* known =
            type == nullptr || type->name() == nullptr
                ? nullptr
                : schema_.objects()->LookupByKey(type->name()->c_str());
        if (known == nullptr || known->is_struct()) {
          return Bad(absl::StrCat(owner, ": method ", call->name()->str(),
                                  " takes or returns no table of the schema"));
        }
      }
    }
    return absl::OkStatus();
  }

  const reflection::Schema& schema_;
};

// A parser of `bfbs` ready to translate: checked, and with nested
// FlatBuffers and FlexBuffers fields read as the plain [ubyte] they are on
// the wire (reflection's verifier does not look inside them, so the printer
// must not either).
absl::StatusOr<std::unique_ptr<flatbuffers::Parser>> DeserializeChecked(
    const AlignedBytes& bfbs) {
  if (bfbs.size() < 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "truncated: ", bfbs.size(), " bytes, a binary schema has at least 8"));
  }
  if (bfbs.size() > kMaxBinarySchemaBytes) {
    return absl::InvalidArgumentError(absl::StrCat("size limit: ", bfbs.size(),
                                                   " bytes, more than ",
                                                   kMaxBinarySchemaBytes));
  }
  const absl::string_view ident = bfbs.view().substr(4, 4);
  if (ident != reflection::SchemaIdentifier()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "file identifier: expected ", reflection::SchemaIdentifier(),
        " (a binary schema), got ", absl::CHexEscape(ident)));
  }
  flatbuffers::Verifier verifier(bfbs.data(), bfbs.size());
  if (!reflection::VerifySchemaBuffer(verifier)) {
    return absl::InvalidArgumentError(
        "verification: not a well-formed reflection.fbs Schema");
  }
  NATSGW_RETURN_IF_ERROR(
      SchemaPrecheck(*reflection::GetSchema(bfbs.data())).Run());
  auto parser = std::make_unique<flatbuffers::Parser>(ParserOptions());
  if (!parser->Deserialize(bfbs.data(), bfbs.size())) {
    return absl::InvalidArgumentError(
        "verification: not a well-formed reflection.fbs Schema");
  }
  NATSGW_RETURN_IF_ERROR(CheckDeserialized(*parser));
  for (flatbuffers::StructDef* def : parser->structs_.vec) {
    for (flatbuffers::FieldDef* field : def->fields.vec) {
      field->nested_flatbuffer = nullptr;
      field->flexbuffer = false;
    }
  }
  return parser;
}

// What a table or struct looks like on the wire, by name rather than by
// index, to tell whether two schemas define a type the same way.
std::string TypeSignature(const flatbuffers::Type& t) {
  std::string out = TypeName(t.base_type);
  if (t.base_type == flatbuffers::BASE_TYPE_VECTOR ||
      t.base_type == flatbuffers::BASE_TYPE_ARRAY) {
    absl::StrAppend(&out, "<", TypeName(t.element), ">");
  }
  if (t.struct_def != nullptr) {
    absl::StrAppend(&out, ":", QualifiedName(*t.struct_def));
  }
  if (t.enum_def != nullptr) {
    absl::StrAppend(&out, ":", QualifiedName(*t.enum_def));
  }
  if (t.fixed_length != 0) absl::StrAppend(&out, "[", t.fixed_length, "]");
  return out;
}

std::string StructSignature(const flatbuffers::StructDef& def) {
  std::vector<std::string> fields;
  for (const flatbuffers::FieldDef* field : def.fields.vec) {
    fields.push_back(absl::StrCat(field->value.offset, " ", field->name, " ",
                                  TypeSignature(field->value.type),
                                  field->IsRequired() ? " req" : "",
                                  field->deprecated ? " dep" : ""));
  }
  std::sort(fields.begin(), fields.end());
  return absl::StrCat(def.fixed ? "struct " : "table ", def.bytesize, "{",
                      absl::StrJoin(fields, ";"), "}");
}

// A received buffer, verified against a table of a schema. FlatBuffers
// 2.0.8's reflection verifier (flatbuffers::Verify) reads a union's offset
// before checking it is inside the buffer, and does not check required
// fields or that a union value has a type (which the printer then takes from
// whatever field it printed last). This walk checks all of that, with the
// same flatbuffers::Verifier primitives generated code uses, and names the
// field that fails; flatbuffers::Verify runs after it, on a buffer it can no
// longer misread.
class BufferCheck {
 public:
  BufferCheck(const reflection::Schema& schema, const uint8_t* buf, size_t size,
              const VerifyOptions& limits)
      : schema_(schema),
        buf_(buf),
        limits_(limits),
        verifier_(buf, size,
                  static_cast<flatbuffers::uoffset_t>(limits.max_depth),
                  static_cast<flatbuffers::uoffset_t>(limits.max_tables)) {}

  absl::Status Run(const reflection::Object& root) {
    const flatbuffers::uoffset_t offset = verifier_.VerifyOffset(0);
    if (offset == 0) return Fail("the root offset", "points outside");
    return Table(root,
                 reinterpret_cast<const flatbuffers::Table*>(buf_ + offset),
                 root.name()->str());
  }

 private:
  static absl::Status Fail(absl::string_view where, absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("verification: ", where, " ", what));
  }

  absl::Status Table(const reflection::Object& object,
                     const flatbuffers::Table* table, const std::string& path) {
    ++depth_;
    ++tables_;
    if (depth_ > limits_.max_depth || tables_ > limits_.max_tables) {
      return absl::InvalidArgumentError(
          absl::StrCat("depth or table limit: the buffer nests deeper than ",
                       limits_.max_depth, " or holds more than ",
                       limits_.max_tables, " tables (at ", path, ")"));
    }
    if (!table->VerifyTableStart(verifier_)) {
      return Fail(path, "is not a table (bad vtable or offset)");
    }
    for (const reflection::Field* field : *object.fields()) {
      NATSGW_RETURN_IF_ERROR(Field(*table, *field, path));
    }
    verifier_.EndTable();
    --depth_;
    return absl::OkStatus();
  }

  const uint8_t* Base(const flatbuffers::Table& table) const {
    return reinterpret_cast<const uint8_t*>(&table);
  }

  // A struct or scalar stored inline at `off`, if present.
  bool Inline(const flatbuffers::Table& table, flatbuffers::voffset_t off,
              size_t size, size_t align) {
    const flatbuffers::voffset_t at = table.GetOptionalFieldOffset(off);
    return at == 0 || verifier_.VerifyFieldStruct(Base(table), at, size, align);
  }

  // The offset field at `off`, if present, and the object it points to.
  bool Offset(const flatbuffers::Table& table, flatbuffers::voffset_t off) {
    return table.VerifyOffset(verifier_, off);
  }

  absl::Status Object(const reflection::Object& object, const uint8_t* at,
                      const std::string& where) {
    if (object.is_struct()) {
      if (!verifier_.VerifyAlignment(static_cast<size_t>(at - buf_),
                                     static_cast<size_t>(object.minalign())) ||
          !verifier_.VerifyFromPointer(
              at, static_cast<size_t>(object.bytesize()))) {
        return Fail(where, "lies outside the buffer or is misaligned");
      }
      return absl::OkStatus();
    }
    return Table(object, reinterpret_cast<const flatbuffers::Table*>(at),
                 where);
  }

  absl::Status Field(const flatbuffers::Table& table,
                     const reflection::Field& field, const std::string& path) {
    const std::string where = absl::StrCat(path, ".", field.name()->str());
    const flatbuffers::voffset_t off = field.offset();
    if (field.required() && !table.CheckField(off)) {
      return Fail(absl::StrCat("required field ", where), "is missing");
    }
    const reflection::Type& t = *field.type();
    const reflection::BaseType b = t.base_type();
    if (b >= reflection::UType && b <= reflection::Double) {
      const size_t size =
          flatbuffers::SizeOf(static_cast<flatbuffers::BaseType>(b));
      if (!Inline(table, off, size, size)) {
        return Fail(where, "lies outside the buffer or is misaligned");
      }
      return absl::OkStatus();
    }
    if (b == reflection::Obj &&
        schema_.objects()->Get(t.index())->is_struct()) {
      const reflection::Object& s = *schema_.objects()->Get(t.index());
      if (!Inline(table, off, static_cast<size_t>(s.bytesize()),
                  static_cast<size_t>(s.minalign()))) {
        return Fail(where, "lies outside the buffer or is misaligned");
      }
      return absl::OkStatus();
    }
    // Everything else is an offset to something.
    if (!Offset(table, off)) return Fail(where, "points outside the buffer");
    const uint8_t* target = table.GetPointer<const uint8_t*>(off);
    if (b == reflection::Union) {
      const auto type_off = static_cast<flatbuffers::voffset_t>(
          off - sizeof(flatbuffers::voffset_t));
      if (!Inline(table, type_off, 1, 1)) {
        return Fail(where, "type lies outside the buffer");
      }
      if (target == nullptr) return absl::OkStatus();
      const uint8_t tag = table.GetField<uint8_t>(type_off, 0);
      if (tag == 0) return Fail(where, "holds a value but no type");
      const reflection::Enum& e = *schema_.enums()->Get(t.index());
      if (tag >= e.values()->size()) {
        return Fail(where, absl::StrCat("has unknown member type ", tag));
      }
      const reflection::Type& member = *e.values()->Get(tag)->union_type();
      if (member.base_type() == reflection::String) {
        if (!verifier_.VerifyString(
                reinterpret_cast<const flatbuffers::String*>(target))) {
          return Fail(where, "is not a valid string");
        }
        return absl::OkStatus();
      }
      return Object(*schema_.objects()->Get(member.index()), target, where);
    }
    if (target == nullptr) return absl::OkStatus();
    if (b == reflection::String) {
      if (!verifier_.VerifyString(
              reinterpret_cast<const flatbuffers::String*>(target))) {
        return Fail(where, "is not a valid string");
      }
      return absl::OkStatus();
    }
    if (b == reflection::Obj) {
      return Table(*schema_.objects()->Get(t.index()),
                   reinterpret_cast<const flatbuffers::Table*>(target), where);
    }
    if (b != reflection::Vector) return Fail(where, "has an unknown type");
    // A vector: its length and elements inside the buffer, each element
    // aligned, then what the elements point to.
    const reflection::BaseType e = t.element();
    const reflection::Object* element_object =
        e == reflection::Obj ? schema_.objects()->Get(t.index()) : nullptr;
    const bool inline_structs =
        element_object != nullptr && element_object->is_struct();
    size_t element_size = sizeof(flatbuffers::uoffset_t);
    size_t align = sizeof(flatbuffers::uoffset_t);
    if (e >= reflection::UType && e <= reflection::Double) {
      element_size = flatbuffers::SizeOf(static_cast<flatbuffers::BaseType>(e));
      align = element_size;
    } else if (inline_structs) {
      element_size = static_cast<size_t>(element_object->bytesize());
      align = static_cast<size_t>(element_object->minalign());
    }
    if (!verifier_.VerifyVectorOrString(target, element_size) ||
        !verifier_.VerifyAlignment(
            static_cast<size_t>(target - buf_) + sizeof(flatbuffers::uoffset_t),
            align)) {
      return Fail(where, "is not a valid vector");
    }
    if (e == reflection::String) {
      const auto* strings = reinterpret_cast<
          const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::String>>*>(
          target);
      if (!verifier_.VerifyVectorOfStrings(strings)) {
        return Fail(where, "holds an invalid string");
      }
    } else if (element_object != nullptr && !inline_structs) {
      const auto* tables = reinterpret_cast<
          const flatbuffers::Vector<flatbuffers::Offset<flatbuffers::Table>>*>(
          target);
      for (flatbuffers::uoffset_t i = 0; i < tables->size(); ++i) {
        if (verifier_.VerifyOffset(static_cast<size_t>(tables->Data() - buf_) +
                                   i * sizeof(flatbuffers::uoffset_t)) == 0) {
          return Fail(absl::StrCat(where, "[", i, "]"),
                      "points outside the buffer");
        }
        NATSGW_RETURN_IF_ERROR(Table(*element_object, tables->Get(i),
                                     absl::StrCat(where, "[", i, "]")));
      }
    }
    return absl::OkStatus();
  }

  const reflection::Schema& schema_;
  const uint8_t* const buf_;
  const VerifyOptions& limits_;
  flatbuffers::Verifier verifier_;
  int depth_ = 0;
  int tables_ = 0;
};

// ---------------------------------------------------------------------------
// One loaded schema file (or binary schema).

struct TypeDecl {
  std::string name;  // fully qualified
  bool table = false;
  std::string signature;
};

class Schema {
 public:
  // From a parsed .fbs: it declares what `path` itself declares.
  static absl::StatusOr<std::shared_ptr<Schema>> FromSource(
      flatbuffers::Parser& parser, const std::string& path,
      absl::string_view source, std::string origin) {
    auto schema = std::shared_ptr<Schema>(new Schema());
    schema->origin_ = std::move(origin);
    schema->identifier_ =
        DeclaresFileIdentifier(source) ? parser.file_identifier_ : "";
    parser.Serialize();
    schema->bfbs_ = AlignedBytes(absl::string_view(
        reinterpret_cast<const char*>(parser.builder_.GetBufferPointer()),
        parser.builder_.GetSize()));
    parser.builder_.Clear();
    schema->Index(parser, [&path](const flatbuffers::Definition& def) {
      return def.file == path;
    });
    // Translation goes through the binary schema, as for one received:
    // checked once here, so that a schema flatc accepts but this library
    // cannot translate fails to load rather than at first use.
    absl::StatusOr<std::unique_ptr<flatbuffers::Parser>> translator =
        DeserializeChecked(schema->bfbs_);
    if (!translator.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "schema ", schema->origin_,
          " cannot be translated: ", translator.status().message()));
    }
    schema->idle_.push_back(*std::move(translator));
    return schema;
  }

  // From a binary schema: it declares everything in it.
  static absl::StatusOr<std::shared_ptr<Schema>> FromBinary(
      absl::string_view bytes, std::string origin) {
    auto schema = std::shared_ptr<Schema>(new Schema());
    schema->origin_ = std::move(origin);
    const AlignedBytes received(bytes);
    absl::StatusOr<std::unique_ptr<flatbuffers::Parser>> parser =
        DeserializeChecked(received);
    if (!parser.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("binary schema from ", schema->origin_, ": ",
                       parser.status().message()));
    }
    schema->identifier_ = (*parser)->file_identifier_;
    // What the verifier checks against is this parser's own view of the
    // schema, serialized again: consistent with the printer by
    // construction, whatever the received bytes held besides.
    (*parser)->Serialize();
    schema->bfbs_ = AlignedBytes(absl::string_view(
        reinterpret_cast<const char*>((*parser)->builder_.GetBufferPointer()),
        (*parser)->builder_.GetSize()));
    (*parser)->builder_.Clear();
    schema->Index(**parser,
                  [](const flatbuffers::Definition&) { return true; });
    schema->idle_.push_back(*std::move(parser));
    return schema;
  }

  const std::string& origin() const { return origin_; }
  const std::string& identifier() const { return identifier_; }
  absl::string_view bfbs() const { return bfbs_.view(); }
  const std::vector<TypeDecl>& types() const { return types_; }
  const std::vector<MethodInfo>& methods() const { return methods_; }
  const std::vector<std::string>& services() const { return services_; }
  int tables() const {
    return static_cast<int>(
        std::count_if(types_.begin(), types_.end(),
                      [](const TypeDecl& t) { return t.table; }));
  }

  // The schema's reflection root object for `type` (a table of it).
  const reflection::Object* Object(absl::string_view type) const {
    const reflection::Schema* schema = reflection::GetSchema(bfbs_.data());
    if (schema->objects() == nullptr) return nullptr;
    return schema->objects()->LookupByKey(std::string(type).c_str());
  }
  const reflection::Schema& ReflectionSchema() const {
    return *reflection::GetSchema(bfbs_.data());
  }

  // Runs `fn` with a parser of this schema that no other thread uses
  // (flatbuffers::Parser is not thread-safe): one from the schema's pool of
  // idle parsers, or a new one. `fn` returns whether the parser is still
  // clean; one that failed mid-way is dropped, since FlatBuffers leaves
  // partial state behind in it (it would grow with every failure).
  absl::Status WithTranslator(
      const std::function<bool(flatbuffers::Parser&)>& fn) const {
    std::unique_ptr<flatbuffers::Parser> parser;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        parser = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    // Made outside the lock: other threads keep translating meanwhile.
    if (parser == nullptr) {
      NATSGW_ASSIGN_OR_RETURN(parser, DeserializeChecked(bfbs_));
    }
    parser->error_.clear();
    parser->builder_.Clear();
    if (fn(*parser)) {
      std::lock_guard<std::mutex> lock(mu_);
      if (idle_.size() < kMaxIdleParsers) idle_.push_back(std::move(parser));
    }
    return absl::OkStatus();
  }

 private:
  Schema() = default;

  // Records the types and services `declared_here` says the schema owns.
  void Index(const flatbuffers::Parser& parser,
             const std::function<bool(const flatbuffers::Definition&)>&
                 declared_here) {
    for (const flatbuffers::StructDef* def : parser.structs_.vec) {
      if (!declared_here(*def)) continue;
      types_.push_back(
          {QualifiedName(*def), !def->fixed, StructSignature(*def)});
    }
    for (const flatbuffers::ServiceDef* service : parser.services_.vec) {
      if (!declared_here(*service)) continue;
      const std::string full_name = QualifiedName(*service);
      services_.push_back(full_name);
      const std::string prefix = absl::AsciiStrToLower(service->name);
      for (const flatbuffers::RPCCall* call : service->calls.vec) {
        if (call->request == nullptr || call->response == nullptr) continue;
        MethodInfo m;
        m.subject = absl::StrCat(prefix, ".", call->name);
        m.service = full_name;
        m.method = call->name;
        m.request_type = QualifiedName(*call->request);
        m.response_type = QualifiedName(*call->response);
        m.file_identifier = identifier_;
        m.idempotent = call->attributes.Lookup("idempotent") != nullptr;
        methods_.push_back(std::move(m));
      }
    }
  }

  std::string origin_;
  std::string identifier_;
  AlignedBytes bfbs_;
  std::vector<TypeDecl> types_;
  std::vector<MethodInfo> methods_;
  std::vector<std::string> services_;

  // Parsers kept between translations, at most kMaxIdleParsers.
  static constexpr size_t kMaxIdleParsers = 8;
  mutable std::mutex mu_;
  mutable std::vector<std::unique_ptr<flatbuffers::Parser>> idle_
      ABSL_GUARDED_BY(mu_);
};

bool SameMethod(const MethodInfo& a, const MethodInfo& b) {
  return a.subject == b.subject && a.service == b.service &&
         a.method == b.method && a.request_type == b.request_type &&
         a.response_type == b.response_type &&
         a.file_identifier == b.file_identifier && a.idempotent == b.idempotent;
}

bool MethodLess(const MethodInfo& a, const MethodInfo& b) {
  return std::tie(a.subject, a.service, a.method, a.request_type,
                  a.response_type, a.file_identifier, a.idempotent) <
         std::tie(b.subject, b.service, b.method, b.request_type,
                  b.response_type, b.file_identifier, b.idempotent);
}

// File system errors, as the Status the header promises.
absl::Status FileError(int err, const std::string& path,
                       absl::string_view doing) {
  const std::string what =
      absl::StrCat(doing, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(what);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(what);
    default:
      return absl::InvalidArgumentError(what);
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) return FileError(errno != 0 ? errno : ENOENT, path, "reading");
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return FileError(errno != 0 ? errno : EIO, path, "reading");
  return out.str();
}

std::string Canonical(const std::string& path) {
  std::error_code ec;
  fs::path canonical = fs::weakly_canonical(fs::path(path), ec);
  return ec ? path : canonical.string();
}

bool IsSchemaFile(const std::string& path) {
  return absl::EndsWith(path, ".fbs") || absl::EndsWith(path, ".bfbs");
}

}  // namespace

// ---------------------------------------------------------------------------

class SchemaSet::Impl {
 public:
  // A type and the schemas declaring it.
  struct Resolved {
    std::shared_ptr<const Schema> schema;
    const TypeDecl* decl = nullptr;
  };

  void Add(std::shared_ptr<const Schema> schema) {
    std::unique_lock<std::shared_mutex> lock(mu_);
    for (const auto& existing : schemas_) {
      if (existing->bfbs() == schema->bfbs() &&
          existing->identifier() == schema->identifier()) {
        return;  // the same schema again (a service discovered twice)
      }
    }
    for (const TypeDecl& decl : schema->types()) {
      index_[decl.name].push_back({schema, &decl});
    }
    schemas_.push_back(std::move(schema));
  }

  std::vector<std::shared_ptr<const Schema>> Snapshot() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return schemas_;
  }

  absl::StatusOr<Resolved> Resolve(absl::string_view type) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    auto it = index_.find(std::string(type));
    if (it == index_.end()) {
      std::vector<std::string> similar;
      const absl::string_view last = type.substr(type.rfind('.') + 1);
      for (const auto& [name, decls] : index_) {
        if (name.substr(name.rfind('.') + 1) == last) similar.push_back(name);
      }
      return absl::NotFoundError(absl::StrCat(
          "type '", absl::CHexEscape(type),
          "' is not declared by any loaded schema (", schemas_.size(),
          " loaded)",
          similar.empty()
              ? ""
              : absl::StrCat("; did you mean ", ListSome(similar), "?")));
    }
    const std::vector<Resolved>& decls = it->second;
    for (const Resolved& other : decls) {
      if (other.decl->signature != decls.front().decl->signature) {
        return absl::FailedPreconditionError(
            absl::StrCat("type ", type, " is defined differently by ",
                         decls.front().schema->origin(), " and ",
                         other.schema->origin(), "; load only one of them"));
      }
    }
    return decls.front();
  }

  // As Resolve, for a message's root: a table.
  absl::StatusOr<Resolved> ResolveTable(absl::string_view type) const {
    NATSGW_ASSIGN_OR_RETURN(Resolved resolved, Resolve(type));
    if (!resolved.decl->table) {
      return absl::InvalidArgumentError(absl::StrCat(
          type, " is a struct; only a table can be a message's root"));
    }
    return resolved;
  }

  // Tables whose unqualified name is `name`.
  std::vector<Resolved> TablesNamed(absl::string_view name) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    std::vector<Resolved> out;
    for (const auto& [qualified, decls] : index_) {
      if (qualified.substr(qualified.rfind('.') + 1) == name &&
          decls.front().decl->table) {
        out.push_back(decls.front());
      }
    }
    return out;
  }

 private:
  mutable std::shared_mutex mu_;
  std::vector<std::shared_ptr<const Schema>> schemas_;
  // Fully qualified type name -> every schema declaring it, in load order.
  std::map<std::string, std::vector<Resolved>> index_;
};

SchemaSet::SchemaSet(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SchemaSet::~SchemaSet() = default;

absl::StatusOr<std::unique_ptr<SchemaSet>> SchemaSet::Load(
    const std::vector<std::string>& paths,
    const std::vector<std::string>& include_dirs) {
  auto impl = std::make_unique<Impl>();
  // (path, origin): the files named, then the files they include.
  std::deque<std::pair<std::string, std::string>> queue;
  for (const std::string& path : paths) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      return FileError(errno, path, "loading schemas from");
    }
    if (S_ISDIR(st.st_mode)) {
      std::vector<std::string> found;
      std::error_code ec;
      for (fs::directory_iterator it(path, ec), end; !ec && it != end;
           it.increment(ec)) {
        const std::string file = it->path().string();
        if (IsSchemaFile(file) && it->is_regular_file(ec)) {
          found.push_back(file);
        }
      }
      if (ec) return FileError(ec.value(), path, "listing");
      if (found.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "schema directory ", path, " holds no .fbs or .bfbs file"));
      }
      std::sort(found.begin(), found.end());
      for (std::string& file : found) queue.emplace_back(file, file);
    } else if (IsSchemaFile(path)) {
      queue.emplace_back(path, path);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "schema ", path,
          " is neither a .fbs file, a .bfbs file nor a directory"));
    }
  }

  std::set<std::string> loaded;
  while (!queue.empty()) {
    auto [path, origin] = std::move(queue.front());
    queue.pop_front();
    if (!loaded.insert(Canonical(path)).second) continue;
    NATSGW_ASSIGN_OR_RETURN(std::string contents, ReadFile(path));
    if (absl::EndsWith(path, ".bfbs")) {
      NATSGW_ASSIGN_OR_RETURN(std::shared_ptr<Schema> schema,
                              Schema::FromBinary(contents, origin));
      impl->Add(std::move(schema));
      continue;
    }
    if (contents.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("schema ", path, " holds a NUL byte: not a .fbs file"));
    }
    // As flatc: the file's own directory first, then the include dirs.
    const std::string own_dir = flatbuffers::StripFileName(path);
    std::vector<const char*> include_paths;
    include_paths.push_back(own_dir.empty() ? "." : own_dir.c_str());
    for (const std::string& dir : include_dirs) {
      include_paths.push_back(dir.c_str());
    }
    include_paths.push_back(nullptr);
    flatbuffers::Parser parser(ParserOptions());
    if (!parser.Parse(contents.c_str(), include_paths.data(), path.c_str())) {
      return absl::InvalidArgumentError(
          absl::StrCat("schema ", origin, " does not parse: ", parser.error_));
    }
    // Every other file a definition comes from is an include: loaded as a
    // schema of its own, which declares those definitions.
    std::set<std::string> included;
    for (const flatbuffers::StructDef* def : parser.structs_.vec) {
      if (def->file != path) included.insert(def->file);
    }
    for (const flatbuffers::EnumDef* def : parser.enums_.vec) {
      if (def->file != path) included.insert(def->file);
    }
    for (const flatbuffers::ServiceDef* def : parser.services_.vec) {
      if (def->file != path) included.insert(def->file);
    }
    for (const std::string& file : included) {
      if (!file.empty()) {
        queue.emplace_back(file,
                           absl::StrCat(file, " (included by ", path, ")"));
      }
    }
    NATSGW_ASSIGN_OR_RETURN(
        std::shared_ptr<Schema> schema,
        Schema::FromSource(parser, path, contents, std::move(origin)));
    impl->Add(std::move(schema));
  }
  return std::unique_ptr<SchemaSet>(new SchemaSet(std::move(impl)));
}

absl::Status SchemaSet::AddBinarySchema(absl::string_view bfbs,
                                        absl::string_view origin) {
  NATSGW_ASSIGN_OR_RETURN(std::shared_ptr<Schema> schema,
                          Schema::FromBinary(bfbs, std::string(origin)));
  impl_->Add(std::move(schema));
  return absl::OkStatus();
}

std::vector<MethodInfo> SchemaSet::Methods() const {
  std::vector<MethodInfo> out;
  for (const auto& schema : impl_->Snapshot()) {
    out.insert(out.end(), schema->methods().begin(), schema->methods().end());
  }
  std::sort(out.begin(), out.end(), MethodLess);
  out.erase(std::unique(out.begin(), out.end(), SameMethod), out.end());
  return out;
}

absl::StatusOr<MethodInfo> SchemaSet::MethodForSubject(
    absl::string_view subject) const {
  std::vector<MethodInfo> all = Methods();
  std::vector<const MethodInfo*> matches;
  std::vector<std::string> subjects;
  for (const MethodInfo& m : all) {
    if (m.subject == subject) matches.push_back(&m);
    if (subjects.empty() || subjects.back() != m.subject) {
      subjects.push_back(m.subject);
    }
  }
  if (matches.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "no loaded rpc_service serves '", absl::CHexEscape(subject),
        "'; the loaded schemas serve: ", ListSome(subjects)));
  }
  if (matches.size() > 1) {
    std::vector<std::string> claims;
    for (const MethodInfo* m : matches) {
      claims.push_back(absl::StrCat(m->service, ".", m->method, " (",
                                    m->request_type, " -> ", m->response_type,
                                    ")"));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "subject ", subject, " is claimed by ", matches.size(),
        " different methods of the loaded schemas: ", ListSome(claims),
        "; load only one of them"));
  }
  return *matches.front();
}

absl::StatusOr<std::string> SchemaSet::EventTypeForSubject(
    absl::string_view subject) const {
  std::vector<absl::string_view> tokens = absl::StrSplit(subject, '.');
  if (tokens.size() < 3 || tokens[tokens.size() - 2] != "events" ||
      tokens.back().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", absl::CHexEscape(subject),
        "' is not an event subject (<prefix>.events.<Event>, schemas/"
        "README.md section 2)"));
  }
  const absl::string_view event = tokens.back();
  std::vector<Impl::Resolved> tables = impl_->TablesNamed(event);
  if (tables.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no loaded schema declares a table named ", event,
                     " (for subject ", subject, ")"));
  }
  if (tables.size() > 1) {
    // The schema whose rpc_service owns the prefix settles it.
    const std::string prefix =
        absl::StrJoin(tokens.begin(), tokens.end() - 2, ".");
    std::vector<const Impl::Resolved*> owned;
    for (const Impl::Resolved& t : tables) {
      for (const MethodInfo& m : t.schema->methods()) {
        if (absl::StartsWith(m.subject, absl::StrCat(prefix, "."))) {
          owned.push_back(&t);
          break;
        }
      }
    }
    if (owned.size() != 1) {
      std::vector<std::string> names;
      for (const Impl::Resolved& t : tables) names.push_back(t.decl->name);
      return absl::FailedPreconditionError(absl::StrCat(
          "subject ", subject, " could carry any of ", ListSome(names),
          "; load only the schema of the service publishing it"));
    }
    NATSGW_RETURN_IF_ERROR(impl_->Resolve(owned.front()->decl->name).status());
    return owned.front()->decl->name;
  }
  NATSGW_RETURN_IF_ERROR(impl_->Resolve(tables.front().decl->name).status());
  return tables.front().decl->name;
}

bool SchemaSet::HasTable(absl::string_view type) const {
  absl::StatusOr<Impl::Resolved> resolved = impl_->Resolve(type);
  return resolved.ok() && resolved->decl->table;
}

absl::StatusOr<std::string> SchemaSet::FileIdentifier(
    absl::string_view type) const {
  NATSGW_ASSIGN_OR_RETURN(Impl::Resolved resolved, impl_->Resolve(type));
  return resolved.schema->identifier();
}

absl::StatusOr<std::string> SchemaSet::JsonToBinary(
    absl::string_view type, absl::string_view json) const {
  NATSGW_ASSIGN_OR_RETURN(std::string identifier, FileIdentifier(type));
  return JsonToBinary(type, json, identifier);
}

absl::StatusOr<std::string> SchemaSet::JsonToBinary(
    absl::string_view type, absl::string_view json,
    absl::string_view file_identifier) const {
  NATSGW_ASSIGN_OR_RETURN(Impl::Resolved resolved, impl_->ResolveTable(type));
  if (!file_identifier.empty() &&
      file_identifier.size() != flatbuffers::kFileIdentifierLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("file identifier \"", absl::CHexEscape(file_identifier),
                     "\" is not 4 characters"));
  }
  if (json.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(type, ": the JSON holds a NUL byte"));
  }
  // FlatBuffers' parser reads a NUL-terminated string.
  const std::string text(json);
  const std::string type_name(type);
  absl::StatusOr<std::string> result;
  NATSGW_RETURN_IF_ERROR(
      resolved.schema->WithTranslator([&](flatbuffers::Parser& parser) {
        if (!parser.SetRootType(type_name.c_str())) {
          result = absl::InternalError(
              absl::StrCat(type, " vanished from its schema"));
          return false;
        }
        // ParseJson finishes the buffer with the parser's identifier.
        parser.file_identifier_ = std::string(file_identifier);
        if (!parser.ParseJson(text.c_str())) {
          result = absl::InvalidArgumentError(
              absl::StrCat(type, ": ", ReadableParseError(parser.error_)));
          return false;
        }
        result = std::string(
            reinterpret_cast<const char*>(parser.builder_.GetBufferPointer()),
            parser.builder_.GetSize());
        // A large message's buffer is not kept for the next one.
        if (parser.builder_.GetSize() > (1 << 20)) parser.builder_.Reset();
        return true;
      }));
  return result;
}

absl::StatusOr<std::string> SchemaSet::BinaryToJson(
    absl::string_view type, absl::string_view data, const VerifyOptions& verify,
    const JsonOptions& json) const {
  NATSGW_ASSIGN_OR_RETURN(Impl::Resolved resolved, impl_->ResolveTable(type));
  if (verify.max_depth <= 0 || verify.max_tables <= 0) {
    return absl::InvalidArgumentError(
        "VerifyOptions: max_depth and max_tables must be positive");
  }
  if (data.size() > verify.max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(type, ": size limit: ", data.size(), " bytes, more than ",
                     verify.max_bytes));
  }
  const std::string& expected = verify.file_identifier.empty()
                                    ? resolved.schema->identifier()
                                    : verify.file_identifier;
  const bool check_identifier = verify.check_identifier && !expected.empty();
  const size_t minimum = check_identifier ? 8 : 4;
  if (data.size() < minimum) {
    return absl::InvalidArgumentError(
        absl::StrCat(type, ": truncated: ", data.size(), " bytes, a buffer",
                     check_identifier ? " with a file identifier" : "",
                     " has at least ", minimum));
  }
  if (check_identifier && data.substr(4, 4) != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        type, ": file identifier: expected ", absl::CHexEscape(expected),
        ", got ", absl::CHexEscape(data.substr(4, 4))));
  }
  AlignedBytes copy;
  const uint8_t* buf = reinterpret_cast<const uint8_t*>(data.data());
  if (reinterpret_cast<uintptr_t>(buf) % 8 != 0) {
    copy = AlignedBytes(data);
    buf = copy.data();
  }
  const reflection::Object* root = resolved.schema->Object(type);
  if (root == nullptr) {
    return absl::InternalError(
        absl::StrCat(type, " is missing from its binary schema"));
  }
  const reflection::Schema& schema = resolved.schema->ReflectionSchema();
  if (absl::Status s = BufferCheck(schema, buf, data.size(), verify).Run(*root);
      !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(type, ": ", s.message()));
  }
  if (!flatbuffers::Verify(
          schema, *root, buf, data.size(),
          static_cast<flatbuffers::uoffset_t>(verify.max_depth),
          static_cast<flatbuffers::uoffset_t>(verify.max_tables))) {
    return absl::InvalidArgumentError(
        absl::StrCat(type, ": verification: ", data.size(),
                     " bytes are not a valid ", type));
  }

  const std::string type_name(type);
  absl::StatusOr<std::string> result;
  NATSGW_RETURN_IF_ERROR(
      resolved.schema->WithTranslator([&](flatbuffers::Parser& parser) {
        if (!parser.SetRootType(type_name.c_str())) {
          result = absl::InternalError(
              absl::StrCat(type, " vanished from its schema"));
          return false;
        }
        parser.opts.indent_step = json.compact ? -1 : 2;
        parser.opts.output_default_scalars_in_json = json.defaults;
        parser.opts.strict_json = true;
        // UTF-8 as is where that is valid JSON; \u escapes otherwise
        // (FlatBuffers prints control characters raw in the former).
        for (bool natural : {true, false}) {
          parser.opts.natural_utf8 = natural;
          std::string text;
          if (!flatbuffers::GenerateText(parser, buf, &text)) {
            result = absl::InvalidArgumentError(absl::StrCat(
                type,
                ": cannot be printed as JSON (a string that is not "
                "UTF-8, or a union member the schema does not know)"));
            return true;
          }
          while (!text.empty() &&
                 absl::ascii_isspace(static_cast<unsigned char>(text.back()))) {
            text.pop_back();
          }
          if (nlohmann::json::accept(text)) {
            result = std::move(text);
            return true;
          }
        }
        result = absl::InvalidArgumentError(absl::StrCat(
            type,
            ": the buffer holds a value JSON cannot represent (a NaN "
            "or infinite float, or an ill-formed string)"));
        return true;
      }));
  return result;
}

absl::StatusOr<std::string> SchemaSet::BinarySchema(
    absl::string_view type) const {
  NATSGW_ASSIGN_OR_RETURN(Impl::Resolved resolved, impl_->Resolve(type));
  return std::string(resolved.schema->bfbs());
}

std::vector<std::string> SchemaSet::Describe() const {
  std::vector<std::string> out;
  for (const auto& schema : impl_->Snapshot()) {
    out.push_back(absl::StrCat(
        schema->origin(), ": ", schema->tables(),
        schema->tables() == 1 ? " table" : " tables", ", services ",
        schema->services().empty() ? "none"
                                   : absl::StrJoin(schema->services(), ", ")));
  }
  return out;
}

}  // namespace natsgw::tools
