// email-service: sends the welcome e-mail for every new user, asynchronously.
//
//   email-service --nats_url=nats://127.0.0.1:4222 --metrics_port=9091
//
// Consumes users.events.UserRegistered (queue group "email-service", so
// several instances share the work) and publishes
// email.events.WelcomeEmailSent after each e-mail. Also serves
// email.SendWelcomeEmail (queue group "q") for sending one on demand.
//
// "Sending" writes the e-mail to stdout; the point of the example is the
// messaging around it. Core NATS delivery is at-most-once: an event published
// while no instance runs is not delivered (durable delivery is JetStream's
// job; see README.md).
#include <prometheus/registry.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "example_support.h"
#include "natsgw/schemas/email_generated.h"
#include "natsgw/schemas/users_generated.h"
#include "natsgw/status_macros.h"

namespace natsgw::examples {
namespace {

constexpr absl::string_view kComponent = "email-service";

struct Recipient {
  std::string user_id;
  std::string email;
  std::string display_name;
};

// Sends the e-mail and announces it; returns the e-mail's ID. Runs inside a
// handler, so the announcement continues the trace being handled.
absl::StatusOr<std::string> SendWelcome(Connection& conn, const Recipient& to) {
  const std::string email_id = absl::StrCat("e-", RandomHex(12));
  // The mail transport would go here.
  flatbuffers::FlatBufferBuilder fbb(256);
  fbb.Finish(email::CreateWelcomeEmailSentDirect(
                 fbb, to.user_id.c_str(), to.email.c_str(), email_id.c_str(),
                 absl::ToUnixMillis(absl::Now())),
             email::SendWelcomeEmailRequestIdentifier());
  PublishOptions options;
  options.message_id = absl::StrCat("welcome-email-sent-", email_id);
  NATSGW_RETURN_IF_ERROR(
      conn.Publish("email.events.WelcomeEmailSent", Payload(fbb), options)
          .status());
  return email_id;
}

void OnUserRegistered(Connection& conn, const Message& event) {
  const std::string trace = event.trace.TraceIdHex();
  absl::StatusOr<const users::UserRegistered*> user =
      ReadRoot<users::UserRegistered>(event.data,
                                      users::RegisterUserRequestIdentifier(),
                                      "natsgw.users.UserRegistered");
  if (!user.ok()) {
    PrintLine(kComponent, trace,
              absl::StrCat("dropped event: ", user.status().message()));
    return;
  }
  Recipient to{(*user)->user_id()->str(), (*user)->email()->str(),
               (*user)->display_name() ? (*user)->display_name()->str() : ""};
  absl::StatusOr<std::string> email_id = SendWelcome(conn, to);
  if (!email_id.ok()) {
    PrintLine(kComponent, trace,
              absl::StrCat("welcome e-mail to ", to.email,
                           " failed: ", email_id.status().ToString()));
    return;
  }
  const std::string delay =
      event.sent_at
          ? absl::StrCat(" (event delivered ",
                         FormatLatency(event.received_at - *event.sent_at),
                         " after it was published)")
          : "";
  PrintLine(kComponent, trace,
            absl::StrCat("welcome e-mail ", *email_id, " sent to ", to.email,
                         " for ", to.user_id,
                         ", published email.events.WelcomeEmailSent", delay));
}

absl::StatusOr<Reply> OnSendWelcomeEmail(Connection& conn,
                                         const Message& request) {
  NATSGW_ASSIGN_OR_RETURN(
      const email::SendWelcomeEmailRequest* req,
      ReadRoot<email::SendWelcomeEmailRequest>(
          request.data, email::SendWelcomeEmailRequestIdentifier(),
          "natsgw.email.SendWelcomeEmailRequest"));
  Recipient to{req->user_id()->str(), req->email()->str(),
               req->display_name() ? req->display_name()->str() : ""};
  NATSGW_ASSIGN_OR_RETURN(std::string email_id, SendWelcome(conn, to));
  PrintLine(kComponent, request.trace.TraceIdHex(),
            absl::StrCat("SendWelcomeEmail ", to.email, " -> ", email_id));
  flatbuffers::FlatBufferBuilder fbb(64);
  fbb.Finish(email::CreateSendWelcomeEmailReplyDirect(fbb, email_id.c_str()),
             email::SendWelcomeEmailRequestIdentifier());
  return Reply{std::string(Payload(fbb)), {}};
}

absl::Status Run() {
  NATSGW_ASSIGN_OR_RETURN(ServiceRuntime runtime,
                          StartService("email-service"));
  Connection& c = *runtime.connection;
  NATSGW_ASSIGN_OR_RETURN(
      std::unique_ptr<Subscription> events,
      c.Subscribe("users.events.UserRegistered", "email-service",
                  [&c](const Message& m) { OnUserRegistered(c, m); }));
  NATSGW_ASSIGN_OR_RETURN(
      std::unique_ptr<Subscription> endpoint,
      c.Serve("email.SendWelcomeEmail", "q",
              [&c](const Message& m) { return OnSendWelcomeEmail(c, m); }));
  std::vector<std::unique_ptr<Subscription>> subscriptions;
  subscriptions.push_back(std::move(events));
  subscriptions.push_back(std::move(endpoint));
  RunUntilShutdown("email-service",
                   "consuming users.events.UserRegistered, serving "
                   "email.SendWelcomeEmail",
                   runtime, std::move(subscriptions));
  return absl::OkStatus();
}

}  // namespace
}  // namespace natsgw::examples

int main(int argc, char** argv) {
  natsgw::examples::InitProgram(
      argc, argv,
      "Sends welcome e-mails for users.events.UserRegistered and serves "
      "email.SendWelcomeEmail.\nUsage: email-service [--nats_url=URL] "
      "[--metrics_port=PORT]");
  return natsgw::examples::ExitStatus("email-service", natsgw::examples::Run());
}
