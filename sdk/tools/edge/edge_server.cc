#include "edge_server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "civetweb_start.h"
#include "discovery.h"
#include "natsgw/service_error.h"
#include "natsgw/status_macros.h"
#include "natsgw/trace_context.h"
#include "natsgw/validation.h"
#include "natsgw/wire_headers.h"
#include "nlohmann/json.hpp"
#include "schema_set.h"

namespace natsgw::edge {
namespace {

using ResponseHeaders = std::vector<std::pair<std::string, std::string>>;

enum class Route { kCall, kPublish, kSubscribe };

struct RouteSpec {
  Route route;
  absl::string_view prefix;              // "/v1/call/"
  absl::string_view method;              // "POST"
  absl::string_view label;               // the metrics' route label
  absl::string_view what;                // "calls", in messages
  std::vector<absl::string_view> query;  // accepted query parameters
};

const std::vector<RouteSpec>& Routes() {
  static const auto* routes = new std::vector<RouteSpec>{
      {Route::kCall, "/v1/call/", "POST", "call", "calls", {"timeout_ms"}},
      {Route::kPublish,
       "/v1/publish/",
       "POST",
       "publish",
       "publishes",
       {"type"}},
      {Route::kSubscribe,
       "/v1/subscribe/",
       "GET",
       "subscribe",
       "subscriptions",
       {"type"}},
  };
  return *routes;
}

constexpr absl::string_view kRoutesHelp =
    "the API serves POST /v1/call/{subject}, POST /v1/publish/{subject}, GET "
    "/v1/subscribe/{subject}, GET /healthz and GET /readyz";

// Every reason natsgw_edge_rejected_total counts; created at start so that
// each series exists (at 0) before the first refusal, as alert rules expect.
constexpr absl::string_view kReasons[] = {
    "unauthenticated", "subject_not_allowed", "body_too_large",
    "bad_request",     "too_many_streams",    "draining"};

// A request the edge refuses: the HTTP status, the canonical code of the
// error body, what to tell the caller, and the natsgw_edge_rejected_total
// reason (empty: not counted there).
struct Refusal {
  int http_status;
  absl::StatusCode code;
  std::string message;
  absl::string_view reason;
  ResponseHeaders headers;
};

Refusal BadRequest(absl::string_view message) {
  return {400,
          absl::StatusCode::kInvalidArgument,
          std::string(message),
          "bad_request",
          {}};
}

// A JSON string literal (always valid JSON: bytes that are not UTF-8 are
// replaced).
std::string JsonString(absl::string_view text) {
  return nlohmann::json(std::string(text))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string FormatMs(absl::Duration d) {
  return absl::StrFormat("%.3f", absl::ToDoubleMilliseconds(d));
}

// "<n> bytes" for messages.
std::string Bytes(size_t n) { return absl::StrCat(n, " bytes"); }

// A value fit for an HTTP response header: no control characters.
bool IsHeaderSafe(absl::string_view value) {
  for (unsigned char c : value) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

// A schema set and a table type in it.
struct TypedSet {
  std::shared_ptr<const tools::SchemaSet> set;
  std::string type;
};

// A method and the schema set that knows its types.
struct Resolved {
  std::shared_ptr<const tools::SchemaSet> set;
  tools::MethodInfo method;
};

// One cached resolution of a call subject. `result` is shared by every
// request that asked while it was being resolved (one $SRV.INFO round per
// subject at a time).
struct CacheEntry {
  std::shared_future<absl::StatusOr<Resolved>> result;
  bool ready = false;  // guarded by Impl::cache_mu_
  absl::Time expires;  // guarded by Impl::cache_mu_, once ready
  absl::Time created;  // guarded by Impl::cache_mu_; for eviction
};

// What one event stream has received and not yet written. The subscription
// handler (NATS delivery thread) fills it; the stream's HTTP worker drains
// it.
struct StreamState {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Message> queue;  // guarded by mu
  size_t queued_bytes = 0;    // guarded by mu; QueuedBytes of `queue`
  int64_t dropped = 0;        // guarded by mu; not yet reported
  bool shutdown = false;      // guarded by mu; set by Drain
};

// The socket of the connection a request came on: the descriptor whose
// local and peer ports and peer address are the request's. civetweb 1.15
// does not hand it out, and the edge needs it to bound the time a body may
// take (BodyDeadlines) and to drain a refused body without blocking.
// -1 if none matches. It walks every descriptor of the process, so it is
// only called when a socket is actually needed: a refusal, or a body
// deadline that passed.
struct ConnectionKey {
  int server_port = 0;
  int remote_port = 0;
  std::string remote_addr;

  static ConnectionKey Of(const mg_request_info& info) {
    return {info.server_port, info.remote_port, info.remote_addr};
  }
};

int FindSocket(const ConnectionKey& key) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (dirent* e = readdir(dir)) {
    int fd = -1;
    if (!absl::SimpleAtoi(e->d_name, &fd) || fd == dirfd(dir)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
        getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
      continue;
    }
    char host[INET6_ADDRSTRLEN] = {};
    int local_port = 0, peer_port = 0;
    if (peer.ss_family == AF_INET && local.ss_family == AF_INET) {
      const auto* p = reinterpret_cast<const sockaddr_in*>(&peer);
      local_port =
          ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
      peer_port = ntohs(p->sin_port);
      inet_ntop(AF_INET, &p->sin_addr, host, sizeof(host));
    } else if (peer.ss_family == AF_INET6 && local.ss_family == AF_INET6) {
      const auto* p = reinterpret_cast<const sockaddr_in6*>(&peer);
      local_port =
          ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port);
      peer_port = ntohs(p->sin6_port);
      inet_ntop(AF_INET6, &p->sin6_addr, host, sizeof(host));
    } else {
      continue;
    }
    if (local_port == key.server_port && peer_port == key.remote_port &&
        absl::string_view(host) == key.remote_addr) {
      found = fd;
      break;
    }
  }
  closedir(dir);
  return found;
}

// Ends request bodies that outlive their deadline: a body must arrive
// within read_timeout as a whole, not merely make some progress every
// read_timeout (civetweb's own limit, which a client sending a byte now and
// then never reaches). When a deadline passes, the socket's reading side is
// shut down, so the worker's blocked read returns at once and the request
// is answered (408) instead of holding the worker for as long as the client
// likes.
//
// The socket is looked up (FindSocket) only when its deadline passes, so a
// body that arrives in time costs an Arm and a Disarm and no system call.
//
// Thread-safety: every method may be called from any thread; one mutex
// guards the armed deadlines, and a socket is looked up and shut down only
// while its deadline is armed, i.e. while its request still owns the
// connection.
class BodyDeadlines {
 public:
  BodyDeadlines() : thread_([this] { Run(); }) {}
  ~BodyDeadlines() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // Arms `deadline` for the connection `key`; Disarm says whether it
  // passed.
  uint64_t Arm(ConnectionKey key, absl::Time deadline) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t id = ++next_id_;
    armed_[id] = {std::move(key), deadline, false};
    cv_.notify_all();
    return id;
  }
  bool Disarm(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = armed_.find(id);
    if (it == armed_.end()) return false;
    const bool fired = it->second.fired;
    armed_.erase(it);
    return fired;
  }

 private:
  struct Armed {
    ConnectionKey key;
    absl::Time deadline;
    bool fired;
  };

  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      absl::Time next = absl::InfiniteFuture();
      const absl::Time now = absl::Now();
      for (auto& [id, a] : armed_) {
        if (a.fired) continue;
        if (now >= a.deadline) {
          if (const int fd = FindSocket(a.key); fd >= 0) {
            ::shutdown(fd, SHUT_RD);
          }
          a.fired = true;
        } else {
          next = std::min(next, a.deadline);
        }
      }
      if (next == absl::InfiniteFuture()) {
        cv_.wait(lock);
      } else {
        cv_.wait_for(lock, absl::ToChronoNanoseconds(next - now));
      }
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Armed> armed_;  // guarded by mu_
  uint64_t next_id_ = 0;             // guarded by mu_
  bool stop_ = false;                // guarded by mu_
  std::thread thread_;               // last: started once the rest exists
};

// What a queued message costs an event stream's byte budget: its payload,
// subject and headers (the rest of Message is small and fixed).
size_t QueuedBytes(const Message& m) {
  size_t n = m.data.size() + m.subject.size() + m.message_id.size();
  for (const HeaderField& h : m.headers) n += h.key.size() + h.value.size();
  return n;
}

}  // namespace

// Thread-safety: requests run on civetweb's worker threads, concurrently.
// What they share is either fixed once Init returns (options, the loaded
// schemas, the metric pointers) or guarded: tokens by tokens_mu_, the
// count of requests in progress by drain_mu_, open streams by streams_mu_
// (and each stream's queue by its own mutex), the discovery cache by
// cache_mu_. Lock order: streams_mu_ before a stream's mutex, refresh_mu_
// before cache_mu_; no other lock is held while taking another.
class EdgeServer::Impl {
 public:
  Impl(EdgeOptions options, Connection& connection,
       std::shared_ptr<prometheus::Registry> registry)
      : options_(std::move(options)),
        conn_(connection),
        registry_(std::move(registry)),
        logger_(options_.logger != nullptr ? options_.logger
                                           : std::make_shared<NullLogger>()) {
    if (options_.tokens.has_value()) {
      tokens_ = std::make_shared<const TokenSet>(*options_.tokens);
    }
  }

  ~Impl() {
    draining_.store(true);
    WakeStreams();
    // mg_stop joins civetweb's workers: no handler runs after it. Streams
    // have been told to end; calls end within their timeouts.
    if (ctx_ != nullptr) mg_stop(ctx_);
    if (library_initialized_) mg_exit_library();
    deadlines_.reset();  // no request is left to use it
  }

  absl::Status Init() {
    NATSGW_RETURN_IF_ERROR(InitMetrics());
    absl::StatusOr<std::unique_ptr<tools::SchemaSet>> local =
        tools::SchemaSet::Load(options_.schema_paths, options_.schema_include);
    if (!local.ok()) return local.status();
    local_ = std::shared_ptr<const tools::SchemaSet>(*std::move(local));
    deadlines_ = std::make_unique<BodyDeadlines>();
    return Listen();
  }

  // ---- public API ----

  void SetTokens(TokenSet tokens) {
    auto next = std::make_shared<const TokenSet>(std::move(tokens));
    std::lock_guard<std::mutex> lock(tokens_mu_);
    tokens_ = std::move(next);
  }

  absl::Status Readiness() const {
    if (draining()) {
      return absl::UnavailableError("draining: natsgw-edge is shutting down");
    }
    return conn_.Readiness();
  }

  absl::Status Drain(absl::Duration timeout) {
    draining_.store(true);
    WakeStreams();
    std::unique_lock<std::mutex> lock(drain_mu_);
    const bool idle = drain_cv_.wait_for(
        lock, absl::ToChronoNanoseconds(timeout), [&] { return active_ == 0; });
    if (idle) return absl::OkStatus();
    return absl::DeadlineExceededError(
        absl::StrCat(active_, " HTTP requests still in progress after ",
                     absl::FormatDuration(timeout)));
  }

  bool draining() const { return draining_.load(); }
  int port() const { return port_; }
  std::string url() const {
    const std::string host = options_.listen_address == "0.0.0.0"
                                 ? std::string("127.0.0.1")
                                 : options_.listen_address;
    return absl::StrCat("http://", host, ":", port_);
  }
  std::vector<std::string> DescribeSchemas() const {
    return local_->Describe();
  }

 private:
  // ---- set-up ----

  absl::Status InitMetrics() {
    // prometheus-cpp reports conflicts by throwing; none leaves the edge.
    try {
      requests_ = &prometheus::BuildCounter()
                       .Name("natsgw_edge_http_requests_total")
                       .Help(
                           "HTTP requests to the edge's /v1 routes, by route "
                           "(call, publish, subscribe) and HTTP status code.")
                       .Register(*registry_);
      duration_ =
          &prometheus::BuildHistogram()
               .Name("natsgw_edge_http_request_duration_seconds")
               .Help(
                   "Time the edge took to answer a /v1 request, by route; "
                   "for subscribe, until the event stream was open or "
                   "refused.")
               .Register(*registry_);
      auto& rejected = prometheus::BuildCounter()
                           .Name("natsgw_edge_rejected_total")
                           .Help(
                               "Requests the edge refused before anything "
                               "reached NATS, by reason.")
                           .Register(*registry_);
      for (absl::string_view reason : kReasons) {
        rejected_[std::string(reason)] =
            &rejected.Add({{"reason", std::string(reason)}});
      }
      streams_gauge_ = &prometheus::BuildGauge()
                            .Name("natsgw_edge_sse_streams")
                            .Help("Server-sent event streams open now.")
                            .Register(*registry_)
                            .Add({});
      dropped_ = &prometheus::BuildCounter()
                      .Name("natsgw_edge_sse_dropped_total")
                      .Help(
                          "Messages dropped because an event stream's queue "
                          "was full (the client reads too slowly); each "
                          "stream is told with event: dropped.")
                      .Register(*registry_)
                      .Add({});
      for (const RouteSpec& spec : Routes()) {
        durations_[spec.route] = &duration_->Add(
            {{"route", std::string(spec.label)}},
            prometheus::Histogram::BucketBoundaries{
                1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1,
                0.25, 0.5, 1, 2.5, 5, 10, 30});
      }
    } catch (const std::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("registering natsgw-edge's metrics: ", e.what()));
    }
    return absl::OkStatus();
  }

  absl::Status Listen() {
    // Reference-counted in civetweb; MetricsServer calls it too.
    mg_init_library(0);
    library_initialized_ = true;
    const std::string listen =
        absl::StrCat(options_.listen_address, ":", options_.port);
    const std::string threads = absl::StrCat(options_.http_threads);
    const std::string timeout_ms =
        absl::StrCat(absl::ToInt64Milliseconds(options_.read_timeout));
    const char* config[] = {"listening_ports", listen.c_str(), "num_threads",
                            threads.c_str(), "request_timeout_ms",
                            timeout_ms.c_str(),
                            // One exchange per connection: a response sent
                            // before its body was read (413) can never leave
                            // the rest of that body to be parsed as the next
                            // request, and no idle connection holds a worker.
                            "enable_keep_alive", "no",
                            // The edge decodes the path itself, keeping
                            // what civetweb's C strings would cut short:
                            // "%00" must make a subject invalid, not end it.
                            "decode_url", "no", nullptr};
    mg_callbacks callbacks{};
    callbacks.log_message = [](const mg_connection* c, const char* message) {
      if (c == nullptr) return 1;
      auto* self = static_cast<Impl*>(mg_get_user_data(mg_get_context(c)));
      if (self != nullptr) self->Log(kDebugSeverity, message, {});
      return 1;  // never civetweb's own stderr output
    };
    NATSGW_ASSIGN_OR_RETURN(
        internal::StartedCivetweb started,
        internal::StartCivetweb(config, callbacks, this,
                                absl::StrCat("serve HTTP on ", listen)));
    ctx_ = started.ctx;
    port_ = started.port;
    // "/" matches every path: routing (and its 404/405) is the edge's own.
    mg_set_request_handler(ctx_, "/", &Impl::HandleThunk, this);
    return absl::OkStatus();
  }

  // ---- plumbing ----

  void Log(absl::LogSeverity severity, absl::string_view message,
           std::initializer_list<LogField> fields) {
    logger_->LogStructured(
        {.severity = severity,
         .message = message,
         .fields = std::span<const LogField>(fields.begin(), fields.size())});
  }

  // Counts a request in progress, for Drain.
  class Active {
   public:
    explicit Active(Impl& impl) : impl_(impl) {
      std::lock_guard<std::mutex> lock(impl_.drain_mu_);
      ++impl_.active_;
    }
    ~Active() {
      std::lock_guard<std::mutex> lock(impl_.drain_mu_);
      if (--impl_.active_ == 0) impl_.drain_cv_.notify_all();
    }

   private:
    Impl& impl_;
  };

  // Writes the status line and headers. Written by hand rather than with
  // mg_response_header_*: after an interim "100 Continue" went out through
  // mg_write, civetweb refuses to start a response, and the final answer
  // (a 413 for a chunked body, say) would be lost. Every response closes its
  // connection (keep-alive is off), which also delimits event streams.
  static bool WriteHead(mg_connection* c, int status,
                        const ResponseHeaders& headers) {
    std::string head =
        absl::StrCat("HTTP/1.1 ", status, " ",
                     mg_get_response_code_text(c, status), "\r\nDate: ",
                     absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT", absl::Now(),
                                      absl::UTCTimeZone()),
                     "\r\nConnection: close\r\n");
    for (const auto& [key, value] : headers) {
      absl::StrAppend(&head, key, ": ", value, "\r\n");
    }
    absl::StrAppend(&head, "\r\n");
    return Write(c, head);
  }

  static void Send(mg_connection* c, int status, absl::string_view content_type,
                   absl::string_view body,
                   const ResponseHeaders& headers = {}) {
    ResponseHeaders all = {{"Content-Type", std::string(content_type)},
                           {"Cache-Control", "no-store"},
                           {"Content-Length", absl::StrCat(body.size())}};
    all.insert(all.end(), headers.begin(), headers.end());
    if (!WriteHead(c, status, all)) return;
    if (absl::string_view(mg_get_request_info(c)->request_method) != "HEAD") {
      Write(c, body);
    }
  }

  void Record(Route route, int status, absl::Time start) {
    const RouteSpec& spec = SpecOf(route);
    try {
      requests_
          ->Add({{"route", std::string(spec.label)},
                 {"code", absl::StrCat(status)}})
          .Increment();
    } catch (const std::exception&) {
      // Cannot happen with these fixed label names; never thrown onwards.
    }
    durations_.at(route)->Observe(absl::ToDoubleSeconds(absl::Now() - start));
  }

  static const RouteSpec& SpecOf(Route route) {
    for (const RouteSpec& spec : Routes()) {
      if (spec.route == route) return spec;
    }
    return Routes().front();
  }

  int Refuse(mg_connection* c, Route route, absl::Time start, const Refusal& r,
             absl::string_view trace_id = {}) {
    if (!r.reason.empty()) {
      auto it = rejected_.find(std::string(r.reason));
      if (it != rejected_.end()) it->second->Increment();
    }
    const mg_request_info* info = mg_get_request_info(c);
    const std::string status = absl::StrCat(r.http_status);
    // Refusals and the services' own errors are the callers' business (and
    // an outage must not flood the log); only the edge's failures warn.
    Log(r.http_status == 500 ? absl::LogSeverity::kWarning : kDebugSeverity,
        r.reason.empty() ? "request failed" : "request refused",
        {{"route", SpecOf(route).label},
         {"status", status},
         {"reason", r.reason},
         {"remote", info->remote_addr},
         {"error", r.message}});
    Send(c, r.http_status, "application/json",
         ErrorBody(r.code, r.message, trace_id), r.headers);
    Record(route, r.http_status, start);
    return r.http_status;
  }

  // ---- routing ----

  static int HandleThunk(mg_connection* c, void* data) {
    return static_cast<Impl*>(data)->Handle(c);
  }

  int Handle(mg_connection* c) {
    Active active(*this);
    continue_sent_ = false;
    body_complete_ = false;
    const int status = Dispatch(c);
    FinishRequestBody(c);
    return status;
  }

  int Dispatch(mg_connection* c) {
    const mg_request_info* info = mg_get_request_info(c);
    const absl::string_view method = info->request_method;
    const absl::string_view path =
        info->local_uri_raw != nullptr ? info->local_uri_raw : "";
    if (path == "/healthz" || path == "/readyz") {
      if (method != "GET" && method != "HEAD") {
        Send(c, 405, "application/json",
             ErrorBody(absl::StatusCode::kInvalidArgument,
                       absl::StrCat(method, " ", path,
                                    ": only GET and HEAD are served here")),
             {{"Allow", "GET, HEAD"}});
        return 405;
      }
      return path == "/healthz" ? ServeHealth(c) : ServeReadiness(c);
    }
    for (const RouteSpec& spec : Routes()) {
      absl::string_view bare = spec.prefix.substr(0, spec.prefix.size() - 1);
      if (absl::StartsWith(path, spec.prefix) || path == bare) {
        const std::string subject =
            path.size() > spec.prefix.size()
                ? UrlDecode(path.substr(spec.prefix.size()))
                : std::string();
        return HandleRoute(c, spec, subject);
      }
    }
    Send(c, 404, "application/json",
         ErrorBody(absl::StatusCode::kNotFound,
                   absl::StrCat("no route for ", method, " ",
                                absl::CHexEscape(path.substr(0, 200)), ": ",
                                kRoutesHelp)));
    return 404;
  }

  // %XX escapes decoded ('+' stays a plus: this is a path). Bytes that are
  // not allowed in a subject (NUL, CR, LF, space, ...) survive decoding, so
  // the subject rules refuse them.
  static std::string UrlDecode(absl::string_view in) {
    std::string out(in.size() + 1, '\0');
    const int n = mg_url_decode(in.data(), static_cast<int>(in.size()),
                                out.data(), static_cast<int>(out.size()),
                                /*is_form_url_encoded=*/0);
    out.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return out;
  }

  // Deals with what is left of a request body once the response is out.
  // A refused request's body is never read through civetweb (whose reads
  // wait as long as a client keeps sending a byte now and then): the
  // connection closes right after the response. Closing a socket with unread
  // input makes the kernel reset the connection, and a client still
  // sending may then lose the response it was sent (a 401, a 413, ...); so
  // the response is followed by a FIN, and what the client sends meanwhile
  // is read and dropped straight from the socket for at most
  // kLingerTime and kLingerBytes, whatever the client does. A client
  // waiting for a "100 Continue" that never came will not send the body:
  // its connection closes at once.
  void FinishRequestBody(mg_connection* c) {
    static constexpr absl::Duration kLingerTime = absl::Seconds(1);
    static constexpr size_t kLingerBytes = 64 << 10;
    if (body_complete_) return;
    const mg_request_info* info = mg_get_request_info(c);
    const char* transfer = mg_get_header(c, "Transfer-Encoding");
    const bool chunked =
        transfer != nullptr &&
        absl::StrContains(absl::AsciiStrToLower(transfer), "chunked");
    if (info->content_length <= 0 && !chunked) return;
    const char* expect = mg_get_header(c, "Expect");
    const bool awaits_continue =
        expect != nullptr && absl::EqualsIgnoreCase(expect, "100-continue") &&
        !continue_sent_;
    const int fd = awaits_continue || info->is_ssl
                       ? -1
                       : FindSocket(ConnectionKey::Of(*info));
    if (fd >= 0 && ::shutdown(fd, SHUT_WR) == 0) {
      const absl::Time deadline = absl::Now() + kLingerTime;
      char buffer[16384];
      size_t drained = 0;
      while (drained < kLingerBytes) {
        const absl::Duration left = deadline - absl::Now();
        if (left <= absl::ZeroDuration()) break;
        pollfd p{fd, POLLIN, 0};
        const int ready = ::poll(
            &p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
        if (ready <= 0) break;
        const ssize_t n =
            ::recv(fd, buffer, std::min(sizeof(buffer), kLingerBytes - drained),
                   MSG_DONTWAIT);
        if (n <= 0) break;  // the client closed (or reset): done
        drained += static_cast<size_t>(n);
      }
    }
    CloseAfterResponse(c);
  }

  // Makes civetweb close the connection right after this request instead
  // of reading the rest of its body first (it would, for up to read_timeout
  // per read, however long the body). civetweb 1.15 has no call for that;
  // its error reply for a status without a body does exactly that and, the
  // response having been written already, writes nothing more.
  // edge_server_test's hostile requests check that it stays so.
  static void CloseAfterResponse(mg_connection* c) {
    mg_send_http_error(c, 304, "%s", "");
  }

  int ServeHealth(mg_connection* c) {
    Send(c, 200, "application/json", "{\"status\":\"ok\"}\n");
    return 200;
  }

  int ServeReadiness(mg_connection* c) {
    const absl::Status nats = conn_.Readiness();
    const bool ready = nats.ok() && !draining();
    nlohmann::json body;
    body["status"] = ready ? "ready" : "not ready";
    if (draining()) body["draining"] = true;
    body["checks"]["nats"] = nats.ok() ? "ok" : nats.ToString();
    const int status = ready ? 200 : 503;
    Send(c, status, "application/json",
         body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
             "\n");
    return status;
  }

  // The checks every /v1 route shares, in the documented order; then the
  // route's own handler.
  int HandleRoute(mg_connection* c, const RouteSpec& spec,
                  absl::string_view subject) {
    const absl::Time start = absl::Now();
    const mg_request_info* info = mg_get_request_info(c);
    const absl::string_view method = info->request_method;
    if (method != spec.method) {
      return Refuse(c, spec.route, start,
                    {405,
                     absl::StatusCode::kInvalidArgument,
                     absl::StrCat(method, " is not served on ", spec.prefix,
                                  "{subject}; use ", spec.method),
                     "",
                     {{"Allow", std::string(spec.method)}}});
    }
    if (draining()) {
      return Refuse(c, spec.route, start,
                    {503,
                     absl::StatusCode::kUnavailable,
                     "natsgw-edge is draining (shutting down): retry on "
                     "another instance",
                     "draining",
                     {}});
    }
    if (std::optional<Refusal> r = Authenticate(c); r.has_value()) {
      return Refuse(c, spec.route, start, *r);
    }
    absl::StatusOr<std::vector<QueryParam>> query = ParseQuery(
        info->query_string != nullptr ? info->query_string : "", spec.query);
    if (!query.ok()) {
      return Refuse(c, spec.route, start, BadRequest(query.status().message()));
    }
    std::vector<HttpHeader> http_headers;
    http_headers.reserve(info->num_headers);
    for (int i = 0; i < info->num_headers; ++i) {
      http_headers.push_back(
          {info->http_headers[i].name, info->http_headers[i].value});
    }
    absl::StatusOr<Headers> headers = TranslateHeaders(http_headers);
    if (!headers.ok()) {
      return Refuse(c, spec.route, start,
                    BadRequest(headers.status().message()));
    }
    if (subject.empty()) {
      return Refuse(
          c, spec.route, start,
          BadRequest(absl::StrCat("no subject: the route is ", spec.method, " ",
                                  spec.prefix, "{subject}")));
    }
    const absl::Status valid = spec.route == Route::kSubscribe
                                   ? ValidateSubscribeSubject(subject)
                                   : ValidatePublishSubject(subject);
    if (!valid.ok()) {
      return Refuse(c, spec.route, start, BadRequest(valid.message()));
    }
    if (IsReservedSubject(subject)) {
      return Refuse(
          c, spec.route, start,
          {403,
           absl::StatusCode::kPermissionDenied,
           absl::StrCat("subject \"", subject,
                        "\" is reserved ($-prefixed subjects and _INBOX "
                        "belong to NATS and its clients): never reachable "
                        "through the edge"),
           "subject_not_allowed",
           {}});
    }
    const SubjectAllowList& allow =
        spec.route == Route::kCall      ? options_.allow_call
        : spec.route == Route::kPublish ? options_.allow_publish
                                        : options_.allow_subscribe;
    std::optional<std::string> pattern = allow.Match(subject);
    if (!pattern.has_value()) {
      return Refuse(
          c, spec.route, start,
          {403,
           absl::StatusCode::kPermissionDenied,
           absl::StrCat("subject \"", subject, "\" is not allowed for ",
                        spec.what, " on this edge"),
           "subject_not_allowed",
           {}});
    }
    const auto param = [&](absl::string_view name) -> std::string {
      for (const QueryParam& p : *query) {
        if (p.name == name) return p.value;
      }
      return "";
    };
    switch (spec.route) {
      case Route::kCall:
        return HandleCall(c, start, subject, *pattern, param("timeout_ms"),
                          *std::move(headers));
      case Route::kPublish:
        return HandlePublish(c, start, subject, *pattern, param("type"),
                             *std::move(headers));
      case Route::kSubscribe:
        return HandleSubscribe(c, start, subject, *pattern, param("type"));
    }
    return 500;
  }

  std::optional<Refusal> Authenticate(mg_connection* c) {
    std::shared_ptr<const TokenSet> tokens;
    {
      std::lock_guard<std::mutex> lock(tokens_mu_);
      tokens = tokens_;
    }
    if (tokens == nullptr) return std::nullopt;  // allow_unauthenticated
    const char* authorization = mg_get_header(c, "Authorization");
    if (authorization == nullptr) {
      return Refusal{401,
                     absl::StatusCode::kUnauthenticated,
                     "a bearer token is required: send Authorization: Bearer "
                     "<token>",
                     "unauthenticated",
                     {{"WWW-Authenticate", "Bearer realm=\"natsgw-edge\""}}};
    }
    std::optional<absl::string_view> token = BearerToken(authorization);
    if (!token.has_value() || !tokens->Contains(*token)) {
      return Refusal{
          401,
          absl::StatusCode::kUnauthenticated,
          "the bearer token is not valid",
          "unauthenticated",
          {{"WWW-Authenticate",
            "Bearer realm=\"natsgw-edge\", error=\"invalid_token\""}}};
    }
    return std::nullopt;
  }

  // The trace to continue: the caller's valid W3C traceparent (with its
  // tracestate), else a new root (W3C: an invalid traceparent restarts the
  // trace; it is no reason to refuse the request).
  std::pair<TraceContext, bool> IncomingTrace(mg_connection* c) {
    const char* traceparent = mg_get_header(c, "traceparent");
    if (traceparent == nullptr) return {TraceContext::NewRoot(), true};
    const char* tracestate = mg_get_header(c, "tracestate");
    absl::StatusOr<TraceContext> parsed = TraceContext::Parse(
        traceparent, tracestate != nullptr ? tracestate : "");
    if (parsed.ok()) return {*std::move(parsed), false};
    Log(kDebugSeverity, "invalid traceparent from HTTP: starting a new trace",
        {{"error", parsed.status().message()}});
    return {TraceContext::NewRoot(), true};
  }

  // Reads a JSON body within max_body_bytes, or says why not (415, 413,
  // 400).
  std::optional<Refusal> ReadJsonBody(mg_connection* c, absl::Time start,
                                      std::string* body) {
    const char* content_type = mg_get_header(c, "Content-Type");
    if (content_type == nullptr || !IsJsonContentType(content_type)) {
      return Refusal{
          415,
          absl::StatusCode::kInvalidArgument,
          absl::StrCat(
              "Content-Type must be application/json, not ",
              content_type == nullptr
                  ? std::string("missing")
                  : absl::StrCat("\"", absl::CHexEscape(content_type), "\"")),
          "bad_request",
          {}};
    }
    const size_t limit = options_.max_body_bytes;
    const long long declared = mg_get_request_info(c)->content_length;
    auto too_large = [&](absl::string_view what) {
      return Refusal{413,
                     absl::StatusCode::kInvalidArgument,
                     absl::StrCat(what, "; the limit is ", Bytes(limit)),
                     "body_too_large",
                     {}};
    };
    if (declared > static_cast<long long>(limit)) {
      // Refused before reading: the client is not made to send it.
      return too_large(absl::StrCat("the body has ", Bytes(declared)));
    }
    const char* transfer = mg_get_header(c, "Transfer-Encoding");
    const bool chunked =
        transfer != nullptr &&
        absl::StrContains(absl::AsciiStrToLower(transfer), "chunked");
    if (declared < 0 && !chunked) {
      body->clear();  // no Content-Length, not chunked: no body (RFC 9112)
      return std::nullopt;
    }
    const char* expect = mg_get_header(c, "Expect");
    if (expect != nullptr && absl::EqualsIgnoreCase(expect, "100-continue")) {
      // civetweb answers Expect itself only for the files it serves.
      static constexpr absl::string_view kContinue =
          "HTTP/1.1 100 Continue\r\n\r\n";
      mg_write(c, kContinue.data(), kContinue.size());
      continue_sent_ = true;
    }
    body->clear();
    if (declared > 0) body->reserve(static_cast<size_t>(declared));
    // The whole body within read_timeout: see BodyDeadlines.
    const mg_request_info* info = mg_get_request_info(c);
    struct Deadline {
      BodyDeadlines& deadlines;
      uint64_t id = 0;
      bool fired = false;
      bool Disarm() {
        if (id != 0) fired = deadlines.Disarm(id) || fired;
        id = 0;
        return fired;
      }
      ~Deadline() { Disarm(); }
    } deadline{*deadlines_};
    if (!info->is_ssl) {
      deadline.id = deadlines_->Arm(ConnectionKey::Of(*info),
                                    start + options_.read_timeout);
    }
    char buffer[16384];
    bool failed = false;
    while (true) {
      const int n = mg_read(c, buffer, sizeof(buffer));
      if (n == 0) break;
      if (n < 0) {
        failed = true;
        break;
      }
      if (body->size() + static_cast<size_t>(n) > limit) {
        return too_large(absl::StrCat("the body has more than ", Bytes(limit)));
      }
      body->append(buffer, static_cast<size_t>(n));
    }
    if (deadline.Disarm()) {
      return Refusal{408,
                     absl::StatusCode::kDeadlineExceeded,
                     absl::StrCat("the request body did not arrive within ",
                                  absl::FormatDuration(options_.read_timeout),
                                  " (", Bytes(body->size()), " received)"),
                     "bad_request",
                     {}};
    }
    if (failed ||
        (declared >= 0 && body->size() != static_cast<size_t>(declared))) {
      return BadRequest(
          "the request body could not be read (the client "
          "stopped sending, or sent malformed chunks)");
    }
    body_complete_ = true;
    return std::nullopt;
  }

  // ---- POST /v1/call/{subject} ----

  int HandleCall(mg_connection* c, absl::Time start, absl::string_view subject,
                 const std::string& pattern, absl::string_view timeout_ms,
                 Headers headers) {
    absl::StatusOr<absl::Duration> timeout =
        ParseTimeoutMs(timeout_ms, options_.timeout, options_.max_timeout);
    if (!timeout.ok()) {
      return Refuse(c, Route::kCall, start,
                    BadRequest(timeout.status().message()));
    }
    std::string body;
    if (std::optional<Refusal> r = ReadJsonBody(c, start, &body);
        r.has_value()) {
      return Refuse(c, Route::kCall, start, *r);
    }
    absl::StatusOr<Resolved> resolved = Resolve(subject);
    if (!resolved.ok()) {
      return Refuse(c, Route::kCall, start,
                    {HttpStatusForCode(resolved.status().code()),
                     resolved.status().code(),
                     std::string(resolved.status().message()),
                     "",
                     {}});
    }
    const tools::MethodInfo& m = resolved->method;
    absl::StatusOr<std::string> request =
        resolved->set->JsonToBinary(m.request_type, body, m.file_identifier);
    if (!request.ok()) {
      return Refuse(c, Route::kCall, start,
                    BadRequest(absl::StrCat("request body: ",
                                            request.status().message())));
    }
    auto [trace, new_root] = IncomingTrace(c);
    RequestOptions options;
    options.headers = std::move(headers);
    options.trace = trace;
    options.trace_is_new_root = new_root;
    // The allow-list pattern, not the subject: bounded label values.
    options.metric_subject = pattern;
    options.rpc_method = m.service.empty()
                             ? std::string(subject)
                             : absl::StrCat(m.service, "/", m.method);
    std::optional<SendInfo> sent;
    const absl::Time sent_at = absl::Now();
    absl::StatusOr<Message> reply =
        conn_.Request(subject, *request, *timeout, options, &sent);
    const absl::Duration nats = absl::Now() - sent_at;
    ResponseHeaders response;
    std::string trace_id;
    if (sent.has_value()) {
      trace_id = sent->trace.TraceIdHex();
      response.emplace_back("traceparent", sent->trace.ToTraceParent());
      response.emplace_back("Natsgw-Trace-Id", trace_id);
    } else if (std::optional<std::string> id =
                   TraceIdFromStatus(reply.status());
               id.has_value()) {
      trace_id = *id;
    }
    if (!reply.ok()) {
      const absl::Status& s = reply.status();
      Refusal error{HttpStatusForCode(s.code()), s.code(),
                    std::string(s.message()), "", std::move(response)};
      error.headers.emplace_back("Server-Timing",
                                 absl::StrCat("nats;dur=", FormatMs(nats)));
      return Refuse(c, Route::kCall, start, error, trace_id);
    }
    tools::JsonOptions json_options;
    json_options.compact = true;
    // A method's payloads carry its service's identifier, which differs from
    // the type's own when the type comes from an included schema.
    tools::VerifyOptions verify;
    verify.file_identifier = m.file_identifier;
    absl::StatusOr<std::string> json = resolved->set->BinaryToJson(
        m.response_type, reply->data, verify, json_options);
    if (!json.ok()) {
      return Refuse(
          c, Route::kCall, start,
          {500, absl::StatusCode::kInternal,
           absl::StrCat("the reply on ", subject, " is not a valid ",
                        m.response_type, ": ", json.status().message()),
           "", std::move(response)},
          trace_id);
    }
    // The reply's application headers, as the request's came in.
    for (const HeaderField& h : reply->headers) {
      if (IsReservedHeader(h.key) ||
          absl::StartsWithIgnoreCase(h.key, "Nats-") ||
          !ValidateHeaderKey(h.key).ok() || !IsHeaderSafe(h.value)) {
        continue;
      }
      response.emplace_back(absl::StrCat(kHeaderPrefix, h.key), h.value);
    }
    response.emplace_back(
        "Server-Timing",
        absl::StrCat("nats;dur=", FormatMs(nats),
                     ", edge;dur=", FormatMs(absl::Now() - start)));
    Send(c, 200, "application/json", *json + "\n", response);
    Record(Route::kCall, 200, start);
    return 200;
  }

  // ---- POST /v1/publish/{subject} ----

  int HandlePublish(mg_connection* c, absl::Time start,
                    absl::string_view subject, const std::string& pattern,
                    absl::string_view type, Headers headers) {
    std::string body;
    if (std::optional<Refusal> r = ReadJsonBody(c, start, &body);
        r.has_value()) {
      return Refuse(c, Route::kPublish, start, *r);
    }
    absl::StatusOr<TypedSet> event = EventType(subject, type);
    if (!event.ok()) {
      const absl::StatusCode code = event.status().code();
      return Refuse(
          c, Route::kPublish, start,
          {HttpStatusForCode(code),
           code,
           std::string(event.status().message()),
           code == absl::StatusCode::kInvalidArgument ? "bad_request" : "",
           {}});
    }
    absl::StatusOr<std::string> data =
        event->set->JsonToBinary(event->type, body);
    if (!data.ok()) {
      return Refuse(
          c, Route::kPublish, start,
          BadRequest(absl::StrCat("request body: ", data.status().message())));
    }
    auto [trace, new_root] = IncomingTrace(c);
    PublishOptions options;
    options.headers = std::move(headers);
    options.trace = trace;
    options.trace_is_new_root = new_root;
    options.metric_subject = pattern;
    absl::StatusOr<SendInfo> sent = conn_.Publish(subject, *data, options);
    if (!sent.ok()) {
      const absl::Status& s = sent.status();
      return Refuse(c, Route::kPublish, start,
                    {HttpStatusForCode(s.code()),
                     s.code(),
                     std::string(s.message()),
                     "",
                     {}},
                    TraceIdFromStatus(s).value_or(""));
    }
    const std::string trace_id = sent->trace.TraceIdHex();
    const std::string answer = absl::StrCat(
        "{\"trace_id\":", JsonString(trace_id),
        ",\"message_id\":", JsonString(sent->message_id.view()), "}\n");
    Send(c, 202, "application/json", answer,
         {{"traceparent", sent->trace.ToTraceParent()},
          {"Natsgw-Trace-Id", trace_id}});
    Record(Route::kPublish, 202, start);
    return 202;
  }

  // ---- GET /v1/subscribe/{subject} ----

  int HandleSubscribe(mg_connection* c, absl::Time start,
                      absl::string_view subject, const std::string& pattern,
                      absl::string_view type) {
    if (!type.empty()) {
      if (absl::StatusOr<TypedSet> t = FindTable(type); !t.ok()) {
        return Refuse(c, Route::kSubscribe, start,
                      BadRequest(t.status().message()));
      }
    }
    auto state = std::make_shared<StreamState>();
    std::optional<Refusal> refusal;
    {
      std::lock_guard<std::mutex> lock(streams_mu_);
      // Checked again under the lock: a drain that began after the first
      // check has already told every stream in the set to end.
      if (draining()) {
        refusal = Refusal{503,
                          absl::StatusCode::kUnavailable,
                          "natsgw-edge is draining (shutting down): retry on "
                          "another instance",
                          "draining",
                          {}};
      } else if (static_cast<int>(streams_.size()) >= options_.max_streams) {
        refusal =
            Refusal{429,
                    absl::StatusCode::kResourceExhausted,
                    absl::StrCat("this edge already serves its maximum of ",
                                 options_.max_streams, " event streams"),
                    "too_many_streams",
                    {{"Retry-After", "1"}}};
      } else {
        streams_.insert(state.get());
        streams_gauge_->Increment();
      }
    }
    // Answered outside the lock: a slow client must not hold up Drain.
    if (refusal.has_value()) {
      return Refuse(c, Route::kSubscribe, start, *refusal);
    }
    // Leaves the set however the stream ends.
    struct Leave {
      Impl& impl;
      StreamState* state;
      ~Leave() {
        std::lock_guard<std::mutex> lock(impl.streams_mu_);
        impl.streams_.erase(state);
        impl.streams_gauge_->Decrement();
      }
    } leave{*this, state.get()};

    SubscribeOptions subscribe;
    subscribe.metric_subject = pattern;
    const size_t capacity = static_cast<size_t>(options_.sse_queue);
    const size_t byte_budget = options_.sse_queue_bytes;
    prometheus::Counter* dropped_total = dropped_;
    std::shared_ptr<Logger> logger = logger_;
    absl::StatusOr<std::unique_ptr<Subscription>> sub = conn_.Subscribe(
        subject, "",
        [state, capacity, byte_budget, dropped_total, logger,
         requested = std::string(subject)](const Message& m) {
          // A wildcard may match what NATS and its clients keep for
          // themselves (replies in _INBOX, $JS API traffic): never sent on.
          if (IsReservedSubject(m.subject)) return;
          // NATS hands a message to a subscription under the subject it was
          // published to, not the one the subscription matched: a JetStream
          // push consumer's deliveries to a subject this pattern matches
          // ("*.*" matching another client's deliver subject) arrive as
          // "users.events.UserRegistered", which neither the pattern nor
          // the allow-list granted. Only what the pattern covers is sent on.
          if (!PatternCovers(requested, m.subject)) {
            logger->LogStructured(
                {.severity = kDebugSeverity,
                 .message = "dropped a message outside the stream's subject "
                            "(a delivery to another client's consumer)",
                 .fields = {}});
            return;
          }
          const size_t bytes = QueuedBytes(m);
          std::lock_guard<std::mutex> lock(state->mu);
          if (state->queue.size() >= capacity ||
              state->queued_bytes + bytes > byte_budget) {
            ++state->dropped;
            dropped_total->Increment();
            return;
          }
          state->queue.push_back(m);
          state->queued_bytes += bytes;
          state->cv.notify_one();
        },
        subscribe);
    if (!sub.ok()) {
      const absl::Status& s = sub.status();
      return Refuse(c, Route::kSubscribe, start,
                    {HttpStatusForCode(s.code()),
                     s.code(),
                     std::string(s.message()),
                     "",
                     {}});
    }
    // X-Accel-Buffering: nginx-style proxies must not buffer the stream.
    bool open = WriteHead(c, 200,
                          {{"Content-Type", "text/event-stream"},
                           {"Cache-Control", "no-store"},
                           {"X-Accel-Buffering", "no"}});
    Record(Route::kSubscribe, 200, start);
    // The subscription is registered with the server: say so, so a client
    // knows that what is published from now on reaches it.
    open = open && Write(c, absl::StrCat(": subscribed to ", subject, "\n\n"));

    // Decoding: one type for the stream (?type=) or one per subject.
    std::map<std::string, absl::StatusOr<TypedSet>> types;
    int64_t dropped_total_here = 0;
    while (open) {
      std::deque<Message> batch;
      int64_t dropped = 0;
      bool shutdown = false;
      {
        std::unique_lock<std::mutex> lock(state->mu);
        state->cv.wait_for(
            lock, absl::ToChronoNanoseconds(options_.sse_keepalive), [&] {
              return !state->queue.empty() || state->dropped > 0 ||
                     state->shutdown;
            });
        batch.swap(state->queue);
        state->queued_bytes = 0;
        dropped = state->dropped;
        state->dropped = 0;
        shutdown = state->shutdown;
      }
      for (const Message& m : batch) {
        if (!open) break;
        auto it = types.find(m.subject);
        if (it == types.end()) {
          if (types.size() >= 256) types.clear();  // bounded
          it = types.emplace(m.subject, EventType(m.subject, type)).first;
        }
        open = Write(c, EventText(m, it->second));
      }
      if (open && dropped > 0) {
        dropped_total_here += dropped;
        open = Write(
            c, absl::StrCat("event: dropped\ndata: {\"dropped\":", dropped,
                            ",\"total\":", dropped_total_here, "}\n\n"));
      }
      if (open && shutdown) {
        Write(c, "event: shutdown\ndata: {\"reason\":\"draining\"}\n\n");
        break;
      }
      if (open && batch.empty() && dropped == 0) {
        open = Write(c, ": keepalive\n\n");
      }
    }
    // Ends delivery and waits for a handler call in progress.
    (*sub)->Unsubscribe().IgnoreError();
    return 200;
  }

  static bool Write(mg_connection* c, absl::string_view text) {
    return mg_write(c, text.data(), text.size()) ==
           static_cast<int>(text.size());
  }

  // One message as a server-sent event. The data is one line of JSON:
  // {"subject","trace_id","message_id","latency_us","type","data"}, with
  // "data" the decoded message, or null with "error" and "data_base64" when
  // it does not decode.
  std::string EventText(const Message& m,
                        const absl::StatusOr<TypedSet>& type) {
    std::string data = absl::StrCat(
        "{\"subject\":", JsonString(m.subject),
        ",\"trace_id\":", JsonString(m.trace.TraceIdHex()),
        ",\"message_id\":", JsonString(m.message_id), ",\"latency_us\":");
    if (m.sent_at.has_value()) {
      absl::StrAppend(
          &data, std::max<int64_t>(
                     0, absl::ToInt64Microseconds(m.received_at - *m.sent_at)));
    } else {
      absl::StrAppend(&data, "null");
    }
    absl::Status error;
    if (type.ok()) {
      absl::StrAppend(&data, ",\"type\":", JsonString(type->type));
      tools::JsonOptions json_options;
      json_options.compact = true;
      absl::StatusOr<std::string> json = type->set->BinaryToJson(
          type->type, m.data, tools::VerifyOptions{}, json_options);
      if (json.ok()) {
        absl::StrAppend(&data, ",\"data\":", absl::StripAsciiWhitespace(*json),
                        "}");
      } else {
        error = json.status();
      }
    } else {
      error = type.status();
    }
    if (!error.ok()) {
      absl::StrAppend(
          &data, ",\"data\":null,\"error\":", JsonString(error.ToString()),
          ",\"data_base64\":", JsonString(absl::Base64Escape(m.data)), "}");
    }
    std::string text;
    // SSE fields end at a line break: an ID with one is left out.
    if (!m.message_id.empty() &&
        m.message_id.find_first_of("\r\n") == std::string::npos) {
      absl::StrAppend(&text, "id: ", m.message_id, "\n");
    }
    absl::StrAppend(&text, "event: message\n");
    // Compact JSON has no line breaks; if a decoder ever left one, each
    // line becomes a data field and the client joins them back.
    for (absl::string_view line : absl::StrSplit(data, '\n')) {
      absl::StrAppend(&text, "data: ", line, "\n");
    }
    absl::StrAppend(&text, "\n");
    return text;
  }

  void WakeStreams() {
    std::lock_guard<std::mutex> lock(streams_mu_);
    for (StreamState* s : streams_) {
      std::lock_guard<std::mutex> state_lock(s->mu);
      s->shutdown = true;
      s->cv.notify_all();
    }
  }

  // ---- schemas ----

  // Every schema set found through discovery so far, newest last.
  std::vector<std::shared_ptr<const tools::SchemaSet>> DiscoveredSets() {
    std::vector<std::shared_ptr<const tools::SchemaSet>> out;
    std::lock_guard<std::mutex> lock(cache_mu_);
    for (const auto& [subject, entry] : cache_) {
      if (!entry->ready) continue;
      const absl::StatusOr<Resolved>& r = entry->result.get();
      if (r.ok()) out.push_back(r->set);
    }
    out.insert(out.end(), service_sets_.begin(), service_sets_.end());
    return out;
  }

  // The method served on `subject`: a loaded schema's rpc_service first,
  // else $SRV.INFO discovery (tools::ResolveMethod), remembered for
  // resolve_ttl (a failure for at most a second). Requests for a subject
  // being resolved share that resolution; at most one discovery runs at a
  // time (Discover), so however many subjects an allow-list pattern admits,
  // callers can make the edge ask $SRV.INFO at most once per discovery_wait.
  absl::StatusOr<Resolved> Resolve(absl::string_view subject) {
    if (absl::StatusOr<tools::MethodInfo> m = local_->MethodForSubject(subject);
        m.ok()) {
      return Resolved{local_, *std::move(m)};
    }
    std::shared_ptr<CacheEntry> entry;
    std::promise<absl::StatusOr<Resolved>> promise;
    bool mine = false;
    {
      std::lock_guard<std::mutex> lock(cache_mu_);
      const absl::Time now = absl::Now();
      auto it = cache_.find(std::string(subject));
      if (it != cache_.end() &&
          (!it->second->ready || now < it->second->expires)) {
        entry = it->second;
      } else {
        if (it == cache_.end() && cache_.size() >= kMaxCacheEntries) {
          EvictLocked(now);
        }
        entry = std::make_shared<CacheEntry>();
        entry->result = promise.get_future().share();
        entry->created = now;
        mine = true;
        cache_[std::string(subject)] = entry;
      }
    }
    if (!mine) return entry->result.get();
    absl::StatusOr<Resolved> result = Discover(subject);
    promise.set_value(result);
    {
      std::lock_guard<std::mutex> lock(cache_mu_);
      entry->ready = true;
      entry->expires =
          absl::Now() +
          (result.ok() ? options_.resolve_ttl
                       : std::min(options_.resolve_ttl, absl::Seconds(1)));
    }
    return result;
  }

  // Makes room in a full cache: expired entries go, and if none had, the
  // oldest finished one (a subject resolved again later is simply
  // discovered again). Entries still being resolved stay: their requests
  // wait for them.
  void EvictLocked(absl::Time now) {
    auto oldest = cache_.end();
    for (auto e = cache_.begin(); e != cache_.end();) {
      if (e->second->ready && now >= e->second->expires) {
        e = cache_.erase(e);
        continue;
      }
      if (e->second->ready && (oldest == cache_.end() ||
                               e->second->created < oldest->second->created)) {
        oldest = e;
      }
      ++e;
    }
    if (cache_.size() >= kMaxCacheEntries && oldest != cache_.end()) {
      cache_.erase(oldest);
    }
  }

  // One $SRV.INFO resolution. Discovered schemas go into a set of their own,
  // built without reading a file (the loaded schemas were already asked,
  // and a service's schema must not change what they mean). One discovery
  // at a time: a request that finds another one running waits for it (its
  // subject may be the one that gets settled, and discovery costs the bus
  // and the services a $SRV.INFO round), and gives up with UNAVAILABLE when
  // discoveries keep it waiting longer than two rounds.
  absl::StatusOr<Resolved> Discover(absl::string_view subject) {
    {
      std::unique_lock<std::mutex> lock(discovery_mu_);
      const bool free = discovery_cv_.wait_for(
          lock,
          absl::ToChronoNanoseconds(2 * options_.discovery_wait +
                                    absl::Seconds(1)),
          [&] { return !discovering_; });
      if (!free) {
        return absl::UnavailableError(absl::StrCat(
            "natsgw-edge is busy resolving other subjects through $SRV.INFO; "
            "retry, or load the schema serving ",
            subject, " with --schema"));
      }
      discovering_ = true;
    }
    struct Done {
      Impl& impl;
      ~Done() {
        std::lock_guard<std::mutex> lock(impl.discovery_mu_);
        impl.discovering_ = false;
        impl.discovery_cv_.notify_one();
      }
    } done{*this};
    absl::StatusOr<std::unique_ptr<tools::SchemaSet>> scratch =
        tools::SchemaSet::Load({});
    if (!scratch.ok()) return scratch.status();
    absl::StatusOr<tools::MethodInfo> m = tools::ResolveMethod(
        conn_, **scratch, subject, options_.discovery_wait);
    if (!m.ok()) return m.status();
    return Resolved{
        std::shared_ptr<const tools::SchemaSet>(*std::move(scratch)),
        *std::move(m)};
  }

  // The binary schemas every running service announces (service metadata
  // fbs.bfbs), fetched at most once per resolve_ttl; for events, whose
  // types no method resolution may have brought in yet.
  void RefreshServiceSchemas() {
    std::lock_guard<std::mutex> refresh(refresh_mu_);
    {
      std::lock_guard<std::mutex> lock(cache_mu_);
      if (absl::Now() < service_sets_expire_) return;
    }
    std::vector<std::shared_ptr<const tools::SchemaSet>> sets;
    tools::DiscoverOptions discover;
    discover.wait = options_.discovery_wait;
    absl::StatusOr<std::vector<tools::ServiceInfo>> infos =
        tools::DiscoverInfo(conn_, discover);
    if (infos.ok()) {
      for (const tools::AnnouncedSchema& schema :
           tools::AnnouncedSchemas(*infos)) {
        absl::StatusOr<std::unique_ptr<tools::SchemaSet>> set =
            tools::SchemaSet::Load({});
        if (!set.ok() ||
            !(*set)
                 ->AddBinarySchema(
                     schema.bfbs, absl::StrCat("$SRV.INFO of ", schema.service))
                 .ok()) {
          continue;
        }
        sets.push_back(
            std::shared_ptr<const tools::SchemaSet>(*std::move(set)));
      }
    }
    std::lock_guard<std::mutex> lock(cache_mu_);
    service_sets_ = std::move(sets);
    service_sets_expire_ = absl::Now() + options_.resolve_ttl;
  }

  // The set that defines table `type`: the loaded schemas, then those found
  // through discovery.
  absl::StatusOr<TypedSet> FindTable(absl::string_view type) {
    if (local_->HasTable(type)) return TypedSet{local_, std::string(type)};
    for (int round = 0; round < 2; ++round) {
      for (const auto& set : DiscoveredSets()) {
        if (set->HasTable(type)) return TypedSet{set, std::string(type)};
      }
      if (round == 0) RefreshServiceSchemas();
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "type \"", type,
        "\" is not a table of the loaded or discovered schemas (give the "
        "fully qualified name, e.g. natsgw.users.UserRegistered)"));
  }

  // The event type of `subject`: `type` if given, else the table named by
  // the subject's "<prefix>.events.<Event>" (tools::SchemaSet::
  // EventTypeForSubject) in the loaded schemas, then in those found through
  // discovery.
  absl::StatusOr<TypedSet> EventType(absl::string_view subject,
                                     absl::string_view type) {
    if (!type.empty()) return FindTable(type);
    absl::StatusOr<std::string> local = local_->EventTypeForSubject(subject);
    if (local.ok()) return TypedSet{local_, *std::move(local)};
    if (local.status().code() != absl::StatusCode::kNotFound) {
      return absl::Status(
          local.status().code(),
          absl::StrCat(local.status().message(),
                       "; name the type with ?type=<fully qualified table>"));
    }
    for (int round = 0; round < 2; ++round) {
      for (const auto& set : DiscoveredSets()) {
        absl::StatusOr<std::string> t = set->EventTypeForSubject(subject);
        if (t.ok()) return TypedSet{set, *std::move(t)};
      }
      if (round == 0) RefreshServiceSchemas();
    }
    return absl::NotFoundError(
        absl::StrCat("no event type for subject \"", subject, "\" (",
                     local.status().message(),
                     "); name it with ?type=<fully qualified table>"));
  }

  static constexpr size_t kMaxCacheEntries = 1024;

  // Whether "100 Continue" went out for the request this thread serves:
  // civetweb runs one request at a time on a worker thread.
  static thread_local bool continue_sent_;
  // Whether the request this thread serves had its body read to the end
  // (ReadJsonBody): only then is there nothing left for FinishRequestBody.
  static thread_local bool body_complete_;

  const EdgeOptions options_;
  Connection& conn_;
  const std::shared_ptr<prometheus::Registry> registry_;
  const std::shared_ptr<Logger> logger_;
  bool library_initialized_ = false;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
  std::shared_ptr<const tools::SchemaSet> local_;  // immutable once loaded
  std::unique_ptr<BodyDeadlines> deadlines_;       // set by Init

  // Metrics (families owned by registry_).
  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Histogram>* duration_ = nullptr;
  std::map<Route, prometheus::Histogram*> durations_;     // fixed at Init
  std::map<std::string, prometheus::Counter*> rejected_;  // fixed at Init
  prometheus::Gauge* streams_gauge_ = nullptr;
  prometheus::Counter* dropped_ = nullptr;

  std::mutex tokens_mu_;
  std::shared_ptr<const TokenSet> tokens_;  // guarded by tokens_mu_

  std::atomic<bool> draining_{false};
  std::mutex drain_mu_;
  std::condition_variable drain_cv_;
  int active_ = 0;  // guarded by drain_mu_

  std::mutex streams_mu_;
  std::set<StreamState*> streams_;  // guarded by streams_mu_

  std::mutex cache_mu_;
  std::map<std::string, std::shared_ptr<CacheEntry>> cache_;  // cache_mu_
  std::vector<std::shared_ptr<const tools::SchemaSet>>
      service_sets_;                // guarded by cache_mu_
  absl::Time service_sets_expire_;  // guarded by cache_mu_
  std::mutex refresh_mu_;           // one RefreshServiceSchemas at a time

  std::mutex discovery_mu_;
  std::condition_variable discovery_cv_;
  bool discovering_ = false;  // guarded by discovery_mu_
};

thread_local bool EdgeServer::Impl::continue_sent_ = false;
thread_local bool EdgeServer::Impl::body_complete_ = false;

EdgeServer::EdgeServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EdgeServer::~EdgeServer() = default;

absl::Status EdgeServer::ValidateOptions(const EdgeOptions& options) {
  if (options.port < 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("port ", options.port, " is outside 0..65535"));
  }
  if (options.listen_address.empty() ||
      options.listen_address.find_first_of(" ,:") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen_address \"", options.listen_address,
                     "\" must be an IPv4 address or host name without a port"));
  }
  if (options.max_streams < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_streams must be >= 0, not ", options.max_streams));
  }
  if (options.http_threads < options.max_streams + kMinRequestThreads) {
    return absl::InvalidArgumentError(absl::StrCat(
        "http_threads (", options.http_threads,
        ") must be at least max_streams (", options.max_streams, ") + ",
        kMinRequestThreads,
        ": every event stream holds a worker thread, and calls and probes "
        "need some left"));
  }
  if (options.max_body_bytes < 1) {
    return absl::InvalidArgumentError("max_body_bytes must be at least 1");
  }
  if (options.timeout <= absl::ZeroDuration() ||
      options.max_timeout < options.timeout) {
    return absl::InvalidArgumentError(
        absl::StrCat("timeout (", absl::FormatDuration(options.timeout),
                     ") must be positive and at most max_timeout (",
                     absl::FormatDuration(options.max_timeout), ")"));
  }
  if (options.read_timeout < absl::Milliseconds(1) ||
      options.sse_keepalive < absl::Milliseconds(1) ||
      options.discovery_wait < absl::Milliseconds(1) ||
      options.resolve_ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "read_timeout, sse_keepalive and discovery_wait must be at least 1ms, "
        "resolve_ttl not negative");
  }
  if (options.sse_queue < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("sse_queue must be at least 1, not ", options.sse_queue));
  }
  if (options.sse_queue_bytes < 1) {
    return absl::InvalidArgumentError("sse_queue_bytes must be at least 1");
  }
  if (!options.tokens.has_value() && !options.allow_unauthenticated) {
    return absl::FailedPreconditionError(
        "no bearer tokens: give tokens, or allow unauthenticated callers "
        "explicitly");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<EdgeServer>> EdgeServer::Create(
    EdgeOptions options, Connection& connection,
    std::shared_ptr<prometheus::Registry> registry) {
  if (registry == nullptr) {
    return absl::InvalidArgumentError("metrics registry is null");
  }
  NATSGW_RETURN_IF_ERROR(ValidateOptions(options));
  auto impl = std::make_unique<Impl>(std::move(options), connection,
                                     std::move(registry));
  if (absl::Status s = impl->Init(); !s.ok()) return s;
  return std::unique_ptr<EdgeServer>(new EdgeServer(std::move(impl)));
}

void EdgeServer::SetTokens(TokenSet tokens) {
  impl_->SetTokens(std::move(tokens));
}
absl::Status EdgeServer::Readiness() const { return impl_->Readiness(); }
absl::Status EdgeServer::Drain(absl::Duration timeout) {
  return impl_->Drain(timeout);
}
bool EdgeServer::draining() const { return impl_->draining(); }
int EdgeServer::port() const { return impl_->port(); }
std::string EdgeServer::url() const { return impl_->url(); }
std::vector<std::string> EdgeServer::DescribeSchemas() const {
  return impl_->DescribeSchemas();
}

}  // namespace natsgw::edge
