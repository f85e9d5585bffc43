// natsgw/subscription.h: the handle that keeps a subscription (or a served
// endpoint) alive.
//
//   absl::StatusOr<std::unique_ptr<natsgw::Subscription>> sub =
//       conn->Subscribe("users.events.UserRegistered", "email", handler);
//   ...
//   sub->reset();   // unsubscribes; the handler is not called afterwards
//
// Destroying the handle (or calling Unsubscribe) stops delivery and waits
// until a handler call in progress on another thread has returned, so that
// whatever the handler captured may be freed right after. Called from inside
// the subscription's own handler, it does not wait (the running call finishes
// normally and is the last one). With a task queue (SubscribeOptions::workers
// > 0) messages still waiting for a worker are discarded (CANCELLED, counted)
// and the handler calls running on other workers are waited for; a served
// endpoint still answers the requests it had accepted.
//
// To shut down without losing what has already arrived, Drain first:
//
//   absl::Status drained = sub->Drain(absl::Seconds(10));
//   // OK: every message delivered to this process was handled.
//   // DEADLINE_EXCEEDED: some were not (counted and logged), see message.
//
// Thread-safety: all methods may be called from any thread. A Subscription may
// outlive its Connection; it is then already closed.
#ifndef NATSGW_SUBSCRIPTION_H_
#define NATSGW_SUBSCRIPTION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "natsgw/endpoint_stats.h"

namespace natsgw {

namespace internal {
class SubscriptionCore;
}  // namespace internal

class Subscription {
 public:
  explicit Subscription(std::shared_ptr<internal::SubscriptionCore> core);
  ~Subscription();

  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // Stops delivery (see the file comment). Idempotent; OK if already closed.
  // If another thread is ending the subscription (Unsubscribe, Drain, or the
  // Connection closing), returns once that has finished.
  absl::Status Unsubscribe();

  // Ends the subscription gracefully: stops intake from the server (the
  // server is told at once; messages already on their way or pending in the
  // client library are still delivered), lets queued and running handler
  // calls finish within `timeout`, then ends like Unsubscribe. Messages
  // still waiting when `timeout` passes are discarded with CANCELLED and
  // counted (natsgw_errors_total{operation="subscribe",code="CANCELLED"},
  // dropped(), the task queue's cancelled outcome) and logged; handler calls
  // already running are always waited for. Returns OK if everything that
  // arrived was handled, DEADLINE_EXCEEDED naming how many messages were
  // not, or the error of talking to the server (the subscription is then
  // ended anyway). Blocks the calling thread for up to `timeout` plus the
  // running handlers' time; must not be called from the subscription's own
  // handler (FAILED_PRECONDITION: it would wait for itself). Later calls
  // (and Unsubscribe) are no-ops returning OK. A served endpoint drains the
  // same way; the requests it cannot handle in time are answered CANCELLED.
  absl::Status Drain(absl::Duration timeout);

  // The subject pattern and queue group this subscription was made with.
  const std::string& subject() const;
  const std::string& queue_group() const;

  // Messages that arrived faster than the handler consumed them and were
  // dropped by the client library's pending limits (also counted in
  // natsgw_errors_total{operation="subscribe",code="RESOURCE_EXHAUSTED"}),
  // plus, with SubscribeOptions::workers > 0, messages the task queue
  // discarded instead of handling (overflow, shutdown, drain timeout; also
  // counted in natsgw_errors_total{operation="subscribe"} by reason).
  int64_t dropped() const;

  bool active() const;

  // Served endpoints (Connection::Serve): what the endpoint has done since it
  // started or since ResetStats(). All zero for plain subscriptions.
  EndpointStats stats() const;
  void ResetStats();

 private:
  std::shared_ptr<internal::SubscriptionCore> core_;
};

}  // namespace natsgw

#endif  // NATSGW_SUBSCRIPTION_H_
