// natsgw::tools::SchemaSet without a server: loading schemas/*.fbs, binary
// schemas (written by flatc at test time, or taken from a loaded schema),
// directories and includes; JSON <-> FlatBuffers round trips checked
// against flatc's generated C++ code; every error path (unknown type,
// unknown field, wrong type, missing required field, bad identifier,
// truncated or corrupted buffers, nesting, limits, values JSON cannot hold,
// hostile binary schemas); subjects and methods; concurrent use.
#include "schema_set.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "flatbuffers/flatbuffers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/subprocess.h"
#include "natsgw/schemas/echo_generated.h"
#include "natsgw/schemas/email_generated.h"
#include "natsgw/schemas/users_generated.h"
#include "nlohmann/json.hpp"

namespace natsgw::tools {
namespace {

using ::nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

namespace fs = std::filesystem;

const std::string kSchemas = NATSGW_SCHEMAS_DIR;
const std::string kGenTestdata = NATSGW_GEN_TESTDATA;
const std::string kUnitTestdata = NATSGW_UNIT_TESTDATA;

void ExpectCode(const absl::Status& s, absl::StatusCode code,
                absl::string_view text) {
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(text))) << s;
}

std::string Bytes(const flatbuffers::FlatBufferBuilder& fbb) {
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                     fbb.GetSize());
}

// A fresh temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "natsgw-schema-set-XXXXXX";
    char* made = mkdtemp(pattern.data());
    if (made != nullptr) path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, absl::string_view contents) {
    const std::string file = absl::StrCat(path_, "/", name);
    std::ofstream out(file, std::ios::binary);
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
    return file;
  }

 private:
  std::string path_;
};

std::unique_ptr<SchemaSet> LoadOrDie(
    const std::vector<std::string>& paths,
    const std::vector<std::string>& include = {}) {
  absl::StatusOr<std::unique_ptr<SchemaSet>> set =
      SchemaSet::Load(paths, include);
  EXPECT_TRUE(set.ok()) << set.status();
  return set.ok() ? *std::move(set) : nullptr;
}

// The JSON documents are equal as values (key order and spacing aside).
void ExpectSameJson(absl::string_view got, absl::string_view want) {
  ASSERT_TRUE(json::accept(got)) << "not valid JSON: " << got;
  EXPECT_EQ(json::parse(got), json::parse(want)) << got;
}

class SchemaSetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    schemas_ = LoadOrDie({kSchemas});
    ASSERT_NE(schemas_, nullptr);
  }
  std::unique_ptr<SchemaSet> schemas_;
};

// ---------------------------------------------------------------------------
// Loading and what is loaded.

TEST_F(SchemaSetTest, LoadsTheSchemaDirectory) {
  std::vector<std::string> described = schemas_->Describe();
  ASSERT_THAT(described, SizeIs(3));
  EXPECT_EQ(described[0], absl::StrCat(kSchemas,
                                       "/echo.fbs: 2 tables, services "
                                       "natsgw.echo.Echo"));
  EXPECT_EQ(described[2], absl::StrCat(kSchemas,
                                       "/users.fbs: 3 tables, services "
                                       "natsgw.users.Users"));
  std::vector<MethodInfo> methods = schemas_->Methods();
  ASSERT_THAT(methods, SizeIs(3));
  EXPECT_EQ(methods[0].subject, "echo.Echo");
  EXPECT_EQ(methods[0].service, "natsgw.echo.Echo");
  EXPECT_EQ(methods[0].method, "Echo");
  EXPECT_EQ(methods[0].request_type, "natsgw.echo.EchoRequest");
  EXPECT_EQ(methods[0].response_type, "natsgw.echo.EchoReply");
  EXPECT_EQ(methods[0].file_identifier, "NGEC");
  EXPECT_TRUE(methods[0].idempotent);
  EXPECT_EQ(methods[1].subject, "email.SendWelcomeEmail");
  EXPECT_EQ(methods[1].file_identifier, "NGEM");
  EXPECT_FALSE(methods[1].idempotent);
  EXPECT_EQ(methods[2].subject, "users.RegisterUser");
  EXPECT_EQ(methods[2].service, "natsgw.users.Users");
  EXPECT_EQ(methods[2].request_type, "natsgw.users.RegisterUserRequest");
  EXPECT_EQ(methods[2].response_type, "natsgw.users.RegisterUserReply");
  EXPECT_EQ(methods[2].file_identifier, "NGUS");
}

TEST_F(SchemaSetTest, FindsMethodsAndTypes) {
  absl::StatusOr<MethodInfo> m =
      schemas_->MethodForSubject("users.RegisterUser");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->request_type, "natsgw.users.RegisterUserRequest");
  EXPECT_TRUE(schemas_->HasTable("natsgw.users.UserRegistered"));
  EXPECT_FALSE(schemas_->HasTable("natsgw.users.Nope"));
  EXPECT_FALSE(schemas_->HasTable("UserRegistered"));  // must be qualified
  EXPECT_EQ(*schemas_->FileIdentifier("natsgw.email.WelcomeEmailSent"), "NGEM");

  absl::Status unknown = schemas_->MethodForSubject("users.Nope").status();
  ExpectCode(unknown, absl::StatusCode::kNotFound, "users.Nope");
  // Says what is served, so a typo is easy to spot.
  ExpectCode(unknown, absl::StatusCode::kNotFound, "users.RegisterUser");
}

TEST_F(SchemaSetTest, EventTypeForSubject) {
  EXPECT_EQ(*schemas_->EventTypeForSubject("users.events.UserRegistered"),
            "natsgw.users.UserRegistered");
  EXPECT_EQ(*schemas_->EventTypeForSubject("email.events.WelcomeEmailSent"),
            "natsgw.email.WelcomeEmailSent");
  // A deployment's own prefix does not change the event's type.
  EXPECT_EQ(*schemas_->EventTypeForSubject("acme.users.events.UserRegistered"),
            "natsgw.users.UserRegistered");
  ExpectCode(schemas_->EventTypeForSubject("users.events.Nope").status(),
             absl::StatusCode::kNotFound, "Nope");
  ExpectCode(schemas_->EventTypeForSubject("users.RegisterUser").status(),
             absl::StatusCode::kInvalidArgument, "not an event subject");
  ExpectCode(schemas_->EventTypeForSubject("events.X").status(),
             absl::StatusCode::kInvalidArgument, "not an event subject");
}

TEST(SchemaSetLoadTest, EmptyPathsGiveAnEmptySet) {
  std::unique_ptr<SchemaSet> empty = LoadOrDie({});
  ASSERT_NE(empty, nullptr);
  EXPECT_THAT(empty->Methods(), IsEmpty());
  EXPECT_THAT(empty->Describe(), IsEmpty());
  ExpectCode(
      empty->JsonToBinary("natsgw.users.RegisterUserRequest", "{}").status(),
      absl::StatusCode::kNotFound, "0 loaded");
  ExpectCode(empty->MethodForSubject("users.RegisterUser").status(),
             absl::StatusCode::kNotFound, "serve: none");
}

TEST(SchemaSetLoadTest, LoadErrorsNameThePath) {
  ExpectCode(SchemaSet::Load({kSchemas + "/missing.fbs"}).status(),
             absl::StatusCode::kNotFound, "missing.fbs");
  ExpectCode(SchemaSet::Load({kSchemas + "/README.md"}).status(),
             absl::StatusCode::kInvalidArgument,
             "neither a .fbs file, a .bfbs file nor a directory");
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  ExpectCode(SchemaSet::Load({dir.path()}).status(),
             absl::StatusCode::kInvalidArgument, "holds no .fbs or .bfbs");

  const std::string broken =
      dir.Write("broken.fbs", "namespace x;\ntable T { a:int }\ntable U {\n");
  absl::Status s = SchemaSet::Load({broken}).status();
  ExpectCode(s, absl::StatusCode::kInvalidArgument, "does not parse");
  ExpectCode(s, absl::StatusCode::kInvalidArgument, "broken.fbs");

  const std::string unknown =
      dir.Write("unknown.fbs", "table T { a:Missing; }\nroot_type T;\n");
  ExpectCode(SchemaSet::Load({unknown}).status(),
             absl::StatusCode::kInvalidArgument, "Missing");

  const std::string not_bfbs = dir.Write("junk.bfbs", "definitely not");
  ExpectCode(SchemaSet::Load({not_bfbs}).status(),
             absl::StatusCode::kInvalidArgument, "junk.bfbs");
}

TEST(SchemaSetLoadTest, UnreadableFileIsPermissionDenied) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads any file";
  TempDir dir;
  const std::string file =
      dir.Write("secret.fbs", "table T { a:int; }\nroot_type T;\n");
  ASSERT_EQ(chmod(file.c_str(), 0), 0);
  ExpectCode(SchemaSet::Load({file}).status(),
             absl::StatusCode::kPermissionDenied, "secret.fbs");
}

TEST(SchemaSetLoadTest, AFileReachedTwiceIsLoadedOnce) {
  std::unique_ptr<SchemaSet> set =
      LoadOrDie({kSchemas + "/users.fbs", kSchemas, kSchemas + "/users.fbs"});
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(set->Describe(), SizeIs(3));
  EXPECT_THAT(set->Methods(), SizeIs(3));
}

// inventory.fbs includes inventory_types.fbs (another namespace, another
// identifier): the include is loaded as a schema of its own, and RPC
// payloads carry the service's identifier when asked to.
TEST(SchemaSetLoadTest, IncludesAreLoadedWithTheirOwnIdentifier) {
  std::unique_ptr<SchemaSet> set = LoadOrDie({kGenTestdata + "/inventory.fbs"});
  ASSERT_NE(set, nullptr);
  std::vector<std::string> described = set->Describe();
  ASSERT_THAT(described, SizeIs(2));
  EXPECT_THAT(described[0], HasSubstr("inventory.fbs: 2 tables, services "
                                      "acme.inventory.Stock, "
                                      "acme.inventory.Audit"));
  EXPECT_THAT(described[1], HasSubstr("inventory_types.fbs (included by "));
  EXPECT_THAT(described[1], HasSubstr("2 tables, services none"));

  absl::StatusOr<MethodInfo> level = set->MethodForSubject("stock.GetLevel");
  ASSERT_TRUE(level.ok()) << level.status();
  EXPECT_EQ(level->request_type, "acme.types.ItemRef");
  EXPECT_EQ(level->file_identifier, "INVT");
  EXPECT_TRUE(level->idempotent);
  EXPECT_EQ(*set->FileIdentifier("acme.types.ItemRef"), "ATYP");
  EXPECT_EQ(*set->FileIdentifier("acme.inventory.ReserveRequest"), "INVT");

  // By default a type's own schema's identifier ...
  absl::StatusOr<std::string> own =
      set->JsonToBinary("acme.types.ItemRef", R"({"sku":"a-1"})");
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->substr(4, 4), "ATYP");
  // ... and the method's for RPC payloads.
  absl::StatusOr<std::string> rpc = set->JsonToBinary(
      "acme.types.ItemRef", R"({"sku":"a-1"})", level->file_identifier);
  ASSERT_TRUE(rpc.ok()) << rpc.status();
  EXPECT_EQ(rpc->substr(4, 4), "INVT");
  ExpectCode(set->BinaryToJson("acme.types.ItemRef", *rpc).status(),
             absl::StatusCode::kInvalidArgument,
             "file identifier: expected ATYP, got INVT");
  VerifyOptions verify;
  verify.file_identifier = level->file_identifier;
  absl::StatusOr<std::string> text =
      set->BinaryToJson("acme.types.ItemRef", *rpc, verify, {.compact = true});
  ASSERT_TRUE(text.ok()) << text.status();
  ExpectSameJson(*text, R"({"sku":"a-1"})");

  // The directory holding both loads each once, under its own name.
  std::unique_ptr<SchemaSet> dir = LoadOrDie({kGenTestdata});
  ASSERT_NE(dir, nullptr);
  described = dir->Describe();
  ASSERT_THAT(described, SizeIs(2));
  EXPECT_THAT(described[1], Not(HasSubstr("included by")));
}

TEST(SchemaSetLoadTest, IncludeDirectoriesAreSearched) {
  TempDir dir;
  const std::string main =
      dir.Write("main.fbs",
                "include \"inventory_types.fbs\";\nnamespace m;\n"
                "table Wrap { item:acme.types.ItemRef (required); }\n"
                "rpc_service Wrapper { Get(Wrap):acme.types.Level; }\n"
                "file_identifier \"MAIN\";\n");
  ExpectCode(SchemaSet::Load({main}).status(),
             absl::StatusCode::kInvalidArgument, "inventory_types.fbs");
  std::unique_ptr<SchemaSet> set = LoadOrDie({main}, {kGenTestdata});
  ASSERT_NE(set, nullptr);
  absl::StatusOr<std::string> bin =
      set->JsonToBinary("m.Wrap", R"({"item":{"sku":"z"}})");
  ASSERT_TRUE(bin.ok()) << bin.status();
  EXPECT_EQ(bin->substr(4, 4), "MAIN");
  EXPECT_TRUE(set->HasTable("acme.types.Level"));
}

// ---------------------------------------------------------------------------
// Round trips, checked against flatc's generated code.

TEST_F(SchemaSetTest, UsersRequestRoundTrip) {
  const std::string in =
      R"({"email":"zoë@example.com","display_name":"Zoë \"Z\" \\ tab\t"})";
  absl::StatusOr<std::string> bin =
      schemas_->JsonToBinary("natsgw.users.RegisterUserRequest", in);
  ASSERT_TRUE(bin.ok()) << bin.status();
  // What the generated code reads.
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(bin->data()),
                                 bin->size());
  ASSERT_TRUE(users::VerifyRegisterUserRequestBuffer(verifier));
  EXPECT_TRUE(users::RegisterUserRequestBufferHasIdentifier(bin->data()));
  const auto* req = users::GetRegisterUserRequest(bin->data());
  EXPECT_EQ(req->email()->str(), "zoë@example.com");
  EXPECT_EQ(req->display_name()->str(), "Zoë \"Z\" \\ tab\t");

  absl::StatusOr<std::string> out = schemas_->BinaryToJson(
      "natsgw.users.RegisterUserRequest", *bin, {}, {.compact = true});
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSameJson(*out, in);
  EXPECT_THAT(*out, Not(HasSubstr("\n")));
  // Non-ASCII stays readable.
  EXPECT_THAT(*out, HasSubstr("zoë@"));

  absl::StatusOr<std::string> indented =
      schemas_->BinaryToJson("natsgw.users.RegisterUserRequest", *bin);
  ASSERT_TRUE(indented.ok()) << indented.status();
  EXPECT_THAT(*indented, HasSubstr("\n  \"email\": "));
  ExpectSameJson(*indented, in);
}

TEST_F(SchemaSetTest, ReplyBuiltByGeneratedCodeToJson) {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(users::CreateRegisterUserReplyDirect(fbb, "u-0123456789ab",
                                                  1700000000123),
             "NGUS");
  absl::StatusOr<std::string> out = schemas_->BinaryToJson(
      "natsgw.users.RegisterUserReply", Bytes(fbb), {}, {.compact = true});
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSameJson(
      *out,
      R"({"user_id":"u-0123456789ab","created_at_unix_ms":1700000000123})");

  // Default values are printed only when asked for.
  flatbuffers::FlatBufferBuilder zero;
  zero.Finish(users::CreateRegisterUserReplyDirect(zero, "u-1", 0), "NGUS");
  out = schemas_->BinaryToJson("natsgw.users.RegisterUserReply", Bytes(zero),
                               {}, {.compact = true});
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSameJson(*out, R"({"user_id":"u-1"})");
  out = schemas_->BinaryToJson("natsgw.users.RegisterUserReply", Bytes(zero),
                               {}, {.compact = true, .defaults = true});
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSameJson(*out, R"({"user_id":"u-1","created_at_unix_ms":0})");
}

TEST_F(SchemaSetTest, EmailEventRoundTrip) {
  const std::string in = R"({"user_id":"u-1","email":"a@b.c","email_id":"e-9",)"
                         R"("sent_at_unix_ms":-5})";
  absl::StatusOr<std::string> bin =
      schemas_->JsonToBinary("natsgw.email.WelcomeEmailSent", in);
  ASSERT_TRUE(bin.ok()) << bin.status();
  flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(bin->data()),
                                 bin->size());
  ASSERT_TRUE(verifier.VerifyBuffer<email::WelcomeEmailSent>("NGEM"));
  EXPECT_EQ(bin->substr(4, 4), "NGEM");
  EXPECT_EQ(flatbuffers::GetRoot<email::WelcomeEmailSent>(bin->data())
                ->sent_at_unix_ms(),
            -5);
  absl::StatusOr<std::string> out =
      schemas_->BinaryToJson("natsgw.email.WelcomeEmailSent", *bin);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSameJson(*out, in);
}

TEST_F(SchemaSetTest, EchoBytesAndLargeIntegersRoundTrip) {
  const std::string in =
      R"({"payload":[0,1,127,128,255],"tag":18446744073709551615})";
  absl::StatusOr<std::string> bin =
      schemas_->JsonToBinary("natsgw.echo.EchoRequest", in);
  ASSERT_TRUE(bin.ok()) << bin.status();
  const auto* req = echo::GetEchoRequest(bin->data());
  EXPECT_EQ(req->tag(), 18446744073709551615ull);
  ASSERT_NE(req->payload(), nullptr);
  EXPECT_THAT(
      std::vector<uint8_t>(req->payload()->begin(), req->payload()->end()),
      ElementsAre(0, 1, 127, 128, 255));
  absl::StatusOr<std::string> out =
      schemas_->BinaryToJson("natsgw.echo.EchoRequest", *bin);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSameJson(*out, in);
}

TEST_F(SchemaSetTest, ControlCharactersAndUnicodeGiveValidJson) {
  // Control characters must be escaped in JSON; FlatBuffers prints them raw
  // when printing UTF-8 as is, so the output falls back to \u escapes.
  flatbuffers::FlatBufferBuilder fbb;
  const std::string name = "a\x01z\x1f ünï 😀";
  fbb.Finish(users::CreateRegisterUserRequestDirect(fbb, "x@y", name.c_str()),
             "NGUS");
  absl::StatusOr<std::string> out =
      schemas_->BinaryToJson("natsgw.users.RegisterUserRequest", Bytes(fbb));
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_TRUE(json::accept(*out)) << *out;
  EXPECT_EQ(json::parse(*out)["display_name"], name);
}

// ---------------------------------------------------------------------------
// JSON that does not fit the type.

TEST_F(SchemaSetTest, JsonErrorsNameTheFieldAndPlace) {
  constexpr absl::string_view kType = "natsgw.users.RegisterUserRequest";
  absl::Status s =
      schemas_->JsonToBinary(kType, R"({"email":"a","bogus":1})").status();
  ExpectCode(s, absl::StatusCode::kInvalidArgument,
             "natsgw.users.RegisterUserRequest: line 1, column");
  ExpectCode(s, absl::StatusCode::kInvalidArgument, "unknown field: bogus");

  ExpectCode(schemas_->JsonToBinary(kType, R"({"email":5})").status(),
             absl::StatusCode::kInvalidArgument, "string constant");
  ExpectCode(schemas_->JsonToBinary(kType, R"({"display_name":"x"})").status(),
             absl::StatusCode::kInvalidArgument,
             "required field is missing: email");
  ExpectCode(
      schemas_->JsonToBinary(kType, "{\"email\":\"a\",\n\n  oops}").status(),
      absl::StatusCode::kInvalidArgument, "line 3, column");
  ExpectCode(schemas_->JsonToBinary(kType, R"([{"email":"a"}])").status(),
             absl::StatusCode::kInvalidArgument, "{");
  ExpectCode(
      schemas_->JsonToBinary(kType, R"({"email":"a"}{"email":"b"})").status(),
      absl::StatusCode::kInvalidArgument, "line 1");
  ExpectCode(
      schemas_->JsonToBinary(kType, R"({"email":"a","email":"b"})").status(),
      absl::StatusCode::kInvalidArgument, "email");
  ExpectCode(schemas_->JsonToBinary(kType, "").status(),
             absl::StatusCode::kInvalidArgument, kType);
  ExpectCode(
      schemas_->JsonToBinary(kType, std::string("{\"email\":\"a\0\"}", 14))
          .status(),
      absl::StatusCode::kInvalidArgument, "NUL byte");
  // Field names must be quoted: the input is JSON.
  ExpectCode(schemas_->JsonToBinary(kType, R"({email:"a"})").status(),
             absl::StatusCode::kInvalidArgument, kType);

  ExpectCode(schemas_->JsonToBinary("natsgw.users.Nope", "{}").status(),
             absl::StatusCode::kNotFound, "natsgw.users.Nope");
  // An unqualified name gets a suggestion.
  ExpectCode(schemas_->JsonToBinary("RegisterUserRequest", "{}").status(),
             absl::StatusCode::kNotFound,
             "did you mean natsgw.users.RegisterUserRequest");
  ExpectCode(
      schemas_->JsonToBinary(kType, R"({"email":"a"})", "TOOLONG").status(),
      absl::StatusCode::kInvalidArgument, "not 4 characters");

  // After all these failures the schema still translates.
  absl::StatusOr<std::string> ok =
      schemas_->JsonToBinary(kType, R"({"email":"a"})");
  ASSERT_TRUE(ok.ok()) << ok.status();
}

TEST(SchemaSetNestingTest, JsonNestingIsBounded) {
  std::unique_ptr<SchemaSet> set = LoadOrDie({kUnitTestdata + "/nested.fbs"});
  ASSERT_NE(set, nullptr);
  auto chain = [](int depth) {
    std::string text;
    for (int i = 0; i < depth; ++i) text += R"({"value":1,"child":)";
    text += "{}";
    for (int i = 0; i < depth; ++i) text += "}";
    return text;
  };
  absl::StatusOr<std::string> shallow =
      set->JsonToBinary("natsgw.testdata.Node", chain(40));
  ASSERT_TRUE(shallow.ok()) << shallow.status();
  // FlatBuffers' parser stops at 64 levels.
  ExpectCode(set->JsonToBinary("natsgw.testdata.Node", chain(200)).status(),
             absl::StatusCode::kInvalidArgument, "natsgw.testdata.Node");
  // A hostile depth does not exhaust the stack either.
  ExpectCode(set->JsonToBinary("natsgw.testdata.Node", chain(100000)).status(),
             absl::StatusCode::kInvalidArgument, "natsgw.testdata.Node");

  // Reading: the verifier's depth and table limits.
  absl::StatusOr<std::string> text =
      set->BinaryToJson("natsgw.testdata.Node", *shallow);
  ASSERT_TRUE(text.ok()) << text.status();
  VerifyOptions shallow_only;
  shallow_only.max_depth = 10;
  ExpectCode(set->BinaryToJson("natsgw.testdata.Node", *shallow, shallow_only)
                 .status(),
             absl::StatusCode::kInvalidArgument, "depth or table limit");
  VerifyOptions few_tables;
  few_tables.max_tables = 5;
  ExpectCode(
      set->BinaryToJson("natsgw.testdata.Node", *shallow, few_tables).status(),
      absl::StatusCode::kInvalidArgument, "depth or table limit");
}

// ---------------------------------------------------------------------------
// Buffers that are not what they claim.

TEST_F(SchemaSetTest, BufferErrorsNameTheRule) {
  constexpr absl::string_view kType = "natsgw.users.RegisterUserReply";
  flatbuffers::FlatBufferBuilder fbb;
  fbb.Finish(users::CreateRegisterUserReplyDirect(fbb, "u-1", 7), "NGUS");
  const std::string good = Bytes(fbb);

  // Wrong identifier, or none.
  flatbuffers::FlatBufferBuilder other;
  other.Finish(users::CreateRegisterUserReplyDirect(other, "u-1", 7), "NGEM");
  ExpectCode(schemas_->BinaryToJson(kType, Bytes(other)).status(),
             absl::StatusCode::kInvalidArgument,
             "file identifier: expected NGUS, got NGEM");
  VerifyOptions no_check;
  no_check.check_identifier = false;
  EXPECT_TRUE(schemas_->BinaryToJson(kType, Bytes(other), no_check).ok());

  // Truncated: too short for a root and identifier, and cut in half.
  ExpectCode(schemas_->BinaryToJson(kType, good.substr(0, 6)).status(),
             absl::StatusCode::kInvalidArgument, "truncated: 6 bytes");
  ExpectCode(
      schemas_->BinaryToJson(kType, good.substr(0, good.size() / 2)).status(),
      absl::StatusCode::kInvalidArgument, "verification");
  ExpectCode(schemas_->BinaryToJson(kType, "").status(),
             absl::StatusCode::kInvalidArgument, "truncated: 0 bytes");

  // A required field missing on the wire (built by hand: the generated
  // builder refuses to).
  flatbuffers::FlatBufferBuilder missing;
  const auto table = missing.StartTable();
  missing.AddElement<int64_t>(users::RegisterUserReply::VT_CREATED_AT_UNIX_MS,
                              1, 0);
  missing.Finish(flatbuffers::Offset<void>(missing.EndTable(table)), "NGUS");
  ExpectCode(schemas_->BinaryToJson(kType, Bytes(missing)).status(),
             absl::StatusCode::kInvalidArgument, "verification");

  // Over the size limit.
  VerifyOptions small;
  small.max_bytes = 16;
  ExpectCode(schemas_->BinaryToJson(kType, good, small).status(),
             absl::StatusCode::kInvalidArgument, "size limit");

  // A string that is not UTF-8 cannot be JSON.
  flatbuffers::FlatBufferBuilder bad_utf8;
  bad_utf8.Finish(
      users::CreateRegisterUserReplyDirect(bad_utf8, "u-\xff\xfe", 1), "NGUS");
  ExpectCode(schemas_->BinaryToJson(kType, Bytes(bad_utf8)).status(),
             absl::StatusCode::kInvalidArgument, "UTF-8");

  // Misaligned input is copied, not misread.
  std::string shifted = " " + good;
  absl::StatusOr<std::string> text = schemas_->BinaryToJson(
      kType, absl::string_view(shifted).substr(1), {}, {.compact = true});
  ASSERT_TRUE(text.ok()) << text.status();
  ExpectSameJson(*text, R"({"user_id":"u-1","created_at_unix_ms":7})");

  // Every corruption of every byte is either rejected or printed as valid
  // JSON (bounded: one pass over a small buffer).
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < good.size(); ++i) {
    for (unsigned char value : {0x00, 0x01, 0x7f, 0x80, 0xff}) {
      std::string corrupt = good;
      corrupt[i] = static_cast<char>(value);
      absl::StatusOr<std::string> out = schemas_->BinaryToJson(kType, corrupt);
      if (out.ok()) {
        EXPECT_TRUE(json::accept(*out)) << "byte " << i << ": " << *out;
      } else {
        EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument)
            << out.status();
      }
    }
    ASSERT_LT(std::chrono::steady_clock::now() - start,
              std::chrono::seconds(30));
  }
}

TEST(SchemaSetValuesTest, NanAndStructRootsAreRefused) {
  TempDir dir;
  const std::string file =
      dir.Write("floats.fbs",
                "namespace t;\nstruct Point { x:float; y:float; }\n"
                "table F { x:float; p:Point; }\nroot_type F;\n"
                "file_identifier \"TFLT\";\n");
  std::unique_ptr<SchemaSet> set = LoadOrDie({file});
  ASSERT_NE(set, nullptr);
  absl::StatusOr<std::string> ok =
      set->JsonToBinary("t.F", R"({"x":1.5,"p":{"x":2,"y":-3.25}})");
  ASSERT_TRUE(ok.ok()) << ok.status();
  absl::StatusOr<std::string> text = set->BinaryToJson("t.F", *ok);
  ASSERT_TRUE(text.ok()) << text.status();
  ExpectSameJson(*text, R"({"x":1.5,"p":{"x":2.0,"y":-3.25}})");

  // Field 0 (vtable slot 4) holding a NaN.
  flatbuffers::FlatBufferBuilder fbb;
  const auto start = fbb.StartTable();
  fbb.AddElement<float>(4, std::nanf(""), 0.0f);
  fbb.Finish(flatbuffers::Offset<void>(fbb.EndTable(start)), "TFLT");
  ExpectCode(set->BinaryToJson("t.F", Bytes(fbb)).status(),
             absl::StatusCode::kInvalidArgument, "NaN");

  ExpectCode(set->JsonToBinary("t.Point", R"({"x":1,"y":2})").status(),
             absl::StatusCode::kInvalidArgument, "is a struct");
  EXPECT_FALSE(set->HasTable("t.Point"));
}

// Unions, enums, structs (nested, in vectors, with arrays), vectors of
// tables and strings, optional scalars: round trips, and buffers that
// FlatBuffers 2.0.8's own reflection verifier would misread.
constexpr absl::string_view kRichSchema = R"(
namespace rich;
enum Color : byte { None = 0, Red = 1, Green, Blue = 8 }
struct Vec3 { x:float; y:float; z:float; }
struct Pair { a:short; v:Vec3; c:Color; arr:[int:3]; }
table Leaf { name:string (required); n:ulong; }
table Other { s:[string]; }
union Any { Leaf, Other }
table Root {
  pos:Vec3;
  pairs:[Pair];
  color:Color = Green;
  leaves:[Leaf];
  any:Any;
  bytes:[ubyte];
  flag:bool;
  d:double;
  child:Root;
  opt:int = null;
}
rpc_service Svc { Get(Root):Leaf (idempotent); }
file_identifier "RICH";
root_type Root;
)";

constexpr absl::string_view kRichJson =
    R"({"pos":{"x":1.0,"y":2.0,"z":3.0},)"
    R"("pairs":[{"a":1,"v":{"x":1.0,"y":2.0,"z":3.0},"c":"Blue",)"
    R"("arr":[1,2,3]}],"color":"Red","leaves":[{"name":"x","n":5}],)"
    R"("any_type":"Leaf","any":{"name":"y"},"bytes":[1,2],"flag":true,)"
    R"("d":2.5,"child":{"opt":3,"any_type":"Other","any":{"s":["a","b"]}},)"
    R"("opt":4})";

// The vtable entry of field `id` of the root table of `buffer`.
size_t RootVtableEntry(const std::string& buffer, int id) {
  uint32_t root;
  std::memcpy(&root, buffer.data(), 4);
  int32_t back;
  std::memcpy(&back, buffer.data() + root, 4);
  return root - back + 4 + 2 * id;
}

TEST(SchemaSetRichTest, RoundTripsAndMisreadsRefused) {
  TempDir dir;
  std::unique_ptr<SchemaSet> set =
      LoadOrDie({dir.Write("rich.fbs", kRichSchema)});
  ASSERT_NE(set, nullptr);
  absl::StatusOr<std::string> bin = set->JsonToBinary("rich.Root", kRichJson);
  ASSERT_TRUE(bin.ok()) << bin.status();
  absl::StatusOr<std::string> out = set->BinaryToJson("rich.Root", *bin);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSameJson(*out, kRichJson);
  // Through the binary schema, as a peer would announce it.
  std::unique_ptr<SchemaSet> peer = LoadOrDie({});
  ASSERT_TRUE(
      peer->AddBinarySchema(*set->BinarySchema("rich.Root"), "peer").ok());
  out = peer->BinaryToJson("rich.Root", *bin);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSameJson(*out, kRichJson);
  EXPECT_TRUE(peer->MethodForSubject("svc.Get")->idempotent);

  // Field 4 is any_type, 5 any. A union offset far outside the buffer:
  // reflection's verifier reads through it unchecked.
  std::string far = *bin;
  const uint16_t huge = 0xee1c;
  std::memcpy(far.data() + RootVtableEntry(far, 5), &huge, 2);
  ExpectCode(set->BinaryToJson("rich.Root", far).status(),
             absl::StatusCode::kInvalidArgument, "rich.Root.any");
  // A union value without its type: the printer would take the type from
  // whatever it printed before.
  std::string untyped = *bin;
  const uint16_t absent = 0;
  std::memcpy(untyped.data() + RootVtableEntry(untyped, 4), &absent, 2);
  ExpectCode(set->BinaryToJson("rich.Root", untyped).status(),
             absl::StatusCode::kInvalidArgument, "holds a value but no type");
  // A required field of a table in a vector.
  ExpectCode(set->JsonToBinary("rich.Root", R"({"leaves":[{"n":1}]})").status(),
             absl::StatusCode::kInvalidArgument, "required field is missing");
}

TEST(SchemaSetRichTest, StructNestingIsBounded) {
  auto chain = [](int depth) {
    std::string text = "namespace deep;\nstruct S0 { x:byte; }\n";
    for (int i = 1; i < depth; ++i) {
      absl::StrAppend(&text, "struct S", i, " { s:S", i - 1, "; }\n");
    }
    absl::StrAppend(&text, "table T { s:S", depth - 1,
                    "; }\nroot_type T;\nfile_identifier \"DEEP\";\n");
    return text;
  };
  TempDir dir;
  std::unique_ptr<SchemaSet> ok = LoadOrDie({dir.Write("ok.fbs", chain(20))});
  ASSERT_NE(ok, nullptr);
  EXPECT_TRUE(ok->JsonToBinary("deep.T", "{}").ok());
  ExpectCode(SchemaSet::Load({dir.Write("deep.fbs", chain(70))}).status(),
             absl::StatusCode::kInvalidArgument, "nests more than 64");
}

// ---------------------------------------------------------------------------
// Binary schemas.

TEST(SchemaSetBinaryTest, LoadsWhatFlatcWrites) {
  TempDir dir;
  absl::StatusOr<testing::ProcessResult> flatc = testing::RunProcess(
      {NATSGW_FLATC, "--binary", "--schema", "--bfbs-builtins", "-o",
       dir.path(), kSchemas + "/users.fbs", kSchemas + "/echo.fbs"},
      absl::Seconds(60));
  ASSERT_TRUE(flatc.ok()) << flatc.status();
  ASSERT_EQ(flatc->exit_code, 0) << flatc->output;
  std::unique_ptr<SchemaSet> set = LoadOrDie({dir.path()});
  ASSERT_NE(set, nullptr);
  EXPECT_THAT(set->Describe(),
              ElementsAre(HasSubstr("echo.bfbs: 2 tables, services "
                                    "natsgw.echo.Echo"),
                          HasSubstr("users.bfbs: 3 tables, services "
                                    "natsgw.users.Users")));
  absl::StatusOr<MethodInfo> echo = set->MethodForSubject("echo.Echo");
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_TRUE(echo->idempotent);  // --bfbs-builtins keeps the attribute
  EXPECT_EQ(echo->file_identifier, "NGEC");
  const std::string in = R"({"email":"a@b.c","display_name":"A"})";
  absl::StatusOr<std::string> bin =
      set->JsonToBinary("natsgw.users.RegisterUserRequest", in);
  ASSERT_TRUE(bin.ok()) << bin.status();
  EXPECT_EQ(bin->substr(4, 4), "NGUS");
  absl::StatusOr<std::string> out =
      set->BinaryToJson("natsgw.users.RegisterUserRequest", *bin);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSameJson(*out, in);
  // Required fields survive too.
  ExpectCode(
      set->JsonToBinary("natsgw.users.RegisterUserRequest", "{}").status(),
      absl::StatusCode::kInvalidArgument, "required field is missing");

  // The .fbs and flatc's .bfbs of it together: the same definitions, so no
  // conflict and each method once.
  std::unique_ptr<SchemaSet> both =
      LoadOrDie({kSchemas + "/users.fbs", dir.path() + "/users.bfbs"});
  ASSERT_NE(both, nullptr);
  EXPECT_THAT(both->Methods(), SizeIs(1));
  EXPECT_TRUE(both->MethodForSubject("users.RegisterUser").ok());
  EXPECT_TRUE(both->JsonToBinary("natsgw.users.RegisterUserRequest", in).ok());
}

TEST(SchemaSetBinaryTest, AnEmptySetLearnsFromABinarySchema) {
  std::unique_ptr<SchemaSet> source = LoadOrDie({kSchemas});
  ASSERT_NE(source, nullptr);
  absl::StatusOr<std::string> bfbs =
      source->BinarySchema("natsgw.echo.EchoReply");
  ASSERT_TRUE(bfbs.ok()) << bfbs.status();
  EXPECT_EQ(bfbs->substr(4, 4), "BFBS");

  std::unique_ptr<SchemaSet> set = LoadOrDie({});
  ASSERT_NE(set, nullptr);
  ASSERT_TRUE(set->AddBinarySchema(*bfbs, "$SRV.INFO of echo").ok());
  // The same bytes again change nothing.
  ASSERT_TRUE(set->AddBinarySchema(*bfbs, "$SRV.INFO of echo again").ok());
  EXPECT_THAT(set->Describe(),
              ElementsAre("$SRV.INFO of echo: 2 tables, services "
                          "natsgw.echo.Echo"));
  absl::StatusOr<MethodInfo> m = set->MethodForSubject("echo.Echo");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->idempotent);
  EXPECT_EQ(m->file_identifier, "NGEC");
  absl::StatusOr<std::string> bin = set->JsonToBinary(
      "natsgw.echo.EchoReply", R"({"payload":[1,2],"tag":3})");
  ASSERT_TRUE(bin.ok()) << bin.status();
  EXPECT_EQ(bin->substr(4, 4), "NGEC");
  EXPECT_TRUE(source->BinaryToJson("natsgw.echo.EchoReply", *bin).ok());
}

TEST(SchemaSetBinaryTest, HostileBinarySchemasAreRefusedCleanly) {
  std::unique_ptr<SchemaSet> set = LoadOrDie({});
  ASSERT_NE(set, nullptr);
  ExpectCode(set->AddBinarySchema("", "peer"),
             absl::StatusCode::kInvalidArgument, "peer");
  ExpectCode(set->AddBinarySchema("hello world!", "peer"),
             absl::StatusCode::kInvalidArgument, "expected BFBS");
  ExpectCode(
      set->AddBinarySchema(std::string("\x08\0\0\0BFBS\xff\xff", 10), "peer"),
      absl::StatusCode::kInvalidArgument, "verification");

  std::unique_ptr<SchemaSet> source = LoadOrDie({kSchemas});
  ASSERT_NE(source, nullptr);
  const std::string bfbs = *source->BinarySchema("natsgw.users.UserRegistered");
  ExpectCode(set->AddBinarySchema(bfbs.substr(0, bfbs.size() / 2), "peer"),
             absl::StatusCode::kInvalidArgument, "peer");

  // Every single-byte corruption: refused, or a schema that translates
  // without reading out of bounds (sanitizer builds check the latter).
  const auto start = std::chrono::steady_clock::now();
  int accepted = 0;
  for (size_t i = 0; i < bfbs.size(); ++i) {
    for (unsigned char value : {0x00, 0x01, 0x0f, 0x7f, 0xff}) {
      std::string corrupt = bfbs;
      corrupt[i] = static_cast<char>(value);
      std::unique_ptr<SchemaSet> target = LoadOrDie({});
      absl::Status added = target->AddBinarySchema(corrupt, "peer");
      if (!added.ok()) {
        EXPECT_EQ(added.code(), absl::StatusCode::kInvalidArgument) << added;
        continue;
      }
      ++accepted;
      for (absl::string_view type :
           {"natsgw.users.UserRegistered", "natsgw.users.RegisterUserRequest",
            "natsgw.users.RegisterUserReply"}) {
        absl::StatusOr<std::string> bin = target->JsonToBinary(
            type, R"({"user_id":"u","email":"e","registered_at_unix_ms":1})");
        if (bin.ok()) {
          absl::StatusOr<std::string> out = target->BinaryToJson(type, *bin);
          if (out.ok()) {
            EXPECT_TRUE(json::accept(*out)) << *out;
          }
        }
      }
      (void)target->Methods();
      (void)target->Describe();
    }
    ASSERT_LT(std::chrono::steady_clock::now() - start,
              std::chrono::seconds(40));
  }
  std::cout << "corrupted binary schemas accepted: " << accepted << " of "
            << bfbs.size() * 5 << std::endl;
}

// ---------------------------------------------------------------------------
// Conflicts between schemas.

TEST(SchemaSetConflictTest, DuplicateSubjectsAndTypes) {
  TempDir dir;
  dir.Write("a.fbs",
            "namespace a;\ntable Req { x:int; }\ntable Rep { y:int; }\n"
            "rpc_service Users { RegisterUser(Req):Rep; }\n"
            "file_identifier \"AAAA\";\n");
  dir.Write("b.fbs",
            "namespace natsgw.users;\n"
            "table RegisterUserRequest { email:int; }\n"
            "table RegisterUserReply { user_id:string; }\n"
            "rpc_service Users { RegisterUser(RegisterUserRequest):"
            "RegisterUserReply; }\nfile_identifier \"BBBB\";\n");
  std::unique_ptr<SchemaSet> set = LoadOrDie({dir.path(), kSchemas});
  ASSERT_NE(set, nullptr);

  // Two methods claim users.RegisterUser: listed, but not chosen from.
  int claims = 0;
  for (const MethodInfo& m : set->Methods()) {
    if (m.subject == "users.RegisterUser") ++claims;
  }
  EXPECT_EQ(claims, 3);
  absl::Status s = set->MethodForSubject("users.RegisterUser").status();
  ExpectCode(s, absl::StatusCode::kFailedPrecondition, "claimed by 3");
  ExpectCode(s, absl::StatusCode::kFailedPrecondition, "a.Users.RegisterUser");

  // b.fbs defines natsgw.users.RegisterUserRequest unlike users.fbs.
  s = set->JsonToBinary("natsgw.users.RegisterUserRequest", R"({"email":1})")
          .status();
  ExpectCode(s, absl::StatusCode::kFailedPrecondition, "defined differently");
  ExpectCode(s, absl::StatusCode::kFailedPrecondition, "b.fbs");
  EXPECT_FALSE(set->HasTable("natsgw.users.RegisterUserRequest"));
  // Types nobody disputes still work.
  EXPECT_TRUE(set->JsonToBinary("a.Req", R"({"x":1})").ok());
  EXPECT_TRUE(set->JsonToBinary("natsgw.users.UserRegistered",
                                R"({"user_id":"u","email":"e"})")
                  .ok());
}

TEST(SchemaSetConflictTest, EventTypesSettledByThePrefixOwner) {
  TempDir dir;
  dir.Write("audit.fbs",
            "namespace audit;\ntable UserRegistered { who:string; }\n"
            "table Q { a:int; }\n"
            "rpc_service Audit { Log(Q):Q; }\nfile_identifier \"AUDT\";\n");
  std::unique_ptr<SchemaSet> set = LoadOrDie({dir.path(), kSchemas});
  ASSERT_NE(set, nullptr);
  EXPECT_EQ(*set->EventTypeForSubject("users.events.UserRegistered"),
            "natsgw.users.UserRegistered");
  EXPECT_EQ(*set->EventTypeForSubject("audit.events.UserRegistered"),
            "audit.UserRegistered");
  ExpectCode(set->EventTypeForSubject("other.events.UserRegistered").status(),
             absl::StatusCode::kFailedPrecondition, "audit.UserRegistered");
}

// ---------------------------------------------------------------------------
// Concurrency: translation from many threads while schemas are added.

TEST(SchemaSetConcurrencyTest, TranslatesFromManyThreads) {
  std::unique_ptr<SchemaSet> set = LoadOrDie({kSchemas + "/users.fbs"});
  std::unique_ptr<SchemaSet> source = LoadOrDie({kSchemas});
  ASSERT_NE(set, nullptr);
  ASSERT_NE(source, nullptr);
  const std::string echo_bfbs =
      *source->BinarySchema("natsgw.echo.EchoRequest");
  constexpr int kThreads = 4;
  constexpr int kIterations = 300;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        const std::string in = absl::StrCat(R"({"email":"u)", t, "-", i,
                                            R"(@x","display_name":"n"})");
        absl::StatusOr<std::string> bin =
            set->JsonToBinary("natsgw.users.RegisterUserRequest", in);
        absl::StatusOr<std::string> out =
            bin.ok() ? set->BinaryToJson("natsgw.users.RegisterUserRequest",
                                         *bin, {}, {.compact = true})
                     : bin.status();
        if (!out.ok() || json::parse(*out) != json::parse(in)) ++failures;
        // Failures interleaved with successes.
        if (set->JsonToBinary("natsgw.users.RegisterUserRequest", "{").ok()) {
          ++failures;
        }
        if (t == 0 && i == kIterations / 2) {
          if (!set->AddBinarySchema(echo_bfbs, "added").ok()) ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_TRUE(set->MethodForSubject("echo.Echo").ok());
}

}  // namespace
}  // namespace natsgw::tools
