// natsgw/kv_idempotency_store.h: an IdempotencyStore on a JetStream
// key-value bucket, so that several replicas of a consumer (and restarts of
// one) agree on which message IDs have been handled.
//
//   natsgw::KvIdempotencyOptions kv;
//   kv.bucket = "email-service-idempotency";
//   kv.ttl = absl::Hours(24);
//   NATSGW_ASSIGN_OR_RETURN(std::shared_ptr<natsgw::KvIdempotencyStore> store,
//                           natsgw::KvIdempotencyStore::Create(*js, kv));
//   consumer_options.idempotency = store;
//
// Each key is one KV entry: "claimed <expiry>" while a replica handles the
// message, "done" once committed. Claim uses the bucket's create-if-absent
// and compare-and-set operations, so two replicas never both hold a key; a
// claim past its expiry (its holder died) is taken over with compare-and-set.
// Entries expire with the bucket's TTL. Message IDs are escaped into KV key
// characters, so any valid Nats-Msg-Id is a valid key.
//
// See natsgw/idempotency_store.h for what the store does and does not
// guarantee. Expiry uses each replica's wall clock: keep the hosts' clocks
// within a small fraction of the lease (ConsumerConfig::ack_wait).
//
// Thread-safety: thread-safe. Must not outlive the JetStream it was made from.
#ifndef NATSGW_KV_IDEMPOTENCY_STORE_H_
#define NATSGW_KV_IDEMPOTENCY_STORE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "natsgw/idempotency_store.h"
#include "natsgw/jetstream.h"
#include "natsgw/stream_config.h"

namespace natsgw {

struct KvIdempotencyOptions {
  // The bucket (created if missing; an existing one must have the same TTL).
  std::string bucket;
  // How long a handled key is remembered.
  absl::Duration ttl = absl::Hours(24);
  int replicas = 1;
  StorageType storage = StorageType::kFile;
};

class KvIdempotencyStore : public IdempotencyStore {
 public:
  // INVALID_ARGUMENT for bad options; FAILED_PRECONDITION if the bucket
  // exists with another TTL; UNAVAILABLE without JetStream.
  static absl::StatusOr<std::shared_ptr<KvIdempotencyStore>> Create(
      JetStream& js, KvIdempotencyOptions options);
  ~KvIdempotencyStore() override;

  absl::StatusOr<ClaimResult> Claim(absl::string_view key,
                                    absl::Duration lease) override;
  absl::Status Commit(absl::string_view key) override;
  absl::Status Release(absl::string_view key) override;
  absl::Duration ttl() const override;

  // The KV key a message ID is stored under.
  static std::string KeyFor(absl::string_view message_id);

  class Impl;

 private:
  explicit KvIdempotencyStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace natsgw

#endif  // NATSGW_KV_IDEMPOTENCY_STORE_H_
