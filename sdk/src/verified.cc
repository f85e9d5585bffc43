#include "natsgw/verified.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace natsgw {
namespace {

// FlatBuffers' own verifier defaults: the relaxed limits used only to tell
// which rule a failing buffer broke. They bound the extra work of a failure
// to what stock FlatBuffers would spend on the same buffer.
constexpr uint32_t kFlatBuffersDefaultDepth = 64;
constexpr uint32_t kFlatBuffersDefaultTables = 1'000'000;

// A root offset and a file identifier, 4 bytes each.
constexpr size_t kEnvelopeBytes =
    sizeof(flatbuffers::uoffset_t) + flatbuffers::kFileIdentifierLength;

absl::Status Invalid(absl::string_view rule, absl::string_view detail) {
  return absl::InvalidArgumentError(
      absl::StrCat("FlatBuffer rejected (", rule, "): ", detail));
}

}  // namespace

absl::Status ValidateVerifyLimits(const VerifyLimits& limits) {
  if (limits.max_depth <= 0) {
    return absl::InvalidArgumentError("VerifyLimits.max_depth must be > 0");
  }
  if (limits.max_tables <= 0) {
    return absl::InvalidArgumentError("VerifyLimits.max_tables must be > 0");
  }
  if (limits.max_size_bytes < kEnvelopeBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "VerifyLimits.max_size_bytes must be >= ", kEnvelopeBytes));
  }
  return absl::OkStatus();
}

namespace internal {

AlignedBytes AlignedBytes::Adopt(std::string bytes) {
  AlignedBytes out;
  if (IsAligned(bytes.data())) {
    out.size_ = bytes.size();
    out.string_ = std::move(bytes);
    // Moving a short string copies its bytes into the new object's inline
    // buffer, which need not be aligned on every standard library.
    if (!IsAligned(out.string_.data())) out.CopyFrom(out.string_);
  } else {
    out.CopyFrom(bytes);
  }
  return out;
}

AlignedBytes AlignedBytes::Copy(absl::string_view bytes) {
  AlignedBytes out;
  out.CopyFrom(bytes);
  return out;
}

void AlignedBytes::CopyFrom(absl::string_view bytes) {
  // Copy first: `bytes` may point into string_.
  const size_t words = (bytes.size() + sizeof(uint64_t) - 1) / sizeof(uint64_t);
  auto copy = std::make_unique<uint64_t[]>(std::max<size_t>(words, 1));
  if (!bytes.empty()) std::memcpy(copy.get(), bytes.data(), bytes.size());
  size_ = bytes.size();
  copy_ = std::move(copy);
  string_.clear();
  string_.shrink_to_fit();
}

AlignedBytes::AlignedBytes(AlignedBytes&& other) noexcept
    : string_(std::move(other.string_)),
      copy_(std::move(other.copy_)),
      size_(std::exchange(other.size_, 0)) {
  // See Adopt(): an inline (short-string) buffer may move to a misaligned
  // address. Unreachable with libstdc++, whose inline buffer is 8-aligned.
  if (copy_ == nullptr && !IsAligned(string_.data())) {
    CopyFrom(absl::string_view(string_.data(), size_));
  }
}

AlignedBytes& AlignedBytes::operator=(AlignedBytes&& other) noexcept {
  if (this != &other) {
    string_ = std::move(other.string_);
    copy_ = std::move(other.copy_);
    size_ = std::exchange(other.size_, 0);
    if (copy_ == nullptr && !IsAligned(string_.data())) {
      CopyFrom(absl::string_view(string_.data(), size_));
    }
  }
  return *this;
}

AlignedBytes::AlignedBytes(const AlignedBytes& other) {
  CopyFrom(absl::string_view(reinterpret_cast<const char*>(other.data()),
                             other.size_));
}

AlignedBytes& AlignedBytes::operator=(const AlignedBytes& other) {
  if (this != &other) {
    CopyFrom(absl::string_view(reinterpret_cast<const char*>(other.data()),
                               other.size_));
  }
  return *this;
}

const uint8_t* AlignedBytes::data() const {
  return copy_ != nullptr ? reinterpret_cast<const uint8_t*>(copy_.get())
                          : reinterpret_cast<const uint8_t*>(string_.data());
}

absl::Status CheckEnvelope(const uint8_t* data, size_t size,
                           absl::string_view file_identifier,
                           const VerifyLimits& limits) {
  if (absl::Status s = ValidateVerifyLimits(limits); !s.ok()) return s;
  if (!file_identifier.empty() &&
      file_identifier.size() != flatbuffers::kFileIdentifierLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("file identifier \"", absl::CHexEscape(file_identifier),
                     "\" must have 4 characters"));
  }
  // FlatBuffers asserts on buffers of 2 GiB and more.
  const size_t max_size =
      std::min<size_t>(limits.max_size_bytes, FLATBUFFERS_MAX_BUFFER_SIZE - 1);
  if (size > max_size) {
    return Invalid(
        "size limit",
        absl::StrCat(size, " bytes exceed the limit of ", max_size, " bytes"));
  }
  const size_t min_size =
      file_identifier.empty() ? sizeof(flatbuffers::uoffset_t) : kEnvelopeBytes;
  if (size < min_size) {
    return Invalid(
        "malformed",
        absl::StrCat(size, " bytes are too few for a root offset",
                     file_identifier.empty() ? "" : " and a file identifier"));
  }
  if (!AlignedBytes::IsAligned(data)) {
    // Callers copy to aligned storage first; reaching this is a natsgw bug.
    return absl::InternalError("FlatBuffer storage is not 8-byte aligned");
  }
  if (!file_identifier.empty()) {
    absl::string_view got(
        reinterpret_cast<const char*>(data) + sizeof(flatbuffers::uoffset_t),
        flatbuffers::kFileIdentifierLength);
    if (got != file_identifier) {
      return Invalid("file identifier",
                     absl::StrCat("wrong or missing file identifier \"",
                                  absl::CHexEscape(got), "\", want \"",
                                  absl::CHexEscape(file_identifier), "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status RunVerifier(const VerifyLimits& limits, VerifyPass pass) {
  const auto depth = static_cast<uint32_t>(limits.max_depth);
  const auto tables = static_cast<uint32_t>(limits.max_tables);
  if (pass(depth, tables)) return absl::OkStatus();

  // Failure path only: tell the limits apart from a malformed buffer.
  const uint32_t relaxed_depth = std::max(depth, kFlatBuffersDefaultDepth);
  const uint32_t relaxed_tables = std::max(tables, kFlatBuffersDefaultTables);
  const bool depth_ok = relaxed_depth > depth && pass(relaxed_depth, tables);
  if (depth_ok) {
    return Invalid(
        "depth limit",
        absl::StrCat("tables and vectors nest deeper than the limit of ",
                     depth));
  }
  const bool tables_ok = relaxed_tables > tables && pass(depth, relaxed_tables);
  if (tables_ok) {
    return Invalid("table limit",
                   absl::StrCat("more than ", tables, " tables"));
  }
  if ((relaxed_depth > depth || relaxed_tables > tables) &&
      pass(relaxed_depth, relaxed_tables)) {
    return Invalid("depth limit", absl::StrCat("nesting deeper than ", depth,
                                               " and more than ", tables,
                                               " tables (table limit)"));
  }
  // The relaxed pass stops at relaxed_depth, so a buffer nested deeper than
  // that fails it like a malformed one; verifying deeper to tell them apart
  // would let a hostile buffer drive the recursive verifier as deep as its
  // size allows. The message names both possibilities.
  return Invalid(
      "malformed",
      absl::StrCat("offsets, sizes or alignment inside the buffer are "
                   "invalid for the expected root type, or tables and "
                   "vectors nest deeper than ",
                   relaxed_depth, " (depth limit)"));
}

}  // namespace internal
}  // namespace natsgw
