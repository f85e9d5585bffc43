#include "gtest/gtest.h"
#include "natsgw/rpc_method.h"
#include "sdk_test_util.h"

namespace natsgw {
namespace {

using ::natsgw::testing::kEchoMethod;

TEST(RpcMethodTest, MethodSubjectJoinsPrefixAndMethod) {
  EXPECT_EQ(MethodSubject("echo", "Echo"), "echo.Echo");
  EXPECT_EQ(MethodSubject(kEchoMethod.default_prefix, kEchoMethod.method),
            "echo.Echo");
  // A prefix may have several tokens; the method's case is preserved.
  EXPECT_EQ(MethodSubject("acme.users", "RegisterUser"),
            "acme.users.RegisterUser");
}

TEST(RpcMethodTest, EffectivePrefixPrefersTheOverride) {
  EXPECT_EQ(EffectivePrefix("echo", ""), "echo");
  EXPECT_EQ(EffectivePrefix("echo", "acme.echo"), "acme.echo");
  EXPECT_EQ(MethodSubject(EffectivePrefix(kEchoMethod.default_prefix, "t1"),
                          kEchoMethod.method),
            "t1.Echo");
}

TEST(RpcMethodTest, DescriptorsAreConstantExpressions) {
  // Generated descriptors are constexpr: usable at compile time.
  static_assert(!kEchoMethod.idempotent);
  static_assert(kEchoMethod.method.size() == 4);
  EXPECT_EQ(kEchoMethod.file_identifier, "NGEC");
}

}  // namespace
}  // namespace natsgw
