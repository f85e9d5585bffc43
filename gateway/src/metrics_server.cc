#include "natsgw/metrics_server.h"

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <exception>
#include <vector>

#include "absl/strings/str_cat.h"

namespace natsgw {

MetricsServer::MetricsServer(std::unique_ptr<prometheus::Exposer> exposer,
                             std::shared_ptr<prometheus::Registry> registry,
                             MetricsServerOptions options, int port)
    : exposer_(std::move(exposer)),
      registry_(std::move(registry)),
      options_(std::move(options)),
      port_(port) {}

MetricsServer::~MetricsServer() = default;

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Create(
    const MetricsServerOptions& options,
    std::shared_ptr<prometheus::Registry> registry) {
  if (registry == nullptr) {
    return absl::InvalidArgumentError("metrics registry is null");
  }
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics port ", options.port, " is outside 0..65535"));
  }
  if (options.path.empty() || options.path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics path \"", options.path, "\" must start with '/'"));
  }
  if (options.bind_address.empty() ||
      options.bind_address.find_first_of(" ,:") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics bind address \"", options.bind_address,
                     "\" must be an IPv4 address or host name without a port"));
  }
  const std::string listen =
      absl::StrCat(options.bind_address, ":", options.port);
  std::unique_ptr<prometheus::Exposer> exposer;
  // prometheus-cpp (civetweb underneath) reports bind failures by throwing.
  try {
    exposer = std::make_unique<prometheus::Exposer>(listen);
    exposer->RegisterCollectable(registry, options.path);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat(
        "cannot serve metrics on ", listen, options.path, ": ", e.what()));
  }
  std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen, ": no port bound"));
  }
  return std::unique_ptr<MetricsServer>(new MetricsServer(
      std::move(exposer), std::move(registry), options, ports.front()));
}

std::string MetricsServer::url() const {
  const std::string host = options_.bind_address == "0.0.0.0"
                               ? std::string("127.0.0.1")
                               : options_.bind_address;
  return absl::StrCat("http://", host, ":", port_, options_.path);
}

}  // namespace natsgw
