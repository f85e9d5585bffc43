#include "natsgw/validation.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace natsgw {
namespace {

using ::testing::HasSubstr;

void ExpectInvalid(const absl::Status& s, absl::string_view rule) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(rule))) << s;
}

TEST(ValidationTest, PublishSubjects) {
  for (const char* ok :
       {"a", "users.RegisterUser", "$SRV.PING", "a-b_c.D9", "_INBOX.abc.def"}) {
    EXPECT_TRUE(ValidatePublishSubject(ok).ok()) << ok;
  }
  ExpectInvalid(ValidatePublishSubject(""), "empty");
  ExpectInvalid(ValidatePublishSubject("a..b"), "empty token 2");
  ExpectInvalid(ValidatePublishSubject(".a"), "empty token 1");
  ExpectInvalid(ValidatePublishSubject("a."), "empty token 2");
  ExpectInvalid(ValidatePublishSubject("a b"), "byte 0x20 at offset 1");
  ExpectInvalid(ValidatePublishSubject("a\r\nPUB x 1"), "byte 0x0d");
  ExpectInvalid(ValidatePublishSubject(std::string("a\0b", 3)), "byte 0x00");
  ExpectInvalid(ValidatePublishSubject("caf\xc3\xa9"), "byte 0xc3");
  ExpectInvalid(ValidatePublishSubject("orders.*"),
                "only allowed when subscribing");
  ExpectInvalid(ValidatePublishSubject("orders.>"),
                "only allowed when subscribing");
  ExpectInvalid(ValidatePublishSubject("a*"), "whole tokens");
  ExpectInvalid(ValidatePublishSubject(std::string(257, 'a')), "limit is 256");
  MessageLimits tight;
  tight.max_subject_bytes = 4;
  ExpectInvalid(ValidatePublishSubject("abcde", tight), "limit is 4");
}

TEST(ValidationTest, SubscribeSubjects) {
  for (const char* ok : {"a", "a.*", "*.b", "a.>", ">", "*.*.>"}) {
    EXPECT_TRUE(ValidateSubscribeSubject(ok).ok()) << ok;
  }
  ExpectInvalid(ValidateSubscribeSubject("a.>.b"), "last token");
  ExpectInvalid(ValidateSubscribeSubject("a.b*"), "whole tokens");
  ExpectInvalid(ValidateSubscribeSubject("a.>x"), "whole tokens");
  ExpectInvalid(ValidateSubscribeSubject("a .b"), "byte 0x20");
}

TEST(ValidationTest, QueueGroups) {
  EXPECT_TRUE(ValidateQueueGroup("").ok());
  EXPECT_TRUE(ValidateQueueGroup("q").ok());
  EXPECT_TRUE(ValidateQueueGroup("email-service.v1").ok());
  ExpectInvalid(ValidateQueueGroup("a b"), "byte 0x20");
  ExpectInvalid(ValidateQueueGroup("q*"), "wildcard");
}

TEST(ValidationTest, HeaderKeysAndValues) {
  EXPECT_TRUE(ValidateHeaderKey("X-Tenant_ID.v2").ok());
  ExpectInvalid(ValidateHeaderKey(""), "empty");
  ExpectInvalid(ValidateHeaderKey("Bad:Key"), "RFC 7230");
  ExpectInvalid(ValidateHeaderKey("Bad Key"), "RFC 7230");
  ExpectInvalid(ValidateHeaderKey(std::string(129, 'k')),
                "max_header_key_bytes");

  ExpectInvalid(ValidateHeaderValue(""), "empty");
  EXPECT_TRUE(ValidateHeaderValue("a value\twith tab and caf\xc3\xa9").ok());
  ExpectInvalid(ValidateHeaderValue("line\r\nInjected: 1"),
                "control byte 0x0d");
  ExpectInvalid(ValidateHeaderValue(std::string("a\0b", 3)),
                "control byte 0x00");
  ExpectInvalid(ValidateHeaderValue(" padded"), "whitespace");
  ExpectInvalid(ValidateHeaderValue(std::string(4097, 'v')),
                "max_header_value_bytes");
}

TEST(ValidationTest, ApplicationHeadersRejectReservedNamesInAnyCase) {
  EXPECT_TRUE(ValidateApplicationHeaders({{"Tenant", "acme"}}).ok());
  for (const char* reserved :
       {"traceparent", "TraceParent", "tracestate", "Nats-Msg-Id",
        "nats-msg-id", "Nats-Service-Error", "Nats-Service-Error-Code",
        "Natsgw-Anything", "natsgw-sent-at-ns", "Status", "Description"}) {
    ExpectInvalid(ValidateApplicationHeaders({{reserved, "x"}}), "reserved");
  }
  Headers many;
  for (int i = 0; i < 65; ++i) many.Add("K" + std::to_string(i), "v");
  ExpectInvalid(ValidateApplicationHeaders(many), "max_header_count");
  ExpectInvalid(ValidateApplicationHeaders({{"Good", "bad\nvalue"}}),
                "header \"Good\"");
}

// nats.c merges a key into a longer one it prefixes when it reads the
// header block back (tests/fuzz/regressions/wire_headers), so such keys are
// refused on send; a repeated key (several values) is fine.
TEST(ValidationTest, ApplicationHeaderKeysMustNotPrefixEachOther) {
  EXPECT_TRUE(ValidateApplicationHeaders(
                  {{"Tenant", "a"}, {"Tenant", "b"}, {"Region", "eu"}})
                  .ok());
  ExpectInvalid(ValidateApplicationHeaders({{"Tenant", "a"}, {"Tena", "b"}}),
                "\"Tenant\" and \"Tena\": one is a prefix of the other");
  ExpectInvalid(ValidateApplicationHeaders({{"tena", "b"}, {"TENANT", "a"}}),
                "prefix");
  ExpectInvalid(ValidateApplicationHeaders({{"trace", "x"}}),
                "prefix of natsgw's header traceparent");
  ExpectInvalid(ValidateApplicationHeaders({{"Nats-Msg", "x"}}),
                "prefix of natsgw's header Nats-Msg-Id");
  EXPECT_TRUE(ValidateApplicationHeaders({{"Traceparent-Copy", "x"}}).ok());
}

TEST(ValidationTest, MessageIds) {
  EXPECT_TRUE(ValidateMessageId("order-1234-created").ok());
  ExpectInvalid(ValidateMessageId(""), "empty");
  ExpectInvalid(ValidateMessageId("a b"), "byte 0x20");
  ExpectInvalid(ValidateMessageId(std::string(129, 'x')), "limit is 128");
}

}  // namespace
}  // namespace natsgw

namespace natsgw {
namespace {

// An obviously-correct (slow) statement of the subject rules, to check the
// single-pass scanner against.
bool ReferenceValid(const std::string& subject, bool allow_wildcards) {
  if (subject.empty() || subject.size() > 256) return false;
  for (unsigned char c : subject) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  std::vector<std::string> tokens;
  size_t start = 0;
  while (true) {
    size_t dot = subject.find('.', start);
    tokens.push_back(subject.substr(
        start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (t.empty()) return false;
    if (t == "*" || t == ">") {
      if (!allow_wildcards) return false;
      if (t == ">" && i + 1 != tokens.size()) return false;
    } else if (t.find_first_of("*>") != std::string::npos) {
      return false;
    }
  }
  return true;
}

TEST(ValidationTest, ScannerAgreesWithReferenceOnRandomSubjects) {
  // Small alphabet so that every rule is hit often.
  const std::string alphabet = "ab.*> \x01";
  uint64_t state = 0x9e3779b97f4a7c15ull;  // fixed seed: reproducible
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  for (int i = 0; i < 200000; ++i) {
    std::string subject;
    const int length = static_cast<int>(next() % 9);
    for (int j = 0; j < length; ++j)
      subject += alphabet[next() % alphabet.size()];
    for (bool wildcards : {false, true}) {
      absl::Status s = wildcards ? ValidateSubscribeSubject(subject)
                                 : ValidatePublishSubject(subject);
      ASSERT_EQ(s.ok(), ReferenceValid(subject, wildcards))
          << "subject \"" << subject << "\" wildcards=" << wildcards << ": "
          << s;
      if (!s.ok()) {
        // Every rejection names a real rule (never the internal fallback).
        ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
      }
    }
  }
}

}  // namespace
}  // namespace natsgw
