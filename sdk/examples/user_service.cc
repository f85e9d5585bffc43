// user-service: registers users over request/reply and announces each new
// user with a `users.events.UserRegistered` event, without waiting for what
// other services (the e-mail service) do with it.
//
//   user-service --nats_url=nats://127.0.0.1:4222 --metrics_port=9090
//
// Endpoint users.RegisterUser (queue group "q"): RegisterUserRequest ->
// RegisterUserReply. An e-mail without '@' is INVALID_ARGUMENT; an e-mail
// registered before is ALREADY_EXISTS.
#include <prometheus/registry.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "example_support.h"
#include "natsgw/schemas/users_generated.h"
#include "natsgw/status_macros.h"

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

 private:
  std::mutex mu_;
  absl::flat_hash_set<std::string> emails_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<Reply> RegisterUser(Connection& conn, UserDirectory& users,
                                   const Message& request) {
  const auto start = std::chrono::steady_clock::now();
  const std::string trace = request.trace.TraceIdHex();
  NATSGW_ASSIGN_OR_RETURN(
      const users::RegisterUserRequest* req,
      ReadRoot<users::RegisterUserRequest>(
          request.data, users::RegisterUserRequestIdentifier(),
          "natsgw.users.RegisterUserRequest"));
  const std::string email = req->email()->str();
  const std::string name =
      req->display_name() ? req->display_name()->str() : "";
  if (std::count(email.begin(), email.end(), '@') != 1) {
    PrintLine(kComponent, trace,
              absl::StrCat("rejected '", email, "': not an e-mail address"));
    return absl::InvalidArgumentError(
        absl::StrCat("email \"", email, "\" must contain exactly one '@'"));
  }
  if (!users.Claim(email)) {
    PrintLine(kComponent, trace,
              absl::StrCat("rejected ", email, ": already registered"));
    return absl::AlreadyExistsError(
        absl::StrCat("a user with email ", email, " is already registered"));
  }
  const std::string user_id = absl::StrCat("u-", RandomHex(12));
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());

  // Announce the new user. The publish is fire-and-forget: the reply does not
  // wait for the e-mail. It continues this request's trace automatically.
  flatbuffers::FlatBufferBuilder event(256);
  event.Finish(users::CreateUserRegisteredDirect(
                   event, user_id.c_str(), email.c_str(), name.c_str(), now_ms),
               users::RegisterUserRequestIdentifier());
  PublishOptions publish;
  publish.message_id = absl::StrCat("user-registered-", user_id);
  NATSGW_RETURN_IF_ERROR(
      conn.Publish("users.events.UserRegistered", Payload(event), publish)
          .status());

  flatbuffers::FlatBufferBuilder reply(128);
  reply.Finish(
      users::CreateRegisterUserReplyDirect(reply, user_id.c_str(), now_ms),
      users::RegisterUserRequestIdentifier());
  const absl::Duration took =
      absl::FromChrono(std::chrono::steady_clock::now() - start);
  PrintLine(kComponent, trace,
            absl::StrCat("RegisterUser ", email, " -> ", user_id,
                         ", published users.events.UserRegistered (handled in ",
                         FormatLatency(took), ")"));
  return Reply{std::string(Payload(reply)), {}};
}

absl::Status Run() {
  NATSGW_ASSIGN_OR_RETURN(ServiceRuntime runtime, StartService("user-service"));
  Connection& c = *runtime.connection;
  UserDirectory users;
  NATSGW_ASSIGN_OR_RETURN(
      std::unique_ptr<Subscription> endpoint,
      c.Serve("users.RegisterUser", "q", [&c, &users](const Message& m) {
        return RegisterUser(c, users, m);
      }));
  std::vector<std::unique_ptr<Subscription>> subscriptions;
  subscriptions.push_back(std::move(endpoint));
  RunUntilShutdown("user-service", "serving users.RegisterUser", runtime,
                   std::move(subscriptions));
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
