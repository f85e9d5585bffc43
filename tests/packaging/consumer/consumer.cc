// consumer: serves rpc_service Pinger (ping.fbs) and calls it once through
// the generated client, against the NATS server given on the command line.
//
//   consumer nats://127.0.0.1:4222
//
// Prints "natsgw <version>: <reply text> (<length>) trace <id>" and exits 0,
// or prints the error and exits 1.
#include <iostream>
#include <string>

#include "consumer/ping_natsgw.h"
#include "natsgw/connection.h"
#include "natsgw/status_macros.h"
#include "natsgw/version.h"

namespace {

class Pinger : public consumer::PingerServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<consumer::PingReply>> Ping(
      const consumer::PingRequest& request,
      natsgw::ServerContext& ctx) override {
    const std::string text = "pong: " + request.text()->str();
    return consumer::CreatePingReplyDirect(ctx.builder(), text.c_str(),
                                           request.text()->size());
  }
};

absl::Status Run(const std::string& url) {
  natsgw::ConnectionOptions options;
  options.servers = {url};
  options.name = "natsgw-consumer";
  NATSGW_ASSIGN_OR_RETURN(auto conn, natsgw::Connection::Create(options));

  Pinger pinger;
  NATSGW_ASSIGN_OR_RETURN(auto service, pinger.Start(*conn));
  NATSGW_ASSIGN_OR_RETURN(auto client, consumer::PingerClient::Create(*conn));
  NATSGW_ASSIGN_OR_RETURN(
      auto reply, client.Ping([](flatbuffers::FlatBufferBuilder& fbb) {
        return consumer::CreatePingRequestDirect(fbb, "installed sdk");
      }));
  std::cout << "natsgw " << natsgw::Version() << ": " << reply->text()->str()
            << " (" << reply->length() << ") trace "
            << reply.call.trace.TraceIdHex() << "\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer <nats-url>\n";
    return 2;
  }
  if (absl::Status status = Run(argv[1]); !status.ok()) {
    std::cerr << "consumer: " << status << "\n";
    return 1;
  }
  return 0;
}
