// harness/nats_server_fixture.h: GoogleTest fixtures around the harness.
//
// Defines NatsServerTest (one fresh nats-server per test) and NatsClusterTest
// (one fresh 3-node JetStream cluster per test). SetUp() starts the server
// and fails the test with the start error if it cannot; when a test has
// failed, TearDown() prints the server log tail(s) to stderr before the
// processes are killed, so CI output shows what the server saw.
//
//   class PublishTest : public natsgw::testing::NatsServerTest {};
//
//   TEST_F(PublishTest, RoundTrip) {
//     ConnectTo(server().url());   // nats://127.0.0.1:<ephemeral port>
//     ASSERT_TRUE(server().Kill().ok());
//     ASSERT_TRUE(server().Restart().ok());  // same port: clients reconnect
//   }
//
// To change the server configuration, override ServerOptions() (or
// ClusterOptions() / ClusterSize()). A fixture that overrides SetUp() must
// call the base SetUp() first and return if HasFatalFailure(); one that
// overrides TearDown() must call the base TearDown() last.
//
// Thread-safety: like any gtest fixture, used by the test's thread; the
// NatsServer / NatsCluster it exposes are themselves thread-safe.
#ifndef NATSGW_TESTS_HARNESS_NATS_SERVER_FIXTURE_H_
#define NATSGW_TESTS_HARNESS_NATS_SERVER_FIXTURE_H_

#include <iostream>
#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "harness/nats_server.h"

namespace natsgw::testing {

// A fixture owning one NatsServer for the duration of each test.
// Thread-compatible (see the file comment).
class NatsServerTest : public ::testing::Test {
 protected:
  // Options for the server started in SetUp(); override to customize.
  virtual NatsServerOptions ServerOptions() const { return {}; }

  void SetUp() override {
    absl::StatusOr<std::unique_ptr<NatsServer>> server =
        NatsServer::Start(ServerOptions());
    ASSERT_TRUE(server.ok()) << "cannot start nats-server: " << server.status();
    server_ = *std::move(server);
  }

  void TearDown() override {
    if (HasFailure() && server_ != nullptr) {
      std::cerr << "---- nats-server " << server_->url() << " ("
                << server_->dir() << "): last " << kLogLines
                << " log lines ----\n"
                << server_->LogTail(kLogLines) << "\n---- end of log ----"
                << std::endl;
    }
    // Killed and reaped here rather than in the destructor, so that the next
    // test starts without a leftover process.
    server_.reset();
  }

  // The running server. Valid between SetUp() and TearDown().
  NatsServer& server() { return *server_; }

 private:
  static constexpr int kLogLines = 50;
  std::unique_ptr<NatsServer> server_;
};

// A fixture owning one NatsCluster (JetStream, full mesh) for each test.
// Thread-compatible (see the file comment).
class NatsClusterTest : public ::testing::Test {
 protected:
  // Node count and base options for the cluster; override to customize.
  virtual int ClusterSize() const { return 3; }
  virtual NatsServerOptions ClusterOptions() const { return {}; }

  void SetUp() override {
    absl::StatusOr<std::unique_ptr<NatsCluster>> cluster =
        NatsCluster::Start(ClusterSize(), ClusterOptions());
    ASSERT_TRUE(cluster.ok())
        << "cannot start nats-server cluster: " << cluster.status();
    cluster_ = *std::move(cluster);
  }

  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) {
      std::cerr << "---- nats-server cluster logs ----\n"
                << cluster_->LogTails(kLogLines) << "---- end of logs ----"
                << std::endl;
    }
    cluster_.reset();
  }

  // The cluster. Valid between SetUp() and TearDown().
  NatsCluster& cluster() { return *cluster_; }

 private:
  static constexpr int kLogLines = 30;
  std::unique_ptr<NatsCluster> cluster_;
};

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_HARNESS_NATS_SERVER_FIXTURE_H_
