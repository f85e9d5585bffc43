// pkgconfig_consumer: built with nothing but
//   c++ -std=c++20 pkgconfig_consumer.cc $(pkg-config --cflags --libs natsgw)
// It serves an untyped endpoint and requests it under a trace of its own, so
// the link line has to hold the whole gateway (nats.c, Abseil, prometheus-cpp,
// civetweb).
//
//   pkgconfig_consumer nats://127.0.0.1:4222
#include <iostream>
#include <string>

#include "natsgw/connection.h"
#include "natsgw/status_macros.h"
#include "natsgw/trace_context.h"
#include "natsgw/version.h"

namespace {

absl::Status Run(const std::string& url) {
  natsgw::ConnectionOptions options;
  options.servers = {url};
  options.name = "natsgw-pkgconfig-consumer";
  NATSGW_ASSIGN_OR_RETURN(auto conn, natsgw::Connection::Create(options));
  NATSGW_ASSIGN_OR_RETURN(
      auto endpoint,
      conn->Serve(
          "pkgconfig.Echo", "q",
          [](const natsgw::Message& request) -> absl::StatusOr<natsgw::Reply> {
            return natsgw::Reply{request.data, {}};
          }));

  const natsgw::TraceContext trace = natsgw::TraceContext::NewRoot();
  natsgw::ScopedTraceContext scope(trace);
  NATSGW_ASSIGN_OR_RETURN(
      natsgw::Message reply,
      conn->Request("pkgconfig.Echo", "echo", absl::Seconds(5)));
  if (reply.data != "echo" || reply.trace.trace_id() != trace.trace_id()) {
    return absl::InternalError(
        "the reply is not the echo on the caller's trace");
  }
  std::cout << "natsgw " << natsgw::Version()
            << " via pkg-config: " << reply.data << " on trace "
            << trace.TraceIdHex() << "\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: pkgconfig_consumer <nats-url>\n";
    return 2;
  }
  if (absl::Status status = Run(argv[1]); !status.ok()) {
    std::cerr << "pkgconfig_consumer: " << status << "\n";
    return 1;
  }
  return 0;
}
