#include "worker_pool.h"

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "gtest/gtest.h"

namespace natsgw::internal {
namespace {

TEST(WorkerPoolTest, RunsEveryAcceptedTaskBeforeStopReturns) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(3, 1000);
    for (int i = 0; i < 500; ++i) {
      ASSERT_TRUE(pool.TrySubmit(
          [&]() -> WorkerPool::Task { return [&ran] { ran.fetch_add(1); }; }));
    }
    pool.Stop();
    EXPECT_EQ(ran.load(), 500);
    EXPECT_FALSE(pool.TrySubmit([&]() -> WorkerPool::Task { return [] {}; }));
  }
}

TEST(WorkerPoolTest, RefusesBeyondMaxInFlightWithoutTakingTheTask) {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  WorkerPool pool(1, 2);
  auto blocker = [&]() -> WorkerPool::Task {
    return [&] {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return open; });
    };
  };
  ASSERT_TRUE(pool.TrySubmit(blocker));
  ASSERT_TRUE(pool.TrySubmit(blocker));
  bool made = false;
  EXPECT_FALSE(pool.TrySubmit([&]() -> WorkerPool::Task {
    made = true;
    return [] {};
  }));
  EXPECT_FALSE(made);
  EXPECT_EQ(pool.in_flight(), 2u);
  {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
  }
  cv.notify_all();
  pool.Stop();
  EXPECT_EQ(pool.in_flight(), 0u);
}

TEST(WorkerPoolTest, StopFromInsideATaskDoesNotDeadlock) {
  auto pool = std::make_unique<WorkerPool>(2, 10);
  std::atomic<bool> done{false};
  WorkerPool* raw = pool.get();
  ASSERT_TRUE(raw->TrySubmit([&]() -> WorkerPool::Task {
    return [raw, &done] {
      EXPECT_TRUE(raw->IsWorkerThread());
      raw->Stop();
      done = true;
    };
  }));
  while (!done.load()) std::this_thread::yield();
  pool.reset();  // the detached thread holds the shared state
}

}  // namespace
}  // namespace natsgw::internal
