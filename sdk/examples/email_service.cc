// email-service: sends the welcome e-mail for every new user, asynchronously.
//
//   email-service --nats_url=nats://127.0.0.1:4222 --metrics_port=9091
//
// /metrics, /healthz and /readyz are served on --metrics_port (default 9091,
// so that it runs beside user-service's 9090).
//
// Consumes users.events.UserRegistered from the JetStream stream USERS
// through the durable consumer "email-service" (several instances share the
// work), at least once: an event is acknowledged only after its e-mail went
// out, and the message IDs handled are kept in the JetStream KV bucket
// "email-service-idempotency", shared by all instances, so a redelivered or
// re-published event sends no second e-mail. A failing send is retried with
// backoff; after 5 deliveries, or at once for an event that does not verify,
// the event goes to the dead-letter stream DEAD_LETTERS (dlq.email-service).
// Publishes email.events.WelcomeEmailSent after each e-mail. Also implements
// rpc_service natsgw.email.Email (schemas/email.fbs) through the stub
// natsgw-gen generates, served as the NATS Services API service "email"
// (endpoint email.SendWelcomeEmail, queue group "q"), for sending one on
// demand.
//
// "Sending" prints the e-mail to stdout and, with --mail_dir, hands it to a
// spool directory standing in for the mail transport: one file per e-mail,
// named by the event's message ID and created exclusively, the way real mail
// APIs take an idempotency key. See README.md "Delivery guarantees" for what
// is and is not guaranteed across crashes.
//
// SIGTERM/SIGINT: stops pulling, lets running sends finish (up to 10 s) and
// hands back the rest, flushes acks and publishes, exits 0.
#include <fcntl.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "example_support.h"
#include "natsgw/builder_lease.h"
#include "natsgw/kv_idempotency_store.h"
#include "natsgw/schemas/email_natsgw.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/status_macros.h"
#include "natsgw/stream_consumer.h"
#include "natsgw/verified.h"
#include "natsgw/version.h"

ABSL_FLAG(std::string, mail_dir, "",
          "Spool directory standing in for the mail transport (one file per "
          "e-mail, named by the event's message ID); empty: print only");
ABSL_FLAG(int, workers, 4, "E-mails sent concurrently");
ABSL_FLAG(absl::Duration, ack_wait, absl::Seconds(30),
          "How long JetStream waits for an e-mail's ack before redelivering "
          "it (part of the durable consumer's declared configuration)");
ABSL_FLAG(int, send_delay_ms, 0,
          "Simulated mail transport latency per e-mail, in milliseconds");

namespace natsgw::examples {
namespace {

constexpr absl::string_view kComponent = "email-service";

struct Recipient {
  std::string user_id;
  std::string email;
  std::string display_name;
};

// Hands the e-mail to the transport: with --mail_dir, a file named after
// `key`, so the transport itself refuses a second copy of the same e-mail.
// Returns false if it already had it. The e-mail is written to a temporary
// file first and then hard-linked into place (link() fails if the name
// exists): a crash mid-write leaves a stray ".*.tmp" file, never a partial
// e-mail that would make the transport refuse the complete one.
absl::StatusOr<bool> Transport(absl::string_view key, const Recipient& to,
                               absl::string_view email_id) {
  if (const int ms = absl::GetFlag(FLAGS_send_delay_ms); ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  }
  const std::string dir = absl::GetFlag(FLAGS_mail_dir);
  if (dir.empty()) return true;
  std::string name(key);
  for (char& c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' &&
        c != '_') {
      c = '_';
    }
  }
  const std::string path = absl::StrCat(dir, "/", name, ".eml");
  if (access(path.c_str(), F_OK) == 0) return false;
  const std::string tmp =
      absl::StrCat(dir, "/.", name, ".", RandomHex(8), ".tmp");
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("mail spool: ", tmp, ": ", std::strerror(errno)));
  }
  const std::string mail = absl::StrCat(
      "Message-Id: ", email_id, "\nUser-Id: ", to.user_id, "\nTo: ", to.email,
      "\nSubject: Welcome, ", to.display_name, "!\n");
  const bool written = write(fd, mail.data(), mail.size()) ==
                           static_cast<ssize_t>(mail.size()) &&
                       fsync(fd) == 0;
  close(fd);
  if (!written) {
    unlink(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("mail spool: writing ", tmp));
  }
  const int linked = link(tmp.c_str(), path.c_str());
  const int link_errno = errno;
  unlink(tmp.c_str());
  if (linked != 0 && link_errno == EEXIST) return false;
  if (linked != 0) {
    return absl::UnavailableError(
        absl::StrCat("mail spool: ", path, ": ", std::strerror(link_errno)));
  }
  return true;
}

// Sends the e-mail and announces it; returns the e-mail's ID. `key`
// identifies the e-mail for the transport (the event's message ID). Runs
// inside a handler, so the announcement continues the trace being handled.
absl::StatusOr<std::string> SendWelcome(Connection& conn, const Recipient& to,
                                        absl::string_view key) {
  const std::string email_id = absl::StrCat("e-", RandomHex(12));
  NATSGW_ASSIGN_OR_RETURN(bool sent, Transport(key, to, email_id));
  if (!sent) {
    PrintLine(kComponent, CurrentTraceContext()->TraceIdHex(),
              absl::StrCat("the mail transport already had the welcome "
                           "e-mail for ",
                           to.user_id, " (", key, "); not sent again"));
  }
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

// The event path: one JetStream delivery, read through the same
// verification the typed stubs apply to requests. The returned outcome is
// applied by the consumer: OK acknowledges; INVALID_ARGUMENT (a payload that
// does not verify can never succeed) dead-letters at once; other errors are
// retried with backoff.
DeliveryOutcome OnUserRegistered(Connection& conn, const Delivery& delivery) {
  const Message& event = delivery.message();
  const std::string trace = event.trace.TraceIdHex();
  absl::StatusOr<Verified<users::UserRegistered>> user =
      Verified<users::UserRegistered>::FromView(
          event.data, users::UsersMethods::kService.file_identifier);
  if (!user.ok()) {
    PrintLine(kComponent, trace,
              absl::StrCat("dead-lettering event ", event.message_id, ": ",
                           user.status().message()));
    return user.status();
  }
  Recipient to{(*user)->user_id()->str(), (*user)->email()->str(),
               (*user)->display_name() ? (*user)->display_name()->str() : ""};
  const std::string key =
      event.message_id.empty() ? to.user_id : event.message_id;
  absl::StatusOr<std::string> email_id = SendWelcome(conn, to, key);
  if (!email_id.ok()) {
    PrintLine(kComponent, trace,
              absl::StrCat("welcome e-mail to ", to.email, " failed (delivery ",
                           delivery.delivery_count(),
                           "), will retry: ", email_id.status().ToString()));
    return email_id.status();
  }
  const std::string delay =
      event.sent_at
          ? absl::StrCat(" (event delivered ",
                         FormatLatency(event.received_at - *event.sent_at),
                         " after it was published)")
          : "";
  const std::string redelivery =
      delivery.delivery_count() > 1
          ? absl::StrCat(", delivery ", delivery.delivery_count())
          : "";
  PrintLine(
      kComponent, trace,
      absl::StrCat("welcome e-mail ", *email_id, " sent to ", to.email, " for ",
                   to.user_id, ", published email.events.WelcomeEmailSent",
                   delay, redelivery));
  return DeliveryOutcome::Ack();
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
    // Keyed like the event path, so the on-demand and the event-driven
    // e-mail for one user are the same e-mail to the transport.
    NATSGW_ASSIGN_OR_RETURN(
        std::string email_id,
        SendWelcome(conn_, to, absl::StrCat("user-registered-", to.user_id)));
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
                          StartService("email-service", 9091));
  Connection& c = *runtime.connection;
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<JetStream> js, JetStream::Create(c));
  NATSGW_RETURN_IF_ERROR(js->EnsureStream(UsersEventsStream()).status());
  StreamConfig dead_letters;
  dead_letters.name = "DEAD_LETTERS";
  dead_letters.description = "Events no handler could process";
  dead_letters.subjects = {"dlq.>"};
  dead_letters.replicas = StreamReplicas();
  NATSGW_RETURN_IF_ERROR(js->EnsureStream(dead_letters).status());
  KvIdempotencyOptions kv;
  kv.bucket = "email-service-idempotency";
  kv.ttl = absl::Hours(24);
  kv.replicas = StreamReplicas();
  NATSGW_ASSIGN_OR_RETURN(std::shared_ptr<KvIdempotencyStore> handled,
                          KvIdempotencyStore::Create(*js, kv));

  StreamConsumerOptions options;
  options.consumer.stream = UsersEventsStream().name;
  options.consumer.durable = "email-service";
  options.consumer.filter_subject = "users.events.UserRegistered";
  options.consumer.ack_wait = absl::GetFlag(FLAGS_ack_wait);
  options.workers = absl::GetFlag(FLAGS_workers);
  options.max_deliveries = 5;
  options.dead_letter_subject = "dlq.email-service";
  options.dead_letter_stream = dead_letters.name;
  options.idempotency = handled;
  NATSGW_ASSIGN_OR_RETURN(
      std::unique_ptr<StreamConsumer> events,
      StreamConsumer::Create(*js, options, [&c](const Delivery& d) {
        return OnUserRegistered(c, d);
      }));
  EmailService email_service(c);
  TypedServiceOptions service_options;
  // The Services API reports the release that serves the contract.
  service_options.version = Version();
  NATSGW_ASSIGN_OR_RETURN(std::unique_ptr<Service> service,
                          email_service.Start(c, service_options));
  RunUntilShutdown(
      "email-service",
      absl::StrCat("consuming users.events.UserRegistered from stream USERS "
                   "(durable consumer email-service); ",
                   DescribeService(*service)),
      runtime, [&events, &service] {
        // Running sends finish and are acknowledged; what has not started
        // within 10 s goes back to the stream for another instance.
        if (absl::Status s = events->Stop(absl::Seconds(10)); !s.ok()) {
          PrintLine(kComponent, "-", s.ToString());
        }
        if (absl::Status s = service->Drain(absl::Seconds(5)); !s.ok()) {
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
      "Sends welcome e-mails for users.events.UserRegistered and serves "
      "email.SendWelcomeEmail.\nUsage: email-service [--nats_url=URL] "
      "[--metrics_port=PORT] [--mail_dir=DIR] [--workers=N]");
  return natsgw::examples::ExitStatus("email-service", natsgw::examples::Run());
}
