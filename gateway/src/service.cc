// natsgw::Service: the NATS Services API responder (ADR-32) on top of
// Connection::Serve. The documents and validation are in service_json.cc.
#include "natsgw/service.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "connection_impl.h"
#include "metrics.h"
#include "natsgw/message_id.h"
#include "natsgw/status_macros.h"
#include "service_json.h"

namespace natsgw {

// Owns the subscriptions. `endpoints_` and `control_` are filled by Start()
// before the Impl is shared and never resized afterwards, so reading them
// needs no lock; Subscription itself is thread-safe. `mu_` guards `started_`
// and makes ResetStats() atomic with respect to StatsJson().
class Service::Impl {
 public:
  Impl(ServiceConfig config, std::string id)
      : config_(std::move(config)), id_(std::move(id)) {}

  ~Impl() { Stop(); }

  // Serves the endpoints, then the control subjects (so an instance is only
  // discoverable once it can be called). On failure, whatever was subscribed
  // is unsubscribed again.
  absl::Status Subscribe(Connection& conn) {
    absl::Status status = SubscribeAll(conn);
    if (!status.ok()) Stop();
    return status;
  }

  absl::Status Drain(absl::Duration timeout) {
    for (const auto& sub : control_) sub->Unsubscribe().IgnoreError();
    // One deadline for all: the caller's grace period covers the whole.
    const absl::Time deadline = absl::Now() + timeout;
    absl::Status first;
    for (const auto& sub : endpoints_) {
      absl::Status s =
          sub->Drain(std::max(deadline - absl::Now(), absl::ZeroDuration()));
      if (first.ok()) first = s;
    }
    return first;
  }

  void Stop() {
    // Control subjects first: stop advertising the instance before its
    // endpoints stop answering. Unsubscribe is idempotent and waits for a
    // running handler; an error means the subscription was already gone
    // with its connection, which is what we want anyway.
    for (const auto& sub : control_) sub->Unsubscribe().IgnoreError();
    for (const auto& sub : endpoints_) sub->Unsubscribe().IgnoreError();
  }

  const std::string& id() const { return id_; }
  const ServiceConfig& config() const { return config_; }

  absl::Time started() const {
    std::lock_guard<std::mutex> lock(mu_);
    return started_;
  }

  std::vector<EndpointStats> stats() const {
    std::vector<EndpointStats> out;
    out.reserve(endpoints_.size());
    for (const auto& sub : endpoints_) out.push_back(sub->stats());
    return out;
  }

  void ResetStats() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& sub : endpoints_) sub->ResetStats();
    started_ = absl::Now();
  }

  absl::StatusOr<std::string> Ping() const {
    return internal::PingJson(config_, id_);
  }
  absl::StatusOr<std::string> Info() const {
    return internal::InfoJson(config_, id_);
  }
  absl::StatusOr<std::string> Stats() const {
    // Under mu_ so that a concurrent ResetStats() is seen either entirely or
    // not at all (never new `started` with old counters).
    std::lock_guard<std::mutex> lock(mu_);
    return internal::StatsJson(config_, id_, started_, stats());
  }

 private:
  absl::Status SubscribeAll(Connection& conn) {
    endpoints_.reserve(config_.endpoints.size());
    for (EndpointConfig& endpoint : config_.endpoints) {
      const std::string subject = internal::EndpointSubject(endpoint);
      const std::string queue_group =
          internal::ResolveQueueGroup(config_, endpoint);
      // The handler moves into the subscription, which owns it for as long
      // as requests may still reach it (see Connection::Serve).
      ServeOptions serve = endpoint.serve.value_or(config_.serve);
      if (!endpoint.rpc_method.empty()) serve.rpc_method = endpoint.rpc_method;
      absl::StatusOr<std::unique_ptr<Subscription>> sub =
          conn.Serve(subject, queue_group, std::move(endpoint.handler), serve);
      if (!sub.ok()) {
        return absl::Status(
            sub.status().code(),
            absl::StrCat("service \"", config_.name, "\": serving endpoint \"",
                         endpoint.name, "\" on \"", subject,
                         "\": ", sub.status().message()));
      }
      endpoints_.push_back(*std::move(sub));
    }

    using Render = absl::StatusOr<std::string> (Impl::*)() const;
    struct Verb {
      const char* name;
      Render render;
    };
    for (const Verb& verb :
         {Verb{"PING", &Impl::Ping}, Verb{"INFO", &Impl::Info},
          Verb{"STATS", &Impl::Stats}}) {
      for (const std::string& subject :
           {internal::ControlSubject(verb.name, "", ""),
            internal::ControlSubject(verb.name, config_.name, ""),
            internal::ControlSubject(verb.name, config_.name, id_)}) {
        // Plain subscriptions (no queue group): every instance answers.
        // The request's payload and headers are ignored (natscli sends
        // "{}" and Accept-Encoding: snappy; we always answer plain JSON).
        // One metrics label per verb: the per-instance subjects embed the
        // instance ID, which would mint a new label value at every start.
        ServeOptions control;
        control.metric_subject =
            absl::StrCat(internal::kControlSubjectPrefix, ".", verb.name);
        absl::StatusOr<std::unique_ptr<Subscription>> sub = conn.Serve(
            subject, "",
            [this,
             render = verb.render](const Message&) -> absl::StatusOr<Reply> {
              NATSGW_ASSIGN_OR_RETURN(std::string json, (this->*render)());
              return Reply{std::move(json), {}};
            },
            control);
        if (!sub.ok()) {
          return absl::Status(
              sub.status().code(),
              absl::StrCat("service \"", config_.name,
                           "\": subscribing to control subject \"", subject,
                           "\": ", sub.status().message()));
        }
        control_.push_back(*std::move(sub));
      }
    }
    return absl::OkStatus();
  }

  // Endpoint handlers have been moved out (into the subscriptions).
  ServiceConfig config_;
  const std::string id_;
  std::vector<std::unique_ptr<Subscription>> endpoints_;
  std::vector<std::unique_ptr<Subscription>> control_;

  mutable std::mutex mu_;
  absl::Time started_ ABSL_GUARDED_BY(mu_) = absl::Now();
};

absl::StatusOr<std::unique_ptr<Service>> Service::Start(Connection& conn,
                                                        ServiceConfig config) {
  if (absl::Status invalid = ValidateServiceConfig(config); !invalid.ok()) {
    // Refused before subscribing anything: counted like a refused
    // Subscribe, which is what starting a service is.
    conn.impl().metrics().RecordError(internal::Operation::kSubscribe,
                                      invalid.code());
    return invalid;
  }
  auto impl = std::make_unique<Impl>(std::move(config), NewMessageId());
  NATSGW_RETURN_IF_ERROR(impl->Subscribe(conn));
  return std::unique_ptr<Service>(new Service(std::move(impl)));
}

Service::Service(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Service::~Service() { Stop(); }

void Service::Stop() { impl_->Stop(); }

absl::Status Service::Drain(absl::Duration timeout) {
  return impl_->Drain(timeout);
}

const std::string& Service::id() const { return impl_->id(); }

const ServiceConfig& Service::config() const { return impl_->config(); }

absl::Time Service::started() const { return impl_->started(); }

std::vector<EndpointStats> Service::stats() const { return impl_->stats(); }

void Service::ResetStats() { impl_->ResetStats(); }

// The documents cannot fail short of memory exhaustion (see
// service_json.h); the public accessors then return an empty string rather
// than throw.
std::string Service::PingJson() const {
  return impl_->Ping().value_or(std::string());
}

std::string Service::InfoJson() const {
  return impl_->Info().value_or(std::string());
}

std::string Service::StatsJson() const {
  return impl_->Stats().value_or(std::string());
}

}  // namespace natsgw
