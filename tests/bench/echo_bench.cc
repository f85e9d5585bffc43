#include "echo_bench.h"

namespace natsgw::bench {

absl::StatusOr<flatbuffers::Offset<echo::EchoReply>> EchoService::Echo(
    const echo::EchoRequest& request, ServerContext& ctx) {
  flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
  const flatbuffers::Vector<uint8_t>* payload = request.payload();
  return echo::CreateEchoReply(
      fbb,
      payload != nullptr ? fbb.CreateVector(payload->data(), payload->size())
                         : 0,
      request.tag());
}

flatbuffers::Offset<echo::EchoRequest> BuildEcho(
    flatbuffers::FlatBufferBuilder& fbb, const std::string& payload,
    uint64_t tag) {
  return echo::CreateEchoRequest(
      fbb,
      fbb.CreateVector(reinterpret_cast<const uint8_t*>(payload.data()),
                       payload.size()),
      tag);
}

absl::Status CheckEcho(const absl::StatusOr<Response<echo::EchoReply>>& reply,
                       size_t payload_size, uint64_t tag) {
  if (!reply.ok()) return reply.status();
  const flatbuffers::Vector<uint8_t>* echoed = (*reply)->payload();
  if ((*reply)->tag() != tag ||
      (echoed == nullptr ? 0 : echoed->size()) != payload_size) {
    return absl::InternalError("Echo reply does not match its request");
  }
  return absl::OkStatus();
}

}  // namespace natsgw::bench
