// Start-up and shutdown shared by the example services: the --metrics_port
// flag, the connection, the /metrics, /healthz and /readyz endpoint and the
// ready line.
#include <prometheus/registry.h>

#include <cstdio>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "example_support.h"
#include "natsgw/status_macros.h"

ABSL_FLAG(std::optional<int>, metrics_port, std::nullopt,
          "Port of the HTTP endpoint serving /metrics (Prometheus), /healthz, "
          "/readyz and /drainz; 0 picks a free port, -1 disables it. Default: "
          "9090 for user-service, 9091 for email-service (the local targets "
          "in monitoring/prometheus/targets/)");

namespace natsgw::examples {

std::string ServiceRuntime::MetricsNote() const {
  return metrics ? absl::StrCat(", metrics at ", metrics->url(), ", health at ",
                                metrics->health_url(), ", readiness at ",
                                metrics->readiness_url(), ", drain at ",
                                metrics->drain_url())
                 : "";
}

std::string DescribeService(const Service& service) {
  const ServiceConfig& config = service.config();
  std::vector<std::string> subjects;
  for (const EndpointConfig& endpoint : config.endpoints) {
    subjects.push_back(endpoint.subject.empty() ? endpoint.name
                                                : endpoint.subject);
  }
  return absl::StrCat("Services API service \"", config.name, "\" ",
                      config.version, " (instance ", service.id(), ") serving ",
                      absl::StrJoin(subjects, ", "));
}

absl::StatusOr<ServiceRuntime> StartService(absl::string_view name,
                                            int default_metrics_port) {
  ServiceRuntime runtime;
  runtime.registry = std::make_shared<prometheus::Registry>();
  NATSGW_ASSIGN_OR_RETURN(ConnectionOptions options,
                          ConnectionOptionsFromFlags(name));
  options.registry = runtime.registry;
  NATSGW_ASSIGN_OR_RETURN(runtime.connection, Connection::Create(options));
  const int port =
      absl::GetFlag(FLAGS_metrics_port).value_or(default_metrics_port);
  if (port >= 0) {
    MetricsServerOptions metrics_options;
    metrics_options.port = port;
    NATSGW_ASSIGN_OR_RETURN(
        runtime.metrics,
        MetricsServer::Create(metrics_options, runtime.registry));
    // /readyz follows the NATS connection (and its subscriptions); the
    // connection outlives the server (see ServiceRuntime's member order).
    Connection* connection = runtime.connection.get();
    runtime.metrics->AddReadinessCheck(
        "nats", [connection] { return connection->Readiness(); });
  }
  return runtime;
}

void RunUntilShutdown(absl::string_view name, absl::string_view what,
                      ServiceRuntime& runtime,
                      absl::FunctionRef<void()> stop_serving) {
  // The drain runs once, on whichever comes first: GET /drainz (the
  // Kubernetes preStop hook, on a server thread; MetricsServer runs the
  // handler at most once) or the signal. A drain requested over HTTP leaves
  // the process idle until the signal comes.
  std::once_flag drained;
  auto drain = [&] {
    std::call_once(drained, [&] {
      // Not ready from now on, so that no new work is routed here while
      // the work in hand drains.
      if (runtime.metrics) runtime.metrics->SetDraining();
      stop_serving();
      // Flushes what the handlers published.
      runtime.connection->Close();
    });
  };
  auto print = [](const std::string& line) {
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
  };
  if (runtime.metrics) {
    runtime.metrics->SetDrainHandler([&] {
      print(absl::StrCat(name, ": drain requested, draining\n"));
      drain();
      print(absl::StrCat(name, ": drained, waiting for SIGTERM\n"));
      return absl::OkStatus();
    });
  }

  print(absl::StrCat(name, " ready: ", what, " on ",
                     runtime.connection->connected_url(), runtime.MetricsNote(),
                     "\n"));
  const std::string signal = WaitForShutdown();
  print(absl::StrCat(name, ": ", signal, " received, shutting down\n"));
  drain();
  // The handler refers to this frame: wait for a request still inside it.
  if (runtime.metrics) runtime.metrics->SetDrainHandler(nullptr);
}

}  // namespace natsgw::examples
