#include "natsgw/wire_headers.h"

#include "absl/strings/match.h"

namespace natsgw {

bool IsReservedHeader(absl::string_view key) {
  for (absl::string_view reserved :
       {kTraceParentHeader, kTraceStateHeader, kMessageIdHeader,
        kServiceErrorHeader, kServiceErrorCodeHeader, kNatsStatusHeader,
        kNatsDescriptionHeader}) {
    if (absl::EqualsIgnoreCase(key, reserved)) return true;
  }
  return absl::StartsWithIgnoreCase(key, kReservedHeaderPrefix);
}

}  // namespace natsgw
