// natsgw/typed_service.h: serving typed rpc_service methods as NATS
// Services API endpoints. natsgw-gen's `<Service>ServiceBase::Start()` is
// built from these helpers; they are public for hand-written services and
// for testing a handler without a server.
//
//   natsgw::TypedServiceOptions options;
//   options.version = "1.4.2";
//   options.serve.workers = 4;
//   natsgw::ServiceConfig config =
//       natsgw::MakeServiceConfig(natsgw::echo::EchoMethods::kService,
//       options);
//   config.endpoints.push_back(
//       natsgw::MakeTypedEndpoint<natsgw::echo::EchoRequest,
//                                 natsgw::echo::EchoReply>(
//           natsgw::echo::EchoMethods::kEcho,
//           [](const natsgw::echo::EchoRequest& req, natsgw::ServerContext&
//           ctx)
//               -> absl::StatusOr<flatbuffers::Offset<natsgw::echo::EchoReply>>
//               {
//             auto& fbb = ctx.builder();
//             return natsgw::echo::CreateEchoReply(
//                 fbb, fbb.CreateVector(req.payload()->data(),
//                                       req.payload()->size()), req.tag());
//           },
//           options));
//   NATSGW_ASSIGN_OR_RETURN(auto service,
//                           natsgw::Service::Start(*conn, std::move(config)));
//
// What the endpoint's RequestHandler does with each request, in order:
//   1. runs the server interceptors' OnStart (a rejection is the reply);
//   2. verifies the payload as the method's request type under
//      TypedServiceOptions::verify; a failure is an INVALID_ARGUMENT reply and
//      the typed handler is not called;
//   3. calls the typed handler with a ServerContext whose builder is the
//      thread's reusable FlatBufferBuilder (never a new one per request);
//   4. finishes the builder with the schema's file identifier and replies
//      with its bytes and ServerContext::reply_headers(), or replies with
//      the handler's error status;
//   5. runs the interceptors' OnFinish.
// An exception thrown by a handler or interceptor becomes an INTERNAL reply
// instead of unwinding through natsgw's threads.
//
// Endpoint metadata names the contract, for `nats micro info`:
// fbs.request_type, fbs.response_type, fbs.file_identifier, fbs.schema.
// Service metadata: fbs.service (the rpc_service's full name), fbs.schema
// (the schema file) and fbs.bfbs, the base64 of the binary schema
// (ServiceDescriptor::schema_bfbs), from which the natsgw CLI and
// natsgw-edge translate JSON without a local copy of the schema. fbs.bfbs
// is left out when the descriptor has no binary schema or when it would
// take the service metadata past the Services API's 128 KiB.
//
// Threads: the handler runs on the endpoint's delivery thread, or on one of
// ServeOptions::workers threads, where it may run concurrently with itself
// (natsgw/serve_options.h). It may block for as long as its budget allows
// and may make calls of its own (they continue the request's trace and
// inherit its remaining budget).
//
// Thread-safety: the helpers are pure functions; handlers and interceptors
// must be thread-safe when workers > 1.
#ifndef NATSGW_TYPED_SERVICE_H_
#define NATSGW_TYPED_SERVICE_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flatbuffers/flatbuffers.h"
#include "natsgw/interceptor.h"
#include "natsgw/message.h"
#include "natsgw/rpc_method.h"
#include "natsgw/serve_options.h"
#include "natsgw/server_context.h"
#include "natsgw/service.h"
#include "natsgw/verified.h"

namespace natsgw {

struct TypedServiceOptions {
  // Subject prefix of every method; empty: the service's default_prefix
  // ("users"). E.g. "acme.users" serves acme.users.RegisterUser.
  std::string subject_prefix;
  // NATS Services API name ([A-Za-z0-9_-]+); empty: the default_prefix
  // ("users"), which `nats micro ls` then lists.
  std::string name;
  // SemVer version reported to `nats micro info`: the deployment's release,
  // which the schema cannot know. "0.0.0" (as ServiceConfig) means unset.
  std::string version = "0.0.0";
  // Empty: "<full service name> (<schema file>)".
  std::string description;
  // Service metadata; natsgw adds fbs.service, fbs.schema and fbs.bfbs
  // unless set (see the file comment).
  std::map<std::string, std::string> metadata;
  // Queue group of every endpoint; "q" lets instances share requests. Empty
  // serves without a queue group (every instance gets every request).
  std::string queue_group = "q";
  // Concurrency and load shedding of every endpoint.
  ServeOptions serve;
  // Limits request payloads are verified under.
  VerifyLimits verify;
  // Server interceptors, outermost first (natsgw/interceptor.h).
  std::vector<std::shared_ptr<ServerInterceptor>> interceptors;
};

// A typed method implementation: returns the root offset of the reply built
// in ctx.builder(), or an error status the caller receives with the same
// code and message.
template <class Req, class Resp>
using TypedHandler =
    absl::AnyInvocable<absl::StatusOr<flatbuffers::Offset<Resp>>(
        const Req& request, ServerContext& ctx)>;

// INVALID_ARGUMENT if `options` are unusable (verify limits, a null
// interceptor). Service::Start checks the rest (name, version, subjects).
absl::Status ValidateTypedServiceOptions(const TypedServiceOptions& options);

// The service part of a ServiceConfig (name, version, description,
// metadata, queue group, serve options); endpoints are added by the caller.
ServiceConfig MakeServiceConfig(const ServiceDescriptor& service,
                                const TypedServiceOptions& options);

namespace internal {

// Per-endpoint data shared by every request of the endpoint.
struct TypedEndpointState {
  const MethodDescriptor* method;
  VerifyLimits verify;
  std::vector<std::shared_ptr<ServerInterceptor>> interceptors;
};

// Verifies the request at `data` (aligned) and runs the typed handler;
// returns the reply's root offset.
using TypedInvoke = absl::FunctionRef<absl::StatusOr<flatbuffers::uoffset_t>(
    const uint8_t* data, size_t size, ServerContext& ctx)>;

// Steps 1-5 of the file comment around `invoke`.
absl::StatusOr<Reply> HandleTypedRequest(const TypedEndpointState& state,
                                         const Message& request,
                                         TypedInvoke invoke);

// The INVALID_ARGUMENT reply for a request that failed verification.
absl::Status InvalidRequest(const MethodDescriptor& method,
                            const absl::Status& verify_status);

// The endpoint of `method` without its handler.
EndpointConfig MakeEndpointShell(const MethodDescriptor& method,
                                 const TypedServiceOptions& options);

}  // namespace internal

// The endpoint serving `method` with `handler` (see the file comment).
template <class Req, class Resp>
EndpointConfig MakeTypedEndpoint(const MethodDescriptor& method,
                                 TypedHandler<Req, Resp> handler,
                                 const TypedServiceOptions& options) {
  EndpointConfig endpoint = internal::MakeEndpointShell(method, options);
  auto state = std::make_shared<const internal::TypedEndpointState>(
      internal::TypedEndpointState{&method, options.verify,
                                   options.interceptors});
  // Shared so that concurrent workers call one handler object.
  auto shared_handler =
      std::make_shared<TypedHandler<Req, Resp>>(std::move(handler));
  endpoint.handler = [state = std::move(state),
                      handler = std::move(shared_handler)](
                         const Message& request) -> absl::StatusOr<Reply> {
    return internal::HandleTypedRequest(
        *state, request,
        [&](const uint8_t* data, size_t size,
            ServerContext& ctx) -> absl::StatusOr<flatbuffers::uoffset_t> {
          const MethodDescriptor& m = *state->method;
          absl::Status verified = internal::VerifyAligned<Req>(
              data, size, m.file_identifier, state->verify);
          if (!verified.ok()) return internal::InvalidRequest(m, verified);
          absl::StatusOr<flatbuffers::Offset<Resp>> reply =
              (*handler)(*flatbuffers::GetRoot<Req>(data), ctx);
          if (!reply.ok()) return reply.status();
          return reply->o;
        });
  };
  return endpoint;
}

}  // namespace natsgw

#endif  // NATSGW_TYPED_SERVICE_H_
