// harness/http_client.h: a minimal blocking HTTP/1.0 GET client for tests.
//
// Defines HttpResponse and HttpGet(), used to probe nats-server's monitoring
// endpoints (/healthz, /jsz, /varz) and to scrape Prometheus /metrics pages
// served by the code under test. No third-party HTTP library is available on
// the build machines, and tests only ever need a GET against a loopback
// server, so this is deliberately tiny: one request per connection, no TLS,
// no redirects, no keep-alive.
//
//   absl::StatusOr<natsgw::testing::HttpResponse> r =
//       natsgw::testing::HttpGet("127.0.0.1", monitor_port, "/healthz");
//   if (r.ok() && r->status == 200) { ... }
//
// Errors (as absl::StatusCode):
//   kUnavailable       the connection could not be made (e.g. refused: nobody
//                      listens on the port) or was reset;
//   kDeadlineExceeded  the whole exchange did not finish within `timeout`
//                      (e.g. the server process is stopped with SIGSTOP: the
//                      kernel still accepts the connection but nobody answers);
//   kInvalidArgument   bad host, port or path;
//   kDataLoss          the response is not parseable HTTP or is truncated;
//   kResourceExhausted the response exceeds 64 MiB.
// An HTTP error status (404, 503, ...) is NOT an error: it is returned in
// HttpResponse::status so that callers can assert on it.
//
// Thread-safety: HttpGet() is a free function with no shared state; it is safe
// to call concurrently from any number of threads.
#ifndef NATSGW_TESTS_HARNESS_HTTP_CLIENT_H_
#define NATSGW_TESTS_HARNESS_HTTP_CLIENT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace natsgw::testing {

// One HTTP response. Thread-compatible plain value.
struct HttpResponse {
  // The status code from the status line, e.g. 200 or 404.
  int status = 0;
  // The Content-Type header value verbatim (e.g. "text/plain; version=0.0.4"),
  // empty if the server sent none.
  std::string content_type;
  // The body, with any chunked transfer encoding removed.
  std::string body;
};

// Sends `GET <path> HTTP/1.0` to host:port and returns the response.
//
// `host` is a numeric IPv4/IPv6 address or a name resolvable without network
// access (e.g. "localhost"). `path` must start with '/'. `timeout` bounds the
// whole exchange: resolution excepted, connect + send + receive together never
// take longer than it.
absl::StatusOr<HttpResponse> HttpGet(absl::string_view host, int port,
                                     absl::string_view path,
                                     absl::Duration timeout = absl::Seconds(5));

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_HARNESS_HTTP_CLIENT_H_
