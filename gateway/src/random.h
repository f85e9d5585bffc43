// Per-thread random numbers for IDs (trace IDs, span IDs, message IDs).
//
// Thread-safety: each thread uses its own generator; callable from any thread.
#ifndef NATSGW_GATEWAY_SRC_RANDOM_H_
#define NATSGW_GATEWAY_SRC_RANDOM_H_

#include <cstdint>

namespace natsgw::internal {

// 64 random bits from a generator seeded from the OS entropy source. IDs built
// from these must be unique across processes, so a deterministic seed is never
// used.
uint64_t RandomU64();

}  // namespace natsgw::internal

#endif  // NATSGW_GATEWAY_SRC_RANDOM_H_
