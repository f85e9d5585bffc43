// The README's typed-RPC quick start (sdk/examples/quickstart) run as a user
// would, against a real nats-server: it must print what README.md says.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "harness/nats_server_fixture.h"
#include "harness/subprocess.h"

namespace natsgw {
namespace {

using ::natsgw::testing::NatsServerTest;
using ::natsgw::testing::ProcessResult;
using ::natsgw::testing::RunProcess;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;

class QuickstartTest : public NatsServerTest {};

TEST_F(QuickstartTest, ServesAndCallsGreeter) {
  absl::StatusOr<ProcessResult> r =
      RunProcess({NATSGW_QUICKSTART_BINARY, server().url()}, absl::Seconds(60));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->exit_code, 0) << r->output;
  EXPECT_THAT(r->output,
              ContainsRegex("Hello, world! \\(trace [0-9a-f]{32}\\)"));
  EXPECT_THAT(r->output,
              HasSubstr("INVALID_ARGUMENT: name must not be empty\n"));
  EXPECT_THAT(r->output,
              HasSubstr("Hello, Ada!\nHello, Grace!\nHello, Barbara!\n"));
}

TEST_F(QuickstartTest, UnreachableServerIsAClearErrorAndExitStatus1) {
  // A port nobody listens on: the server's own port after it is stopped.
  const std::string url = server().url();
  ASSERT_TRUE(server().Kill().ok());
  absl::StatusOr<ProcessResult> r =
      RunProcess({NATSGW_QUICKSTART_BINARY, url}, absl::Seconds(60));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1) << r->output;
  EXPECT_THAT(r->output, HasSubstr("quickstart: UNAVAILABLE"));
}

}  // namespace
}  // namespace natsgw
