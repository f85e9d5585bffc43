// Authentication against a real nats-server: user/password and token
// credentials connect, wrong or missing ones fail with UNAUTHENTICATED, and
// no secret appears in an error message.
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/nats_server.h"
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

ConnectionOptions Options(const NatsServer& server, NatsCredentials creds) {
  ConnectionOptions options;
  options.servers = {server.url()};
  options.credentials = std::move(creds);
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
