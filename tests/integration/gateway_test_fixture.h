// gateway_test_fixture.h: the fixture of the integration tests that talk to
// a real nats-server through natsgw::Connection.
//
//   class TypedRpcTest : public natsgw::testing::GatewayTest {};
//   TEST_F(TypedRpcTest, RoundTrip) {
//     auto conn = Connect();                  // to server(), metrics in
//     registry_
//     ...
//     EXPECT_THAT(Scrape(), HasSubstr("natsgw_client_request_duration"));
//   }
//
// Every connection a test makes records into the test's one registry_
// (override Options() or pass other options to Connect(options) to change
// that) and logs warnings to stderr, so a failing test shows what the
// gateway saw.
//
// Thread-safety: like any gtest fixture, used by the test's thread.
#ifndef NATSGW_TESTS_INTEGRATION_GATEWAY_TEST_FIXTURE_H_
#define NATSGW_TESTS_INTEGRATION_GATEWAY_TEST_FIXTURE_H_

#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <memory>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "harness/nats_server_fixture.h"
#include "natsgw/connection.h"
#include "natsgw/logger.h"

namespace natsgw::testing {

class GatewayTest : public NatsServerTest {
 protected:
  // Options of Connect(): this test's server, client name, registry and a
  // stderr logger for warnings.
  virtual ConnectionOptions Options() {
    ConnectionOptions options;
    options.servers = {server().url()};
    options.name = ClientName();
    options.registry = registry_;
    options.logger =
        std::make_shared<StderrLogger>(absl::LogSeverity::kWarning);
    return options;
  }

  // A connection with Options(), or null (and a test failure) on error.
  std::unique_ptr<Connection> Connect() { return Connect(Options()); }
  std::unique_ptr<Connection> Connect(ConnectionOptions options) {
    absl::StatusOr<std::unique_ptr<Connection>> conn =
        Connection::Create(std::move(options));
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? *std::move(conn) : nullptr;
  }

  // registry_ in the Prometheus text format.
  std::string Scrape() {
    return prometheus::TextSerializer().Serialize(registry_->Collect());
  }

  // The client name shown by the server (/connz): the test suite's name.
  static std::string ClientName() {
    const ::testing::TestInfo* info =
        ::testing::UnitTest::GetInstance()->current_test_info();
    return info != nullptr ? info->test_suite_name() : "natsgw-test";
  }

  std::shared_ptr<prometheus::Registry> registry_ =
      std::make_shared<prometheus::Registry>();
};

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_INTEGRATION_GATEWAY_TEST_FIXTURE_H_
