// natsgw-bench's gRPC C++ scenarios: the same Echo call as natsgw's rpc_*
// scenarios, made with gRPC C++ over loopback TCP to a gRPC server in the
// same process (insecure credentials, an ephemeral 127.0.0.1 port). The
// service is tests/bench/grpc/bench_echo.proto: EchoRequest{bytes payload,
// uint64 tag} -> EchoReply{payload, tag}; the server copies both into its
// reply, as natsgw's EchoService does. Every call carries a deadline, as
// natsgw's calls carry a timeout, and every reply is checked to echo its
// request's tag and payload size (a broken echo must not look fast).
//
//   grpc_unary_sync       the synchronous stub, one call at a time: the
//                         counterpart of rpc_sync
//   grpc_unary_async      the callback client API with 64 calls in flight
//                         (each completion starts the next call, up to
//                         --async_calls): the counterpart of rpc_async_64.
//                         Latency is per call (queueing included);
//                         throughput is the point
//   grpc_unary_async_best the highest-throughput gRPC configuration found:
//                         every candidate of BestCandidates() (16, 64 or 256
//                         calls in flight; the callback client or a
//                         completion-queue client with one thread; a server
//                         with one or two completion queues) is measured once
//                         per round, and the fastest is reported with figures
//                         naming it: in_flight, cq_client (0 callback, 1
//                         completion queue), server_threads. Client and
//                         server drop the channel filters an Echo call does
//                         not use (grpc.minimal_stack, with deadline checks
//                         kept) and the client does not buffer calls for
//                         retries (grpc.enable_retries 0)
//
// The server of every scenario is gRPC's asynchronous flavour: a completion
// queue drained by one thread of ours (two for some grpc_unary_async_best
// candidates). On two cores it was the fastest flavour: ahead of the callback
// server, and ahead of the synchronous server with many calls in flight and
// level with it for one call at a time. grpc_unary_sync and grpc_unary_async
// keep gRPC's default channel arguments, as rpc_sync and rpc_async_64 keep
// natsgw's defaults.
//
// Debian builds Abseil without NDEBUG, so absl::Mutex, which gRPC 1.51 locks
// throughout, runs Abseil's debug deadlock detector on every lock: a fifth
// to a third of gRPC's CPU time per call. A release build of Abseil has it off,
// and so do these scenarios unless --grpc_mutex_deadlock_detection is given
// (the setting is process-wide; natsgw does not use absl::Mutex).
//
// Each scenario initializes the gRPC library, starts its own server and
// channel, and shuts all of it down at the end; it fails if a thread is left
// behind. Message size limits are lifted (--payload goes up to 64 MiB).
#include <dirent.h>
#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench_common.h"
#include "bench_echo.grpc.pb.h"
#include "natsgw/status_macros.h"

ABSL_FLAG(bool, grpc_mutex_deadlock_detection, false,
          "gRPC scenarios: keep Abseil's debug deadlock detection on for "
          "absl::Mutex, as Debian's Abseil build has it (costs gRPC a fifth "
          "to a third of its CPU per call)");

namespace natsgw::bench {
namespace {

namespace pb = ::natsgw::grpcbench;

// Every call's deadline. A call ends by its deadline at the latest, which
// bounds how long the end of an asynchronous run can wait.
constexpr std::chrono::seconds kCallTimeout(10);

// How long a server's shutdown lets calls in progress finish before it
// cancels them.
constexpr std::chrono::seconds kShutdownGrace(5);

// The threads of this process (Linux: the entries of /proc/self/task), or
// -1 if they cannot be counted.
int CountThreads() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  int n = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

// Runs one scenario with the gRPC library initialized around it: `run`
// creates and destroys every gRPC object of the scenario, and the last
// grpc_shutdown() (this thread's) stops the library's own threads. Fails if
// the process has more threads afterwards than before.
absl::StatusOr<Result> InGrpc(
    const std::string& scenario,
    const std::function<absl::StatusOr<Result>()>& run) {
  const int before = CountThreads();
  grpc_init();
  absl::StatusOr<Result> result = run();
  grpc_shutdown();
  if (!result.ok() || before < 0) return result;
  // A thread that was joined may take a moment to leave /proc.
  int after = CountThreads();
  for (int i = 0; i < 100 && after > before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    after = CountThreads();
  }
  if (after > before) {
    return absl::InternalError(
        absl::StrCat(scenario, ": ", after - before, " threads left behind"));
  }
  return result;
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  // gRPC's codes are the canonical codes absl::StatusCode uses.
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat("gRPC Echo: ", s.error_message()));
}

// Like natsgw_bench.cc's CheckEcho: the reply must carry the request's tag
// and as many payload bytes as the request had.
absl::Status CheckReply(const grpc::Status& status, const pb::EchoReply& reply,
                        size_t payload_size, uint64_t tag) {
  NATSGW_RETURN_IF_ERROR(FromGrpc(status));
  if (reply.tag() != tag || reply.payload().size() != payload_size) {
    return absl::InternalError("gRPC Echo reply does not match its request");
  }
  return absl::OkStatus();
}

// A request as a caller builds it for each call: the payload copied in.
void FillRequest(pb::EchoRequest& request, const std::string& payload,
                 uint64_t tag) {
  request.set_payload(payload);
  request.set_tag(tag);
}

// grpc_unary_async_best's channel arguments (client and server): no filter
// an Echo call does not use (compression, census, load reporting), deadlines
// still enforced, and no buffering of each call for a transparent retry.
void Lean(grpc::ChannelArguments& args) {
  args.SetInt(GRPC_ARG_MINIMAL_STACK, 1);
  args.SetInt(GRPC_ARG_ENABLE_DEADLINE_CHECKS, 1);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
}

// An Echo server on 127.0.0.1 with an ephemeral port: gRPC's asynchronous
// service on `threads` completion queues, each drained by a thread of its
// own. Shut down, every thread joined, by the destructor.
//
// Thread-safety: thread-compatible; the queue threads are internal.
class EchoServer {
 public:
  static absl::StatusOr<std::unique_ptr<EchoServer>> Start(int threads,
                                                           bool lean);
  ~EchoServer();
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;

  // "127.0.0.1:<port>".
  const std::string& target() const { return target_; }

 private:
  // One call slot: waits for a request, answers it, then waits for the next
  // one. Used by its queue's thread only (and by Start() before that thread
  // runs).
  struct Call {
    pb::Echo::AsyncService* service = nullptr;
    grpc::ServerCompletionQueue* cq = nullptr;
    std::optional<grpc::ServerContext> context;
    std::optional<grpc::ServerAsyncResponseWriter<pb::EchoReply>> writer;
    pb::EchoRequest request;
    pb::EchoReply reply;
    bool answering = false;  // Finish() was called, its completion is due

    void Await() {
      writer.reset();
      context.emplace();
      writer.emplace(&*context);
      answering = false;
      service->RequestEcho(&*context, &request, &*writer, cq, cq, this);
    }
  };

  // Call slots per queue: twice the most calls in flight, so that a request
  // rarely waits for a slot to be posted again.
  static constexpr int kCallsPerQueue = 512;

  EchoServer() = default;
  void Drain(grpc::ServerCompletionQueue* cq);

  pb::Echo::AsyncService service_;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cqs_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::unique_ptr<Call>> calls_;
  std::vector<std::thread> threads_;
  std::string target_;

  // The queue threads post no slot again once the destructor has set this:
  // a queue must get no new work after it was shut down.
  std::mutex mu_;
  bool shutting_down_ = false;  // Guarded by mu_.
};

absl::StatusOr<std::unique_ptr<EchoServer>> EchoServer::Start(int threads,
                                                              bool lean) {
  auto server = std::unique_ptr<EchoServer>(new EchoServer);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.SetMaxReceiveMessageSize(-1);
  builder.SetMaxSendMessageSize(-1);
  if (lean) {
    builder.AddChannelArgument(GRPC_ARG_MINIMAL_STACK, 1);
    builder.AddChannelArgument(GRPC_ARG_ENABLE_DEADLINE_CHECKS, 1);
  }
  builder.RegisterService(&server->service_);
  for (int i = 0; i < threads; ++i) {
    server->cqs_.push_back(builder.AddCompletionQueue());
  }
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || port == 0) {
    return absl::UnavailableError(
        "gRPC Echo server: cannot listen on 127.0.0.1");
  }
  server->target_ = absl::StrCat("127.0.0.1:", port);
  for (const auto& cq : server->cqs_) {
    for (int i = 0; i < kCallsPerQueue; ++i) {
      auto call = std::make_unique<Call>();
      call->service = &server->service_;
      call->cq = cq.get();
      call->Await();
      server->calls_.push_back(std::move(call));
    }
  }
  for (const auto& cq : server->cqs_) {
    server->threads_.emplace_back(
        [s = server.get(), q = cq.get()] { s->Drain(q); });
  }
  return server;
}

void EchoServer::Drain(grpc::ServerCompletionQueue* cq) {
  void* tag = nullptr;
  bool ok = false;
  while (cq->Next(&tag, &ok)) {
    auto* call = static_cast<Call*>(tag);
    if (!call->answering) {
      // Not ok: the server is shutting down and this slot is done.
      if (!ok) continue;
      call->reply.set_payload(call->request.payload());
      call->reply.set_tag(call->request.tag());
      call->answering = true;
      call->writer->Finish(call->reply, grpc::Status::OK, call);
    } else {
      std::lock_guard<std::mutex> lock(mu_);
      if (!shutting_down_) call->Await();
    }
  }
}

EchoServer::~EchoServer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutting_down_ = true;
  }
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
  }
  // Only after the server's shutdown returned (gRPC's rule); each thread
  // returns once its queue is drained.
  for (const auto& cq : cqs_) cq->Shutdown();
  for (std::thread& t : threads_) t.join();
  // Calls (their contexts) before the server, the server before its queues.
  calls_.clear();
  server_.reset();
}

// A channel to `target` without message size limits, on a connection of its
// own (not shared with other channels to the same target), connected.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(
    const std::string& target, bool lean) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (lean) Lean(args);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      target, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 std::chrono::seconds(5))) {
    return absl::UnavailableError(
        absl::StrCat("gRPC channel to ", target, ": not connected within 5s"));
  }
  return channel;
}

// grpc_unary_sync.
absl::StatusOr<Result> UnarySync(const Config& cfg) {
  NATSGW_ASSIGN_OR_RETURN(auto server, EchoServer::Start(1, false));
  NATSGW_ASSIGN_OR_RETURN(auto channel, Connect(server->target(), false));
  std::unique_ptr<pb::Echo::Stub> stub = pb::Echo::NewStub(channel);
  pb::EchoRequest request;
  pb::EchoReply reply;
  uint64_t tag = 0;
  return Measure("grpc_unary_sync", cfg.warmup, cfg.requests, cfg.max, [&] {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    FillRequest(request, cfg.payload, ++tag);
    reply.Clear();
    const grpc::Status status = stub->Echo(&context, request, &reply);
    return CheckReply(status, reply, cfg.payload.size(), tag);
  });
}

// The bookkeeping of one asynchronous run: keeps a fixed number of calls in
// flight, each completion recording its call's latency and reserving the
// next call, until `total` calls were started or `stop_at` passed.
//
// Thread-safety: thread-safe; Done() runs on the threads that complete calls.
class CallLedger {
 public:
  CallLedger(int total, Clock::time_point stop_at)
      : total_(total), stop_at_(stop_at) {
    latencies_.reserve(total);
  }

  // Reserves the first calls, at most `in_flight`; returns how many.
  int Begin(int in_flight) {
    std::lock_guard<std::mutex> lock(mu_);
    start_ = Clock::now();
    issued_ = std::min(in_flight, total_);
    return issued_;
  }

  // Records a call started at `t0` that ended with `status`. True if the
  // caller is to start the next call (reserved for it).
  bool Done(Clock::time_point t0, const absl::Status& status) {
    const Clock::time_point t1 = Clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    ++completed_;
    latencies_.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    last_done_ = t1;
    if (!status.ok() && error_.ok()) error_ = status;
    if (!status.ok() || t1 > stop_at_) stop_ = true;
    const bool next = !stopped();
    if (next) ++issued_;
    if (completed_ == issued_ && stopped()) cv_.notify_one();
    return next;
  }

  // Waits until every reserved call completed and no more will start; false
  // if that did not happen by `give_up`.
  bool Wait(Clock::time_point give_up) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, give_up,
                          [&] { return completed_ == issued_ && stopped(); });
  }

  // After Wait() returned true: the first failure, the latencies, and the
  // time from the first call to the last completion.
  absl::Status error() const { return error_; }
  std::vector<int64_t> TakeLatencies() { return std::move(latencies_); }
  Clock::duration wall() const { return last_done_ - start_; }

 private:
  bool stopped() const { return stop_ || issued_ == total_; }

  const int total_;
  const Clock::time_point stop_at_;
  std::mutex mu_;
  std::condition_variable cv_;
  int issued_ = 0;                  // Guarded by mu_: started or reserved.
  int completed_ = 0;               // Guarded by mu_.
  bool stop_ = false;               // Guarded by mu_: start no more calls.
  absl::Status error_;              // Guarded by mu_: the first failure.
  Clock::time_point start_;         // Guarded by mu_.
  Clock::time_point last_done_;     // Guarded by mu_.
  std::vector<int64_t> latencies_;  // Guarded by mu_.
};

// Makes Echo calls with a fixed number in flight through one of gRPC's
// asynchronous client APIs: the callback API (completions run on gRPC's
// threads) or a completion queue drained by one thread of its own.
//
// Thread-safety: Run() is called from one thread at a time; completions
// run concurrently on gRPC's or the queue's thread.
class AsyncCaller {
 public:
  AsyncCaller(std::unique_ptr<pb::Echo::Stub> stub, std::string payload,
              bool cq_client)
      : stub_(std::move(stub)),
        payload_(std::move(payload)),
        cq_client_(cq_client) {
    if (cq_client_) thread_ = std::thread([this] { Drain(); });
  }

  ~AsyncCaller() {
    // Run() returned only after every call completed: the queue is idle.
    cq_.Shutdown();
    if (thread_.joinable()) thread_.join();
  }

  AsyncCaller(const AsyncCaller&) = delete;
  AsyncCaller& operator=(const AsyncCaller&) = delete;

  // Makes up to `total` calls, `in_flight` at a time, until `stop_at`;
  // returns each call's latency and the run's duration.
  absl::Status Run(int in_flight, int total, Clock::time_point stop_at,
                   std::vector<int64_t>& latencies, Clock::duration& wall) {
    CallLedger ledger(total, stop_at);
    std::vector<Call> calls(in_flight);
    ledger_ = &ledger;
    const int first = ledger.Begin(in_flight);
    for (int i = 0; i < first; ++i) Issue(calls[i]);
    // Every call ends by its deadline, so this only fails if gRPC lost a
    // call; its buffers could then still be written to, and there is no safe
    // way to go on.
    if (!ledger.Wait(stop_at + kCallTimeout + std::chrono::seconds(5))) {
      std::fprintf(stderr,
                   "natsgw-bench: gRPC did not end calls by their deadline\n");
      std::abort();
    }
    ledger_ = nullptr;
    latencies = ledger.TakeLatencies();
    wall = ledger.wall();
    return ledger.error();
  }

 private:
  // One call slot, reused by the next call once its call completed.
  struct Call {
    std::optional<grpc::ClientContext> context;
    std::unique_ptr<grpc::ClientAsyncResponseReader<pb::EchoReply>> reader;
    pb::EchoRequest request;
    pb::EchoReply reply;
    grpc::Status status;
    Clock::time_point t0;
    uint64_t tag = 0;
  };

  void Issue(Call& call) {
    call.t0 = Clock::now();
    call.tag = next_tag_.fetch_add(1, std::memory_order_relaxed);
    // The reader lives in the previous call's arena: gone with its context.
    call.reader.reset();
    call.context.emplace();
    call.context->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    FillRequest(call.request, payload_, call.tag);
    call.reply.Clear();
    if (cq_client_) {
      call.reader = stub_->AsyncEcho(&*call.context, call.request, &cq_);
      call.reader->Finish(&call.reply, &call.status, &call);
    } else {
      stub_->async()->Echo(
          &*call.context, &call.request, &call.reply,
          [this, &call](grpc::Status status) { Complete(call, status); });
    }
  }

  // A completion (on a gRPC or queue thread): records it and starts the next
  // call in the same slot. gRPC runs a callback inside the Echo() call that
  // started it only if that call failed at once, which starts no next call,
  // so this does not recurse.
  void Complete(Call& call, const grpc::Status& status) {
    if (ledger_->Done(call.t0, CheckReply(status, call.reply, payload_.size(),
                                          call.tag))) {
      Issue(call);
    }
  }

  void Drain() {
    void* tag = nullptr;
    bool ok = false;
    while (cq_.Next(&tag, &ok)) {
      Call& call = *static_cast<Call*>(tag);
      // A client Finish() completion is always ok (gRPC's contract).
      Complete(call, ok ? call.status
                        : grpc::Status(grpc::StatusCode::INTERNAL,
                                       "completion queue failed a call"));
    }
  }

  const std::unique_ptr<pb::Echo::Stub> stub_;
  const std::string payload_;
  const bool cq_client_;
  grpc::CompletionQueue cq_;  // the completion-queue client's
  std::thread thread_;        // drains cq_
  std::atomic<uint64_t> next_tag_{1};
  // The current Run()'s, set before its first call and cleared after its last
  // completion.
  CallLedger* ledger_ = nullptr;
};

// One asynchronous gRPC configuration.
struct AsyncSetup {
  int in_flight = 64;
  bool cq_client = false;  // else the callback client
  int server_threads = 1;  // the server's completion queues
  bool lean = false;       // Lean() channel arguments
};

// Measures `setup` with its own server and channel: --warmup calls, then
// --async_calls calls.
absl::StatusOr<Result> RunAsync(const Config& cfg, const std::string& scenario,
                                const AsyncSetup& setup) {
  NATSGW_ASSIGN_OR_RETURN(auto server,
                          EchoServer::Start(setup.server_threads, setup.lean));
  NATSGW_ASSIGN_OR_RETURN(auto channel, Connect(server->target(), setup.lean));
  AsyncCaller caller(pb::Echo::NewStub(channel), cfg.payload, setup.cq_client);
  std::vector<int64_t> latencies;
  Clock::duration wall{};
  for (const auto& [calls, measured] :
       {std::pair{cfg.warmup, false}, std::pair{cfg.async_calls, true}}) {
    if (calls <= 0) continue;
    NATSGW_RETURN_IF_ERROR(caller.Run(
        setup.in_flight, calls,
        Clock::now() + absl::ToChronoNanoseconds(cfg.max), latencies, wall));
    if (!measured) latencies.clear();
  }
  return Summarize(scenario, latencies, wall);
}

// grpc_unary_async.
absl::StatusOr<Result> UnaryAsync(const Config& cfg) {
  AsyncSetup setup;
  setup.in_flight = 64;
  setup.cq_client = false;
  setup.server_threads = 1;
  setup.lean = false;
  return RunAsync(cfg, "grpc_unary_async", setup);
}

// grpc_unary_async_best's candidates. Measured on two cores with 64 B and
// 16 KiB payloads, the synchronous and callback servers (not candidates) were
// behind a completion-queue server with one queue, and a second channel or a
// second client queue thread did not help; which of these wins depends on
// the payload and the moment.
std::vector<AsyncSetup> BestCandidates() {
  std::vector<AsyncSetup> list;
  for (int in_flight : {16, 64, 256}) {
    for (bool cq_client : {false, true}) {
      for (int server_threads : {1, 2}) {
        list.push_back({in_flight, cq_client, server_threads, true});
      }
    }
  }
  return list;
}

// grpc_unary_async_best.
absl::StatusOr<Result> UnaryAsyncBest(const Config& cfg) {
  const std::string scenario = "grpc_unary_async_best";
  const std::vector<AsyncSetup> candidates = BestCandidates();
  std::optional<Result> best;
  for (const AsyncSetup& setup : candidates) {
    NATSGW_ASSIGN_OR_RETURN(Result r, InGrpc(scenario, [&] {
                              return RunAsync(cfg, scenario, setup);
                            }));
    if (best && r.ops_per_s <= best->ops_per_s) continue;
    r.figures["in_flight"] = setup.in_flight;
    r.figures["cq_client"] = setup.cq_client ? 1 : 0;
    r.figures["server_threads"] = setup.server_threads;
    best = std::move(r);
  }
  best->figures["candidates"] = static_cast<double>(candidates.size());
  return *best;
}

// Turns Abseil's debug deadlock detection off for the rest of the process
// unless --grpc_mutex_deadlock_detection. Only ever from on to off: turning
// it on while mutexes are held breaks its bookkeeping.
void SetMutexDeadlockDetection() {
  if (!absl::GetFlag(FLAGS_grpc_mutex_deadlock_detection)) {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  }
}

}  // namespace

std::vector<Scenario> GrpcScenarios() {
  // Before any scenario runs, so that every round runs with the same setting.
  SetMutexDeadlockDetection();
  using F = Comparison::Figure;
  return {
      {"grpc_unary_sync",
       Pick::kP50,
       false,
       {},
       [](const Config& c) {
         return InGrpc("grpc_unary_sync", [&] { return UnarySync(c); });
       }},
      {"grpc_unary_async",
       Pick::kThroughput,
       false,
       {},
       [](const Config& c) {
         return InGrpc("grpc_unary_async", [&] { return UnaryAsync(c); });
       }},
      {"grpc_unary_async_best",
       Pick::kThroughput,
       false,
       {{F::kOpsPerS, "grpc_unary_async"}},
       UnaryAsyncBest},
  };
}

}  // namespace natsgw::bench
