// NKey and JWT (creds file) authentication against a real nats-server, with
// keys, JWTs and .creds files made at test time (harness/nats_keys.h):
//
//   - an NKey user (`authorization { users: [{nkey: U...}] }`) connects with
//     its public key and seed file and serves a request; another user's seed
//     is UNAUTHENTICATED;
//   - in operator mode (`operator`, `resolver: MEMORY`, `resolver_preload`)
//     a user's creds file connects and serves a request; an expired user
//     JWT, a user of an account the server does not know and a creds file
//     whose seed does not belong to its JWT are UNAUTHENTICATED; a JWT that
//     expires while connected ends the connection without a reconnect storm;
//     the subject permissions of a user JWT apply;
//   - every one of hundreds of connections in a row succeeds, NKey and creds
//     file alike (each signs a fresh server nonce);
//   - no seed and no JWT ever appears in a log line, a returned status or a
//     metric.
//
// Node.js and tests/interop/node_modules (npm nkeys.js) must be installed
// (scripts/lib/setup.sh does it); without them the tests fail, saying so.
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/capturing_logger.h"
#include "harness/nats_keys.h"
#include "harness/nats_server.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/logger.h"

namespace natsgw {
namespace {

using ::natsgw::testing::JwtAccountSpec;
using ::natsgw::testing::JwtUser;
using ::natsgw::testing::JwtUserSpec;
using ::natsgw::testing::NatsKeys;
using ::natsgw::testing::NatsKeysSpec;
using ::natsgw::testing::NatsServer;
using ::natsgw::testing::NatsServerOptions;

// Connections in a row for the tests that every attempt succeeds: each has
// two NATS connections, so 600 of them fail at least once with a 1-in-256
// per-attempt failure with probability 1 - (255/256)^1200 > 99%.
constexpr int kRepeatedConnects = 600;

JwtUserSpec User(std::string name) {
  JwtUserSpec user;
  user.name = std::move(name);
  return user;
}

JwtAccountSpec Account(std::string name, std::vector<JwtUserSpec> users) {
  JwtAccountSpec account;
  account.name = std::move(name);
  account.users = std::move(users);
  return account;
}

// JetStream in operator mode needs a system account.
JwtAccountSpec SystemAccount() {
  JwtAccountSpec sys = Account("SYS", {});
  sys.system = true;
  return sys;
}

NatsCredentials NKey(const testing::NKeyUser& user) {
  NatsCredentials c;
  c.nkey = user.public_key;
  c.nkey_seed_file = user.seed_file;
  return c;
}

NatsCredentials Creds(const std::string& creds_file) {
  NatsCredentials c;
  c.creds_file = creds_file;
  return c;
}

class NKeyJwtTest : public ::testing::Test {
 protected:
  // Log lines shown when a test fails.
  static constexpr size_t kLogLines = 60;

  void TearDown() override {
    if (HasFailure()) {
      const std::vector<std::string> lines = logger_->lines();
      const size_t from =
          lines.size() > kLogLines ? lines.size() - kLogLines : 0;
      for (size_t i = from; i < lines.size(); ++i) {
        std::cerr << "natsgw log: " << lines[i] << "\n";
      }
      if (server_ != nullptr) {
        std::cerr << "---- nats-server log tail ----\n"
                  << server_->LogTail(40) << "\n---- end ----" << std::endl;
      }
    }
    server_.reset();
    keys_.reset();
  }

  // Makes the keys; the test stops (fatal failure) if that is impossible,
  // e.g. without Node.js: the message says what to install.
  void MakeKeys(const NatsKeysSpec& spec) {
    absl::StatusOr<std::unique_ptr<NatsKeys>> keys = NatsKeys::Generate(spec);
    ASSERT_TRUE(keys.ok()) << keys.status();
    keys_ = *std::move(keys);
  }

  void StartServer(std::string config, bool jetstream = false) {
    NatsServerOptions options;
    options.jetstream = jetstream;
    options.extra_config = std::move(config);
    absl::StatusOr<std::unique_ptr<NatsServer>> server =
        NatsServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  ConnectionOptions Options(NatsCredentials credentials) {
    ConnectionOptions options;
    options.servers = {server_->url()};
    options.name = "nkey-jwt";
    options.credentials = std::move(credentials);
    options.logger = logger_;
    options.registry = registry_;
    options.connect_timeout = absl::Seconds(2);
    options.reconnect.wait = absl::Milliseconds(50);
    options.reconnect.jitter = absl::Milliseconds(10);
    return options;
  }

  // Connects; the outcome's status is kept for ExpectNoSecrets.
  absl::StatusOr<std::unique_ptr<Connection>> Connect(
      NatsCredentials credentials) {
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Create(Options(std::move(credentials)));
    statuses_.push_back(conn.status());
    return conn;
  }

  // Connecting with `credentials` fails with UNAUTHENTICATED, promptly
  // (one refusal, no retries); returns the status.
  absl::Status ExpectUnauthenticated(NatsCredentials credentials) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connect(std::move(credentials));
    EXPECT_FALSE(conn.ok()) << "the server accepted the credentials";
    if (conn.ok()) return absl::OkStatus();
    EXPECT_EQ(conn.status().code(), absl::StatusCode::kUnauthenticated)
        << conn.status();
    // Refused, not hung (a generous bound; no tight timing here).
    EXPECT_LT(absl::Now() - start, absl::Seconds(30)) << conn.status();
    return conn.status();
  }

  // Serves an echo on `subject` over `conn` until the returned subscription
  // ends.
  std::unique_ptr<Subscription> ServeEcho(Connection& conn,
                                          const std::string& subject) {
    absl::StatusOr<std::unique_ptr<Subscription>> serving = conn.Serve(
        subject, "q", [](const Message& request) -> absl::StatusOr<Reply> {
          return Reply{absl::StrCat("echo:", request.data), {}};
        });
    statuses_.push_back(serving.status());
    EXPECT_TRUE(serving.ok()) << serving.status();
    return serving.ok() ? *std::move(serving) : nullptr;
  }

  // Connects and closes `times` times in a row with `credentials`; every
  // attempt must succeed. Signing the server's nonce is part of each, and a
  // new nonce comes with each: this catches a signature that fails for some
  // nonces only. Bounded by `budget`.
  void ExpectEveryConnectSucceeds(const NatsCredentials& credentials, int times,
                                  absl::Duration budget) {
    const absl::Time deadline = absl::Now() + budget;
    int done = 0;
    std::vector<absl::Status> failures;
    for (; done < times && absl::Now() < deadline; ++done) {
      absl::StatusOr<std::unique_ptr<Connection>> conn =
          Connection::Create(Options(credentials));
      if (!conn.ok()) {
        statuses_.push_back(conn.status());
        failures.push_back(conn.status());
        continue;
      }
      (*conn)->Close();
    }
    EXPECT_EQ(done, times) << "ran out of time after " << done << " connects";
    EXPECT_TRUE(failures.empty())
        << failures.size() << " of " << done
        << " connects failed; the first: " << failures.front();
  }

  // A request over `conn` to the echo on `subject` is answered.
  void ExpectEcho(Connection& conn, const std::string& subject) {
    absl::StatusOr<Message> reply =
        conn.Request(subject, "ping", absl::Seconds(5));
    statuses_.push_back(reply.status());
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->data, "echo:ping");
  }

  // A request/reply round trip over `conn` alone, proving it is usable.
  void ExpectRoundTrip(Connection& conn, const std::string& subject) {
    std::unique_ptr<Subscription> serving = ServeEcho(conn, subject);
    ASSERT_NE(serving, nullptr);
    ExpectEcho(conn, subject);
  }

  // No seed and no JWT made for this test is in a log line, a status kept
  // in statuses_ or the metrics.
  void ExpectNoSecrets() {
    ASSERT_NE(keys_, nullptr);
    const std::vector<std::string> secrets = keys_->Secrets();
    ASSERT_FALSE(secrets.empty());
    const std::string metrics =
        prometheus::TextSerializer().Serialize(registry_->Collect());
    for (const std::string& secret : secrets) {
      // Seeds start with "S", JWTs with the encoded header: say which leaked
      // without printing it.
      const std::string kind = absl::StartsWith(secret, "S") ? "seed" : "JWT";
      for (const std::string& line : logger_->lines()) {
        EXPECT_FALSE(absl::StrContains(line, secret))
            << "a " << kind << " in a log line";
      }
      for (const absl::Status& status : statuses_) {
        EXPECT_FALSE(absl::StrContains(status.ToString(), secret))
            << "a " << kind << " in a returned status";
      }
      EXPECT_FALSE(absl::StrContains(metrics, secret))
          << "a " << kind << " in the metrics";
    }
  }

  std::shared_ptr<testing::CapturingLogger> logger_ =
      std::make_shared<testing::CapturingLogger>(kDebugSeverity);
  std::shared_ptr<prometheus::Registry> registry_ =
      std::make_shared<prometheus::Registry>();
  std::vector<absl::Status> statuses_;
  std::unique_ptr<NatsKeys> keys_;
  std::unique_ptr<NatsServer> server_;
};

TEST_F(NKeyJwtTest, NKeyUserConnectsAndServesRequests) {
  NatsKeysSpec spec;
  spec.nkey_users = {"alice"};
  ASSERT_NO_FATAL_FAILURE(MakeKeys(spec));
  ASSERT_NO_FATAL_FAILURE(StartServer(keys_->NKeyAuthorization()));

  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connect(NKey(keys_->nkey_user("alice")));
  ASSERT_TRUE(conn.ok()) << conn.status();
  EXPECT_EQ((*conn)->state(), ConnectionState::kConnected);
  ExpectRoundTrip(**conn, "nkey.echo");
  (*conn)->Close();
  ExpectNoSecrets();
}

TEST_F(NKeyJwtTest, AnotherUsersSeedIsUnauthenticated) {
  NatsKeysSpec spec;
  spec.nkey_users = {"alice", "mallory"};
  ASSERT_NO_FATAL_FAILURE(MakeKeys(spec));
  // Only alice is a user of this server.
  ASSERT_NO_FATAL_FAILURE(StartServer(keys_->NKeyAuthorization({"alice"})));
  const testing::NKeyUser& alice = keys_->nkey_user("alice");
  const testing::NKeyUser& mallory = keys_->nkey_user("mallory");

  // Claims to be alice, signs the server's nonce with mallory's seed.
  NatsCredentials impostor = NKey(alice);
  impostor.nkey_seed_file = mallory.seed_file;
  absl::Status s = ExpectUnauthenticated(impostor);
  std::cout << "alice's public key with mallory's seed: " << s << std::endl;

  // Mallory as herself: a valid key pair the server does not know.
  s = ExpectUnauthenticated(NKey(mallory));
  std::cout << "an unknown NKey user: " << s << std::endl;

  // Alice still gets in.
  absl::StatusOr<std::unique_ptr<Connection>> conn = Connect(NKey(alice));
  ASSERT_TRUE(conn.ok()) << conn.status();
  (*conn)->Close();
  ExpectNoSecrets();
}

// Every connection attempt signs a fresh server nonce; a signature that is
// lost for some nonces (nats.c 3.4.1 sends none when its first byte is 0,
// 1 attempt in 256) must not fail Connection::Create.
TEST_F(NKeyJwtTest, AnNKeyUserConnectsEveryTime) {
  NatsKeysSpec spec;
  spec.nkey_users = {"alice"};
  ASSERT_NO_FATAL_FAILURE(MakeKeys(spec));
  ASSERT_NO_FATAL_FAILURE(StartServer(keys_->NKeyAuthorization()));
  ExpectEveryConnectSucceeds(NKey(keys_->nkey_user("alice")), kRepeatedConnects,
                             absl::Seconds(60));
  ExpectNoSecrets();
}

class OperatorModeTest : public NKeyJwtTest {
 protected:
  // An operator with a system account, account APP (JetStream enabled) with
  // `users`, and account GHOST with user "x", signed by the same operator
  // but not preloaded: the server does not know it.
  void SetUpOperator(std::vector<JwtUserSpec> users) {
    NatsKeysSpec spec;
    JwtAccountSpec app = Account("APP", std::move(users));
    app.jetstream = true;
    JwtAccountSpec ghost = Account("GHOST", {User("x")});
    ghost.preload = false;
    spec.accounts = {SystemAccount(), std::move(app), std::move(ghost)};
    ASSERT_NO_FATAL_FAILURE(MakeKeys(spec));
    ASSERT_NO_FATAL_FAILURE(
        StartServer(keys_->server_config(), /*jetstream=*/true));
  }

  const JwtUser& AppUser(const std::string& name) {
    return keys_->account("APP").user(name);
  }
};

TEST_F(OperatorModeTest, CredsFileConnectsAndServesRequests) {
  ASSERT_NO_FATAL_FAILURE(SetUpOperator({User("svc"), User("client")}));

  absl::StatusOr<std::unique_ptr<Connection>> server_side =
      Connect(Creds(AppUser("svc").creds_file));
  ASSERT_TRUE(server_side.ok()) << server_side.status();
  std::unique_ptr<Subscription> serving = ServeEcho(**server_side, "jwt.echo");
  ASSERT_NE(serving, nullptr);
  ExpectEcho(**server_side, "jwt.echo");

  // Another user of the same account reaches the service.
  absl::StatusOr<std::unique_ptr<Connection>> client =
      Connect(Creds(AppUser("client").creds_file));
  ASSERT_TRUE(client.ok()) << client.status();
  ExpectEcho(**client, "jwt.echo");

  (*client)->Close();
  (*server_side)->Close();
  ExpectNoSecrets();
}

TEST_F(OperatorModeTest, ACredsFileConnectsEveryTime) {
  ASSERT_NO_FATAL_FAILURE(SetUpOperator({User("svc")}));
  ExpectEveryConnectSucceeds(Creds(AppUser("svc").creds_file),
                             kRepeatedConnects, absl::Seconds(60));
  ExpectNoSecrets();
}

TEST_F(OperatorModeTest, AnExpiredUserJwtIsUnauthenticated) {
  JwtUserSpec expired = User("expired");
  expired.expires_in = absl::Hours(-1);
  ASSERT_NO_FATAL_FAILURE(SetUpOperator({expired}));

  absl::Status s = ExpectUnauthenticated(Creds(AppUser("expired").creds_file));
  // The server says only "Authorization Violation"; natsgw adds why.
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("expired at"))
      << s;
  ExpectNoSecrets();
}

TEST_F(OperatorModeTest, AUserOfAnUnknownAccountIsUnauthenticated) {
  ASSERT_NO_FATAL_FAILURE(SetUpOperator({User("svc")}));

  absl::Status s = ExpectUnauthenticated(
      Creds(keys_->account("GHOST").user("x").creds_file));
  std::cout << "unknown account: " << s << std::endl;
  ExpectNoSecrets();
}

TEST_F(OperatorModeTest, ACredsFileWhoseSeedIsNotTheJwtsIsUnauthenticated) {
  ASSERT_NO_FATAL_FAILURE(SetUpOperator({User("svc"), User("other")}));

  // svc's JWT with other's seed: the nonce signature does not match the
  // JWT's subject.
  const std::string mixed = absl::StrCat(keys_->dir(), "/mixed.creds");
  {
    std::ofstream out(mixed);
    out << "-----BEGIN NATS USER JWT-----\n"
        << AppUser("svc").jwt << "\n------END NATS USER JWT------\n\n"
        << "-----BEGIN USER NKEY SEED-----\n"
        << AppUser("other").seed << "\n------END USER NKEY SEED------\n";
    ASSERT_TRUE(out.good());
  }
  absl::Status s = ExpectUnauthenticated(Creds(mixed));
  std::cout << "seed not matching the JWT: " << s << std::endl;
  ExpectNoSecrets();
}

TEST_F(OperatorModeTest, UserJwtPermissionsApply) {
  JwtUserSpec limited = User("limited");
  limited.permissions.publish_deny = {"secret.>"};
  ASSERT_NO_FATAL_FAILURE(SetUpOperator({User("svc"), limited}));

  absl::StatusOr<std::unique_ptr<Connection>> svc =
      Connect(Creds(AppUser("svc").creds_file));
  ASSERT_TRUE(svc.ok()) << svc.status();
  // Served, so that only the permission can stop the request.
  std::unique_ptr<Subscription> serving = ServeEcho(**svc, "secret.op");
  ASSERT_NE(serving, nullptr);
  ASSERT_TRUE((*svc)->Flush(absl::Seconds(5)).ok());

  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connect(Creds(AppUser("limited").creds_file));
  ASSERT_TRUE(conn.ok()) << conn.status();
  const absl::Time start = absl::Now();
  absl::StatusOr<Message> denied =
      (*conn)->Request("secret.op", "x", absl::Seconds(60));
  statuses_.push_back(denied.status());
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied)
      << denied.status();
  // Promptly, not at the deadline.
  // Not the 60 s deadline (a generous bound; no tight timing here).
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  // Everything else is allowed.
  ExpectRoundTrip(**conn, "open.echo");
  (*conn)->Close();
  (*svc)->Close();
  ExpectNoSecrets();
}

TEST_F(OperatorModeTest, AJwtExpiringWhileConnectedEndsTheConnection) {
  // Long enough to connect on a loaded machine; short for the test.
  constexpr absl::Duration kLifetime = absl::Seconds(5);
  JwtUserSpec brief = User("brief");
  brief.expires_in = kLifetime;
  ASSERT_NO_FATAL_FAILURE(SetUpOperator({brief}));
  const JwtUser& user = AppUser("brief");
  ASSERT_TRUE(user.expires.has_value());

  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connect(Creds(user.creds_file));
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_LT(absl::Now(), *user.expires) << "expired before the test could run";
  ExpectRoundTrip(**conn, "brief.echo");
  const size_t connected_before = logger_->Matching("connected to NATS").size();

  // At `exp` the server ends the session with "User Authentication Expired".
  // Its check has whole-second resolution, so during the second of `exp` it
  // still admits the JWT on reconnect and then expires it at once; after
  // that it refuses it, and natsgw stops after the second refusal.
  ASSERT_TRUE(testing::Eventually(
      [&] { return (*conn)->state() == ConnectionState::kClosed; },
      (*user.expires - absl::Now()) + absl::Seconds(10)))
      << "state " << ConnectionStateName((*conn)->state());
  // No reconnect storm: at most what the server's expiry second allows at
  // the reconnect pace, per connection (natsgw keeps two).
  const ConnectionOptions& options = (*conn)->options();
  const size_t reconnects =
      logger_->Matching("connected to NATS").size() - connected_before;
  const size_t pace =
      static_cast<size_t>(absl::Seconds(1) / options.reconnect.wait + 2);
  EXPECT_LE(reconnects, 2 * pace);
  std::cout << reconnects << " reconnections after exp (at most " << 2 * pace
            << ")" << std::endl;
  // The operator learns why from the log.
  EXPECT_FALSE(logger_->Matching("User Authentication Expired").empty());

  absl::Status readiness = (*conn)->Readiness();
  statuses_.push_back(readiness);
  EXPECT_EQ(readiness.code(), absl::StatusCode::kUnauthenticated) << readiness;
  std::cout << "readiness after expiry: " << readiness << std::endl;
  const absl::Time start = absl::Now();
  absl::StatusOr<Message> after =
      (*conn)->Request("brief.echo", "late", absl::Seconds(60));
  statuses_.push_back(after.status());
  EXPECT_FALSE(after.ok());
  EXPECT_NE(after.status().code(), absl::StatusCode::kDeadlineExceeded)
      << after.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  std::cout << "request after expiry: " << after.status() << std::endl;
  (*conn)->Close();
  ExpectNoSecrets();
}

}  // namespace
}  // namespace natsgw
