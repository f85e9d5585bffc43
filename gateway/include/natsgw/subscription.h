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
// normally and is the last one).
//
// Thread-safety: all methods may be called from any thread. A Subscription may
// outlive its Connection; it is then already closed.
#ifndef NATSGW_SUBSCRIPTION_H_
#define NATSGW_SUBSCRIPTION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
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
  absl::Status Unsubscribe();

  // The subject pattern and queue group this subscription was made with.
  const std::string& subject() const;
  const std::string& queue_group() const;

  // Messages that arrived faster than the handler consumed them and were
  // dropped by the client library's pending limits (also counted in
  // natsgw_errors_total{operation="subscribe",code="RESOURCE_EXHAUSTED"}).
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
