// email-service: sends the welcome e-mail for every new user, asynchronously.
//
//   email-service --nats_url=nats://127.0.0.1:4222 --metrics_port=9091
//
// Consumes users.events.UserRegistered (queue group "email-service", so
// several instances share the work) and publishes
// email.events.WelcomeEmailSent after each e-mail. Also implements
// rpc_service natsgw.email.Email (schemas/email.fbs) through the stub
// natsgw-gen generates, served as the NATS Services API service "email"
// (endpoint email.SendWelcomeEmail, queue group "q"), for sending one on
// demand.
//
// "Sending" writes the e-mail to stdout; the point of the example is the
// messaging around it. Core NATS delivery is at-most-once: an event published
// while no instance runs is not delivered (durable delivery is JetStream's
// job; see README.md).
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "example_support.h"
#include "natsgw/builder_lease.h"
#include "natsgw/schemas/email_natsgw.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/status_macros.h"
#include "natsgw/verified.h"
#include "natsgw/version.h"

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
  // Inside SendWelcomeEmail the thread's builder holds the reply under
  // construction; the lease then gets a builder of its own.
  BuilderLease lease;
  flatbuffers::FlatBufferBuilder& fbb = lease.builder();
  // Every root type of email.fbs carries the schema's identifier ("NGEM").
  fbb.Finish(email::CreateWelcomeEmailSentDirect(
                 fbb, to.user_id.c_str(), to.email.c_str(), email_id.c_str(),
                 absl::ToUnixMillis(absl::Now())),
             email::SendWelcomeEmailRequestIdentifier());
  PublishOptions options;
  options.message_id = absl::StrCat("welcome-email-sent-", email_id);
  NATSGW_RETURN_IF_ERROR(
      conn.Publish("email.events.WelcomeEmailSent", lease.bytes(), options)
          .status());
  return email_id;
}

// The event path: a plain subscription (an event has no reply, so it is not
// an rpc_service method), read through the same verification the typed stubs
// apply to requests.
void OnUserRegistered(Connection& conn, const Message& event) {
  const std::string trace = event.trace.TraceIdHex();
  absl::StatusOr<Verified<users::UserRegistered>> user =
      Verified<users::UserRegistered>::FromView(
          event.data, users::UsersMethods::kService.file_identifier);
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

// The on-demand path. Thread-safe (stateless apart from the connection).
class EmailService : public email::EmailServiceBase {
 public:
  explicit EmailService(Connection& conn) : conn_(conn) {}

  absl::StatusOr<flatbuffers::Offset<email::SendWelcomeEmailReply>>
  SendWelcomeEmail(const email::SendWelcomeEmailRequest& request,
                   ServerContext& ctx) override {
    Recipient to{request.user_id()->str(), request.email()->str(),
                 request.display_name() ? request.display_name()->str() : ""};
    NATSGW_ASSIGN_OR_RETURN(std::string email_id, SendWelcome(conn_, to));
    PrintLine(kComponent, ctx.trace().TraceIdHex(),
              absl::StrCat("SendWelcomeEmail ", to.email, " -> ", email_id));
    flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
    return email::CreateSendWelcomeEmailReplyDirect(fbb, email_id.c_str());
  }

 private:
  Connection& conn_;
};

absl::Status Run() {
  NATSGW_ASSIGN_OR_RETURN(ServiceRuntime runtime,
                          StartService("email-service"));
  Connection& c = *runtime.connection;
  NATSGW_ASSIGN_OR_RETURN(
      std::unique_ptr<Subscription> events,
      c.Subscribe("users.events.UserRegistered", "email-service",
                  [&c](const Message& m) { OnUserRegistered(c, m); }));
  EmailService email_service(c);
  TypedServiceOptions options;
  // The Services API reports the release that serves the contract.
  options.version = Version();
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<Service> service,
                          email_service.Start(c, options));
  RunUntilShutdown("email-service",
                   absl::StrCat("consuming users.events.UserRegistered; ",
                                DescribeService(*service)),
                   runtime, [&events, &service] {
                     // Each waits for its running handler, so what the
                     // handlers publish is flushed by the Close() after.
                     events.reset();
                     service->Stop();
                   });
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
