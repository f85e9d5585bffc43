#include "natsgw/message_id.h"

#include <sys/wait.h>
#include <unistd.h>

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

TEST(MessageIdTest, ForkedChildDoesNotRepeatTheParentsIds) {
  // Both processes continue from the same generator state after fork(); the
  // child must reseed or it would produce exactly the parent's next IDs.
  NewMessageId();  // make sure this thread's generator is seeded
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string id = NewMessageId();
    const ssize_t n = write(fds[1], id.data(), id.size());
    _exit(n == static_cast<ssize_t>(id.size()) ? 0 : 1);
  }
  const std::string parent_id = NewMessageId();
  std::string child_id(kMessageIdLength, '\0');
  ASSERT_EQ(read(fds[0], child_id.data(), child_id.size()),
            static_cast<ssize_t>(kMessageIdLength));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(fds[0]);
  close(fds[1]);
  EXPECT_NE(child_id, parent_id);
}

}  // namespace
}  // namespace natsgw
