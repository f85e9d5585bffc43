// Process-wide counts of heap allocations, behind natsgw-bench's
// "allocs_per_op" and "mallocs_per_op" figures.
//
// Linking alloc_counter.cc into an executable replaces the global C++
// allocation functions (every form of operator new and new[]: plain,
// nothrow, aligned; and every operator delete to match) and interposes the C
// allocator in the executable (malloc, calloc, realloc, memalign,
// posix_memalign, aligned_alloc, valloc, pvalloc, free). Each allocation
// call, from any thread and any library of the process (nats.c's C code,
// libstdc++, Abseil, prometheus-cpp, FlatBuffers, natsgw), is counted once
// and forwarded to glibc's own allocator. The two kinds are counted apart:
// a C++ allocation is not also counted as a C one. Frees are not counted.
//
//   std::optional<AllocCounts> before = ReadAllocCounts();
//   DoWork();
//   std::optional<AllocCounts> after = ReadAllocCounts();
//   if (before && after) {
//     const AllocCounts spent = *after - *before;  // spent.cxx, spent.c
//   }
//
// Under AddressSanitizer, HWAddressSanitizer, ThreadSanitizer and
// MemorySanitizer the sanitizer owns the allocator: the replacement is
// compiled out and ReadAllocCounts() returns nullopt ("unavailable"), as it
// does on a C library other than glibc.
//
// Cost: one relaxed atomic add per allocation on top of glibc's allocator (a
// locked instruction on x86, some 20 cycles), so code that allocates more is
// slowed a little more while it is counted.
//
// Thread-safety: thread-safe. The counters are relaxed atomics: a snapshot
// taken while other threads allocate may include some of their allocations
// in flight and not others.
#ifndef NATSGW_TESTS_BENCH_ALLOC_COUNTER_H_
#define NATSGW_TESTS_BENCH_ALLOC_COUNTER_H_

#include <cstdint>
#include <optional>

namespace natsgw::bench {

// Allocation calls since the process started.
struct AllocCounts {
  // operator new and new[] in all forms (C++ code: natsgw, the standard
  // library, Abseil, prometheus-cpp, FlatBuffers).
  int64_t cxx = 0;
  // malloc, calloc, realloc (every call, growing or not), memalign,
  // posix_memalign, aligned_alloc, valloc, pvalloc (C code: nats.c, and
  // the C library on behalf of callers such as strdup).
  int64_t c = 0;

  friend AllocCounts operator-(const AllocCounts& a, const AllocCounts& b) {
    return AllocCounts{a.cxx - b.cxx, a.c - b.c};
  }
};

// The counts so far, or nullopt if counting is compiled out (sanitizers,
// non-glibc).
std::optional<AllocCounts> ReadAllocCounts();

}  // namespace natsgw::bench

#endif  // NATSGW_TESTS_BENCH_ALLOC_COUNTER_H_
