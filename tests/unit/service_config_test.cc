// NATS Services API pieces that need no server: ValidateServiceConfig (every
// rule, good and bad), SemVer, the RFC 3339 `started` format, and the exact
// PING/INFO/STATS documents (services-api.md b.3).
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/message_id.h"
#include "natsgw/service.h"
#include "nlohmann/json.hpp"
#include "service_json.h"

namespace natsgw {
namespace {

using ::nlohmann::json;
using ::testing::HasSubstr;

void ExpectInvalid(const absl::Status& s, absl::string_view rule) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(rule))) << s;
}

RequestHandler Echo() {
  return [](const Message& m) -> absl::StatusOr<Reply> {
    return Reply{m.data, {}};
  };
}

EndpointConfig Endpoint(std::string name, std::string subject = "") {
  EndpointConfig e;
  e.name = std::move(name);
  e.subject = std::move(subject);
  e.handler = Echo();
  return e;
}

ServiceConfig Valid() {
  ServiceConfig c;
  c.name = "users";
  c.version = "1.2.3";
  c.description = "User registration";
  c.metadata = {{"team", "identity"}};
  c.endpoints.push_back(Endpoint("RegisterUser", "users.RegisterUser"));
  c.endpoints.push_back(Endpoint("GetUser", "users.GetUser"));
  return c;
}

// ---------------------------------------------------------------------------
// ValidateServiceConfig.

TEST(ValidateServiceConfigTest, AcceptsValidConfigs) {
  EXPECT_TRUE(ValidateServiceConfig(Valid()).ok());

  ServiceConfig minimal;
  minimal.name = "a";
  EXPECT_TRUE(ValidateServiceConfig(minimal).ok())
      << "no endpoints and the default version are fine";

  ServiceConfig c = Valid();
  c.name = "Az09_-";
  c.queue_group = "";  // no queue group at all
  c.endpoints.push_back(Endpoint("wild", "users.*.events.>"));
  c.endpoints.push_back(Endpoint("bare"));  // subject defaults to the name
  // Same subject, other queue group: a different subscription.
  c.endpoints.push_back(Endpoint("RegisterUser2", "users.RegisterUser"));
  c.endpoints.back().queue_group = "other";
  // Several endpoints may share a name.
  c.endpoints.push_back(Endpoint("GetUser", "users.GetUser.v2"));
  c.endpoints.back().serve = ServeOptions{.workers = 4, .max_in_flight = 16};
  c.endpoints.back().metadata = {{"nats_like", "ok"}, {"x_nats", "ok"}};
  EXPECT_TRUE(ValidateServiceConfig(c).ok()) << ValidateServiceConfig(c);
}

TEST(ValidateServiceConfigTest, ServiceName) {
  for (const char* bad :
       {"", "a b", "a.b", "a*", "a>", "caf\xc3\xa9", "a/b", "$SRV"}) {
    ServiceConfig c = Valid();
    c.name = bad;
    ExpectInvalid(ValidateServiceConfig(c), "^[A-Za-z0-9_-]+$");
    ExpectInvalid(ValidateServiceConfig(c), "service name");
  }
  ServiceConfig c = Valid();
  c.name = std::string(300, 'n');
  ExpectInvalid(ValidateServiceConfig(c), "too long for its control subjects");
}

TEST(ValidateServiceConfigTest, VersionMustBeSemVer) {
  for (const char* bad : {"", "1", "1.2", "v1.2.3", "01.2.3", "1.2.3-01"}) {
    ServiceConfig c = Valid();
    c.version = bad;
    ExpectInvalid(ValidateServiceConfig(c), "SemVer 2.0.0");
    ExpectInvalid(ValidateServiceConfig(c),
                  absl::StrCat("version \"", bad, "\""));
  }
  for (const char* good : {"0.0.0", "10.20.30", "1.0.0-rc.1+build.5"}) {
    ServiceConfig c = Valid();
    c.version = good;
    EXPECT_TRUE(ValidateServiceConfig(c).ok()) << good;
  }
}

// The official examples from semver.org's regex test suite, plus edge cases.
TEST(SemVerTest, MatchesTheOfficialExamples) {
  const std::vector<std::string> valid = {
      "0.0.4",
      "1.2.3",
      "10.20.30",
      "1.1.2-prerelease+meta",
      "1.1.2+meta",
      "1.1.2+meta-valid",
      "1.0.0-alpha",
      "1.0.0-beta",
      "1.0.0-alpha.beta",
      "1.0.0-alpha.beta.1",
      "1.0.0-alpha.1",
      "1.0.0-alpha0.valid",
      "1.0.0-alpha.0valid",
      "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay",
      "1.0.0-rc.1+build.1",
      "2.0.0-rc.1+build.123",
      "1.2.3-beta",
      "10.2.3-DEV-SNAPSHOT",
      "1.2.3-SNAPSHOT-123",
      "1.0.0",
      "2.0.0",
      "1.1.7",
      "2.0.0+build.1848",
      "2.0.1-alpha.1227",
      "1.0.0-alpha+beta",
      "1.2.3----RC-SNAPSHOT.12.9.1--.12+788",
      "1.2.3----R-S.12.9.1--.12+meta",
      "1.2.3----RC-SNAPSHOT.12.9.1--.12",
      "1.0.0+0.build.1-rc.10000aaa-kk-0.1",
      "99999999999999999999999.999999999999999999.99999999999999999",
      "1.0.0-0A.is.legal",
      "1.0.0-0",
      "1.0.0--",
      "1.0.0+01",
  };
  const std::vector<std::string> invalid = {
      "1",
      "1.2",
      "1.2.3-0123",
      "1.2.3-0123.0123",
      "1.1.2+.123",
      "+invalid",
      "-invalid",
      "-invalid+invalid",
      "-invalid.01",
      "alpha",
      "alpha.beta",
      "alpha.beta.1",
      "alpha.1",
      "alpha+beta",
      "alpha_beta",
      "alpha.",
      "alpha..",
      "beta",
      "1.0.0-alpha_beta",
      "-alpha.",
      "1.0.0-alpha..",
      "1.0.0-alpha..1",
      "1.0.0-alpha...1",
      "1.0.0-alpha....1",
      "1.0.0-alpha.....1",
      "1.0.0-alpha......1",
      "1.0.0-alpha.......1",
      "01.1.1",
      "1.01.1",
      "1.1.01",
      "1.2",
      "1.2.3.DEV",
      "1.2-SNAPSHOT",
      "1.2.31.2.3----RC-SNAPSHOT.12.09.1--..12+788",
      "1.2-RC-SNAPSHOT",
      "-1.0.3-gamma+b7718",
      "+justmeta",
      "9.8.7+meta+meta",
      "9.8.7-whatever+meta+meta",
      "99999999999999999999999.999999999999999999.99999999999999999----RC-"
      "SNAPSHOT.12.09.1--------------------------------..12",
      "",
      "1.2.3-",
      "1.2.3+",
      "1.2.3-+",
      "1.2.3 ",
      " 1.2.3",
      "1.2.3\n",
      "\xd9\xa1.2.3",  // ARABIC-INDIC DIGIT ONE: \d is ASCII only
  };
  // The pattern of the Services API JSON schemas, verbatim.
  const std::regex official(
      R"(^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$)");
  for (const std::string& v : valid) {
    EXPECT_TRUE(internal::IsSemVer(v)) << v;
    EXPECT_TRUE(std::regex_match(v, official)) << v;
  }
  for (const std::string& v : invalid) {
    EXPECT_FALSE(internal::IsSemVer(v)) << v;
    EXPECT_FALSE(std::regex_match(v, official)) << v;
  }
}

// Every string over a small alphabet up to length 6 that contains the
// building blocks of a version: the hand-written matcher agrees with the
// official regex on all of them.
TEST(SemVerTest, AgreesWithTheOfficialRegexExhaustively) {
  const std::regex official(
      R"(^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$)");
  const std::string alphabet = "01.-+a";
  int checked = 0;
  int matched = 0;
  std::vector<std::string> level = {""};
  for (int len = 1; len <= 7; ++len) {
    std::vector<std::string> next;
    for (const std::string& prefix : level) {
      for (char c : alphabet) next.push_back(prefix + c);
    }
    for (const std::string& v : next) {
      const bool want = std::regex_match(v, official);
      ASSERT_EQ(internal::IsSemVer(v), want) << "\"" << v << "\"";
      ++checked;
      matched += want;
    }
    level = std::move(next);
  }
  EXPECT_GT(matched, 100) << "the corpus should contain real versions";
  EXPECT_GT(checked, 300000);
}

TEST(SemVerTest, LongInputIsFine) {
  EXPECT_TRUE(internal::IsSemVer(
      absl::StrCat("1.2.3-", std::string(1 << 20, 'a'), "+b")));
  EXPECT_FALSE(internal::IsSemVer(std::string(1 << 20, '1')));
}

TEST(ValidateServiceConfigTest, ServiceMetadata) {
  ServiceConfig c = Valid();
  c.metadata["_nats.reserved"] = "x";
  ExpectInvalid(ValidateServiceConfig(c), "reserved for NATS");
  ExpectInvalid(ValidateServiceConfig(c), "\"_nats.reserved\"");

  c = Valid();
  c.metadata = {{"k", std::string(128 * 1024 - 1, 'v')}};
  EXPECT_TRUE(ValidateServiceConfig(c).ok()) << "exactly 128 KiB is allowed";
  c.metadata = {{"k", std::string(128 * 1024, 'v')}};
  ExpectInvalid(ValidateServiceConfig(c), "131073 bytes; the limit is 131072");
  // Keys count too, summed over all entries.
  c.metadata = {{std::string(64 * 1024, 'a'), "1"},
                {std::string(64 * 1024, 'b'), ""}};
  ExpectInvalid(ValidateServiceConfig(c), "the limit is 131072");
}

TEST(ValidateServiceConfigTest, EndpointMetadata) {
  ServiceConfig c = Valid();
  c.endpoints[1].metadata["_nats"] = "x";
  ExpectInvalid(ValidateServiceConfig(c), "endpoint 1 (\"GetUser\")");
  ExpectInvalid(ValidateServiceConfig(c), "reserved for NATS");

  c = Valid();
  // The limit applies per endpoint, not summed with the service's.
  c.metadata = {{"k", std::string(100 * 1024, 'v')}};
  c.endpoints[0].metadata = {{"k", std::string(100 * 1024, 'v')}};
  EXPECT_TRUE(ValidateServiceConfig(c).ok());
  c.endpoints[0].metadata = {{"k", std::string(129 * 1024, 'v')}};
  ExpectInvalid(ValidateServiceConfig(c), "endpoint 0 (\"RegisterUser\")");
  ExpectInvalid(ValidateServiceConfig(c), "the limit is 131072");
}

TEST(ValidateServiceConfigTest, EndpointName) {
  for (const char* bad : {"", "a b", "a.b", "Register*"}) {
    ServiceConfig c = Valid();
    c.endpoints[1].name = bad;
    c.endpoints[1].subject = "users.x";
    ExpectInvalid(ValidateServiceConfig(c), "endpoint 1");
    ExpectInvalid(ValidateServiceConfig(c), "^[A-Za-z0-9_-]+$");
  }
}

TEST(ValidateServiceConfigTest, EndpointSubject) {
  for (const char* bad : {"a..b", "a b", "a.>.b", "a.b*", ".a"}) {
    ServiceConfig c = Valid();
    c.endpoints[0].subject = bad;
    ExpectInvalid(ValidateServiceConfig(c), "endpoint 0 (\"RegisterUser\")");
    ExpectInvalid(ValidateServiceConfig(c), "subject");
  }
  for (const char* reserved : {"$SRV.PING", "$SRV.users.x", "$SRV.>"}) {
    ServiceConfig c = Valid();
    c.endpoints[0].subject = reserved;
    ExpectInvalid(ValidateServiceConfig(c), "must not start with \"$SRV.\"");
  }
  // The default subject (the name) is checked too.
  ServiceConfig c = Valid();
  c.endpoints[0].subject = "";
  EXPECT_TRUE(ValidateServiceConfig(c).ok());
}

TEST(ValidateServiceConfigTest, QueueGroups) {
  ServiceConfig c = Valid();
  c.queue_group = "q w";
  ExpectInvalid(ValidateServiceConfig(c), "queue_group \"q w\"");
  c = Valid();
  c.endpoints[1].queue_group = "q*";
  ExpectInvalid(ValidateServiceConfig(c), "endpoint 1");
  ExpectInvalid(ValidateServiceConfig(c), "wildcard");
}

TEST(ValidateServiceConfigTest, DuplicateSubjectAndQueueGroup) {
  ServiceConfig c = Valid();
  c.endpoints.push_back(Endpoint("Other", "users.GetUser"));
  ExpectInvalid(ValidateServiceConfig(c), "duplicates endpoint 1");
  ExpectInvalid(ValidateServiceConfig(c), "endpoint 2 (\"Other\")");

  // Explicitly the service's group is the same group.
  c.endpoints.back().queue_group = "q";
  ExpectInvalid(ValidateServiceConfig(c), "duplicates endpoint 1");

  // A default subject (the name) that equals another's explicit subject.
  c = Valid();
  c.endpoints.push_back(Endpoint("dup", "dup"));
  c.endpoints.push_back(Endpoint("dup"));
  ExpectInvalid(ValidateServiceConfig(c), "duplicates endpoint 2");

  // Both without a queue group: still the same subscription twice.
  c = Valid();
  c.queue_group = "";
  c.endpoints.push_back(Endpoint("Other", "users.GetUser"));
  ExpectInvalid(ValidateServiceConfig(c), "duplicates endpoint 1");
  c.endpoints.back().queue_group = "g";
  EXPECT_TRUE(ValidateServiceConfig(c).ok());
}

TEST(ValidateServiceConfigTest, Handler) {
  ServiceConfig c = Valid();
  c.endpoints[1].handler = nullptr;
  ExpectInvalid(ValidateServiceConfig(c),
                "endpoint 1 (\"GetUser\") handler: must be set");
}

TEST(ValidateServiceConfigTest, ServeOptions) {
  ServiceConfig c = Valid();
  c.serve.workers = -1;
  ExpectInvalid(ValidateServiceConfig(c), "serve.workers -1");
  c = Valid();
  c.serve.max_in_flight = -5;
  ExpectInvalid(ValidateServiceConfig(c), "serve.max_in_flight -5");
  c = Valid();
  c.endpoints[0].serve = ServeOptions{.workers = -2};
  ExpectInvalid(ValidateServiceConfig(c), "endpoint 0");
  ExpectInvalid(ValidateServiceConfig(c), "serve.workers -2");
  c = Valid();
  c.endpoints[0].serve = ServeOptions{.workers = 2, .max_in_flight = -1};
  ExpectInvalid(ValidateServiceConfig(c), "serve.max_in_flight -1");
  // A pool needs room for at least one request per worker.
  c = Valid();
  c.serve = ServeOptions{.workers = 4, .max_in_flight = 3};
  ExpectInvalid(ValidateServiceConfig(c), "at least serve.workers (4)");
  c.serve = ServeOptions{.workers = 4, .max_in_flight = 4};
  EXPECT_TRUE(ValidateServiceConfig(c).ok());
  c.serve = ServeOptions{.workers = 0, .max_in_flight = 1};
  EXPECT_TRUE(ValidateServiceConfig(c).ok()) << "inline with a limit";
}

TEST(ValidateServiceConfigTest, LongValuesAreCutInMessages) {
  ServiceConfig c = Valid();
  c.version = std::string(10000, '9');
  absl::Status s = ValidateServiceConfig(c);
  ExpectInvalid(s, "SemVer");
  EXPECT_LT(s.message().size(), 400u) << s;
  c = Valid();
  c.name = "bad\nname";
  ExpectInvalid(ValidateServiceConfig(c), "\"bad\\nname\"");
}

// ---------------------------------------------------------------------------
// RFC 3339.

absl::Time At(int64_t y, int mo, int d, int h, int mi, int s,
              absl::Duration frac = absl::ZeroDuration()) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s),
                         absl::UTCTimeZone()) +
         frac;
}

TEST(Rfc3339Test, PadsThenTrimsTheFraction) {
  const absl::Time t = At(2026, 9, 1, 10, 0, 0);
  EXPECT_EQ(internal::FormatRfc3339Nano(t), "2026-09-01T10:00:00Z");
  EXPECT_EQ(internal::FormatRfc3339Nano(t + absl::Milliseconds(5)),
            "2026-09-01T10:00:00.005Z");
  EXPECT_EQ(internal::FormatRfc3339Nano(t + absl::Milliseconds(500)),
            "2026-09-01T10:00:00.5Z");
  EXPECT_EQ(internal::FormatRfc3339Nano(t + absl::Nanoseconds(123456789)),
            "2026-09-01T10:00:00.123456789Z");
  EXPECT_EQ(internal::FormatRfc3339Nano(t + absl::Nanoseconds(1)),
            "2026-09-01T10:00:00.000000001Z");
  EXPECT_EQ(internal::FormatRfc3339Nano(t + absl::Microseconds(10)),
            "2026-09-01T10:00:00.00001Z");
  // Trailing zeros of the seconds themselves are not fraction digits.
  EXPECT_EQ(internal::FormatRfc3339Nano(At(2020, 1, 2, 3, 4, 50)),
            "2020-01-02T03:04:50Z");
  EXPECT_EQ(internal::FormatRfc3339Nano(At(2000, 10, 10, 10, 10, 0) +
                                        absl::Milliseconds(100)),
            "2000-10-10T10:10:00.1Z");
  EXPECT_EQ(internal::FormatRfc3339Nano(absl::UnixEpoch()),
            "1970-01-01T00:00:00Z");
}

TEST(Rfc3339Test, TruncatesBelowANanosecondAndIsUtc) {
  const absl::Time t = At(2026, 9, 1, 10, 0, 0) + absl::Nanoseconds(7);
  EXPECT_EQ(internal::FormatRfc3339Nano(t + absl::Nanoseconds(1) / 4),
            "2026-09-01T10:00:00.000000007Z");
  // Whatever the local time zone, the output is UTC and parses back.
  absl::Time now = absl::Now();
  absl::Time parsed;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full,
                              internal::FormatRfc3339Nano(now), &parsed, &err))
      << err;
  EXPECT_EQ(parsed, absl::FromUnixNanos(absl::ToUnixNanos(now)));
}

// ---------------------------------------------------------------------------
// Documents.

std::string Id() { return "Vd2aXnLJyx6b3ZqTQ9mP1k"; }

TEST(ServiceJsonTest, Ping) {
  ServiceConfig c = Valid();
  const std::string text = internal::PingJson(c, Id()).value();
  EXPECT_EQ(text, R"({"type":"io.nats.micro.v1.ping_response","name":"users",)"
                  R"("id":"Vd2aXnLJyx6b3ZqTQ9mP1k","version":"1.2.3",)"
                  R"("metadata":{"team":"identity"}})");
  c.metadata.clear();
  EXPECT_EQ(json::parse(internal::PingJson(c, Id()).value())["metadata"],
            json::object())
      << "empty metadata is {} and never null";
}

TEST(ServiceJsonTest, InfoEmitsEveryField) {
  ServiceConfig c = Valid();
  c.endpoints[0].metadata = {{"fbs.root", "RegisterUserRequest"}};
  c.endpoints[1].queue_group = "";  // disabled: emitted as ""
  c.endpoints.push_back(Endpoint("bare"));
  c.endpoints.back().queue_group = "workers";
  const json doc = json::parse(internal::InfoJson(c, Id()).value());
  const json want = json::parse(R"({
    "type": "io.nats.micro.v1.info_response",
    "name": "users", "id": "Vd2aXnLJyx6b3ZqTQ9mP1k", "version": "1.2.3",
    "metadata": {"team": "identity"},
    "description": "User registration",
    "endpoints": [
      {"name": "RegisterUser", "subject": "users.RegisterUser",
       "queue_group": "q", "metadata": {"fbs.root": "RegisterUserRequest"}},
      {"name": "GetUser", "subject": "users.GetUser", "queue_group": "",
       "metadata": {}},
      {"name": "bare", "subject": "bare", "queue_group": "workers",
       "metadata": {}}
    ]})");
  EXPECT_EQ(doc, want) << doc.dump(2);

  ServiceConfig empty;
  empty.name = "e";
  const json e = json::parse(internal::InfoJson(empty, Id()).value());
  EXPECT_EQ(e["description"], "");
  EXPECT_EQ(e["metadata"], json::object());
  EXPECT_EQ(e["endpoints"], json::array()) << "never omitted, never null";
  EXPECT_EQ(e["version"], "0.0.0");
}

TEST(ServiceJsonTest, StatsAreIntegersWithData) {
  ServiceConfig c = Valid();
  EndpointStats s;
  s.num_requests = 3;
  s.num_errors = 1;
  s.last_error = "404:no such user";
  s.processing_time = absl::Nanoseconds(1000);  // average 333.33 -> 333
  s.shed = 7;
  s.expired = 2;
  s.p50 = absl::Microseconds(52);
  s.p90 = absl::Microseconds(90);
  s.p99 = absl::Microseconds(410);
  s.p999 = absl::Milliseconds(2);
  const absl::Time started = At(2026, 9, 1, 10, 0, 0, absl::Milliseconds(5));
  const std::vector<EndpointStats> stats = {s};  // endpoint 1: no entry
  const std::string text = internal::StatsJson(c, Id(), started, stats).value();
  const json doc = json::parse(text);
  const json want = json::parse(R"({
    "type": "io.nats.micro.v1.stats_response",
    "name": "users", "id": "Vd2aXnLJyx6b3ZqTQ9mP1k", "version": "1.2.3",
    "metadata": {"team": "identity"},
    "started": "2026-09-01T10:00:00.005Z",
    "endpoints": [
      {"name": "RegisterUser", "subject": "users.RegisterUser",
       "queue_group": "q", "num_requests": 3, "num_errors": 1,
       "last_error": "404:no such user", "processing_time": 1000,
       "average_processing_time": 333,
       "data": {"p50_ns": 52000, "p90_ns": 90000, "p99_ns": 410000,
                "p999_ns": 2000000, "shed": 7, "expired": 2}},
      {"name": "GetUser", "subject": "users.GetUser", "queue_group": "q",
       "num_requests": 0, "num_errors": 0, "last_error": "",
       "processing_time": 0, "average_processing_time": 0,
       "data": {"p50_ns": 0, "p90_ns": 0, "p99_ns": 0, "p999_ns": 0,
                "shed": 0, "expired": 0}}
    ]})");
  EXPECT_EQ(doc, want) << doc.dump(2);
  for (const json& e : doc["endpoints"]) {
    for (const char* key : {"num_requests", "num_errors", "processing_time",
                            "average_processing_time"}) {
      EXPECT_TRUE(e[key].is_number_integer()) << key;
    }
    for (const auto& [key, value] : e["data"].items()) {
      EXPECT_TRUE(value.is_number_integer()) << key;
    }
  }
  EXPECT_THAT(text, HasSubstr(R"("average_processing_time":333,)"));

  ServiceConfig none;
  none.name = "e";
  const json e =
      json::parse(internal::StatsJson(none, Id(), started, {}).value());
  EXPECT_EQ(e["endpoints"], json::array());
  EXPECT_EQ(e["metadata"], json::object());
}

TEST(ServiceJsonTest, EscapesStringsAndReplacesInvalidUtf8) {
  ServiceConfig c = Valid();
  c.description = "quote \" backslash \\ newline \n tab \t nul " +
                  std::string(1, '\0') + " caf\xc3\xa9";
  c.metadata = {{"k\"ey", "v\x01"}};
  const std::string info = internal::InfoJson(c, Id()).value();
  const json doc = json::parse(info);
  EXPECT_EQ(doc["description"], c.description);
  EXPECT_EQ(doc["metadata"]["k\"ey"], "v\x01");

  EndpointStats s;
  s.num_errors = 1;
  s.last_error = "500:bad bytes \xff\xfe end \"}";
  const std::string text =
      internal::StatsJson(c, Id(), absl::UnixEpoch(), {s}).value();
  const json stats = json::parse(text);  // valid JSON despite the bytes
  EXPECT_EQ(stats["endpoints"][0]["last_error"],
            "500:bad bytes \xef\xbf\xbd\xef\xbf\xbd end \"}");
}

TEST(ServiceJsonTest, ControlSubjects) {
  EXPECT_EQ(internal::ControlSubject("PING", "", ""), "$SRV.PING");
  EXPECT_EQ(internal::ControlSubject("INFO", "users", ""), "$SRV.INFO.users");
  EXPECT_EQ(internal::ControlSubject("STATS", "users", Id()),
            "$SRV.STATS.users.Vd2aXnLJyx6b3ZqTQ9mP1k");
}

}  // namespace
}  // namespace natsgw
