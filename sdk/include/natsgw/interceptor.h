// natsgw/interceptor.h: hooks that observe, decorate or reject typed calls,
// on the client (ClientInterceptor) and on the server (ServerInterceptor), so
// that metrics, tracing exporters, logging and auth plug in instead of being
// wired into every call site.
//
//   // Server side: reject calls without a valid token before the handler.
//   class AuthInterceptor : public natsgw::ServerInterceptor {
//    public:
//     absl::Status OnStart(natsgw::ServerContext& ctx) override {
//       std::optional<absl::string_view> token = ctx.metadata("Authorization");
//       if (!token || !tokens_.Valid(*token)) {
//         return absl::UnauthenticatedError("missing or invalid token");
//       }
//       return absl::OkStatus();
//     }
//   };
//   natsgw::TypedServiceOptions options;
//   options.interceptors.push_back(std::make_shared<AuthInterceptor>(...));
//
//   // Client side: add the token to every call.
//   class TokenInterceptor : public natsgw::ClientInterceptor {
//    public:
//     absl::Status OnStart(const natsgw::ClientCallInfo& call,
//                          natsgw::Headers& headers) override {
//       headers.Set("Authorization", token_);
//       return absl::OkStatus();
//     }
//   };
//
// Order: interceptors run in registration order, the first registered being
// the outermost: OnStart runs first to last, OnFinish last to first. If an
// OnStart returns an error, the call is rejected with that status: later
// interceptors' OnStart and the call itself (client: the send; server: the
// payload verification and the handler) are skipped, and OnFinish runs, with
// the rejecting status, for exactly the interceptors whose OnStart succeeded.
// Every interceptor whose OnStart succeeded gets exactly one OnFinish.
//
// Observer-style (OnStart/OnFinish instead of a synchronous next() chain) so
// that the same interceptor works for sync, future and callback calls, whose
// completion happens on another thread.
//
// Thread-safety: one interceptor object serves all calls of the clients or
// services it is registered with, concurrently, from many threads: its
// methods must be thread-safe. They must not block for long (client OnFinish
// may run on natsgw's reply thread). The info/context objects passed in are
// valid only during the call of the method; within one call OnStart and
// OnFinish see the same object (its address may key per-call state).
// Exceptions thrown by an interceptor never escape: one thrown by OnStart
// rejects the call with INTERNAL; one thrown by OnFinish is caught and
// ignored, because the outcome is final by then.
#ifndef NATSGW_INTERCEPTOR_H_
#define NATSGW_INTERCEPTOR_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "natsgw/headers.h"
#include "natsgw/retry_policy.h"
#include "natsgw/rpc_method.h"
#include "natsgw/send_options.h"
#include "natsgw/server_context.h"
#include "natsgw/trace_context.h"

namespace natsgw {

// What a client interceptor sees of a typed call.
struct ClientCallInfo {
  // Never null; static storage (generated descriptor).
  const MethodDescriptor* method = nullptr;
  // The concrete subject, e.g. "acme.users.RegisterUser".
  std::string subject;
  // The call's timeout (possibly capped further by an enclosing handler's
  // remaining budget inside the gateway).
  absl::Duration timeout;
  // The effective policies: retries and hedges only for idempotent methods
  // unless the call overrides them.
  RetryPolicy retry;
  HedgingPolicy hedging;
  // The trace the call continues; the request carries a child span of it.
  TraceContext trace;
  // When the typed layer started the call.
  absl::Time start_time;
};

// How a typed call ended.
struct ClientCallResult {
  // OK, or the error the caller receives (with the trace ID attached).
  absl::Status status;
  // From start_time to completion (including retries, reply verification).
  absl::Duration latency;
  // What was sent; unset if the call was rejected before anything was sent.
  std::optional<SendInfo> sent;
  // The most attempts the retry policy allowed (1 without retries). The
  // gateway does not report how many were actually made.
  int max_attempts = 1;
  // Headers of the reply, or null if no reply was received or the reply was
  // an error (the gateway turns error replies into a status).
  const Headers* reply_headers = nullptr;
};

class ClientInterceptor {
 public:
  virtual ~ClientInterceptor() = default;

  // Before the request is sent, on the thread making the call. May add
  // application headers to `headers` (natsgw's own names are rejected at
  // send). A non-OK status rejects the call (see the file comment).
  virtual absl::Status OnStart(const ClientCallInfo& call, Headers& headers) {
    return absl::OkStatus();
  }

  // Once per call whose OnStart succeeded, when the call has finished and
  // before the caller sees the result: on the calling thread for a sync
  // call or an immediate failure, otherwise on natsgw's reply or timer
  // thread (must not block).
  virtual void OnFinish(const ClientCallInfo& call,
                        const ClientCallResult& result) {}
};

class ServerInterceptor {
 public:
  virtual ~ServerInterceptor() = default;

  // Before the request payload is verified and the typed handler runs, on
  // the handler's thread. May read the request's metadata and add reply
  // headers. A non-OK status is the reply; the handler does not run.
  virtual absl::Status OnStart(ServerContext& context) {
    return absl::OkStatus();
  }

  // Once per request whose OnStart succeeded, after the handler (or the
  // verification or a later interceptor that rejected the request), on the
  // handler's thread. `status` is what the caller receives; `duration` is
  // the time since the adaptor took the request (excluding queueing).
  virtual void OnFinish(const ServerContext& context,
                        const absl::Status& status, absl::Duration duration) {}
};

}  // namespace natsgw

#endif  // NATSGW_INTERCEPTOR_H_
