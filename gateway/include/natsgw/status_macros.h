// natsgw/status_macros.h: early-return helpers for absl::Status.
//
// Debian's Abseil (20220623) ships neither ABSL_RETURN_IF_ERROR nor
// ABSL_ASSIGN_OR_RETURN, so natsgw defines its own:
//
//   absl::Status Run() {
//     NATSGW_RETURN_IF_ERROR(ValidateSubject(subject));
//     NATSGW_ASSIGN_OR_RETURN(auto conn, natsgw::Connection::Create(options));
//     ...
//   }
//
// Thread-safety: macros only; no state.
#ifndef NATSGW_STATUS_MACROS_H_
#define NATSGW_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Evaluates `expr` (an absl::Status) once and returns it from the enclosing
// function if it is not OK.
#define NATSGW_RETURN_IF_ERROR(expr)                  \
  do {                                                \
    ::absl::Status natsgw_status_macro_tmp_ = (expr); \
    if (!natsgw_status_macro_tmp_.ok()) {             \
      return natsgw_status_macro_tmp_;                \
    }                                                 \
  } while (false)

#define NATSGW_STATUS_MACROS_CONCAT_INNER_(a, b) a##b
#define NATSGW_STATUS_MACROS_CONCAT_(a, b) \
  NATSGW_STATUS_MACROS_CONCAT_INNER_(a, b)

// Evaluates `rexpr` (an absl::StatusOr<T>) once; returns its status from the
// enclosing function if it is not OK, otherwise moves the value into `lhs`
// (which may be a declaration such as `auto x` or an existing lvalue).
#define NATSGW_ASSIGN_OR_RETURN(lhs, rexpr)                              \
  NATSGW_ASSIGN_OR_RETURN_IMPL_(                                         \
      NATSGW_STATUS_MACROS_CONCAT_(natsgw_statusor_tmp_, __LINE__), lhs, \
      rexpr)

#define NATSGW_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) {                                     \
    return std::move(statusor).status();                    \
  }                                                         \
  lhs = std::move(statusor).value()

#endif  // NATSGW_STATUS_MACROS_H_
