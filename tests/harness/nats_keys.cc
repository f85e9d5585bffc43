#include "harness/nats_keys.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "harness/subprocess.h"
#include "nlohmann/json.hpp"

#ifndef NATSGW_HARNESS_DIR
#error "NATSGW_HARNESS_DIR must be defined (tests/harness, absolute)"
#endif

namespace natsgw::testing {
namespace {

using ::nlohmann::json;

constexpr char kInstallHint[] =
    "./scripts/test installs it (scripts/lib/setup.sh, natsgw_install_npm); "
    "or run `apt-get install nodejs npm` and `npm ci --no-audit --no-fund` "
    "in tests/interop";

bool IsExecutable(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         access(path.c_str(), X_OK) == 0;
}

// $NATSGW_NODE if set, else the first `node` on $PATH.
absl::StatusOr<std::string> FindNode() {
  if (const char* node = std::getenv("NATSGW_NODE");
      node != nullptr && node[0] != '\0') {
    if (IsExecutable(node)) return std::string(node);
    return absl::FailedPreconditionError(
        absl::StrCat("$NATSGW_NODE is \"", node, "\", not an executable file"));
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "", ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/node");
    if (IsExecutable(candidate)) return candidate;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "Node.js is needed to make NATS keys, but node is not on $PATH (",
      path != nullptr ? path : "",
      ") and $NATSGW_NODE is not set: ", kInstallHint));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InternalError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A file holding one token (a seed or a JWT) and a newline.
absl::StatusOr<std::string> ReadToken(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return std::string(absl::StripAsciiWhitespace(*text));
}

json PermissionJson(const std::vector<std::string>& allow,
                    const std::vector<std::string>& deny) {
  json p = json::object();
  if (!allow.empty()) p["allow"] = allow;
  if (!deny.empty()) p["deny"] = deny;
  return p;
}

json SpecJson(const NatsKeysSpec& spec) {
  json out = json::object();
  if (!spec.nkey_users.empty()) out["nkey_users"] = spec.nkey_users;
  if (spec.accounts.empty()) return out;
  json accounts = json::array();
  for (const JwtAccountSpec& a : spec.accounts) {
    json users = json::array();
    for (const JwtUserSpec& u : a.users) {
      json user = {{"name", u.name}};
      if (u.expires_in.has_value()) {
        user["expires_in"] = absl::ToInt64Seconds(*u.expires_in);
      }
      const JwtPermissions& p = u.permissions;
      user["permissions"] = {
          {"pub", PermissionJson(p.publish_allow, p.publish_deny)},
          {"sub", PermissionJson(p.subscribe_allow, p.subscribe_deny)}};
      users.push_back(std::move(user));
    }
    accounts.push_back({{"name", a.name},
                        {"jetstream", a.jetstream},
                        {"preload", a.preload},
                        {"system", a.system},
                        {"users", std::move(users)}});
  }
  out["operator"] = {{"accounts", std::move(accounts)}};
  return out;
}

// A lookup of a name the spec did not ask for is a mistake in the test.
[[noreturn]] void NoSuch(absl::string_view what, absl::string_view name) {
  std::fprintf(stderr, "NatsKeys: no %.*s \"%.*s\" was generated\n",
               static_cast<int>(what.size()), what.data(),
               static_cast<int>(name.size()), name.data());
  std::abort();
}

bool KeepDirs() {
  const char* keep = std::getenv("NATSGW_KEEP_TEST_DIRS");
  return keep != nullptr && std::string(keep) == "1";
}

}  // namespace

const JwtUser& JwtAccount::user(const std::string& name) const {
  auto it = users.find(name);
  if (it == users.end()) NoSuch("JWT user", name);
  return it->second;
}

absl::StatusOr<std::unique_ptr<NatsKeys>> NatsKeys::Generate(
    const NatsKeysSpec& spec, absl::Duration timeout) {
  absl::StatusOr<std::string> node = FindNode();
  if (!node.ok()) return node.status();
  const std::string harness_dir = NATSGW_HARNESS_DIR;
  const std::string package = absl::StrCat(
      harness_dir, "/../interop/node_modules/nkeys.js/package.json");
  if (access(package.c_str(), R_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "npm package nkeys.js is missing (no ", package, "): ", kInstallHint));
  }

  const char* tmpdir = std::getenv("TMPDIR");
  std::string templ =
      absl::StrCat(tmpdir != nullptr && tmpdir[0] != '\0' ? tmpdir : "/tmp",
                   "/natsgw-keys-XXXXXX");
  if (mkdtemp(templ.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp ", templ, ": ", std::strerror(errno)));
  }
  // From here on the destructor removes the directory, whatever happens.
  std::unique_ptr<NatsKeys> keys(new NatsKeys(templ));

  absl::StatusOr<ProcessResult> run =
      RunProcess({*node, absl::StrCat(harness_dir, "/nats_keys.mjs"), "--out",
                  keys->dir_, "--spec", SpecJson(spec).dump()},
                 timeout);
  if (!run.ok()) return run.status();
  if (run->timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(
        "nats_keys.mjs did not finish within ", absl::FormatDuration(timeout),
        "; output:\n", run->output));
  }
  if (run->exit_code == 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("nats_keys.mjs rejected the spec: ", run->output));
  }
  if (run->exit_code != 0) {
    return absl::InternalError(absl::StrCat(
        "nats_keys.mjs exited with ", run->exit_code, ":\n", run->output));
  }
  // stdout and stderr share the pipe: the result is the last JSON line, so
  // that a runtime warning on stderr cannot break parsing.
  std::vector<absl::string_view> lines =
      absl::StrSplit(run->output, '\n', absl::SkipWhitespace());
  json out;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(*it), "{")) {
      out = json::parse(*it, nullptr, /*allow_exceptions=*/false);
      break;
    }
  }
  if (!out.is_object()) {
    return absl::InternalError(absl::StrCat(
        "nats_keys.mjs printed no JSON result; output:\n", run->output));
  }

  // Every path and key the spec asked for must be there; json::at throws
  // on anything missing, which is turned into a status.
  try {
    if (out.contains("nkey_users")) {
      for (const auto& [name, u] : out.at("nkey_users").items()) {
        NKeyUser user;
        user.public_key = u.at("public_key").get<std::string>();
        user.seed_file = u.at("seed_file").get<std::string>();
        absl::StatusOr<std::string> seed = ReadToken(user.seed_file);
        if (!seed.ok()) return seed.status();
        user.seed = *std::move(seed);
        keys->nkey_users_.emplace(name, std::move(user));
      }
    }
    if (out.contains("operator")) {
      const json& op = out.at("operator");
      keys->operator_key_ = op.at("public_key").get<std::string>();
      absl::StatusOr<std::string> jwt =
          ReadToken(op.at("jwt_file").get<std::string>());
      if (!jwt.ok()) return jwt.status();
      keys->operator_jwt_ = *std::move(jwt);
      keys->server_config_ = out.at("server_config").get<std::string>();
      for (const auto& [name, a] : out.at("accounts").items()) {
        JwtAccount account;
        account.public_key = a.at("public_key").get<std::string>();
        account.jwt_file = a.at("jwt_file").get<std::string>();
        account.preloaded = a.at("preloaded").get<bool>();
        absl::StatusOr<std::string> account_jwt = ReadToken(account.jwt_file);
        if (!account_jwt.ok()) return account_jwt.status();
        account.jwt = *std::move(account_jwt);
        for (const auto& [user_name, u] : a.at("users").items()) {
          JwtUser user;
          user.public_key = u.at("public_key").get<std::string>();
          user.seed_file = u.at("seed_file").get<std::string>();
          user.jwt_file = u.at("jwt_file").get<std::string>();
          user.creds_file = u.at("creds_file").get<std::string>();
          if (u.contains("expires")) {
            user.expires =
                absl::FromUnixSeconds(u.at("expires").get<int64_t>());
          }
          absl::StatusOr<std::string> seed = ReadToken(user.seed_file);
          if (!seed.ok()) return seed.status();
          user.seed = *std::move(seed);
          absl::StatusOr<std::string> user_jwt = ReadToken(user.jwt_file);
          if (!user_jwt.ok()) return user_jwt.status();
          user.jwt = *std::move(user_jwt);
          account.users.emplace(user_name, std::move(user));
        }
        keys->accounts_.emplace(name, std::move(account));
      }
    }
  } catch (const json::exception& e) {
    return absl::InternalError(
        absl::StrCat("unexpected result from nats_keys.mjs (", e.what(),
                     "); output:\n", run->output));
  }
  for (const std::string& name : spec.nkey_users) {
    if (!keys->nkey_users_.contains(name)) {
      return absl::InternalError(
          absl::StrCat("nats_keys.mjs made no NKey user \"", name, "\""));
    }
  }
  for (const JwtAccountSpec& a : spec.accounts) {
    auto it = keys->accounts_.find(a.name);
    if (it == keys->accounts_.end() ||
        it->second.users.size() != a.users.size()) {
      return absl::InternalError(absl::StrCat(
          "nats_keys.mjs did not make account \"", a.name, "\" as asked"));
    }
  }
  return keys;
}

NatsKeys::~NatsKeys() {
  if (KeepDirs()) return;
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

const NKeyUser& NatsKeys::nkey_user(const std::string& name) const {
  auto it = nkey_users_.find(name);
  if (it == nkey_users_.end()) NoSuch("NKey user", name);
  return it->second;
}

const JwtAccount& NatsKeys::account(const std::string& name) const {
  auto it = accounts_.find(name);
  if (it == accounts_.end()) NoSuch("account", name);
  return it->second;
}

std::string NatsKeys::NKeyAuthorization(
    const std::vector<std::string>& names) const {
  std::vector<std::string> entries;
  if (names.empty()) {
    for (const auto& [name, user] : nkey_users_) {
      entries.push_back(absl::StrCat("{nkey: \"", user.public_key, "\"}"));
    }
  } else {
    for (const std::string& name : names) {
      entries.push_back(
          absl::StrCat("{nkey: \"", nkey_user(name).public_key, "\"}"));
    }
  }
  return absl::StrCat("authorization {\n  users: [\n    ",
                      absl::StrJoin(entries, "\n    "), "\n  ]\n}\n");
}

std::vector<std::string> NatsKeys::Secrets() const {
  std::vector<std::string> secrets;
  for (const auto& [name, user] : nkey_users_) secrets.push_back(user.seed);
  if (!operator_jwt_.empty()) secrets.push_back(operator_jwt_);
  for (const auto& [name, account] : accounts_) {
    secrets.push_back(account.jwt);
    for (const auto& [user_name, user] : account.users) {
      secrets.push_back(user.seed);
      secrets.push_back(user.jwt);
    }
  }
  return secrets;
}

}  // namespace natsgw::testing
