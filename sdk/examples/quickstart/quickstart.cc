// quickstart: serves rpc_service Greeter (greeter.fbs) and calls it, in one
// process, through the stubs natsgw-gen generates (README.md "Typed RPC").
//
//   quickstart [nats://127.0.0.1:4222]      (default: $NATS_URL, else that)
#include <cstdlib>
#include <future>
#include <iostream>
#include <string>
#include <vector>

#include "natsgw/connection.h"
#include "natsgw/status_macros.h"
#include "quickstart/greeter_natsgw.h"

namespace {

// The service: one method per rpc of the schema. The request arrives
// verified; the reply is built in the context's reusable builder.
class Greeter : public quickstart::GreeterServiceBase {
 public:
  absl::StatusOr<flatbuffers::Offset<quickstart::HelloReply>> SayHello(
      const quickstart::HelloRequest& request,
      natsgw::ServerContext& ctx) override {
    if (request.name()->size() == 0) {
      return absl::InvalidArgumentError("name must not be empty");
    }
    const std::string message = "Hello, " + request.name()->str() + "!";
    return quickstart::CreateHelloReplyDirect(ctx.builder(), message.c_str());
  }
};

absl::Status Run(const std::string& url) {
  natsgw::ConnectionOptions options;
  options.servers = {url};
  options.name = "quickstart";
  NATSGW_ASSIGN_OR_RETURN(auto conn, natsgw::Connection::Create(options));

  // Serve greeter.SayHello (queue group "q"); `nats micro ls` lists it.
  Greeter greeter;
  NATSGW_ASSIGN_OR_RETURN(auto service, greeter.Start(*conn));

  // Call it: build the request in place, get the verified reply.
  NATSGW_ASSIGN_OR_RETURN(auto client,
                          quickstart::GreeterClient::Create(*conn));
  NATSGW_ASSIGN_OR_RETURN(
      auto reply, client.SayHello([](flatbuffers::FlatBufferBuilder& fbb) {
        return quickstart::CreateHelloRequestDirect(fbb, "world");
      }));
  std::cout << reply->message()->str() << " (trace "
            << reply.call.trace.TraceIdHex() << ")\n";

  // A handler's error reaches the caller with its code and message.
  auto refused = client.SayHello([](flatbuffers::FlatBufferBuilder& fbb) {
    return quickstart::CreateHelloRequestDirect(fbb, "");
  });
  std::cout << absl::StatusCodeToString(refused.status().code()) << ": "
            << refused.status().message() << "\n";

  // Many calls in flight on one connection: futures (or callbacks).
  std::vector<
      std::future<absl::StatusOr<natsgw::Response<quickstart::HelloReply>>>>
      calls;
  for (const char* name : {"Ada", "Grace", "Barbara"}) {
    calls.push_back(
        client.SayHelloAsync([name](flatbuffers::FlatBufferBuilder& fbb) {
          return quickstart::CreateHelloRequestDirect(fbb, name);
        }));
  }
  for (auto& call : calls) {
    NATSGW_ASSIGN_OR_RETURN(auto r, call.get());
    std::cout << r->message()->str() << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  const char* env = std::getenv("NATS_URL");
  const std::string url = argc > 1 ? argv[1]
                          : env != nullptr && env[0] != 0
                              ? env
                              : "nats://127.0.0.1:4222";
  if (absl::Status status = Run(url); !status.ok()) {
    std::cerr << "quickstart: " << status << "\n";
    return 1;
  }
  return 0;
}
