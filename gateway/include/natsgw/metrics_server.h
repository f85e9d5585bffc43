// natsgw/metrics_server.h: the HTTP endpoint an orchestrator and Prometheus
// talk to: GET /metrics (a prometheus::Registry in text exposition format
// 0.0.4), GET /healthz (liveness) and GET /readyz (readiness), on one port.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   natsgw::MetricsServerOptions mopts;
//   mopts.port = 9090;   // 0 picks a free port
//   NATSGW_ASSIGN_OR_RETURN(auto server,
//                           natsgw::MetricsServer::Create(mopts, registry));
//   server->AddReadinessCheck("nats", [&conn] { return conn->Readiness(); });
//   std::cout << "metrics at " << server->url() << "\n";
//   ...
//   server->SetDraining();   // on SIGTERM, before draining the work
//
// /healthz answers 200 {"status":"ok"} whenever the process can answer HTTP at
// all: it is the liveness probe, and restarting a process because NATS is
// unreachable would not help, so it checks nothing else.
//
// /readyz answers 200 when every readiness check returns OK and SetDraining()
// has not been called, else 503; the body is JSON naming each check and, for
// a failing one, why ({"status":"not ready","checks":{"nats":"UNAVAILABLE:
// the rpc NATS connection is reconnecting"}}). Checks run on every request,
// so the answer is never stale; they must be cheap and must not block.
//
// GET /drainz is the pre-stop hook (Kubernetes `lifecycle.preStop.httpGet`):
// it calls SetDraining(), then runs the drain handler (SetDrainHandler), which
// stops taking new work and finishes the work in hand, and answers 200
// {"status":"drained"} once that is done (500 with the error if the handler
// fails; {"status":"draining"} when no handler is set). The handler runs
// once: a second request waits for the first one's result. Anyone who can
// reach the port can drain the process, so keep the port inside the cluster
// (natsgw's k8s/ NetworkPolicy admits only the monitoring namespace).
//
// Thread-safety: the server answers on its own threads; every method is safe
// to call concurrently. Checks are called from those threads, concurrently
// with each other. Destroying the server stops serving and waits for requests
// in progress, after which no check is called again.
#ifndef NATSGW_METRICS_SERVER_H_
#define NATSGW_METRICS_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace prometheus {
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
  std::string health_path = "/healthz";
  std::string readiness_path = "/readyz";
  // The pre-stop drain endpoint; empty disables it.
  std::string drain_path = "/drainz";
  // Threads answering HTTP requests. Probes and scrapes are rare; two keep a
  // slow scrape from delaying a probe.
  int threads = 2;
};

// A readiness condition: OK when satisfied, otherwise a status whose message
// says what is wrong (it is shown in the /readyz body).
using ReadinessCheck = std::function<absl::Status()>;

// Stops taking new work and waits for the work in hand; OK once drained. Runs
// on a server thread and may block for as long as draining takes (keep it
// below the orchestrator's grace period).
using DrainHandler = std::function<absl::Status()>;

class MetricsServer {
 public:
  // Starts listening. INVALID_ARGUMENT for a port outside 0..65535, a path
  // not starting with '/', paths that coincide, or threads < 1; UNAVAILABLE
  // if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Create(
      const MetricsServerOptions& options,
      std::shared_ptr<prometheus::Registry> registry);
  ~MetricsServer();

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Adds (or, for a name used before, replaces) a readiness check.
  void AddReadinessCheck(const std::string& name, ReadinessCheck check);
  // Removes a check; no effect for an unknown name.
  void RemoveReadinessCheck(const std::string& name);

  // From now on /readyz answers 503 "draining", whatever the checks say, so
  // that load balancers stop sending work before the service drains it.
  // Irreversible: a draining process is on its way out.
  void SetDraining();
  bool draining() const;

  // Sets (or, with nullptr, removes) what GET <drain_path> runs after
  // SetDraining(). Waits for a drain handler that is running to return, so
  // that whatever the old handler refers to may be destroyed afterwards.
  // Must not be called from within the handler.
  void SetDrainHandler(DrainHandler handler);

  // What /readyz reports: OK, or UNAVAILABLE listing every failing check.
  absl::Status Readiness() const;

  // The port actually bound.
  int port() const;
  // "http://<host>:<port><path>", with 127.0.0.1 for a wildcard bind address.
  std::string url() const;
  std::string health_url() const;
  std::string readiness_url() const;
  // Empty when the drain endpoint is disabled.
  std::string drain_url() const;

 private:
  class Impl;
  explicit MetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace natsgw

#endif  // NATSGW_METRICS_SERVER_H_
