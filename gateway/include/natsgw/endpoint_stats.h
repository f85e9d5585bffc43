// natsgw/endpoint_stats.h: what a served endpoint has done since it started
// (or since its statistics were last reset). The NATS Services API STATS
// reply is built from it.
//
//   natsgw::EndpointStats s = endpoint->stats();
//   std::cout << s.num_requests << " requests, p99 " << s.p99;
//
// Thread-safety: a value type (a snapshot).
#ifndef NATSGW_ENDPOINT_STATS_H_
#define NATSGW_ENDPOINT_STATS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace natsgw {

struct EndpointStats {
  // Handler invocations that returned (NATS Services API num_requests).
  int64_t num_requests = 0;
  // Requests answered with an error: handler errors, shed and expired
  // requests, replies that could not be sent.
  int64_t num_errors = 0;
  // The latest error as "<HTTP-like code>:<message>" (NATS Services API
  // convention), or empty.
  std::string last_error;
  // Total handler wall time (excludes time spent queued).
  absl::Duration processing_time;
  // Requests answered RESOURCE_EXHAUSTED because the endpoint was full.
  int64_t shed = 0;
  // Requests answered DEADLINE_EXCEEDED because they expired before running.
  int64_t expired = 0;
  // Handler time percentiles (log-bucketed, within ~3%); zero if no request.
  absl::Duration p50;
  absl::Duration p90;
  absl::Duration p99;
  absl::Duration p999;

  absl::Duration average_processing_time() const {
    return num_requests == 0 ? absl::ZeroDuration()
                             : processing_time / num_requests;
  }
};

}  // namespace natsgw

#endif  // NATSGW_ENDPOINT_STATS_H_
