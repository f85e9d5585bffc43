// user-service: registers users over request/reply and announces each new
// user with a `users.events.UserRegistered` event, without waiting for what
// other services (the e-mail service) do with it. The event is published to
// the JetStream stream USERS and the registration is answered only once the
// stream has acknowledged it, so an acknowledged registration is never lost
// for the e-mail service, even if it is down at that moment.
//
//   user-service --nats_url=nats://127.0.0.1:4222 --metrics_port=9090
//
// Implements rpc_service natsgw.users.Users (schemas/users.fbs) through the
// stub natsgw-gen generates, and serves it as the NATS Services API service
// "users" (endpoint users.RegisterUser, queue group "q"), so `nats micro
// ls|info|stats` finds it. An e-mail without exactly one '@' is
// INVALID_ARGUMENT; an e-mail registered before is ALREADY_EXISTS.
#include <prometheus/registry.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "example_support.h"
#include "natsgw/builder_lease.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/status_macros.h"
#include "natsgw/stream_publisher.h"
#include "natsgw/version.h"

namespace natsgw::examples {
namespace {

constexpr absl::string_view kComponent = "user-service";

// The users known so far (in memory: the example is about messaging, not
// storage).
class UserDirectory {
 public:
  // Claims `email`; false if it was taken already.
  bool Claim(absl::string_view email) {
    std::lock_guard<std::mutex> lock(mu_);
    return emails_.insert(std::string(email)).second;
  }
  // Undoes Claim (the registration failed, so it may be tried again).
  void Release(absl::string_view email) {
    std::lock_guard<std::mutex> lock(mu_);
    emails_.erase(std::string(email));
  }

 private:
  std::mutex mu_;
  absl::flat_hash_set<std::string> emails_ ABSL_GUARDED_BY(mu_);
};

// Thread-safe: the directory is locked and the connection is thread-safe, so
// the method may run on several worker threads at once.
class UserService : public users::UsersServiceBase {
 public:
  UserService(StreamPublisher& events, Logger& log)
      : events_(events), log_(log) {}

  absl::StatusOr<flatbuffers::Offset<users::RegisterUserReply>> RegisterUser(
      const users::RegisterUserRequest& request, ServerContext& ctx) override {
    const std::string trace = ctx.trace().TraceIdHex();
    // The request has been verified against the schema, so the required
    // email is present.
    const std::string email = request.email()->str();
    const std::string name =
        request.display_name() ? request.display_name()->str() : "";
    if (std::count(email.begin(), email.end(), '@') != 1) {
      PrintLine(kComponent, trace,
                absl::StrCat("rejected '", email, "': not an e-mail address"));
      return absl::InvalidArgumentError(
          absl::StrCat("email \"", email, "\" must contain exactly one '@'"));
    }
    if (!users_.Claim(email)) {
      PrintLine(kComponent, trace,
                absl::StrCat("rejected ", email, ": already registered"));
      return absl::AlreadyExistsError(
          absl::StrCat("a user with email ", email, " is already registered"));
    }
    const std::string user_id = absl::StrCat("u-", RandomHex(12));
    const int64_t now_ms = absl::ToUnixMillis(absl::Now());
    absl::StatusOr<PublishAck> stored =
        PublishRegistered(user_id, email, name, now_ms);
    if (!stored.ok()) {
      users_.Release(email);
      PrintLine(kComponent, trace,
                absl::StrCat("RegisterUser ", email,
                             " failed: the event was not stored: ",
                             stored.status().ToString()));
      return stored.status();
    }

    // From when natsgw took the request off the wire, so the time includes
    // the verification the stub did before calling this method.
    const absl::Duration took = absl::Now() - ctx.request().received_at;
    PrintLine(kComponent, trace,
              absl::StrCat("RegisterUser ", email, " -> ", user_id,
                           ", users.events.UserRegistered stored as ",
                           stored->stream, " #", stored->sequence,
                           " (handled in ", FormatLatency(took), ")"));
    // The diagnostics log: inside the handler, the JSON logger adds the
    // request's trace_id and span_id, which join this line to the spans.
    const std::string sequence = absl::StrCat(stored->sequence);
    const LogField fields[] = {{"user_id", user_id},
                               {"stream", stored->stream},
                               {"sequence", sequence}};
    log_.LogStructured({.severity = absl::LogSeverity::kInfo,
                        .message = "user registered",
                        .fields = fields});
    flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
    return users::CreateRegisterUserReplyDirect(fbb, user_id.c_str(), now_ms);
  }

 private:
  // Announces the new user and waits for the stream's ack (not for the
  // e-mail). Published from the handler's thread, so it continues the
  // request's trace without being told.
  absl::StatusOr<PublishAck> PublishRegistered(const std::string& user_id,
                                               const std::string& email,
                                               const std::string& name,
                                               int64_t now_ms) {
    // The thread's builder is leased to the reply being built, so this lease
    // gets a builder of its own and the reply is left alone.
    BuilderLease lease;
    flatbuffers::FlatBufferBuilder& fbb = lease.builder();
    // Every root type of users.fbs carries the schema's identifier ("NGUS");
    // the subject says which type it is.
    fbb.Finish(users::CreateUserRegisteredDirect(
                   fbb, user_id.c_str(), email.c_str(), name.c_str(), now_ms),
               users::RegisterUserRequestIdentifier());
    StreamPublishOptions publish;
    // Derived from the user, so a republished event is de-duplicated by
    // JetStream and consumers can recognise it.
    publish.message_id = absl::StrCat("user-registered-", user_id);
    return events_.Publish("users.events.UserRegistered", lease.bytes(),
                           publish);
  }

  StreamPublisher& events_;
  Logger& log_;
  UserDirectory users_;
};

absl::Status Run() {
  NATSGW_ASSIGN_OR_RETURN(ServiceRuntime runtime,
                          StartService("user-service", 9090));
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<JetStream> js,
                          JetStream::Create(*runtime.connection));
  NATSGW_RETURN_IF_ERROR(js->EnsureStream(UsersEventsStream()).status());
  StreamPublisherOptions publisher_options;
  publisher_options.stream = UsersEventsStream().name;
  NATSGW_ASSIGN_OR_RETURN(
      std::unique_ptr<StreamPublisher> events,
      StreamPublisher::Create(*js, std::move(publisher_options)));
  UserService users(*events, *runtime.connection->options().logger);
  TypedServiceOptions options;
  // The Services API reports the release that serves the contract.
  options.version = Version();
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<Service> service,
                          users.Start(*runtime.connection, options));
  RunUntilShutdown(
      "user-service", DescribeService(*service), runtime, [&service] {
        // New requests go to the other instances of queue group "q"; the
        // ones already here are answered first.
        if (absl::Status s = service->Drain(absl::Seconds(10)); !s.ok()) {
          PrintLine(kComponent, "-", s.ToString());
        }
      });
  return absl::OkStatus();
}

}  // namespace
}  // namespace natsgw::examples

int main(int argc, char** argv) {
  natsgw::examples::InitProgram(
      argc, argv,
      "Registers users (users.RegisterUser) and publishes "
      "users.events.UserRegistered.\nUsage: user-service [--nats_url=URL] "
      "[--metrics_port=PORT]");
  return natsgw::examples::ExitStatus("user-service", natsgw::examples::Run());
}
