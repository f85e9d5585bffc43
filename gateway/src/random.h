// Per-thread random numbers for IDs (trace IDs, span IDs, message IDs).
//
// Thread-safety: each thread uses its own generator; callable from any thread.
#ifndef NATSGW_GATEWAY_SRC_RANDOM_H_
#define NATSGW_GATEWAY_SRC_RANDOM_H_

#include <cstdint>

namespace natsgw::internal {

// 64 random bits. Each thread runs its own xoshiro256** generator seeded with
// 256 bits from the OS (std::random_device); a forked child reseeds, so
// parent and child never produce the same IDs. IDs must be unique across
// processes, so a deterministic seed is never used. Not for secrets.
uint64_t RandomU64();

// A uniform random number in [0, 1) (53 random bits), e.g. for backoff
// jitter.
double Random01();

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_RANDOM_H_
