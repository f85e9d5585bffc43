#include "random.h"

#include <pthread.h>

#include <atomic>
#include <random>

namespace natsgw::internal {
namespace {

// Bumped in a forked child so that every thread there reseeds.
std::atomic<uint64_t> g_fork_generation{0};

void OnForkInChild() {
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
}

uint64_t RotateLeft(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// xoshiro256** (Blackman and Vigna): fast, 256-bit state, passes BigCrush.
// Used instead of absl::BitGen because Debian's Abseil random library is not
// ThreadSanitizer-instrumented and makes every TSan run report its seed pool.
class Generator {
 public:
  uint64_t Next() {
    const uint64_t generation =
        g_fork_generation.load(std::memory_order_relaxed);
    if (generation != seeded_generation_ || !seeded_) Seed(generation);
    const uint64_t result = RotateLeft(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = RotateLeft(s_[3], 45);
    return result;
  }

 private:
  void Seed(uint64_t generation) {
    static const bool kAtForkRegistered = [] {
      return pthread_atfork(nullptr, nullptr, &OnForkInChild) == 0;
    }();
    (void)kAtForkRegistered;
    std::random_device device;  // getrandom(2) on Linux
    do {
      for (uint64_t& word : s_) {
        word = (static_cast<uint64_t>(device()) << 32) | device();
      }
    } while ((s_[0] | s_[1] | s_[2] | s_[3]) ==
             0);  // all-zero is a fixed point
    seeded_ = true;
    seeded_generation_ = generation;
  }

  uint64_t s_[4] = {0, 0, 0, 0};
  bool seeded_ = false;
  uint64_t seeded_generation_ = 0;
};

}  // namespace

uint64_t RandomU64() {
  thread_local Generator generator;
  return generator.Next();
}

double Random01() { return static_cast<double>(RandomU64() >> 11) * 0x1.0p-53; }

}  // namespace natsgw::internal
