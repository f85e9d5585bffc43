#include "natsgw/metrics_server.h"

#include <civetweb.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "civetweb_start.h"
#include "natsgw/status_macros.h"
#include "nlohmann/json.hpp"

namespace natsgw {

class MetricsServer::Impl {
 public:
  Impl(std::shared_ptr<prometheus::Registry> registry,
       MetricsServerOptions options)
      : registry_(std::move(registry)), options_(std::move(options)) {}

  ~Impl() {
    // mg_stop joins civetweb's threads: no handler runs after it.
    if (ctx_ != nullptr) mg_stop(ctx_);
    mg_exit_library();
  }

  absl::Status Start() {
    // Reference-counted in civetweb; prometheus-cpp's Exposer calls it too.
    mg_init_library(0);
    const std::string listen =
        absl::StrCat(options_.bind_address, ":", options_.port);
    const std::string threads = absl::StrCat(options_.threads);
    const char* config[] = {"listening_ports", listen.c_str(), "num_threads",
                            threads.c_str(),
                            // A stuck client must not hold a thread forever.
                            "request_timeout_ms", "10000", nullptr};
    mg_callbacks callbacks{};
    // civetweb prints bind errors to stderr unless told otherwise; natsgw
    // never writes there on its own, and the error comes back in `error`.
    callbacks.log_message = [](const mg_connection*, const char*) { return 1; };
    NATSGW_ASSIGN_OR_RETURN(
        internal::StartedCivetweb started,
        internal::StartCivetweb(config, callbacks, this,
                                absl::StrCat("serve metrics on ", listen)));
    ctx_ = started.ctx;
    port_ = started.port;
    // A trailing '$' makes civetweb match the path exactly (no sub-paths).
    mg_set_request_handler(ctx_, absl::StrCat(options_.path, "$").c_str(),
                           &Impl::ServeMetrics, this);
    mg_set_request_handler(ctx_,
                           absl::StrCat(options_.health_path, "$").c_str(),
                           &Impl::ServeHealth, this);
    mg_set_request_handler(ctx_,
                           absl::StrCat(options_.readiness_path, "$").c_str(),
                           &Impl::ServeReadiness, this);
    if (!options_.drain_path.empty()) {
      mg_set_request_handler(ctx_,
                             absl::StrCat(options_.drain_path, "$").c_str(),
                             &Impl::ServeDrain, this);
    }
    return absl::OkStatus();
  }

  void AddCheck(const std::string& name, ReadinessCheck check) {
    std::lock_guard<std::mutex> lock(mu_);
    checks_[name] = std::move(check);
  }
  void RemoveCheck(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    checks_.erase(name);
  }
  void SetDraining() { draining_.store(true, std::memory_order_release); }
  bool draining() const { return draining_.load(std::memory_order_acquire); }

  void SetDrainHandler(DrainHandler handler) {
    std::unique_lock<std::mutex> lock(drain_mu_);
    drain_cv_.wait(lock, [this] { return !drain_running_; });
    drain_handler_ = std::move(handler);
  }

  // Runs the drain handler once; later and concurrent callers get the first
  // run's result. nullopt when there is no handler.
  std::optional<absl::Status> Drain() {
    std::unique_lock<std::mutex> lock(drain_mu_);
    drain_cv_.wait(lock, [this] { return !drain_running_; });
    if (drain_result_.has_value()) return drain_result_;
    if (!drain_handler_) return std::nullopt;
    DrainHandler handler = drain_handler_;
    drain_running_ = true;
    lock.unlock();
    absl::Status result = handler();
    lock.lock();
    drain_running_ = false;
    drain_result_ = result;
    drain_cv_.notify_all();
    return result;
  }

  // Runs every check (outside the lock: a check may take a lock of its own,
  // and AddCheck must not wait for it). `results` gets one entry per check,
  // "ok" or the failing status.
  absl::Status Evaluate(std::map<std::string, std::string>* results) const {
    std::vector<std::pair<std::string, ReadinessCheck>> checks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      checks.assign(checks_.begin(), checks_.end());
    }
    std::vector<std::string> failing;
    if (draining()) {
      failing.push_back("draining: the service is shutting down");
    }
    for (auto& [name, check] : checks) {
      absl::Status s = check();
      if (results != nullptr) (*results)[name] = s.ok() ? "ok" : s.ToString();
      if (!s.ok()) failing.push_back(absl::StrCat(name, ": ", s.message()));
    }
    if (failing.empty()) return absl::OkStatus();
    return absl::UnavailableError(
        absl::StrCat("not ready: ", absl::StrJoin(failing, "; ")));
  }

  int port() const { return port_; }
  const MetricsServerOptions& options() const { return options_; }

 private:
  static bool IsGet(mg_connection* conn) {
    const mg_request_info* info = mg_get_request_info(conn);
    const std::string method = info->request_method;
    if (method == "GET" || method == "HEAD") return true;
    Send(conn, 405, "text/plain; charset=utf-8", "only GET is served here\n",
         {{"Allow", "GET, HEAD"}});
    return false;
  }

  static void Send(
      mg_connection* conn, int status, const char* content_type,
      const std::string& body,
      std::vector<std::pair<const char*, const char*>> extra = {}) {
    mg_response_header_start(conn, status);
    mg_response_header_add(conn, "Content-Type", content_type, -1);
    mg_response_header_add(conn, "Cache-Control", "no-store", -1);
    const std::string length = absl::StrCat(body.size());
    mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
    for (const auto& [key, value] : extra) {
      mg_response_header_add(conn, key, value, -1);
    }
    mg_response_header_send(conn);
    const std::string method = mg_get_request_info(conn)->request_method;
    if (method != "HEAD") mg_write(conn, body.data(), body.size());
  }

  static int ServeMetrics(mg_connection* conn, void* data) {
    if (!IsGet(conn)) return 405;
    auto* self = static_cast<Impl*>(data);
    const std::string body =
        prometheus::TextSerializer().Serialize(self->registry_->Collect());
    Send(conn, 200, "text/plain; version=0.0.4; charset=utf-8", body);
    return 200;
  }

  static int ServeHealth(mg_connection* conn, void*) {
    if (!IsGet(conn)) return 405;
    Send(conn, 200, "application/json", "{\"status\":\"ok\"}\n");
    return 200;
  }

  static int ServeReadiness(mg_connection* conn, void* data) {
    if (!IsGet(conn)) return 405;
    auto* self = static_cast<Impl*>(data);
    std::map<std::string, std::string> results;
    absl::Status ready = self->Evaluate(&results);
    nlohmann::json body;
    body["status"] = ready.ok() ? "ready" : "not ready";
    if (self->draining()) body["draining"] = true;
    body["checks"] = nlohmann::json::object();
    for (const auto& [name, result] : results) body["checks"][name] = result;
    const int status = ready.ok() ? 200 : 503;
    Send(conn, status, "application/json", body.dump() + "\n");
    return status;
  }

  static int ServeDrain(mg_connection* conn, void* data) {
    if (!IsGet(conn)) return 405;
    auto* self = static_cast<Impl*>(data);
    // Readiness first, so no new work is routed here while draining.
    self->SetDraining();
    const std::optional<absl::Status> result = self->Drain();
    nlohmann::json body;
    int status = 200;
    if (!result.has_value()) {
      body["status"] = "draining";
    } else if (result->ok()) {
      body["status"] = "drained";
    } else {
      body["status"] = "drain failed";
      body["error"] = result->ToString();
      status = 500;
    }
    Send(conn, status, "application/json", body.dump() + "\n");
    return status;
  }

  const std::shared_ptr<prometheus::Registry> registry_;
  const MetricsServerOptions options_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
  std::atomic<bool> draining_{false};
  mutable std::mutex mu_;
  std::map<std::string, ReadinessCheck> checks_;  // guarded by mu_
  std::mutex drain_mu_;
  std::condition_variable drain_cv_;
  DrainHandler drain_handler_;                // guarded by drain_mu_
  bool drain_running_ = false;                // guarded by drain_mu_
  std::optional<absl::Status> drain_result_;  // guarded by drain_mu_
};

MetricsServer::MetricsServer(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

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
  for (const std::string* path :
       {&options.path, &options.health_path, &options.readiness_path,
        &options.drain_path}) {
    // Only the drain endpoint may be disabled (empty).
    if (path == &options.drain_path && path->empty()) continue;
    if (path->empty() || (*path)[0] != '/' ||
        path->find_first_of("$*?# ") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "HTTP path \"", *path,
          "\" must start with '/' and contain none of $*?# or spaces"));
    }
  }
  const bool drain_clash = !options.drain_path.empty() &&
                           (options.drain_path == options.path ||
                            options.drain_path == options.health_path ||
                            options.drain_path == options.readiness_path);
  if (options.path == options.health_path ||
      options.path == options.readiness_path ||
      options.health_path == options.readiness_path || drain_clash) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the metrics, health, readiness and drain paths must differ (",
        options.path, ", ", options.health_path, ", ", options.readiness_path,
        ", ", options.drain_path, ")"));
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics server threads must be >= 1, not ", options.threads));
  }
  if (options.bind_address.empty() ||
      options.bind_address.find_first_of(" ,:") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics bind address \"", options.bind_address,
                     "\" must be an IPv4 address or host name without a port"));
  }
  auto impl = std::make_unique<Impl>(std::move(registry), options);
  if (absl::Status s = impl->Start(); !s.ok()) return s;
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(impl)));
}

void MetricsServer::AddReadinessCheck(const std::string& name,
                                      ReadinessCheck check) {
  impl_->AddCheck(name, std::move(check));
}

void MetricsServer::RemoveReadinessCheck(const std::string& name) {
  impl_->RemoveCheck(name);
}

void MetricsServer::SetDraining() { impl_->SetDraining(); }
void MetricsServer::SetDrainHandler(DrainHandler handler) {
  impl_->SetDrainHandler(std::move(handler));
}
bool MetricsServer::draining() const { return impl_->draining(); }

absl::Status MetricsServer::Readiness() const {
  return impl_->Evaluate(nullptr);
}

int MetricsServer::port() const { return impl_->port(); }

namespace {
std::string UrlOf(const MetricsServerOptions& options, int port,
                  const std::string& path) {
  const std::string host = options.bind_address == "0.0.0.0"
                               ? std::string("127.0.0.1")
                               : options.bind_address;
  return absl::StrCat("http://", host, ":", port, path);
}
}  // namespace

std::string MetricsServer::url() const {
  return UrlOf(impl_->options(), port(), impl_->options().path);
}
std::string MetricsServer::health_url() const {
  return UrlOf(impl_->options(), port(), impl_->options().health_path);
}
std::string MetricsServer::readiness_url() const {
  return UrlOf(impl_->options(), port(), impl_->options().readiness_path);
}
std::string MetricsServer::drain_url() const {
  if (impl_->options().drain_path.empty()) return "";
  return UrlOf(impl_->options(), port(), impl_->options().drain_path);
}

}  // namespace natsgw
