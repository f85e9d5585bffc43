#include "natsgw/message_id.h"

#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace natsgw {
namespace {

bool IsBase62(const std::string& s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
          (c >= 'A' && c <= 'Z'))) {
      return false;
    }
  }
  return true;
}

TEST(MessageIdTest, HasFixedLengthAndAlphabet) {
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewMessageId();
    ASSERT_EQ(id.size(), kMessageIdLength);
    ASSERT_TRUE(IsBase62(id)) << id;
  }
}

TEST(MessageIdTest, IsUniqueAcrossThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  std::mutex mu;
  absl::flat_hash_set<std::string> seen;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      std::vector<std::string> ids;
      for (int i = 0; i < kPerThread; ++i) ids.push_back(NewMessageId());
      std::lock_guard<std::mutex> lock(mu);
      for (auto& id : ids) seen.insert(std::move(id));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(seen.size(), static_cast<size_t>(kThreads * kPerThread));
}

}  // namespace
}  // namespace natsgw
