// ConnectFailure and TlsRequested without a server. The nats.c texts are the
// ones nats.c 3.4.1 gives against nats-server 2.9.10 (tests/integration/
// tls_test.cc produces them for real); the TLS alerts are what OpenSSL
// reports when a server refuses the client certificate during a TLS 1.2
// handshake, which the test server (TLS 1.3) does not produce.
#include "nats_auth.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace natsgw::internal {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kServers[] = "nats://127.0.0.1:4222";

TlsOptions WithCa() {
  TlsOptions tls;
  tls.ca_file = "/etc/natsgw/ca.pem";
  return tls;
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST(ConnectFailureTest, UntrustedServerCertificateNamesTheCaFile) {
  const absl::Status s = ConnectFailure(
      NATS_SSL_ERROR, WithCa(), kServers,
      "(conn.c:733): SSL handshake error: 20:unable to get local issuer "
      "certificate:depth=0:cert=/CN=localhost:issuer=/CN=test CA");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Message(s),
              StartsWith("TLS verification failed connecting to NATS at "
                         "nats://127.0.0.1:4222: the server's certificate is "
                         "not signed by a CA in tls.ca_file "
                         "\"/etc/natsgw/ca.pem\" (SSL handshake error: 20:"));
  // nats.c's source location says nothing to a user.
  EXPECT_THAT(Message(s), Not(HasSubstr("conn.c")));
  EXPECT_THAT(Message(s), Not(HasSubstr("no tls option")));
}

TEST(ConnectFailureTest,
     UntrustedServerWithoutTlsOptionsSaysTlsCameFromTheServer) {
  const absl::Status s = ConnectFailure(
      NATS_SSL_ERROR, TlsOptions{}, kServers,
      "(conn.c:733): SSL handshake error: 19:self-signed certificate in "
      "certificate chain");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Message(s), HasSubstr("not signed by a CA in the system's CA "
                                    "store; set tls.ca_file"));
  EXPECT_THAT(Message(s),
              HasSubstr("no tls option was set, but the server requires TLS"));
  // A tls:// URL counts as asking for TLS.
  EXPECT_THAT(Message(ConnectFailure(NATS_SSL_ERROR, TlsOptions{},
                                     "TLS://127.0.0.1:4222",
                                     "SSL handshake error: 19:self-signed "
                                     "certificate in certificate chain")),
              Not(HasSubstr("no tls option")));
}

TEST(ConnectFailureTest, HostNameMismatchNamesTheExpectedHostName) {
  TlsOptions tls = WithCa();
  const std::string detail =
      "(conn.c:733): SSL handshake error: 62:hostname "
      "mismatch:expected=nats.example:cert=/CN=localhost";
  EXPECT_THAT(Message(ConnectFailure(NATS_SSL_ERROR, tls, kServers, detail)),
              HasSubstr("does not carry the host of the server URL; set "
                        "tls.expected_hostname"));
  tls.expected_hostname = "nats.example";
  const absl::Status s = ConnectFailure(NATS_SSL_ERROR, tls, kServers, detail);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Message(s), HasSubstr("TLS verification failed"));
  EXPECT_THAT(Message(s), HasSubstr("does not carry tls.expected_hostname "
                                    "\"nats.example\""));
}

TEST(ConnectFailureTest, ExpiredServerCertificate) {
  const absl::Status s =
      ConnectFailure(NATS_SSL_ERROR, WithCa(), kServers,
                     "SSL handshake error: 10:certificate has expired");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Message(s), HasSubstr("TLS verification failed connecting to "
                                    "NATS at nats://127.0.0.1:4222: the "
                                    "server's certificate has expired"));
}

TEST(ConnectFailureTest, OtherHandshakeFailuresAreNotCalledVerification) {
  const absl::Status s =
      ConnectFailure(NATS_SSL_ERROR, WithCa(), kServers,
                     "SSL handshake error: wrong version number");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Message(s),
            "TLS handshake failed connecting to NATS at nats://127.0.0.1:4222: "
            "SSL handshake error: wrong version number");
}

TEST(ConnectFailureTest, AlertRefusingTheClientCertificateIsUnauthenticated) {
  absl::Status s =
      ConnectFailure(NATS_SSL_ERROR, WithCa(), kServers,
                     "SSL handshake error: sslv3 alert bad certificate");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(Message(s), HasSubstr("refused the TLS handshake: the server "
                                    "probably requires a client certificate"));
  TlsOptions tls = WithCa();
  tls.cert_file = "/etc/natsgw/client.pem";
  tls.key_file = "/etc/natsgw/client-key.pem";
  s = ConnectFailure(NATS_SSL_ERROR, tls, kServers,
                     "SSL handshake error: tlsv13 alert certificate required");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(Message(s),
              HasSubstr("rejected the client certificate "
                        "tls.cert_file \"/etc/natsgw/client.pem\""));
}

TEST(ConnectFailureTest, ServerClosingSilentlyMeansAClientCertificateProblem) {
  const std::string detail = "(conn.c:1909): Expected 'PONG', got ''";
  absl::Status s =
      ConnectFailure(NATS_PROTOCOL_ERROR, WithCa(), kServers, detail);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Message(s),
            "NATS at nats://127.0.0.1:4222 closed the connection during the "
            "TLS handshake or CONNECT without giving a reason: the server "
            "probably requires a client certificate (tls { verify: true }); "
            "set tls.cert_file and tls.key_file (Expected 'PONG', got '')");

  TlsOptions tls = WithCa();
  tls.cert_file = "/etc/natsgw/client.pem";
  tls.key_file = "/etc/natsgw/client-key.pem";
  s = ConnectFailure(NATS_PROTOCOL_ERROR, tls, kServers, detail);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(Message(s), HasSubstr("probably rejected the client "
                                    "certificate tls.cert_file "
                                    "\"/etc/natsgw/client.pem\""));

  // The server's close can also hit nats.c's write of the CONNECT.
  s = ConnectFailure(NATS_IO_ERROR, tls, kServers,
                     "(comsock.c:536): SSL_write error: (null)");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(Message(s), HasSubstr("closed the connection during the TLS "
                                    "handshake or CONNECT"));
  EXPECT_THAT(Message(s), HasSubstr("(SSL_write error: (null))"));

  // Another protocol error keeps its own code and text.
  s = ConnectFailure(NATS_PROTOCOL_ERROR, WithCa(), kServers,
                     "Expected 'PONG', got 'garbage'");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Message(s),
            "cannot connect to NATS at nats://127.0.0.1:4222: Protocol Error: "
            "Expected 'PONG', got 'garbage'");
}

TEST(ConnectFailureTest, TlsWantedButNotOfferedIsAFailedPrecondition) {
  const absl::Status s =
      ConnectFailure(NATS_SECURE_CONNECTION_WANTED, WithCa(), kServers,
                     "(conn.c:773): Secure Connection not available");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Message(s),
              StartsWith("the client requires TLS but the server at "
                         "nats://127.0.0.1:4222 does not offer it"));
  EXPECT_THAT(Message(s), HasSubstr("no plain-text fallback"));

  EXPECT_EQ(ConnectFailure(NATS_SECURE_CONNECTION_REQUIRED, TlsOptions{},
                           kServers, "")
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ConnectFailureTest, RejectedCredentialsAreUnauthenticated) {
  absl::Status s = ConnectFailure(NATS_CONNECTION_AUTH_FAILED, TlsOptions{},
                                  kServers, "Authorization Violation");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Message(s),
            "the NATS server at nats://127.0.0.1:4222 rejected the credentials "
            "(Authorization Violation)");

  TlsOptions tls = WithCa();
  tls.cert_file = "/etc/natsgw/client.pem";
  tls.key_file = "/etc/natsgw/client-key.pem";
  s = ConnectFailure(NATS_CONNECTION_AUTH_FAILED, tls, kServers,
                     "Authorization Violation");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(Message(s), HasSubstr("verify_and_map"));
  EXPECT_THAT(
      Message(s),
      HasSubstr("none matches tls.cert_file \"/etc/natsgw/client.pem\""));
}

TEST(ConnectFailureTest, OtherFailuresKeepTheirCodeAndText) {
  absl::Status s = ConnectFailure(NATS_NO_SERVER, TlsOptions{}, kServers,
                                  "(conn.c:2000): No server available for "
                                  "connection");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Message(s),
            "cannot connect to NATS at nats://127.0.0.1:4222: No server "
            "available for connection");

  s = ConnectFailure(NATS_IO_ERROR, TlsOptions{}, kServers,
                     "(comsock.c:100): Connection reset by peer");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Message(s),
            "cannot connect to NATS at nats://127.0.0.1:4222: IO Error: "
            "Connection reset by peer");

  s = ConnectFailure(NATS_TIMEOUT, TlsOptions{}, kServers, "");
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(Message(s),
            "cannot connect to NATS at nats://127.0.0.1:4222: Timeout");

  EXPECT_TRUE(ConnectFailure(NATS_OK, TlsOptions{}, kServers, "").ok());
}

TEST(ConnectFailureTest, DetailIsRedacted) {
  const absl::Status s = ConnectFailure(
      NATS_IO_ERROR, TlsOptions{}, "nats://alice:[REDACTED]@127.0.0.1:4222",
      "cannot reach nats://alice:s3cret-pw@127.0.0.1:4222");
  EXPECT_THAT(Message(s), Not(HasSubstr("s3cret-pw")));
  EXPECT_THAT(Message(s), HasSubstr("alice:[REDACTED]@127.0.0.1:4222"));
}

TEST(TlsRequestedTest, OptionsOrTlsSchemeUrls) {
  EXPECT_FALSE(TlsRequested(TlsOptions{}, {"nats://a:4222", "b:4222"}));
  EXPECT_TRUE(TlsRequested(TlsOptions{}, {"nats://a:4222", "tls://b:4443"}));
  EXPECT_TRUE(TlsRequested(TlsOptions{}, {"nats://a:4222, TLS://b:4443"}));
  EXPECT_TRUE(TlsRequested(WithCa(), {"nats://a:4222"}));
  TlsOptions enabled;
  enabled.enabled = true;
  EXPECT_TRUE(TlsRequested(enabled, {}));
}

}  // namespace
}  // namespace natsgw::internal
