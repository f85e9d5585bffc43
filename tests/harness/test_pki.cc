#include "harness/test_pki.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "harness/subprocess.h"

namespace natsgw::testing {
namespace {

// One openssl command; each takes milliseconds, the bound is for a machine
// under heavy load.
constexpr absl::Duration kOpensslTimeout = absl::Seconds(30);
// Long enough for any test run, short enough to be useless afterwards.
constexpr char kValidDays[] = "2";

std::string TempRoot() {
  const char* tmp = getenv("TMPDIR");
  return tmp != nullptr && *tmp != '\0' ? std::string(tmp) : "/tmp";
}

bool KeepTestDirs() {
  const char* keep = getenv("NATSGW_KEEP_TEST_DIRS");
  return keep != nullptr && std::string(keep) == "1";
}

// `openssl` on $PATH, else Debian's location. RunProcess needs a full path.
absl::StatusOr<std::string> FindOpenssl() {
  const char* path = getenv("PATH");
  std::vector<std::string> dirs;
  if (path != nullptr) dirs = absl::StrSplit(path, ':', absl::SkipEmpty());
  dirs.push_back("/usr/bin");
  for (const std::string& dir : dirs) {
    const std::string candidate = dir + "/openssl";
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return absl::FailedPreconditionError(
      "the openssl command is not installed (Debian package openssl); TLS "
      "tests generate their certificates with it");
}

absl::Status WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::trunc);
  out << content;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// Runs openssl in `dir` terms (all paths absolute) and checks it succeeded.
absl::Status Run(const std::string& openssl, std::vector<std::string> args) {
  args.insert(args.begin(), openssl);
  absl::StatusOr<ProcessResult> r = RunProcess(args, kOpensslTimeout);
  if (!r.ok()) return r.status();
  if (r->timed_out || r->exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("`", absl::StrJoin(args, " "), "` ",
                     r->timed_out ? "timed out" : "failed", " (exit code ",
                     r->exit_code, "):\n", r->output));
  }
  return absl::OkStatus();
}

// A self-signed CA certificate and its key.
absl::Status MakeCa(const std::string& openssl, const std::string& dir,
                    const std::string& name, const std::string& subject) {
  return Run(openssl, {"req",
                       "-x509",
                       "-new",
                       "-newkey",
                       "ec",
                       "-pkeyopt",
                       "ec_paramgen_curve:P-256",
                       "-nodes",
                       "-keyout",
                       absl::StrCat(dir, "/", name, "-key.pem"),
                       "-out",
                       absl::StrCat(dir, "/", name, ".pem"),
                       "-days",
                       kValidDays,
                       "-subj",
                       subject,
                       "-addext",
                       "basicConstraints=critical,CA:TRUE",
                       "-addext",
                       "keyUsage=critical,keyCertSign,cRLSign"});
}

// A key and a certificate for `subject`, signed by CA `ca` with the X.509v3
// `extensions` (one per line, openssl's -extfile syntax).
absl::Status MakeLeaf(const std::string& openssl, const std::string& dir,
                      const std::string& name, const std::string& subject,
                      const std::string& ca, int serial,
                      const std::string& extensions) {
  const std::string csr = absl::StrCat(dir, "/", name, ".csr");
  const std::string ext = absl::StrCat(dir, "/", name, ".ext");
  if (absl::Status s =
          Run(openssl, {"req", "-new", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                        absl::StrCat(dir, "/", name, "-key.pem"), "-out", csr,
                        "-subj", subject});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFile(ext, extensions); !s.ok()) return s;
  // An explicit serial: no serial file is left next to the CA.
  return Run(openssl, {"x509", "-req", "-in", csr, "-CA",
                       absl::StrCat(dir, "/", ca, ".pem"), "-CAkey",
                       absl::StrCat(dir, "/", ca, "-key.pem"), "-set_serial",
                       absl::StrCat(serial), "-days", kValidDays, "-extfile",
                       ext, "-out", absl::StrCat(dir, "/", name, ".pem")});
}

std::string Quote(const std::string& s) { return absl::StrCat("\"", s, "\""); }

}  // namespace

absl::StatusOr<std::unique_ptr<TestPki>> TestPki::Create() {
  absl::StatusOr<std::string> openssl = FindOpenssl();
  if (!openssl.ok()) return openssl.status();
  std::string dir = absl::StrCat(TempRoot(), "/natsgw-pki-XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp(", dir, ") failed: ", std::strerror(errno)));
  }
  // Owns (and on failure removes) the directory from here on.
  std::unique_ptr<TestPki> pki(new TestPki(dir, KeepTestDirs()));

  constexpr char kLeaf[] =
      "basicConstraints=critical,CA:FALSE\n"
      "keyUsage=critical,digitalSignature\n";
  absl::Status s =
      MakeCa(*openssl, dir, "ca", "/O=natsgw-test/CN=natsgw test CA");
  if (s.ok()) {
    s = MakeCa(*openssl, dir, "other-ca",
               "/O=natsgw-test/CN=natsgw unrelated CA");
  }
  if (s.ok()) {
    s = MakeLeaf(*openssl, dir, "server", "/O=natsgw-test/CN=localhost", "ca",
                 2,
                 absl::StrCat(kLeaf,
                              "extendedKeyUsage=serverAuth\n"
                              "subjectAltName=IP:127.0.0.1,DNS:localhost\n"));
  }
  if (s.ok()) {
    s = MakeLeaf(*openssl, dir, "client",
                 absl::StrCat("/O=natsgw-test/CN=", kClientCommonName), "ca", 3,
                 absl::StrCat(kLeaf, "extendedKeyUsage=clientAuth\n",
                              "subjectAltName=email:", kClientEmail, "\n"));
  }
  if (s.ok()) {
    s = MakeLeaf(*openssl, dir, "intruder", "/O=natsgw-test/CN=natsgw-intruder",
                 "other-ca", 2,
                 absl::StrCat(kLeaf, "extendedKeyUsage=clientAuth\n"));
  }
  if (!s.ok()) return s;
  return pki;
}

TestPki::~TestPki() {
  if (keep_dir_) {
    fprintf(stderr, "natsgw test harness: kept PKI directory %s\n",
            dir_.c_str());
    return;
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string TestPki::ServerTlsConfig(Verify verify) const {
  std::string conf =
      absl::StrCat("tls {\n  cert_file: ", Quote(server_cert_file()),
                   "\n  key_file: ", Quote(server_key_file()),
                   // Handshakes of parallel tests on a loaded machine can
                   // exceed the default 2 s.
                   "\n  timeout: 10\n");
  switch (verify) {
    case Verify::kNone:
      break;
    case Verify::kVerify:
      absl::StrAppend(&conf, "  ca_file: ", Quote(ca_file()),
                      "\n  verify: true\n");
      break;
    case Verify::kVerifyAndMap:
      absl::StrAppend(&conf, "  ca_file: ", Quote(ca_file()),
                      "\n  verify_and_map: true\n");
      break;
  }
  absl::StrAppend(&conf, "}\n");
  return conf;
}

}  // namespace natsgw::testing
