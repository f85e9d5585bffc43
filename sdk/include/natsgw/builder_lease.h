// natsgw/builder_lease.h: the calling thread's reusable FlatBufferBuilder.
//
// A FlatBufferBuilder grows its buffer as needed and keeps it on Clear(), so
// reusing one per thread makes building a message allocation-free in the
// steady state. The typed client builds every request in it, the typed
// service every reply; application code may use it too, e.g. for events:
//
//   natsgw::BuilderLease lease;
//   flatbuffers::FlatBufferBuilder& fbb = lease.builder();  // Clear()ed
//   fbb.Finish(natsgw::users::CreateUserRegisteredDirect(fbb, ...), "NGUS");
//   conn->Publish("users.events.UserRegistered", lease.bytes());
//
// A lease is exclusive: if the thread's builder is already leased (a nested
// use, e.g. a request built while a reply is being built on the same
// thread), the nested lease gets a private builder of its own instead, so
// nothing is overwritten. A builder that grew beyond kMaxRetainedBytes is
// released when its lease ends, so one large message does not pin memory.
//
// Thread-safety: a lease belongs to the thread that created it and must be
// destroyed there; the builder is never shared between threads.
#ifndef NATSGW_BUILDER_LEASE_H_
#define NATSGW_BUILDER_LEASE_H_

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "flatbuffers/flatbuffers.h"

namespace natsgw {

class BuilderLease {
 public:
  // Builders whose buffer grew beyond this are freed when the lease ends.
  static constexpr size_t kMaxRetainedBytes = size_t{1} << 20;

  BuilderLease();
  ~BuilderLease();

  BuilderLease(const BuilderLease&) = delete;
  BuilderLease& operator=(const BuilderLease&) = delete;

  // Empty (Clear()ed) when the lease starts.
  flatbuffers::FlatBufferBuilder& builder() { return *builder_; }

  // The finished buffer (after builder().Finish()); valid until the builder
  // is next modified or the lease ends.
  absl::string_view bytes() const;

  // True if this lease got the thread's shared builder (not a private one).
  bool shared() const { return private_builder_ == nullptr; }

 private:
  flatbuffers::FlatBufferBuilder* builder_;
  std::unique_ptr<flatbuffers::FlatBufferBuilder> private_builder_;
};

namespace internal {

// Finishes `builder` with root `root` and `file_identifier` (4 characters);
// INVALID_ARGUMENT naming `what` if `root` is null or the identifier has the
// wrong length.
absl::Status FinishWithIdentifier(flatbuffers::FlatBufferBuilder& builder,
                                  flatbuffers::uoffset_t root,
                                  absl::string_view file_identifier,
                                  absl::string_view what);

}  // namespace internal
}  // namespace natsgw

#endif  // NATSGW_BUILDER_LEASE_H_
