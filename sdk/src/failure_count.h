// sdk/src/failure_count.h: counting the failures the typed layer finds
// itself, in the gateway's natsgw_errors_total.
#ifndef NATSGW_SDK_SRC_FAILURE_COUNT_H_
#define NATSGW_SDK_SRC_FAILURE_COUNT_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "natsgw/connection.h"

namespace natsgw::internal {

// Counts `status` (not OK) in `connection`'s natsgw_errors_total{operation,
// code}, the series the gateway counts its own refusals and failures in, and
// returns it. For what the typed layer refuses or rejects before or after the
// Connection sees the message: a caller's subject, buffer or timeout, a
// reply that fails verification. Without a registry nothing is counted.
// Thread-safe; never throws.
absl::Status CountFailure(const Connection& connection,
                          absl::string_view operation, absl::Status status);

}  // namespace natsgw::internal

#endif  // NATSGW_SDK_SRC_FAILURE_COUNT_H_
