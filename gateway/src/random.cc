#include "random.h"

#include "absl/random/random.h"

namespace natsgw::internal {

uint64_t RandomU64() {
  // absl::BitGen is seeded from the OS on construction in each thread.
  thread_local absl::BitGen gen;
  return absl::Uniform<uint64_t>(gen);
}

}  // namespace natsgw::internal
