#include "natsgw/subscription.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "connection_impl.h"
#include "nats_status.h"

namespace natsgw {
namespace internal {
namespace {

// The subscription whose handler the calling thread is running, if any; used
// to avoid waiting for ourselves when a handler closes its own subscription.
thread_local const SubscriptionCore* t_running_core = nullptr;

class RunningCoreScope {
 public:
  explicit RunningCoreScope(const SubscriptionCore* core)
      : previous_(t_running_core) {
    t_running_core = core;
  }
  ~RunningCoreScope() { t_running_core = previous_; }

 private:
  const SubscriptionCore* previous_;
};

}  // namespace

void SubscriptionSet::Add(const std::shared_ptr<SubscriptionCore>& core) {
  std::lock_guard<std::mutex> lock(mu_);
  cores_.push_back(core);
}

void SubscriptionSet::Remove(const SubscriptionCore* core) {
  std::lock_guard<std::mutex> lock(mu_);
  cores_.erase(
      std::remove_if(cores_.begin(), cores_.end(),
                     [core](const auto& c) { return c.get() == core; }),
      cores_.end());
}

std::vector<std::shared_ptr<SubscriptionCore>> SubscriptionSet::TakeAll() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::move(cores_);
}

SubscriptionCore::SubscriptionCore(Connection::Impl* conn,
                                   std::shared_ptr<SubscriptionSet> set,
                                   Kind kind, std::string subject,
                                   std::string queue_group,
                                   MessageHandler message_handler,
                                   RequestHandler request_handler,
                                   SubjectMetrics* metrics, ServeOptions serve)
    : conn_(conn),
      set_(std::move(set)),
      kind_(kind),
      subject_(std::move(subject)),
      queue_group_(std::move(queue_group)),
      message_handler_(std::move(message_handler)),
      request_handler_(std::move(request_handler)),
      metrics_(metrics),
      serve_(serve) {
  if (kind_ == Kind::kServe && serve_.workers > 0) {
    const int limit =
        serve_.max_in_flight > 0 ? serve_.max_in_flight : 4 * serve_.workers;
    pool_ = std::make_unique<WorkerPool>(serve_.workers,
                                         static_cast<size_t>(limit));
  }
}

absl::Status SubscriptionCore::Start(natsConnection* nc) {
  std::lock_guard<std::mutex> lock(mu_);
  // Keep ourselves alive for nats.c until OnComplete.
  self_ = shared_from_this();
  natsSubscription* sub = nullptr;
  natsStatus s = queue_group_.empty()
                     ? natsConnection_Subscribe(&sub, nc, subject_.c_str(),
                                                &OnMessage, this)
                     : natsConnection_QueueSubscribe(&sub, nc, subject_.c_str(),
                                                     queue_group_.c_str(),
                                                     &OnMessage, this);
  if (s != NATS_OK) {
    self_.reset();
    completed_.Notify();
    return NatsError(s, absl::StrCat("subscribing to '", subject_, "'"));
  }
  s = natsSubscription_SetOnCompleteCB(sub, &OnComplete, this);
  if (s != NATS_OK) {
    // Cannot learn when the handler is done: stop and report. No message can
    // have been handled yet that matters, but the closure must stay valid, so
    // the self reference is deliberately kept (a bounded, one-off leak).
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    completed_.Notify();
    return NatsError(s, absl::StrCat("subscribing to '", subject_, "'"));
  }
  sub_ = sub;
  return absl::OkStatus();
}

void SubscriptionCore::OnMessage(natsConnection*, natsSubscription* sub,
                                 natsMsg* msg, void* closure) {
  auto* core = static_cast<SubscriptionCore*>(closure);
  RunningCoreScope running(core);
  core->conn_->Dispatch(*core, sub, msg);
}

void SubscriptionCore::OnComplete(void* closure) {
  auto* core = static_cast<SubscriptionCore*>(closure);
  std::shared_ptr<SubscriptionCore> keep;
  {
    std::lock_guard<std::mutex> lock(core->mu_);
    keep = std::move(core->self_);
  }
  core->completed_.Notify();
  // `keep` may hold the last reference: the core is destroyed here, after
  // nats.c is done with it.
}

absl::Status SubscriptionCore::Close(bool unregister) {
  natsSubscription* sub = nullptr;
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closing_) {
      closing_ = true;
      first = true;
      sub = sub_;
    }
  }
  absl::Status status;
  if (first && sub != nullptr) {
    natsStatus s = natsSubscription_Unsubscribe(sub);
    // A subscription already closed with its connection is not an error.
    if (s != NATS_OK && s != NATS_CONNECTION_CLOSED &&
        s != NATS_INVALID_SUBSCRIPTION) {
      status =
          NatsError(s, absl::StrCat("unsubscribing from '", subject_, "'"));
    }
  }
  if (t_running_core != this) {
    // nats.c calls OnComplete once the last handler call has returned.
    while (!completed_.WaitFor(absl::Seconds(5))) {
      conn_->Log(absl::LogSeverity::kWarning,
                 absl::StrCat("still waiting for the handler of '", subject_,
                              "' to return before the subscription ends"));
    }
  }
  if (first) {
    // Requests already accepted by the pool are still answered.
    if (pool_ != nullptr) pool_->Stop();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (sub_ != nullptr) {
        int64_t dropped = 0;
        if (natsSubscription_GetDropped(sub_, &dropped) == NATS_OK) {
          final_dropped_ = dropped;
        }
        natsSubscription_Destroy(sub_);
        sub_ = nullptr;
      }
      destroyed_ = true;
    }
    if (unregister) set_->Remove(this);
  }
  return status;
}

int64_t SubscriptionCore::dropped() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (sub_ == nullptr) return final_dropped_;
  int64_t dropped = 0;
  if (natsSubscription_GetDropped(sub_, &dropped) != NATS_OK) return 0;
  return dropped;
}

bool SubscriptionCore::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sub_ != nullptr && !closing_ && natsSubscription_IsValid(sub_);
}

}  // namespace internal

Subscription::Subscription(std::shared_ptr<internal::SubscriptionCore> core)
    : core_(std::move(core)) {}

Subscription::~Subscription() { Unsubscribe().IgnoreError(); }

absl::Status Subscription::Unsubscribe() {
  return core_->Close(/*unregister=*/true);
}

const std::string& Subscription::subject() const { return core_->subject(); }

const std::string& Subscription::queue_group() const {
  return core_->queue_group();
}

int64_t Subscription::dropped() const { return core_->dropped(); }

bool Subscription::active() const { return core_->active(); }

EndpointStats Subscription::stats() const { return core_->stats().Snapshot(); }

void Subscription::ResetStats() { core_->stats().Reset(); }

}  // namespace natsgw
