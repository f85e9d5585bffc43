#include "nats_status.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace natsgw::internal {

absl::Status EnsureNatsLibrary() {
  // -1: nats.c's default lock spin count.
  static const natsStatus kOpened = nats_Open(-1);
  return NatsError(kOpened, "initializing the NATS client library");
}

absl::StatusCode StatusCodeFromNats(natsStatus s) {
  switch (s) {
    case NATS_OK:
      return absl::StatusCode::kOk;
    // Could not reach or lost the server: retrying later may work.
    case NATS_IO_ERROR:
    case NATS_CONNECTION_CLOSED:
    case NATS_NO_SERVER:
    case NATS_STALE_CONNECTION:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NOT_YET_CONNECTED:
    case NATS_DRAINING:
    case NATS_NO_RESPONDERS:
    case NATS_MISSED_HEARTBEAT:
      return absl::StatusCode::kUnavailable;
    case NATS_TIMEOUT:
      return absl::StatusCode::kDeadlineExceeded;
    // The caller passed something nats.c or the server rejects.
    case NATS_ADDRESS_MISSING:
    case NATS_INVALID_SUBJECT:
    case NATS_INVALID_ARG:
    case NATS_INVALID_TIMEOUT:
    case NATS_INVALID_QUEUE_NAME:
    case NATS_MAX_PAYLOAD:
      return absl::StatusCode::kInvalidArgument;
    case NATS_INVALID_SUBSCRIPTION:
    case NATS_ILLEGAL_STATE:
    case NATS_NO_SERVER_SUPPORT:
    case NATS_SECURE_CONNECTION_WANTED:
    case NATS_SECURE_CONNECTION_REQUIRED:
      return absl::StatusCode::kFailedPrecondition;
    case NATS_CONNECTION_AUTH_FAILED:
      return absl::StatusCode::kUnauthenticated;
    case NATS_NOT_PERMITTED:
      return absl::StatusCode::kPermissionDenied;
    case NATS_NOT_FOUND:
      return absl::StatusCode::kNotFound;
    case NATS_SLOW_CONSUMER:
    case NATS_MAX_DELIVERED_MSGS:
    case NATS_INSUFFICIENT_BUFFER:
    case NATS_NO_MEMORY:
      return absl::StatusCode::kResourceExhausted;
    case NATS_MISMATCH:
      return absl::StatusCode::kAborted;
    // A TLS failure is a failure to reach a trustworthy server.
    case NATS_SSL_ERROR:
      return absl::StatusCode::kUnavailable;
    case NATS_PROTOCOL_ERROR:
    case NATS_LINE_TOO_LONG:
    case NATS_SYS_ERROR:
    case NATS_FAILED_TO_INITIALIZE:
    case NATS_NOT_INITIALIZED:
      return absl::StatusCode::kInternal;
    case NATS_ERR:
      return absl::StatusCode::kUnknown;
  }
  return absl::StatusCode::kUnknown;
}

absl::Status NatsError(natsStatus s, absl::string_view context) {
  if (s == NATS_OK) return absl::OkStatus();
  std::string message = absl::StrCat(context, ": ", natsStatus_GetText(s));
  // nats.c keeps a more specific text per thread (e.g. the server's -ERR).
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && last[0] != '\0' && !absl::StrContains(message, last)) {
    absl::StrAppend(&message, " (", last, ")");
  }
  return absl::Status(StatusCodeFromNats(s), message);
}

}  // namespace natsgw::internal
