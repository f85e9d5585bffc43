// Fuzz target: event payload verification, subscriber and publisher side.
//
// SubscribeTyped hands an event to the application only after
// Verified<T>::FromView accepts the payload (natsgw/typed_subscriber.h);
// TypedPublisher checks an outgoing buffer with internal::VerifyAnywhere,
// which verifies in place when the bytes are aligned and in a copy when not
// (natsgw/typed_publisher.h). nats.c hands payloads over at arbitrary
// addresses, so the input is placed at a chosen misalignment first.
//
// Input layout:
//   byte 0      bit 0: event type (users.UserRegistered,
//               email.WelcomeEmailSent)
//   byte 1      bits 0-2: misalignment of the payload (0-7 bytes)
//   byte 2      verify limits (verify_limits.h)
//   ...         the payload
//
// Checked:
//   - FromView, VerifyAnywhere and Verify (adopting a string) reach the same
//     verdict with the same message, whatever the alignment, and it is
//     FlatBuffers' own Verifier's under the same limits;
//   - limits only ever tighten: accepted under tight limits means accepted
//     under the defaults, accepted with the file identifier means accepted
//     without it;
//   - a rejection is INVALID_ARGUMENT naming the rule; an accepted event
//     reads the same through accessors, reflection and a rebuilt copy.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "fuzz_support.h"
#include "natsgw/schemas/email_natsgw.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/typed_publisher.h"
#include "natsgw/verified.h"
#include "schema_fields.h"
#include "verify_limits.h"

namespace natsgw::fuzz {
namespace {

template <class T>
void Receive(absl::string_view file_identifier, absl::string_view payload,
             const VerifyLimits& limits) {
  const absl::StatusOr<Verified<T>> received =
      Verified<T>::FromView(payload, file_identifier, limits);
  const absl::Status published =
      internal::VerifyAnywhere<T>(payload, file_identifier, limits);
  const absl::StatusOr<Verified<T>> adopted =
      Verified<T>::Verify(std::string(payload), file_identifier, limits);
  FUZZ_CHECK(
      received.ok() == ReferenceVerdict<T>(payload, file_identifier, limits),
      "Verified says ", received.status().ToString(),
      ", FlatBuffers' Verifier the opposite");
  FUZZ_CHECK(received.status() == published,
             "subscriber: ", received.status().ToString(),
             "; publisher: ", published.ToString());
  FUZZ_CHECK(received.status() == adopted.status(),
             "FromView: ", received.status().ToString(),
             "; Verify: ", adopted.status().ToString());

  if (!received.ok()) {
    FUZZ_CHECK(IsCleanInvalidArgument(received.status(), 512),
               "rejection is not a clean INVALID_ARGUMENT: ",
               received.status().ToString());
    FUZZ_CHECK(NamesAVerifyRule(received.status().message()),
               "rejection names no rule: ", received.status().message());
    return;
  }

  const absl::StatusOr<Verified<T>> defaults =
      Verified<T>::FromView(payload, file_identifier);
  FUZZ_CHECK(
      defaults.ok(), "accepted under ", limits.max_depth, "/",
      limits.max_tables, "/", limits.max_size_bytes,
      " but rejected under the defaults: ", defaults.status().ToString());
  const absl::StatusOr<Verified<T>> anonymous =
      Verified<T>::FromView(payload, "", limits);
  FUZZ_CHECK(anonymous.ok(),
             "accepted with its file identifier, rejected without: ",
             anonymous.status().ToString());

  const std::string fields = CheckRoundTrip(*received, file_identifier);
  FUZZ_CHECK(Describe(**adopted) == fields, "Verify reads ",
             Describe(**adopted), ", FromView ", fields);
}

}  // namespace
}  // namespace natsgw::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace natsgw;        // NOLINT(build/namespaces)
  using namespace natsgw::fuzz;  // NOLINT(build/namespaces)
  Input in(data, size);
  const uint8_t type = in.Byte();
  const size_t misalignment = in.Byte() & 0x07;
  const VerifyLimits limits = LimitsFromByte(in.Byte());
  const absl::string_view rest = in.Rest();

  // new[] storage is at least 16-byte aligned; the payload starts
  // `misalignment` bytes in and ends where the allocation does, so that the
  // address sanitizer sees any read past its end.
  auto storage = std::make_unique<char[]>(misalignment + rest.size());
  char* start = storage.get() + misalignment;
  if (!rest.empty()) std::memcpy(start, rest.data(), rest.size());
  const absl::string_view payload(start, rest.size());

  if ((type & 1) == 0) {
    Receive<users::UserRegistered>(
        users::UsersMethods::kService.file_identifier, payload, limits);
  } else {
    Receive<email::WelcomeEmailSent>(
        email::EmailMethods::kService.file_identifier, payload, limits);
  }
  return 0;
}
