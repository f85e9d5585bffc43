#include "natsgw/builder_lease.h"

#include "absl/strings/str_cat.h"

namespace natsgw {
namespace {

// Initial buffer of a thread's builder: enough for typical RPC messages, so
// most threads never grow it.
constexpr size_t kInitialBytes = 1024;

struct ThreadBuilder {
  flatbuffers::FlatBufferBuilder builder{kInitialBytes};
  bool leased = false;
};

ThreadBuilder& ThisThreadBuilder() {
  thread_local ThreadBuilder tb;
  return tb;
}

}  // namespace

BuilderLease::BuilderLease() {
  ThreadBuilder& tb = ThisThreadBuilder();
  if (tb.leased) {
    private_builder_ =
        std::make_unique<flatbuffers::FlatBufferBuilder>(kInitialBytes);
    builder_ = private_builder_.get();
    return;
  }
  tb.leased = true;
  tb.builder.Clear();
  builder_ = &tb.builder;
}

BuilderLease::~BuilderLease() {
  if (private_builder_ != nullptr) return;
  ThreadBuilder& tb = ThisThreadBuilder();
  // GetSize() is what the last message used; the buffer is at least that big.
  if (tb.builder.GetSize() > kMaxRetainedBytes) tb.builder.Reset();
  tb.builder.Clear();
  tb.leased = false;
}

absl::string_view BuilderLease::bytes() const {
  return absl::string_view(
      reinterpret_cast<const char*>(builder_->GetBufferPointer()),
      builder_->GetSize());
}

namespace internal {

absl::Status FinishWithIdentifier(flatbuffers::FlatBufferBuilder& builder,
                                  flatbuffers::uoffset_t root,
                                  absl::string_view file_identifier,
                                  absl::string_view what) {
  if (root == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what,
                     ": the root offset is null (the builder function "
                     "or handler returned no table)"));
  }
  if (file_identifier.size() != flatbuffers::kFileIdentifierLength) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": the file identifier \"", file_identifier,
                     "\" does not have 4 characters"));
  }
  // Finish() wants a NUL-terminated identifier; the descriptor holds a view.
  char identifier[flatbuffers::kFileIdentifierLength + 1] = {};
  file_identifier.copy(identifier, flatbuffers::kFileIdentifierLength);
  builder.Finish(flatbuffers::Offset<void>(root), identifier);
  return absl::OkStatus();
}

}  // namespace internal
}  // namespace natsgw
