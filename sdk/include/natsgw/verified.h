// natsgw/verified.h: an owned FlatBuffer that has passed the FlatBuffers
// Verifier, with natsgw's (tighter) limits, and may therefore be read freely.
//
// A FlatBuffer read without verification lets a peer make the reader follow
// arbitrary offsets; the wire contract (schemas/README.md section 1) requires
// every payload to be verified before application code sees it. Verified<T>
// is the only way the typed layer hands a received payload to the caller.
//
//   absl::StatusOr<natsgw::Verified<natsgw::echo::EchoReply>> reply =
//       natsgw::Verified<natsgw::echo::EchoReply>::Verify(
//           std::move(message.data), natsgw::echo::EchoReplyIdentifier());
//   if (!reply.ok()) return reply.status();  // INVALID_ARGUMENT, names the
//   rule uint64_t tag = (*reply)->tag();
//
// Storage: FlatBuffers reads scalars through plain pointer dereferences, so
// the buffer must start at an 8-byte-aligned address for reads to be defined
// behaviour. Verify() adopts the string without copying when its bytes are
// aligned (always the case for heap-allocated std::string storage) and copies
// into aligned storage otherwise; FromView() always copies. The root pointer
// is recomputed from the storage on each access, so moving a Verified (which
// may move the bytes, e.g. with the small-string optimisation) is safe.
//
// Limits (VerifyLimits) bound the work a hostile buffer can cause: nesting
// depth, number of tables visited and size. Failure is INVALID_ARGUMENT whose
// message names the rule: "file identifier", "size limit", "depth limit",
// "table limit" or "malformed". A buffer nested deeper than 64 (FlatBuffers'
// own default limit) is "malformed" with a message saying it may be either:
// telling the two apart would mean verifying as deep as a hostile buffer
// likes.
//
// Thread-safety: Verify/FromView are pure functions. A Verified<T> is a value
// type: concurrent const access is safe; a moved-from object may only be
// assigned to or destroyed.
#ifndef NATSGW_VERIFIED_H_
#define NATSGW_VERIFIED_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "flatbuffers/flatbuffers.h"

namespace natsgw {

// Bounds on the FlatBuffers verification of one received payload. Exceeding
// one is INVALID_ARGUMENT naming it; the payload never reaches application
// code. The defaults are tighter than FlatBuffers' own (depth 64, 1'000'000
// tables, 2 GiB) because natsgw verifies untrusted network input on shared
// handler threads; raise them per client or service for larger documents.
struct VerifyLimits {
  // Deepest nesting of tables and vectors.
  int max_depth = 16;
  // Most tables visited (shared sub-tables count each time they are reached,
  // which is what bounds the verifier's work on a DAG-shaped buffer).
  int max_tables = 10'000;
  // Largest payload in bytes (the NATS server's default max_payload).
  size_t max_size_bytes = size_t{1} << 20;
};

// INVALID_ARGUMENT if max_depth or max_tables is not positive, or if
// max_size_bytes is below 8 (the smallest buffer: a root offset and a file
// identifier).
absl::Status ValidateVerifyLimits(const VerifyLimits& limits);

namespace internal {

// Bytes whose first byte is 8-byte aligned, owned. Adopts a std::string when
// its data is aligned, otherwise keeps an aligned copy.
class AlignedBytes {
 public:
  static constexpr size_t kAlignment = 8;

  AlignedBytes() = default;
  // Takes `bytes` without copying if its data is aligned.
  static AlignedBytes Adopt(std::string bytes);
  // Always copies.
  static AlignedBytes Copy(absl::string_view bytes);

  AlignedBytes(AlignedBytes&& other) noexcept;
  AlignedBytes& operator=(AlignedBytes&& other) noexcept;
  AlignedBytes(const AlignedBytes& other);
  AlignedBytes& operator=(const AlignedBytes& other);
  ~AlignedBytes() = default;

  const uint8_t* data() const;
  size_t size() const { return size_; }
  // True if the bytes live in an adopted std::string (no copy was made).
  bool adopted() const { return copy_ == nullptr; }

  static bool IsAligned(const void* p) {
    return reinterpret_cast<uintptr_t>(p) % kAlignment == 0;
  }

 private:
  void CopyFrom(absl::string_view bytes);

  // Used when copy_ is null.
  std::string string_;
  // 8-byte units so that new[] returns suitably aligned storage.
  std::unique_ptr<uint64_t[]> copy_;
  size_t size_ = 0;
};

// Runs one verification pass with the given depth and table limits; returns
// whether the buffer passed.
using VerifyPass =
    absl::FunctionRef<bool(uint32_t max_depth, uint32_t max_tables)>;

// Checks what can be checked without the schema: limits, size, alignment of
// `data`, and the file identifier (empty: not checked).
absl::Status CheckEnvelope(const uint8_t* data, size_t size,
                           absl::string_view file_identifier,
                           const VerifyLimits& limits);

// Runs `pass` with `limits` and, if it fails, runs it again with relaxed
// limits (at most FlatBuffers' defaults) to name the rule that was broken.
absl::Status RunVerifier(const VerifyLimits& limits, VerifyPass pass);

// Verifies an aligned buffer whose root is T in place (no copy).
template <class T>
absl::Status VerifyAligned(const uint8_t* data, size_t size,
                           absl::string_view file_identifier,
                           const VerifyLimits& limits) {
  absl::Status envelope = CheckEnvelope(data, size, file_identifier, limits);
  if (!envelope.ok()) return envelope;
  return RunVerifier(limits, [&](uint32_t max_depth, uint32_t max_tables) {
    flatbuffers::Verifier::Options options;
    options.max_depth = max_depth;
    options.max_tables = max_tables;
    options.check_alignment = true;
    flatbuffers::Verifier verifier(data, size, options);
    // The identifier was compared by CheckEnvelope (with a better message);
    // the verifier still needs to know whether one is present.
    return verifier.VerifyBuffer<T>(nullptr);
  });
}

}  // namespace internal

// An owned, verified FlatBuffer whose root table is T (a flatc-generated
// table type).
template <class T>
class Verified {
 public:
  // Verifies `bytes` as a buffer with root T finished with `file_identifier`
  // (4 characters; empty: the buffer carries no identifier). Takes ownership
  // without copying when the bytes are 8-byte aligned.
  static absl::StatusOr<Verified> Verify(std::string bytes,
                                         absl::string_view file_identifier,
                                         const VerifyLimits& limits = {}) {
    return Make(internal::AlignedBytes::Adopt(std::move(bytes)),
                file_identifier, limits);
  }

  // As Verify, but copies `bytes` (which may live at any address) first.
  static absl::StatusOr<Verified> FromView(absl::string_view bytes,
                                           absl::string_view file_identifier,
                                           const VerifyLimits& limits = {}) {
    return Make(internal::AlignedBytes::Copy(bytes), file_identifier, limits);
  }

  Verified(Verified&&) noexcept = default;
  Verified& operator=(Verified&&) noexcept = default;
  Verified(const Verified&) = default;
  Verified& operator=(const Verified&) = default;

  const T* get() const { return flatbuffers::GetRoot<T>(storage_.data()); }
  const T* operator->() const { return get(); }
  const T& operator*() const { return *get(); }

  // The verified buffer (aligned; valid while this object is unchanged).
  absl::string_view bytes() const {
    return absl::string_view(reinterpret_cast<const char*>(storage_.data()),
                             storage_.size());
  }
  // True if Verify() adopted the caller's string instead of copying it.
  bool adopted() const { return storage_.adopted(); }

 private:
  explicit Verified(internal::AlignedBytes storage)
      : storage_(std::move(storage)) {}

  static absl::StatusOr<Verified> Make(internal::AlignedBytes storage,
                                       absl::string_view file_identifier,
                                       const VerifyLimits& limits) {
    absl::Status status = internal::VerifyAligned<T>(
        storage.data(), storage.size(), file_identifier, limits);
    if (!status.ok()) return status;
    return Verified(std::move(storage));
  }

  internal::AlignedBytes storage_;
};

}  // namespace natsgw

#endif  // NATSGW_VERIFIED_H_
