// natsgw/metrics_server.h: serves a prometheus::Registry over HTTP for
// Prometheus to scrape (GET /metrics, text exposition format 0.0.4).
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   natsgw::MetricsServerOptions mopts;
//   mopts.port = 9090;   // 0 picks a free port
//   NATSGW_ASSIGN_OR_RETURN(auto server,
//                           natsgw::MetricsServer::Create(mopts, registry));
//   std::cout << "metrics at " << server->url() << "\n";
//
// Thread-safety: the server answers scrapes on its own threads; the object's
// methods are safe to call concurrently. Destroying it stops serving.
#ifndef NATSGW_METRICS_SERVER_H_
#define NATSGW_METRICS_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace natsgw {

struct MetricsServerOptions {
  // Address to listen on; "0.0.0.0" for every interface (the Kubernetes
  // default), "127.0.0.1" for local use only.
  std::string bind_address = "0.0.0.0";
  // TCP port; 0 picks a free one (see MetricsServer::port()).
  int port = 9090;
  std::string path = "/metrics";
};

class MetricsServer {
 public:
  // Starts listening. INVALID_ARGUMENT for a port outside 0..65535 or a path
  // not starting with '/'; UNAVAILABLE if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Create(
      const MetricsServerOptions& options,
      std::shared_ptr<prometheus::Registry> registry);
  ~MetricsServer();

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The port actually bound.
  int port() const { return port_; }
  // "http://<host>:<port><path>", with 127.0.0.1 for a wildcard bind address.
  std::string url() const;

 private:
  MetricsServer(std::unique_ptr<prometheus::Exposer> exposer,
                std::shared_ptr<prometheus::Registry> registry,
                MetricsServerOptions options, int port);

  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<prometheus::Registry> registry_;
  MetricsServerOptions options_;
  int port_;
};

}  // namespace natsgw

#endif  // NATSGW_METRICS_SERVER_H_
