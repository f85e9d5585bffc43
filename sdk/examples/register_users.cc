// register-users: the client side of the seed scenario. Finds the two
// services through the NATS Services API, registers N users with the typed
// Users client (generated from schemas/users.fbs), each under its own new
// trace, then waits for the welcome e-mails the e-mail service sends
// asynchronously, checks that each e-mail carries the trace of the
// registration that caused it, and prints the user service's own statistics.
//
//   register-users --nats_url=nats://127.0.0.1:4222 --count=5
//
// Exit status 0 when both services answered discovery ($SRV.INFO), every
// registration succeeded, the duplicate was refused with ALREADY_EXISTS and
// every welcome e-mail arrived on the registration's trace; 1 otherwise.
#include <prometheus/registry.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/flags/flag.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "example_support.h"
#include "natsgw/schemas/email_natsgw.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/service_error.h"
#include "natsgw/verified.h"

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

absl::Duration Percentile(std::vector<absl::Duration> v, double q) {
  if (v.empty()) return absl::ZeroDuration();
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(q * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// "<name> <version>, instance <id>: <Endpoint> on <subject> (<request type>
// -> <response type>)" from a $SRV.INFO answer
// (io.nats.micro.v1.info_response).
absl::StatusOr<std::string> SummarizeInfo(const std::string& json) {
  // nlohmann::json reports type mismatches by throwing; they stop here.
  try {
    const nlohmann::json info = nlohmann::json::parse(json);
    std::vector<std::string> endpoints;
    for (const nlohmann::json& e : info.at("endpoints")) {
      const nlohmann::json& meta =
          e.value("metadata", nlohmann::json::object());
      endpoints.push_back(
          absl::StrCat(e.at("name").get<std::string>(), " on ",
                       e.at("subject").get<std::string>(), " (",
                       meta.value("fbs.request_type", "?"), " -> ",
                       meta.value("fbs.response_type", "?"), ")"));
    }
    return absl::StrCat(info.at("name").get<std::string>(), " ",
                        info.at("version").get<std::string>(), ", instance ",
                        info.at("id").get<std::string>(), ": ",
                        absl::StrJoin(endpoints, "; "));
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed $SRV.INFO answer: ", e.what()));
  }
}

// "<Endpoint>: <n> requests (<m> failed), handler p50 <t> p99 <t>" per
// endpoint from a $SRV.STATS answer (io.nats.micro.v1.stats_response; natsgw
// adds the percentiles in each endpoint's `data`).
absl::StatusOr<std::string> SummarizeStats(const std::string& json) {
  try {
    const nlohmann::json stats = nlohmann::json::parse(json);
    std::vector<std::string> endpoints;
    for (const nlohmann::json& e : stats.at("endpoints")) {
      const nlohmann::json& data = e.value("data", nlohmann::json::object());
      endpoints.push_back(absl::StrCat(
          e.at("name").get<std::string>(), ": ",
          e.at("num_requests").get<int64_t>(), " requests (",
          e.at("num_errors").get<int64_t>(), " failed), handler p50 ",
          FormatLatency(absl::Nanoseconds(data.value("p50_ns", int64_t{0}))),
          " p99 ",
          FormatLatency(absl::Nanoseconds(data.value("p99_ns", int64_t{0})))));
    }
    return absl::StrJoin(endpoints, "; ");
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed $SRV.STATS answer: ", e.what()));
  }
}

// Asks one instance of service `name` ($SRV.<verb>.<name>, the NATS Services
// API) and summarizes its answer; the status if it did not answer or the
// answer did not parse.
absl::StatusOr<std::string> AskService(
    Connection& conn, absl::string_view verb, absl::string_view name,
    absl::Duration timeout,
    absl::FunctionRef<absl::StatusOr<std::string>(const std::string&)>
        summarize) {
  absl::StatusOr<Message> reply =
      conn.Request(absl::StrCat("$SRV.", verb, ".", name), "", timeout);
  if (!reply.ok()) return reply.status();
  return summarize(reply->data);
}

// The summary, or the error in its place.
std::string SummaryOrError(const absl::StatusOr<std::string>& summary) {
  return summary.ok() ? *summary : summary.status().ToString();
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
  absl::StatusOr<ConnectionOptions> options =
      ConnectionOptionsFromFlags("register-users");
  if (!options.ok()) return ExitStatus("register-users", options.status());
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connection::Create(*options);
  if (!conn.ok()) return ExitStatus("register-users", conn.status());
  Connection& c = **conn;
  ClientOptions client_options;
  client_options.timeout = timeout;
  absl::StatusOr<users::UsersClient> client =
      users::UsersClient::Create(c, client_options);
  if (!client.ok()) return ExitStatus("register-users", client.status());

  // Discovery: what each service serves, and with which contract.
  bool ok = true;
  for (absl::string_view name :
       {users::UsersMethods::kService.default_prefix,
        email::EmailMethods::kService.default_prefix}) {
    absl::StatusOr<std::string> info =
        AskService(c, "INFO", name, timeout, SummarizeInfo);
    if (!info.ok()) ok = false;
    std::printf("%-13s $SRV.INFO.%s -> %s\n", std::string(kComponent).c_str(),
                std::string(name).c_str(), SummaryOrError(info).c_str());
  }

  EmailLog emails;
  absl::StatusOr<std::unique_ptr<Subscription>> sub = c.Subscribe(
      "email.events.WelcomeEmailSent", "", [&emails](const Message& m) {
        const auto at = std::chrono::steady_clock::now();
        absl::StatusOr<Verified<email::WelcomeEmailSent>> sent =
            Verified<email::WelcomeEmailSent>::FromView(
                m.data, email::EmailMethods::kService.file_identifier);
        if (!sent.ok()) return;
        emails.Add(m.trace.TraceIdHex(), (*sent)->user_id()->str(),
                   (*sent)->email_id()->str(), at);
      });
  if (!sub.ok()) return ExitStatus("register-users", sub.status());

  std::map<std::string, Registration> by_trace;
  std::vector<std::string> order;
  std::vector<absl::Duration> latencies;
  for (int i = 1; i <= count; ++i) {
    const std::string email_addr = absl::StrCat("user", i, "@example.com");
    const std::string name = absl::StrCat("User ", i);
    // One new trace per registration: it follows the user through the
    // request, the UserRegistered event and the welcome e-mail.
    CallOptions call;
    call.trace = TraceContext::NewRoot();
    const auto started = std::chrono::steady_clock::now();
    // Blocking form: sequential calls, so each latency is one round trip.
    absl::StatusOr<Response<users::RegisterUserReply>> reply =
        client->RegisterUser(
            [&](flatbuffers::FlatBufferBuilder& fbb) {
              return users::CreateRegisterUserRequestDirect(
                  fbb, email_addr.c_str(), name.c_str());
            },
            call);
    const absl::Duration latency =
        absl::FromChrono(std::chrono::steady_clock::now() - started);
    if (!reply.ok()) {
      PrintLine(
          kComponent,
          TraceIdFromStatus(reply.status()).value_or(call.trace->TraceIdHex()),
          absl::StrCat("RegisterUser ", email_addr, " failed: ",
                       absl::StatusCodeToString(reply.status().code()), ": ",
                       reply.status().message()));
      ok = false;
      continue;
    }
    // The trace the request carried; the reply must continue it.
    const std::string trace = reply->call.trace.TraceIdHex();
    const bool same_trace = reply->reply_trace.TraceIdHex() == trace;
    if (!same_trace) ok = false;
    const std::string user_id = (*reply)->user_id()->str();
    latencies.push_back(latency);
    by_trace[trace] = Registration{email_addr, user_id, started};
    order.push_back(trace);
    PrintLine(
        kComponent, trace,
        absl::StrCat("RegisterUser ", email_addr, " -> ", user_id, " in ",
                     FormatLatency(latency),
                     same_trace ? "" : " (reply came back on ANOTHER trace)"));
  }

  // A duplicate registration shows how a handler's error reaches the caller:
  // same code and message, and the call's trace ID on the status. Future
  // form, to show it too.
  {
    CallOptions call;
    call.trace = TraceContext::NewRoot();
    std::future<absl::StatusOr<Response<users::RegisterUserReply>>> pending =
        client->RegisterUserAsync(
            [](flatbuffers::FlatBufferBuilder& fbb) {
              return users::CreateRegisterUserRequestDirect(
                  fbb, "user1@example.com", "Again");
            },
            call);
    absl::StatusOr<Response<users::RegisterUserReply>> dup = pending.get();
    const std::string trace = dup.ok()
                                  ? dup->call.trace.TraceIdHex()
                                  : TraceIdFromStatus(dup.status())
                                        .value_or(call.trace->TraceIdHex());
    PrintLine(kComponent, trace,
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
  if (!all_arrived) ok = false;
  // The service's own view of the calls above (its Services API statistics).
  const absl::StatusOr<std::string> stats =
      AskService(c, "STATS", users::UsersMethods::kService.default_prefix,
                 timeout, SummarizeStats);
  if (!stats.ok()) ok = false;
  std::printf(
      "\nregister-users: %zu/%d registered, %zu/%zu welcome e-mails on their "
      "registration's trace\n"
      "  RegisterUser latency   p50 %s  p99 %s  (n=%zu, measured here)\n"
      "  registration->e-mail   p50 %s  p99 %s\n"
      "  $SRV.STATS.users       %s\n",
      by_trace.size(), count, end_to_end.size(), by_trace.size(),
      FormatLatency(Percentile(latencies, 0.5)).c_str(),
      FormatLatency(Percentile(latencies, 0.99)).c_str(), latencies.size(),
      FormatLatency(Percentile(end_to_end, 0.5)).c_str(),
      FormatLatency(Percentile(end_to_end, 0.99)).c_str(),
      SummaryOrError(stats).c_str());
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
