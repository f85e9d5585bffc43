// Account isolation on a real nats-server: two accounts using the same
// subjects see nothing of each other, and an export/import pair opens
// exactly the exported service to the importing account.
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/nats_server.h"
#include "harness/sync_points.h"
#include "natsgw/connection.h"

namespace natsgw {
namespace {

using ::natsgw::testing::NatsServer;
using ::natsgw::testing::NatsServerOptions;

constexpr absl::Duration kWait = absl::Seconds(5);

// Account A serves "orders.*" and exports "orders.get" as a service; B
// imports it. Both also use "events.x" on their own.
constexpr char kAccounts[] = R"(
accounts {
  A: {
    users: [ {user: a, password: pa} ]
    exports: [ {service: "orders.get"} ]
  }
  B: {
    users: [ {user: b, password: pb} ]
    imports: [ {service: {account: A, subject: "orders.get"}} ]
  }
}
)";

std::unique_ptr<Connection> ConnectAs(const NatsServer& server,
                                      const std::string& user,
                                      const std::string& password) {
  ConnectionOptions options;
  options.servers = {server.url()};
  options.credentials.user = user;
  options.credentials.password = password;
  auto conn = Connection::Create(options);
  EXPECT_TRUE(conn.ok()) << conn.status();
  return conn.ok() ? *std::move(conn) : nullptr;
}

TEST(AccountsTest, AccountsAreIsolatedExceptForTheExportedService) {
  NatsServerOptions server_options;
  // JetStream would need per-account limits; not what this test is about.
  server_options.jetstream = false;
  server_options.extra_config = kAccounts;
  auto server = NatsServer::Start(server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto a = ConnectAs(**server, "a", "pa");
  auto b = ConnectAs(**server, "b", "pb");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);

  auto serve = [&](const char* subject) {
    return a->Serve(subject, "q",
                    [subject](const Message& m) -> absl::StatusOr<Reply> {
                      return Reply{absl::StrCat(subject, ":", m.data), {}};
                    });
  };
  auto get = serve("orders.get");
  auto cancel = serve("orders.cancel");
  ASSERT_TRUE(get.ok()) << get.status();
  ASSERT_TRUE(cancel.ok()) << cancel.status();

  // Same subject, two accounts: B's subscriber never sees A's publish.
  testing::Latch a_saw(1);
  std::atomic<int> b_saw{0};
  auto a_sub =
      a->Subscribe("events.x", "", [&](const Message&) { a_saw.CountDown(); });
  auto b_sub =
      b->Subscribe("events.x", "", [&](const Message&) { b_saw.fetch_add(1); });
  ASSERT_TRUE(a_sub.ok() && b_sub.ok());
  ASSERT_TRUE(a->Publish("events.x", "secret").ok());
  ASSERT_TRUE(a->Flush(kWait).ok());
  ASSERT_TRUE(a_saw.Wait());
  // B's subscription is confirmed and A's message already delivered inside
  // A; a round trip through B's connection lets anything in flight arrive.
  ASSERT_TRUE(b->Flush(kWait).ok());
  EXPECT_EQ(b_saw.load(), 0);

  // The exported service answers B; the unexported one does not exist for
  // B (no responders), though A serves it.
  auto reply = b->Request("orders.get", "42", kWait);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->data, "orders.get:42");
  EXPECT_EQ(b->Request("orders.cancel", "42", kWait).status().code(),
            absl::StatusCode::kUnavailable);
  auto own = a->Request("orders.cancel", "42", kWait);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->data, "orders.cancel:42");
}

}  // namespace
}  // namespace natsgw
