// natsgw-edge: the HTTP/JSON front door of a natsgw system. Clients outside
// NATS (browsers, scripts, other languages) call services, publish events
// and follow subjects as server-sent events, in JSON, translated to and from
// the FlatBuffers the services speak (docs/edge.md).
//
//   natsgw-edge --nats_url=nats://127.0.0.1:4222 --schema=schemas
//       --allow_call=users.RegisterUser --allow_subscribe='users.events.>'
//       --bearer_tokens_file=/etc/natsgw-edge/tokens
//
// The API listens on --port (8080); /metrics, /healthz, /readyz and /drainz
// on --metrics_port (9090), as the example services do, so the same
// Kubernetes probes, preStop hook and ServiceMonitor apply. SIGTERM (or GET
// /drainz first) drains: readiness goes 503, new requests are refused with
// 503, event streams end with `event: shutdown`, calls in progress finish;
// then the process exits 0. SIGHUP re-reads --bearer_tokens_file.
//
// Exit status: 0 after a drain, 1 when NATS or the listening ports fail, 2
// for invalid flags (named in the message).
#include <prometheus/registry.h>
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "edge_server.h"
#include "example_support.h"
#include "natsgw/metrics_server.h"
#include "natsgw/status_macros.h"
#include "schema_set.h"

ABSL_FLAG(int, port, 8080,
          "TCP port of the HTTP/JSON API (/v1/call, /v1/publish, "
          "/v1/subscribe, /healthz, /readyz); 0 picks a free port");
ABSL_FLAG(std::string, listen_address, "0.0.0.0",
          "Address the API listens on; 127.0.0.1 for local use only");
ABSL_FLAG(int, metrics_port, 9090,
          "Port of /metrics, /healthz, /readyz and /drainz (the Kubernetes "
          "probes and preStop hook); 0 picks a free port, -1 disables it");
ABSL_FLAG(std::string, schema, "",
          "Comma-separated FlatBuffers schemas: .fbs or .bfbs files, or "
          "directories of them. Default: $NATSGW_SCHEMA_PATH "
          "(colon-separated). Methods and events not found in them are "
          "resolved through the services' $SRV.INFO metadata");
ABSL_FLAG(std::string, schema_include, "",
          "Comma-separated include directories for the .fbs files of "
          "--schema");
ABSL_FLAG(std::string, allow_call, "",
          "Comma-separated NATS subject patterns ('*', '>') that POST "
          "/v1/call may reach; empty: none");
ABSL_FLAG(std::string, allow_publish, "",
          "Comma-separated NATS subject patterns that POST /v1/publish may "
          "reach; empty: none");
ABSL_FLAG(std::string, allow_subscribe, "",
          "Comma-separated NATS subject patterns that GET /v1/subscribe may "
          "follow (a requested pattern must lie within one); empty: none");
ABSL_FLAG(std::string, bearer_tokens_file, "",
          "File of the bearer tokens callers must present (Authorization: "
          "Bearer <token>), one per line, '#' comments; re-read on SIGHUP");
ABSL_FLAG(bool, allow_unauthenticated, false,
          "Serve callers without a bearer token (required when there is no "
          "--bearer_tokens_file; only behind something that authenticates)");
ABSL_FLAG(int64_t, max_body_bytes, 1 << 20,
          "Largest request body in bytes; larger ones are refused with 413");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(5),
          "Call timeout when the caller gives no ?timeout_ms=");
ABSL_FLAG(absl::Duration, max_timeout, absl::Seconds(30),
          "Longest call timeout a caller may ask for with ?timeout_ms=");
ABSL_FLAG(absl::Duration, read_timeout, absl::Seconds(10),
          "Longest wait for the next bytes of a request, or for a write to "
          "a client to progress");
ABSL_FLAG(int, max_streams, 32,
          "Concurrent server-sent event streams (each holds an HTTP thread); "
          "one more is refused with 429");
ABSL_FLAG(int, http_threads, 64,
          "HTTP worker threads; at least --max_streams + 4, so that streams "
          "never starve calls and probes");
ABSL_FLAG(absl::Duration, sse_keepalive, absl::Seconds(15),
          "Interval of the keep-alive comment on an idle event stream");
ABSL_FLAG(int, sse_queue, 256,
          "Messages an event stream holds for a slow client before it drops "
          "new ones (reported as event: dropped)");
ABSL_FLAG(int64_t, sse_queue_bytes, 4 << 20,
          "Bytes (payloads, subjects, headers) an event stream holds for a "
          "slow client before it drops new messages (reported as event: "
          "dropped)");
ABSL_FLAG(absl::Duration, resolve_ttl, absl::Minutes(1),
          "How long a method found through $SRV.INFO is remembered");
ABSL_FLAG(absl::Duration, discovery_wait, absl::Milliseconds(500),
          "How long one $SRV.INFO discovery collects answers");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(30),
          "Longest wait for calls in progress when draining");

namespace natsgw::edge {
namespace {

constexpr absl::string_view kName = "natsgw-edge";

std::vector<std::string> SplitList(absl::string_view list, char separator) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(list, separator)) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

std::vector<std::string> SchemaPaths() {
  const std::string flag = absl::GetFlag(FLAGS_schema);
  if (!flag.empty()) return SplitList(flag, ',');
  const char* env = std::getenv("NATSGW_SCHEMA_PATH");
  return env != nullptr ? SplitList(env, ':') : std::vector<std::string>{};
}

sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

void Print(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
}

// The options from the flags. On error, `usage_error` names the flag at
// fault (the process then exits 2).
absl::StatusOr<EdgeOptions> OptionsFromFlags(std::string* usage_error) {
  EdgeOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen_address);
  options.port = absl::GetFlag(FLAGS_port);
  options.http_threads = absl::GetFlag(FLAGS_http_threads);
  options.max_streams = absl::GetFlag(FLAGS_max_streams);
  const int64_t body = absl::GetFlag(FLAGS_max_body_bytes);
  options.max_body_bytes = body > 0 ? static_cast<size_t>(body) : 0;
  options.timeout = absl::GetFlag(FLAGS_timeout);
  options.max_timeout = absl::GetFlag(FLAGS_max_timeout);
  options.read_timeout = absl::GetFlag(FLAGS_read_timeout);
  options.sse_keepalive = absl::GetFlag(FLAGS_sse_keepalive);
  options.sse_queue = absl::GetFlag(FLAGS_sse_queue);
  // A negative or zero value fails the option check, which names the flag.
  options.sse_queue_bytes = static_cast<size_t>(
      std::max<int64_t>(0, absl::GetFlag(FLAGS_sse_queue_bytes)));
  options.resolve_ttl = absl::GetFlag(FLAGS_resolve_ttl);
  options.discovery_wait = absl::GetFlag(FLAGS_discovery_wait);
  options.schema_paths = SchemaPaths();
  options.schema_include = SplitList(absl::GetFlag(FLAGS_schema_include), ',');
  auto fail = [&](std::string message) {
    *usage_error = std::move(message);
    return absl::InvalidArgumentError(*usage_error);
  };
  struct List {
    const char* flag;
    const absl::Flag<std::string>& value;
    SubjectAllowList* out;
  };
  for (const List& list :
       {List{"allow_call", FLAGS_allow_call, &options.allow_call},
        List{"allow_publish", FLAGS_allow_publish, &options.allow_publish},
        List{"allow_subscribe", FLAGS_allow_subscribe,
             &options.allow_subscribe}}) {
    absl::StatusOr<SubjectAllowList> parsed =
        SubjectAllowList::Parse(absl::GetFlag(list.value));
    if (!parsed.ok()) {
      return fail(
          absl::StrCat("--", list.flag, ": ", parsed.status().message()));
    }
    *list.out = *std::move(parsed);
  }
  if (options.allow_call.empty() && options.allow_publish.empty() &&
      options.allow_subscribe.empty()) {
    return fail(
        "nothing is allowed: give subject patterns in at least one of "
        "--allow_call, --allow_publish, --allow_subscribe");
  }
  const std::string tokens_file = absl::GetFlag(FLAGS_bearer_tokens_file);
  options.allow_unauthenticated = absl::GetFlag(FLAGS_allow_unauthenticated);
  if (tokens_file.empty() && !options.allow_unauthenticated) {
    return fail(
        "no --bearer_tokens_file: callers would not be authenticated. Give "
        "one (one token per line), or pass --allow_unauthenticated to serve "
        "everyone who can reach the port");
  }
  if (!tokens_file.empty() && options.allow_unauthenticated) {
    return fail(
        "--allow_unauthenticated and --bearer_tokens_file contradict each "
        "other: give one of them");
  }
  if (!tokens_file.empty()) {
    absl::StatusOr<TokenSet> tokens = TokenSet::Load(tokens_file);
    if (!tokens.ok()) {
      return fail(
          absl::StrCat("--bearer_tokens_file: ", tokens.status().message()));
    }
    options.tokens = *std::move(tokens);
  }
  if (body < 1) {
    return fail(
        absl::StrCat("--max_body_bytes must be at least 1, not ", body));
  }
  if (absl::Status s = EdgeServer::ValidateOptions(options); !s.ok()) {
    // The option names are the flag names.
    return fail(absl::StrCat("invalid flags: ", s.message()));
  }
  // Load once here, so a broken schema is a usage error before connecting.
  absl::StatusOr<std::unique_ptr<tools::SchemaSet>> schemas =
      tools::SchemaSet::Load(options.schema_paths, options.schema_include);
  if (!schemas.ok()) {
    return fail(absl::StrCat("--schema: ", schemas.status().message()));
  }
  return options;
}

std::string Describe(const SubjectAllowList& list) {
  return list.empty() ? std::string("none")
                      : absl::StrJoin(list.patterns(), ",");
}

absl::Status Run(EdgeOptions options) {
  auto registry = std::make_shared<prometheus::Registry>();
  NATSGW_ASSIGN_OR_RETURN(ConnectionOptions connection_options,
                          examples::ConnectionOptionsFromFlags(kName));
  connection_options.registry = registry;
  options.logger = connection_options.logger;
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<Connection> connection,
                          Connection::Create(connection_options));
  const std::string allowed = absl::StrCat(
      "calls: ", Describe(options.allow_call),
      "; publishes: ", Describe(options.allow_publish),
      "; subscriptions: ", Describe(options.allow_subscribe), "; ",
      options.tokens.has_value()
          ? absl::StrCat(options.tokens->size(), options.tokens->size() == 1
                                                     ? " bearer token"
                                                     : " bearer tokens")
          : std::string("UNAUTHENTICATED"));
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<EdgeServer> edge,
                          EdgeServer::Create(options, *connection, registry));

  std::unique_ptr<MetricsServer> metrics;
  if (const int port = absl::GetFlag(FLAGS_metrics_port); port >= 0) {
    MetricsServerOptions metrics_options;
    metrics_options.port = port;
    NATSGW_ASSIGN_OR_RETURN(metrics,
                            MetricsServer::Create(metrics_options, registry));
    Connection* conn = connection.get();
    metrics->AddReadinessCheck("nats", [conn] { return conn->Readiness(); });
  }

  // The drain runs once, on whichever comes first: GET /drainz (the
  // preStop hook, on a metrics server thread) or the signal.
  const absl::Duration drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  std::once_flag drained;
  auto drain = [&] {
    std::call_once(drained, [&] {
      if (metrics) metrics->SetDraining();
      if (absl::Status s = edge->Drain(drain_timeout); !s.ok()) {
        Print(absl::StrCat(kName, ": ", s.ToString(), "\n"));
      }
    });
  };
  if (metrics) {
    metrics->SetDrainHandler([&] {
      Print(absl::StrCat(kName, ": drain requested, draining\n"));
      drain();
      Print(absl::StrCat(kName, ": drained, waiting for SIGTERM\n"));
      return absl::OkStatus();
    });
  }
  std::string ready =
      absl::StrCat(kName, " ready: HTTP/JSON API on ", edge->url(), " (",
                   allowed, "), NATS on ", connection->connected_url());
  if (metrics) {
    absl::StrAppend(&ready, ", metrics at ", metrics->url(), ", health at ",
                    metrics->health_url(), ", readiness at ",
                    metrics->readiness_url(), ", drain at ",
                    metrics->drain_url());
  }
  Print(ready + "\n");

  const std::string tokens_file = absl::GetFlag(FLAGS_bearer_tokens_file);
  sigset_t signals = HandledSignals();
  std::string name;
  while (true) {
    int signal = 0;
    sigwait(&signals, &signal);
    if (signal != SIGHUP) {
      name = signal == SIGINT ? "SIGINT" : "SIGTERM";
      break;
    }
    if (tokens_file.empty()) continue;
    absl::StatusOr<TokenSet> tokens = TokenSet::Load(tokens_file);
    if (tokens.ok()) {
      const size_t n = tokens->size();
      edge->SetTokens(*std::move(tokens));
      Print(
          absl::StrCat(kName, ": SIGHUP: bearer tokens reloaded (", n, ")\n"));
    } else {
      Print(absl::StrCat(kName, ": SIGHUP: keeping the previous tokens: ",
                         tokens.status().message(), "\n"));
    }
  }
  Print(absl::StrCat(kName, ": ", name, " received, shutting down\n"));
  drain();
  // The drain handler refers to this frame: wait for a request inside it.
  if (metrics) metrics->SetDrainHandler(nullptr);
  metrics.reset();
  edge.reset();
  // Flushes what was published.
  connection->Close();
  Print(absl::StrCat(kName, ": stopped\n"));
  return absl::OkStatus();
}

}  // namespace
}  // namespace natsgw::edge

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "HTTP/JSON front door of natsgw services: calls, publishes and "
      "server-sent event subscriptions, translated to and from FlatBuffers.\n"
      "Usage: natsgw-edge --nats_url=URL --schema=DIR "
      "--allow_call=PATTERNS [--allow_publish=...] [--allow_subscribe=...] "
      "--bearer_tokens_file=FILE");
  absl::FlagsUsageConfig config;
  // --help lists natsgw's own flags (the edge's and the shared connection
  // flags), not Abseil's internals.
  config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "sdk/examples/") ||
           absl::StrContains(file, "sdk/tools/");
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
  absl::ParseCommandLine(argc, argv);
  // Blocked in every thread started from now on, so that the main thread
  // takes them with sigwait.
  sigset_t signals = natsgw::edge::HandledSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::string usage_error;
  absl::StatusOr<natsgw::edge::EdgeOptions> options =
      natsgw::edge::OptionsFromFlags(&usage_error);
  if (!options.ok()) {
    std::fprintf(stderr, "natsgw-edge: %s\n", usage_error.c_str());
    return 2;
  }
  return natsgw::examples::ExitStatus("natsgw-edge",
                                      natsgw::edge::Run(*std::move(options)));
}
