// Shared helpers of sdk_unit_test: a hand-written descriptor of echo.fbs's
// rpc_service (what natsgw-gen would emit), builders of echo buffers, and a
// port no server listens on (for connections that must fail at once).
#ifndef NATSGW_TESTS_UNIT_SDK_TEST_UTIL_H_
#define NATSGW_TESTS_UNIT_SDK_TEST_UTIL_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

// A loopback TCP port that is bound but not listening: connecting to it is
// refused at once, and no other process (an integration test's nats-server
// running in parallel, say) can take it while this object holds it.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return;
    }
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() {
    if (fd_ >= 0) close(fd_);
  }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;

  // 0 if no port could be reserved.
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace testing
}  // namespace natsgw

#endif  // NATSGW_TESTS_UNIT_SDK_TEST_UTIL_H_
