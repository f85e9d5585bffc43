// natsgw-bench's scaling scenarios: how throughput and tail latency change
// with the number of concurrent callers and subscribers, and how resident
// memory grows with the number of calls in flight.
//
//   build/bin/natsgw-bench --scenarios=scale_callers_1,scale_callers_64
//
//   scale_callers_N      N (1, 4, 16, 64) threads each make synchronous typed
//                        calls (natsgw-gen's EchoClient::Echo, as rpc_sync),
//                        one after the other, through ONE client Connection
//                        to ONE EchoService served on another Connection with
//                        default options: ServeOptions::workers == 0, so the
//                        handler runs inline on the endpoint's single nats.c
//                        delivery thread, one request at a time, and waiting
//                        requests queue in nats.c's pending queue. On the
//                        client, one waiting caller at a time reads its
//                        reply directly (the direct inbox); the others are
//                        woken by the reply thread. 4 *
//                        --requests calls in all, split evenly between the
//                        callers. ops_per_s is all callers together;
//                        latencies are per call, across all calls.
//                        Figures: callers, calls_per_caller, server_workers
//                        (0: inline), threads (the process's, while calling).
//   scale_subscribers_N  one natsgw publisher Connection (default options:
//                        publishes batched) publishes --publishes / 10
//                        messages (--payload bytes) to one subject as fast as
//                        it can; N (1, 4, 16) plain subscriptions (no queue
//                        group, handler inline) each receive every one. Each
//                        subscription is on a Connection of its own, as N
//                        services interested in the same event would be (one
//                        natsgw Connection per process), so nats-server
//                        writes every message to N sockets and every
//                        subscription has its own nats.c delivery thread.
//                        ops_per_s is messages delivered per second across
//                        all subscribers, from the first publish to the last
//                        delivery (fan-out throughput); latency is per
//                        delivery, from the publisher's send timestamp
//                        (Message::sent_at) to the handler. In a flood that
//                        is mostly the time a message waits behind earlier
//                        ones (by Little's law, backlog / delivery rate), so
//                        it grows with the run's length once the subscribers
//                        fall behind the publisher: read it as "how far
//                        behind the subscribers get", not as the latency of
//                        one event. That latency is in idle_p50_us and
//                        idle_p99_us: afterwards, min(--requests, 300)
//                        messages are published one at a time (from a second
//                        publisher Connection with batch_publishes false,
//                        so no batching delay), each once every subscriber
//                        has the one before, timed from the send timestamp
//                        to each subscriber's handler. Figures: subscribers,
//                        delivered (the flood's deliveries, all
//                        subscribers), dropped (nats.c slow-consumer drops
//                        in the flood; the run is sized so that there are
//                        none, and the scenario fails only if messages went
//                        missing without being counted as dropped),
//                        publisher_msgs_per_s (the flood's publishing rate,
//                        up to its Flush), idle_p50_us, idle_p99_us,
//                        threads.
//   scale_in_flight_N    resident memory against calls in flight: the
//                        callback form of EchoClient::EchoAsync issues N (1,
//                        64, 256, 1024, 4096) calls at once to a responder
//                        that holds every request until all N have arrived,
//                        so at that moment exactly N calls are in flight in
//                        the client. The responder is a raw nats.c
//                        subscription that keeps only each request's reply
//                        subject and tag in slots allocated before the
//                        baseline reading, then answers all N with a valid
//                        EchoReply: natsgw's Serve has no deferred reply (a
//                        handler returns its reply), so holding 4096
//                        requests would take 4096 blocked handler threads,
//                        whose stacks would swamp the figure. What is
//                        measured is therefore the natsgw client's memory per
//                        call in flight (request multiplexer entry, deadline
//                        timer, typed call state, callback), which is what
//                        an application pays. natsgw's client has no limit
//                        on calls in flight (ClientOptions and RequestOptions
//                        have none; only a served endpoint has
//                        ServeOptions::max_in_flight), so the memory grows
//                        with the caller's own concurrency. ops_per_s is N
//                        over the time to issue the N calls plus the time
//                        from the release to the last completion; latency
//                        fields are 0 (every call waits for the last one to
//                        arrive). Every call must complete with its own echo.
//                        Figures: in_flight, rss_bytes (process resident set
//                        with the N calls in flight), rss_delta_bytes (over
//                        the baseline taken just before issuing, after
//                        returning free heap pages to the kernel with
//                        malloc_trim so that the growth is not hidden by
//                        memory freed by earlier scenarios), bytes_per_call
//                        (rss_delta_bytes / N; page-granular, so only
//                        meaningful from a few hundred calls up),
//                        heap_delta_bytes and heap_bytes_per_call (glibc
//                        mallinfo2: bytes allocated and not freed, exact to
//                        the byte, not page-rounded), threads.
//
// scale_callers_N and scale_subscribers_N also report cpu_us_per_op and
// switches_per_op: the CPU time (user + system) and context switches of the
// whole benchmark process (callers and service, or publisher and
// subscribers, alike; not nats-server's, another process) over the measured
// part, per call or per delivery. They tell a bend caused by work per
// operation growing (locks, thread hand-offs) from one caused by running
// out of cores.
//
// How to read the results: compare each scenario with its N = 1 row (the
// ops_vs_ and p99_vs_ ratios do this). Throughput rising in proportion to N
// means the extra callers or subscribers are served in parallel; once it
// stops rising, added load only queues, and p99 grows in proportion to N
// instead (a caller waits behind the others). Where that happens depends on
// the cores available: callers, service, publisher, subscribers and
// nats-server all run on this one machine, and the kernel shares the cores
// between threads, not between roles. So with many subscribers in one
// process the single publishing thread gets a shrinking share of the CPU
// (publisher_msgs_per_s falls with N), which deployed services, each in its
// own process or pod, would not see. A falling cpu_us_per_op with rising N
// means the extra load is handled in batches (fewer thread wake-ups per
// operation: switches_per_op falls too); a rising one means contention.
// For memory, bytes_per_call should be flat in N: it is what one call in
// flight costs. It grows with --payload, since a call keeps a copy of its
// request until it ends (for retries and hedges).
//
// Every loop is bounded by a count and by --max_seconds; every wait is
// bounded too, and a call or message that does not arrive fails the
// scenario with a status saying what was missing.
#include <malloc.h>
#include <nats/nats.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench_common.h"
#include "echo_bench.h"
#include "flatbuffers/flatbuffers.h"
#include "natsgw/connection.h"
#include "natsgw/schemas/echo_natsgw.h"
#include "natsgw/status_macros.h"

namespace natsgw::bench {
namespace {

// ---------------------------------------------------------------------------
// Process figures.

// The process's resident set in bytes (/proc/self/statm), or -1.
int64_t ResidentBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long size = 0, resident = 0;
  const int read = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  if (read != 2) return -1;
  return static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

// The process's thread count (/proc/self/status), or -1.
int ThreadCount() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  int threads = -1;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::sscanf(line, "Threads: %d", &threads) == 1) break;
  }
  std::fclose(f);
  return threads;
}

// CPU time and context switches of the whole process (every thread; not
// nats-server's, which is another process).
struct ProcessCpu {
  double cpu_s = 0;      // user + system
  int64_t switches = 0;  // voluntary + involuntary context switches

  static ProcessCpu Now() {
    struct rusage usage;
    ProcessCpu p;
    if (getrusage(RUSAGE_SELF, &usage) != 0) return p;
    auto seconds = [](const struct timeval& tv) {
      return static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6;
    };
    p.cpu_s = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    p.switches = usage.ru_nvcsw + usage.ru_nivcsw;
    return p;
  }
  ProcessCpu operator-(const ProcessCpu& o) const {
    return ProcessCpu{cpu_s - o.cpu_s, switches - o.switches};
  }
};

// Adds cpu_us_per_op and switches_per_op for `ops` operations that cost
// `spent`.
void AddCpuFigures(const ProcessCpu& spent, int64_t ops, Result& r) {
  if (ops <= 0) return;
  r.figures["cpu_us_per_op"] = spent.cpu_s * 1e6 / ops;
  r.figures["switches_per_op"] = static_cast<double>(spent.switches) / ops;
}

// Heap bytes allocated and not yet freed, in every malloc arena and in
// mmap()ed chunks; nullopt where glibc's mallinfo2 (2.33) is missing.
std::optional<int64_t> HeapInUseBytes() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
#else
  return std::nullopt;
#endif
}

// Gives free heap pages back to the kernel, so that a later growth of the
// heap shows in the resident set instead of reusing pages freed earlier.
void TrimHeap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

// ---------------------------------------------------------------------------
// The Echo client (echo_bench.h has the service and its checks).

// A client Connection with an EchoClient whose subjects start with
// "bench.<scenario>". Members are destroyed bottom-up: the client before
// its Connection.
//
// Thread-safety: the client is thread-safe; the struct is
// thread-compatible.
struct EchoClientRig {
  std::unique_ptr<Connection> conn;
  std::optional<echo::EchoClient> client;
};

absl::StatusOr<EchoClientRig> StartEchoClient(const Config& cfg,
                                              const std::string& scenario,
                                              absl::Duration timeout) {
  EchoClientRig rig;
  NATSGW_ASSIGN_OR_RETURN(rig.conn, Gateway(cfg));
  ClientOptions options;
  options.subject_prefix = absl::StrCat("bench.", scenario);
  options.timeout = timeout;
  NATSGW_ASSIGN_OR_RETURN(echo::EchoClient client,
                          echo::EchoClient::Create(*rig.conn, options));
  rig.client.emplace(std::move(client));
  return rig;
}

// ---------------------------------------------------------------------------
// scale_callers_N.

// What the caller threads share. Thread-safety: guarded by `mu`.
struct CallersState {
  std::mutex mu;
  std::condition_variable cv;
  int ready = 0;       // threads done with their warm-up
  bool go = false;     // the measured calls may start
  bool stop = false;   // a call failed: stop calling
  absl::Status error;  // the first failure
  Clock::time_point last_end;

  void Fail(absl::Status status) {
    std::lock_guard<std::mutex> lock(mu);
    if (error.ok()) error = std::move(status);
    stop = true;
  }
  bool stopped() {
    std::lock_guard<std::mutex> lock(mu);
    return stop;
  }
};

absl::StatusOr<Result> ScaleCallers(const Config& cfg, int callers) {
  const std::string scenario = absl::StrCat("scale_callers_", callers);
  const int per_caller = std::max(1, cfg.requests * 4 / callers);
  const int warmup_per_caller =
      cfg.warmup > 0 ? std::max(1, cfg.warmup / callers) : 0;

  EchoService impl;
  NATSGW_ASSIGN_OR_RETURN(auto server_conn, Gateway(cfg));
  TypedServiceOptions service_options;  // default ServeOptions: inline
  service_options.subject_prefix = absl::StrCat("bench.", scenario);
  service_options.name = absl::StrCat("bench_", scenario);
  NATSGW_ASSIGN_OR_RETURN(auto service,
                          impl.Start(*server_conn, service_options));
  NATSGW_ASSIGN_OR_RETURN(EchoClientRig rig,
                          StartEchoClient(cfg, scenario, absl::Seconds(5)));
  const echo::EchoClient& client = *rig.client;

  CallersState state;
  std::vector<std::vector<int64_t>> latencies(callers);
  const Clock::time_point give_up_at =
      Clock::now() + absl::ToChronoNanoseconds(cfg.max);
  Clock::time_point start, stop_at;
  auto caller = [&](int index) {
    std::vector<int64_t>& mine = latencies[index];
    mine.reserve(per_caller);
    uint64_t tag = static_cast<uint64_t>(index) << 32;
    auto call = [&]() {
      ++tag;
      auto build = [&](flatbuffers::FlatBufferBuilder& fbb) {
        return BuildEcho(fbb, cfg.payload, tag);
      };
      return CheckEcho(client.Echo(build), cfg.payload.size(), tag);
    };
    for (int i = 0; i < warmup_per_caller && !state.stopped(); ++i) {
      if (absl::Status s = call(); !s.ok()) state.Fail(s);
    }
    {
      std::unique_lock<std::mutex> lock(state.mu);
      ++state.ready;
      state.cv.notify_all();
      state.cv.wait(lock, [&] { return state.go || state.stop; });
      if (state.stop) return;
    }
    Clock::time_point t1;
    for (int i = 0; i < per_caller; ++i) {
      const Clock::time_point t0 = Clock::now();
      absl::Status s = call();
      t1 = Clock::now();
      if (!s.ok()) {
        state.Fail(std::move(s));
        break;
      }
      mine.push_back(
          std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0)
              .count());
      if (t1 > stop_at || ((i & 63) == 0 && state.stopped())) break;
    }
    std::lock_guard<std::mutex> lock(state.mu);
    state.last_end = std::max(state.last_end, t1);
  };

  std::vector<std::thread> threads;
  threads.reserve(callers);
  for (int i = 0; i < callers; ++i) threads.emplace_back(caller, i);
  int threads_running = -1;
  ProcessCpu cpu_start;
  {
    std::unique_lock<std::mutex> lock(state.mu);
    if (!state.cv.wait_until(lock, give_up_at, [&] {
          return state.ready == callers || state.stop;
        })) {
      state.stop = true;
      if (state.error.ok()) {
        state.error = absl::DeadlineExceededError(absl::StrCat(
            scenario, ": warm-up did not finish within --max_seconds"));
      }
    }
    if (!state.stop) {
      threads_running = ThreadCount();
      cpu_start = ProcessCpu::Now();
      start = Clock::now();
      stop_at = start + absl::ToChronoNanoseconds(cfg.max);
      state.go = true;
    }
    state.cv.notify_all();
  }
  // Each call ends within its timeout and each thread stops after stop_at,
  // so the joins are bounded.
  for (std::thread& t : threads) t.join();
  const ProcessCpu cpu_spent = ProcessCpu::Now() - cpu_start;
  NATSGW_RETURN_IF_ERROR(state.error);

  std::vector<int64_t> all;
  all.reserve(static_cast<size_t>(per_caller) * callers);
  for (const std::vector<int64_t>& l : latencies) {
    all.insert(all.end(), l.begin(), l.end());
  }
  Result r = Summarize(scenario, all, state.last_end - start);
  r.figures["callers"] = callers;
  r.figures["calls_per_caller"] = per_caller;
  r.figures["server_workers"] = service_options.serve.workers;
  r.figures["threads"] = threads_running;
  AddCpuFigures(cpu_spent, r.ops, r);
  return r;
}

// ---------------------------------------------------------------------------
// scale_subscribers_N.

// What the messages of scale_subscribers are for; the publishing thread
// changes it only while no message is on its way.
enum SubscribersPhase : int {
  kWarmUp = 0,    // not recorded
  kFlood = 1,     // as fast as the publisher goes
  kOneByOne = 2,  // the next one once every subscriber has the last
};

// One subscriber's counts and latencies.
//
// Thread-safety: the handler (the subscription's single delivery thread)
// writes the vectors; others read them only after the subscription ended.
// The atomics may be read from any thread at any time.
struct Subscriber {
  explicit Subscriber(const std::atomic<int>& phase) : phase(phase) {}

  const std::atomic<int>& phase;
  // Send timestamp to handler, per message; capacities fixed before
  // delivery.
  std::vector<int64_t> flood_ns;
  std::vector<int64_t> one_by_one_ns;
  std::atomic<int64_t> received{0};
  std::atomic<int64_t> without_sent_at{0};
  std::atomic<int64_t> last_arrival_ns{0};  // Clock, since its epoch
  std::unique_ptr<Connection> conn;
  // Last, so destroyed first: its handler (which uses the members above)
  // has returned for good once it is gone.
  std::unique_ptr<Subscription> sub;

  void OnMessage(const Message& m) {
    const absl::Time now = absl::Now();
    const Clock::time_point arrived = Clock::now();
    if (m.sent_at.has_value()) {
      const int p = phase.load(std::memory_order_relaxed);
      std::vector<int64_t>* into = p == kFlood      ? &flood_ns
                                   : p == kOneByOne ? &one_by_one_ns
                                                    : nullptr;
      if (into != nullptr && into->size() < into->capacity()) {
        into->push_back(
            std::max<int64_t>(0, absl::ToInt64Nanoseconds(now - *m.sent_at)));
      }
    } else {
      without_sent_at.fetch_add(1, std::memory_order_relaxed);
    }
    last_arrival_ns.store(arrived.time_since_epoch().count(),
                          std::memory_order_relaxed);
    received.fetch_add(1, std::memory_order_release);
  }
};

// Waits until every subscriber has received or dropped `target` messages,
// checking every `poll`; false at `deadline`.
bool WaitForAll(const std::vector<std::unique_ptr<Subscriber>>& subscribers,
                int64_t target, Clock::time_point deadline,
                std::chrono::microseconds poll) {
  while (true) {
    bool all = true;
    for (const auto& s : subscribers) {
      if (s->received.load(std::memory_order_acquire) + s->sub->dropped() <
          target) {
        all = false;
        break;
      }
    }
    if (all) return true;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(poll);
  }
}

absl::StatusOr<Result> ScaleSubscribers(const Config& cfg, int n) {
  const std::string scenario = absl::StrCat("scale_subscribers_", n);
  const std::string subject = absl::StrCat("bench.", scenario);
  const int64_t count = std::max(1, cfg.publishes / 10);
  const int64_t one_by_one = std::clamp(cfg.requests, 1, 300);
  const int64_t warmup = std::max(0, cfg.warmup);
  const int64_t warmup_immediate = std::min<int64_t>(warmup, 10);
  // How long the last message may take to arrive after the last publish.
  const absl::Duration drain = absl::Seconds(10);
  constexpr std::chrono::microseconds kPoll(500);

  std::atomic<int> phase{kWarmUp};
  std::vector<std::unique_ptr<Subscriber>> subscribers;
  for (int i = 0; i < n; ++i) {
    auto s = std::make_unique<Subscriber>(phase);
    s->flood_ns.reserve(count);
    s->one_by_one_ns.reserve(one_by_one);
    NATSGW_ASSIGN_OR_RETURN(s->conn, Gateway(cfg));
    Subscriber* raw = s.get();
    NATSGW_ASSIGN_OR_RETURN(
        s->sub, s->conn->Subscribe(subject, "", [raw](const Message& m) {
          raw->OnMessage(m);
        }));
    subscribers.push_back(std::move(s));
  }
  // The flood's publisher: default options (publishes batched by nats.c's
  // flusher). The one-by-one publisher writes every message at once, so
  // that its latency is not the batching delay.
  NATSGW_ASSIGN_OR_RETURN(auto publisher, Gateway(cfg));
  ConnectionOptions immediate_options;
  immediate_options.servers = {cfg.url};
  immediate_options.batch_publishes = false;
  NATSGW_ASSIGN_OR_RETURN(auto immediate,
                          Connection::Create(immediate_options));

  auto lost = [&](const char* phase_name, int64_t target) {
    int64_t received = 0, dropped = 0;
    for (const auto& s : subscribers) {
      received += s->received.load();
      dropped += s->sub->dropped();
    }
    return absl::DeadlineExceededError(
        absl::StrCat(scenario, ": ", phase_name, ": ", n * target,
                     " deliveries expected in all, ", received, " arrived and ",
                     dropped, " were dropped within ",
                     absl::FormatDuration(drain), " of the last publish"));
  };

  // Warm-up: connections, subscriptions and metric series in use.
  for (int64_t i = 0; i < warmup; ++i) {
    NATSGW_RETURN_IF_ERROR(publisher->Publish(subject, cfg.payload).status());
  }
  for (int64_t i = 0; i < warmup_immediate; ++i) {
    NATSGW_RETURN_IF_ERROR(immediate->Publish(subject, cfg.payload).status());
  }
  NATSGW_RETURN_IF_ERROR(publisher->Flush(absl::Seconds(10)));
  int64_t expected = warmup + warmup_immediate;
  if (!WaitForAll(subscribers, expected,
                  Clock::now() + absl::ToChronoNanoseconds(drain), kPoll)) {
    return lost("warm-up", expected);
  }
  std::vector<int64_t> received_before(n), dropped_before(n);
  for (int i = 0; i < n; ++i) {
    received_before[i] = subscribers[i]->received.load();
    dropped_before[i] = subscribers[i]->sub->dropped();
  }

  // The flood.
  const int threads = ThreadCount();
  phase.store(kFlood);
  const ProcessCpu cpu_start = ProcessCpu::Now();
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop_at = start + absl::ToChronoNanoseconds(cfg.max);
  int64_t published = 0;
  while (published < count) {
    NATSGW_RETURN_IF_ERROR(publisher->Publish(subject, cfg.payload).status());
    ++published;
    if ((published & 255) == 0 && Clock::now() > stop_at) break;
  }
  NATSGW_RETURN_IF_ERROR(publisher->Flush(absl::Seconds(10)));
  const Clock::duration publish_wall = Clock::now() - start;
  expected += published;
  if (!WaitForAll(subscribers, expected,
                  Clock::now() + absl::ToChronoNanoseconds(drain), kPoll)) {
    return lost("flood", expected);
  }
  const ProcessCpu cpu_spent = ProcessCpu::Now() - cpu_start;
  int64_t delivered = 0, dropped = 0;
  Clock::time_point last = start;
  for (int i = 0; i < n; ++i) {
    Subscriber& s = *subscribers[i];
    delivered += s.received.load() - received_before[i];
    dropped += s.sub->dropped() - dropped_before[i];
    last = std::max(
        last, Clock::time_point(Clock::duration(s.last_arrival_ns.load())));
  }

  // One message at a time, each once every subscriber has the one before.
  phase.store(kOneByOne);
  const Clock::time_point one_by_one_stop =
      Clock::now() + absl::ToChronoNanoseconds(cfg.max);
  for (int64_t i = 0; i < one_by_one; ++i) {
    NATSGW_RETURN_IF_ERROR(immediate->Publish(subject, cfg.payload).status());
    ++expected;
    if (!WaitForAll(subscribers, expected,
                    Clock::now() + absl::ToChronoNanoseconds(drain),
                    std::chrono::microseconds(20))) {
      return lost("one by one", expected);
    }
    if (Clock::now() > one_by_one_stop) break;
  }

  // Ending the subscriptions waits for running handlers: the latencies may
  // be read afterwards.
  for (auto& s : subscribers) {
    NATSGW_RETURN_IF_ERROR(s->sub->Unsubscribe());
  }
  std::vector<int64_t> flood, single;
  flood.reserve(static_cast<size_t>(published) * n);
  single.reserve(static_cast<size_t>(one_by_one) * n);
  int64_t without_sent_at = 0;
  for (const auto& s : subscribers) {
    without_sent_at += s->without_sent_at.load();
    flood.insert(flood.end(), s->flood_ns.begin(), s->flood_ns.end());
    single.insert(single.end(), s->one_by_one_ns.begin(),
                  s->one_by_one_ns.end());
  }
  if (without_sent_at > 0) {
    return absl::InternalError(absl::StrCat(
        scenario, ": ", without_sent_at,
        " messages arrived without a send timestamp (Natsgw-Sent-At-Ns)"));
  }
  // The throughput counts deliveries; the latencies are those of the
  // flood's messages (dropped ones have none).
  Result r = Summarize(scenario, flood, last - start);
  r.ops = delivered;
  const double seconds = std::chrono::duration<double>(last - start).count();
  r.ops_per_s = seconds > 0 ? delivered / seconds : 0;
  const Result idle = Summarize(scenario, single, Clock::duration(1));
  r.figures["subscribers"] = n;
  r.figures["delivered"] = static_cast<double>(delivered);
  r.figures["dropped"] = static_cast<double>(dropped);
  r.figures["publisher_msgs_per_s"] =
      published / std::chrono::duration<double>(publish_wall).count();
  r.figures["idle_p50_us"] = idle.p50_us;
  r.figures["idle_p99_us"] = idle.p99_us;
  r.figures["threads"] = threads;
  AddCpuFigures(cpu_spent, delivered, r);
  return r;
}

// ---------------------------------------------------------------------------
// scale_in_flight_N.

// An Echo responder on a raw nats.c connection that, while holding, keeps
// each request's reply subject and tag (in slots allocated up front) instead
// of answering, and answers them all on Release(); otherwise it answers at
// once.
//
// Thread-safety: OnMessage runs on the subscription's nats.c delivery
// thread; the other methods on one other thread. Shared state is guarded by
// mu_.
class HoldingResponder {
 public:
  static absl::StatusOr<std::unique_ptr<HoldingResponder>> Start(
      const Config& cfg, const std::string& subject, int capacity) {
    auto r = std::unique_ptr<HoldingResponder>(
        new HoldingResponder(cfg.payload, capacity));
    // Replies are written in a burst on Release(): buffered, then flushed.
    NATSGW_ASSIGN_OR_RETURN(r->conn_, RawConnection::Connect(cfg.url, false));
    NATSGW_RETURN_IF_ERROR(Check(
        natsConnection_Subscribe(&r->sub_, r->conn_->nc(), subject.c_str(),
                                 &HoldingResponder::OnMessage, r.get()),
        "subscribe"));
    // Unlimited pending: held requests must never be dropped.
    NATSGW_RETURN_IF_ERROR(Check(
        natsSubscription_SetPendingLimits(r->sub_, -1, -1), "pending limits"));
    NATSGW_RETURN_IF_ERROR(
        Check(natsConnection_FlushTimeout(r->conn_->nc(), 5000), "flush"));
    return r;
  }

  ~HoldingResponder() {
    if (sub_ != nullptr) {
      // Drained: no callback runs after this (it uses the object).
      if (natsSubscription_Drain(sub_) == NATS_OK) {
        natsSubscription_WaitForDrainCompletion(sub_, 5000);
      } else {
        natsSubscription_Unsubscribe(sub_);
      }
      natsSubscription_Destroy(sub_);
    }
  }

  HoldingResponder(const HoldingResponder&) = delete;
  HoldingResponder& operator=(const HoldingResponder&) = delete;

  // Holds the next `n` (at most the capacity) requests.
  void Hold(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = std::min<int>(n, static_cast<int>(slots_.size()));
    held_ = 0;
  }

  // Waits until the requests Hold() asked for have arrived; false at
  // `deadline`.
  bool WaitHeld(Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return held_ == hold_; });
  }

  int held() {
    std::lock_guard<std::mutex> lock(mu_);
    return held_;
  }

  // Answers every held request and stops holding.
  absl::Status Release() {
    std::vector<Slot> answer;
    {
      std::lock_guard<std::mutex> lock(mu_);
      answer.assign(slots_.begin(), slots_.begin() + held_);
      hold_ = held_ = 0;
    }
    flatbuffers::FlatBufferBuilder fbb;
    for (const Slot& slot : answer) {
      NATSGW_RETURN_IF_ERROR(Answer(fbb, slot.reply, slot.tag));
    }
    return Check(natsConnection_FlushTimeout(conn_->nc(), 10000), "flush");
  }

  // Requests that could not be parsed or answered (never answered).
  int64_t bad() {
    std::lock_guard<std::mutex> lock(mu_);
    return bad_;
  }

 private:
  // Reply subjects are natsgw's "_INBOX.<22 characters>.<token>".
  static constexpr size_t kMaxReply = 112;
  struct Slot {
    char reply[kMaxReply];
    uint64_t tag;
  };

  HoldingResponder(std::string payload, int capacity)
      : payload_(std::move(payload)), slots_(capacity) {}

  absl::Status Answer(flatbuffers::FlatBufferBuilder& fbb, const char* reply,
                      uint64_t tag) {
    fbb.Clear();
    auto root = echo::CreateEchoReply(
        fbb,
        fbb.CreateVector(reinterpret_cast<const uint8_t*>(payload_.data()),
                         payload_.size()),
        tag);
    fbb.Finish(root, echo::EchoRequestIdentifier());  // "NGEC", file-wide
    return Check(
        natsConnection_Publish(conn_->nc(), reply, fbb.GetBufferPointer(),
                               static_cast<int>(fbb.GetSize())),
        "reply");
  }

  static void OnMessage(natsConnection*, natsSubscription*, natsMsg* msg,
                        void* closure) {
    static_cast<HoldingResponder*>(closure)->Handle(msg);
    natsMsg_Destroy(msg);
  }

  void Handle(natsMsg* msg) {
    const char* reply = natsMsg_GetReply(msg);
    // nats.c puts a received payload right after the message's header
    // block, so it need not be aligned as FlatBuffers' accessors require:
    // they read a copy.
    thread_local std::string aligned;
    const int size = natsMsg_GetDataLength(msg);
    const char* raw = natsMsg_GetData(msg);
    aligned.assign(raw != nullptr ? raw : "",
                   raw != nullptr && size > 0 ? size : 0);
    const auto* data = raw != nullptr
                           ? reinterpret_cast<const uint8_t*>(aligned.data())
                           : nullptr;
    flatbuffers::Verifier verifier(data, size > 0 ? size : 0);
    if (reply == nullptr || std::strlen(reply) >= kMaxReply ||
        data == nullptr || !echo::VerifyEchoRequestBuffer(verifier)) {
      std::lock_guard<std::mutex> lock(mu_);
      ++bad_;
      return;
    }
    const uint64_t tag = echo::GetEchoRequest(data)->tag();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (held_ < hold_) {
        Slot& slot = slots_[held_++];
        std::memcpy(slot.reply, reply, std::strlen(reply) + 1);
        slot.tag = tag;
        if (held_ == hold_) cv_.notify_all();
        return;
      }
    }
    flatbuffers::FlatBufferBuilder fbb;
    if (!Answer(fbb, reply, tag).ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      ++bad_;
    }
  }

  const std::string payload_;
  std::unique_ptr<RawConnection> conn_;
  natsSubscription* sub_ = nullptr;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Slot> slots_;  // Guarded by mu_; sized (and touched) up front.
  int hold_ = 0;             // Guarded by mu_.
  int held_ = 0;             // Guarded by mu_.
  int64_t bad_ = 0;          // Guarded by mu_.
};

// Completions of a burst of calls. Shared with the calls' callbacks, so it
// outlives any that arrive late.
//
// Thread-safety: thread-safe (guarded by mu).
struct Burst {
  std::mutex mu;
  std::condition_variable cv;
  int completed = 0;
  int failed = 0;
  absl::Status error;  // the first failure
  Clock::time_point last_done;

  void Done(const absl::Status& status) {
    const Clock::time_point now = Clock::now();
    std::lock_guard<std::mutex> lock(mu);
    ++completed;
    last_done = now;
    if (!status.ok()) {
      ++failed;
      if (error.ok()) error = status;
    }
    cv.notify_all();
  }
  bool WaitFor(int n, Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_until(lock, deadline, [&] { return completed >= n; });
  }
};

// Starts `n` EchoAsync calls with tags first_tag, first_tag + 1, ...
void IssueEchoes(const echo::EchoClient& client, const std::string& payload,
                 int n, uint64_t first_tag,
                 const std::shared_ptr<Burst>& burst) {
  for (int i = 0; i < n; ++i) {
    const uint64_t tag = first_tag + i;
    auto build = [&](flatbuffers::FlatBufferBuilder& fbb) {
      return BuildEcho(fbb, payload, tag);
    };
    client.EchoAsync(build,
                     [burst, tag, size = payload.size()](
                         absl::StatusOr<Response<echo::EchoReply>> reply) {
                       burst->Done(CheckEcho(reply, size, tag));
                     });
  }
}

absl::StatusOr<Result> ScaleInFlight(const Config& cfg, int n) {
  const std::string scenario = absl::StrCat("scale_in_flight_", n);
  // Calls wait for the whole burst to arrive (bounded by --max_seconds);
  // they must not time out before it is released.
  const absl::Duration timeout = cfg.max + absl::Seconds(10);
  NATSGW_ASSIGN_OR_RETURN(
      auto responder, HoldingResponder::Start(
                          cfg, absl::StrCat("bench.", scenario, ".Echo"), n));
  NATSGW_ASSIGN_OR_RETURN(EchoClientRig rig,
                          StartEchoClient(cfg, scenario, timeout));
  const echo::EchoClient& client = *rig.client;
  // Fails the calls still pending (UNAVAILABLE) so that none outlives the
  // scenario, then reports `status`.
  auto abandon = [&](absl::Status status) {
    rig.conn->Close();
    return status;
  };
  const Clock::duration wait_bound = absl::ToChronoNanoseconds(timeout);

  // Warm-up, one call at a time (answered at once): connections, reply
  // subscription, metric series and timer thread in use before the
  // baseline, but the multiplexer's tables not yet grown by a burst (their
  // growth is part of what N calls in flight cost).
  for (int i = 0; i < std::min(cfg.warmup, 16); ++i) {
    auto burst = std::make_shared<Burst>();
    IssueEchoes(client, cfg.payload, 1, i + 1, burst);
    if (!burst->WaitFor(1, Clock::now() + wait_bound)) {
      return abandon(absl::DeadlineExceededError(
          absl::StrCat(scenario, ": a warm-up call did not complete")));
    }
    NATSGW_RETURN_IF_ERROR(burst->error);
  }

  TrimHeap();
  const int64_t rss_before = ResidentBytes();
  const std::optional<int64_t> heap_before = HeapInUseBytes();

  responder->Hold(n);
  auto burst = std::make_shared<Burst>();
  const Clock::time_point issue_start = Clock::now();
  IssueEchoes(client, cfg.payload, n, uint64_t{1} << 32, burst);
  const bool all_held =
      responder->WaitHeld(issue_start + absl::ToChronoNanoseconds(cfg.max));
  const Clock::time_point all_arrived = Clock::now();
  // Read at once, with exactly n calls in flight.
  const int64_t rss_peak = ResidentBytes();
  const std::optional<int64_t> heap_peak = HeapInUseBytes();
  const int threads = ThreadCount();
  if (!all_held) {
    const int held = responder->held();
    int completed;
    absl::Status error;
    {
      std::lock_guard<std::mutex> lock(burst->mu);
      completed = burst->completed;
      error = burst->error;
    }
    return abandon(absl::DeadlineExceededError(absl::StrCat(
        scenario, ": only ", held, " of ", n,
        " requests reached the responder within --max_seconds (", completed,
        " calls ended early",
        error.ok() ? "" : absl::StrCat(", first: ", error.ToString()), ")")));
  }

  const Clock::time_point release_start = Clock::now();
  if (absl::Status s = responder->Release(); !s.ok()) return abandon(s);
  if (!burst->WaitFor(n, Clock::now() + wait_bound)) {
    int completed;
    {
      std::lock_guard<std::mutex> lock(burst->mu);
      completed = burst->completed;
    }
    return abandon(absl::DeadlineExceededError(
        absl::StrCat(scenario, ": ", n - completed,
                     " calls did not complete after their replies were sent")));
  }
  Clock::time_point last_done;
  {
    std::lock_guard<std::mutex> lock(burst->mu);
    if (burst->failed > 0) {
      return absl::Status(
          burst->error.code(),
          absl::StrCat(scenario, ": ", burst->failed, " of ", n,
                       " calls failed, first: ", burst->error.message()));
    }
    last_done = burst->last_done;
  }
  if (const int64_t bad = responder->bad(); bad > 0) {
    return absl::InternalError(absl::StrCat(scenario, ": the responder got ",
                                            bad, " malformed requests"));
  }

  Result r = Throughput(
      scenario, n, (all_arrived - issue_start) + (last_done - release_start));
  r.figures["in_flight"] = n;
  r.figures["rss_bytes"] = static_cast<double>(rss_peak);
  r.figures["rss_delta_bytes"] = static_cast<double>(rss_peak - rss_before);
  r.figures["bytes_per_call"] = static_cast<double>(rss_peak - rss_before) / n;
  if (heap_before.has_value() && heap_peak.has_value()) {
    r.figures["heap_delta_bytes"] =
        static_cast<double>(*heap_peak - *heap_before);
    r.figures["heap_bytes_per_call"] =
        static_cast<double>(*heap_peak - *heap_before) / n;
  }
  r.figures["threads"] = threads;
  return r;
}

}  // namespace

std::vector<Scenario> ScalingScenarios() {
  using F = Comparison::Figure;
  std::vector<Scenario> list;
  for (int callers : {1, 4, 16, 64}) {
    std::vector<Comparison> compare = {{F::kOpsPerS, "rpc_sync"}};
    if (callers > 1) {
      compare.push_back({F::kOpsPerS, "scale_callers_1"});
      compare.push_back({F::kP99, "scale_callers_1"});
    }
    list.push_back({absl::StrCat("scale_callers_", callers), Pick::kThroughput,
                    false, std::move(compare), [callers](const Config& c) {
                      return ScaleCallers(c, callers);
                    }});
  }
  for (int subscribers : {1, 4, 16}) {
    std::vector<Comparison> compare;
    if (subscribers > 1) {
      compare.push_back({F::kOpsPerS, "scale_subscribers_1"});
      compare.push_back({F::kP99, "scale_subscribers_1"});
    }
    list.push_back({absl::StrCat("scale_subscribers_", subscribers),
                    Pick::kThroughput, false, std::move(compare),
                    [subscribers](const Config& c) {
                      return ScaleSubscribers(c, subscribers);
                    }});
  }
  for (int in_flight : {1, 64, 256, 1024, 4096}) {
    list.push_back(
        {absl::StrCat("scale_in_flight_", in_flight),
         Pick::kThroughput,
         false,
         {},
         [in_flight](const Config& c) { return ScaleInFlight(c, in_flight); }});
  }
  return list;
}

}  // namespace natsgw::bench
