// natsgw/rpc_client.h: typed request/reply over a Connection. RpcChannel
// sends FlatBuffers requests of an rpc_service method and hands back the
// verified reply; natsgw-gen's `<Service>Client` classes are thin wrappers
// around it.
//
//   NATSGW_ASSIGN_OR_RETURN(natsgw::RpcChannel channel,
//                           natsgw::RpcChannel::Create(*conn));
//   const natsgw::MethodDescriptor& m = natsgw::echo::EchoMethods::kEcho;
//   auto build = [](flatbuffers::FlatBufferBuilder& fbb) {
//     return natsgw::echo::CreateEchoRequest(fbb, fbb.CreateString("hi"), 7);
//   };
//   // Blocking:
//   absl::StatusOr<natsgw::Response<natsgw::echo::EchoReply>> r =
//       channel.Call<natsgw::echo::EchoRequest, natsgw::echo::EchoReply>(
//           m, build);
//   if (r.ok()) std::cout << (*r)->tag() << " trace " <<
//   r->call.trace.TraceIdHex();
//   // Future:
//   auto f = channel.CallAsync<EchoRequest, EchoReply>(m, build);
//   // Callback:
//   channel.CallAsync<EchoRequest, EchoReply>(m, build,
//       [](absl::StatusOr<natsgw::Response<EchoReply>> r) { ... });
//
// Every form goes through Connection::RequestAsync, so all calls share the
// gateway's single reply subscription and deadline timer; the sync form just
// waits for it. The request is built by the caller's function into the
// thread's reusable builder (natsgw/builder_lease.h) and finished with the
// schema's file identifier by the channel. A reply is verified
// (natsgw/verified.h, ClientOptions::verify) before the caller sees it; a
// reply that fails is INVALID_ARGUMENT, counted in the connection's
// natsgw_errors_total{operation="request"}. Every failed call's status carries
// its trace ID (natsgw::TraceIdFromStatus) and, once the request was sent,
// its message ID (natsgw::MessageIdFromStatus).
//
// Retries and hedging apply only to methods declared `(idempotent)` in the
// schema, unless a call sets CallOptions::retry/hedging explicitly (the
// caller then vouches that repeating this call is safe, e.g. because it sets
// a deterministic message_id the server de-duplicates on).
//
// Threads: Call() blocks the calling thread. The callback of CallAsync runs
// exactly once: usually on natsgw's reply or timer thread (it must not block;
// hand long work to another thread), or on the calling thread before
// CallAsync returns if the call fails at once or the reply is faster than the
// send's return. Never call the blocking Call() from such a callback or from
// a client interceptor's OnFinish: it would wait for the thread it runs on.
//
// Thread-safety: RpcChannel is thread-safe and cheap to copy (copies share
// one immutable state). The Connection must outlive every call in progress;
// the channel itself may be destroyed while calls are in flight.
#ifndef NATSGW_RPC_CLIENT_H_
#define NATSGW_RPC_CLIENT_H_

#include <future>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "flatbuffers/flatbuffers.h"
#include "natsgw/builder_lease.h"
#include "natsgw/connection.h"
#include "natsgw/headers.h"
#include "natsgw/interceptor.h"
#include "natsgw/message.h"
#include "natsgw/retry_policy.h"
#include "natsgw/rpc_method.h"
#include "natsgw/send_options.h"
#include "natsgw/trace_context.h"
#include "natsgw/verified.h"

namespace natsgw {

// Options of one RpcChannel (one client of one or more services).
struct ClientOptions {
  // Subject prefix of the methods called; empty: each method's
  // default_prefix ("users"). E.g. "acme.users" for tenant acme.
  std::string subject_prefix;
  // Timeout of a call whose CallOptions::timeout is zero.
  absl::Duration timeout = absl::Seconds(5);
  // Retries of idempotent methods (see the file comment); default: 3
  // attempts. Validated by Create().
  RetryPolicy retry{.max_attempts = 3};
  // Hedging of idempotent methods; default off.
  HedgingPolicy hedging;
  // Limits the replies are verified under.
  VerifyLimits verify;
  // Client interceptors, outermost first (natsgw/interceptor.h).
  std::vector<std::shared_ptr<ClientInterceptor>> interceptors;
};

// Options of one call.
struct CallOptions {
  // Zero: ClientOptions::timeout. Negative: INVALID_ARGUMENT.
  absl::Duration timeout = absl::ZeroDuration();
  // Application headers sent with the request.
  Headers headers;
  // Trace to continue; default: the calling thread's current trace (inside a
  // handler, the handled request's), else a new trace.
  std::optional<TraceContext> trace;
  // Nats-Msg-Id; default: a new random ID. The same for every attempt.
  std::optional<std::string> message_id;
  // Override the channel's policies for this call, for any method.
  std::optional<RetryPolicy> retry;
  std::optional<HedgingPolicy> hedging;
};

// A successful call's result.
template <class T>
struct Response {
  // The verified reply.
  Verified<T> reply;
  // What the call sent: trace ID, message ID, send time.
  SendInfo call;
  // The reply's headers (natsgw's own included).
  Headers headers;
  // The reply's trace context: the server continued the call's trace, so
  // the trace ID is call.trace's unless the reply carried none (then a new
  // root, as for any received message).
  TraceContext reply_trace;
  // When natsgw took the reply off the connection (this host's clock).
  absl::Time received_at;

  const T* operator->() const { return reply.get(); }
  const T& operator*() const { return *reply; }
};

// Builds the request's root table into the given (empty) builder and returns
// its offset; do not Finish() it. Runs on the calling thread before the call
// function returns.
template <class Req>
using RequestBuilder = absl::FunctionRef<flatbuffers::Offset<Req>(
    flatbuffers::FlatBufferBuilder&)>;

// Receives the result of CallAsync exactly once (see the file comment for the
// thread it runs on).
template <class T>
using ResponseCallback = absl::AnyInvocable<void(absl::StatusOr<Response<T>>)>;

namespace internal {

struct ChannelState {
  Connection* connection;
  ClientOptions options;
};

// One typed call in progress: the interceptors' view of it and the state
// needed to finish it. Shared by the sending thread and the completion.
class ClientCall {
 public:
  ClientCall(std::shared_ptr<const ChannelState> channel,
             const MethodDescriptor& method);

  const MethodDescriptor& method() const { return *info_.method; }
  const VerifyLimits& verify_limits() const { return channel_->options.verify; }
  // What was sent (default-constructed if the call failed before sending).
  const SendInfo& sent() const { return sent_; }

  // Attaches the trace ID to a non-OK `status`, runs the interceptors'
  // OnFinish and returns the status. Call exactly once.
  absl::Status Finish(absl::Status status, const Headers* reply_headers);

  // The status for a reply that failed verification (InvalidReply below),
  // counted as a failed request in natsgw_errors_total: the gateway saw a
  // reply, the caller gets an error.
  absl::Status InvalidReply(const absl::Status& verify_status);

 private:
  friend class ClientCallStarter;

  std::shared_ptr<const ChannelState> channel_;
  ClientCallInfo info_;
  // Interceptors whose OnStart succeeded (a prefix of the list).
  size_t started_ = 0;
  bool has_sent_ = false;
  SendInfo sent_;
};

// Receives the raw reply of a call, or the error that ended it early,
// exactly once; it must pass both to CompleteCall (which runs OnFinish).
using RawDone = absl::AnyInvocable<void(std::shared_ptr<ClientCall> call,
                                        absl::StatusOr<Message> reply)>;

// Builds and finishes the request (returns the problem if the caller's
// builder misbehaved).
using FinishRequestFn =
    absl::FunctionRef<absl::Status(flatbuffers::FlatBufferBuilder&)>;

// Runs the interceptors' OnStart, builds the request and sends it with
// Connection::RequestAsync; `done` gets the reply or the error exactly once.
void StartCall(const std::shared_ptr<const ChannelState>& channel,
               const MethodDescriptor& method, const CallOptions& options,
               FinishRequestFn finish_request, RawDone done);

// The same, blocking, with Connection::Request: returns the raw reply or the
// error for CompleteCall; `call` receives the call either way.
absl::StatusOr<Message> RunCall(
    const std::shared_ptr<const ChannelState>& channel,
    const MethodDescriptor& method, const CallOptions& options,
    FinishRequestFn finish_request, std::shared_ptr<ClientCall>* call);

// The status for a reply that failed verification.
absl::Status InvalidReply(const MethodDescriptor& method,
                          const absl::Status& verify_status);

template <class Resp>
absl::StatusOr<Response<Resp>> CompleteCall(ClientCall& call,
                                            absl::StatusOr<Message> reply) {
  if (!reply.ok()) return call.Finish(reply.status(), nullptr);
  Message& message = *reply;
  absl::StatusOr<Verified<Resp>> verified = Verified<Resp>::Verify(
      std::move(message.data), call.method().file_identifier,
      call.verify_limits());
  if (!verified.ok()) {
    return call.Finish(call.InvalidReply(verified.status()), &message.headers);
  }
  absl::Status status = call.Finish(absl::OkStatus(), &message.headers);
  if (!status.ok()) return status;
  return Response<Resp>{std::move(*verified), call.sent(),
                        std::move(message.headers), std::move(message.trace),
                        message.received_at};
}

}  // namespace internal

class RpcChannel {
 public:
  // INVALID_ARGUMENT if the options are unusable (non-positive timeout,
  // invalid retry/hedging policy or verify limits, null interceptor).
  static absl::StatusOr<RpcChannel> Create(Connection& connection,
                                           ClientOptions options = {});

  const ClientOptions& options() const { return state_->options; }
  Connection& connection() const { return *state_->connection; }

  // The subject `method` is called on through this channel.
  std::string Subject(const MethodDescriptor& method) const;

  // Sends the request and waits for the verified reply.
  template <class Req, class Resp>
  absl::StatusOr<Response<Resp>> Call(const MethodDescriptor& method,
                                      RequestBuilder<Req> build,
                                      const CallOptions& options = {}) const {
    std::shared_ptr<internal::ClientCall> call;
    absl::StatusOr<Message> reply = internal::RunCall(
        state_, method, options, FinishRequest<Req>(method, build), &call);
    // Verification and OnFinish run here, on the caller's thread.
    return internal::CompleteCall<Resp>(*call, std::move(reply));
  }

  // Sends the request; the future becomes ready with the verified reply or
  // the error.
  template <class Req, class Resp>
  std::future<absl::StatusOr<Response<Resp>>> CallAsync(
      const MethodDescriptor& method, RequestBuilder<Req> build,
      const CallOptions& options = {}) const {
    std::promise<absl::StatusOr<Response<Resp>>> promise;
    std::future<absl::StatusOr<Response<Resp>>> future = promise.get_future();
    CallAsync<Req, Resp>(
        method, build,
        [promise = std::move(promise)](
            absl::StatusOr<Response<Resp>> result) mutable {
          promise.set_value(std::move(result));
        },
        options);
    return future;
  }

  // Sends the request; `done` receives the verified reply or the error
  // exactly once (see the file comment for its thread).
  template <class Req, class Resp>
  void CallAsync(const MethodDescriptor& method, RequestBuilder<Req> build,
                 ResponseCallback<Resp> done,
                 const CallOptions& options = {}) const {
    internal::StartCall(
        state_, method, options, FinishRequest<Req>(method, build),
        [done = std::move(done)](std::shared_ptr<internal::ClientCall> call,
                                 absl::StatusOr<Message> reply) mutable {
          done(internal::CompleteCall<Resp>(*call, std::move(reply)));
        });
  }

 private:
  explicit RpcChannel(std::shared_ptr<const internal::ChannelState> state)
      : state_(std::move(state)) {}

  // Adapts the caller's builder function to one that also finishes the
  // buffer. The returned object refers to `build`; use it before returning.
  template <class Req>
  static auto FinishRequest(const MethodDescriptor& method,
                            RequestBuilder<Req> build) {
    return [&method, build](flatbuffers::FlatBufferBuilder& fbb) {
      const flatbuffers::Offset<Req> root = build(fbb);
      return internal::FinishWithIdentifier(fbb, root.o, method.file_identifier,
                                            method.request_type);
    };
  }

  std::shared_ptr<const internal::ChannelState> state_;
};

}  // namespace natsgw

#endif  // NATSGW_RPC_CLIENT_H_
