// Fuzz target: a typed client receiving a reply (client side).
//
// The input is a reply as it arrives off the wire, taken through the steps
// the client takes: nats.c's message from a raw header block and payload;
// the no-responders check; ReadNatsMsg; StatusFromErrorHeaders, which turns
// an error reply (Nats-Service-Error, Nats-Service-Error-Code,
// Natsgw-Status) back into the handler's status (RequestMux::HandleReply);
// then, for a success, Verified<Resp>::Verify of the payload under the
// call's VerifyLimits (internal::CompleteCall).
//
// Input layout:
//   byte 0      method whose response type is expected: Echo,
//               Users.RegisterUser, Email.SendWelcomeEmail
//   byte 1      verify limits (verify_limits.h)
//   bytes 2-3   length of the NATS header block (little-endian; capped)
//   ...         the header block, then the payload
//
// Checked:
//   - an error reply always yields a non-OK status with a canonical code,
//     the description as its message (or "service error <code>"), and
//     AddErrorHeaders turns that status back into header values that pass
//     ValidateHeaderValue and read back as the same code;
//   - a payload is accepted by Verify (which adopts the string) exactly when
//     FromView (which copies) and FlatBuffers' own Verifier accept it; a
//     rejection is INVALID_ARGUMENT naming the rule; an accepted reply reads
//     the same through accessors, reflection and a rebuilt copy.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "fuzz_support.h"
#include "nats_message.h"
#include "natsgw/headers.h"
#include "natsgw/message.h"
#include "natsgw/rpc_method.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/schemas/email_natsgw.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/service_error.h"
#include "natsgw/trace_context.h"
#include "natsgw/validation.h"
#include "natsgw/verified.h"
#include "natsgw/wire_headers.h"
#include "schema_fields.h"
#include "verify_limits.h"

namespace natsgw::fuzz {
namespace {

// What AddErrorHeaders promises to make of a message (natsgw/service_error.h):
// cut at 4096 bytes, control characters turned into spaces, surrounding
// whitespace trimmed.
std::string HeaderSafe(absl::string_view message) {
  std::string out(message.substr(0, 4096));
  for (char& c : out) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) c = ' ';
  }
  return std::string(absl::StripAsciiWhitespace(out));
}

bool IsErrorReply(const Headers& headers) {
  return headers.Contains(kServiceErrorHeader) ||
         headers.Contains(kServiceErrorCodeHeader) ||
         headers.Contains(kStatusCodeHeader);
}

void CheckErrorReply(const Headers& headers, const absl::Status& remote) {
  FUZZ_CHECK(!remote.ok(), "an error reply became OK");
  const int code = static_cast<int>(remote.code());
  FUZZ_CHECK(
      code > 0 && code <= static_cast<int>(absl::StatusCode::kUnauthenticated),
      "an error reply became the non-canonical code ", code);
  const std::optional<absl::string_view> description =
      headers.Get(kServiceErrorHeader);
  const std::optional<absl::string_view> service_code =
      headers.Get(kServiceErrorCodeHeader);
  if (description && !description->empty()) {
    FUZZ_CHECK(remote.message() == *description, "message \"", remote.message(),
               "\" is not the description \"", *description, "\"");
  } else if (service_code) {
    FUZZ_CHECK(
        remote.message() == absl::StrCat("service error ", *service_code),
        "message \"", remote.message(), "\" for service code \"", *service_code,
        "\"");
  }
  // A canonical code in Natsgw-Status wins over the service code.
  int number = 0;
  if (std::optional<absl::string_view> canonical =
          headers.Get(kStatusCodeHeader);
      canonical && absl::SimpleAtoi(*canonical, &number) && number > 0 &&
      number <= static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    FUZZ_CHECK(code == number, "Natsgw-Status ", number, " became code ", code);
  }

  // The status as a handler's error travels again: header-safe values that
  // come back with the same code.
  Headers again;
  AddErrorHeaders(remote, again);
  for (const HeaderField& field : again) {
    const absl::Status valid = ValidateHeaderValue(field.value);
    FUZZ_CHECK(valid.ok(), "AddErrorHeaders wrote an invalid ", field.key,
               " value: ", valid.ToString());
  }
  const absl::Status back = StatusFromErrorHeaders(again);
  FUZZ_CHECK(back.code() == remote.code(), "code ", remote.ToString(),
             " came back as ", back.ToString());

  // And over the wire, as a service sends an error reply: the caller gets
  // the same code, and the message made header-safe (or, if nothing is left
  // of it, "service error <HTTP-like code>").
  internal::Stamp stamp;
  stamp.trace = TraceContext::Parse(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                    .value();
  stamp.message_id = "fuzz-message-id";
  stamp.sent_at = absl::FromUnixSeconds(1'700'000'000);
  absl::StatusOr<internal::NatsMsgPtr> sent =
      internal::BuildNatsMsg("_INBOX.fuzz.1", "", Headers(), &again, stamp, 0);
  FUZZ_CHECK(sent.ok(),
             "an error reply could not be built: ", sent.status().ToString());
  const WireMsgPtr wire(sent->release());
  const Message arrived = internal::ReadNatsMsg(
      wire.get(), absl::FromUnixSeconds(1'800'000'000), 1.0, nullptr);
  const absl::Status received = StatusFromErrorHeaders(arrived.headers);
  const std::string safe = HeaderSafe(remote.message());
  const std::string expected =
      safe.empty() ? absl::StrCat("service error ",
                                  ServiceErrorCodeFromStatusCode(remote.code()))
                   : safe;
  FUZZ_CHECK(received.code() == remote.code() && received.message() == expected,
             "the error ", absl::CHexEscape(remote.ToString()), " arrived as ",
             absl::CHexEscape(received.ToString()), "; expected message \"",
             absl::CHexEscape(expected), "\"");
}

template <class Resp>
void Complete(const MethodDescriptor& method, const VerifyLimits& limits,
              Message reply) {
  const absl::StatusOr<Verified<Resp>> copied =
      Verified<Resp>::FromView(reply.data, method.file_identifier, limits);
  FUZZ_CHECK(copied.ok() == ReferenceVerdict<Resp>(
                                reply.data, method.file_identifier, limits),
             "Verified says ", copied.status().ToString(),
             ", FlatBuffers' Verifier the opposite");
  const absl::StatusOr<Verified<Resp>> verified = Verified<Resp>::Verify(
      std::move(reply.data), method.file_identifier, limits);
  FUZZ_CHECK(verified.ok() == copied.ok(), "Verify says ",
             verified.status().ToString(), ", FromView says ",
             copied.status().ToString());
  if (!verified.ok()) {
    FUZZ_CHECK(IsCleanInvalidArgument(verified.status(), 512),
               "rejection is not a clean INVALID_ARGUMENT: ",
               verified.status().ToString());
    FUZZ_CHECK(NamesAVerifyRule(verified.status().message()),
               "rejection names no rule: ", verified.status().message());
    return;
  }
  const std::string fields = CheckRoundTrip(*verified, method.file_identifier);
  FUZZ_CHECK(Describe(**copied) == fields, "the copy reads ",
             Describe(**copied), ", the adopted buffer ", fields);
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

  WireMsgPtr msg = WireMsg("_INBOX.fuzz.1", "", header_block, payload);
  if (msg == nullptr) return 0;
  // The 503 status message the server sends when nobody serves the subject
  // ends the attempt before any decoding.
  if (natsMsg_IsNoResponders(msg.get())) return 0;
  internal::TraceOrigin origin;
  Message reply = internal::ReadNatsMsg(
      msg.get(), absl::FromUnixSeconds(1'800'000'000), 1.0, &origin);
  FUZZ_CHECK(reply.trace.valid(), "a reply without a valid trace");

  const absl::Status remote = StatusFromErrorHeaders(reply.headers);
  if (IsErrorReply(reply.headers)) {
    CheckErrorReply(reply.headers, remote);
    return 0;
  }
  FUZZ_CHECK(remote.ok(),
             "a reply without error headers failed: ", remote.ToString());

  switch (method % 3) {
    case 0:
      Complete<echo::EchoReply>(echo::EchoMethods::kEcho, limits,
                                std::move(reply));
      break;
    case 1:
      Complete<users::RegisterUserReply>(users::UsersMethods::kRegisterUser,
                                         limits, std::move(reply));
      break;
    default:
      Complete<email::SendWelcomeEmailReply>(
          email::EmailMethods::kSendWelcomeEmail, limits, std::move(reply));
      break;
  }
  return 0;
}
