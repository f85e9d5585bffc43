// InMemoryIdempotencyStore: the claim protocol, expiry, release and the size
// bound. The internal Scheduler that drives retries and heartbeats.
#include "natsgw/idempotency_store.h"

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "scheduler.h"

namespace natsgw {
namespace {

TEST(InMemoryIdempotencyStoreTest, ClaimCommitThenDone) {
  InMemoryIdempotencyStore store(absl::Hours(1));
  EXPECT_EQ(*store.Claim("m-1", absl::Minutes(1)), ClaimResult::kClaimed);
  EXPECT_EQ(*store.Claim("m-1", absl::Minutes(1)), ClaimResult::kBusy);
  ASSERT_TRUE(store.Commit("m-1").ok());
  EXPECT_EQ(*store.Claim("m-1", absl::Minutes(1)), ClaimResult::kDone);
  EXPECT_EQ(*store.Claim("m-2", absl::Minutes(1)), ClaimResult::kClaimed);
  EXPECT_EQ(store.Claim("", absl::Minutes(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(InMemoryIdempotencyStoreTest, ReleasedOrExpiredClaimsCanBeTakenAgain) {
  InMemoryIdempotencyStore store(absl::Hours(1));
  ASSERT_EQ(*store.Claim("m-1", absl::Minutes(1)), ClaimResult::kClaimed);
  ASSERT_TRUE(store.Release("m-1").ok());
  EXPECT_EQ(*store.Claim("m-1", absl::Minutes(1)), ClaimResult::kClaimed);
  // A claim whose holder died expires with its lease.
  ASSERT_EQ(*store.Claim("m-2", absl::Milliseconds(1)), ClaimResult::kClaimed);
  absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(*store.Claim("m-2", absl::Minutes(1)), ClaimResult::kClaimed);
  // Release never forgets a committed key.
  ASSERT_TRUE(store.Commit("m-1").ok());
  ASSERT_TRUE(store.Release("m-1").ok());
  EXPECT_EQ(*store.Claim("m-1", absl::Minutes(1)), ClaimResult::kDone);
}

TEST(InMemoryIdempotencyStoreTest, CommittedKeysExpireAfterTheTtl) {
  InMemoryIdempotencyStore store(absl::Milliseconds(1));
  ASSERT_EQ(*store.Claim("m-1", absl::Minutes(1)), ClaimResult::kClaimed);
  ASSERT_TRUE(store.Commit("m-1").ok());
  absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(*store.Claim("m-1", absl::Minutes(1)), ClaimResult::kClaimed);
}

TEST(InMemoryIdempotencyStoreTest, StaysWithinItsSizeBoundAndCountsEvictions) {
  InMemoryIdempotencyStore store(absl::Hours(1), /*max_keys=*/100);
  for (int i = 0; i < 1000; ++i) {
    const std::string key = "k" + std::to_string(i);
    ASSERT_EQ(*store.Claim(key, absl::Minutes(1)), ClaimResult::kClaimed);
    ASSERT_TRUE(store.Commit(key).ok());
  }
  EXPECT_LE(store.size(), 100u);
  EXPECT_GE(store.evicted(), 900u);
  // The newest keys are the ones kept.
  EXPECT_EQ(*store.Claim("k999", absl::Minutes(1)), ClaimResult::kDone);
}

TEST(InMemoryIdempotencyStoreTest, ExactlyOneOfManyConcurrentClaimersWins) {
  InMemoryIdempotencyStore store(absl::Hours(1));
  std::atomic<int> winners{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (*store.Claim("k" + std::to_string(i), absl::Minutes(1)) ==
            ClaimResult::kClaimed) {
          ++winners;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(winners.load(), 200);
}

TEST(SchedulerTest, RunsCallbacksInTimeOrder) {
  std::mutex mu;
  std::vector<int> order;
  absl::Notification done;
  // Declared last, so its thread has ended before what it writes goes away.
  internal::Scheduler scheduler;
  const absl::Time now = absl::Now();
  scheduler.RunAt(now + absl::Milliseconds(20), [&] {
    {
      std::lock_guard<std::mutex> lock(mu);
      order.push_back(2);
    }
    done.Notify();
  });
  scheduler.RunAt(now + absl::Milliseconds(5), [&] {
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(1);
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  scheduler.Stop();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(SchedulerTest, StopDropsWhatIsNotDueAndRefusesMore) {
  std::atomic<bool> ran{false};
  auto scheduler = std::make_unique<internal::Scheduler>();
  scheduler->RunAt(absl::Now() + absl::Hours(1), [&] { ran = true; });
  scheduler->Stop();
  EXPECT_FALSE(scheduler->RunAt(absl::Now(), [&] { ran = true; }));
  scheduler.reset();
  EXPECT_FALSE(ran.load());
}

}  // namespace
}  // namespace natsgw
