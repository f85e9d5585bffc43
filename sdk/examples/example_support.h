// Shared plumbing of the example binaries (user-service, email-service,
// register-users): command-line flags, output lines keyed by trace ID, the
// diagnostics logger, waiting for SIGTERM/SIGINT, and the start-up and
// shutdown of a service.
//
// Two streams: stdout carries the demo's human-readable lines (PrintLine,
// the ready and shutdown lines); stderr carries diagnostics, by default as
// JSON lines (natsgw::JsonLogger) with --log_format=text for plain lines and
// --log_level=debug|info|warning|error (default info) to choose how much.
//
// Thread-safety: PrintLine may be called from any thread; the other functions
// are for main().
#ifndef NATSGW_SDK_EXAMPLES_EXAMPLE_SUPPORT_H_
#define NATSGW_SDK_EXAMPLES_EXAMPLE_SUPPORT_H_

#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "natsgw/connection.h"
#include "natsgw/logger.h"
#include "natsgw/metrics_server.h"
#include "natsgw/service.h"
#include "natsgw/stream_config.h"

ABSL_DECLARE_FLAG(std::string, nats_url);

namespace natsgw::examples {

// Parses flags (with a --help that lists this program's flags) and blocks
// SIGINT/SIGTERM in every thread created afterwards, so WaitForShutdown()
// can take them synchronously.
void InitProgram(int argc, char** argv, absl::string_view usage);

// Reports a failed `status` on stderr, secrets masked: an error entry with
// the status code as field "code" (--log_format=json) or
// "<program>: <code>: <message>" (text). Returns the process exit status (0
// for OK, 1 otherwise).
int ExitStatus(absl::string_view program, const absl::Status& status);

// Blocks until SIGINT or SIGTERM arrives; returns its name.
std::string WaitForShutdown();

// Connection options from --nats_url (default: $NATS_URL, else
// nats://127.0.0.1:4222), the credentials of --nats_user/--nats_password,
// --nats_token, --nats_creds or --nats_nkey/--nats_nkey_seed (defaults: the
// environment variables of the same names in capitals, e.g. $NATS_USER) and
// TLS from --nats_ca, --nats_cert/--nats_key ($NATS_CA, $NATS_CERT,
// $NATS_KEY), named `name`, logging through
// LoggerFromFlags(name), with spans appended to --trace_file (JSON lines,
// service name `name`) for --trace_sample_ratio of new traces. Fails if the
// trace file cannot be opened.
absl::StatusOr<ConnectionOptions> ConnectionOptionsFromFlags(
    absl::string_view name);

// A new logger writing this program's diagnostics to stderr as --log_format
// and --log_level say: a JsonLogger named `name` (the default) or a
// StderrLogger.
std::shared_ptr<Logger> LoggerFromFlags(absl::string_view name);

// What an example service runs on (service_support.cc, services only).
struct ServiceRuntime {
  std::shared_ptr<prometheus::Registry> registry;
  std::unique_ptr<Connection> connection;
  // Serves `registry`, /healthz and /readyz on --metrics_port; null when the
  // port is -1. Declared after `connection`, so it is destroyed first (its
  // readiness check uses the connection).
  std::unique_ptr<MetricsServer> metrics;

  // ", metrics at http://..., health at ..., readiness at ..., drain at ..."
  // or "" without a metrics endpoint.
  std::string MetricsNote() const;
};

// Prints "<name> ready: <what> on <url>, metrics at ...", blocks until
// SIGINT/SIGTERM, then shuts down gracefully: runs `stop_serving` (which
// must stop taking work and wait for running handlers, e.g. by destroying
// the services and subscriptions) and closes the connection, which flushes
// what the handlers published. GET /drainz on the metrics port (the
// Kubernetes preStop hook) does the same drain earlier, answering once it is
// done; the process then waits for the signal to exit.
void RunUntilShutdown(absl::string_view name, absl::string_view what,
                      ServiceRuntime& runtime,
                      absl::FunctionRef<void()> stop_serving);

// "Services API service "users" 0.1.0 (instance <id>) serving
// users.RegisterUser": what `service` announces to `nats micro`, for the
// ready line.
std::string DescribeService(const Service& service);

// Connects as `name` (ConnectionOptionsFromFlags) recording metrics into a
// new registry, and serves it on --metrics_port, by default on
// `default_metrics_port` (0 picks a free port, -1 disables it).
absl::StatusOr<ServiceRuntime> StartService(absl::string_view name,
                                            int default_metrics_port);

// Writes "<component> trace=<id> <text>" to stdout as one line.
void PrintLine(absl::string_view component, absl::string_view trace_id,
               absl::string_view text);

// "123 us" below 10 ms, "12.3 ms" above.
std::string FormatLatency(absl::Duration d);

// --stream_replicas: the replicas of every stream and KV bucket the example
// services declare (JetStream checks the range).
int StreamReplicas();

// The JetStream stream of user events (USERS, users.events.>): declared the
// same way by the user service (which publishes to it) and the e-mail
// service (which consumes it), so whichever starts first creates it and the
// other verifies it.
StreamConfig UsersEventsStream();

// A random lower-case hex string of `digits` digits.
std::string RandomHex(int digits);

}  // namespace natsgw::examples

#endif  // NATSGW_SDK_EXAMPLES_EXAMPLE_SUPPORT_H_
