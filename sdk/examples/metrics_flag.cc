// The --metrics_port flag of the example services.
#include "absl/flags/flag.h"
#include "example_support.h"

ABSL_FLAG(int, metrics_port, 9090,
          "Port of the Prometheus /metrics endpoint; 0 picks a free port, -1 "
          "disables it");

namespace natsgw::examples {

absl::StatusOr<std::unique_ptr<MetricsServer>> StartMetricsFromFlags(
    std::shared_ptr<prometheus::Registry> registry) {
  const int port = absl::GetFlag(FLAGS_metrics_port);
  if (port < 0) return std::unique_ptr<MetricsServer>();
  MetricsServerOptions options;
  options.port = port;
  return MetricsServer::Create(options, std::move(registry));
}

}  // namespace natsgw::examples
