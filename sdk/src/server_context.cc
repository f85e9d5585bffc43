#include "natsgw/server_context.h"

#include "natsgw/wire_headers.h"

namespace natsgw {

ServerContext::ServerContext(const MethodDescriptor& method,
                             const Message& request,
                             flatbuffers::FlatBufferBuilder& builder)
    : method_(method), request_(request), builder_(builder) {}

absl::Duration ServerContext::remaining() const {
  if (!request_.deadline.has_value()) return absl::InfiniteDuration();
  return *request_.deadline - absl::Now();
}

Headers ServerContext::application_headers() const {
  Headers out;
  for (const HeaderField& field : request_.headers) {
    if (!IsReservedHeader(field.key)) out.Add(field.key, field.value);
  }
  return out;
}

std::optional<absl::string_view> ServerContext::metadata(
    absl::string_view key) const {
  if (IsReservedHeader(key)) return std::nullopt;
  return request_.headers.Get(key);
}

}  // namespace natsgw
