// discovery.h: what the NATS Services API says about the services running
// behind a connection ($SRV.PING|INFO|STATS, reference/services-api.md), and
// resolving a subject to its FlatBuffers request and response types from
// local schemas or from the endpoint metadata natsgw services announce
// (fbs.request_type, fbs.response_type, fbs.file_identifier; service
// metadata fbs.bfbs carries the base64 of the binary schema).
//
//   NATSGW_ASSIGN_OR_RETURN(std::vector<natsgw::tools::ServiceInfo> infos,
//       natsgw::tools::DiscoverInfo(*conn, /*name=*/"", absl::Seconds(1)));
//
// Discovery is scatter-gather: one request to $SRV.<VERB>[.<name>[.<id>]]
// with a reply subscription of its own ("_INBOX.<random>", published to with
// PublishOptions::reply_to) that collects every answer for `wait` (or until
// `max_answers`), so every instance answers, as `nats micro` does. When no
// service at all listens, the server's "no responders" ends the wait at
// once.
//
// Thread-safety: free functions with no shared state; safe to call
// concurrently on one Connection.
#ifndef NATSGW_SDK_TOOLS_COMMON_DISCOVERY_H_
#define NATSGW_SDK_TOOLS_COMMON_DISCOVERY_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "natsgw/connection.h"
#include "schema_set.h"

namespace natsgw::tools {

struct EndpointInfo {
  std::string name;
  std::string subject;
  std::string queue_group;
  std::map<std::string, std::string> metadata;
};

// One instance's io.nats.micro.v1.info_response.
struct ServiceInfo {
  std::string name, id, version, description;
  std::map<std::string, std::string> metadata;
  std::vector<EndpointInfo> endpoints;
  std::string raw_json;  // the answer as received
};

struct EndpointStatsInfo {
  std::string name, subject, queue_group;
  long long num_requests = 0, num_errors = 0;
  long long processing_time_ns = 0, average_processing_time_ns = 0;
  std::string last_error;
};

// One instance's io.nats.micro.v1.stats_response.
struct ServiceStatsInfo {
  std::string name, id, version, started;
  std::vector<EndpointStatsInfo> endpoints;
  std::string raw_json;
};

// One instance's io.nats.micro.v1.ping_response.
struct PingInfo {
  std::string name, id, version;
  absl::Duration rtt;  // time until this answer arrived
};

struct DiscoverOptions {
  // Service name to ask ($SRV.<VERB>.<name>); empty asks every service.
  std::string name;
  // Instance ID ($SRV.<VERB>.<name>.<id>); needs `name`.
  std::string id;
  // How long answers are collected.
  absl::Duration wait = absl::Seconds(1);
  // Stop collecting after this many answers (0: no limit but the built-in
  // one, 10000 answers or 64 MiB of them, against a flood).
  int max_answers = 0;
};

// Answers sorted by (name, id). An answer that is not valid JSON of the
// right type is skipped and counted in `*malformed` (if not null). No
// answer at all is OK with an empty vector: the caller decides whether
// that is an error (the CLI's `services ls` prints "no services").
// INVALID_ARGUMENT for bad options (a name or id that is not a subject
// token [A-Za-z0-9_-]+, an id without a name, a wait that is not positive
// and finite, negative max_answers); the Connection's errors otherwise.
absl::StatusOr<std::vector<PingInfo>> DiscoverPing(
    Connection& conn, const DiscoverOptions& options, int* malformed = nullptr);
absl::StatusOr<std::vector<ServiceInfo>> DiscoverInfo(
    Connection& conn, const DiscoverOptions& options, int* malformed = nullptr);
absl::StatusOr<std::vector<ServiceStatsInfo>> DiscoverStats(
    Connection& conn, const DiscoverOptions& options, int* malformed = nullptr);

// A binary schema a service announces in its service metadata (fbs.bfbs).
struct AnnouncedSchema {
  std::string service;  // name of the (first) service announcing it
  std::string bfbs;     // the binary schema, base64-decoded
  // The fbs.request_type of each of that service's endpoints ("" for an
  // endpoint without one).
  std::vector<std::string> request_types;
};

// The distinct schemas announced in `infos`, in their order: a schema
// announced again (by another instance or service) is listed once, and
// metadata that is not valid base64 is skipped.
std::vector<AnnouncedSchema> AnnouncedSchemas(
    const std::vector<ServiceInfo>& infos);

// Parsers of the three answer kinds (also used by the tests and the edge):
// INVALID_ARGUMENT naming the field that is missing or mistyped. Required
// are the fields the Services API's JSON schemas require (type, name, id,
// version; STATS also started, endpoints and every endpoint counter, as
// integers); metadata may be null or absent (read as empty), as may INFO's
// description and endpoints.
absl::StatusOr<ServiceInfo> ParseInfo(absl::string_view json);
absl::StatusOr<ServiceStatsInfo> ParseStats(absl::string_view json);
absl::StatusOr<PingInfo> ParsePing(absl::string_view json);

// The method served on `subject`: from `schemas` under its default prefix
// if a loaded rpc_service serves it (FAILED_PRECONDITION if two do);
// otherwise from the endpoint metadata of the services that answer
// $SRV.INFO (fbs.request_type/fbs.response_type/fbs.file_identifier; an
// endpoint subject with wildcards matches too, then MethodInfo::subject is
// the announced pattern), adding their fbs.bfbs binary schema to `schemas`
// when the types are not loaded yet. Collecting stops at the first answer
// that settles it, so `wait` is only spent when nothing does. NOT_FOUND says
// what was tried (local schemas, N services asked) and how to fix it
// (--schema); INVALID_ARGUMENT names the service whose fbs.bfbs is broken.
absl::StatusOr<MethodInfo> ResolveMethod(
    Connection& conn, SchemaSet& schemas, absl::string_view subject,
    absl::Duration wait = absl::Seconds(1));

}  // namespace natsgw::tools

#endif  // NATSGW_SDK_TOOLS_COMMON_DISCOVERY_H_
