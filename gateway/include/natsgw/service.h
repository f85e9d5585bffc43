// natsgw/service.h: a NATS Services API service (ADR-32): a named, versioned
// group of endpoints that `nats micro ls|info|stats|ping` and the nats.js
// services client can discover, inspect and call.
//
//   natsgw::ServiceConfig config;
//   config.name = "users";
//   config.version = "1.2.0";
//   config.description = "User registration";
//   config.endpoints.push_back({.name = "RegisterUser",
//                               .subject = "users.RegisterUser",
//                               .handler = register_user});
//   NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<natsgw::Service> service,
//                           natsgw::Service::Start(*conn, std::move(config)));
//
// Each instance gets a unique id and holds nine plain subscriptions
// ($SRV.PING|INFO|STATS, .<name>, .<name>.<id>) answering with the JSON
// documents of the spec (io.nats.micro.v1.{ping,info,stats}_response), plus one
// subscription per endpoint in its queue group ("q" unless configured), served
// with Connection::Serve. STATS reports per-endpoint counters and, in `data`,
// latency percentiles (p50_ns, p90_ns, p99_ns, p999_ns) and shed/expired
// counts.
//
// Thread-safety: thread-safe. Stop() (and the destructor) waits for handlers
// running on other threads; do not call it from inside an endpoint handler.
// The Connection must outlive the Service.
#ifndef NATSGW_SERVICE_H_
#define NATSGW_SERVICE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "natsgw/connection.h"
#include "natsgw/endpoint_stats.h"
#include "natsgw/message.h"
#include "natsgw/serve_options.h"

namespace natsgw {

struct EndpointConfig {
  // Endpoint name, [A-Za-z0-9_-]+; several endpoints may share one.
  std::string name;
  // Subject served (wildcards allowed, '>' only last). Empty: `name`.
  std::string subject;
  // Queue group; unset inherits ServiceConfig::queue_group. An empty string
  // serves without a queue group (every instance gets every request).
  std::optional<std::string> queue_group;
  // Endpoint metadata (ADR-33), e.g. the request/response types.
  std::map<std::string, std::string> metadata;
  RequestHandler handler;
  // Unset inherits ServiceConfig::serve.
  std::optional<ServeOptions> serve;
  // If set, replaces the serve options' rpc_method: what requests to this
  // endpoint are named in their SERVER spans. Typed endpoints set
  // "<package.Service>/<Method>".
  std::string rpc_method;
};

struct ServiceConfig {
  // Service name, [A-Za-z0-9_-]+.
  std::string name;
  // SemVer 2.0.0 version, e.g. "1.0.0".
  std::string version = "0.0.0";
  std::string description;
  // Service metadata; keys starting with "_nats" are reserved; keys plus values
  // at most 128 KiB in total.
  std::map<std::string, std::string> metadata;
  // Default queue group of the endpoints ("q", the Services API default).
  std::string queue_group = "q";
  // Default concurrency of the endpoints.
  ServeOptions serve;
  std::vector<EndpointConfig> endpoints;
};

class Service {
 public:
  // Validates `config` (INVALID_ARGUMENT naming the rule broken, nothing
  // subscribed, counted in natsgw_errors_total{operation="subscribe"} as a
  // refused Subscribe is), subscribes the endpoints and the control
  // subjects, and returns once the server knows all of them.
  static absl::StatusOr<std::unique_ptr<Service>> Start(Connection& conn,
                                                        ServiceConfig config);
  // Stops (see Stop()).
  ~Service();

  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Unsubscribes every endpoint and control subject, waiting for running
  // handlers. Idempotent.
  void Stop();

  // Stops gracefully (for a rolling update): unsubscribes the control
  // subjects at once (the instance stops being discoverable), then drains
  // every endpoint (Subscription::Drain): the server sends it no new
  // requests, and those already received are handled and answered within
  // `timeout` in all. Returns OK when every request was answered,
  // DEADLINE_EXCEEDED naming what was not (those were answered CANCELLED),
  // or the first error. Afterwards the service is stopped; Stop() and Drain()
  // are no-ops. Must not be called from one of the service's handlers.
  absl::Status Drain(absl::Duration timeout);

  // This instance's id: 22 characters [0-9A-Za-z], unique per Start().
  const std::string& id() const;
  const ServiceConfig& config() const;
  // When the service started or its statistics were last reset.
  absl::Time started() const;

  // Per-endpoint statistics, in configuration order.
  std::vector<EndpointStats> stats() const;
  // Zeroes all statistics and sets started() to now.
  void ResetStats();

  // The JSON documents this instance answers $SRV.PING, $SRV.INFO and
  // $SRV.STATS with.
  std::string PingJson() const;
  std::string InfoJson() const;
  std::string StatsJson() const;

  class Impl;

 private:
  explicit Service(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// INVALID_ARGUMENT if `config` breaks a rule of the Services API (name and
// endpoint name syntax, SemVer version, metadata size and reserved keys,
// endpoint subjects, duplicate subjects, missing handlers).
absl::Status ValidateServiceConfig(const ServiceConfig& config);

}  // namespace natsgw

#endif  // NATSGW_SERVICE_H_
