// natsgw::tools::ParsePing/ParseInfo/ParseStats without a server: the
// documents natsgw's own Service emits (gateway/src/service_json.h), the
// Services API examples (reference JSON), and answers other
// implementations get wrong or a hostile peer could send; every failure
// names the field.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "discovery.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "natsgw/endpoint_stats.h"
#include "natsgw/service.h"
#include "service_json.h"

namespace natsgw::tools {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::SizeIs;

void ExpectInvalid(const absl::Status& s, absl::string_view text) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(text))) << s;
}

ServiceConfig UsersConfig() {
  ServiceConfig config;
  config.name = "users";
  config.version = "1.2.3";
  config.description = "natsgw.users.Users (users.fbs)";
  config.metadata = {{"fbs.service", "natsgw.users.Users"},
                     {"fbs.bfbs", "AAAA"}};
  EndpointConfig endpoint;
  endpoint.name = "RegisterUser";
  endpoint.subject = "users.RegisterUser";
  endpoint.metadata = {{"fbs.request_type", "natsgw.users.RegisterUserRequest"},
                       {"fbs.response_type", "natsgw.users.RegisterUserReply"}};
  endpoint.handler = [](const Message& m) -> absl::StatusOr<Reply> {
    return Reply{m.data, {}};
  };
  config.endpoints.push_back(std::move(endpoint));
  EndpointConfig untyped;
  untyped.name = "raw";
  untyped.queue_group = "";
  untyped.handler = [](const Message& m) -> absl::StatusOr<Reply> {
    return Reply{m.data, {}};
  };
  config.endpoints.push_back(std::move(untyped));
  return config;
}

TEST(DiscoveryParseTest, ReadsWhatNatsgwServicesAnswer) {
  const ServiceConfig config = UsersConfig();
  const std::string id = "rvLTkQC23iCwwZGUZHfwsJ";

  absl::StatusOr<std::string> ping_json = internal::PingJson(config, id);
  ASSERT_TRUE(ping_json.ok());
  absl::StatusOr<PingInfo> ping = ParsePing(*ping_json);
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(ping->name, "users");
  EXPECT_EQ(ping->id, id);
  EXPECT_EQ(ping->version, "1.2.3");

  absl::StatusOr<std::string> info_json = internal::InfoJson(config, id);
  ASSERT_TRUE(info_json.ok());
  absl::StatusOr<ServiceInfo> info = ParseInfo(*info_json);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->name, "users");
  EXPECT_EQ(info->id, id);
  EXPECT_EQ(info->description, "natsgw.users.Users (users.fbs)");
  EXPECT_THAT(info->metadata,
              ElementsAre(Pair("fbs.bfbs", "AAAA"),
                          Pair("fbs.service", "natsgw.users.Users")));
  ASSERT_THAT(info->endpoints, SizeIs(2));
  EXPECT_EQ(info->endpoints[0].name, "RegisterUser");
  EXPECT_EQ(info->endpoints[0].subject, "users.RegisterUser");
  EXPECT_EQ(info->endpoints[0].queue_group, "q");
  EXPECT_THAT(info->endpoints[0].metadata, SizeIs(2));
  EXPECT_EQ(info->endpoints[1].subject, "raw");
  EXPECT_EQ(info->endpoints[1].queue_group, "");
  EXPECT_THAT(info->endpoints[1].metadata, IsEmpty());
  EXPECT_EQ(info->raw_json, *info_json);

  EndpointStats registered;
  registered.num_requests = 7;
  registered.num_errors = 2;
  registered.last_error = "409:ALREADY_EXISTS: \"quoted\"\n";
  registered.processing_time = absl::Microseconds(700);
  const std::vector<EndpointStats> stats_in = {registered, EndpointStats{}};
  absl::StatusOr<std::string> stats_json = internal::StatsJson(
      config, id, absl::FromUnixSeconds(1700000000), stats_in);
  ASSERT_TRUE(stats_json.ok());
  absl::StatusOr<ServiceStatsInfo> stats = ParseStats(*stats_json);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->name, "users");
  EXPECT_EQ(stats->started, "2023-11-14T22:13:20Z");
  ASSERT_THAT(stats->endpoints, SizeIs(2));
  EXPECT_EQ(stats->endpoints[0].num_requests, 7);
  EXPECT_EQ(stats->endpoints[0].num_errors, 2);
  EXPECT_EQ(stats->endpoints[0].last_error, registered.last_error);
  EXPECT_EQ(stats->endpoints[0].processing_time_ns, 700000);
  EXPECT_EQ(stats->endpoints[0].average_processing_time_ns, 100000);
  EXPECT_EQ(stats->endpoints[1].num_requests, 0);
}

// The Services API's own examples (services-api.md b.3), as nats.go
// services send them.
TEST(DiscoveryParseTest, ReadsTheSpecExamples) {
  absl::StatusOr<PingInfo> ping =
      ParsePing(R"({"type":"io.nats.micro.v1.ping_response","name":"orders",)"
                R"("id":"Vd2aXnLJyx6b3ZqTQ9mP1k","version":"1.4.0",)"
                R"("metadata":{"k8s.pod":"orders-7f9c"}})");
  ASSERT_TRUE(ping.ok()) << ping.status();
  EXPECT_EQ(ping->name, "orders");

  absl::StatusOr<ServiceInfo> info = ParseInfo(
      R"({"type":"io.nats.micro.v1.info_response","name":"orders",)"
      R"("id":"Vd2aXnLJyx6b3ZqTQ9mP1k","version":"1.4.0","metadata":{},)"
      R"("description":"Order RPC","endpoints":[{"name":"create",)"
      R"("subject":"orders.create","queue_group":"q",)"
      R"("metadata":{"fbs.root":"CreateOrder"}}]})");
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_THAT(info->endpoints, SizeIs(1));
  EXPECT_THAT(info->endpoints[0].metadata,
              ElementsAre(Pair("fbs.root", "CreateOrder")));

  absl::StatusOr<ServiceStatsInfo> stats = ParseStats(
      R"({"type":"io.nats.micro.v1.stats_response","name":"orders",)"
      R"("id":"Vd2aXnLJyx6b3ZqTQ9mP1k","version":"1.4.0","metadata":{},)"
      R"("started":"2026-09-01T10:00:00.123456789Z",)"
      R"("endpoints":[{"name":"create","subject":"orders.create",)"
      R"("queue_group":"q","num_requests":1200,"num_errors":3,)"
      R"("last_error":"503:overloaded","processing_time":84000000,)"
      R"("average_processing_time":70000,)"
      R"("data":{"p50_ns":52000,"p99_ns":410000}}]})");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->endpoints[0].num_requests, 1200);
  EXPECT_EQ(stats->endpoints[0].last_error, "503:overloaded");
}

// What other implementations send: null metadata (natscli once choked on
// it), missing optional fields (nats.c omits metadata from PING).
TEST(DiscoveryParseTest, ToleratesWhatTheSpecAllows) {
  absl::StatusOr<PingInfo> ping =
      ParsePing(R"({"type":"io.nats.micro.v1.ping_response","name":"a",)"
                R"("id":"b","version":"0.0.1"})");
  ASSERT_TRUE(ping.ok()) << ping.status();
  absl::StatusOr<ServiceInfo> info =
      ParseInfo(R"({"type":"io.nats.micro.v1.info_response","name":"a",)"
                R"("id":"b","version":"0.0.1","metadata":null,)"
                R"("endpoints":[{"name":"e","subject":"s","metadata":null}]})");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->description, "");
  EXPECT_THAT(info->metadata, IsEmpty());
  EXPECT_EQ(info->endpoints[0].queue_group, "");
  absl::StatusOr<ServiceInfo> no_endpoints =
      ParseInfo(R"({"type":"io.nats.micro.v1.info_response","name":"a",)"
                R"("id":"b","version":"0.0.1"})");
  ASSERT_TRUE(no_endpoints.ok()) << no_endpoints.status();
  EXPECT_THAT(no_endpoints->endpoints, IsEmpty());
}

TEST(DiscoveryParseTest, ErrorsNameTheField) {
  constexpr absl::string_view kPing =
      R"({"type":"io.nats.micro.v1.ping_response","name":"a","id":"b"})";
  ExpectInvalid(ParsePing(kPing).status(), "\"version\" is missing");
  ExpectInvalid(
      ParsePing(R"({"type":"io.nats.micro.v1.info_response","name":"a",)"
                R"("id":"b","version":"1.0.0"})")
          .status(),
      "want \"io.nats.micro.v1.ping_response\"");
  ExpectInvalid(
      ParsePing(R"({"name":"a","id":"b","version":"1.0.0"})").status(),
      "\"type\" is missing");
  ExpectInvalid(
      ParsePing(R"({"type":"io.nats.micro.v1.ping_response","name":7,)"
                R"("id":"b","version":"1.0.0"})")
          .status(),
      "\"name\" is not a string");
  ExpectInvalid(ParsePing("").status(), "not valid JSON");
  ExpectInvalid(ParsePing("{\"type\":").status(), "not valid JSON");
  ExpectInvalid(ParsePing("[1,2]").status(), "not a JSON object");
  ExpectInvalid(ParsePing(std::string(100000, '[')).status(), "PING answer");
  ExpectInvalid(ParsePing("\"\xff\"").status(), "not valid JSON");

  constexpr absl::string_view kInfoHead =
      R"({"type":"io.nats.micro.v1.info_response","name":"a","id":"b",)"
      R"("version":"1.0.0",)";
  ExpectInvalid(
      ParseInfo(absl::StrCat(kInfoHead, R"("metadata":[]})")).status(),
      "\"metadata\" is not an object");
  ExpectInvalid(
      ParseInfo(absl::StrCat(kInfoHead, R"("metadata":{"k":1}})")).status(),
      "metadata \"k\" is not a string");
  ExpectInvalid(
      ParseInfo(absl::StrCat(kInfoHead, R"("endpoints":{}})")).status(),
      "\"endpoints\" is not an array");
  ExpectInvalid(
      ParseInfo(absl::StrCat(kInfoHead, R"("endpoints":[1]})")).status(),
      "not an object");
  ExpectInvalid(
      ParseInfo(absl::StrCat(kInfoHead, R"("endpoints":[{"name":"e"}]})"))
          .status(),
      "endpoint 0: field \"subject\" is missing");

  constexpr absl::string_view kStatsHead =
      R"({"type":"io.nats.micro.v1.stats_response","name":"a","id":"b",)"
      R"("version":"1.0.0","started":"2026-01-01T00:00:00Z",)";
  ExpectInvalid(
      ParseStats(absl::StrCat(kStatsHead.substr(0, kStatsHead.size() - 1), "}"))
          .status(),
      "\"endpoints\" is missing");
  const std::string endpoint_head =
      R"("endpoints":[{"name":"e","subject":"s","num_requests":1,)"
      R"("num_errors":0,"last_error":"","processing_time":10,)";
  // A float duration: nats micro stats rejects it, and so do we.
  ExpectInvalid(ParseStats(absl::StrCat(kStatsHead, endpoint_head,
                                        R"("average_processing_time":10.5}]})"))
                    .status(),
                "\"average_processing_time\" is not an integer");
  ExpectInvalid(
      ParseStats(absl::StrCat(kStatsHead, endpoint_head,
                              R"("average_processing_time":1e400}]})"))
          .status(),
      "STATS answer");
  ExpectInvalid(ParseStats(absl::StrCat(kStatsHead, endpoint_head,
                                        R"("average_processing_time":)"
                                        R"(18446744073709551615}]})"))
                    .status(),
                "out of range");
  absl::StatusOr<ServiceStatsInfo> ok = ParseStats(absl::StrCat(
      kStatsHead, endpoint_head, R"("average_processing_time":10}]})"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->endpoints[0].average_processing_time_ns, 10);
  ExpectInvalid(
      ParseStats(absl::StrCat(kStatsHead,
                              R"("endpoints":[{"name":"e","subject":"s",)"
                              R"("num_requests":1,"num_errors":0,)"
                              R"("processing_time":10,)"
                              R"("average_processing_time":10}]})"))
          .status(),
      "\"last_error\" is missing");
}

TEST(DiscoveryParseTest, AnnouncedSchemasAreDecodedOnceEach) {
  auto info = [](std::string name, std::string bfbs_base64,
                 std::vector<std::string> request_types) {
    ServiceInfo info;
    info.name = std::move(name);
    if (!bfbs_base64.empty()) info.metadata["fbs.bfbs"] = bfbs_base64;
    for (std::string& type : request_types) {
      EndpointInfo endpoint;
      if (!type.empty()) endpoint.metadata["fbs.request_type"] = type;
      info.endpoints.push_back(std::move(endpoint));
    }
    return info;
  };
  const std::vector<ServiceInfo> infos = {
      info("users", "c2NoZW1hLUE=", {"a.Req", ""}),  // "schema-A"
      info("users", "c2NoZW1hLUE=", {"a.Req"}),      // another instance
      info("plain", "", {"p.Req"}),                  // announces none
      info("broken", "not base64!", {"b.Req"}),
      info("email", "c2NoZW1hLUI=", {}),  // "schema-B"
  };
  const std::vector<AnnouncedSchema> schemas = AnnouncedSchemas(infos);
  ASSERT_THAT(schemas, SizeIs(2));
  EXPECT_EQ(schemas[0].service, "users");
  EXPECT_EQ(schemas[0].bfbs, "schema-A");
  EXPECT_THAT(schemas[0].request_types, ElementsAre("a.Req", ""));
  EXPECT_EQ(schemas[1].service, "email");
  EXPECT_EQ(schemas[1].bfbs, "schema-B");
  EXPECT_THAT(schemas[1].request_types, IsEmpty());
}

}  // namespace
}  // namespace natsgw::tools
