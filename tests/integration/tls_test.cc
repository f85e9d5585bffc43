// TLS and mutual TLS against a real nats-server, with certificates generated
// at test time (harness/test_pki.h):
//   - a client trusting the server's CA connects over TLS and works;
//   - a server certificate from another CA, or without the expected host
//     name, fails with UNAVAILABLE "TLS verification failed", saying which
//     option to look at;
//   - a client asking for TLS never talks plain text to a server without it
//     (FAILED_PRECONDITION, and the server sees nothing);
//   - with `tls { verify: true }`, the client certificate is what gets in,
//     and its absence or rejection is reported as such (UNAUTHENTICATED),
//     not as nats.c's bare "Expected 'PONG', got ''";
//   - with `verify_and_map: true`, the certificate names the user whose
//     permissions apply.
// No status message, log line or server log carries a private key or a
// password.
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/capturing_logger.h"
#include "harness/http_client.h"
#include "harness/nats_server.h"
#include "harness/test_pki.h"
#include "natsgw/connection.h"
#include "nlohmann/json.hpp"

namespace natsgw {
namespace {

using ::natsgw::testing::CapturingLogger;
using ::natsgw::testing::HttpGet;
using ::natsgw::testing::NatsServer;
using ::natsgw::testing::NatsServerOptions;
using ::natsgw::testing::TestPki;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPassword[] = "pw-tls-4d81c9-not-in-logs";
constexpr absl::Duration kWait = absl::Seconds(5);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

// The first line of base64 in a PEM private key: if any part of the key
// leaked, this would.
std::string KeyMaterial(const std::string& key_file) {
  std::istringstream pem(ReadFile(key_file));
  std::string line;
  while (std::getline(pem, line)) {
    if (!line.empty() && !absl::StartsWith(line, "-----")) return line;
  }
  return "";
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestPki>> pki = TestPki::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *std::move(pki);
    secrets_ = {kPassword, KeyMaterial(pki_->client_key_file()),
                KeyMaterial(pki_->server_key_file()),
                KeyMaterial(pki_->intruder_key_file())};
    for (const std::string& secret : secrets_) ASSERT_FALSE(secret.empty());
  }

  void TearDown() override {
    // Whatever the test did, nothing natsgw logged carries a secret.
    for (const std::string& line : logger_->lines()) ExpectNoSecret(line);
    if (HasFailure()) {
      for (const auto& server : servers_) {
        std::cerr << "---- nats-server " << server->url() << " log tail ----\n"
                  << server->LogTail(30) << "\n---- end of log ----\n";
      }
    }
    // Servers go before the certificates they read.
    servers_.clear();
    pki_.reset();
  }

  // A nats-server with `tls_config` (usually pki().ServerTlsConfig(...)) and
  // `more` appended to its configuration.
  NatsServer* StartServer(const std::string& tls_config,
                          const std::string& more = "") {
    NatsServerOptions options;
    options.jetstream = false;
    options.extra_config = absl::StrCat(tls_config, more);
    absl::StatusOr<std::unique_ptr<NatsServer>> server =
        NatsServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return nullptr;
    servers_.push_back(*std::move(server));
    return servers_.back().get();
  }

  ConnectionOptions Options(const NatsServer& server, TlsOptions tls) {
    ConnectionOptions options;
    options.servers = {server.url()};
    options.tls = std::move(tls);
    options.connect_timeout = absl::Seconds(5);
    options.logger = logger_;
    return options;
  }

  TlsOptions TrustingCa() const {
    TlsOptions tls;
    tls.ca_file = pki_->ca_file();
    return tls;
  }
  TlsOptions WithClientCertificate() const {
    TlsOptions tls = TrustingCa();
    tls.cert_file = pki_->client_cert_file();
    tls.key_file = pki_->client_key_file();
    return tls;
  }

  void ExpectNoSecret(absl::string_view text) {
    EXPECT_THAT(std::string(text), Not(HasSubstr("PRIVATE KEY")));
    for (const std::string& secret : secrets_) {
      EXPECT_THAT(std::string(text), Not(HasSubstr(secret)));
    }
  }

  // Connection::Create's failure, checked for secrets.
  absl::Status CreateFails(const ConnectionOptions& options) {
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Create(options);
    EXPECT_FALSE(conn.ok()) << "connected to " << (*conn)->connected_url();
    if (conn.ok()) return absl::OkStatus();
    // For the record in the test log: what a user gets to read.
    std::cout << "Connection::Create: " << conn.status() << std::endl;
    ExpectNoSecret(conn.status().message());
    return conn.status();
  }

  TestPki& pki() { return *pki_; }

 private:
  std::unique_ptr<TestPki> pki_;
  std::vector<std::string> secrets_;
  std::shared_ptr<CapturingLogger> logger_ =
      std::make_shared<CapturingLogger>();
  std::vector<std::unique_ptr<NatsServer>> servers_;
};

// A request/reply round trip over `conn` on `subject`, proving it is usable.
// The responder stays subscribed as long as `*keep` (if given) lives.
void ExpectRoundTrip(Connection& conn, const std::string& subject,
                     std::unique_ptr<Subscription>* keep = nullptr) {
  auto serving = conn.Serve(
      subject, "q", [](const Message& request) -> absl::StatusOr<Reply> {
        return Reply{absl::StrCat("echo:", request.data), {}};
      });
  ASSERT_TRUE(serving.ok()) << serving.status();
  auto reply = conn.Request(subject, "ping", kWait);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data, "echo:ping");
  if (keep != nullptr) *keep = *std::move(serving);
}

// The TLS version /connz reports for each connection whose name starts
// with `name` (empty for a plain-text one).
std::vector<std::string> ConnzTlsVersions(const NatsServer& server,
                                          const std::string& name) {
  auto connz = HttpGet("127.0.0.1", server.monitor_port(), "/connz", kWait);
  EXPECT_TRUE(connz.ok()) << connz.status();
  std::vector<std::string> versions;
  if (!connz.ok()) return versions;
  const nlohmann::json parsed = nlohmann::json::parse(connz->body);
  for (const auto& c : parsed.value("connections", nlohmann::json::array())) {
    if (!absl::StartsWith(c.value("name", ""), name)) continue;
    versions.push_back(c.value("tls_version", ""));
  }
  return versions;
}

// S1.
// The server log's tail once it contains `text`, or after kWait: the server
// writes a line about a connection it closed after closing it.
std::string LogEventually(const NatsServer& server, absl::string_view text) {
  const absl::Time deadline = absl::Now() + kWait;
  std::string tail = server.LogTail(50);
  while (!absl::StrContains(tail, text) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    tail = server.LogTail(50);
  }
  return tail;
}

TEST_F(TlsTest, ClientTrustingTheCaConnectsOverTlsAndServesRequests) {
  NatsServer* server =
      StartServer(pki().ServerTlsConfig(TestPki::Verify::kNone));
  ASSERT_NE(server, nullptr);

  ConnectionOptions options = Options(*server, TrustingCa());
  options.name = "natsgw-tls-s1";
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ExpectRoundTrip(**conn, "tls.echo");

  // Every NATS connection behind it is encrypted.
  const std::vector<std::string> versions =
      ConnzTlsVersions(*server, "natsgw-tls-s1");
  ASSERT_FALSE(versions.empty());
  for (const std::string& version : versions) {
    EXPECT_THAT(version, AnyOf("1.2", "1.3"));
  }

  // Connecting by IP address, the certificate's DNS name can be required
  // instead.
  TlsOptions by_name = TrustingCa();
  by_name.expected_hostname = "localhost";
  auto named = Connection::Create(Options(*server, by_name));
  ASSERT_TRUE(named.ok()) << named.status();
  ExpectRoundTrip(**named, "tls.echo2");
}

// S2.
TEST_F(TlsTest, ServerCertificateFromAnotherCaFailsVerification) {
  NatsServer* server =
      StartServer(pki().ServerTlsConfig(TestPki::Verify::kNone));
  ASSERT_NE(server, nullptr);

  TlsOptions tls;
  tls.ca_file = pki().other_ca_file();
  const absl::Status s = CreateFails(Options(*server, tls));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("TLS verification failed connecting to "
                                     "NATS at ",
                                     server->url())));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("not signed by a CA in tls.ca_file \"",
                                     pki().other_ca_file(), "\"")));
  // OpenSSL's own reason is kept.
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("unable to get local issuer certificate"));
}

// S2.
TEST_F(TlsTest, ServerCertificateWithoutTheExpectedHostNameFailsVerification) {
  NatsServer* server =
      StartServer(pki().ServerTlsConfig(TestPki::Verify::kNone));
  ASSERT_NE(server, nullptr);

  TlsOptions tls = TrustingCa();
  tls.expected_hostname = "nats.elsewhere.test";
  const absl::Status s = CreateFails(Options(*server, tls));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("TLS verification failed"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("does not carry tls.expected_hostname "
                        "\"nats.elsewhere.test\""));
  EXPECT_THAT(std::string(s.message()), HasSubstr("hostname mismatch"));
}

// S2. nats.c switches to TLS by itself when the server's INFO requires it,
// then verifies the server against the system's CA store, which does not
// know the test CA: no plain-text connection, and a message saying where TLS
// came from.
TEST_F(TlsTest, ClientWithoutTlsOptionsIsUpgradedAndVerifiesTheServer) {
  NatsServer* server =
      StartServer(pki().ServerTlsConfig(TestPki::Verify::kNone));
  ASSERT_NE(server, nullptr);

  const absl::Status s = CreateFails(Options(*server, TlsOptions{}));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("TLS verification failed"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("not signed by a CA in the system's CA store; set "
                        "tls.ca_file"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("no tls option was set, but the server requires TLS"));
}

// S2. The client requires TLS; the server offers none. nats.c reads the
// server's INFO and closes: the server never sees a CONNECT (which would
// carry the credentials), as its protocol trace shows.
class PlainServerTlsTest : public TlsTest {
 protected:
  void SetUp() override {
    TlsTest::SetUp();
    if (HasFatalFailure()) return;
    server_ = StartServer(
        "trace: true\n",
        absl::StrCat("authorization { users: [ {user: alice, password: \"",
                     kPassword, "\"} ] }\n"));
    ASSERT_NE(server_, nullptr);
  }

  ConnectionOptions AliceOptions(TlsOptions tls) {
    ConnectionOptions options = Options(*server_, std::move(tls));
    options.credentials.user = "alice";
    options.credentials.password = kPassword;
    return options;
  }

  // Whether the server's trace shows a client protocol line ("<<- [...").
  bool ServerReceivedProtocol() const {
    return absl::StrContains(ReadFile(server_->log_path()), "<<- [");
  }

  // Proves that ServerReceivedProtocol() can see a client: connects in
  // plain text and waits for the CONNECT in the trace.
  void ExpectTraceShowsAPlainClient() {
    auto plain = Connection::Create(AliceOptions(TlsOptions{}));
    ASSERT_TRUE(plain.ok()) << plain.status();
    const absl::Time deadline = absl::Now() + kWait;
    while (!ServerReceivedProtocol() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_TRUE(ServerReceivedProtocol());
    const std::string log = ReadFile(server_->log_path());
    EXPECT_THAT(log, HasSubstr("<<- [CONNECT"));
    ExpectNoSecret(log);
  }

  NatsServer* server_ = nullptr;
};

TEST_F(PlainServerTlsTest, ClientRequiringTlsSendsNothingToAPlainServer) {
  const absl::Status s = CreateFails(AliceOptions(TrustingCa()));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("the client requires TLS but the server "
                                     "at ",
                                     server_->url(), " does not offer it")));
  // nats.c gives up synchronously, before writing anything; the server has
  // logged what it read by the time the socket was closed.
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE(ServerReceivedProtocol()) << ReadFile(server_->log_path());
  ExpectNoSecret(ReadFile(server_->log_path()));

  ExpectTraceShowsAPlainClient();
}

// A tls:// URL asks for TLS as much as a TlsOptions field does (nats.c
// 3.4.1 alone would fall back to plain text).
TEST_F(PlainServerTlsTest, TlsSchemeUrlNeverFallsBackToPlainText) {
  ConnectionOptions options = AliceOptions(TlsOptions{});
  options.servers = {absl::StrCat("tls://127.0.0.1:", server_->port())};
  const absl::Status s = CreateFails(options);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("does not offer it"));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_FALSE(ServerReceivedProtocol()) << ReadFile(server_->log_path());

  ExpectTraceShowsAPlainClient();
}

// S3.
TEST_F(TlsTest, MutualTlsWithTheClientCertificateConnects) {
  NatsServer* server =
      StartServer(pki().ServerTlsConfig(TestPki::Verify::kVerify));
  ASSERT_NE(server, nullptr);

  ConnectionOptions options = Options(*server, WithClientCertificate());
  options.name = "natsgw-tls-s3";
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ExpectRoundTrip(**conn, "mtls.echo");
  for (const std::string& version :
       ConnzTlsVersions(*server, "natsgw-tls-s3")) {
    EXPECT_FALSE(version.empty());
  }
}

// S3. nats.c reports only "Expected 'PONG', got ''": the server closed the
// connection after the handshake without an error line.
TEST_F(TlsTest, MutualTlsWithoutAClientCertificateSaysOneIsRequired) {
  NatsServer* server =
      StartServer(pki().ServerTlsConfig(TestPki::Verify::kVerify));
  ASSERT_NE(server, nullptr);

  const absl::Status s = CreateFails(Options(*server, TrustingCa()));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("closed the connection during the TLS handshake or "
                        "CONNECT"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("probably requires a client certificate"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("set tls.cert_file and tls.key_file"));
  // The server logged the real reason.
  // The server logged the real reason (it may write the line just after
  // closing the connection).
  EXPECT_THAT(LogEventually(*server, "didn't provide a certificate"),
              HasSubstr("didn't provide a certificate"));
}

// S3.
TEST_F(TlsTest, MutualTlsWithAnUntrustedClientCertificateSaysItWasRejected) {
  NatsServer* server =
      StartServer(pki().ServerTlsConfig(TestPki::Verify::kVerify));
  ASSERT_NE(server, nullptr);

  TlsOptions tls = TrustingCa();
  tls.cert_file = pki().intruder_cert_file();
  tls.key_file = pki().intruder_key_file();
  const absl::Status s = CreateFails(Options(*server, tls));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat(
                  "probably rejected the client certificate tls.cert_file \"",
                  pki().intruder_cert_file(), "\"")));
  EXPECT_THAT(LogEventually(*server, "certificate signed by unknown authority"),
              HasSubstr("certificate signed by unknown authority"));
}

// S4. The certificate's e-mail address names the user; that user's
// permissions apply.
TEST_F(TlsTest, VerifyAndMapAppliesTheMappedUsersPermissions) {
  NatsServer* server = StartServer(
      pki().ServerTlsConfig(TestPki::Verify::kVerifyAndMap),
      absl::StrCat("authorization { users: [ { user: \"", TestPki::kClientEmail,
                   "\", permissions: {\n"
                   "  publish: { allow: [\"tls.allowed.>\", \"_INBOX.>\"] }\n"
                   "  subscribe: { allow: [\"tls.allowed.>\", \"_INBOX.>\"] }\n"
                   "} } ] }\n"));
  ASSERT_NE(server, nullptr);

  ConnectionOptions options = Options(*server, WithClientCertificate());
  options.name = "natsgw-tls-s4";
  auto conn = Connection::Create(options);
  ASSERT_TRUE(conn.ok()) << conn.status();
  std::unique_ptr<Subscription> responder;
  ExpectRoundTrip(**conn, "tls.allowed.echo", &responder);
  ASSERT_NE(responder, nullptr);

  // A request to a subject the user may not publish to never reaches a
  // responder. PERMISSION_DENIED is the aim; until the server's asynchronous
  // permission error is matched to the call, it ends at its deadline.
  auto denied = (*conn)->Request("tls.denied.echo", "ping", absl::Seconds(1));
  ASSERT_FALSE(denied.ok());
  EXPECT_THAT(denied.status().code(),
              AnyOf(absl::StatusCode::kPermissionDenied,
                    absl::StatusCode::kDeadlineExceeded))
      << denied.status();
  std::cout << "request to a denied subject: " << denied.status() << std::endl;

  // The connection survives the violation; allowed subjects still work.
  auto again = (*conn)->Request("tls.allowed.echo", "ping", kWait);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->data, "echo:ping");
  // The server names the user the certificate was mapped to.
  const std::string violation =
      absl::StrCat("Publish Violation - User \"", TestPki::kClientEmail,
                   "\", Subject \"tls.denied.echo\"");
  EXPECT_THAT(LogEventually(*server, violation), HasSubstr(violation));
}

// S4. Without an e-mail user, the RFC 2253 subject names the user.
TEST_F(TlsTest, VerifyAndMapBySubjectDistinguishedName) {
  NatsServer* server =
      StartServer(pki().ServerTlsConfig(TestPki::Verify::kVerifyAndMap),
                  absl::StrCat("authorization { users: [ { user: \"",
                               TestPki::kClientSubjectDn, "\" } ] }\n"));
  ASSERT_NE(server, nullptr);

  auto conn = Connection::Create(Options(*server, WithClientCertificate()));
  ASSERT_TRUE(conn.ok()) << conn.status();
  ExpectRoundTrip(**conn, "tls.dn.echo");
}

// S4. A valid certificate that maps to no user is refused like wrong
// credentials.
TEST_F(TlsTest, VerifyAndMapWithoutAMatchingUserIsUnauthenticated) {
  NatsServer* server = StartServer(
      pki().ServerTlsConfig(TestPki::Verify::kVerifyAndMap),
      "authorization { users: [ { user: \"someone-else@natsgw.test\" } ] }\n");
  ASSERT_NE(server, nullptr);

  const absl::Status s = CreateFails(Options(*server, WithClientCertificate()));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("rejected the credentials (Authorization Violation)"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("none matches tls.cert_file \"",
                                     pki().client_cert_file(), "\"")));
}

// Bad TLS options are refused before any connection is attempted.
TEST_F(TlsTest, IncompleteOrUnreadableTlsOptionsAreRejectedUpFront) {
  ConnectionOptions options;
  // Nothing listens here: each case must fail on its rule.
  options.servers = {"nats://127.0.0.1:1"};
  options.logger = std::make_shared<CapturingLogger>();

  options.tls.cert_file = pki().client_cert_file();
  absl::Status s = Connection::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("cert_file and key_file must be given together"));

  options.tls = {};
  options.tls.ca_file = pki().dir() + "/missing-ca.pem";
  s = Connection::Create(options).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("tls: ca_file: cannot read \"",
                                     pki().dir(), "/missing-ca.pem\"")));
}

}  // namespace
}  // namespace natsgw
