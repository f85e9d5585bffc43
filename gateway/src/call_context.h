// The per-thread context natsgw installs while a handler runs: the trace of
// the message being handled (public through CurrentTraceContext()) and, for
// requests, the caller's deadline, which nested requests inherit.
//
// Thread-safety: thread-local state; every function affects only the calling
// thread. Scopes must be destroyed on the creating thread in LIFO order.
#ifndef NATSGW_GATEWAY_SRC_CALL_CONTEXT_H_
#define NATSGW_GATEWAY_SRC_CALL_CONTEXT_H_

#include <optional>

#include "absl/time/time.h"

namespace natsgw::internal {

// The innermost deadline installed on this thread, if any.
std::optional<absl::Time> CurrentDeadline();

class ScopedDeadline {
 public:
  // A nullopt deadline leaves the enclosing one in force.
  explicit ScopedDeadline(std::optional<absl::Time> deadline);
  ~ScopedDeadline();

  ScopedDeadline(const ScopedDeadline&) = delete;
  ScopedDeadline& operator=(const ScopedDeadline&) = delete;

 private:
  bool installed_;
  std::optional<absl::Time> previous_;
};

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_CALL_CONTEXT_H_
