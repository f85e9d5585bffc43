// register-users: the client side of the seed scenario. Registers N users
// over request/reply, each under its own new trace, then waits for the
// welcome e-mails the e-mail service sends asynchronously and checks that
// each e-mail carries the trace of the registration that caused it.
//
//   register-users --nats_url=nats://127.0.0.1:4222 --count=5
//
// Exit status 0 when every registration succeeded and every welcome e-mail
// arrived on the registration's trace; 1 otherwise.
#include <prometheus/registry.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "example_support.h"
#include "natsgw/schemas/email_generated.h"
#include "natsgw/schemas/users_generated.h"
#include "natsgw/service_error.h"

ABSL_FLAG(int, count, 5, "Number of users to register");
ABSL_FLAG(int, timeout_ms, 2000, "Deadline of each RegisterUser call");
ABSL_FLAG(int, wait_ms, 10000,
          "How long to wait for the welcome e-mails after the last call");

namespace natsgw::examples {
namespace {

constexpr absl::string_view kComponent = "client";

struct Registration {
  std::string email;
  std::string user_id;
  std::chrono::steady_clock::time_point started;
  absl::Duration rpc_latency;
};

// Welcome-e-mail events by trace ID, filled by the subscription's thread.
class EmailLog {
 public:
  void Add(const std::string& trace, std::string user_id, std::string email_id,
           std::chrono::steady_clock::time_point at) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      by_trace_[trace] = Entry{std::move(user_id), std::move(email_id), at};
    }
    cv_.notify_all();
  }
  bool WaitFor(size_t n, absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                        [this, n] { return by_trace_.size() >= n; });
  }
  struct Entry {
    std::string user_id;
    std::string email_id;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, Entry> entries() {
    std::lock_guard<std::mutex> lock(mu_);
    return by_trace_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry> by_trace_ ABSL_GUARDED_BY(mu_);
};

std::string RegisterRequest(const std::string& email, const std::string& name) {
  flatbuffers::FlatBufferBuilder fbb(128);
  fbb.Finish(
      users::CreateRegisterUserRequestDirect(fbb, email.c_str(), name.c_str()),
      users::RegisterUserRequestIdentifier());
  return std::string(Payload(fbb));
}

absl::Duration Percentile(std::vector<absl::Duration> v, double q) {
  if (v.empty()) return absl::ZeroDuration();
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

int Run() {
  const int count = absl::GetFlag(FLAGS_count);
  const absl::Duration timeout =
      absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  if (count < 1 || timeout <= absl::ZeroDuration()) {
    return ExitStatus("register-users",
                      absl::InvalidArgumentError(
                          "--count and --timeout_ms must be positive"));
  }
  ConnectionOptions options = ConnectionOptionsFromFlags("register-users");
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connection::Create(options);
  if (!conn.ok()) return ExitStatus("register-users", conn.status());
  Connection& c = **conn;

  EmailLog emails;
  absl::StatusOr<std::unique_ptr<Subscription>> sub = c.Subscribe(
      "email.events.WelcomeEmailSent", "", [&emails](const Message& m) {
        const auto at = std::chrono::steady_clock::now();
        absl::StatusOr<const email::WelcomeEmailSent*> sent =
            ReadRoot<email::WelcomeEmailSent>(
                m.data, email::SendWelcomeEmailRequestIdentifier(),
                "natsgw.email.WelcomeEmailSent");
        if (!sent.ok()) return;
        emails.Add(m.trace.TraceIdHex(), (*sent)->user_id()->str(),
                   (*sent)->email_id()->str(), at);
      });
  if (!sub.ok()) return ExitStatus("register-users", sub.status());

  bool ok = true;
  std::map<std::string, Registration> by_trace;
  std::vector<std::string> order;
  std::vector<absl::Duration> latencies;
  for (int i = 1; i <= count; ++i) {
    const std::string email_addr = absl::StrCat("user", i, "@example.com");
    // One new trace per registration: it follows the user through the
    // request, the UserRegistered event and the welcome e-mail.
    RequestOptions ropts;
    ropts.trace = TraceContext::NewRoot();
    const std::string trace = ropts.trace->TraceIdHex();
    const auto started = std::chrono::steady_clock::now();
    absl::StatusOr<Message> reply = c.Request(
        "users.RegisterUser",
        RegisterRequest(email_addr, absl::StrCat("User ", i)), timeout, ropts);
    const absl::Duration latency =
        absl::FromChrono(std::chrono::steady_clock::now() - started);
    if (!reply.ok()) {
      PrintLine(kComponent, trace,
                absl::StrCat("RegisterUser ", email_addr, " failed: ",
                             absl::StatusCodeToString(reply.status().code()),
                             ": ", reply.status().message()));
      ok = false;
      continue;
    }
    absl::StatusOr<const users::RegisterUserReply*> r =
        ReadRoot<users::RegisterUserReply>(
            reply->data, users::RegisterUserRequestIdentifier(),
            "natsgw.users.RegisterUserReply");
    if (!r.ok()) {
      PrintLine(kComponent, trace, std::string(r.status().message()));
      ok = false;
      continue;
    }
    latencies.push_back(latency);
    by_trace[trace] =
        Registration{email_addr, (*r)->user_id()->str(), started, latency};
    order.push_back(trace);
    PrintLine(
        kComponent, trace,
        absl::StrCat("RegisterUser ", email_addr, " -> ",
                     (*r)->user_id()->str(), " in ", FormatLatency(latency),
                     reply->trace.TraceIdHex() == trace
                         ? ""
                         : " (reply came back on ANOTHER trace)"));
    if (reply->trace.TraceIdHex() != trace) ok = false;
  }

  // A duplicate registration shows how a handler's error reaches the caller.
  {
    RequestOptions ropts;
    ropts.trace = TraceContext::NewRoot();
    absl::StatusOr<Message> dup = c.Request(
        "users.RegisterUser", RegisterRequest("user1@example.com", "Again"),
        timeout, ropts);
    PrintLine(kComponent, ropts.trace->TraceIdHex(),
              absl::StrCat(
                  "RegisterUser user1@example.com again -> ",
                  dup.ok() ? "unexpectedly accepted"
                           : absl::StrCat(
                                 absl::StatusCodeToString(dup.status().code()),
                                 ": ", dup.status().message())));
    if (dup.ok() || dup.status().code() != absl::StatusCode::kAlreadyExists) {
      ok = false;
    }
  }

  // The e-mails arrive asynchronously; wait for one per registration.
  const bool all_arrived = emails.WaitFor(
      by_trace.size(), absl::Milliseconds(absl::GetFlag(FLAGS_wait_ms)));
  const auto received = emails.entries();
  std::vector<absl::Duration> end_to_end;
  for (const std::string& trace : order) {
    const Registration& reg = by_trace[trace];
    auto it = received.find(trace);
    if (it == received.end()) {
      PrintLine(
          kComponent, trace,
          absl::StrCat("no welcome e-mail for ", reg.user_id, " arrived"));
      ok = false;
      continue;
    }
    const absl::Duration e2e = absl::FromChrono(it->second.at - reg.started);
    end_to_end.push_back(e2e);
    const bool same_user = it->second.user_id == reg.user_id;
    if (!same_user) ok = false;
    PrintLine(
        kComponent, trace,
        absl::StrCat("welcome e-mail ", it->second.email_id, " for ",
                     it->second.user_id, " arrived on the same trace, ",
                     FormatLatency(e2e), " after the registration started",
                     same_user ? "" : " (WRONG USER)"));
  }
  std::printf(
      "\nregister-users: %zu/%d registered, %zu/%zu welcome e-mails on their "
      "registration's trace\n"
      "  RegisterUser latency   p50 %s  p99 %s  (n=%zu)\n"
      "  registration->e-mail   p50 %s  p99 %s\n",
      by_trace.size(), count, end_to_end.size(), by_trace.size(),
      FormatLatency(Percentile(latencies, 0.5)).c_str(),
      FormatLatency(Percentile(latencies, 0.99)).c_str(), latencies.size(),
      FormatLatency(Percentile(end_to_end, 0.5)).c_str(),
      FormatLatency(Percentile(end_to_end, 0.99)).c_str());
  if (!all_arrived) ok = false;
  sub->reset();
  c.Close();
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace natsgw::examples

int main(int argc, char** argv) {
  natsgw::examples::InitProgram(
      argc, argv,
      "Registers users through user-service and checks that each welcome "
      "e-mail arrives on the registration's trace.\nUsage: register-users "
      "[--nats_url=URL] [--count=N]");
  return natsgw::examples::Run();
}
