#include "call_context.h"

namespace natsgw::internal {
namespace {
thread_local std::optional<absl::Time> t_deadline;
}  // namespace

std::optional<absl::Time> CurrentDeadline() { return t_deadline; }

ScopedDeadline::ScopedDeadline(std::optional<absl::Time> deadline)
    : installed_(deadline.has_value()), previous_(t_deadline) {
  if (installed_) t_deadline = deadline;
}

ScopedDeadline::~ScopedDeadline() {
  if (installed_) t_deadline = previous_;
}

}  // namespace natsgw::internal
