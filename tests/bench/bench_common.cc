#include "bench_common.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "alloc_counter.h"
#include "natsgw/status_macros.h"

namespace natsgw::bench {

Result Summarize(const std::string& scenario,
                 std::vector<int64_t>& latencies_ns, Clock::duration wall) {
  Result r;
  r.scenario = scenario;
  r.ops = static_cast<int64_t>(latencies_ns.size());
  if (latencies_ns.empty()) return r;
  std::sort(latencies_ns.begin(), latencies_ns.end());
  auto pct = [&](double q) {
    size_t i = static_cast<size_t>(q * (latencies_ns.size() - 1));
    return latencies_ns[i] / 1000.0;
  };
  r.p50_us = pct(0.50);
  r.p90_us = pct(0.90);
  r.p99_us = pct(0.99);
  r.max_us = latencies_ns.back() / 1000.0;
  const double seconds = std::chrono::duration<double>(wall).count();
  r.ops_per_s = seconds > 0 ? r.ops / seconds : 0;
  return r;
}

Result Throughput(const std::string& scenario, int64_t ops,
                  Clock::duration wall) {
  Result r;
  r.scenario = scenario;
  r.ops = ops;
  const double seconds = std::chrono::duration<double>(wall).count();
  r.ops_per_s = seconds > 0 ? ops / seconds : 0;
  return r;
}

absl::Status Check(natsStatus s, absl::string_view what) {
  if (s == NATS_OK) return absl::OkStatus();
  return absl::UnavailableError(
      absl::StrCat(what, ": ", natsStatus_GetText(s)));
}

absl::StatusOr<std::unique_ptr<RawConnection>> RawConnection::Connect(
    const std::string& url, bool send_asap) {
  auto conn = std::unique_ptr<RawConnection>(new RawConnection);
  natsOptions* opts = nullptr;
  NATSGW_RETURN_IF_ERROR(Check(natsOptions_Create(&opts), "options"));
  natsOptions_SetURL(opts, url.c_str());
  natsOptions_SetSendAsap(opts, send_asap);
  natsStatus s = natsConnection_Connect(&conn->nc_, opts);
  natsOptions_Destroy(opts);
  NATSGW_RETURN_IF_ERROR(Check(s, "connect"));
  return conn;
}

RawConnection::~RawConnection() {
  if (sub_ != nullptr) {
    natsSubscription_Unsubscribe(sub_);
    natsSubscription_Destroy(sub_);
  }
  if (nc_ != nullptr) {
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
  }
}

absl::Status RawConnection::Echo(const std::string& subject) {
  NATSGW_RETURN_IF_ERROR(Check(
      natsConnection_Subscribe(&sub_, nc_, subject.c_str(), &OnEcho, nullptr),
      "subscribe"));
  return Check(natsConnection_FlushTimeout(nc_, 5000), "flush");
}

void RawConnection::OnEcho(natsConnection* nc, natsSubscription*, natsMsg* msg,
                           void*) {
  natsConnection_Publish(nc, natsMsg_GetReply(msg), natsMsg_GetData(msg),
                         natsMsg_GetDataLength(msg));
  natsMsg_Destroy(msg);
}

absl::StatusOr<Result> Measure(const std::string& scenario, int warmup,
                               int count, absl::Duration max,
                               const std::function<absl::Status()>& op) {
  for (int i = 0; i < warmup; ++i) NATSGW_RETURN_IF_ERROR(op());
  std::vector<int64_t> latencies;
  latencies.reserve(count);  // no allocation of ours inside the loop
  // Heap allocations per operation, counted process-wide over the measured
  // loop: every thread of this process counts, not just the caller's. That
  // is the point: a request's figure includes the serving side's handler and
  // reply when the server runs in this process, a publish's includes nats.c's
  // reader and flusher threads, a pub->sub message's includes the
  // subscriber's delivery; it is what one message costs on the publish,
  // handle and reply paths together. Only nats-server (another process) is
  // outside. Whatever else runs meanwhile (a timer, a metrics scrape)
  // counts too, so a figure well below 1 may be background noise. C++
  // allocations (operator new: natsgw, Abseil, prometheus-cpp, FlatBuffers,
  // the standard library) and C allocations (malloc & co: nats.c) are
  // reported apart; unavailable (figures absent) under sanitizers.
  const std::optional<AllocCounts> allocs_before = ReadAllocCounts();
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop = start + absl::ToChronoNanoseconds(max);
  for (int i = 0; i < count; ++i) {
    const Clock::time_point t0 = Clock::now();
    NATSGW_RETURN_IF_ERROR(op());
    const Clock::time_point t1 = Clock::now();
    latencies.push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
    if (t1 > stop) break;
  }
  const Clock::time_point end = Clock::now();
  const std::optional<AllocCounts> allocs_after = ReadAllocCounts();
  Result r = Summarize(scenario, latencies, end - start);
  if (allocs_before && allocs_after && r.ops > 0) {
    const AllocCounts spent = *allocs_after - *allocs_before;
    r.figures["allocs_per_op"] = static_cast<double>(spent.cxx) / r.ops;
    r.figures["mallocs_per_op"] = static_cast<double>(spent.c) / r.ops;
  }
  return r;
}

absl::StatusOr<Result> MeasureThrough(
    const std::string& scenario, int warmup, int count, absl::Duration max,
    const std::function<absl::Status()>& op,
    const std::function<absl::Status()>& flush) {
  NATSGW_ASSIGN_OR_RETURN(Result r, Measure(scenario, warmup, count, max, op));
  if (r.ops == 0) return r;
  // The flush belongs to the measured work (nats.c's flusher and reader
  // threads may still be sending the loop's messages): its allocations are
  // added to Measure()'s, over the same operations.
  const std::optional<AllocCounts> allocs_before = ReadAllocCounts();
  const Clock::time_point start = Clock::now();
  NATSGW_RETURN_IF_ERROR(flush());
  const Clock::time_point end = Clock::now();
  const std::optional<AllocCounts> allocs_after = ReadAllocCounts();
  if (allocs_before && allocs_after) {
    const AllocCounts spent = *allocs_after - *allocs_before;
    r.figures["allocs_per_op"] += static_cast<double>(spent.cxx) / r.ops;
    r.figures["mallocs_per_op"] += static_cast<double>(spent.c) / r.ops;
  }
  const double loop_s = r.ops / r.ops_per_s;
  r.ops_per_s =
      r.ops / (loop_s + std::chrono::duration<double>(end - start).count());
  return r;
}

absl::StatusOr<Result> MeasurePublish(
    const std::string& scenario, const Config& cfg,
    const std::function<absl::Status()>& op,
    const std::function<absl::Status()>& flush) {
  return MeasureThrough(scenario, cfg.warmup, cfg.publishes, cfg.max, op,
                        flush);
}

absl::StatusOr<std::unique_ptr<Connection>> Gateway(
    const Config& cfg, std::shared_ptr<SpanSink> sink) {
  ConnectionOptions options;
  options.servers = {cfg.url};
  options.span_sink = std::move(sink);
  return Connection::Create(options);
}

}  // namespace natsgw::bench
