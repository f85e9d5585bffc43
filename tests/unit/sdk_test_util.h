// Shared helpers of sdk_unit_test: a hand-written descriptor of echo.fbs's
// rpc_service (what natsgw-gen would emit) and builders of echo buffers.
#ifndef NATSGW_TESTS_UNIT_SDK_TEST_UTIL_H_
#define NATSGW_TESTS_UNIT_SDK_TEST_UTIL_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "flatbuffers/flatbuffers.h"
#include "natsgw/rpc_method.h"
#include "natsgw/schemas/echo_generated.h"

namespace natsgw {
namespace testing {

inline constexpr ServiceDescriptor kEchoService{
    .name = "Echo",
    .full_name = "natsgw.echo.Echo",
    .default_prefix = "echo",
    .schema_file = "echo.fbs",
    .file_identifier = "NGEC",
};

inline constexpr MethodDescriptor kEchoMethod{
    .service = "Echo",
    .method = "Echo",
    .full_service_name = "natsgw.echo.Echo",
    .request_type = "natsgw.echo.EchoRequest",
    .response_type = "natsgw.echo.EchoReply",
    .file_identifier = "NGEC",
    .default_prefix = "echo",
    .schema_file = "echo.fbs",
};

// An EchoRequest finished with `file_identifier` (null: none).
inline std::string EchoRequestBytes(absl::string_view payload, uint64_t tag,
                                    const char* file_identifier = "NGEC") {
  flatbuffers::FlatBufferBuilder fbb;
  auto data = fbb.CreateVector(reinterpret_cast<const uint8_t*>(payload.data()),
                               payload.size());
  fbb.Finish(echo::CreateEchoRequest(fbb, data, tag), file_identifier);
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                     fbb.GetSize());
}

// The payload field of an echo table as a string view (empty if absent).
template <class T>
absl::string_view PayloadOf(const T& table) {
  if (table.payload() == nullptr) return absl::string_view();
  return absl::string_view(
      reinterpret_cast<const char*>(table.payload()->data()),
      table.payload()->size());
}

}  // namespace testing
}  // namespace natsgw

#endif  // NATSGW_TESTS_UNIT_SDK_TEST_UTIL_H_
