// natsgw/serve_options.h: how a served endpoint runs its handler and what it
// does when requests arrive faster than they are handled.
//
//   natsgw::ServeOptions opts;
//   opts.workers = 4;          // handlers run on 4 threads of their own
//   opts.max_in_flight = 64;   // beyond 64 queued + running: shed
//   conn->Serve("users.RegisterUser", "q", handler, opts);
//
// Inline (workers == 0, the default): the handler runs on the endpoint's
// delivery thread, one request at a time, in arrival order. Requests wait in
// the client library's pending queue; with max_in_flight > 0 those beyond the
// limit are answered RESOURCE_EXHAUSTED at once instead of waiting.
//
// Worker pool (workers > 0): the delivery thread only hands requests to a
// natsgw::TaskQueue (natsgw/task_queue.h) named after the endpoint's metric
// subject and served by `workers` threads (the buffered-channel + workers
// pattern), so up to `workers` requests are handled concurrently and up to
// max_in_flight - workers wait. When max_in_flight requests are already
// queued or running, `overflow` decides: with kReject (the default) a new
// request is answered RESOURCE_EXHAUSTED at once (load shedding); with kBlock
// the delivery thread first waits up to block_timeout for room; with
// kDropOldest the request that has waited longest is answered
// RESOURCE_EXHAUSTED instead and the new one queued. Each request answered
// so is counted in natsgw_server_shed_total (and in the queue's
// natsgw_task_queue_tasks_total); the caller may retry another instance.
//
// Either way a request whose deadline passed before its handler would start
// is answered DEADLINE_EXCEEDED without running the handler and counted in
// natsgw_server_expired_total. The deadline is the caller's budget counted
// from when natsgw takes the request off the connection: with a worker pool
// that is on arrival, so time spent queued behind busy workers counts; inline,
// it is when the handler is about to run, because nats.c does not timestamp
// the messages waiting in its pending queue, so time spent there behind a
// slow handler does not count. Endpoints that must not run stale work under
// overload should use a worker pool (or bound the wait with max_in_flight).
//
// Thread-safety: a value type.
#ifndef NATSGW_SERVE_OPTIONS_H_
#define NATSGW_SERVE_OPTIONS_H_

#include <string>

#include "absl/time/time.h"
#include "natsgw/task_queue.h"

namespace natsgw {

struct ServeOptions {
  // Handler threads; 0 runs the handler inline on the delivery thread.
  int workers = 0;
  // Requests queued or running at once before new ones are shed with
  // RESOURCE_EXHAUSTED. 0 means: 4 * workers with a pool, unlimited inline.
  int max_in_flight = 0;
  // Label used for this endpoint in metrics instead of the subject. Set it
  // when the subject embeds an ID, e.g. a per-instance control subject, to
  // keep label cardinality bounded.
  std::string metric_subject;
  // What requests to this endpoint are named in their SERVER spans: the span
  // name and rpc.method (natsgw/span_sink.h). Typed services set
  // "<package.Service>/<Method>", the name the typed client's CLIENT span
  // carries. Default: metric_subject, else the subject.
  std::string rpc_method;
  // With workers > 0: what happens to a request arriving when max_in_flight
  // requests are queued or running (see the file comment). Inline endpoints
  // always shed.
  OverflowPolicy overflow = OverflowPolicy::kReject;
  // kBlock only: how long the delivery thread waits for room before the
  // request is shed; >= 0. Requests behind it wait in the client library.
  absl::Duration block_timeout = absl::Milliseconds(100);
};

}  // namespace natsgw

#endif  // NATSGW_SERVE_OPTIONS_H_
