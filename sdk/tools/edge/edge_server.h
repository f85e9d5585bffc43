// edge_server.h: natsgw-edge's HTTP/JSON front door, as a class that runs in
// any process next to a natsgw::Connection (the natsgw-edge binary is main()
// around it; tests run it in-process).
//
//   natsgw::edge::EdgeOptions options;
//   options.port = 8080;
//   options.schema_paths = {"schemas/"};
//   NATSGW_ASSIGN_OR_RETURN(options.allow_call,
//       natsgw::edge::SubjectAllowList::Parse("users.RegisterUser"));
//   NATSGW_ASSIGN_OR_RETURN(options.tokens,
//       natsgw::edge::TokenSet::Load("/etc/natsgw-edge/tokens"));
//   NATSGW_ASSIGN_OR_RETURN(auto edge,
//       natsgw::edge::EdgeServer::Create(options, *conn, registry));
//   // curl -H 'Authorization: Bearer ...' -H 'Content-Type: application/json'
//   //      -d '{"email":"ada@example.com"}'
//   http://host:8080/v1/call/users.RegisterUser
//   ...
//   edge->Drain(absl::Seconds(30));   // on SIGTERM
//
// Routes (docs/edge.md is the user's guide):
//   POST /v1/call/{subject}       JSON request -> the method's request type
//                                 (local schemas, else $SRV.INFO discovery)
//                                 -> Connection::Request -> 200 + JSON reply
//   POST /v1/publish/{subject}    JSON event -> its type (the subject's
//                                 "<prefix>.events.<Event>", or ?type=)
//                                 -> Connection::Publish -> 202
//   GET  /v1/subscribe/{subject}  server-sent events, one per NATS message
//   GET  /healthz, /readyz        liveness and readiness (JSON)
// Everything else is 404; a known path with another method is 405.
//
// Every /v1 request passes, in this order: method (405), draining (503),
// bearer token (401), query parameters and headers, including any attempt to
// choose a reply subject (400), subject syntax (400), reserved subjects and
// the route's allow-list (403), Content-Type (415), body size (413), then the
// JSON translation (400). Nothing reaches NATS before all of them passed.
//
// Worker threads: civetweb answers each HTTP connection on one of
// `http_threads` workers for as long as the exchange lasts; an event stream
// holds its worker until it ends. `max_streams` must leave at least
// kMinRequestThreads workers for everything else (Create checks), so streams
// can never starve calls and probes; one stream too many is 429.
//
// Thread-safety: every method may be called from any thread. Requests are
// served on civetweb's threads, concurrently. The Connection and the
// registry must outlive the server. Destroying the server ends open streams
// (event: shutdown), waits for requests in progress and stops listening.
#ifndef NATSGW_SDK_TOOLS_EDGE_EDGE_SERVER_H_
#define NATSGW_SDK_TOOLS_EDGE_EDGE_SERVER_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "edge_rules.h"
#include "natsgw/connection.h"
#include "natsgw/logger.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace natsgw::edge {

struct EdgeOptions {
  // Address and TCP port of the API; port 0 picks a free one (port()).
  std::string listen_address = "0.0.0.0";
  int port = 8080;
  // civetweb worker threads: concurrent HTTP exchanges, streams included.
  int http_threads = 64;
  // Concurrent event streams; at most http_threads - kMinRequestThreads.
  int max_streams = 32;
  // Largest request body; a larger Content-Length is refused before the body
  // is read (413), a chunked body as soon as it grows past the limit.
  size_t max_body_bytes = 1 << 20;
  // Call timeout when the caller gives no ?timeout_ms=, and the cap of any
  // ?timeout_ms=.
  absl::Duration timeout = absl::Seconds(5);
  absl::Duration max_timeout = absl::Seconds(30);
  // Longest wait for the next bytes of a request's headers and for a write
  // to a client to progress, and the longest a request body may take as a
  // whole (408 after it); a stuck or trickling client loses its connection.
  absl::Duration read_timeout = absl::Seconds(10);
  // An event stream sends a comment this often when it has nothing else to
  // send, so proxies keep it open and a departed client is noticed (a write
  // to it fails, at the latest on the second keep-alive).
  absl::Duration sse_keepalive = absl::Seconds(15);
  // Messages an event stream holds for a slow client; beyond that new ones
  // are dropped, counted and reported to the client as `event: dropped`.
  int sse_queue = 256;
  // The same limit in bytes (payloads, subjects and headers of the messages
  // held), so a few large messages cannot make a stream hold much memory;
  // overflow is handled as above.
  size_t sse_queue_bytes = 4 << 20;
  // How long a method resolved through $SRV.INFO is remembered (a failed
  // resolution: at most a second; the 1024 most recent subjects), and how
  // long one resolution collects $SRV.INFO answers. One resolution runs at
  // a time.
  absl::Duration resolve_ttl = absl::Minutes(1);
  absl::Duration discovery_wait = absl::Milliseconds(500);
  // Schemas: .fbs/.bfbs files or directories (tools::SchemaSet::Load) and
  // the include directories of .fbs files. May be empty: then every method
  // is resolved through $SRV.INFO and events decode with the schemas found
  // that way.
  std::vector<std::string> schema_paths;
  std::vector<std::string> schema_include;
  // What each route may reach; empty lists allow nothing.
  SubjectAllowList allow_call;
  SubjectAllowList allow_publish;
  SubjectAllowList allow_subscribe;
  // Bearer tokens. Without tokens (nullopt) every caller is let in, which
  // Create accepts only with allow_unauthenticated.
  std::optional<TokenSet> tokens;
  bool allow_unauthenticated = false;
  // Diagnostics (refusals at debug level, server errors as warnings; never a
  // token or a body). Null: none.
  std::shared_ptr<Logger> logger;
};

class EdgeServer {
 public:
  // Workers kept free of event streams (see the file comment).
  static constexpr int kMinRequestThreads = 4;

  // Loads the schemas and starts listening. INVALID_ARGUMENT for options out
  // of range (naming the option); FAILED_PRECONDITION without tokens and
  // without allow_unauthenticated; the schema loader's error; UNAVAILABLE if
  // the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<EdgeServer>> Create(
      EdgeOptions options, Connection& connection,
      std::shared_ptr<prometheus::Registry> registry);

  // The option checks of Create, without starting anything (so a program
  // can report bad settings before it connects to NATS). Messages name the
  // options by their field names.
  static absl::Status ValidateOptions(const EdgeOptions& options);
  ~EdgeServer();

  EdgeServer(const EdgeServer&) = delete;
  EdgeServer& operator=(const EdgeServer&) = delete;

  // Replaces the bearer tokens (e.g. after the file was re-read on SIGHUP);
  // requests already admitted are not affected.
  void SetTokens(TokenSet tokens);

  // What /readyz on the API port reports: UNAVAILABLE while draining or while
  // the Connection is not ready (Connection::Readiness), else OK.
  absl::Status Readiness() const;

  // Stops taking work: from now on /readyz is 503 and new /v1 requests are
  // 503 "draining"; open event streams end with `event: shutdown`. Waits up
  // to `timeout` for the requests in progress (calls finish normally).
  // DEADLINE_EXCEEDED naming how many are still running when it passes.
  // Irreversible; later calls wait again.
  absl::Status Drain(absl::Duration timeout);
  bool draining() const;

  // The port bound, and "http://<host>:<port>" with 127.0.0.1 for a wildcard
  // listen address.
  int port() const;
  std::string url() const;

  // The schemas loaded at start, one line each (tools::SchemaSet::Describe).
  std::vector<std::string> DescribeSchemas() const;

 private:
  class Impl;
  explicit EdgeServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace natsgw::edge

#endif  // NATSGW_SDK_TOOLS_EDGE_EDGE_SERVER_H_
