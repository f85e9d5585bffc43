// The tables of natsgw's schemas (schemas/*.fbs) as the fuzz targets see
// them: for each table T,
//   Describe(const T&)      reads every field and returns them as one
//                           canonical string (what "the same message" means),
//   Copy(fbb, const T&)     builds the same table into another builder,
// plus Reflect(), which walks a verified buffer generically through
// FlatBuffers' mini-reflection (every field, by the type table).
//
// Only for buffers that passed verification: reading an unverified buffer
// is exactly what natsgw must never do.
#ifndef NATSGW_TESTS_FUZZ_SCHEMA_FIELDS_H_
#define NATSGW_TESTS_FUZZ_SCHEMA_FIELDS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "flatbuffers/flatbuffers.h"
#include "flatbuffers/minireflect.h"
#include "fuzz_support.h"
#include "natsgw/schemas/echo_generated.h"
#include "natsgw/schemas/email_generated.h"
#include "natsgw/schemas/users_generated.h"
#include "natsgw/verified.h"
#include "verify_limits.h"

namespace natsgw::fuzz {

// A string field: "<size>:<bytes>" (embedded NULs included), "-" if absent.
inline std::string Field(const flatbuffers::String* s) {
  if (s == nullptr) return "-;";
  return absl::StrCat(s->size(), ":", absl::string_view(s->data(), s->size()),
                      ";");
}

inline std::string Field(const flatbuffers::Vector<uint8_t>* v) {
  if (v == nullptr) return "-;";
  return absl::StrCat(
      v->size(), ":",
      absl::string_view(reinterpret_cast<const char*>(v->data()), v->size()),
      ";");
}

inline flatbuffers::Offset<flatbuffers::String> CopyString(
    flatbuffers::FlatBufferBuilder& fbb, const flatbuffers::String* s) {
  if (s == nullptr) return 0;
  return fbb.CreateString(s->data(), s->size());
}

inline flatbuffers::Offset<flatbuffers::Vector<uint8_t>> CopyBytes(
    flatbuffers::FlatBufferBuilder& fbb,
    const flatbuffers::Vector<uint8_t>* v) {
  if (v == nullptr) return 0;
  return fbb.CreateVector(v->data(), v->size());
}

// --- echo.fbs --------------------------------------------------------------

inline std::string Describe(const echo::EchoRequest& t) {
  return absl::StrCat(Field(t.payload()), t.tag());
}
inline flatbuffers::Offset<echo::EchoRequest> Copy(
    flatbuffers::FlatBufferBuilder& fbb, const echo::EchoRequest& t) {
  return echo::CreateEchoRequest(fbb, CopyBytes(fbb, t.payload()), t.tag());
}

inline std::string Describe(const echo::EchoReply& t) {
  return absl::StrCat(Field(t.payload()), t.tag());
}
inline flatbuffers::Offset<echo::EchoReply> Copy(
    flatbuffers::FlatBufferBuilder& fbb, const echo::EchoReply& t) {
  return echo::CreateEchoReply(fbb, CopyBytes(fbb, t.payload()), t.tag());
}

// --- users.fbs -------------------------------------------------------------

inline std::string Describe(const users::RegisterUserRequest& t) {
  return absl::StrCat(Field(t.email()), Field(t.display_name()));
}
inline flatbuffers::Offset<users::RegisterUserRequest> Copy(
    flatbuffers::FlatBufferBuilder& fbb, const users::RegisterUserRequest& t) {
  return users::CreateRegisterUserRequest(fbb, CopyString(fbb, t.email()),
                                          CopyString(fbb, t.display_name()));
}

inline std::string Describe(const users::RegisterUserReply& t) {
  return absl::StrCat(Field(t.user_id()), t.created_at_unix_ms());
}
inline flatbuffers::Offset<users::RegisterUserReply> Copy(
    flatbuffers::FlatBufferBuilder& fbb, const users::RegisterUserReply& t) {
  return users::CreateRegisterUserReply(fbb, CopyString(fbb, t.user_id()),
                                        t.created_at_unix_ms());
}

inline std::string Describe(const users::UserRegistered& t) {
  return absl::StrCat(Field(t.user_id()), Field(t.email()),
                      Field(t.display_name()), t.registered_at_unix_ms());
}
inline flatbuffers::Offset<users::UserRegistered> Copy(
    flatbuffers::FlatBufferBuilder& fbb, const users::UserRegistered& t) {
  return users::CreateUserRegistered(
      fbb, CopyString(fbb, t.user_id()), CopyString(fbb, t.email()),
      CopyString(fbb, t.display_name()), t.registered_at_unix_ms());
}

// --- email.fbs -------------------------------------------------------------

inline std::string Describe(const email::SendWelcomeEmailRequest& t) {
  return absl::StrCat(Field(t.user_id()), Field(t.email()),
                      Field(t.display_name()));
}
inline flatbuffers::Offset<email::SendWelcomeEmailRequest> Copy(
    flatbuffers::FlatBufferBuilder& fbb,
    const email::SendWelcomeEmailRequest& t) {
  return email::CreateSendWelcomeEmailRequest(
      fbb, CopyString(fbb, t.user_id()), CopyString(fbb, t.email()),
      CopyString(fbb, t.display_name()));
}

inline std::string Describe(const email::SendWelcomeEmailReply& t) {
  return Field(t.email_id());
}
inline flatbuffers::Offset<email::SendWelcomeEmailReply> Copy(
    flatbuffers::FlatBufferBuilder& fbb,
    const email::SendWelcomeEmailReply& t) {
  return email::CreateSendWelcomeEmailReply(fbb, CopyString(fbb, t.email_id()));
}

inline std::string Describe(const email::WelcomeEmailSent& t) {
  return absl::StrCat(Field(t.user_id()), Field(t.email()), Field(t.email_id()),
                      t.sent_at_unix_ms());
}
inline flatbuffers::Offset<email::WelcomeEmailSent> Copy(
    flatbuffers::FlatBufferBuilder& fbb, const email::WelcomeEmailSent& t) {
  return email::CreateWelcomeEmailSent(
      fbb, CopyString(fbb, t.user_id()), CopyString(fbb, t.email()),
      CopyString(fbb, t.email_id()), t.sent_at_unix_ms());
}

// Every field of the verified buffer `data` whose root is T, as text.
template <class T>
std::string Reflect(const uint8_t* data) {
  return flatbuffers::FlatBufferToString(data, T::MiniReflectTypeTable());
}

// The verdict natsgw's verification must reach, worked out without it:
// FlatBuffers' own Verifier with the same depth and table limits (alignment
// checked, the file identifier required when given), and the size limit.
// `data` must be 8-byte aligned.
template <class T>
bool ReferenceVerdict(const uint8_t* data, size_t size,
                      absl::string_view file_identifier,
                      const VerifyLimits& limits) {
  if (size > limits.max_size_bytes || size >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    return false;
  }
  if (file_identifier.size() != 0 &&
      file_identifier.size() != flatbuffers::kFileIdentifierLength) {
    return false;
  }
  flatbuffers::Verifier::Options options;
  options.max_depth = static_cast<uint32_t>(limits.max_depth);
  options.max_tables = static_cast<uint32_t>(limits.max_tables);
  options.check_alignment = true;
  flatbuffers::Verifier verifier(data, size, options);
  const std::string identifier(file_identifier);
  return verifier.VerifyBuffer<T>(identifier.empty() ? nullptr
                                                     : identifier.c_str());
}

// ReferenceVerdict for bytes at any address (verified in an aligned copy).
template <class T>
bool ReferenceVerdict(absl::string_view bytes,
                      absl::string_view file_identifier,
                      const VerifyLimits& limits) {
  const internal::AlignedBytes copy = internal::AlignedBytes::Copy(bytes);
  return ReferenceVerdict<T>(copy.data(), copy.size(), file_identifier, limits);
}

// True if `message` names the verification rule that was broken, as
// natsgw/verified.h promises.
inline bool NamesAVerifyRule(absl::string_view message) {
  for (absl::string_view rule :
       {"(file identifier)", "(size limit)", "(depth limit)", "(table limit)",
        "(malformed)"}) {
    if (absl::StrContains(message,
                          absl::StrCat("FlatBuffer rejected ", rule))) {
      return true;
    }
  }
  return false;
}

// Reads every field of `verified` (by the generated accessors and by
// reflection), rebuilds the table in a new buffer, verifies that one and
// checks that it reads the same. Returns the description.
template <class T>
std::string CheckRoundTrip(const Verified<T>& verified,
                           absl::string_view file_identifier) {
  const std::string fields = Describe(*verified);
  const std::string reflected =
      Reflect<T>(reinterpret_cast<const uint8_t*>(verified.bytes().data()));
  FUZZ_CHECK(!reflected.empty(), "reflection produced nothing");

  flatbuffers::FlatBufferBuilder fbb;
  const std::string identifier(file_identifier);
  fbb.Finish(Copy(fbb, *verified), identifier.c_str());
  const absl::string_view rebuilt(
      reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
  // Loose limits: a copy may be larger than the original, whose fields may
  // share one string.
  absl::StatusOr<Verified<T>> again =
      Verified<T>::FromView(rebuilt, file_identifier, LooseLimits());
  FUZZ_CHECK(again.ok(), "a rebuilt copy of a verified buffer fails: ",
             again.status().ToString());
  FUZZ_CHECK(Describe(**again) == fields, "the rebuilt copy reads ",
             Describe(**again), " instead of ", fields);
  return fields;
}

}  // namespace natsgw::fuzz

#endif  // NATSGW_TESTS_FUZZ_SCHEMA_FIELDS_H_
