// A plain nats.c client for tests that must see or produce exactly what is on
// the wire, bypassing natsgw: a wildcard "wire tap" subscriber, and senders of
// hand-made (possibly malformed) headers.
//
// Thread-safety: thread-safe; the received list is guarded by a mutex.
#ifndef NATSGW_TESTS_INTEGRATION_RAW_NATS_CLIENT_H_
#define NATSGW_TESTS_INTEGRATION_RAW_NATS_CLIENT_H_

#include <nats/nats.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace natsgw::testing {

struct RawMessage {
  std::string subject;
  std::string reply;
  std::string data;
  std::multimap<std::string, std::string> headers;  // exact keys as received
};

class RawNatsClient {
 public:
  static absl::StatusOr<std::unique_ptr<RawNatsClient>> Connect(
      const std::string& url);
  ~RawNatsClient();

  // Records every message on `subject` (wildcards allowed).
  absl::Status Tap(const std::string& subject);
  // Serves `subject` by replying with `data` and `headers` to each request.
  absl::Status Respond(const std::string& subject, std::string data,
                       std::multimap<std::string, std::string> headers);
  absl::Status Publish(const std::string& subject, const std::string& data,
                       const std::multimap<std::string, std::string>& headers,
                       const std::string& reply = "");
  absl::StatusOr<RawMessage> Request(
      const std::string& subject, const std::string& data,
      const std::multimap<std::string, std::string>& headers,
      absl::Duration timeout);
  absl::Status Flush();

  std::vector<RawMessage> received() const;
  // Waits until at least `n` messages were recorded or `timeout` passes.
  bool WaitForCount(size_t n, absl::Duration timeout) const;

 private:
  RawNatsClient() = default;
  static void OnTap(natsConnection*, natsSubscription*, natsMsg* msg, void* c);
  static void OnRequest(natsConnection*, natsSubscription*, natsMsg* msg,
                        void* c);
  // nats.c's "no more callbacks" signal of a subscription.
  static void OnComplete(void* c);
  // Registers `sub` (created by this object) for OnComplete.
  absl::Status Track(natsSubscription* sub);

  natsConnection* nc_ = nullptr;
  std::vector<natsSubscription*> subs_;
  std::string respond_data_;
  std::multimap<std::string, std::string> respond_headers_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::vector<RawMessage> received_ ABSL_GUARDED_BY(mu_);
  // Subscriptions whose callbacks may still run; the destructor waits for
  // zero so that no callback touches a destroyed member.
  int live_subs_ ABSL_GUARDED_BY(mu_) = 0;
};

RawMessage ToRawMessage(natsMsg* msg);

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_INTEGRATION_RAW_NATS_CLIENT_H_
