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

std::vector<std::shared_ptr<SubscriptionCore>> SubscriptionSet::Snapshot()
    const {
  std::lock_guard<std::mutex> lock(mu_);
  return cores_;
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
                                   SubjectMetrics* metrics, ServeOptions serve,
                                   std::unique_ptr<TaskQueue> queue)
    : conn_(conn),
      set_(std::move(set)),
      kind_(kind),
      subject_(std::move(subject)),
      queue_group_(std::move(queue_group)),
      message_handler_(std::move(message_handler)),
      request_handler_(std::move(request_handler)),
      metrics_(metrics),
      serve_(std::move(serve)),
      queue_(std::move(queue)) {}

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
  if (core->library_drops_.load(std::memory_order_relaxed)) {
    core->AccountLibraryDrops();
  }
  core->conn_->Dispatch(*core, sub, msg);
}

bool SubscriptionCore::Owns(const natsSubscription* sub) const {
  std::lock_guard<std::mutex> lock(mu_);
  return sub != nullptr && sub_ == sub;
}

void SubscriptionCore::NoteLibraryDrops() {
  library_drops_.store(true, std::memory_order_relaxed);
  AccountLibraryDrops();
}

int64_t SubscriptionCore::TakeLibraryDropsLocked() {
  int64_t dropped = 0;
  if (sub_ == nullptr ||
      natsSubscription_GetDropped(sub_, &dropped) != NATS_OK ||
      dropped <= accounted_library_drops_) {
    return 0;
  }
  const int64_t fresh = dropped - accounted_library_drops_;
  accounted_library_drops_ = dropped;
  return fresh;
}

void SubscriptionCore::AccountLibraryDrops() {
  int64_t fresh = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fresh = TakeLibraryDropsLocked();
  }
  RecordLibraryDrops(fresh);
}

void SubscriptionCore::RecordLibraryDrops(int64_t count) {
  if (count <= 0) return;
  conn_->metrics().RecordError(
      kind_ == Kind::kServe ? Operation::kServe : Operation::kSubscribe,
      absl::StatusCode::kResourceExhausted, count);
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
  return End(unregister, std::nullopt);
}

absl::Status SubscriptionCore::Drain(absl::Duration timeout) {
  return End(/*unregister=*/true, std::max(timeout, absl::ZeroDuration()));
}

void SubscriptionCore::WaitCompleted() {
  // nats.c calls OnComplete once the last handler call has returned.
  while (!completed_.WaitFor(absl::Seconds(5))) {
    conn_->Log(absl::LogSeverity::kWarning,
               absl::StrCat("still waiting for the handler of '", subject_,
                            "' to return before the subscription ends"));
  }
}

absl::Status SubscriptionCore::End(bool unregister,
                                   std::optional<absl::Duration> drain) {
  // On the delivery thread inside an inline handler, or on one of the task
  // queue's workers: waiting for the handlers would wait for this thread.
  const bool in_handler =
      t_running_core == this || (queue_ != nullptr && queue_->IsWorkerThread());
  if (drain.has_value() && in_handler) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Drain of '", subject_,
        "' called from its own handler would wait for itself; call "
        "Unsubscribe there instead"));
  }
  const absl::Time begin = absl::Now();
  // What is left of the drain timeout.
  auto left = [&]() -> absl::Duration {
    if (*drain == absl::InfiniteDuration()) return *drain;
    return std::max(*drain - (absl::Now() - begin), absl::ZeroDuration());
  };
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
  if (!first) {
    // Someone else is ending it: return once they have, so that whatever
    // the handler captured may be freed after this returns.
    if (!in_handler) ended_.Wait();
    return absl::OkStatus();
  }

  absl::Status status;
  const int64_t cut_off_before = cut_off_.load(std::memory_order_relaxed);
  int64_t left_pending = 0;
  bool draining = false;
  if (drain.has_value() && sub != nullptr) {
    // No nats.c timeout (0): the deadline is enforced below, where the
    // messages it would drop can still be counted.
    natsStatus s = natsSubscription_DrainTimeout(sub, 0);
    if (s == NATS_OK) {
      draining = true;
    } else if (s != NATS_CONNECTION_CLOSED && s != NATS_INVALID_SUBSCRIPTION) {
      status = NatsError(s, absl::StrCat("draining '", subject_, "'"));
    }
  }
  if (draining) {
    bool in_time = true;
    if (left() == absl::InfiniteDuration()) {
      WaitCompleted();
    } else {
      in_time = completed_.WaitFor(left());
    }
    if (!in_time) {
      // Out of time with messages still in nats.c's pending queue:
      // unsubscribing ends the drain at once, and nats.c drops them.
      int pending = 0;
      if (natsSubscription_GetPending(sub, &pending, nullptr) == NATS_OK) {
        left_pending = pending;
      }
      natsSubscription_Unsubscribe(sub);
      if (left_pending > 0) {
        conn_->RecordUndelivered(
            *this,
            absl::CancelledError(absl::StrCat(
                "the drain of '", subject_, "' timed out after ",
                absl::FormatDuration(*drain),
                " with messages still pending in the client library")),
            left_pending);
      }
    }
  } else if (sub != nullptr) {
    natsStatus s = natsSubscription_Unsubscribe(sub);
    // A subscription already closed with its connection is not an error.
    if (s != NATS_OK && s != NATS_CONNECTION_CLOSED &&
        s != NATS_INVALID_SUBSCRIPTION) {
      status =
          NatsError(s, absl::StrCat("unsubscribing from '", subject_, "'"));
    }
  }
  if (queue_ != nullptr) {
    // Before waiting for nats.c: a delivery thread blocked in Submit
    // (OverflowPolicy::kBlock) then wakes at once, its message discarded
    // UNAVAILABLE, instead of waiting for room. Draining, the waiting tasks
    // run until the deadline; otherwise an endpoint still answers the
    // requests it accepted, and a subscription cancels the messages still
    // waiting (Unsubscribe promises no handler call after it returns).
    absl::Duration queue_timeout =
        kind_ == Kind::kServe ? absl::InfiniteDuration() : absl::ZeroDuration();
    if (drain.has_value()) queue_timeout = left();
    queue_->Shutdown(queue_timeout).IgnoreError();  // counted per message
  }
  if (t_running_core != this) WaitCompleted();
  int64_t late_library_drops = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (sub_ != nullptr) {
      int64_t dropped = 0;
      if (natsSubscription_GetDropped(sub_, &dropped) == NATS_OK) {
        final_dropped_ = dropped;
      }
      if (library_drops_.load(std::memory_order_relaxed)) {
        late_library_drops = TakeLibraryDropsLocked();
      }
      natsSubscription_Destroy(sub_);
      sub_ = nullptr;
    }
    destroyed_ = true;
  }
  RecordLibraryDrops(late_library_drops);
  ReportDiscarded();
  if (unregister) set_->Remove(this);
  ended_.Notify();
  if (drain.has_value() && status.ok()) {
    // Includes what nats.c dropped (RecordUndelivered above).
    const int64_t cut_off =
        cut_off_.load(std::memory_order_relaxed) - cut_off_before;
    if (cut_off > 0) {
      status = absl::DeadlineExceededError(
          absl::StrCat("the drain of '", subject_, "' did not finish within ",
                       absl::FormatDuration(*drain), ": ", cut_off,
                       " message(s) were not handled (cancelled)"));
    }
  }
  return status;
}

void SubscriptionCore::NoteDiscarded(const absl::Status& why, int64_t count) {
  discarded_.fetch_add(count, std::memory_order_relaxed);
  if (why.code() == absl::StatusCode::kCancelled ||
      why.code() == absl::StatusCode::kUnavailable) {
    cut_off_.fetch_add(count, std::memory_order_relaxed);
  }
  int64_t report = 0;
  {
    std::lock_guard<std::mutex> lock(report_mu_);
    unreported_ += count;
    const absl::Time now = absl::Now();
    // One line per second at most: under overload a line per message would
    // flood the log. The counters are exact regardless.
    if (now - last_report_ < absl::Seconds(1)) return;
    last_report_ = now;
    report = unreported_;
    unreported_ = 0;
  }
  conn_->Log(
      absl::LogSeverity::kWarning,
      absl::StrCat("subscription '", subject_, "': ", report,
                   " message(s) not handled; latest reason: ", why.ToString()));
}

void SubscriptionCore::ReportDiscarded() {
  int64_t report = 0;
  {
    std::lock_guard<std::mutex> lock(report_mu_);
    report = unreported_;
    unreported_ = 0;
  }
  if (report == 0) return;
  conn_->Log(absl::LogSeverity::kWarning,
             absl::StrCat("subscription '", subject_, "': ", report,
                          " more message(s) not handled before it ended"));
}

int64_t SubscriptionCore::dropped() const {
  const int64_t discarded = discarded_.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mu_);
  if (sub_ == nullptr) return final_dropped_ + discarded;
  int64_t dropped = 0;
  if (natsSubscription_GetDropped(sub_, &dropped) != NATS_OK) dropped = 0;
  return dropped + discarded;
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

absl::Status Subscription::Drain(absl::Duration timeout) {
  return core_->Drain(timeout);
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
