// harness/nats_keys.h: NATS NKeys, JWTs and .creds files made at test time,
// for authentication tests against a real nats-server. Nothing is committed:
// every key is fresh, in a temporary directory removed with its owner.
//
//   NatsKeysSpec spec;
//   spec.nkey_users = {"alice"};
//   JwtAccountSpec sys;  // JetStream in operator mode needs one
//   sys.name = "SYS";
//   sys.system = true;
//   JwtAccountSpec app;
//   app.name = "APP";
//   app.users.emplace_back().name = "svc";
//   spec.accounts = {sys, app};
//   absl::StatusOr<std::unique_ptr<NatsKeys>> keys = NatsKeys::Generate(spec);
//   ASSERT_TRUE(keys.ok()) << keys.status();
//
//   // NKey user: authorization { users: [ {nkey: "U..."} ] }
//   const NKeyUser& alice = (*keys)->nkey_user("alice");
//   alice.public_key, alice.seed_file
//
//   // Operator mode: the server config names the operator JWT and preloads
//   // the account JWTs (resolver: MEMORY).
//   server_options.extra_config = (*keys)->server_config();
//   (*keys)->account("APP").user("svc").creds_file
//
// The keys and JWTs come from tests/harness/nats_keys.mjs (run with Node.js;
// the NKeys from npm `nkeys.js` in tests/interop/node_modules): see that file
// for the JWT format. Node is $NATSGW_NODE if set, else `node` on $PATH.
// Generate fails with FAILED_PRECONDITION, saying what to install, when Node
// or the npm package is missing.
//
// Files are written with mode 0600 under $TMPDIR (default /tmp); the
// directory is removed by the destructor unless NATSGW_KEEP_TEST_DIRS=1.
//
// Thread-safety: a NatsKeys is immutable after Generate; it may be read from
// several threads at once. Generate itself may run on several threads.
#ifndef NATSGW_TESTS_HARNESS_NATS_KEYS_H_
#define NATSGW_TESTS_HARNESS_NATS_KEYS_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace natsgw::testing {

// Subject permissions of a user JWT (nats-io/jwt Permissions): empty lists
// add nothing, so a user with none may publish and subscribe to anything.
struct JwtPermissions {
  std::vector<std::string> publish_allow;
  std::vector<std::string> publish_deny;
  std::vector<std::string> subscribe_allow;
  std::vector<std::string> subscribe_deny;
};

// A user of an account in operator mode. Names are [A-Za-z0-9_-]{1,64}.
struct JwtUserSpec {
  std::string name;
  // The JWT's `exp`, relative to now, whole seconds; negative: already
  // expired. Unset: never expires.
  std::optional<absl::Duration> expires_in;
  JwtPermissions permissions;
};

struct JwtAccountSpec {
  std::string name;
  // JetStream limits (unlimited) in the account JWT; without them the
  // account cannot use JetStream.
  bool jetstream = false;
  // In the server's resolver_preload. False: an account the server does not
  // know, though it is signed by the trusted operator.
  bool preload = true;
  // The server's system account. nats-server needs one for JetStream in
  // operator mode.
  bool system = false;
  std::vector<JwtUserSpec> users;
};

struct NatsKeysSpec {
  // Plain NKey users (no JWT).
  std::vector<std::string> nkey_users;
  // Operator mode: an operator, signing these accounts. Empty: no operator
  // (server_config() is then empty).
  std::vector<JwtAccountSpec> accounts;
};

struct NKeyUser {
  std::string public_key;  // "U..."
  std::string seed_file;   // holds the seed and a newline
  std::string seed;        // "SU...": a secret
};

struct JwtUser {
  std::string public_key;  // "U..."
  std::string seed_file;
  std::string jwt_file;
  // The JWT and the seed in the layout nsc writes.
  std::string creds_file;
  std::string seed;  // "SU...": a secret
  std::string jwt;   // the user JWT: a bearer credential
  std::optional<absl::Time> expires;
};

struct JwtAccount {
  std::string public_key;  // "A..."
  std::string jwt_file;
  std::string jwt;
  bool preloaded = false;
  std::map<std::string, JwtUser> users;

  // The user named `name`; aborts (with a message) if there is none: a
  // mistake in the test.
  const JwtUser& user(const std::string& name) const;
};

class NatsKeys {
 public:
  // Runs nats_keys.mjs in a fresh temporary directory, bounded by `timeout`,
  // and reads back what it made. FAILED_PRECONDITION if Node.js or the npm
  // package is missing, INVALID_ARGUMENT if the generator rejects `spec`,
  // INTERNAL for anything else (the generator's output is quoted: it names
  // files and public keys, never a seed or a JWT).
  static absl::StatusOr<std::unique_ptr<NatsKeys>> Generate(
      const NatsKeysSpec& spec, absl::Duration timeout = absl::Seconds(60));

  NatsKeys(const NatsKeys&) = delete;
  NatsKeys& operator=(const NatsKeys&) = delete;
  // Removes dir() unless NATSGW_KEEP_TEST_DIRS=1.
  ~NatsKeys();

  const std::string& dir() const { return dir_; }
  // The NKey user / account named `name`; abort if there is none.
  const NKeyUser& nkey_user(const std::string& name) const;
  const JwtAccount& account(const std::string& name) const;
  // Empty without accounts in the spec.
  const std::string& operator_public_key() const { return operator_key_; }
  const std::string& operator_jwt() const { return operator_jwt_; }
  // nats-server configuration for operator mode, for
  // NatsServerOptions::extra_config: `operator` (the JWT's file),
  // `resolver: MEMORY`, `resolver_preload` with every preloaded account and
  // `system_account` if one was asked for. Empty without accounts.
  const std::string& server_config() const { return server_config_; }
  // `authorization { users: [ {nkey: ...} ] }` admitting the named NKey
  // users (all of them when `names` is empty).
  std::string NKeyAuthorization(
      const std::vector<std::string>& names = {}) const;
  // Every seed and every JWT made, for tests asserting that none leaks into
  // logs, errors or metrics.
  std::vector<std::string> Secrets() const;

 private:
  explicit NatsKeys(std::string dir) : dir_(std::move(dir)) {}

  const std::string dir_;
  std::map<std::string, NKeyUser> nkey_users_;
  std::map<std::string, JwtAccount> accounts_;
  std::string operator_key_;
  std::string operator_jwt_;
  std::string server_config_;
};

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_HARNESS_NATS_KEYS_H_
