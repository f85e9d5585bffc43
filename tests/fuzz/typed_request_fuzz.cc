// Fuzz target: a typed service receiving a request (server side).
//
// The input is a request as it arrives off the wire: nats.c's message made
// from a raw header block and payload, read into a natsgw::Message as
// Connection::Serve reads it (ReadNatsMsg), then handed to the
// RequestHandler that MakeTypedEndpoint builds for one method of the
// project's schemas, as a Service does. That handler verifies the payload
// under the method's VerifyLimits and only then calls the typed handler.
//
// Input layout:
//   byte 0      method: Echo, Users.RegisterUser, Email.SendWelcomeEmail
//   byte 1      verify limits: < 0x80 the defaults, else tight ones
//               (depth, table and size limits taken from the low bits)
//   bytes 2-3   length of the NATS header block (little-endian; capped)
//   ...         the header block, then the payload
//
// Checked:
//   - the typed handler runs if and only if Verified<Req> accepts the
//     payload under the same limits, and Verified<Req> accepts exactly what
//     FlatBuffers' own Verifier accepts under those limits;
//   - a rejected request is answered INVALID_ARGUMENT naming the broken
//     rule, with a bounded message free of control bytes;
//   - an accepted request reads the same through the generated accessors,
//     reflection and a rebuilt copy; the reply natsgw finishes verifies as
//     the response type and carries exactly what the handler built;
//   - the handler sees no reserved header among the application headers.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "flatbuffers/flatbuffers.h"
#include "fuzz_support.h"
#include "nats_message.h"
#include "natsgw/message.h"
#include "natsgw/rpc_method.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/schemas/email_natsgw.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/server_context.h"
#include "natsgw/typed_service.h"
#include "natsgw/verified.h"
#include "natsgw/wire_headers.h"
#include "schema_fields.h"
#include "verify_limits.h"

namespace natsgw::fuzz {
namespace {

std::string StringField(absl::string_view s) {
  return absl::StrCat(s.size(), ":", s, ";");
}

absl::string_view View(const flatbuffers::String* s) {
  return s == nullptr ? absl::string_view()
                      : absl::string_view(s->data(), s->size());
}

// Per method: the reply the test handler builds, and what that reply must
// read as (Describe of the response type), worked out from the request.
flatbuffers::Offset<echo::EchoReply> BuildReply(const echo::EchoRequest& req,
                                                ServerContext& ctx) {
  flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
  return echo::CreateEchoReply(fbb, CopyBytes(fbb, req.payload()),
                               req.tag() + 1);
}
std::string ExpectedReply(const echo::EchoRequest& req) {
  return absl::StrCat(Field(req.payload()), req.tag() + 1);
}

std::string UserId(const users::RegisterUserRequest& req) {
  return absl::StrCat("u-", View(req.email()));
}
int64_t CreatedAt(const users::RegisterUserRequest& req) {
  return req.display_name() == nullptr
             ? -1
             : static_cast<int64_t>(req.display_name()->size());
}
flatbuffers::Offset<users::RegisterUserReply> BuildReply(
    const users::RegisterUserRequest& req, ServerContext& ctx) {
  flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
  return users::CreateRegisterUserReply(fbb, fbb.CreateString(UserId(req)),
                                        CreatedAt(req));
}
std::string ExpectedReply(const users::RegisterUserRequest& req) {
  return absl::StrCat(StringField(UserId(req)), CreatedAt(req));
}

std::string EmailId(const email::SendWelcomeEmailRequest& req) {
  return absl::StrCat(View(req.user_id()), "/", View(req.email()), "/",
                      View(req.display_name()));
}
flatbuffers::Offset<email::SendWelcomeEmailReply> BuildReply(
    const email::SendWelcomeEmailRequest& req, ServerContext& ctx) {
  flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
  return email::CreateSendWelcomeEmailReply(fbb,
                                            fbb.CreateString(EmailId(req)));
}
std::string ExpectedReply(const email::SendWelcomeEmailRequest& req) {
  return StringField(EmailId(req));
}

// What the handler may see of the request's headers: no reserved one, and
// metadata() agreeing with them.
void CheckApplicationHeaders(const ServerContext& ctx) {
  const Headers app = ctx.application_headers();
  for (const HeaderField& field : app) {
    FUZZ_CHECK(!IsReservedHeader(field.key),
               "application_headers() holds the reserved header ", field.key);
    FUZZ_CHECK(ctx.metadata(field.key) == app.Get(field.key), "metadata(",
               field.key, ") disagrees with the headers");
  }
  for (absl::string_view reserved :
       {kTraceParentHeader, kMessageIdHeader, kSentAtHeader, kTimeoutHeader}) {
    FUZZ_CHECK(!ctx.metadata(reserved).has_value(),
               "metadata() exposes the reserved header ", reserved);
  }
}

template <class Req, class Resp>
void Serve(const MethodDescriptor& method, const VerifyLimits& limits,
           const Message& request) {
  // The verdict natsgw must reach, worked out on its own.
  const absl::StatusOr<Verified<Req>> oracle =
      Verified<Req>::FromView(request.data, method.file_identifier, limits);
  FUZZ_CHECK(oracle.ok() == ReferenceVerdict<Req>(
                                request.data, method.file_identifier, limits),
             "Verified says ", oracle.status().ToString(),
             ", FlatBuffers' Verifier the opposite");

  int calls = 0;
  std::string expected;
  TypedServiceOptions options;
  options.verify = limits;
  EndpointConfig endpoint = MakeTypedEndpoint<Req, Resp>(
      method,
      [&](const Req& req,
          ServerContext& ctx) -> absl::StatusOr<flatbuffers::Offset<Resp>> {
        ++calls;
        (void)Describe(req);
        CheckApplicationHeaders(ctx);
        FUZZ_CHECK(ctx.trace().valid(), "the handler sees an invalid trace");
        expected = ExpectedReply(req);
        return BuildReply(req, ctx);
      },
      options);
  const absl::StatusOr<Reply> reply = endpoint.handler(request);

  if (!oracle.ok()) {
    FUZZ_CHECK(calls == 0, "the handler ran for a request Verified rejects: ",
               oracle.status().ToString());
    FUZZ_CHECK(!reply.ok(), "a request Verified rejects was answered OK");
    FUZZ_CHECK(IsCleanInvalidArgument(reply.status(), 1024),
               "rejection is not a clean INVALID_ARGUMENT: ",
               reply.status().ToString());
    FUZZ_CHECK(NamesAVerifyRule(reply.status().message()),
               "rejection names no rule: ", reply.status().message());
    FUZZ_CHECK(
        absl::StrContains(reply.status().message(), oracle.status().message()),
        "rejection \"", reply.status().message(),
        "\" does not carry the verifier's \"", oracle.status().message(), "\"");
    return;
  }

  FUZZ_CHECK(calls == 1, "the handler ran ", calls,
             " times for a valid request");
  FUZZ_CHECK(reply.ok(), "a valid request failed: ", reply.status().ToString());
  CheckRoundTrip(*oracle, method.file_identifier);
  const absl::StatusOr<Verified<Resp>> answer = Verified<Resp>::FromView(
      reply->data, method.file_identifier, LooseLimits());
  FUZZ_CHECK(answer.ok(), "the reply natsgw finished does not verify: ",
             answer.status().ToString());
  FUZZ_CHECK(Describe(**answer) == expected, "the reply reads ",
             Describe(**answer), ", the handler built ", expected);
  FUZZ_CHECK(reply->headers.empty(), "reply headers appeared from nowhere");
}

}  // namespace
}  // namespace natsgw::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace natsgw;        // NOLINT(build/namespaces)
  using namespace natsgw::fuzz;  // NOLINT(build/namespaces)
  Input in(data, size);
  const uint8_t method = in.Byte();
  const VerifyLimits limits = LimitsFromByte(in.Byte());
  const absl::string_view header_block = in.Bytes(in.U16());
  const absl::string_view payload = in.Rest();

  WireMsgPtr msg =
      WireMsg("fuzz.request", "_INBOX.fuzz.1", header_block, payload);
  if (msg == nullptr) return 0;
  // A fixed clock and sampling ratio keep the run deterministic.
  const Message request = internal::ReadNatsMsg(
      msg.get(), absl::FromUnixSeconds(1'800'000'000), 1.0, nullptr);
  FUZZ_CHECK(request.data == payload, "the payload changed on the way in");

  switch (method % 3) {
    case 0:
      Serve<echo::EchoRequest, echo::EchoReply>(echo::EchoMethods::kEcho,
                                                limits, request);
      break;
    case 1:
      Serve<users::RegisterUserRequest, users::RegisterUserReply>(
          users::UsersMethods::kRegisterUser, limits, request);
      break;
    default:
      Serve<email::SendWelcomeEmailRequest, email::SendWelcomeEmailReply>(
          email::EmailMethods::kSendWelcomeEmail, limits, request);
      break;
  }
  return 0;
}
