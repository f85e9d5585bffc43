#include "natsgw/redact.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/message_id.h"
#include "natsgw/trace_context.h"

namespace natsgw {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A syntactically valid user seed and account seed (58 base32 characters),
// not used anywhere.
constexpr absl::string_view kUserSeed =
    "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY";
constexpr absl::string_view kAccountSeed =
    "SAAGNJOZTRPYYXG2NJX3ZNGXYUSDYX2BWO447W3SHG6XQ7U66RWHQ3JUXM";
// A NATS user JWT shape (header.payload.signature), not a valid token.
constexpr absl::string_view kJwt =
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ."
    "eyJqdGkiOiJBQkMiLCJpYXQiOjE2MDAwMDAwMDAsIm5hbWUiOiJ1c2VyIn0."
    "dGhpc2lzbm90YXJlYWxzaWduYXR1cmVidXRpdGxvb2tzbGlrZW9uZQ";

struct Case {
  std::string input;
  std::string expected;
};

class RedactPositiveTest : public ::testing::TestWithParam<Case> {};

TEST_P(RedactPositiveTest, Masks) {
  const Case& c = GetParam();
  EXPECT_EQ(RedactSecrets(c.input), c.expected);
  EXPECT_TRUE(MayContainSecrets(c.input));
  // Idempotent.
  EXPECT_EQ(RedactSecrets(c.expected), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Urls, RedactPositiveTest,
    ::testing::Values(
        Case{"nats://alice:s3cret@nats-0:4222",
             "nats://alice:[REDACTED]@nats-0:4222"},
        Case{"nats://tok3n@127.0.0.1:4222", "nats://[REDACTED]@127.0.0.1:4222"},
        Case{"cannot connect to NATS at nats://u:p@h1:4222, "
             "tls://v:q@h2:4222: Authorization Violation",
             "cannot connect to NATS at nats://u:[REDACTED]@h1:4222, "
             "tls://v:[REDACTED]@h2:4222: Authorization Violation"},
        Case{"nats://u:p@ss@host", "nats://u:[REDACTED]@host"},
        Case{"nats://u:pa/ss@host:4222", "nats://u:[REDACTED]@host:4222"},
        Case{"nats://u:pa,ss@host:4222", "nats://u:[REDACTED]@host:4222"},
        Case{"ws://u:p@host/path?x=1", "ws://u:[REDACTED]@host/path?x=1"},
        Case{"url=\"https://bob:hunter2@example.com/\"",
             "url=\"https://bob:[REDACTED]@example.com/\""},
        Case{"(nats://u:p@host)", "(nats://u:[REDACTED]@host)"},
        Case{"nats://u:@host", "nats://u:[REDACTED]@host"}));

INSTANTIATE_TEST_SUITE_P(
    KeyValues, RedactPositiveTest,
    ::testing::Values(Case{"password=hunter2", "password=[REDACTED]"},
                      Case{"user=alice pass=hunter2 host=h",
                           "user=alice pass=[REDACTED] host=h"},
                      Case{"PASSWORD=hunter2", "PASSWORD=[REDACTED]"},
                      Case{"token=abc123&x=1", "token=[REDACTED]&x=1"},
                      Case{"https://h/login?user=a&auth_token=xyz",
                           "https://h/login?user=a&auth_token=[REDACTED]"},
                      Case{"auth_token: abc", "auth_token: [REDACTED]"},
                      Case{"secret=s, next=1", "secret=[REDACTED], next=1"},
                      Case{"client_secret = abc", "client_secret = [REDACTED]"},
                      Case{"{\"user\":\"a\",\"password\":\"hunter 2\"}",
                           "{\"user\":\"a\",\"password\":\"[REDACTED]\"}"},
                      Case{"{\"password\": \"a\\\"b\", \"x\": 1}",
                           "{\"password\": \"[REDACTED]\", \"x\": 1}"},
                      Case{"{'token': 'abc'}", "{'token': '[REDACTED]'}"},
                      Case{"{\\\"password\\\":\\\"hunter2\\\"}",
                           "{\\\"password\\\":\\\"[REDACTED]\\\"}"},
                      Case{"{\"token\": 12345}", "{\"token\": [REDACTED]}"},
                      Case{"apiKey=k1", "apiKey=[REDACTED]"},
                      Case{"nkey_seed=x", "nkey_seed=[REDACTED]"},
                      Case{"user_jwt: x", "user_jwt: [REDACTED]"},
                      Case{"Authorization: Bearer abc.def",
                           "Authorization: Bearer [REDACTED]"},
                      Case{"authorization=Basic dXNlcjpwYXNz",
                           "authorization=Basic [REDACTED]"},
                      Case{"creds=/etc/nats/user.creds", "creds=[REDACTED]"},
                      Case{"db.password=x", "db.password=[REDACTED]"}));

INSTANTIATE_TEST_SUITE_P(
    Keys, RedactPositiveTest,
    ::testing::Values(Case{absl::StrCat("seed ", kUserSeed), "seed [REDACTED]"},
                      Case{absl::StrCat(kAccountSeed), "[REDACTED]"},
                      Case{absl::StrCat("(", kUserSeed, ")"), "([REDACTED])"},
                      Case{absl::StrCat("jwt ", kJwt, " end"),
                           "jwt [REDACTED] end"},
                      Case{absl::StrCat("Bearer ", kJwt), "Bearer [REDACTED]"},
                      Case{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",  // alg none
                           "[REDACTED]"}));

INSTANTIATE_TEST_SUITE_P(
    CredsFiles, RedactPositiveTest,
    ::testing::Values(
        Case{absl::StrCat("creds: -----BEGIN NATS USER JWT-----\n", kJwt,
                          "\n------END NATS USER JWT------\n\n"
                          "************************* IMPORTANT "
                          "*************************\n"
                          "-----BEGIN USER NKEY SEED-----\n",
                          kUserSeed, "\n------END USER NKEY SEED------\n\nend"),
             "creds: [REDACTED NATS USER JWT]\n\n"
             "************************* IMPORTANT "
             "*************************\n"
             "[REDACTED USER NKEY SEED]\n\nend"},
        // Cut off before the END line: masked to the end.
        Case{absl::StrCat("-----BEGIN USER NKEY SEED-----\nSUAB"),
             "[REDACTED USER NKEY SEED]"},
        Case{"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
             "[REDACTED PRIVATE KEY]"}));

// Text that must come out unchanged.
class RedactNegativeTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RedactNegativeTest, LeavesAlone) {
  EXPECT_EQ(RedactSecrets(GetParam()), GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Ordinary, RedactNegativeTest,
    ::testing::Values(
        "", "connected to NATS at nats://127.0.0.1:4222 (rpc connection)",
        "cannot connect to NATS at nats://nats-0:4222, nats://[::1]:4222: "
        "No Server Available",
        "tls://nats.example.com:4443/",
        "dropped a message on 'users.events.UserRegistered' (subscription "
        "'users.events.>', Nats-Msg-Id '4ZKpNq1bC0mXxq9oTrW2dL'): not a "
        "valid UserRegistered [trace 4bf92f3577b34da6a3ce929d0e0e4736]",
        "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "welcome e-mail sent to alice@example.com", "user=alice@example.com",
        "mailto:alice@example.com",
        "subject 'a..b' has an empty token 2; tokens between '.' must be "
        "non-empty",
        "task queue 'email': 3 tasks shed",
        "$SRV.INFO.users.abc $JS.API.CONSUMER.CREATE.USERS",
        // A public user NKey (starts with U, 56 characters) is not a secret.
        "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4",
        // Too short, too long, lower case, or glued to other text: not seeds.
        "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4G",
        "SUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GYQ",
        "xSUAMK2FG4MI6UE3ACF3FK3OIQBCEIEZV7NSWFFEW63UXMRLFM2XLAXK4GY",
        "suamk2fg4mi6ue3acf3fk3oiqbceiezv7nswffew63uxmrlfm2xlaxk4gy",
        "SUBSCRIBE SOMETHING STATUS", "eyJ alone", "eyJhbGciOiJub25lIn0",
        "see https://example.com/a@b", "password", "passed: 3 tests",
        "key=users.1 idempotency_key=abc", "time 12:34:56.789",
        "Permissions Violation for Publish to \"users.secret\"",
        "-----BEGIN but no label"));

TEST(RedactTest, GeneratedIdsAreNeverMasked) {
  for (int i = 0; i < 2000; ++i) {
    const TraceContext trace = TraceContext::NewRoot();
    const std::string line = absl::StrCat(
        "msg id=", NewMessageId(), " ", trace.ToTraceParent(),
        " trace_id=", trace.TraceIdHex(), " span_id=", trace.SpanIdHex());
    ASSERT_EQ(RedactSecrets(line), line);
  }
}

TEST(RedactTest, FastPathSaysNoForOrdinaryLines) {
  EXPECT_FALSE(MayContainSecrets("published to users.events.UserRegistered"));
  EXPECT_FALSE(MayContainSecrets("connected to NATS at nats://127.0.0.1:4222"));
  EXPECT_FALSE(MayContainSecrets(
      "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7"));
  EXPECT_TRUE(MayContainSecrets("nats://a:b@h"));
  EXPECT_TRUE(MayContainSecrets(kUserSeed));
  EXPECT_TRUE(MayContainSecrets("x -----BEGIN NATS USER JWT-----"));
}

TEST(RedactTest, SecretNeverSurvivesInAnyPosition) {
  const std::string secret = "Zq9-hunter2-Xy";
  const std::string forms[] = {
      absl::StrCat("nats://admin:", secret, "@10.0.0.1:4222"),
      absl::StrCat("nats://", secret, "@10.0.0.1:4222"),
      absl::StrCat("password=", secret),
      absl::StrCat("password: '", secret, "'"),
      absl::StrCat("{\"auth_token\":\"", secret, "\"}"),
      absl::StrCat("secret=\"", secret, " with spaces\""),
  };
  for (const std::string& form : forms) {
    for (const std::string& line :
         {form, absl::StrCat("prefix ", form, " suffix"),
          absl::StrCat(form, ",", form)}) {
      EXPECT_THAT(RedactSecrets(line), Not(HasSubstr("hunter2"))) << line;
    }
  }
}

TEST(RedactTest, SecretKeys) {
  for (absl::string_view key :
       {"password",      "PASSWORD",    "pass",          "passwd",
        "pwd",           "token",       "auth_token",    "authToken",
        "client_secret", "nkey_seed",   "seed",          "user_jwt",
        "jwt",           "creds",       "credentials",   "api_key",
        "apiKey",        "private_key", "Authorization", "x-auth",
        "db.password"}) {
    EXPECT_TRUE(IsSecretKey(key)) << key;
  }
  for (absl::string_view key :
       {"", "user", "subject", "trace_id", "span_id", "key", "idempotency_key",
        "passed", "author", "oauth_provider", "seeds_total", "nkey", "url"}) {
    EXPECT_FALSE(IsSecretKey(key)) << key;
  }
}

TEST(RedactTest, RedactUrlHandlesUrlsWithoutScheme) {
  EXPECT_EQ(RedactUrl("alice:s3cret@nats-0:4222"),
            "alice:[REDACTED]@nats-0:4222");
  EXPECT_EQ(RedactUrl("tok3n@nats-0:4222"), "[REDACTED]@nats-0:4222");
  EXPECT_EQ(RedactUrl("nats-0:4222"), "nats-0:4222");
  EXPECT_EQ(RedactUrl("nats://alice:s3cret@nats-0:4222"),
            "nats://alice:[REDACTED]@nats-0:4222");
  EXPECT_EQ(RedactUrl("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
  EXPECT_EQ(RedactUrl(""), "");
  // Known to be a URL: characters that end a URL in free text do not end the
  // password here.
  EXPECT_EQ(RedactUrl("nats://alice:se cret#/x@nats-0:4222"),
            "nats://alice:[REDACTED]@nats-0:4222");
  EXPECT_EQ(RedactUrl("nats://a:b@h1:4222,c:d@h2:4222,nats://h3:4222"),
            "nats://a:[REDACTED]@h1:4222,c:[REDACTED]@h2:4222,nats://h3:4222");
  EXPECT_EQ(RedactUrl("nats://alice:[REDACTED]@h"),
            "nats://alice:[REDACTED]@h");
}

TEST(RedactTest, BinaryAndLongInputsAreSafe) {
  std::string binary(300, '\0');
  for (size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i);
  EXPECT_EQ(RedactSecrets(binary), binary);
  const std::string long_line(100000, 'S');
  EXPECT_EQ(RedactSecrets(long_line), long_line);
  const std::string colons(10000, ':');
  // A value runs to the end of the text at most: masked in one piece.
  EXPECT_EQ(RedactSecrets(absl::StrCat("token", colons)), "token:[REDACTED]");
}

}  // namespace
}  // namespace natsgw
