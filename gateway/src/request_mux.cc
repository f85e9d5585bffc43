#include "request_mux.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "connection_impl.h"
#include "nats_message.h"
#include "nats_status.h"
#include "natsgw/message_id.h"
#include "natsgw/service_error.h"
#include "random.h"

namespace natsgw::internal {

// One call in flight. The spec is immutable after Begin; the rest is guarded
// by RequestMux::mu_.
struct RequestMux::Call {
  explicit Call(CallSpec s) : spec(std::move(s)) {}
  CallSpec spec;
  bool finished = false;
  // Attempts sent (first, retries and hedges) and those not answered yet.
  int attempts = 0;
  int retries = 0;
  int hedges = 0;
  int outstanding = 0;
  bool retry_scheduled = false;
  // The direct inbox's prefix for a `direct` call.
  std::shared_ptr<const std::string> direct_prefix;
  std::vector<uint64_t> tokens;
  absl::Status last_error;
  // The spans of retries and hedges not answered yet, by token (only while
  // spec.span records).
  std::vector<std::pair<uint64_t, Span>> attempt_spans;
};

namespace {

absl::Duration ToDuration(std::chrono::steady_clock::duration d) {
  return absl::FromChrono(d);
}

// The longest a direct-inbox reader waits in NextMsg before checking whether
// its call was ended by another thread (a lost connection, Shutdown).
constexpr int64_t kDirectSliceMs = 20;

// Ends `span`, an attempt's, with `status`.
void EndAttemptSpan(Span& span, const absl::Status& status) {
  if (!span.recording()) return;
  SetOutcome(span, status, /*rpc=*/true);
  span.End();
}

absl::Status NoResponders(absl::string_view subject) {
  return absl::UnavailableError(absl::StrCat(
      "no responders for '", subject, "': nothing is serving this subject"));
}

// The token of a reply sent to "<prefix><token>".
bool ParseToken(absl::string_view prefix, natsMsg* msg, uint64_t* token) {
  absl::string_view subject = natsMsg_GetSubject(msg);
  return absl::ConsumePrefix(&subject, prefix) &&
         absl::SimpleAtoi(subject, token);
}

}  // namespace

RequestMux::RequestMux(Lane* lane, GatewayMetrics* metrics, Logger* logger)
    : lane_(lane),
      metrics_(metrics),
      logger_(logger),
      inbox_prefix_(absl::StrCat("_INBOX.", NewMessageId(), ".")),
      inbox_subject_(absl::StrCat(inbox_prefix_, "*")) {
  timer_thread_ = std::thread([this] { TimerLoop(); });
}

RequestMux::~RequestMux() { Shutdown(); }

size_t RequestMux::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return active_.size();
}

absl::Status RequestMux::Begin(CallSpec spec, std::shared_ptr<Call>* started) {
  // Not make_shared: its single allocation would keep the whole Call (with
  // the request's bytes) alive for as long as a timer's weak_ptr exists.
  std::shared_ptr<Call> call(new Call(std::move(spec)));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (shutdown_) {
      return absl::UnavailableError("the natsgw connection is closed");
    }
    if (!replies_denied_.ok()) return replies_denied_;
    // Only unhedged calls: see the file comment.
    if (call->spec.direct && !call->spec.hedging.enabled()) {
      call->direct_prefix = AcquireDirectLocked();
    }
    active_.emplace(call.get(), call);
  }
  // Before the send: the reply, and Finish, may come at once.
  call->spec.metrics->in_flight.Get().Increment();
  absl::Status sent = SendAttempt(call, call->spec.trace);
  std::unique_lock<std::mutex> lock(mu_);
  if (!sent.ok()) {
    call->spec.metrics->in_flight.Get().Decrement();
    // Nothing went out, so nothing else can have finished the call.
    call->finished = true;
    active_.erase(call.get());
    if (call->direct_prefix != nullptr) ReleaseDirectLocked(*call);
    lock.unlock();
    SetOutcome(call->spec.span, sent, /*rpc=*/true);
    call->spec.span.End();
    return sent;
  }
  AddTimerLocked(call->spec.deadline, TimerKind::kDeadline, call);
  if (call->spec.hedging.enabled()) {
    AddTimerLocked(
        Clock::now() + absl::ToChronoNanoseconds(call->spec.hedging.delay),
        TimerKind::kHedge, call);
  }
  if (started != nullptr) *started = call;
  return absl::OkStatus();
}

std::shared_ptr<const std::string> RequestMux::AcquireDirectLocked() {
  if (direct_held_) return nullptr;
  if (direct_sub_ != nullptr && direct_stale_) {
    natsSubscription_Unsubscribe(direct_sub_);
    natsSubscription_Destroy(direct_sub_);
    direct_sub_ = nullptr;
  }
  if (direct_sub_ == nullptr) {
    // A new generation, so a late reply to the old one has no subscriber.
    auto prefix = std::make_shared<const std::string>(
        absl::StrCat(inbox_prefix_, "d", ++direct_generation_, "."));
    const std::string subject = absl::StrCat(*prefix, "*");
    if (natsConnection_SubscribeSync(&direct_sub_, lane_->nc,
                                     subject.c_str()) != NATS_OK) {
      direct_sub_ = nullptr;
      return nullptr;
    }
    direct_prefix_ = std::move(prefix);
    direct_stale_ = false;
  }
  direct_held_ = true;
  return direct_prefix_;
}

void RequestMux::ReleaseDirectLocked(const Call& call) {
  direct_held_ = false;
  // An attempt still unanswered may yet be answered on this subscription.
  if (call.outstanding > 0) direct_stale_ = true;
  if (shutdown_ && direct_sub_ != nullptr) {
    natsSubscription_Destroy(direct_sub_);
    direct_sub_ = nullptr;
  }
}

void RequestMux::ReadDirect(const std::shared_ptr<Call>& call) {
  // Set by Begin, before the call was shared: no lock needed.
  const std::shared_ptr<const std::string>& prefix = call->direct_prefix;
  if (prefix == nullptr) return;
  natsSubscription* sub = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    sub = direct_sub_;
  }
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (call->finished) break;
    }
    // Wake up at the deadline too, when the timer thread ends the call.
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(
        call->spec.deadline - Clock::now());
    natsMsg* raw = nullptr;
    const natsStatus s = natsSubscription_NextMsg(
        &raw, sub, std::clamp<int64_t>(left.count(), 1, kDirectSliceMs));
    if (s == NATS_OK) {
      NatsMsgPtr msg(raw);
      uint64_t token = 0;
      if (ParseToken(*prefix, msg.get(), &token)) {
        HandleReply(token, std::move(msg), absl::Now());
      }
    } else if (s == NATS_NO_RESPONDERS) {
      // nats.c dropped the message, token and all; it can only be this
      // call's (see the file comment). Any of its attempts will do: they all
      // went to the same subject.
      bool unanswered = false;
      Span attempt_span;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (uint64_t token : call->tokens) {
          if (by_token_.erase(token) > 0) {
            --call->outstanding;
            unanswered = true;
            attempt_span = TakeAttemptSpanLocked(*call, token);
            break;
          }
        }
      }
      if (unanswered) {
        const absl::Status status = NoResponders(call->spec.subject);
        EndAttemptSpan(attempt_span, status);
        AttemptFailed(call, status, /*retryable=*/true);
      }
    } else if (s != NATS_TIMEOUT && s != NATS_SLOW_CONSUMER) {
      // Closed (Shutdown, or the connection closed for good): the call ends
      // by its deadline or Shutdown, on their threads.
      break;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  ReleaseDirectLocked(*call);
}

Span RequestMux::TakeAttemptSpanLocked(Call& call, uint64_t token) {
  for (auto it = call.attempt_spans.begin(); it != call.attempt_spans.end();
       ++it) {
    if (it->first == token) {
      Span span = std::move(it->second);
      call.attempt_spans.erase(it);
      return span;
    }
  }
  return Span();
}

absl::Status RequestMux::SendAttempt(const std::shared_ptr<Call>& call,
                                     const TraceContext& trace, bool hedge) {
  const CallSpec& spec = call->spec;
  const Clock::time_point now = Clock::now();
  if (now >= spec.deadline) {
    return absl::DeadlineExceededError(absl::StrCat(
        "request to '", spec.subject, "' not sent: its deadline has passed"));
  }
  uint64_t token;
  int attempt;
  // A retry or hedge has a span of its own, a child of the call's. Started
  // under the lock: the call's span ends, on another thread, once the call
  // has finished (so `finished` is read first).
  Span attempt_span;
  {
    std::lock_guard<std::mutex> lock(mu_);
    attempt = ++call->attempts;
    token = next_token_++;
    by_token_.emplace(token, call);
    call->tokens.push_back(token);
    ++call->outstanding;
    if (attempt > 1 && !call->finished && spec.span.recording()) {
      attempt_span =
          spec.span.StartChild(SpanKind::kClient, spec.span.name(), trace);
    }
  }
  // Spans only: attributes and the sink's OnStart outside the lock, then the
  // span joins the call so that the reply (not sent yet) or the call's end
  // closes it.
  if (attempt_span.recording()) {
    SetRpcAttributes(attempt_span, attempt_span.name());
    SetMessagingAttributes(attempt_span, "send", "request", spec.subject, "");
    attempt_span.SetString(span_attributes::kMessagingMessageId,
                           spec.message_id);
    attempt_span.SetInt(span_attributes::kNatsRequestAttempt, attempt);
    attempt_span.SetBool(span_attributes::kNatsRequestHedge, hedge);
    attempt_span.ReportStart();
    Span late;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (call->finished) {
        late = std::move(attempt_span);
      } else {
        call->attempt_spans.emplace_back(token, std::move(attempt_span));
      }
    }
    EndAttemptSpan(late, absl::CancelledError(
                             "the call ended before this attempt was sent"));
  }
  Stamp stamp;
  stamp.trace = trace;
  stamp.message_id = spec.message_id;
  stamp.sent_at = attempt == 1 ? spec.sent_at : absl::Now();
  // Microsecond budget: what is left of the call, not of this attempt.
  stamp.timeout = ToDuration(spec.deadline - now);
  const std::string reply = absl::StrCat(
      call->direct_prefix != nullptr ? *call->direct_prefix : inbox_prefix_,
      token);
  stamp.reply = reply;

  absl::Status status;
  absl::StatusOr<NatsMsgPtr> msg =
      BuildNatsMsg(spec.subject, spec.data, spec.headers, nullptr, stamp,
                   lane_->max_payload.load(std::memory_order_relaxed));
  if (!msg.ok()) {
    status = msg.status();
  } else if (natsConnection_Status(lane_->nc) != NATS_CONN_STATUS_CONNECTED) {
    // While nats.c reconnects, a publish succeeds into its reconnect buffer:
    // a retry would then wait out the whole deadline, and be sent after the
    // reconnect for a call that may have ended. Fail the attempt now, as a
    // disconnect fails the attempts in flight.
    status = absl::UnavailableError(absl::StrCat(
        "request to '", spec.subject, "' not sent: not connected to NATS"));
  } else if (natsStatus s = natsConnection_PublishMsg(lane_->nc, msg->get());
             s != NATS_OK) {
    status =
        s == NATS_CONNECTION_CLOSED || s == NATS_CONNECTION_DISCONNECTED
            ? absl::UnavailableError(
                  absl::StrCat("request to '", spec.subject,
                               "' not sent: not connected to NATS"))
            : NatsError(s, absl::StrCat("request to '", spec.subject, "'"));
  }
  if (!status.ok()) {
    Span unsent;
    {
      std::lock_guard<std::mutex> lock(mu_);
      by_token_.erase(token);
      --call->outstanding;
      unsent = TakeAttemptSpanLocked(*call, token);
    }
    EndAttemptSpan(unsent, status);
  }
  return status;
}

void RequestMux::OnReply(natsMsg* raw) {
  NatsMsgPtr msg(raw);
  const absl::Time received = absl::Now();
  uint64_t token = 0;
  if (ParseToken(inbox_prefix_, msg.get(), &token)) {
    HandleReply(token, std::move(msg), received);
  }
}

void RequestMux::HandleReply(uint64_t token, NatsMsgPtr msg,
                             absl::Time received) {
  std::shared_ptr<Call> call;
  Span attempt_span;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_token_.find(token);
    // A reply for an attempt already answered, a hedge that lost, or a call
    // that timed out: nobody waits for it.
    if (it == by_token_.end()) return;
    call = std::move(it->second);
    by_token_.erase(it);
    --call->outstanding;
    attempt_span = TakeAttemptSpanLocked(*call, token);
  }
  if (natsMsg_IsNoResponders(msg.get())) {
    const absl::Status status = NoResponders(call->spec.subject);
    EndAttemptSpan(attempt_span, status);
    AttemptFailed(call, status, /*retryable=*/true);
    return;
  }
  TraceOrigin origin;
  // A reply's trace only describes the reply; 1: no sampling decision here.
  Message reply = ReadNatsMsg(msg.get(), received, 1.0, &origin);
  if (origin != TraceOrigin::kReceived) {
    metrics_->RecordTraceReplaced(origin == TraceOrigin::kMissing);
  }
  if (absl::Status remote = StatusFromErrorHeaders(reply.headers);
      !remote.ok()) {
    EndAttemptSpan(attempt_span, remote);
    AttemptFailed(call, std::move(remote), /*retryable=*/true);
    return;
  }
  EndAttemptSpan(attempt_span, absl::OkStatus());
  Finish(call, std::move(reply));
}

void RequestMux::AttemptFailed(const std::shared_ptr<Call>& call,
                               absl::Status status, bool retryable) {
  const CallSpec& spec = call->spec;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (call->finished) return;
    call->last_error = status;
    // Another copy (a hedge) is still out: its answer may yet succeed, and
    // the deadline timer bounds the wait.
    if (call->outstanding > 0 || call->retry_scheduled) return;
    if (retryable && !shutdown_ && spec.retry.IsRetryable(status.code()) &&
        call->retries + 1 < spec.retry.max_attempts) {
      const absl::Duration pause =
          BackoffDelay(spec.retry, call->retries + 1, Random01());
      const Clock::time_point when =
          Clock::now() + absl::ToChronoNanoseconds(pause);
      // A retry that would start after the deadline is pointless.
      if (when < spec.deadline) {
        call->retry_scheduled = true;
        AddTimerLocked(when, TimerKind::kRetry, call);
        return;
      }
    }
  }
  int attempts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    attempts = call->attempts;
  }
  if (attempts > 1) {
    status = absl::Status(
        status.code(),
        absl::StrCat(status.message(), " (after ", attempts, " attempts)"));
  }
  Finish(call, std::move(status));
}

void RequestMux::Finish(const std::shared_ptr<Call>& call,
                        absl::StatusOr<Message> result) {
  std::vector<std::pair<uint64_t, Span>> open_attempts;
  int attempts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (call->finished) return;
    call->finished = true;
    for (uint64_t token : call->tokens) by_token_.erase(token);
    active_.erase(call.get());
    open_attempts = std::move(call->attempt_spans);
    attempts = call->attempts;
  }
  const CallSpec& spec = call->spec;
  spec.metrics->in_flight.Get().Decrement();
  const absl::StatusCode code = result.status().code();
  spec.metrics->client_request.For(code).Observe(
      Seconds(ToDuration(Clock::now() - spec.start)));
  if (!result.ok()) {
    metrics_->RecordError(Operation::kRequest, code);
    result = WithTraceId(result.status(), spec.trace.TraceIdHex());
  }
  // Spans end before `done` runs: whoever waits for the call sees them.
  if (call->spec.span.recording()) {
    for (auto& [token, span] : open_attempts) {
      EndAttemptSpan(span, result.ok() ? absl::CancelledError(
                                             "the call ended (another "
                                             "attempt was answered) before "
                                             "this attempt was")
                                       : result.status());
    }
    Span& span = call->spec.span;
    span.SetInt(span_attributes::kNatsRequestAttempts, attempts);
    SetOutcome(span, result.status(), /*rpc=*/true);
    span.End();
  }
  call->spec.done(std::move(result));
  // Release what `done` captured now, on this thread, not whenever the last
  // timer referring to the call fires.
  call->spec.done = nullptr;
}

void RequestMux::FailWaiting(absl::string_view subject,
                             const absl::Status& status, bool retryable) {
  std::vector<std::shared_ptr<Call>> hit;
  std::vector<std::pair<uint64_t, Span>> cut_off;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [ptr, call] : active_) {
      if (call->outstanding == 0) continue;
      if (!subject.empty() && call->spec.subject != subject) continue;
      for (uint64_t token : call->tokens) by_token_.erase(token);
      call->outstanding = 0;
      for (auto& attempt : call->attempt_spans) {
        cut_off.push_back(std::move(attempt));
      }
      call->attempt_spans.clear();
      hit.push_back(call);
    }
  }
  for (auto& [token, span] : cut_off) EndAttemptSpan(span, status);
  for (const auto& call : hit) AttemptFailed(call, status, retryable);
}

void RequestMux::RepliesDenied(const absl::Status& status) {
  std::vector<std::shared_ptr<Call>> hit;
  {
    std::lock_guard<std::mutex> lock(mu_);
    replies_denied_ = status;
    for (const auto& [ptr, call] : active_) {
      for (uint64_t token : call->tokens) by_token_.erase(token);
      call->outstanding = 0;
      hit.push_back(call);
    }
  }
  for (const auto& call : hit) AttemptFailed(call, status, /*retryable=*/false);
}

void RequestMux::RepliesAllowedAgain() {
  std::lock_guard<std::mutex> lock(mu_);
  replies_denied_ = absl::OkStatus();
}

void RequestMux::Shutdown() {
  std::vector<std::shared_ptr<Call>> calls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!shutdown_) {
      shutdown_ = true;
      for (const auto& [ptr, call] : active_) calls.push_back(call);
    }
  }
  timer_cv_.notify_all();
  for (const auto& call : calls) {
    Finish(call, absl::UnavailableError(absl::StrCat(
                     "request to '", call->spec.subject,
                     "' abandoned: the natsgw connection was closed")));
  }
  if (timer_thread_.joinable() &&
      timer_thread_.get_id() != std::this_thread::get_id()) {
    timer_thread_.join();
  }
  std::lock_guard<std::mutex> lock(mu_);
  timers_.clear();
  if (direct_sub_ != nullptr) {
    // A holder still reading wakes up (NextMsg fails) and destroys it in
    // ReleaseDirectLocked.
    natsSubscription_Unsubscribe(direct_sub_);
    if (!direct_held_) {
      natsSubscription_Destroy(direct_sub_);
      direct_sub_ = nullptr;
    }
  }
}

void RequestMux::AddTimerLocked(Clock::time_point when, TimerKind kind,
                                const std::shared_ptr<Call>& call) {
  const bool earliest = timers_.empty() || when < timers_.front().when;
  timers_.push_back(Timer{when, kind, call});
  std::push_heap(timers_.begin(), timers_.end(), std::greater<Timer>());
  if (earliest) timer_cv_.notify_one();
  // Each live call has a deadline timer and at most a retry or hedge timer
  // besides; anything well beyond that belongs to finished calls.
  if (timers_.size() > 4 * active_.size() + 1024) PurgeTimersLocked();
}

void RequestMux::PurgeTimersLocked() {
  std::erase_if(timers_, [](const Timer& t) { return t.call.expired(); });
  std::make_heap(timers_.begin(), timers_.end(), std::greater<Timer>());
}

void RequestMux::TimerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!shutdown_) {
    // Timers of finished calls at the top need no wake-up: drop them now,
    // so that the thread sleeps until the next timer that matters. (Most
    // calls finish long before their deadline; waking for each of their
    // deadlines would cost one wake-up per call.)
    while (!timers_.empty()) {
      std::shared_ptr<Call> top = timers_.front().call.lock();
      if (top != nullptr && !top->finished) break;
      std::pop_heap(timers_.begin(), timers_.end(), std::greater<Timer>());
      timers_.pop_back();
    }
    if (timers_.empty()) {
      timer_cv_.wait(lock);
      continue;
    }
    const Clock::time_point when = timers_.front().when;
    if (Clock::now() < when) {
      timer_cv_.wait_until(lock, when);
      continue;
    }
    std::pop_heap(timers_.begin(), timers_.end(), std::greater<Timer>());
    Timer timer = std::move(timers_.back());
    timers_.pop_back();
    std::shared_ptr<Call> call = timer.call.lock();
    if (call == nullptr || call->finished) continue;
    lock.unlock();
    RunTimer(timer.kind, call);
    call.reset();  // before relocking: its destructor may run user code
    lock.lock();
  }
}

void RequestMux::RunTimer(TimerKind kind, const std::shared_ptr<Call>& call) {
  const CallSpec& spec = call->spec;
  switch (kind) {
    case TimerKind::kDeadline: {
      absl::Status last;
      int attempts;
      {
        std::lock_guard<std::mutex> lock(mu_);
        last = call->last_error;
        attempts = call->attempts;
      }
      std::string message = absl::StrCat(
          "no reply from '", spec.subject, "' within ",
          absl::FormatDuration(ToDuration(spec.deadline - spec.start)));
      if (attempts > 1) absl::StrAppend(&message, " (", attempts, " attempts)");
      if (!last.ok()) {
        absl::StrAppend(&message, "; last error: ", last.ToString());
      }
      Finish(call, absl::DeadlineExceededError(message));
      return;
    }
    case TimerKind::kRetry: {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (call->finished) return;
        call->retry_scheduled = false;
        ++call->retries;
      }
      spec.metrics->retries.Get().Increment();
      if (absl::Status s = SendAttempt(call, spec.trace.Child()); !s.ok()) {
        AttemptFailed(call, std::move(s), /*retryable=*/true);
      }
      return;
    }
    case TimerKind::kHedge: {
      {
        std::lock_guard<std::mutex> lock(mu_);
        // Only while every copy sent is still unanswered; a retry pause is
        // governed by the retry policy.
        if (call->finished || call->outstanding == 0 || call->retry_scheduled ||
            call->hedges >= spec.hedging.max_hedges) {
          return;
        }
        ++call->hedges;
        if (call->hedges < spec.hedging.max_hedges) {
          AddTimerLocked(
              Clock::now() + absl::ToChronoNanoseconds(spec.hedging.delay),
              TimerKind::kHedge, call);
        }
      }
      spec.metrics->hedges.Get().Increment();
      if (absl::Status s =
              SendAttempt(call, spec.trace.Child(), /*hedge=*/true);
          !s.ok()) {
        // The first copy is still out; note the failure only.
        std::lock_guard<std::mutex> lock(mu_);
        call->last_error = s;
      }
      return;
    }
  }
}

}  // namespace natsgw::internal
