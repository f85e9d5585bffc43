#include "natsgw/rpc_client.h"

#include <exception>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "failure_count.h"
#include "natsgw/builder_lease.h"
#include "natsgw/service_error.h"
#include "natsgw/trace_sampling.h"

namespace natsgw {
namespace internal {
namespace {

// Runs `fn` and turns an exception from interceptor code into INTERNAL: an
// exception must not unwind through natsgw's reply thread.
template <class Fn>
absl::Status CatchAll(absl::string_view what, Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, " threw: ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat(what, " threw"));
  }
}

// Joins the two ways a sent call can end: RequestAsync returning (which
// supplies the SendInfo) and the reply callback. Whichever comes second
// completes the call, so the completion always knows what was sent and never
// waits for the other thread.
struct PendingCall {
  std::mutex mu;
  bool send_returned = false;                    // Guarded by mu.
  std::optional<absl::StatusOr<Message>> reply;  // Guarded by mu.
  std::shared_ptr<ClientCall> call;
  RawDone done;
};

}  // namespace

class ClientCallStarter {
 public:
  static void Start(const std::shared_ptr<const ChannelState>& channel,
                    const MethodDescriptor& method, const CallOptions& options,
                    FinishRequestFn finish_request, RawDone done);
  static absl::StatusOr<Message> Run(
      const std::shared_ptr<const ChannelState>& channel,
      const MethodDescriptor& method, const CallOptions& options,
      FinishRequestFn finish_request, std::shared_ptr<ClientCall>* call);

 private:
  // Everything before sending: the call's subject, timeout, policies and
  // trace, the interceptors' OnStart, and the request built into `lease`.
  // A non-OK status ends the call before anything is sent.
  static absl::Status Prepare(ClientCall& call, const CallOptions& options,
                              FinishRequestFn finish_request,
                              RequestOptions& request, BuilderLease& lease);
};

ClientCall::ClientCall(std::shared_ptr<const ChannelState> channel,
                       const MethodDescriptor& method)
    : channel_(std::move(channel)) {
  info_.method = &method;
}

absl::Status ClientCall::Finish(absl::Status status,
                                const Headers* reply_headers) {
  if (!status.ok() && !TraceIdFromStatus(status).has_value()) {
    const TraceContext& trace = has_sent_ ? sent_.trace : info_.trace;
    if (trace.valid())
      status = WithTraceId(std::move(status), trace.TraceIdHex());
  }
  if (!status.ok() && has_sent_ && !MessageIdFromStatus(status).has_value()) {
    status = WithMessageId(std::move(status), sent_.message_id);
  }
  ClientCallResult result;
  result.status = status;
  result.latency = absl::Now() - info_.start_time;
  if (has_sent_) result.sent = sent_;
  result.max_attempts = info_.retry.max_attempts;
  result.reply_headers = reply_headers;
  const auto& interceptors = channel_->options.interceptors;
  for (size_t i = started_; i-- > 0;) {
    // An OnFinish that throws has nothing left to reject; the status stands.
    (void)CatchAll("client interceptor OnFinish", [&] {
      interceptors[i]->OnFinish(info_, result);
      return absl::OkStatus();
    });
  }
  return status;
}

absl::Status ClientCallStarter::Prepare(ClientCall& call,
                                        const CallOptions& options,
                                        FinishRequestFn finish_request,
                                        RequestOptions& request,
                                        BuilderLease& lease) {
  const ChannelState& channel = *call.channel_;
  const MethodDescriptor& method = *call.info_.method;
  const ClientOptions& client = channel.options;
  ClientCallInfo& info = call.info_;
  info.start_time = absl::Now();
  info.subject = MethodSubject(
      EffectivePrefix(method.default_prefix, client.subject_prefix),
      method.method);
  info.timeout = options.timeout == absl::ZeroDuration() ? client.timeout
                                                         : options.timeout;
  if (options.retry.has_value()) {
    info.retry = *options.retry;
  } else if (method.idempotent) {
    info.retry = client.retry;
  }
  if (options.hedging.has_value()) {
    info.hedging = *options.hedging;
  } else if (method.idempotent) {
    info.hedging = client.hedging;
  }
  // Chosen here rather than by the gateway so that interceptors and errors
  // raised before anything is sent know the trace ID.
  // Sampled as the gateway samples the traces it starts; for a trace
  // started here, the call's span is its root span.
  TraceChoice choice = ChooseTrace(
      options.trace, channel.connection->options().trace_sample_ratio);
  info.trace = choice.trace;
  const bool new_root = choice.generated;

  if (options.timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "negative call timeout ", absl::FormatDuration(options.timeout)));
  }

  request.headers = options.headers;
  request.trace = info.trace;
  request.trace_is_new_root = new_root;
  // The CLIENT span's name and rpc.method (natsgw/span_sink.h); only built
  // when spans are made at all.
  if (channel.connection->options().span_sink != nullptr) {
    request.rpc_method =
        absl::StrCat(method.full_service_name, "/", method.method);
  }
  request.message_id = options.message_id;
  request.retry = info.retry;
  request.hedging = info.hedging;

  for (const auto& interceptor : client.interceptors) {
    absl::Status s = CatchAll("client interceptor OnStart", [&] {
      return interceptor->OnStart(info, request.headers);
    });
    if (!s.ok()) return s;
    ++call.started_;
  }
  return finish_request(lease.builder());
}

absl::StatusOr<Message> ClientCallStarter::Run(
    const std::shared_ptr<const ChannelState>& channel,
    const MethodDescriptor& method, const CallOptions& options,
    FinishRequestFn finish_request, std::shared_ptr<ClientCall>* call) {
  *call = std::make_shared<ClientCall>(channel, method);
  ClientCall& c = **call;
  RequestOptions request;
  BuilderLease lease;
  if (absl::Status s = Prepare(c, options, finish_request, request, lease);
      !s.ok()) {
    return CountFailure(*channel->connection, "request", std::move(s));
  }
  // The blocking Request: this thread may read its own reply (one thread
  // hand-off fewer than waiting for a callback).
  std::optional<SendInfo> sent;
  absl::StatusOr<Message> reply = channel->connection->Request(
      c.info_.subject, lease.bytes(), c.info_.timeout, request, &sent);
  if (sent.has_value()) {
    c.sent_ = *std::move(sent);
    c.has_sent_ = true;
  }
  return reply;
}

void ClientCallStarter::Start(
    const std::shared_ptr<const ChannelState>& channel,
    const MethodDescriptor& method, const CallOptions& options,
    FinishRequestFn finish_request, RawDone done) {
  auto call = std::make_shared<ClientCall>(channel, method);
  RequestOptions request;
  BuilderLease lease;
  if (absl::Status s = Prepare(*call, options, finish_request, request, lease);
      !s.ok()) {
    done(call, CountFailure(*channel->connection, "request", std::move(s)));
    return;
  }
  const ClientCallInfo& info = call->info_;

  auto pending = std::make_shared<PendingCall>();
  pending->call = call;
  pending->done = std::move(done);
  absl::StatusOr<SendInfo> sent = channel->connection->RequestAsync(
      info.subject, lease.bytes(), info.timeout, request,
      [pending](absl::StatusOr<Message> reply) {
        {
          std::lock_guard<std::mutex> lock(pending->mu);
          if (!pending->send_returned) {
            pending->reply = std::move(reply);
            return;
          }
        }
        pending->done(std::move(pending->call), std::move(reply));
      });
  if (!sent.ok()) {
    // Nothing was sent and the gateway will not call back.
    pending->done(std::move(pending->call), sent.status());
    return;
  }
  std::optional<absl::StatusOr<Message>> early_reply;
  {
    std::lock_guard<std::mutex> lock(pending->mu);
    call->sent_ = *std::move(sent);
    call->has_sent_ = true;
    pending->send_returned = true;
    early_reply = std::move(pending->reply);
  }
  if (early_reply.has_value()) {
    pending->done(std::move(pending->call), *std::move(early_reply));
  }
}

void StartCall(const std::shared_ptr<const ChannelState>& channel,
               const MethodDescriptor& method, const CallOptions& options,
               FinishRequestFn finish_request, RawDone done) {
  ClientCallStarter::Start(channel, method, options, finish_request,
                           std::move(done));
}

absl::StatusOr<Message> RunCall(
    const std::shared_ptr<const ChannelState>& channel,
    const MethodDescriptor& method, const CallOptions& options,
    FinishRequestFn finish_request, std::shared_ptr<ClientCall>* call) {
  return ClientCallStarter::Run(channel, method, options, finish_request, call);
}

absl::Status InvalidReply(const MethodDescriptor& method,
                          const absl::Status& verify_status) {
  return absl::InvalidArgumentError(absl::StrCat(
      "reply of ", method.full_service_name, ".", method.method,
      " is not a valid ", method.response_type, ": ", verify_status.message()));
}

absl::Status ClientCall::InvalidReply(const absl::Status& verify_status) {
  // The gateway delivered the reply as a success and counted nothing; the
  // call fails here, on data a responder sent.
  return CountFailure(*channel_->connection, "request",
                      internal::InvalidReply(method(), verify_status));
}

}  // namespace internal

absl::StatusOr<RpcChannel> RpcChannel::Create(Connection& connection,
                                              ClientOptions options) {
  if (options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ClientOptions.timeout must be positive, got ",
                     absl::FormatDuration(options.timeout)));
  }
  if (absl::Status s = ValidateRetryPolicy(options.retry); !s.ok()) return s;
  if (absl::Status s = ValidateHedgingPolicy(options.hedging); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateVerifyLimits(options.verify); !s.ok()) return s;
  for (const auto& interceptor : options.interceptors) {
    if (interceptor == nullptr) {
      return absl::InvalidArgumentError(
          "ClientOptions.interceptors holds a null interceptor");
    }
  }
  auto state = std::make_shared<internal::ChannelState>();
  state->connection = &connection;
  state->options = std::move(options);
  return RpcChannel(std::move(state));
}

std::string RpcChannel::Subject(const MethodDescriptor& method) const {
  return MethodSubject(
      EffectivePrefix(method.default_prefix, state_->options.subject_prefix),
      method.method);
}

}  // namespace natsgw
