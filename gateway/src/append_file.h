// Appending whole lines to a file shared with other writers: what the JSON
// log and span sinks (json_logger.cc, json_span_exporter.cc) both do.
//
// Thread-safety: free functions without state; callers serialize writes to
// one descriptor themselves when lines must stay in order.
#ifndef NATSGW_GATEWAY_SRC_APPEND_FILE_H_
#define NATSGW_GATEWAY_SRC_APPEND_FILE_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace natsgw::internal {

// Opens `path` for appending (O_APPEND, created with `mode` if missing,
// close-on-exec) and returns the descriptor, which the caller closes. With
// O_APPEND the kernel places each write whole at the end of the file, so
// processes sharing it never split each other's lines. Errors name `what`
// ("log file", "span file") and the path: NOT_FOUND (no such directory),
// PERMISSION_DENIED, RESOURCE_EXHAUSTED (disk or descriptors full),
// INVALID_ARGUMENT (a directory, a name too long), else UNKNOWN.
absl::StatusOr<int> OpenForAppend(const std::string& path,
                                  absl::string_view what, mode_t mode);

// Writes all of `data` to `fd`: one write(2) in practice, continued after a
// short write or EINTR so that a line is never left cut in half. False if
// the descriptor fails.
bool WriteAll(int fd, absl::string_view data);

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_APPEND_FILE_H_
