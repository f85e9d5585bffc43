// Authentication against a real nats-server: user/password and token
// credentials connect, wrong or missing ones fail with UNAUTHENTICATED, and
// no secret appears in an error message.
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <signal.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/capturing_logger.h"
#include "harness/nats_server.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"

namespace natsgw {
namespace {

using ::natsgw::testing::NatsServer;
using ::natsgw::testing::NatsServerOptions;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPassword[] = "pw-7c1e5a-not-in-logs";
constexpr char kToken[] = "tok-93b2f4-not-in-logs";

std::unique_ptr<NatsServer> StartServer(const std::string& authorization) {
  NatsServerOptions options;
  options.extra_config = authorization;
  auto server = NatsServer::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// Credentials of one kind (designated initializers would leave fields out,
// which -Wextra flags).
NatsCredentials UserPassword(std::string user, std::string password) {
  NatsCredentials c;
  c.user = std::move(user);
  c.password = std::move(password);
  return c;
}
NatsCredentials Token(std::string token) {
  NatsCredentials c;
  c.token = std::move(token);
  return c;
}

// Every diagnostic natsgw writes in these tests, to prove no secret is in
// them (CredentialsTest's tests end with ExpectNoSecretLogged).
testing::CapturingLogger& Diagnostics() {
  static auto* logger = new std::shared_ptr<testing::CapturingLogger>(
      std::make_shared<testing::CapturingLogger>());
  return **logger;
}

void ExpectNoSecretLogged(const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets) {
    EXPECT_THAT(Diagnostics().Matching(secret), ::testing::IsEmpty())
        << "a secret reached the log";
  }
}

// Also no secret in what Prometheus would scrape.
void ExpectNoSecretInMetrics(const Connection& conn,
                             const std::vector<std::string>& secrets) {
  const std::string text =
      prometheus::TextSerializer().Serialize(conn.registry()->Collect());
  for (const std::string& secret : secrets) {
    EXPECT_THAT(text, Not(HasSubstr(secret)));
  }
}

ConnectionOptions Options(const NatsServer& server, NatsCredentials creds) {
  ConnectionOptions options;
  options.servers = {server.url()};
  options.credentials = std::move(creds);
  // Shared, not owned: the static logger outlives every connection.
  options.logger =
      std::shared_ptr<Logger>(std::shared_ptr<Logger>{}, &Diagnostics());
  options.connect_timeout = absl::Seconds(2);
  return options;
}

// A request/reply round trip over `conn`, proving it is really usable.
void ExpectRoundTrip(Connection& conn) {
  auto serving = conn.Serve(
      "auth.echo", "q", [](const Message& request) -> absl::StatusOr<Reply> {
        return Reply{request.data, {}};
      });
  ASSERT_TRUE(serving.ok()) << serving.status();
  auto reply = conn.Request("auth.echo", "ping", absl::Seconds(5));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data, "ping");
}

TEST(CredentialsTest, UserAndPasswordConnectAndWrongOnesAreUnauthenticated) {
  auto server = StartServer(
      absl::StrCat("authorization { users: [ {user: alice, password: \"",
                   kPassword, "\"} ] }\n"));
  ASSERT_NE(server, nullptr);

  auto conn =
      Connection::Create(Options(*server, UserPassword("alice", kPassword)));
  ASSERT_TRUE(conn.ok()) << conn.status();
  ExpectRoundTrip(**conn);

  auto wrong = Connection::Create(
      Options(*server, UserPassword("alice", "wrong-password")));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated)
      << wrong.status();
  EXPECT_THAT(std::string(wrong.status().message()),
              Not(HasSubstr("wrong-password")));

  auto none = Connection::Create(Options(*server, {}));
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnauthenticated)
      << none.status();
  ExpectNoSecretInMetrics(**conn, {kPassword, "wrong-password"});
  ExpectNoSecretLogged({kPassword, "wrong-password"});
}

// The server stops accepting the connection's password (rotated, then the
// configuration reloaded): the server drops the client, and every reconnect
// is refused. The connection must give up and say why, not hammer the
// server forever.
TEST(CredentialsTest, RevokedPasswordEndsTheConnectionWithoutAReconnectStorm) {
  auto server = StartServer(
      absl::StrCat("authorization { users: [ {user: alice, password: \"",
                   kPassword, "\"} ] }\n"));
  ASSERT_NE(server, nullptr);
  ConnectionOptions options =
      Options(*server, UserPassword("alice", kPassword));
  options.reconnect.wait = absl::Milliseconds(50);
  options.reconnect.jitter = absl::Milliseconds(10);
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();

  // Rotate the password in the server's configuration and reload it.
  const std::string path = absl::StrCat(server->dir(), "/nats-server.conf");
  std::string conf;
  {
    std::ifstream in(path);
    conf.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t at = conf.find(kPassword);
  ASSERT_NE(at, std::string::npos);
  conf.replace(at, strlen(kPassword), "rotated-password-91d2");
  {
    std::ofstream out(path, std::ios::trunc);
    out << conf;
  }
  ASSERT_EQ(kill(server->pid(), SIGHUP), 0);

  // nats.c closes a connection whose reconnect is refused a second time:
  // within a few attempts, not after retrying forever.
  ASSERT_TRUE(testing::Eventually(
      [&] { return (*conn)->state() == ConnectionState::kClosed; },
      absl::Seconds(10)))
      << static_cast<int>((*conn)->state());
  const absl::Status ready = (*conn)->Readiness();
  EXPECT_EQ(ready.code(), absl::StatusCode::kUnauthenticated) << ready;
  EXPECT_THAT(std::string(ready.message()),
              HasSubstr("the server refused its credentials"));
  EXPECT_THAT(std::string(ready.message()), Not(HasSubstr(kPassword)));
  // Closed means no more attempts: the server's log shows the refusals
  // stop (a storm would keep adding them at the 50 ms reconnect wait).
  auto refusals = [&] {
    std::ifstream in(server->log_path());
    const std::string log(std::istreambuf_iterator<char>(in), {});
    size_t n = 0;
    for (size_t at = log.find("authentication error"); at != std::string::npos;
         at = log.find("authentication error", at + 1)) {
      ++n;
    }
    return n;
  };
  // The refusals stop: the count settles (a storm, one attempt per 50 ms
  // reconnect wait, never would).
  size_t after_close = refusals();
  ASSERT_TRUE(testing::Eventually(
      [&] {
        absl::SleepFor(absl::Milliseconds(500));
        const size_t now = refusals();
        const bool settled = now == after_close;
        after_close = now;
        return settled;
      },
      absl::Seconds(10)));
  // Two connections (rpc and publish lanes), each refused on the reload and
  // on its one reconnect.
  EXPECT_GE(after_close, 2u);
  EXPECT_LE(after_close, 8u);
  EXPECT_THAT(Diagnostics().Matching("will not retry"),
              ::testing::Not(::testing::IsEmpty()));
  ExpectNoSecretLogged({kPassword, "rotated-password-91d2"});
}

TEST(CredentialsTest, TokenConnectsAndAWrongTokenIsUnauthenticated) {
  auto server =
      StartServer(absl::StrCat("authorization { token: \"", kToken, "\" }\n"));
  ASSERT_NE(server, nullptr);

  auto conn = Connection::Create(Options(*server, Token(kToken)));
  ASSERT_TRUE(conn.ok()) << conn.status();
  ExpectRoundTrip(**conn);

  auto wrong = Connection::Create(Options(*server, Token("tok-wrong")));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated)
      << wrong.status();
  EXPECT_THAT(std::string(wrong.status().message()),
              Not(HasSubstr("tok-wrong")));
  ExpectNoSecretInMetrics(**conn, {kToken, "tok-wrong"});
  ExpectNoSecretLogged({kToken, "tok-wrong"});
}

TEST(CredentialsTest, MixedOrIncompleteCredentialsAreRejectedBeforeConnecting) {
  ConnectionOptions options;
  // Nothing listens here: each case must fail on its rule, not on the
  // connection.
  options.servers = {"nats://127.0.0.1:1"};

  options.credentials = UserPassword("alice", "");
  absl::Status s = Connection::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("user and password must be given together"));

  options.credentials = UserPassword("alice", kPassword);
  options.credentials.token = kToken;
  s = Connection::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("set only one of"));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr(kPassword)));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr(kToken)));

  options.credentials = {};
  options.credentials.creds_file = "/nonexistent/natsgw/user.creds";
  s = Connection::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("creds_file: cannot read \"/nonexistent/natsgw/"
                        "user.creds\""));
}

}  // namespace
}  // namespace natsgw
