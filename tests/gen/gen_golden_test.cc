// Golden-file tests of natsgw-gen: the binary, run as natsgw_generate() runs
// it, must produce exactly tests/gen/golden/<stem>_natsgw.h.golden, and must
// reject broken schemas with "<file>:<line>:" and the rule broken.
//
// After an intended change of the generated code, refresh the golden files:
//   NATSGW_UPDATE_GOLDEN=1 build/bin/gen_test --gtest_filter='GenGolden*'
// and review the diff like any other code change.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/subprocess.h"

namespace natsgw {
namespace {

using ::natsgw::testing::ProcessResult;
using ::natsgw::testing::RunProcess;
using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(60);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// A fresh temporary directory, removed with its files at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "natsgw-gen-XXXXXX";
    char* made = mkdtemp(pattern.data());
    if (made != nullptr) path_ = made;
  }
  ~TempDir() {
    if (path_.empty()) return;
    for (const std::string& f : files_) unlink(f.c_str());
    rmdir(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) {
    files_.push_back(absl::StrCat(path_, "/", name));
    return files_.back();
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

ProcessResult Gen(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {NATSGW_GEN_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<ProcessResult> result = RunProcess(argv, kTimeout);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok()) return {};
  EXPECT_FALSE(result->timed_out) << "natsgw-gen did not finish";
  return *result;
}

class GenGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GenGoldenTest, OutputMatchesGoldenFile) {
  const std::string stem = GetParam();
  TempDir out;
  ASSERT_FALSE(out.path().empty());
  ProcessResult r = Gen({"--include-prefix", "gen_test", "-o", out.path(),
                         absl::StrCat(NATSGW_GEN_TESTDATA, "/", stem, ".fbs")});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string generated = ReadFile(out.File(stem + "_natsgw.h"));
  ASSERT_FALSE(generated.empty());

  const std::string golden_path =
      absl::StrCat(NATSGW_GEN_GOLDEN, "/", stem, "_natsgw.h.golden");
  if (const char* update = std::getenv("NATSGW_UPDATE_GOLDEN");
      update != nullptr && std::string(update) == "1") {
    std::ofstream(golden_path, std::ios::binary | std::ios::trunc) << generated;
    GTEST_SKIP() << "rewrote " << golden_path;
  }
  const std::string golden = ReadFile(golden_path);
  ASSERT_FALSE(golden.empty()) << "missing golden file " << golden_path
                               << "; create it with NATSGW_UPDATE_GOLDEN=1";
  EXPECT_EQ(generated, golden)
      << "natsgw-gen output differs from " << golden_path
      << "; if the change is intended, refresh it with NATSGW_UPDATE_GOLDEN=1";
}

INSTANTIATE_TEST_SUITE_P(Schemas, GenGoldenTest,
                         ::testing::Values("inventory", "inventory_types"));

TEST(GenOutputTest, UnchangedOutputIsNotRewritten) {
  // Rewriting an identical header would make every user recompile.
  TempDir out;
  const std::string schema =
      absl::StrCat(NATSGW_GEN_TESTDATA, "/inventory.fbs");
  ASSERT_EQ(Gen({"-o", out.path(), schema}).exit_code, 0);
  const std::string header = out.File("inventory_natsgw.h");
  struct stat before {};
  ASSERT_EQ(stat(header.c_str(), &before), 0);
  sleep(1);  // mtime granularity; a rewrite would move it
  ASSERT_EQ(Gen({"-o", out.path(), schema}).exit_code, 0);
  struct stat after {};
  ASSERT_EQ(stat(header.c_str(), &after), 0);
  EXPECT_EQ(before.st_mtim.tv_sec, after.st_mtim.tv_sec);
  EXPECT_EQ(before.st_mtim.tv_nsec, after.st_mtim.tv_nsec);
}

TEST(GenOutputTest, SchemasOfTheWireContractGenerate) {
  // schemas/*.fbs are built by natsgw_generate too; here the binary is asked
  // directly so a failure names the schema.
  for (const char* stem : {"users", "email", "echo"}) {
    ProcessResult r =
        Gen({"--stdout", absl::StrCat(NATSGW_SCHEMAS_DIR, "/", stem, ".fbs")});
    EXPECT_EQ(r.exit_code, 0) << stem << ": " << r.output;
    EXPECT_THAT(r.output, HasSubstr("ServiceBase")) << stem;
  }
}

struct ErrorCase {
  const char* schema;   // in testdata/errors/
  int line;             // where the error must be reported
  const char* message;  // part of the message that names the rule
};

void PrintTo(const ErrorCase& c, std::ostream* os) { *os << c.schema; }

class GenErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(GenErrorTest, ReportsFileLineAndRule) {
  const ErrorCase& c = GetParam();
  TempDir out;
  ProcessResult r =
      Gen({"-o", out.path(),
           absl::StrCat(NATSGW_GEN_TESTDATA, "/errors/", c.schema)});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr(absl::StrCat(c.schema, ":", c.line, ":")));
  EXPECT_THAT(r.output, HasSubstr("error:"));
  EXPECT_THAT(r.output, HasSubstr(c.message));
  // Nothing half-written is left for the build to pick up.
  std::string stem(c.schema);
  stem.resize(stem.size() - 4);
  EXPECT_NE(access(out.File(stem + "_natsgw.h").c_str(), F_OK), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Schemas, GenErrorTest,
    ::testing::Values(
        ErrorCase{"syntax.fbs", 5, "expecting: ;"},
        ErrorCase{"no_identifier.fbs", 6, "declares no file_identifier"},
        ErrorCase{"reserved_name.fbs", 7, "method Start: the name is taken"},
        ErrorCase{"async_collision.fbs", 7,
                  "collides with the asynchronous form of method Get"},
        ErrorCase{"struct_payload.fbs", 7, "must be tables"},
        ErrorCase{"same_prefix.fbs", 9, "same subject prefix \"orders\""},
        ErrorCase{
            "unknown_type.fbs", 6,
            "type referenced but not defined (check namespace): Missing"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) {
      std::string name = info.param.schema;
      name.resize(name.size() - 4);
      return name;
    });

TEST(GenUsageTest, BadUsageIsExitCode2WithHelp) {
  ProcessResult none = Gen({});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.output, HasSubstr("usage: natsgw-gen"));
  ProcessResult unknown = Gen({"--frobnicate", "x.fbs"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.output, HasSubstr("unknown option --frobnicate"));
  ProcessResult help = Gen({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.output, HasSubstr("rpc_service"));
}

TEST(GenUsageTest, MissingSchemaFileIsReported) {
  TempDir out;
  ProcessResult r = Gen({"-o", out.path(), "no/such/schema.fbs"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("no/such/schema.fbs: error: cannot read"));
}

}  // namespace
}  // namespace natsgw
