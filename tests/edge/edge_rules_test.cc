// natsgw-edge's request rules without a server: the HTTP status of every
// canonical status code, reserved subjects, allow-list matching of subjects
// and subscription patterns, bearer token files and their comparison, the
// translation of HTTP headers into NATS headers, query parameters and
// timeouts.
#include "edge_rules.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/service_error.h"
#include "nlohmann/json.hpp"

namespace natsgw::edge {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// ---- status mapping ----

TEST(HttpStatusForCodeTest, EveryCanonicalCode) {
  struct Row {
    absl::StatusCode code;
    int http;
  };
  // grpc-gateway's table, written out by hand.
  const Row table[] = {
      {absl::StatusCode::kOk, 200},
      {absl::StatusCode::kCancelled, 499},
      {absl::StatusCode::kUnknown, 500},
      {absl::StatusCode::kInvalidArgument, 400},
      {absl::StatusCode::kDeadlineExceeded, 504},
      {absl::StatusCode::kNotFound, 404},
      {absl::StatusCode::kAlreadyExists, 409},
      {absl::StatusCode::kPermissionDenied, 403},
      {absl::StatusCode::kResourceExhausted, 429},
      {absl::StatusCode::kFailedPrecondition, 400},
      {absl::StatusCode::kAborted, 409},
      {absl::StatusCode::kOutOfRange, 400},
      {absl::StatusCode::kUnimplemented, 501},
      {absl::StatusCode::kInternal, 500},
      {absl::StatusCode::kUnavailable, 503},
      {absl::StatusCode::kDataLoss, 500},
      {absl::StatusCode::kUnauthenticated, 401},
  };
  // Every value of the enum (0..16) is in the table exactly once.
  ASSERT_EQ(std::size(table), 17u);
  for (int i = 0; i <= 16; ++i) {
    EXPECT_EQ(static_cast<int>(table[i].code), i);
  }
  for (const Row& row : table) {
    EXPECT_EQ(HttpStatusForCode(row.code), row.http)
        << absl::StatusCodeToString(row.code);
    // The same table as the Nats-Service-Error-Code the gateway writes.
    EXPECT_EQ(HttpStatusForCode(row.code),
              ServiceErrorCodeFromStatusCode(row.code))
        << absl::StatusCodeToString(row.code);
  }
  // Values outside the enum (a newer peer's code) are server errors.
  EXPECT_EQ(HttpStatusForCode(static_cast<absl::StatusCode>(17)), 500);
  EXPECT_EQ(HttpStatusForCode(static_cast<absl::StatusCode>(-1)), 500);
  EXPECT_EQ(HttpStatusForCode(static_cast<absl::StatusCode>(1000)), 500);
}

TEST(ErrorBodyTest, CodeMessageAndTraceAsValidJson) {
  nlohmann::json body = nlohmann::json::parse(
      ErrorBody(absl::StatusCode::kNotFound, "no \"such\" thing\n",
                "4bf92f3577b34da6a3ce929d0e0e4736"));
  EXPECT_EQ(body["code"], "NOT_FOUND");
  EXPECT_EQ(body["message"], "no \"such\" thing\n");
  EXPECT_EQ(body["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  body = nlohmann::json::parse(ErrorBody(absl::StatusCode::kInternal, "x"));
  EXPECT_FALSE(body.contains("trace_id"));
  // Caller input that is not UTF-8 never makes the body invalid JSON.
  body = nlohmann::json::parse(
      ErrorBody(absl::StatusCode::kInvalidArgument, "bad \xff\xfe bytes"));
  EXPECT_THAT(body["message"].get<std::string>(), HasSubstr("bad "));
}

// ---- subjects ----

TEST(ReservedSubjectTest, DollarNamespacesAndInboxes) {
  for (const char* s :
       {"$SRV.PING", "$SRV.INFO.users", "$JS.API.STREAM.DELETE.USERS", "$SYS",
        "$SYS.REQ.SERVER.PING", "$KV.bucket.key", "$O.store.x", "_INBOX.abc",
        "_INBOX.>", "$G"}) {
    EXPECT_TRUE(IsReservedSubject(s)) << s;
  }
  for (const char* s : {"users.RegisterUser", "SRV.INFO", "a.$SRV", "_INBOXES",
                        "inbox._INBOX", ">", "*.INFO", "x"}) {
    EXPECT_FALSE(IsReservedSubject(s)) << s;
  }
}

TEST(PatternCoversTest, LiteralSubjects) {
  EXPECT_TRUE(PatternCovers("users.RegisterUser", "users.RegisterUser"));
  EXPECT_FALSE(PatternCovers("users.RegisterUser", "users.RegisterUserX"));
  EXPECT_FALSE(PatternCovers("users.RegisterUser", "users"));
  EXPECT_FALSE(PatternCovers("users.RegisterUser", "users.RegisterUser.x"));
  EXPECT_TRUE(PatternCovers("users.*", "users.RegisterUser"));
  EXPECT_FALSE(PatternCovers("users.*", "users.a.b"));
  EXPECT_FALSE(PatternCovers("users.*", "users"));
  EXPECT_TRUE(PatternCovers("users.>", "users.a"));
  EXPECT_TRUE(PatternCovers("users.>", "users.a.b.c"));
  EXPECT_FALSE(PatternCovers("users.>", "users"));
  EXPECT_FALSE(PatternCovers("users.>", "email.a"));
  EXPECT_TRUE(PatternCovers(">", "anything.at.all"));
  EXPECT_TRUE(PatternCovers("*.events.*", "users.events.UserRegistered"));
  EXPECT_FALSE(PatternCovers("*.events.*", "users.calls.UserRegistered"));
}

TEST(PatternCoversTest, SubscriptionPatterns) {
  // A requested pattern must lie entirely within the allowed one.
  EXPECT_TRUE(PatternCovers("users.events.>", "users.events.>"));
  EXPECT_TRUE(PatternCovers("users.events.>", "users.events.*"));
  EXPECT_TRUE(PatternCovers("users.events.>", "users.events.*.x"));
  EXPECT_TRUE(PatternCovers("users.>", "users.events.>"));
  EXPECT_FALSE(PatternCovers("users.events.>", "users.>"));
  EXPECT_FALSE(PatternCovers("users.events.>", ">"));
  EXPECT_FALSE(PatternCovers("users.events.>", "users.*.UserRegistered"));
  EXPECT_TRUE(PatternCovers("users.*", "users.*"));
  // '*' is one token; '>' may be many.
  EXPECT_FALSE(PatternCovers("users.*", "users.>"));
  EXPECT_FALSE(PatternCovers("users.*.x", "users.>"));
  EXPECT_TRUE(PatternCovers(">", ">"));
  EXPECT_TRUE(PatternCovers(">", "*"));
  EXPECT_TRUE(PatternCovers("*", "*"));
  EXPECT_FALSE(PatternCovers("*", ">"));
}

TEST(SubjectAllowListTest, ParseAndMatch) {
  absl::StatusOr<SubjectAllowList> list = SubjectAllowList::Parse(
      " users.RegisterUser , email.*,, users.events.> ");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(list->patterns(),
              ::testing::ElementsAre("users.RegisterUser", "email.*",
                                     "users.events.>"));
  EXPECT_EQ(list->Match("users.RegisterUser"), "users.RegisterUser");
  EXPECT_EQ(list->Match("email.SendWelcomeEmail"), "email.*");
  EXPECT_EQ(list->Match("users.events.UserRegistered"), "users.events.>");
  EXPECT_EQ(list->Match("users.events.>"), "users.events.>");
  EXPECT_EQ(list->Match("users.Other"), std::nullopt);
  EXPECT_EQ(list->Match("email.a.b"), std::nullopt);

  absl::StatusOr<SubjectAllowList> empty = SubjectAllowList::Parse("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_EQ(empty->Match("users.RegisterUser"), std::nullopt);
}

TEST(SubjectAllowListTest, EverythingStillExcludesReservedSubjects) {
  absl::StatusOr<SubjectAllowList> all = SubjectAllowList::Parse(">");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->Match("users.RegisterUser"), ">");
  EXPECT_EQ(all->Match(">"), ">");
  for (const char* reserved :
       {"$SRV.PING", "$JS.API.STREAM.DELETE.USERS", "$SYS.REQ.SERVER.PING",
        "_INBOX.x.y", "$KV.email-service-idempotency.k", "_INBOX.>"}) {
    EXPECT_EQ(all->Match(reserved), std::nullopt) << reserved;
  }
}

TEST(SubjectAllowListTest, RefusesInvalidAndReservedEntries) {
  for (const char* bad : {"users..x", "users.a*", "a.>.b", "has space",
                          "$SRV.>", "_INBOX.>", "$JS.API.>"}) {
    absl::StatusOr<SubjectAllowList> list =
        SubjectAllowList::Parse(absl::StrCat("ok.subject,", bad));
    EXPECT_EQ(list.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(list.status().message(), HasSubstr("allow-list entry")) << bad;
  }
}

// ---- bearer tokens ----

constexpr char kTokenA[] = "tok-aaaaaaaaaaaaaaaaaaaa";
constexpr char kTokenB[] = "dG9rZW4tYmJiYmJiYmJiYmJi/+._~==";

TEST(TokenSetTest, ParsesLinesCommentsAndWhitespace) {
  absl::StatusOr<TokenSet> tokens =
      TokenSet::Parse(absl::StrCat("# edge tokens\n\n  ", kTokenA, "  \r\n\t",
                                   kTokenB, "\n# the end\n"),
                      "tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->size(), 2u);
  EXPECT_TRUE(tokens->Contains(kTokenA));
  EXPECT_TRUE(tokens->Contains(kTokenB));
  EXPECT_FALSE(tokens->Contains("tok-aaaaaaaaaaaaaaaaaaab"));
  EXPECT_FALSE(tokens->Contains("tok-aaaaaaaaaaaaaaaaaaa"));    // prefix
  EXPECT_FALSE(tokens->Contains("tok-aaaaaaaaaaaaaaaaaaaaa"));  // longer
  EXPECT_FALSE(tokens->Contains(""));
  EXPECT_FALSE(tokens->Contains("TOK-AAAAAAAAAAAAAAAAAAAA"));  // case matters
}

TEST(TokenSetTest, RefusesBadLinesWithoutShowingThem) {
  const std::string secret = "secret with spaces inside 0123456789";
  absl::StatusOr<TokenSet> tokens =
      TokenSet::Parse(absl::StrCat(kTokenA, "\n", secret, "\n"), "f.txt");
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokens.status().message(), HasSubstr("f.txt line 2"));
  EXPECT_THAT(tokens.status().message(), Not(HasSubstr("secret")));

  tokens = TokenSet::Parse("short-token\n", "f.txt");
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokens.status().message(), HasSubstr("line 1"));
  EXPECT_THAT(tokens.status().message(), HasSubstr("at least 16"));
  EXPECT_THAT(tokens.status().message(), Not(HasSubstr("short-token")));

  tokens = TokenSet::Parse("# only a comment\n\n", "f.txt");
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokens.status().message(), HasSubstr("no bearer token"));
}

TEST(TokenSetTest, LoadsAFileAndReportsAMissingOne) {
  const std::string path = ::testing::TempDir() + "edge_tokens_test.txt";
  {
    std::ofstream out(path, std::ios::trunc);
    out << kTokenA << "\n";
  }
  absl::StatusOr<TokenSet> tokens = TokenSet::Load(path);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_TRUE(tokens->Contains(kTokenA));
  std::remove(path.c_str());
  tokens = TokenSet::Load(path);
  EXPECT_EQ(tokens.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(tokens.status().message(), HasSubstr(path));
}

TEST(BearerTokenTest, SchemeAndValue) {
  EXPECT_EQ(BearerToken(absl::StrCat("Bearer ", kTokenA)), kTokenA);
  EXPECT_EQ(BearerToken(absl::StrCat("bearer   ", kTokenA, " ")), kTokenA);
  EXPECT_EQ(BearerToken(absl::StrCat("BEARER ", kTokenB)), kTokenB);
  EXPECT_EQ(BearerToken(absl::StrCat("Basic ", kTokenA)), std::nullopt);
  EXPECT_EQ(BearerToken("Bearer"), std::nullopt);
  EXPECT_EQ(BearerToken("Bearer "), std::nullopt);
  EXPECT_EQ(BearerToken(absl::StrCat("Bearer", kTokenA)), std::nullopt);
  EXPECT_EQ(BearerToken("Bearer two tokens"), std::nullopt);
  EXPECT_EQ(BearerToken(kTokenA), std::nullopt);
}

// ---- headers ----

TEST(TranslateHeadersTest, PrefixedHeadersBecomeNatsHeaders) {
  const std::vector<HttpHeader> http = {
      {"Content-Type", "application/json"},
      {"Authorization", "Bearer x"},
      {"Natsgw-Header-Tenant", "acme"},
      {"natsgw-header-x-request-id", "r-1"},
      {"NATSGW-HEADER-Accept-Language", "fr"},
      {"traceparent",
       "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
  };
  absl::StatusOr<Headers> headers = TranslateHeaders(http);
  ASSERT_TRUE(headers.ok()) << headers.status();
  EXPECT_EQ(headers->size(), 3u);
  EXPECT_EQ(headers->Get("Tenant"), "acme");
  EXPECT_EQ(headers->Get("x-request-id"), "r-1");
  EXPECT_EQ(headers->Get("Accept-Language"), "fr");
  EXPECT_FALSE(headers->Contains("traceparent"));
  EXPECT_FALSE(headers->Contains("Authorization"));
}

TEST(TranslateHeadersTest, RefusesReservedAndNatsKeys) {
  for (const char* key :
       {"traceparent", "Tracestate", "Nats-Msg-Id", "nats-msg-id",
        "Natsgw-Status", "Natsgw-Timeout-Us", "Natsgw-Anything", "Status",
        "Description", "Nats-Service-Error", "Nats-Expected-Stream",
        "Nats-Rollup", "NATS-TTL"}) {
    const std::string name = absl::StrCat("Natsgw-Header-", key);
    const std::vector<HttpHeader> http = {{name, "v"}};
    absl::StatusOr<Headers> headers = TranslateHeaders(http);
    EXPECT_EQ(headers.status().code(), absl::StatusCode::kInvalidArgument)
        << key;
    EXPECT_THAT(headers.status().message(), HasSubstr(name)) << key;
  }
}

TEST(TranslateHeadersTest, RefusesReplySubjects) {
  for (const char* name :
       {"Natsgw-Header-Reply-To", "natsgw-header-reply",
        "Natsgw-Header-X-Inbox", "NATSGW-HEADER-Nats-Reply-Subject",
        "Natsgw-Header-ReplyTo"}) {
    const std::vector<HttpHeader> http = {{name, "_INBOX.x"}};
    absl::StatusOr<Headers> headers = TranslateHeaders(http);
    EXPECT_EQ(headers.status().code(), absl::StatusCode::kInvalidArgument)
        << name;
    EXPECT_THAT(headers.status().message(), HasSubstr(kReplySubjectRule))
        << name;
  }
}

// Headers that are not translated never reach NATS: their names are the
// client's business (X-Inbox-Id, a Reply-To of the application's own).
TEST(TranslateHeadersTest, IgnoresReplyishHeadersThatAreNotTranslated) {
  const std::vector<HttpHeader> http = {{"X-Inbox-Id", "42"},
                                        {"Reply-To", "ada@example.com"},
                                        {"X-Reply-Subject", "_INBOX.x"},
                                        {"Natsgw-Inbox", "x"},
                                        {"Natsgw-Header-Tenant", "acme"}};
  absl::StatusOr<Headers> headers = TranslateHeaders(http);
  ASSERT_TRUE(headers.ok()) << headers.status();
  ASSERT_EQ(headers->size(), 1u);
  EXPECT_EQ(headers->begin()->key, "Tenant");
  EXPECT_EQ(headers->begin()->value, "acme");
}

TEST(TranslateHeadersTest, GatewayRulesApply) {
  // An empty key, a key outside the token alphabet, a value with a leading
  // space, keys that are prefixes of each other.
  const std::vector<std::vector<HttpHeader>> bad = {
      {{"Natsgw-Header-", "v"}},
      {{"Natsgw-Header-a(b)", "v"}},
      {{"Natsgw-Header-Tenant", " padded"}},
      {{"Natsgw-Header-Tenant", "a"}, {"Natsgw-Header-Tenant-Id", "b"}},
  };
  for (const auto& http : bad) {
    EXPECT_EQ(TranslateHeaders(http).status().code(),
              absl::StatusCode::kInvalidArgument)
        << http.back().name;
  }
  // Too many.
  std::vector<std::string> names;
  for (int i = 0; i < 65; ++i)
    names.push_back(absl::StrCat("Natsgw-Header-K", i, "x"));
  std::vector<HttpHeader> many;
  for (const std::string& n : names) many.push_back({n, "v"});
  EXPECT_EQ(TranslateHeaders(many).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- query parameters and timeouts ----

TEST(ParseQueryTest, AcceptedNamesOnly) {
  const absl::string_view call[] = {"timeout_ms"};
  absl::StatusOr<std::vector<QueryParam>> q =
      ParseQuery("timeout_ms=250", call);
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->size(), 1u);
  EXPECT_EQ((*q)[0].value, "250");
  EXPECT_TRUE(ParseQuery("", call).ok());

  const absl::string_view publish[] = {"type"};
  q = ParseQuery("type=natsgw.users.UserRegistered%20x", publish);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ((*q)[0].value, "natsgw.users.UserRegistered x");

  q = ParseQuery("timeout=5", call);
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(q.status().message(), HasSubstr("\"timeout\""));
  EXPECT_THAT(q.status().message(), HasSubstr("timeout_ms"));
  q = ParseQuery("timeout_ms=1&timeout_ms=2", call);
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* reply : {"reply=_INBOX.x", "reply_to=a", "replyTo=a",
                            "inbox=x", "Reply=y", "re%70ly=x"}) {
    q = ParseQuery(reply, call);
    EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument) << reply;
    EXPECT_THAT(q.status().message(), HasSubstr(kReplySubjectRule)) << reply;
  }
}

TEST(ParseTimeoutMsTest, RangeAndCap) {
  const absl::Duration fallback = absl::Seconds(5), max = absl::Seconds(30);
  EXPECT_EQ(*ParseTimeoutMs("", fallback, max), fallback);
  EXPECT_EQ(*ParseTimeoutMs("250", fallback, max), absl::Milliseconds(250));
  EXPECT_EQ(*ParseTimeoutMs("60000", fallback, max), max);  // capped
  for (const char* bad : {"0", "-5", "abc", "1.5", "+5", " 5", "86400001"}) {
    EXPECT_EQ(ParseTimeoutMs(bad, fallback, max).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(IsJsonContentTypeTest, MediaTypeWithParameters) {
  EXPECT_TRUE(IsJsonContentType("application/json"));
  EXPECT_TRUE(IsJsonContentType("Application/JSON; charset=utf-8"));
  EXPECT_TRUE(IsJsonContentType(" application/json ;charset=UTF-8"));
  EXPECT_FALSE(IsJsonContentType("text/plain"));
  EXPECT_FALSE(IsJsonContentType("application/x-www-form-urlencoded"));
  EXPECT_FALSE(IsJsonContentType("application/jsonx"));
  EXPECT_FALSE(IsJsonContentType(""));
}

}  // namespace
}  // namespace natsgw::edge
