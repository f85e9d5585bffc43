// civetweb_start.h: starting a civetweb server the way natsgw's HTTP servers
// (MetricsServer, natsgw-edge) do: errors come back as a Status instead of
// civetweb's stderr output, and the port actually bound is read back (the
// configuration may ask for port 0).
//
// Thread-safety: a free function with no shared state.
#ifndef NATSGW_GATEWAY_SRC_CIVETWEB_START_H_
#define NATSGW_GATEWAY_SRC_CIVETWEB_START_H_

#include <civetweb.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace natsgw::internal {

struct StartedCivetweb {
  mg_context* ctx = nullptr;  // owned by the caller: mg_stop() it
  int port = 0;
};

// mg_start2 with `config` (civetweb's null-terminated key/value list),
// `callbacks` and `user_data`. UNAVAILABLE "cannot <what>: <civetweb's
// reason>" if it does not start or binds no port; the context is stopped
// then. `callbacks` must outlive the call only.
absl::StatusOr<StartedCivetweb> StartCivetweb(const char** config,
                                              const mg_callbacks& callbacks,
                                              void* user_data,
                                              absl::string_view what);

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_CIVETWEB_START_H_
