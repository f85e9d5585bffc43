// The Echo service natsgw-bench's typed scenarios call (natsgw-gen's stubs
// for schemas' echo.fbs), and the request and check every caller uses.
//
// Thread-safety: EchoService is thread-safe (stateless); the functions are
// thread-compatible.
#ifndef NATSGW_TESTS_BENCH_ECHO_BENCH_H_
#define NATSGW_TESTS_BENCH_ECHO_BENCH_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "natsgw/schemas/echo_natsgw.h"

namespace natsgw::bench {

// Answers Echo with the request's payload and tag, as a real service would
// copy request fields into its reply.
class EchoService final : public echo::EchoServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<echo::EchoReply>> Echo(
      const echo::EchoRequest& request, ServerContext& ctx) override;
};

// An EchoRequest carrying `payload` and `tag`.
flatbuffers::Offset<echo::EchoRequest> BuildEcho(
    flatbuffers::FlatBufferBuilder& fbb, const std::string& payload,
    uint64_t tag);

// OK if `reply` is the echo of a request with `payload_size` bytes and
// `tag` (cheap next to the call, and a broken service must not look fast).
absl::Status CheckEcho(const absl::StatusOr<Response<echo::EchoReply>>& reply,
                       size_t payload_size, uint64_t tag);

}  // namespace natsgw::bench

#endif  // NATSGW_TESTS_BENCH_ECHO_BENCH_H_
