#include "natsgw/service_error.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "natsgw/validation.h"
#include "natsgw/wire_headers.h"

namespace natsgw {
namespace {

constexpr size_t kMaxErrorMessageBytes = 4096;

}  // namespace

int ServiceErrorCodeFromStatusCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    default:
      return 500;
  }
}

absl::StatusCode StatusCodeFromServiceErrorCode(int code) {
  switch (code) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 408:
    case 504:
      return absl::StatusCode::kDeadlineExceeded;
    case 409:
      return absl::StatusCode::kAborted;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    case 499:
      return absl::StatusCode::kCancelled;
    case 501:
      return absl::StatusCode::kUnimplemented;
    case 503:
      return absl::StatusCode::kUnavailable;
    default:
      break;
  }
  if (code >= 400 && code < 500) return absl::StatusCode::kFailedPrecondition;
  if (code >= 500 && code < 600) return absl::StatusCode::kInternal;
  return absl::StatusCode::kUnknown;
}

void AddErrorHeaders(const absl::Status& status, Headers& headers) {
  if (status.ok()) return;
  // An empty header value cannot be read back by nats.c (it would swallow
  // the next header), so an error without text sends the code alone; the
  // reader then says "service error <code>", as nats.js does.
  std::string description =
      SanitizeHeaderValue(status.message(), kMaxErrorMessageBytes);
  if (description.empty()) {
    headers.Remove(kServiceErrorHeader);
  } else {
    headers.Set(kServiceErrorHeader, std::move(description));
  }
  headers.Set(kServiceErrorCodeHeader,
              absl::StrCat(ServiceErrorCodeFromStatusCode(status.code())));
  headers.Set(kStatusCodeHeader, absl::StrCat(static_cast<int>(status.code())));
}

absl::Status StatusFromErrorHeaders(const Headers& headers) {
  std::optional<absl::string_view> description =
      headers.Get(kServiceErrorHeader);
  std::optional<absl::string_view> service_code =
      headers.Get(kServiceErrorCodeHeader);
  std::optional<absl::string_view> canonical = headers.Get(kStatusCodeHeader);
  if (!description && !service_code && !canonical) return absl::OkStatus();

  absl::StatusCode code = absl::StatusCode::kUnknown;
  int number = 0;
  if (canonical && absl::SimpleAtoi(*canonical, &number) && number > 0 &&
      number <= static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<absl::StatusCode>(number);
  } else if (service_code && absl::SimpleAtoi(*service_code, &number)) {
    code = StatusCodeFromServiceErrorCode(number);
  }
  std::string message;
  if (description && !description->empty()) {
    message = std::string(*description);
  } else if (service_code) {
    // nats.js does the same: no description, use the code as the text.
    message = absl::StrCat("service error ", *service_code);
  }
  return absl::Status(code, message);
}

absl::Status WithTraceId(absl::Status status, absl::string_view trace_id_hex) {
  if (!status.ok())
    status.SetPayload(kTraceIdPayloadUrl, absl::Cord(trace_id_hex));
  return status;
}

std::optional<std::string> TraceIdFromStatus(const absl::Status& status) {
  // absl::optional is a distinct type in Debian's Abseil build.
  auto payload = status.GetPayload(kTraceIdPayloadUrl);
  if (!payload) return std::nullopt;
  return std::string(*payload);
}

absl::Status WithMessageId(absl::Status status, absl::string_view message_id) {
  if (!status.ok() && !message_id.empty()) {
    status.SetPayload(kMessageIdPayloadUrl, absl::Cord(message_id));
  }
  return status;
}

std::optional<std::string> MessageIdFromStatus(const absl::Status& status) {
  auto payload = status.GetPayload(kMessageIdPayloadUrl);
  if (!payload) return std::nullopt;
  return std::string(*payload);
}

}  // namespace natsgw
