// natsgw/connection_options.h: how a Connection reaches NATS and behaves at
// its limits.
//
//   natsgw::ConnectionOptions options;
//   options.servers = {"nats://nats-0:4222", "nats://nats-1:4222"};
//   options.name = "user-service";
//   options.registry = registry;            // prometheus::Registry to fill
//   options.logger = std::make_shared<natsgw::StderrLogger>();
//   options.span_sink = spans;               // natsgw/span_sink.h, optional
//   auto conn = natsgw::Connection::Create(options);
//
// Thread-safety: a value type.
#ifndef NATSGW_CONNECTION_OPTIONS_H_
#define NATSGW_CONNECTION_OPTIONS_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "natsgw/logger.h"
#include "natsgw/span_sink.h"
#include "natsgw/validation.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace natsgw {

struct ReconnectPolicy {
  // Whether to reconnect at all after losing the server.
  bool enabled = true;
  // Attempts per server before giving up and closing; -1 means forever.
  int max_attempts = -1;
  // Pause between attempts against the same server, plus up to `jitter`.
  absl::Duration wait = absl::Milliseconds(250);
  absl::Duration jitter = absl::Milliseconds(100);
  // Publishes made while reconnecting are buffered up to this many bytes and
  // sent after reconnecting; beyond it Publish fails with RESOURCE_EXHAUSTED.
  size_t buffer_bytes = 8 << 20;
};

// How a connection proves who it is to the NATS server. Set at most one
// kind: `user` with `password`, or `token`, or `creds_file`, or `nkey` with
// `nkey_seed_file`. All empty (the default) means none, or whatever a server
// URL carries ("nats://user:password@host:4222"). A client certificate
// (TlsOptions) may come on top. natsgw never writes these values to a log, a
// metric or an error message.
struct NatsCredentials {
  // User name and password (the server's `authorization { users }`).
  std::string user;
  std::string password;
  // Authentication token (the server's `authorization { token }`).
  std::string token;
  // Path of a NATS credentials file (a user JWT and its NKey seed, as `nsc`
  // writes them) for decentralized authentication. The file is read when
  // connecting and again on every reconnect, so a rotated file is picked up.
  std::string creds_file;
  // NKey authentication (the server's `authorization { users: [{nkey: ...}]
  // }`): the user's public NKey ("U..."), and the path of the file holding its
  // seed ("SU..."), read when connecting and on every reconnect to sign the
  // server's nonce.
  std::string nkey;
  std::string nkey_seed_file;
};

// TLS to the NATS server. Off unless a field is set (or a server URL starts
// with tls://); then the connection is encrypted and the server's
// certificate is verified, never falling back to plain text.
struct TlsOptions {
  // Require TLS even with no other field set (the system's CA store then
  // verifies the server).
  bool enabled = false;
  // PEM file of the CA(s) that signed the server's certificate.
  std::string ca_file;
  // Client certificate and its private key (PEM), for servers that verify
  // clients (mutual TLS, `tls { verify: true }`). Both or neither.
  std::string cert_file;
  std::string key_file;
  // The name the server's certificate must carry, when it differs from the
  // host in the URL (e.g. connecting by IP address).
  std::string expected_hostname;
};

struct ConnectionOptions {
  // Server URLs ("nats://host:port"); the connection picks among them and
  // fails over between them. Servers announced by the cluster are added.
  std::vector<std::string> servers = {"nats://127.0.0.1:4222"};
  // Client name shown by the server's monitoring endpoints (/connz).
  std::string name;
  // Credentials, for servers that require them. A server that rejects them
  // makes Create() fail with UNAUTHENTICATED.
  NatsCredentials credentials;
  // TLS, for servers that offer or require it.
  TlsOptions tls;
  // Time allowed to establish the TCP connection and NATS handshake.
  absl::Duration connect_timeout = absl::Seconds(2);
  // If true, Create() succeeds even when no server is reachable yet and the
  // connection keeps trying in the background (sends fail with UNAVAILABLE
  // until then). If false, Create() fails with UNAVAILABLE.
  bool retry_on_failed_connect = false;
  ReconnectPolicy reconnect;
  // After nats.c reports a slow consumer (a subscription's pending limit was
  // reached and messages were dropped), Readiness() fails for this long, so
  // a load balancer sends new work elsewhere while the backlog clears.
  absl::Duration slow_consumer_unready_for = absl::Seconds(10);
  // Liveness check: a PING every `ping_interval`; after `max_pings_out`
  // unanswered ones the server is considered gone and reconnection starts.
  // nats.c's default (2 min x 2) notices a hung server only after minutes.
  absl::Duration ping_interval = absl::Seconds(5);
  int max_pings_out = 2;

  // Fire-and-forget publishes are coalesced into few socket writes (nats.c's
  // flusher, up to 1 ms or 32 KiB) on their own NATS connection, while
  // requests and replies go out at once on a second one. Set to false to use a
  // single connection that sends every message immediately (one write per
  // message; strict ordering between publishes and requests). See
  // README.md "Latency and batching".
  bool batch_publishes = true;

  // Size limits checked before anything is sent.
  MessageLimits limits;

  // Metrics are recorded here (families natsgw_*). If null, a private registry
  // is created; reach it through Connection::registry().
  std::shared_ptr<prometheus::Registry> registry;
  // Distinct subject label values per metric family before further subjects
  // are recorded as "_other" (guards against subjects that embed IDs).
  size_t max_metric_subjects = 256;

  // Diagnostics sink. If null: a JsonLogger on stderr (natsgw/json_logger.h)
  // for warnings and errors, named `name`. A NullLogger discards everything.
  std::shared_ptr<Logger> logger;

  // Receives a span (natsgw/span_sink.h) for every publish, request, handled
  // request and handled message of a sampled trace, e.g. a
  // JsonLinesSpanExporter (natsgw/json_span_exporter.h) or an adapter to
  // another tracer. If null, no spans are made (the message paths then only
  // test this pointer). Shared: one sink may serve several connections.
  std::shared_ptr<SpanSink> span_sink;
  // Share of the traces this connection starts (a send with no current
  // trace, a received message without a valid traceparent) that are
  // sampled: 1 (the default) samples every one, 0 none. Between 0 and 1,
  // else Create() fails with INVALID_ARGUMENT. A trace that arrives with a
  // traceparent keeps its sender's decision. See natsgw/trace_sampling.h.
  double trace_sample_ratio = 1.0;
};

}  // namespace natsgw

#endif  // NATSGW_CONNECTION_OPTIONS_H_
