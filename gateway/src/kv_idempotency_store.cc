#include "natsgw/kv_idempotency_store.h"

#include <nats/nats.h>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "jetstream_impl.h"
#include "nats_status.h"
#include "natsgw/status_macros.h"

namespace natsgw {
namespace {

constexpr absl::string_view kDone = "done";
constexpr absl::string_view kClaimedPrefix = "claimed ";

struct EntryDeleter {
  void operator()(kvEntry* e) const { kvEntry_Destroy(e); }
};
using EntryPtr = std::unique_ptr<kvEntry, EntryDeleter>;

std::string ClaimValue(absl::Time expires) {
  return absl::StrCat(kClaimedPrefix, absl::ToUnixNanos(expires));
}

// The expiry of a "claimed <ns>" value; InfinitePast if unreadable (such a
// claim is treated as expired, so it cannot block a key forever).
absl::Time ClaimExpiry(absl::string_view value) {
  int64_t ns = 0;
  if (!absl::ConsumePrefix(&value, kClaimedPrefix) ||
      !absl::SimpleAtoi(value, &ns)) {
    return absl::InfinitePast();
  }
  return absl::FromUnixNanos(ns);
}

}  // namespace

class KvIdempotencyStore::Impl {
 public:
  Impl(KvIdempotencyOptions options, kvStore* kv)
      : options_(std::move(options)), kv_(kv) {}
  ~Impl() { kvStore_Destroy(kv_); }

  const KvIdempotencyOptions& options() const { return options_; }
  kvStore* kv() const { return kv_; }

  absl::Status Error(natsStatus s, absl::string_view what,
                     absl::string_view key) const {
    return internal::NatsError(
        s, absl::StrCat("idempotency store \"", options_.bucket, "\": ", what,
                        " key ", key));
  }

 private:
  const KvIdempotencyOptions options_;
  kvStore* const kv_;
};

std::string KvIdempotencyStore::KeyFor(absl::string_view message_id) {
  // KV keys allow [-/_=.a-zA-Z0-9], but '.' separates subject tokens (no
  // empty token allowed) and '/' is best avoided: those and every other
  // byte are written "=XX" ('=' itself included), so the mapping is
  // injective.
  std::string key;
  key.reserve(message_id.size());
  for (unsigned char c : message_id) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_') {
      key.push_back(static_cast<char>(c));
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      key.push_back('=');
      key.push_back(kHex[c >> 4]);
      key.push_back(kHex[c & 0xf]);
    }
  }
  return key;
}

absl::StatusOr<std::shared_ptr<KvIdempotencyStore>> KvIdempotencyStore::Create(
    JetStream& js, KvIdempotencyOptions options) {
  NATSGW_RETURN_IF_ERROR(ValidateJetStreamName(options.bucket, "KV bucket"));
  if (options.ttl < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        "KvIdempotencyOptions::ttl must be at least 1s");
  }
  if (options.replicas < 1 || options.replicas > 5) {
    return absl::InvalidArgumentError(
        "KvIdempotencyOptions::replicas must be 1..5");
  }
  NATSGW_RETURN_IF_ERROR(js.impl().conn_impl().CheckOpen());
  kvStore* kv = nullptr;
  natsStatus s = js_KeyValue(&kv, js.impl().js(), options.bucket.c_str());
  if (s == NATS_NOT_FOUND) {
    kvConfig c;
    kvConfig_Init(&c);
    c.Bucket = options.bucket.c_str();
    c.Description = "natsgw idempotency keys (message IDs handled)";
    c.History = 1;
    c.TTL = absl::ToInt64Nanoseconds(options.ttl);
    c.Replicas = options.replicas;
    c.StorageType = options.storage == StorageType::kMemory ? js_MemoryStorage
                                                            : js_FileStorage;
    s = js_CreateKeyValue(&kv, js.impl().js(), &c);
  }
  if (s != NATS_OK) {
    return internal::NatsError(
        s, absl::StrCat("opening KV bucket \"", options.bucket, "\""));
  }
  auto impl = std::make_unique<Impl>(std::move(options), kv);
  kvStatus* status = nullptr;
  s = kvStore_Status(&status, kv);
  if (s != NATS_OK) {
    return internal::NatsError(
        s, absl::StrCat("reading KV bucket \"", impl->options().bucket, "\""));
  }
  const absl::Duration ttl = absl::Nanoseconds(kvStatus_TTL(status));
  kvStatus_Destroy(status);
  if (ttl != impl->options().ttl) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV bucket \"", impl->options().bucket,
                     "\" exists with ttl ", absl::FormatDuration(ttl),
                     ", declared ", absl::FormatDuration(impl->options().ttl),
                     "; natsgw does not change it on its own"));
  }
  return std::shared_ptr<KvIdempotencyStore>(
      new KvIdempotencyStore(std::move(impl)));
}

KvIdempotencyStore::KvIdempotencyStore(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
KvIdempotencyStore::~KvIdempotencyStore() = default;

absl::Duration KvIdempotencyStore::ttl() const { return impl_->options().ttl; }

absl::StatusOr<ClaimResult> KvIdempotencyStore::Claim(absl::string_view id,
                                                      absl::Duration lease) {
  if (id.empty()) {
    return absl::InvalidArgumentError("idempotency key is empty");
  }
  const std::string key = KeyFor(id);
  // Two rounds: a key deleted (released) between our create and our read is
  // simply tried again.
  for (int round = 0; round < 2; ++round) {
    const std::string claim = ClaimValue(absl::Now() + lease);
    uint64_t rev = 0;
    natsStatus s = kvStore_Create(&rev, impl_->kv(), key.c_str(), claim.data(),
                                  static_cast<int>(claim.size()));
    if (s == NATS_OK) return ClaimResult::kClaimed;
    kvEntry* raw = nullptr;
    s = kvStore_Get(&raw, impl_->kv(), key.c_str());
    EntryPtr entry(raw);
    if (s == NATS_NOT_FOUND) continue;
    if (s != NATS_OK) return impl_->Error(s, "reading", key);
    const absl::string_view value(
        static_cast<const char*>(kvEntry_Value(entry.get())),
        static_cast<size_t>(kvEntry_ValueLen(entry.get())));
    if (value == kDone) return ClaimResult::kDone;
    if (ClaimExpiry(value) > absl::Now()) return ClaimResult::kBusy;
    // The holder gave up without releasing (it died): take over, unless
    // another replica does so first.
    s = kvStore_Update(&rev, impl_->kv(), key.c_str(), claim.data(),
                       static_cast<int>(claim.size()),
                       kvEntry_Revision(entry.get()));
    if (s == NATS_OK) return ClaimResult::kClaimed;
    return ClaimResult::kBusy;
  }
  return ClaimResult::kBusy;
}

absl::Status KvIdempotencyStore::Commit(absl::string_view id) {
  const std::string key = KeyFor(id);
  uint64_t rev = 0;
  natsStatus s = kvStore_Put(&rev, impl_->kv(), key.c_str(), kDone.data(),
                             static_cast<int>(kDone.size()));
  if (s != NATS_OK) return impl_->Error(s, "committing", key);
  return absl::OkStatus();
}

absl::Status KvIdempotencyStore::Release(absl::string_view id) {
  const std::string key = KeyFor(id);
  natsStatus s = kvStore_Delete(impl_->kv(), key.c_str());
  if (s != NATS_OK) return impl_->Error(s, "releasing", key);
  return absl::OkStatus();
}

}  // namespace natsgw
