// service_json.h (internal): the pure parts of natsgw::Service — the NATS
// Services API documents ($SRV.PING|INFO|STATS replies, services-api.md b.3),
// the RFC 3339 `started` timestamp, and how an endpoint's subject and queue
// group are resolved. Kept free of any connection so that unit tests can check
// the exact JSON without a server.
//
//   std::string ping = natsgw::internal::PingJson(config, id);
//   // {"type":"io.nats.micro.v1.ping_response","name":"users",...}
//
// Every field of the spec is always emitted (metadata {} never null,
// description "", endpoints [] never omitted, last_error ""); counters and
// durations are JSON integers (nanoseconds), because Go clients unmarshal
// durations into int64 and reject floats. Strings that are not valid UTF-8
// are emitted with U+FFFD in place of the bad bytes rather than failing: a
// handler's error message may carry arbitrary bytes, and a STATS reply must
// still be produced.
//
// Thread-safety: pure functions; safe from any thread.
#ifndef NATSGW_GATEWAY_SRC_SERVICE_JSON_H_
#define NATSGW_GATEWAY_SRC_SERVICE_JSON_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "natsgw/endpoint_stats.h"
#include "natsgw/service.h"

namespace natsgw::internal {

// The `type` field of each document; consumers drop replies with another.
inline constexpr absl::string_view kPingResponseType =
    "io.nats.micro.v1.ping_response";
inline constexpr absl::string_view kInfoResponseType =
    "io.nats.micro.v1.info_response";
inline constexpr absl::string_view kStatsResponseType =
    "io.nats.micro.v1.stats_response";

// The control subject prefix. ADR-32 says it should be overridable, but
// nats.go hard-codes it and every tool queries it, so natsgw does too.
inline constexpr absl::string_view kControlSubjectPrefix = "$SRV";

// `t` as RFC 3339 in UTC with nanosecond precision, trailing zeros of the
// fraction trimmed (and the '.' too when the fraction is zero), as Go's
// time.RFC3339Nano: 2026-09-01T10:00:00.005Z, 2026-09-01T10:00:00Z. The
// fraction is zero-padded to 9 digits before trimming, so 5 ms is ".005"
// (nats.c's micro prints ".5" there, i.e. 500 ms). Sub-nanosecond parts are
// truncated. `t` must be a finite time in years 0000-9999.
std::string FormatRfc3339Nano(absl::Time t);

// The subject an endpoint is served on: its `subject`, or its `name` when the
// subject is empty.
std::string EndpointSubject(const EndpointConfig& endpoint);

// The queue group an endpoint is served in: its own `queue_group` if set,
// else the service's. An empty result means a plain subscription.
std::string ResolveQueueGroup(const ServiceConfig& config,
                              const EndpointConfig& endpoint);

// The control subject of `verb` ("PING", "INFO", "STATS") for all services
// (empty `name`), for one service name (empty `id`), or for one instance.
std::string ControlSubject(absl::string_view verb, absl::string_view name,
                           absl::string_view id);

// The documents, compact (no whitespace), keys in the order of the spec's
// examples. `stats` pairs with config.endpoints by index; an endpoint without
// an entry (a shorter span) reports zeros. nlohmann-json reports failures by
// throwing; they are caught here and returned as INTERNAL (with invalid UTF-8
// replaced, only memory exhaustion is left to fail).
absl::StatusOr<std::string> PingJson(const ServiceConfig& config,
                                     absl::string_view id);
absl::StatusOr<std::string> InfoJson(const ServiceConfig& config,
                                     absl::string_view id);
absl::StatusOr<std::string> StatsJson(const ServiceConfig& config,
                                      absl::string_view id, absl::Time started,
                                      absl::Span<const EndpointStats> stats);

// True if `version` matches the official SemVer 2.0.0 regular expression
// (semver.org, the `version` pattern of the Services API schemas). Written by
// hand: std::regex matches recursively and may overflow the stack on long
// input, and a version string is user input.
bool IsSemVer(absl::string_view version);

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_SERVICE_JSON_H_
