// natsgw/idempotency_store.h: consumer-side idempotency, keyed on the message
// ID. At-least-once delivery means a handler can see a message again (a lost
// ack, a crash before the ack, a producer's replay); the store remembers which
// message IDs have been handled so the side effect happens once.
//
//   // One consumer process: keys in memory, kept for an hour.
//   auto store = std::make_shared<natsgw::InMemoryIdempotencyStore>(
//       absl::Hours(1));
//   // Several replicas of a consumer: a JetStream KV bucket they share
//   // (natsgw/kv_idempotency_store.h).
//
// The protocol, as StreamConsumer drives it for each delivery:
//   Claim(key, lease) -> kClaimed: run the handler, then Commit(key) on
//                        success or Release(key) on failure;
//                     -> kDone:    handled before; acknowledge, skip the
//                        handler;
//                     -> kBusy:    another replica holds an unexpired claim
//                        (it is handling the message right now); redeliver
//                        later.
// A claim whose holder died expires after `lease` and can then be taken over.
//
// Limits, stated precisely: the store makes a *redelivered* or *republished*
// message skip its side effect once the first handling committed. A process
// that crashes after the side effect but before Commit leaves a claim that
// expires, and the message is handled again: closing that window needs a side
// effect that is itself idempotent (keyed by the same message ID) or written
// atomically with the key. Keys are remembered for ttl(); a copy arriving
// later is handled again.
//
// Thread-safety: implementations must be thread-safe.
#ifndef NATSGW_IDEMPOTENCY_STORE_H_
#define NATSGW_IDEMPOTENCY_STORE_H_

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace natsgw {

enum class ClaimResult {
  kClaimed,  // this caller now holds the key: go ahead
  kDone,     // handled and committed before: skip
  kBusy,     // someone else holds an unexpired claim: try later
};

class IdempotencyStore {
 public:
  virtual ~IdempotencyStore() = default;

  // Claims `key` for `lease`. Errors (e.g. the shared store unreachable) mean
  // "unknown": the caller must not run the side effect.
  virtual absl::StatusOr<ClaimResult> Claim(absl::string_view key,
                                            absl::Duration lease) = 0;
  // Marks the claimed key as handled; it is remembered for ttl().
  virtual absl::Status Commit(absl::string_view key) = 0;
  // Gives a claim up (the handling failed and may be retried).
  virtual absl::Status Release(absl::string_view key) = 0;
  // How long a committed key is remembered.
  virtual absl::Duration ttl() const = 0;
};

// Keys in this process's memory. Committed keys expire after `ttl`; at most
// `max_keys` are kept (the oldest-expiring are forgotten first when full, and
// counted in evicted()).
//
// Thread-safety: thread-safe.
class InMemoryIdempotencyStore : public IdempotencyStore {
 public:
  explicit InMemoryIdempotencyStore(absl::Duration ttl,
                                    size_t max_keys = 1'000'000);

  absl::StatusOr<ClaimResult> Claim(absl::string_view key,
                                    absl::Duration lease) override;
  absl::Status Commit(absl::string_view key) override;
  absl::Status Release(absl::string_view key) override;
  absl::Duration ttl() const override { return ttl_; }

  size_t size() const;
  size_t evicted() const;

 private:
  struct Entry {
    bool done = false;
    absl::Time expires;
  };
  // Drops expired entries, and the oldest ones beyond max_keys_.
  void Prune(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const absl::Duration ttl_;
  const size_t max_keys_;
  mutable std::mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  absl::Time next_prune_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  size_t evicted_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace natsgw

#endif  // NATSGW_IDEMPOTENCY_STORE_H_
