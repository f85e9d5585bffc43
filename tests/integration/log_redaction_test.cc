// Credentials in server URLs never come out of natsgw: a real nats-server
// that requires a user and password (or a token), connections with the wrong
// and the right secret in the URL, and every place text leaves natsgw
// checked: the logger, the returned statuses, connected_url() and the
// metrics.
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/capturing_logger.h"
#include "harness/nats_server_fixture.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"
#include "natsgw/logger.h"

namespace natsgw {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr absl::string_view kUser = "alice";
// Distinctive, so that a leak cannot hide behind a coincidence.
constexpr absl::string_view kPassword = "Pw-7f3a9c-right-one";
constexpr absl::string_view kWrongPassword = "Pw-51d0e2-wrong-one";
constexpr absl::string_view kToken = "Tk-8e1b44-the-token";
constexpr absl::string_view kWrongToken = "Tk-c0ffee-not-it";

// Common checks of a fixture whose server requires `authorization`.
class AuthServerTest : public testing::NatsServerTest {
 protected:
  virtual std::string Authorization() const = 0;

  testing::NatsServerOptions ServerOptions() const override {
    testing::NatsServerOptions options;
    options.jetstream = false;
    options.extra_config =
        absl::StrCat("authorization {\n", Authorization(), "\n}\n");
    return options;
  }

  // `userinfo` + "@127.0.0.1:<port>", with the nats:// scheme or without.
  std::string Url(absl::string_view userinfo, bool scheme = true) {
    return absl::StrCat(scheme ? "nats://" : "", userinfo,
                        "@127.0.0.1:", server().port());
  }

  ConnectionOptions Options(std::string url) {
    ConnectionOptions options;
    options.servers = {std::move(url)};
    options.name = "log-redaction";
    options.logger = logger_;
    options.registry = registry_;
    options.connect_timeout = absl::Seconds(5);
    options.reconnect.wait = absl::Milliseconds(50);
    options.reconnect.jitter = absl::Milliseconds(10);
    return options;
  }

  absl::StatusOr<std::unique_ptr<Connection>> Connect(std::string url) {
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Create(Options(std::move(url)));
    statuses_.push_back(conn.status());
    return conn;
  }

  // `secret` is in no log line, no status kept in statuses_ and no metric.
  // `metrics_expected`: whether natsgw got far enough to record any.
  void ExpectNowhere(absl::string_view secret, bool metrics_expected = true) {
    for (const std::string& line : logger_->lines()) {
      EXPECT_THAT(line, Not(HasSubstr(secret))) << "in a log line";
    }
    for (const absl::Status& status : statuses_) {
      EXPECT_THAT(status.ToString(), Not(HasSubstr(secret)))
          << "in a returned status";
    }
    const std::string metrics =
        prometheus::TextSerializer().Serialize(registry_->Collect());
    if (metrics_expected) {
      EXPECT_THAT(metrics, Not(IsEmpty()));
    }
    EXPECT_THAT(metrics, Not(HasSubstr(secret))) << "in the metrics";
  }

  // Restarts the server and waits until natsgw logged the reconnection of
  // both lanes (the line that quotes the server URL).
  void RestartAndAwaitReconnect(Connection& conn) {
    const size_t before = logger_->Matching("connected to NATS at").size();
    ASSERT_TRUE(server().Restart().ok());
    ASSERT_TRUE(testing::Eventually([&] {
      return logger_->Matching("connected to NATS at").size() >= before + 2;
    })) << "no reconnection logged";
    statuses_.push_back(conn.Flush(absl::Seconds(5)));
    EXPECT_TRUE(statuses_.back().ok()) << statuses_.back();
  }

  std::shared_ptr<testing::CapturingLogger> logger_ =
      std::make_shared<testing::CapturingLogger>(kDebugSeverity);
  std::shared_ptr<prometheus::Registry> registry_ =
      std::make_shared<prometheus::Registry>();
  std::vector<absl::Status> statuses_;
};

class PasswordServerTest : public AuthServerTest {
 protected:
  std::string Authorization() const override {
    return absl::StrCat("  user: ", kUser, "\n  password: \"", kPassword, "\"");
  }
  std::string UserInfo(absl::string_view password) {
    return absl::StrCat(kUser, ":", password);
  }
};

TEST_F(PasswordServerTest, AWrongPasswordIsNotQuotedInTheError) {
  for (bool scheme : {true, false}) {
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connect(Url(UserInfo(kWrongPassword), scheme));
    ASSERT_FALSE(conn.ok()) << "the server accepted a wrong password";
    // The URL is still named, so the operator knows which server refused.
    EXPECT_THAT(
        conn.status().message(),
        HasSubstr(absl::StrCat("alice:[REDACTED]@127.0.0.1:", server().port())))
        << conn.status();
  }
  ExpectNowhere(kWrongPassword);
}

TEST_F(PasswordServerTest, TheRightPasswordIsNeverShown) {
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connect(Url(UserInfo(kPassword)));
  ASSERT_TRUE(conn.ok()) << conn.status();
  // nats.c reports the URL as configured, credentials included.
  const std::string masked =
      absl::StrCat("nats://alice:[REDACTED]@127.0.0.1:", server().port());
  EXPECT_EQ((*conn)->connected_url(), masked);

  RestartAndAwaitReconnect(**conn);
  for (const std::string& line : logger_->Matching("connected to NATS at")) {
    EXPECT_THAT(line, HasSubstr(masked));
  }
  EXPECT_THAT((*conn)->connected_url(), Not(HasSubstr(kPassword)));
  (*conn)->Close();
  ExpectNowhere(kPassword);
}

TEST_F(PasswordServerTest, AnInvalidUrlIsQuotedWithoutItsPassword) {
  // A space makes the URL invalid before anything is sent.
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connect(Url(absl::StrCat(UserInfo(kPassword), " x")));
  ASSERT_EQ(conn.status().code(), absl::StatusCode::kInvalidArgument)
      << conn.status();
  EXPECT_THAT(conn.status().message(), HasSubstr("alice:[REDACTED]@"));
  ExpectNowhere(kPassword, /*metrics_expected=*/false);
}

class TokenServerTest : public AuthServerTest {
 protected:
  std::string Authorization() const override {
    return absl::StrCat("  token: \"", kToken, "\"");
  }
};

TEST_F(TokenServerTest, TokensAreNeverShown) {
  absl::StatusOr<std::unique_ptr<Connection>> wrong = Connect(Url(kWrongToken));
  ASSERT_FALSE(wrong.ok()) << "the server accepted a wrong token";
  EXPECT_THAT(
      wrong.status().message(),
      HasSubstr(absl::StrCat("nats://[REDACTED]@127.0.0.1:", server().port())));

  absl::StatusOr<std::unique_ptr<Connection>> conn = Connect(Url(kToken));
  ASSERT_TRUE(conn.ok()) << conn.status();
  EXPECT_EQ((*conn)->connected_url(),
            absl::StrCat("nats://[REDACTED]@127.0.0.1:", server().port()));
  RestartAndAwaitReconnect(**conn);
  (*conn)->Close();
  ExpectNowhere(kToken);
  ExpectNowhere(kWrongToken);
}

}  // namespace
}  // namespace natsgw
