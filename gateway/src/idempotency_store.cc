#include "natsgw/idempotency_store.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace natsgw {

InMemoryIdempotencyStore::InMemoryIdempotencyStore(absl::Duration ttl,
                                                   size_t max_keys)
    : ttl_(ttl), max_keys_(std::max<size_t>(max_keys, 1)) {}

absl::StatusOr<ClaimResult> InMemoryIdempotencyStore::Claim(
    absl::string_view key, absl::Duration lease) {
  if (key.empty()) {
    return absl::InvalidArgumentError("idempotency key is empty");
  }
  const absl::Time now = absl::Now();
  std::lock_guard<std::mutex> lock(mu_);
  Prune(now);
  auto [it, inserted] = entries_.try_emplace(key);
  Entry& e = it->second;
  if (!inserted && e.expires > now) {
    return e.done ? ClaimResult::kDone : ClaimResult::kBusy;
  }
  // New, or an expired entry (a claim whose holder gave up, or a committed
  // key past its TTL): take it.
  e.done = false;
  e.expires = now + lease;
  return ClaimResult::kClaimed;
}

absl::Status InMemoryIdempotencyStore::Commit(absl::string_view key) {
  const absl::Time now = absl::Now();
  std::lock_guard<std::mutex> lock(mu_);
  Entry& e = entries_[key];
  e.done = true;
  e.expires = now + ttl_;
  return absl::OkStatus();
}

absl::Status InMemoryIdempotencyStore::Release(absl::string_view key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it != entries_.end() && !it->second.done) entries_.erase(it);
  return absl::OkStatus();
}

size_t InMemoryIdempotencyStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

size_t InMemoryIdempotencyStore::evicted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return evicted_;
}

void InMemoryIdempotencyStore::Prune(absl::Time now) {
  // Expired entries are swept at most once a second (amortised O(1) per
  // claim); the size bound is enforced on every claim.
  if (now >= next_prune_) {
    next_prune_ = now + absl::Seconds(1);
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (it->second.expires <= now) {
        entries_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  if (entries_.size() < max_keys_) return;
  // Full: forget the tenth that expires first, so that a burst of new keys
  // does not pay a full scan each.
  std::vector<std::pair<absl::Time, std::string>> order;
  order.reserve(entries_.size());
  for (const auto& [key, e] : entries_) order.emplace_back(e.expires, key);
  const size_t drop = std::max<size_t>(1, entries_.size() / 10);
  std::nth_element(order.begin(), order.begin() + (drop - 1), order.end());
  for (size_t i = 0; i < drop; ++i) entries_.erase(order[i].second);
  evicted_ += drop;
}

}  // namespace natsgw
