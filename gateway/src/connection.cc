#include "natsgw/connection.h"

#include <prometheus/registry.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "call_context.h"
#include "connection_impl.h"
#include "nats_auth.h"
#include "nats_message.h"
#include "nats_status.h"
#include "natsgw/json_logger.h"
#include "natsgw/message_id.h"
#include "natsgw/redact.h"
#include "natsgw/service_error.h"
#include "natsgw/status_macros.h"
#include "natsgw/trace_sampling.h"
#include "natsgw/validation.h"

namespace natsgw {

using internal::GatewayMetrics;
using internal::Lane;
using internal::NatsError;
using internal::Operation;
using internal::Seconds;
using internal::SubjectMetrics;
using internal::SubscriptionCore;

namespace {

// Monotonic clock for durations: wall-clock steps must not distort latency.
using SteadyClock = std::chrono::steady_clock;

absl::Duration Since(SteadyClock::time_point start) {
  return absl::FromChrono(SteadyClock::now() - start);
}

// The longest budget a request carries. A caller may ask for
// absl::InfiniteDuration() or years (and a peer's Natsgw-Timeout-Us may say
// as much); the deadline is kept on the steady clock in nanoseconds, where
// such a budget would overflow into the past and the request would be
// refused as expired. A century is "no hurry" without overflowing.
constexpr absl::Duration kMaxRequestBudget = absl::Hours(24 * 365 * 100);

int64_t ToMillisRoundUp(absl::Duration d) {
  const int64_t ms =
      absl::ToInt64Milliseconds(absl::Ceil(d, absl::Milliseconds(1)));
  return ms < 1 ? 1 : ms;
}

struct OptionsDeleter {
  void operator()(natsOptions* o) const { natsOptions_Destroy(o); }
};

// Without credentials: nats.c returns the URL as configured, with any
// user:password@ or token@, and this text goes to logs, spans and callers.
std::string LaneUrl(natsConnection* nc) {
  char buffer[256] = {0};
  if (nc == nullptr ||
      natsConnection_GetConnectedUrl(nc, buffer, sizeof(buffer)) != NATS_OK) {
    return "";
  }
  return RedactUrl(buffer);
}

absl::Status ValidateOptions(const ConnectionOptions& o) {
  if (o.servers.empty()) {
    return absl::InvalidArgumentError(
        "ConnectionOptions::servers is empty; give at least one nats:// URL");
  }
  for (const std::string& url : o.servers) {
    if (url.empty() || url.find_first_of(" ,\t\r\n") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "server URL \"", RedactUrl(url),
          "\" is invalid: it must be non-empty and contain no spaces or "
          "commas (list several servers as separate entries)"));
    }
  }
  if (o.connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("connect_timeout must be positive");
  }
  if (o.slow_consumer_unready_for < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "slow_consumer_unready_for must not be negative");
  }
  if (o.ping_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ping_interval must be positive");
  }
  if (o.max_pings_out < 1) {
    return absl::InvalidArgumentError("max_pings_out must be at least 1");
  }
  if (o.reconnect.wait < absl::ZeroDuration() ||
      o.reconnect.jitter < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "reconnect.wait and reconnect.jitter must not be negative");
  }
  if (o.reconnect.buffer_bytes > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(
        "reconnect.buffer_bytes must be below 2 GiB");
  }
  NATSGW_RETURN_IF_ERROR(ValidateTraceSampleRatio(o.trace_sample_ratio));
  NATSGW_RETURN_IF_ERROR(internal::ValidateCredentials(o.credentials));
  NATSGW_RETURN_IF_ERROR(internal::ValidateTls(o.tls));
  return absl::OkStatus();
}

}  // namespace

absl::string_view ConnectionStateName(ConnectionState state) {
  switch (state) {
    case ConnectionState::kConnecting:
      return "connecting";
    case ConnectionState::kConnected:
      return "connected";
    case ConnectionState::kReconnecting:
      return "reconnecting";
    case ConnectionState::kDraining:
      return "draining";
    case ConnectionState::kClosed:
      return "closed";
  }
  return "unknown";
}

namespace internal {

Lane::~Lane() {
  if (nc != nullptr) natsConnection_Destroy(nc);
}

}  // namespace internal

// ---------------------------------------------------------------------------
// Connection::Impl: set-up and tear-down.

Connection::Impl::Impl(ConnectionOptions options)
    : options_(std::move(options)),
      subscriptions_(std::make_shared<internal::SubscriptionSet>()) {}

absl::StatusOr<std::unique_ptr<Connection::Impl>> Connection::Impl::Create(
    ConnectionOptions options) {
  NATSGW_RETURN_IF_ERROR(ValidateOptions(options));
  NATSGW_RETURN_IF_ERROR(internal::EnsureNatsLibrary());
  if (options.registry == nullptr) {
    options.registry = std::make_shared<prometheus::Registry>();
  }
  if (options.logger == nullptr) {
    // Warnings and errors as JSON lines on stderr, so that a service that
    // chose nothing still shows what went wrong (and with which trace).
    JsonLoggerOptions log;
    if (!options.name.empty()) log.name = options.name;
    log.min_severity = absl::LogSeverity::kWarning;
    options.logger = std::make_shared<JsonLogger>(std::move(log));
  }

  std::unique_ptr<Impl> impl(new Impl(std::move(options)));
  NATSGW_ASSIGN_OR_RETURN(
      impl->metrics_,
      GatewayMetrics::Create(impl->options_.registry,
                             impl->options_.max_metric_subjects));

  impl->rpc_ = std::make_unique<Lane>(impl.get(), "rpc");
  // Before connecting: nats.c's callbacks may run as soon as it connects.
  impl->mux_ = std::make_unique<internal::RequestMux>(
      impl->rpc_.get(), impl->metrics_.get(), impl->options_.logger.get());
  if (absl::Status s = impl->ConnectLane(*impl->rpc_, /*send_asap=*/true);
      !s.ok()) {
    impl->metrics_->RecordError(Operation::kConnect, s.code());
    impl->mux_->Shutdown();
    return s;
  }
  if (impl->options_.batch_publishes) {
    impl->batch_ = std::make_unique<Lane>(impl.get(), "publish");
    if (absl::Status s = impl->ConnectLane(*impl->batch_, /*send_asap=*/false);
        !s.ok()) {
      impl->metrics_->RecordError(Operation::kConnect, s.code());
      impl->Close();
      return s;
    }
    impl->publish_ = impl->batch_.get();
  } else {
    impl->publish_ = impl->rpc_.get();
  }
  return impl;
}

absl::Status Connection::Impl::ConnectLane(Lane& lane, bool send_asap) {
  natsOptions* raw = nullptr;
  natsStatus s = natsOptions_Create(&raw);
  if (s != NATS_OK) return NatsError(s, "creating NATS options");
  std::unique_ptr<natsOptions, OptionsDeleter> opts(raw);

  std::vector<const char*> servers;
  servers.reserve(options_.servers.size());
  for (const std::string& url : options_.servers)
    servers.push_back(url.c_str());
  s = natsOptions_SetServers(opts.get(), servers.data(),
                             static_cast<int>(servers.size()));
  if (s != NATS_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid server list: ", natsStatus_GetText(s)));
  }
  const std::string name = options_.name.empty()
                               ? std::string()
                               : absl::StrCat(options_.name, "/", lane.name);
  const ReconnectPolicy& r = options_.reconnect;
  if (!name.empty()) s = natsOptions_SetName(opts.get(), name.c_str());
  if (s == NATS_OK)
    s = internal::ApplyCredentials(opts.get(), options_.credentials);
  if (s == NATS_OK) {
    s = internal::ApplyTls(opts.get(), options_.tls, options_.servers);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetTimeout(opts.get(),
                               ToMillisRoundUp(options_.connect_timeout));
  }
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts.get(), r.enabled);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts.get(), r.max_attempts);
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectWait(opts.get(),
                                     absl::ToInt64Milliseconds(r.wait));
  }
  if (s == NATS_OK) {
    const int64_t jitter = absl::ToInt64Milliseconds(r.jitter);
    s = natsOptions_SetReconnectJitter(opts.get(), jitter, jitter);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectBufSize(opts.get(),
                                        static_cast<int>(r.buffer_bytes));
  }
  if (s == NATS_OK) {
    s = natsOptions_SetPingInterval(opts.get(),
                                    ToMillisRoundUp(options_.ping_interval));
  }
  if (s == NATS_OK)
    s = natsOptions_SetMaxPingsOut(opts.get(), options_.max_pings_out);
  // Pending requests fail at once when the connection drops instead of
  // waiting out their timeout.
  if (s == NATS_OK)
    s = natsOptions_SetFailRequestsOnDisconnect(opts.get(), true);
  // The rpc lane writes every message immediately (no 1 ms flusher wait);
  // the publish lane lets nats.c's flusher coalesce writes.
  if (s == NATS_OK) s = natsOptions_SetSendAsap(opts.get(), send_asap);
  if (s == NATS_OK) {
    s = natsOptions_SetDisconnectedCB(opts.get(), &Impl::OnDisconnected, &lane);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectedCB(opts.get(), &Impl::OnReconnected, &lane);
  }
  if (s == NATS_OK)
    s = natsOptions_SetClosedCB(opts.get(), &Impl::OnClosed, &lane);
  if (s == NATS_OK) {
    s = natsOptions_SetErrorHandler(opts.get(), &Impl::OnAsyncError, &lane);
  }
  if (s == NATS_OK && options_.retry_on_failed_connect) {
    s = natsOptions_SetRetryOnFailedConnect(opts.get(), true,
                                            &Impl::OnReconnected, &lane);
  }
  if (s != NATS_OK) return NatsError(s, "configuring the NATS connection");

  // nats.c 3.4.1 sends no signature of the server's nonce when the
  // signature's first byte is 0 (its base64 encoder takes such bytes for an
  // empty string), and the server refuses the connection ("Authorization
  // Violation"): 1 attempt in 256 with NKey or creds-file credentials. The
  // next attempt signs a new nonce, so a refusal is retried a few times
  // before it counts.
  const bool signs_nonce = !options_.credentials.nkey.empty() ||
                           !options_.credentials.creds_file.empty();
  constexpr int kSignedConnectAttempts = 4;
  for (int attempt = 1;; ++attempt) {
    s = natsConnection_Connect(&lane.nc, opts.get());
    if (s != NATS_CONNECTION_AUTH_FAILED || !signs_nonce ||
        attempt == kSignedConnectAttempts) {
      break;
    }
    lane.nc = nullptr;
  }
  if (s == NATS_OK) {
    lane.RefreshMaxPayload(lane.nc);
    MarkUp(lane);
  }
  if (s == NATS_NOT_YET_CONNECTED && options_.retry_on_failed_connect) {
    Log(absl::LogSeverity::kWarning,
        absl::StrCat("no NATS server reachable yet for the ", lane.name,
                     " connection; retrying in the background"));
    return absl::OkStatus();
  }
  if (s != NATS_OK) {
    // nats.c's reason for this thread's failure (e.g. the TLS verification
    // error), read before anything else can replace it.
    const char* last_error = nats_GetLastError(nullptr);
    const std::string detail = last_error != nullptr ? last_error : "";
    lane.nc = nullptr;
    // Nothing connected, so no closed callback will come.
    lane.closed.Notify();
    // The configured URLs may carry credentials.
    const std::string servers = absl::StrJoin(
        options_.servers, ", ", [](std::string* out, const std::string& url) {
          out->append(RedactUrl(url));
        });
    return internal::ExplainAuthFailure(
        internal::ConnectFailure(s, options_.tls, servers, detail),
        options_.credentials);
  }
  return absl::OkStatus();
}

Connection::Impl::~Impl() { Close(); }

void Connection::Impl::Close() {
  std::lock_guard<std::mutex> lock(close_mu_);
  if (closed_.exchange(true)) return;
  // Calls in flight end with UNAVAILABLE now rather than at their deadline.
  if (mux_ != nullptr) mux_->Shutdown();
  // Subscriptions first, so no handler runs while the connections go away.
  for (const auto& core : subscriptions_->TakeAll()) {
    core->Close(/*unregister=*/false).IgnoreError();
  }
  for (Lane* lane : {batch_.get(), rpc_.get()}) {
    if (lane == nullptr || lane->nc == nullptr) continue;
    if (natsConnection_Status(lane->nc) == NATS_CONN_STATUS_CONNECTED) {
      // Hand buffered publishes to the server before closing.
      natsStatus s = natsConnection_FlushTimeout(
          lane->nc, ToMillisRoundUp(options_.connect_timeout));
      if (s != NATS_OK) {
        Log(absl::LogSeverity::kWarning,
            NatsError(s, absl::StrCat("flushing the ", lane->name,
                                      " connection before close"))
                .ToString());
      }
    }
    natsConnection_Close(lane->nc);
  }
  // The closed callback runs on nats.c's callback thread after every other
  // callback of the connection; once it has, nothing refers to the lanes.
  for (Lane* lane : {batch_.get(), rpc_.get()}) {
    if (lane == nullptr || lane->nc == nullptr) continue;
    if (!lane->closed.WaitFor(absl::Seconds(10))) {
      Log(absl::LogSeverity::kError,
          absl::StrCat("the ", lane->name,
                       " connection did not report closing within 10s"));
    }
  }
  internal::FlushRetiredNatsMsgs();
  // The nats.c connection objects stay until ~Impl, so a Publish racing
  // with Close() fails cleanly with "connection closed" instead of touching
  // freed memory.
}

absl::Status Connection::Impl::CheckOpen() const {
  if (closed_.load(std::memory_order_acquire)) {
    return absl::UnavailableError("the natsgw connection is closed");
  }
  return absl::OkStatus();
}

absl::Status Connection::Impl::CheckSend(absl::string_view subject,
                                         const SendOptions& options) const {
  NATSGW_RETURN_IF_ERROR(CheckOpen());
  NATSGW_RETURN_IF_ERROR(ValidatePublishSubject(subject, options_.limits));
  NATSGW_RETURN_IF_ERROR(
      ValidateApplicationHeaders(options.headers, options_.limits));
  if (options.message_id) {
    NATSGW_RETURN_IF_ERROR(ValidateMessageId(*options.message_id));
  }
  return absl::OkStatus();
}

absl::Status Connection::Impl::Fail(Operation op, absl::Status status) {
  metrics_->RecordError(op, status.code());
  return status;
}

ConnectionState Connection::Impl::state() const {
  if (closed_.load(std::memory_order_acquire) || rpc_ == nullptr ||
      rpc_->nc == nullptr) {
    return ConnectionState::kClosed;
  }
  // The worst state of the lanes is the state of the whole.
  ConnectionState worst = ConnectionState::kConnected;
  for (const Lane* lane : {rpc_.get(), publish_}) {
    ConnectionState st = ConnectionState::kClosed;
    switch (natsConnection_Status(lane->nc)) {
      case NATS_CONN_STATUS_CONNECTED:
        st = ConnectionState::kConnected;
        break;
      case NATS_CONN_STATUS_CONNECTING:
      case NATS_CONN_STATUS_DISCONNECTED:
        st = ConnectionState::kConnecting;
        break;
      case NATS_CONN_STATUS_RECONNECTING:
        st = ConnectionState::kReconnecting;
        break;
      case NATS_CONN_STATUS_DRAINING_SUBS:
      case NATS_CONN_STATUS_DRAINING_PUBS:
        st = ConnectionState::kDraining;
        break;
      case NATS_CONN_STATUS_CLOSED:
        st = ConnectionState::kClosed;
        break;
    }
    if (static_cast<int>(st) > static_cast<int>(worst)) worst = st;
  }
  return worst;
}

absl::Status Connection::Impl::Readiness() const {
  const ConnectionState st = state();
  if (st != ConnectionState::kConnected) {
    for (const internal::Lane* lane : {rpc_.get(), publish_}) {
      if (lane == nullptr || lane->nc == nullptr) continue;
      if (natsConnection_Status(lane->nc) != NATS_CONN_STATUS_CONNECTED) {
        if (lane->auth_refused.load()) {
          return absl::UnauthenticatedError(absl::StrCat(
              "the ", lane->name, " NATS connection is ",
              ConnectionStateName(st), ": the server refused its credentials"));
        }
        return absl::UnavailableError(absl::StrCat("the ", lane->name,
                                                   " NATS connection is ",
                                                   ConnectionStateName(st)));
      }
    }
    return absl::UnavailableError(
        absl::StrCat("the NATS connection is ", ConnectionStateName(st)));
  }
  for (const auto& core : subscriptions_->Snapshot()) {
    // The reply inbox is natsgw's own and comes back with the connection.
    if (core->kind() == internal::SubscriptionCore::Kind::kReplies) continue;
    if (!core->active()) {
      return absl::UnavailableError(
          absl::StrCat(core->kind() == internal::SubscriptionCore::Kind::kServe
                           ? "endpoint '"
                           : "subscription '",
                       core->subject(),
                       "' is not active (draining or ended by the server)"));
    }
  }
  const absl::Time now = absl::Now();
  for (const internal::Lane* lane : {rpc_.get(), publish_}) {
    const int64_t last = lane->last_slow_consumer_ns.load();
    if (last == 0) continue;
    const absl::Duration ago = now - absl::FromUnixNanos(last);
    if (ago < options_.slow_consumer_unready_for) {
      return absl::UnavailableError(absl::StrCat(
          "slow consumer on the ", lane->name, " NATS connection ",
          absl::FormatDuration(absl::Trunc(ago, absl::Milliseconds(1))),
          " ago (messages were dropped); ready again when none is reported "
          "for ",
          absl::FormatDuration(options_.slow_consumer_unready_for)));
    }
  }
  return absl::OkStatus();
}

std::string Connection::Impl::connected_url() const {
  if (closed_.load(std::memory_order_acquire) || rpc_ == nullptr) return "";
  return LaneUrl(rpc_->nc);
}

// ---------------------------------------------------------------------------
// nats.c callbacks. They run on nats.c's single callback thread.

void Connection::Impl::MarkUp(Lane& lane) {
  if (!lane.up.exchange(true)) metrics_->ConnectionUp(lane.name);
  if (lane.ever_up.exchange(true)) metrics_->RecordReconnect(lane.name);
}

void Connection::Impl::MarkDown(Lane& lane) {
  if (lane.up.exchange(false)) metrics_->ConnectionDown(lane.name);
}

void Connection::Impl::OnDisconnected(natsConnection* nc, void* closure) {
  auto* lane = static_cast<Lane*>(closure);
  lane->owner->MarkDown(*lane);
  // Closing disconnects too; only an unplanned loss is worth a warning.
  if (lane->owner->closed_.load(std::memory_order_acquire)) return;
  lane->owner->metrics_->RecordDisconnect(lane->name);
  lane->owner->Log(absl::LogSeverity::kWarning,
                   absl::StrCat("disconnected from NATS (", lane->name,
                                " connection); reconnecting if allowed"));
  // Replies to requests sent before the loss will not come: fail them now
  // (retryable: a retry policy may send them again once reconnected).
  if (lane == lane->owner->rpc_.get()) {
    lane->owner->mux_->FailWaiting(
        "",
        absl::UnavailableError("the connection to NATS was lost before the "
                               "reply came"),
        /*retryable=*/true);
  }
}

void Connection::Impl::OnReconnected(natsConnection* nc, void* closure) {
  auto* lane = static_cast<Lane*>(closure);
  // A different server may have a different limit.
  lane->RefreshMaxPayload(nc);
  lane->auth_refused.store(false);
  lane->owner->MarkUp(*lane);
  // nats.c has subscribed the inbox again; if it is still refused, the
  // server says so again.
  if (lane == lane->owner->rpc_.get()) lane->owner->mux_->RepliesAllowedAgain();
  lane->owner->Log(absl::LogSeverity::kInfo,
                   absl::StrCat("connected to NATS at ", LaneUrl(nc), " (",
                                lane->name, " connection)"));
}

void Connection::Impl::OnClosed(natsConnection*, void* closure) {
  auto* lane = static_cast<Lane*>(closure);
  lane->owner->MarkDown(*lane);
  if (lane->auth_refused.load() && !lane->owner->closed_.load()) {
    lane->owner->Log(
        absl::LogSeverity::kError,
        absl::StrCat("the NATS server refused the credentials of the ",
                     lane->name,
                     " connection again while reconnecting; it is closed and "
                     "will not retry (fix the credentials and restart)"));
  }
  lane->closed.Notify();
}

void Connection::Impl::OnAsyncError(natsConnection* nc, natsSubscription* sub,
                                    natsStatus err, void* closure) {
  auto* lane = static_cast<Lane*>(closure);
  Impl* self = lane->owner;
  // nats.c hands out its error buffer, which its reader thread rewrites when
  // the next error arrives: copied at once.
  const char* last_error = nullptr;
  natsConnection_GetLastError(nc, &last_error);
  const std::string detail = last_error != nullptr ? last_error : "";
  std::string subject;
  if (sub != nullptr) {
    const char* s = natsSubscription_GetSubject(sub);
    if (s != nullptr) subject = s;
  }
  const absl::StatusCode code = internal::StatusCodeFromNats(err);
  if (err == NATS_CONNECTION_AUTH_FAILED) lane->auth_refused.store(true);
  if (err == NATS_SLOW_CONSUMER) {
    lane->last_slow_consumer_ns.store(absl::ToUnixNanos(absl::Now()));
    self->metrics_->RecordSlowConsumer(lane->name);
  }
  if (err == NATS_NOT_PERMITTED && lane == self->rpc_.get() &&
      !detail.empty()) {
    self->FailDenied(detail);
  }
  if (err == NATS_NOT_PERMITTED) {
    // A refused subscription, on either lane: Subscribe is waiting for it.
    constexpr char kMarker[] = "Subscription to \"";
    if (const size_t at = detail.find(kMarker); at != std::string::npos) {
      const size_t from = at + sizeof(kMarker) - 1;
      const size_t end = detail.find('"', from);
      if (end != std::string::npos) {
        self->denied_.Record(detail.substr(from, end - from));
      }
    }
  }
  // A slow consumer concerns a subscription: a natsgw subscription counts
  // each message nats.c drops from now on (nats.c reports an episode once),
  // another one (a stream consumer's, the request inboxes) the event. A
  // permission violation concerns whatever was last attempted (nats.c
  // cannot tell which).
  bool counted = false;
  if (err == NATS_SLOW_CONSUMER && sub != nullptr) {
    for (const std::shared_ptr<SubscriptionCore>& core :
         self->subscriptions_->Snapshot()) {
      if (core->Owns(sub)) {
        core->NoteLibraryDrops();
        counted = true;
        break;
      }
    }
  }
  if (!counted) {
    self->metrics_->RecordError(
        err == NATS_SLOW_CONSUMER ? Operation::kSubscribe : Operation::kPublish,
        code);
  }
  self->Log(
      absl::LogSeverity::kError,
      absl::StrCat("asynchronous NATS error on the ", lane->name, " connection",
                   subject.empty() ? "" : " for '", subject,
                   subject.empty() ? "" : "'", ": ", natsStatus_GetText(err),
                   detail.empty() ? "" : absl::StrCat(" (", detail, ")")));
}

void Connection::Impl::FailDenied(absl::string_view detail) {
  // The subject is the quoted text after the operation.
  auto quoted_after =
      [&](absl::string_view marker) -> std::optional<std::string> {
    const size_t at = detail.find(marker);
    if (at == absl::string_view::npos) return std::nullopt;
    absl::string_view rest = detail.substr(at + marker.size());
    const size_t end = rest.find('"');
    if (end == absl::string_view::npos) return std::nullopt;
    return std::string(rest.substr(0, end));
  };
  if (std::optional<std::string> subject = quoted_after("Publish to \"")) {
    mux_->FailWaiting(*subject,
                      absl::PermissionDeniedError(absl::StrCat(
                          "request to '", *subject,
                          "' refused by the NATS server: no permission to "
                          "publish to this subject")),
                      /*retryable=*/false);
  } else if (std::optional<std::string> subject =
                 quoted_after("Subscription to \"");
             subject && mux_->IsInboxSubscription(*subject)) {
    mux_->RepliesDenied(absl::PermissionDeniedError(absl::StrCat(
        "the NATS server refused the reply subscription '", *subject,
        "': no permission to subscribe to _INBOX.>, so no reply can "
        "arrive")));
  }
}

// ---------------------------------------------------------------------------
// Sending.

void Connection::Impl::SetClientAttributes(internal::Span& span) const {
  if (span.recording() && !options_.name.empty()) {
    span.SetString(span_attributes::kMessagingClientId, options_.name);
  }
}

TraceContext Connection::Impl::OutgoingTrace(
    const SendOptions& options,
    std::optional<TraceContext::SpanId>* parent) const {
  TraceChoice choice = ChooseTrace(options.trace, options_.trace_sample_ratio);
  // A trace started here: the message's span is its root.
  if (choice.generated) return choice.trace;
  // A caller's new root has no span of its own to be the parent.
  const bool caller_root =
      options.trace_is_new_root && options.trace && options.trace->valid();
  if (!caller_root) *parent = choice.trace.span_id();
  return choice.trace.Child();
}

SubjectMetrics& Connection::Impl::MetricsFor(absl::string_view subject,
                                             absl::string_view metric_subject) {
  return metric_subject.empty() ? metrics_->ForLiteral(subject)
                                : metrics_->ForPattern(metric_subject);
}

absl::StatusOr<SendInfo> Connection::Impl::Publish(
    absl::string_view subject, absl::string_view data,
    const PublishOptions& options) {
  const SteadyClock::time_point start = SteadyClock::now();
  if (absl::Status s = CheckSend(subject, options); !s.ok()) {
    return Fail(Operation::kPublish, s);
  }
  internal::Stamp stamp;
  // A reply subject is rare on a publish: checked only when there is one.
  if (!options.reply_to.empty()) {
    if (absl::Status s =
            ValidatePublishSubject(options.reply_to, options_.limits);
        !s.ok()) {
      return Fail(Operation::kPublish,
                  absl::InvalidArgumentError(
                      absl::StrCat("PublishOptions.reply_to: ", s.message())));
    }
    // A std::string's view: ends in the NUL nats.c needs.
    stamp.reply = options.reply_to;
  }
  std::optional<TraceContext::SpanId> parent;
  stamp.trace = OutgoingTrace(options, &parent);
  // Reported back inline (MessageId): no allocation for the ID.
  const MessageId message_id =
      options.message_id ? MessageId(*options.message_id) : MessageId::New();
  stamp.message_id = message_id.view();
  stamp.sent_at = absl::Now();
  // The PRODUCER span: its context is the one the message carries.
  internal::Span span;
  if (internal::SpanWanted(options_.span_sink.get(), stamp.trace)) {
    span = internal::Span::Start(
        options_.span_sink, SpanKind::kProducer,
        internal::MessagingSpanName("publish", subject, options.metric_subject),
        stamp.trace, parent, stamp.sent_at);
    internal::SetMessagingAttributes(span, "send", "publish", subject,
                                     options.metric_subject);
    span.SetString(span_attributes::kMessagingMessageId, stamp.message_id);
    span.SetInt(span_attributes::kMessagingMessageBodySize,
                static_cast<int64_t>(data.size()));
    SetClientAttributes(span);
    internal::SetServerAttributes(span, LaneUrl(publish_->nc));
    span.ReportStart();
  }

  absl::StatusOr<internal::NatsMsgPtr> msg = internal::BuildNatsMsg(
      subject, data, options.headers, nullptr, stamp,
      publish_->max_payload.load(std::memory_order_relaxed));
  if (!msg.ok()) {
    span.SetStatus(msg.status());
    return Fail(Operation::kPublish, msg.status());
  }
  natsStatus s = natsConnection_PublishMsg(publish_->nc, msg->get());
  if (s != NATS_OK) {
    absl::Status status =
        s == NATS_INSUFFICIENT_BUFFER
            ? absl::ResourceExhaustedError(absl::StrCat(
                  "publishing to '", subject,
                  "': the reconnect buffer is full (ReconnectPolicy::"
                  "buffer_bytes) while the connection is re-established"))
            : NatsError(s, absl::StrCat("publishing to '", subject, "'"));
    span.SetStatus(status);
    return Fail(Operation::kPublish,
                WithTraceId(status, stamp.trace.TraceIdHex()));
  }
  span.End();
  SubjectMetrics& m = MetricsFor(subject, options.metric_subject);
  m.published.Get().Increment();
  m.publish_duration.Get().Observe(Seconds(Since(start)));
  return SendInfo{std::move(stamp.trace), message_id, stamp.sent_at};
}

absl::StatusOr<SendInfo> Connection::Impl::RequestAsync(
    absl::string_view subject, absl::string_view data, absl::Duration timeout,
    const RequestOptions& options, ReplyCallback done,
    std::shared_ptr<internal::RequestMux::Call>* waiting) {
  const SteadyClock::time_point start = SteadyClock::now();
  const absl::Time now = absl::Now();
  if (absl::Status s = CheckSend(subject, options); !s.ok()) {
    return Fail(Operation::kRequest, s);
  }
  if (!options.reply_to.empty()) {
    return Fail(Operation::kRequest,
                absl::InvalidArgumentError(absl::StrCat(
                    "RequestOptions.reply_to must be empty (got '",
                    absl::CHexEscape(options.reply_to),
                    "'): a request's reply comes to natsgw's own inbox; "
                    "publish with PublishOptions.reply_to to collect answers "
                    "on a subscription of your own")));
  }
  if (timeout <= absl::ZeroDuration()) {
    return Fail(Operation::kRequest,
                absl::InvalidArgumentError(
                    absl::StrCat("request timeout must be positive, got ",
                                 absl::FormatDuration(timeout))));
  }
  if (absl::Status s = ValidateRetryPolicy(options.retry); !s.ok()) {
    return Fail(Operation::kRequest, s);
  }
  if (absl::Status s = ValidateHedgingPolicy(options.hedging); !s.ok()) {
    return Fail(Operation::kRequest, s);
  }
  if (!done) {
    return Fail(Operation::kRequest,
                absl::InvalidArgumentError("RequestAsync: callback is empty"));
  }

  internal::CallSpec spec;
  std::optional<TraceContext::SpanId> parent;
  spec.trace = OutgoingTrace(options, &parent);
  spec.message_id = options.message_id ? *options.message_id : NewMessageId();

  // Inside a handler the caller's caller is waiting too: never outlive it.
  absl::Time deadline = now + timeout;
  if (std::optional<absl::Time> inherited = internal::CurrentDeadline();
      inherited && *inherited < deadline) {
    deadline = *inherited;
  }
  const absl::Duration budget = std::min(deadline - now, kMaxRequestBudget);
  SubjectMetrics& m = MetricsFor(subject, options.metric_subject);
  // The CLIENT span of the whole call, retries included; the first attempt
  // carries its context (see request_mux.h for the others).
  if (internal::SpanWanted(options_.span_sink.get(), spec.trace)) {
    const absl::string_view method =
        !options.rpc_method.empty() ? absl::string_view(options.rpc_method)
        : !options.metric_subject.empty()
            ? absl::string_view(options.metric_subject)
            : subject;
    spec.span =
        internal::Span::Start(options_.span_sink, SpanKind::kClient,
                              std::string(method), spec.trace, parent, now);
    internal::SetRpcAttributes(spec.span, method);
    internal::SetMessagingAttributes(spec.span, "send", "request", subject,
                                     options.metric_subject);
    spec.span.SetString(span_attributes::kMessagingMessageId, spec.message_id);
    spec.span.SetInt(span_attributes::kMessagingMessageBodySize,
                     static_cast<int64_t>(data.size()));
    SetClientAttributes(spec.span);
    internal::SetServerAttributes(spec.span, LaneUrl(rpc_->nc));
    spec.span.ReportStart();
  }
  auto fail = [&](absl::Status status) -> absl::Status {
    internal::SetOutcome(spec.span, status, /*rpc=*/true);
    m.client_request.For(status.code()).Observe(Seconds(Since(start)));
    metrics_->RecordError(Operation::kRequest, status.code());
    return WithTraceId(std::move(status), spec.trace.TraceIdHex());
  };
  if (budget <= absl::ZeroDuration()) {
    return fail(absl::DeadlineExceededError(absl::StrCat(
        "request to '", subject,
        "' not sent: the deadline inherited from the request being handled "
        "has already passed")));
  }
  if (natsConnection_Status(rpc_->nc) != NATS_CONN_STATUS_CONNECTED) {
    return fail(absl::UnavailableError(absl::StrCat(
        "request to '", subject, "' not sent: not connected to NATS (",
        ConnectionStateName(state()), ")")));
  }
  if (absl::Status s = EnsureReplySubscription(); !s.ok()) return fail(s);

  spec.subject = std::string(subject);
  spec.data = std::string(data);
  spec.headers = options.headers;
  spec.sent_at = now;
  spec.start = start;
  spec.deadline = start + absl::ToChronoNanoseconds(budget);
  spec.retry = options.retry;
  spec.hedging = options.hedging;
  spec.metrics = &m;
  spec.done = std::move(done);
  spec.direct = waiting != nullptr;
  SendInfo info{spec.trace, MessageId(spec.message_id), now};
  if (absl::Status s = mux_->Begin(std::move(spec), waiting); !s.ok()) {
    return fail(std::move(s));
  }
  return info;
}

absl::StatusOr<Message> Connection::Impl::Request(
    absl::string_view subject, absl::string_view data, absl::Duration timeout,
    const RequestOptions& options, std::optional<SendInfo>* sent) {
  // The blocking form is the asynchronous one plus a wait: one code path,
  // microsecond deadlines, and early PERMISSION_DENIED for both.
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    bool done ABSL_GUARDED_BY(mu) = false;
    absl::StatusOr<Message> result ABSL_GUARDED_BY(mu);
  } waiter;
  // This thread reads its reply itself when it can have the direct inbox
  // (see request_mux.h).
  std::shared_ptr<internal::RequestMux::Call> call;
  absl::StatusOr<SendInfo> info = RequestAsync(
      subject, data, timeout, options,
      [&waiter](absl::StatusOr<Message> reply) {
        // Notify under the lock: the waiter's frame may vanish
        // right after.
        std::lock_guard<std::mutex> lock(waiter.mu);
        waiter.result = std::move(reply);
        waiter.done = true;
        waiter.cv.notify_one();
      },
      &call);
  if (!info.ok()) return info.status();
  mux_->ReadDirect(call);
  call.reset();
  if (sent != nullptr) *sent = *std::move(info);
  std::unique_lock<std::mutex> lock(waiter.mu);
  waiter.cv.wait(lock, [&waiter] { return waiter.done; });
  return std::move(waiter.result);
}

absl::Status Connection::Impl::EnsureReplySubscription() {
  std::lock_guard<std::mutex> lock(reply_sub_mu_);
  if (reply_sub_started_) return absl::OkStatus();
  auto core = std::make_shared<SubscriptionCore>(
      this, subscriptions_, SubscriptionCore::Kind::kReplies,
      mux_->inbox_subject(), "", nullptr, nullptr,
      &metrics_->ForPattern("_INBOX"));
  // Subscribed on the rpc connection, ahead of the first request on the same
  // connection, so the server knows it before any reply can be sent.
  if (absl::Status s = core->Start(rpc_->nc); !s.ok()) return s;
  subscriptions_->Add(core);
  reply_sub_started_ = true;
  return absl::OkStatus();
}

absl::Status Connection::Impl::Flush(absl::Duration timeout) {
  if (absl::Status s = CheckOpen(); !s.ok()) return Fail(Operation::kFlush, s);
  if (timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("flush timeout must be positive");
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (Lane* lane : {publish_, rpc_.get()}) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return Fail(Operation::kFlush, absl::DeadlineExceededError(
                                         "flush did not complete in time"));
    }
    natsStatus s = natsConnection_FlushTimeout(lane->nc, ToMillisRoundUp(left));
    if (s != NATS_OK) {
      return Fail(Operation::kFlush,
                  NatsError(s, absl::StrCat("flushing the ", lane->name,
                                            " connection")));
    }
    if (lane == rpc_.get()) break;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Receiving.

absl::StatusOr<std::unique_ptr<TaskQueue>> Connection::Impl::MakeQueue(
    absl::string_view label, int workers, size_t capacity,
    OverflowPolicy overflow, absl::Duration block_timeout) {
  TaskQueueOptions options;
  options.name = std::string(label);
  options.workers = workers;
  options.capacity = capacity;
  options.overflow = overflow;
  options.block_timeout = block_timeout;
  options.registry = options_.registry;
  options.logger = options_.logger;
  return TaskQueue::Create(std::move(options));
}

absl::StatusOr<std::unique_ptr<Subscription>> Connection::Impl::Subscribe(
    SubscriptionCore::Kind kind, absl::string_view subject,
    absl::string_view queue_group, MessageHandler message_handler,
    RequestHandler request_handler, const ServeOptions& serve,
    const SubscribeOptions& subscribe) {
  if (absl::Status s = CheckOpen(); !s.ok()) {
    return Fail(Operation::kSubscribe, s);
  }
  if (serve.workers < 0 || serve.max_in_flight < 0) {
    return Fail(
        Operation::kSubscribe,
        absl::InvalidArgumentError(absl::StrCat(
            "ServeOptions: workers (", serve.workers, ") and max_in_flight (",
            serve.max_in_flight, ") must not be negative")));
  }
  if (serve.workers > 0 && serve.max_in_flight > 0 &&
      serve.max_in_flight < serve.workers) {
    return Fail(Operation::kSubscribe,
                absl::InvalidArgumentError(absl::StrCat(
                    "ServeOptions: max_in_flight (", serve.max_in_flight,
                    ") must be at least workers (", serve.workers, ")")));
  }
  if (serve.block_timeout < absl::ZeroDuration()) {
    return Fail(Operation::kSubscribe,
                absl::InvalidArgumentError(
                    absl::StrCat("ServeOptions: block_timeout (",
                                 absl::FormatDuration(serve.block_timeout),
                                 ") must not be negative")));
  }
  if (subscribe.workers < 0) {
    return Fail(Operation::kSubscribe,
                absl::InvalidArgumentError(
                    absl::StrCat("SubscribeOptions: workers (",
                                 subscribe.workers, ") must not be negative")));
  }
  if (subscribe.block_timeout < absl::ZeroDuration()) {
    return Fail(Operation::kSubscribe,
                absl::InvalidArgumentError(
                    absl::StrCat("SubscribeOptions: block_timeout (",
                                 absl::FormatDuration(subscribe.block_timeout),
                                 ") must not be negative")));
  }
  const MessageLimits& limits = options_.limits;
  if (absl::Status s = ValidateSubscribeSubject(subject, limits); !s.ok()) {
    return Fail(Operation::kSubscribe, s);
  }
  if (absl::Status s = ValidateQueueGroup(queue_group, limits); !s.ok()) {
    return Fail(Operation::kSubscribe, s);
  }
  const bool serving = kind == SubscriptionCore::Kind::kServe;
  if (serving ? !request_handler : !message_handler) {
    return Fail(Operation::kSubscribe,
                absl::InvalidArgumentError("handler is empty"));
  }
  // Endpoints live on the rpc lane so their replies go out immediately;
  // plain subscriptions share the publish lane with Publish so that a
  // connection sees its own publishes in order.
  Lane* lane = serving ? rpc_.get() : publish_;
  const std::string& metric_subject =
      serving ? serve.metric_subject : subscribe.metric_subject;
  const absl::string_view label =
      metric_subject.empty() ? subject : absl::string_view(metric_subject);
  // Handlers run on a task queue of their own when asked for workers; an
  // endpoint's queue holds max_in_flight requests in all, running included.
  absl::StatusOr<std::unique_ptr<TaskQueue>> queue =
      std::unique_ptr<TaskQueue>();
  if (serving && serve.workers > 0) {
    const int limit =
        serve.max_in_flight > 0 ? serve.max_in_flight : 4 * serve.workers;
    queue = MakeQueue(label, serve.workers,
                      static_cast<size_t>(limit - serve.workers),
                      serve.overflow, serve.block_timeout);
  } else if (!serving && subscribe.workers > 0) {
    queue = MakeQueue(label, subscribe.workers, subscribe.queue_capacity,
                      subscribe.overflow, subscribe.block_timeout);
  }
  if (!queue.ok()) return Fail(Operation::kSubscribe, queue.status());
  auto core = std::make_shared<SubscriptionCore>(
      this, subscriptions_, kind, std::string(subject),
      std::string(queue_group), std::move(message_handler),
      std::move(request_handler), &metrics_->ForPattern(label), serve,
      *std::move(queue));
  const uint64_t denied_before = denied_.seq();
  if (absl::Status s = core->Start(lane->nc); !s.ok()) {
    return Fail(Operation::kSubscribe, s);
  }
  subscriptions_->Add(core);
  auto handle = std::make_unique<Subscription>(core);
  // Make sure the server knows the interest before returning, so that a
  // message sent right after, from any connection, is delivered. While
  // (re)connecting the subscription is registered on connect instead.
  if (natsConnection_Status(lane->nc) == NATS_CONN_STATUS_CONNECTED) {
    natsStatus s = natsConnection_FlushTimeout(
        lane->nc, ToMillisRoundUp(options_.connect_timeout));
    if (s != NATS_OK) {
      handle.reset();
      return Fail(Operation::kSubscribe,
                  NatsError(s, absl::StrCat("confirming the subscription to '",
                                            subject, "' with the server")));
    }
    // The server answers the PING only after refusing the subscription, if
    // it does, so by now nats.c's last error names it. Only then wait for
    // the error callback to confirm it is this refusal, not an older one:
    // accepted subscriptions never wait.
    const char* last = nullptr;
    natsConnection_GetLastError(lane->nc, &last);
    const bool mentioned =
        last != nullptr &&
        absl::StrContains(last,
                          absl::StrCat("Subscription to \"", subject, "\""));
    if (mentioned &&
        denied_.WaitFor(subject, denied_before, options_.connect_timeout)) {
      handle.reset();
      return Fail(Operation::kSubscribe,
                  absl::PermissionDeniedError(absl::StrCat(
                      "the NATS server refused the subscription to '", subject,
                      "': no permission to subscribe to this subject")));
    }
  }
  return handle;
}

void Connection::Impl::Dispatch(SubscriptionCore& core, natsSubscription* sub,
                                natsMsg* raw) {
  if (core.kind() == SubscriptionCore::Kind::kReplies) {
    mux_->OnReply(raw);
    return;
  }
  internal::NatsMsgPtr msg(raw);
  const SteadyClock::time_point start = SteadyClock::now();
  internal::TraceOrigin origin;
  Message& m = core.delivery_scratch();
  internal::ReadNatsMsgInto(msg.get(), absl::Now(), options_.trace_sample_ratio,
                            &origin, m);
  if (origin != internal::TraceOrigin::kReceived) {
    metrics_->RecordTraceReplaced(origin == internal::TraceOrigin::kMissing);
  }
  core.metrics().received.Get().Increment();
  if (core.kind() == SubscriptionCore::Kind::kSubscribe) {
    if (core.queue() != nullptr) {
      EnqueueMessage(core, std::move(m));
      return;
    }
    HandleMessage(core, m, start);
    return;
  }
  const char* reply_to = natsMsg_GetReply(msg.get());
  if (reply_to == nullptr || reply_to[0] == '\0') {
    metrics_->RecordError(Operation::kServe,
                          absl::StatusCode::kInvalidArgument);
    Log(absl::LogSeverity::kWarning,
        absl::StrCat("dropped a message on endpoint '", core.subject(),
                     "' without a reply subject (published, not requested) "
                     "[trace ",
                     m.trace.TraceIdHex(), "]"));
    return;
  }
  if (core.queue() != nullptr) {
    EnqueueRequest(core, reply_to, std::move(m), start);
    return;
  }
  // Inline: the request at hand plus those waiting behind it in nats.c's
  // queue are what is in flight.
  const int limit = core.serve_options().max_in_flight;
  int pending = 0;
  if (limit > 0 && sub != nullptr &&
      natsSubscription_GetPending(sub, &pending, nullptr) == NATS_OK &&
      pending + 1 > limit) {
    Shed(core, reply_to, m, start, pending + 1);
    return;
  }
  HandleRequest(core, reply_to, m, start);
}

void Connection::Impl::Shed(SubscriptionCore& core, const char* reply_to,
                            const Message& request,
                            SteadyClock::time_point start, int in_flight) {
  absl::StatusOr<Reply> result = absl::ResourceExhaustedError(absl::StrCat(
      "endpoint '", core.subject(), "' is overloaded: ", in_flight,
      " requests in flight reached its limit; retry later or elsewhere"));
  core.metrics().shed.Get().Increment();
  core.stats().RecordShed(result.status());
  SendReply(core, reply_to, request, result, start, std::nullopt,
            StartReceiveSpan(core, request), "shed");
}

namespace {

// What a queued request or message task owns. One allocation shared by the
// task's `run` and `discard` (only one of them is ever called), small enough
// for both to be stored inline. Copies: the natsMsg is gone once Dispatch
// returns. The core reference keeps the subscription state alive for a task
// that runs after its queue was shut down from inside a handler.
struct QueuedRequest {
  Connection::Impl* conn;
  std::shared_ptr<SubscriptionCore> core;
  std::string reply_to;
  Message request;
  SteadyClock::time_point start;
};

struct QueuedMessage {
  Connection::Impl* conn;
  std::shared_ptr<SubscriptionCore> core;
  Message message;
};

}  // namespace

void Connection::Impl::EnqueueRequest(SubscriptionCore& core,
                                      const char* reply_to, Message request,
                                      SteadyClock::time_point start) {
  const absl::Time deadline = request.deadline.value_or(absl::InfiniteFuture());
  auto item = std::make_shared<QueuedRequest>(
      QueuedRequest{this, core.shared_from_this(), std::string(reply_to),
                    std::move(request), start});
  Task task;
  task.run = [item] {
    item->conn->HandleRequest(*item->core, item->reply_to.c_str(),
                              item->request, item->start);
  };
  task.discard = [item](absl::Status why) {
    item->conn->DiscardRequest(*item->core, item->reply_to.c_str(),
                               item->request, item->start, why);
  };
  // A request nobody waits for any more is not worth a worker.
  task.deadline = deadline;
  // A refusal has been answered by `discard` already.
  core.queue()->Submit(std::move(task)).IgnoreError();
}

void Connection::Impl::DiscardRequest(SubscriptionCore& core,
                                      const char* reply_to,
                                      const Message& request,
                                      SteadyClock::time_point start,
                                      const absl::Status& why) {
  switch (why.code()) {
    case absl::StatusCode::kResourceExhausted: {
      const TaskQueueOptions& q = core.queue()->options();
      Shed(core, reply_to, request, start,
           q.workers + static_cast<int>(q.capacity));
      return;
    }
    case absl::StatusCode::kDeadlineExceeded:
      Expire(core, reply_to, request, start);
      return;
    default: {
      // The endpoint is ending (Unsubscribe, Drain, Close) before a worker
      // could take the request.
      absl::StatusOr<Reply> result = absl::Status(
          why.code(), absl::StrCat("endpoint '", core.subject(),
                                   "' is shutting down; the request was not "
                                   "handled: ",
                                   why.message()));
      core.NoteDiscarded(why, 1);
      core.stats().RecordError(result.status());
      SendReply(core, reply_to, request, result, start, std::nullopt,
                StartReceiveSpan(core, request), "discarded");
      return;
    }
  }
}

void Connection::Impl::EnqueueMessage(SubscriptionCore& core, Message message) {
  auto item = std::make_shared<QueuedMessage>(
      QueuedMessage{this, core.shared_from_this(), std::move(message)});
  Task task;
  task.run = [item] {
    item->conn->HandleMessage(*item->core, item->message, SteadyClock::now());
  };
  task.discard = [item](absl::Status why) {
    item->conn->DiscardMessage(*item->core, item->message, why);
  };
  // A refusal has been counted and reported by `discard` already.
  core.queue()->Submit(std::move(task)).IgnoreError();
}

void Connection::Impl::DiscardMessage(SubscriptionCore& core,
                                      const Message& message,
                                      const absl::Status& why) {
  RecordUndelivered(
      core,
      absl::Status(why.code(), absl::StrCat(why.message(), " [trace ",
                                            message.trace.TraceIdHex(), "]")));
}

void Connection::Impl::RecordUndelivered(SubscriptionCore& core,
                                         const absl::Status& why,
                                         int64_t count) {
  metrics_->RecordError(core.kind() == SubscriptionCore::Kind::kServe
                            ? Operation::kServe
                            : Operation::kSubscribe,
                        why.code(), count);
  core.NoteDiscarded(why, count);
}

absl::Status Connection::Impl::RunHandler(const SubscriptionCore& core,
                                          const Message& m,
                                          const TraceContext& current,
                                          absl::FunctionRef<void()> call) {
  ScopedTraceContext trace_scope(current);
  internal::ScopedDeadline deadline_scope(m.deadline);
  try {
    call();
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("handler for '", core.subject(), "' threw: ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat(
        "handler for '", core.subject(), "' threw a non-standard exception"));
  }
}

internal::Span Connection::Impl::StartReceiveSpan(SubscriptionCore& core,
                                                  const Message& m) const {
  if (!internal::SpanWanted(options_.span_sink.get(), m.trace)) return {};
  const bool server = core.kind() == SubscriptionCore::Kind::kServe;
  const std::string& label = core.metrics().label;
  // A message that came without a trace: the trace natsgw started for it
  // begins with this span.
  std::optional<TraceContext::SpanId> parent;
  if (!m.trace_replaced) parent = m.trace.span_id();
  const std::string& rpc_method = core.serve_options().rpc_method.empty()
                                      ? label
                                      : core.serve_options().rpc_method;
  internal::Span span = internal::Span::Start(
      options_.span_sink, server ? SpanKind::kServer : SpanKind::kConsumer,
      server ? rpc_method
             : internal::MessagingSpanName("process", m.subject, label),
      m.trace_replaced ? m.trace : m.trace.Child(), parent, m.received_at);
  if (server) internal::SetRpcAttributes(span, rpc_method);
  internal::SetMessagingAttributes(span, "process", "process", m.subject,
                                   label);
  if (!core.queue_group().empty()) {
    span.SetString(span_attributes::kMessagingConsumerGroupName,
                   core.queue_group());
  }
  if (!m.message_id.empty()) {
    span.SetString(span_attributes::kMessagingMessageId, m.message_id);
  }
  span.SetInt(span_attributes::kMessagingMessageBodySize,
              static_cast<int64_t>(m.data.size()));
  SetClientAttributes(span);
  if (m.trace_replaced) {
    span.SetBool(span_attributes::kNatsTraceReplaced, true);
  } else if (!server) {
    // Messaging convention: a consumer links to the producer's context.
    span.AddLink(m.trace);
  }
  span.ReportStart();
  return span;
}

void Connection::Impl::HandleMessage(SubscriptionCore& core, const Message& m,
                                     SteadyClock::time_point start) {
  GatewayMetrics::ObserveDelivery(core.metrics(), m, absl::Now());
  internal::Span span = StartReceiveSpan(core, m);
  absl::Status s =
      RunHandler(core, m, span.recording() ? span.context() : m.trace,
                 [&] { core.message_handler()(m); });
  span.SetStatus(s);
  span.End();
  if (!s.ok()) {
    metrics_->RecordError(Operation::kSubscribe, s.code());
    Log(absl::LogSeverity::kError,
        absl::StrCat(s.message(), " [trace ", m.trace.TraceIdHex(), "]"));
  }
  core.metrics().handler_duration.Get().Observe(Seconds(Since(start)));
}

void Connection::Impl::HandleRequest(SubscriptionCore& core,
                                     const char* reply_to,
                                     const Message& request,
                                     SteadyClock::time_point start) {
  if (request.deadline && *request.deadline <= absl::Now()) {
    // Nobody waits for this answer any more (it expired on the way or while
    // queued); skip the work.
    Expire(core, reply_to, request, start);
    return;
  }
  absl::StatusOr<Reply> result;
  internal::Span span = StartReceiveSpan(core, request);
  const SteadyClock::time_point handler_start = SteadyClock::now();
  core.metrics().server_queue_wait.Get().Observe(
      Seconds(absl::FromChrono(handler_start - start)));
  if (absl::Status thrown = RunHandler(
          core, request, span.recording() ? span.context() : request.trace,
          [&] { result = core.request_handler()(request); });
      !thrown.ok()) {
    result = std::move(thrown);
  }
  SendReply(core, reply_to, request, result, start, Since(handler_start),
            std::move(span), "handled");
}

void Connection::Impl::Expire(SubscriptionCore& core, const char* reply_to,
                              const Message& request,
                              SteadyClock::time_point start) {
  absl::StatusOr<Reply> result = absl::DeadlineExceededError(absl::StrCat(
      "request to '", request.subject,
      "' expired before it was handled (caller budget ",
      request.deadline.has_value()
          ? absl::FormatDuration(*request.deadline - request.received_at)
          : "none",
      ", waited ", absl::FormatDuration(Since(start)), ")"));
  core.metrics().expired.Get().Increment();
  core.stats().RecordExpired(result.status());
  SendReply(core, reply_to, request, result, start, std::nullopt,
            StartReceiveSpan(core, request), "expired");
}

void Connection::Impl::SendReply(SubscriptionCore& core, const char* reply_to,
                                 const Message& request,
                                 absl::StatusOr<Reply>& result,
                                 SteadyClock::time_point start,
                                 std::optional<absl::Duration> handled_in,
                                 internal::Span span,
                                 absl::string_view outcome) {
  // Build the reply; a reply the handler got wrong becomes an INTERNAL error
  // reply, so the caller always hears back.
  internal::Stamp stamp;
  // The reply is sent within the SERVER span and carries its context.
  stamp.trace = span.recording() ? span.context() : request.trace.Child();
  // Nobody keeps a reply's ID: formatted on the stack.
  MessageIdBuffer message_id;
  stamp.message_id = WriteMessageId(message_id);
  stamp.sent_at = absl::Now();
  const int64_t max_payload = rpc_->max_payload.load(std::memory_order_relaxed);
  static const Headers kNoHeaders;
  absl::StatusOr<internal::NatsMsgPtr> out;
  if (result.ok()) {
    absl::Status status =
        ValidateApplicationHeaders(result->headers, options_.limits);
    if (status.ok()) {
      out = internal::BuildNatsMsg(reply_to, result->data, result->headers,
                                   nullptr, stamp, max_payload);
      status = out.status();
    }
    if (!status.ok()) {
      Log(absl::LogSeverity::kError,
          absl::StrCat("reply from '", core.subject(),
                       "' rejected: ", status.message(), " [trace ",
                       request.trace.TraceIdHex(), "]"));
      result = absl::InternalError(
          absl::StrCat("the handler's reply was rejected: ", status.message()));
    }
  }
  if (!result.ok()) {
    Headers error_headers;
    AddErrorHeaders(result.status(), error_headers);
    out = internal::BuildNatsMsg(reply_to, "", kNoHeaders, &error_headers,
                                 stamp, max_payload);
    metrics_->RecordError(Operation::kServe, result.status().code());
  }
  // Counted before the reply leaves, so that a caller who has the reply and
  // asks $SRV.STATS or scrapes /metrics next sees its request counted.
  if (handled_in.has_value()) {
    core.stats().RecordHandled(*handled_in, result.status());
    core.metrics()
        .server_handler.For(result.status().code())
        .Observe(Seconds(*handled_in));
  }
  core.metrics()
      .server_request.For(result.status().code())
      .Observe(Seconds(Since(start)));
  absl::Status sent = out.status();
  if (out.ok()) {
    if (natsStatus s = natsConnection_PublishMsg(rpc_->nc, out->get());
        s != NATS_OK) {
      sent = NatsError(
          s, absl::StrCat("sending the reply for '", core.subject(),
                          "' [trace ", request.trace.TraceIdHex(), "]"));
      Log(absl::LogSeverity::kWarning, sent.ToString());
    }
  }
  if (!sent.ok()) {
    metrics_->RecordError(Operation::kReply, sent.code());
    if (result.ok()) core.stats().RecordError(sent);
  }
  if (span.recording()) {
    span.SetString(span_attributes::kNatsRequestOutcome, outcome);
    internal::SetOutcome(span, result.ok() ? sent : result.status(),
                         /*rpc=*/true);
    span.End();
  }
}

// ---------------------------------------------------------------------------
// Connection: the public face forwards to Impl.

Connection::Connection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Connection::~Connection() = default;

absl::StatusOr<std::unique_ptr<Connection>> Connection::Create(
    ConnectionOptions options) {
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl,
                          Impl::Create(std::move(options)));
  return std::unique_ptr<Connection>(new Connection(std::move(impl)));
}

absl::StatusOr<SendInfo> Connection::Publish(absl::string_view subject,
                                             absl::string_view data,
                                             const PublishOptions& options) {
  return impl_->Publish(subject, data, options);
}

absl::StatusOr<std::unique_ptr<Subscription>> Connection::Subscribe(
    absl::string_view subject, absl::string_view queue_group,
    MessageHandler handler, const SubscribeOptions& options) {
  return impl_->Subscribe(SubscriptionCore::Kind::kSubscribe, subject,
                          queue_group, std::move(handler), nullptr, {},
                          options);
}

absl::StatusOr<Message> Connection::Request(absl::string_view subject,
                                            absl::string_view data,
                                            absl::Duration timeout,
                                            const RequestOptions& options,
                                            std::optional<SendInfo>* sent) {
  return impl_->Request(subject, data, timeout, options, sent);
}

absl::StatusOr<SendInfo> Connection::RequestAsync(absl::string_view subject,
                                                  absl::string_view data,
                                                  absl::Duration timeout,
                                                  const RequestOptions& options,
                                                  ReplyCallback done) {
  return impl_->RequestAsync(subject, data, timeout, options, std::move(done));
}

absl::StatusOr<std::unique_ptr<Subscription>> Connection::Serve(
    absl::string_view subject, absl::string_view queue_group,
    RequestHandler handler, const ServeOptions& serve) {
  return impl_->Subscribe(SubscriptionCore::Kind::kServe, subject, queue_group,
                          nullptr, std::move(handler), serve);
}

absl::Status Connection::Flush(absl::Duration timeout) {
  return impl_->Flush(timeout);
}

void Connection::Close() { impl_->Close(); }

ConnectionState Connection::state() const { return impl_->state(); }
absl::Status Connection::Readiness() const { return impl_->Readiness(); }

std::string Connection::connected_url() const { return impl_->connected_url(); }

const std::shared_ptr<prometheus::Registry>& Connection::registry() const {
  return impl_->registry();
}

const ConnectionOptions& Connection::options() const {
  return impl_->options();
}

}  // namespace natsgw
