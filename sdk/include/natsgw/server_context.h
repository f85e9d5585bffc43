// natsgw/server_context.h: what a typed handler knows about the request it
// is handling, and where it builds its reply.
//
//   absl::StatusOr<flatbuffers::Offset<natsgw::users::RegisterUserReply>>
//   UserService::RegisterUser(const natsgw::users::RegisterUserRequest& req,
//                             natsgw::ServerContext& ctx) {
//     if (ctx.remaining() < absl::Milliseconds(5)) {
//       return absl::DeadlineExceededError("not enough budget left");
//     }
//     LOG(INFO) << "trace " << ctx.trace().TraceIdHex();
//     ctx.reply_headers().Add("Served-By", hostname);
//     flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
//     return natsgw::users::CreateRegisterUserReplyDirect(fbb, id.c_str(),
//     now);
//   }
//
// The builder is the handler thread's reusable one (natsgw/builder_lease.h):
// it is empty when the handler starts, keeps its memory between requests, and
// is finished with the schema's file identifier by the framework after the
// handler returns the root offset. Do not Finish() it yourself.
//
// Thread-safety: a ServerContext exists for one request, on the thread that
// runs the handler, and must not be used after the handler returns. It is not
// thread-safe; do not share it with other threads.
#ifndef NATSGW_SERVER_CONTEXT_H_
#define NATSGW_SERVER_CONTEXT_H_

#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "flatbuffers/flatbuffers.h"
#include "natsgw/headers.h"
#include "natsgw/message.h"
#include "natsgw/rpc_method.h"
#include "natsgw/trace_context.h"

namespace natsgw {

class ServerContext {
 public:
  // Made by the typed endpoint adaptor (natsgw/typed_service.h); public so
  // that handlers can be unit-tested with a hand-made request.
  ServerContext(const MethodDescriptor& method, const Message& request,
                flatbuffers::FlatBufferBuilder& builder);

  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  const MethodDescriptor& method() const { return method_; }

  // The request as received: subject, raw payload, every header.
  const Message& request() const { return request_; }

  // The request's trace. Messages the handler sends from this thread
  // continue it automatically (natsgw/trace_context.h).
  const TraceContext& trace() const { return request_.trace; }

  // Receive time plus the caller's budget, on this host's clock; unset if the
  // caller sent no budget.
  std::optional<absl::Time> deadline() const { return request_.deadline; }

  // Budget left now: deadline() - now (possibly negative), or
  // InfiniteDuration() without a deadline. Requests the handler makes are
  // capped by it automatically.
  absl::Duration remaining() const;

  // Caller metadata.
  // The caller's Nats-Msg-Id (empty if none); stable across retries of one
  // call, so it can key de-duplication.
  absl::string_view message_id() const { return request_.message_id; }
  // When the caller sent the request, on the caller's clock.
  std::optional<absl::Time> sent_at() const { return request_.sent_at; }
  // The caller's application headers: every header except those natsgw
  // manages (natsgw/wire_headers.h).
  Headers application_headers() const;
  // First value of an application header (ASCII case-insensitive); natsgw's
  // own headers are never returned.
  std::optional<absl::string_view> metadata(absl::string_view key) const;

  // Where the reply is built; empty when the handler starts.
  flatbuffers::FlatBufferBuilder& builder() { return builder_; }

  // Application headers sent with a successful reply (validated like
  // PublishOptions::headers; natsgw's own names are rejected). Ignored when
  // the handler returns an error.
  Headers& reply_headers() { return reply_headers_; }
  const Headers& reply_headers() const { return reply_headers_; }

 private:
  const MethodDescriptor& method_;
  const Message& request_;
  flatbuffers::FlatBufferBuilder& builder_;
  Headers reply_headers_;
};

}  // namespace natsgw

#endif  // NATSGW_SERVER_CONTEXT_H_
