// Counting replacements of the C++ and C allocation functions; see
// alloc_counter.h.
//
// Everything forwards to glibc's exported allocator entry points
// (__libc_malloc, __libc_calloc, __libc_realloc, __libc_memalign,
// __libc_valloc, __libc_pvalloc, __libc_free) rather than looking up the
// "next" malloc with dlsym(RTLD_NEXT): dlsym itself allocates (calloc)
// before it can return, which would need a bootstrap heap; the __libc_*
// functions are plain symbols resolved by the dynamic loader, so the
// replacements work from the first allocation of the process on (the
// dynamic loader's own included). Memory from any of them may be freed by
// any free, as they are one heap.
//
// operator new calls __libc_malloc, not malloc, so a C++ allocation is
// counted once, as "cxx", and never also as "c". glibc supports replacing
// malloc by ELF symbol interposition: the C library's own internal callers
// (strdup, fopen, ...) and every shared library (nats.c) reach these
// definitions because the executable comes first in symbol lookup.
#include "alloc_counter.h"

// Included before the checks below: <cstdlib> defines __GLIBC__, and
// <malloc.h> declares memalign, valloc and pvalloc, so the definitions
// below are checked against the C library's declarations.
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || \
    defined(__SANITIZE_HWADDRESS__)
#define NATSGW_ALLOC_COUNTER_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer) || __has_feature(hwaddress_sanitizer)
#define NATSGW_ALLOC_COUNTER_ENABLED 0
#endif
#endif
#if !defined(NATSGW_ALLOC_COUNTER_ENABLED)
#if defined(__GLIBC__)
#define NATSGW_ALLOC_COUNTER_ENABLED 1
#else
#define NATSGW_ALLOC_COUNTER_ENABLED 0
#endif
#endif

#if NATSGW_ALLOC_COUNTER_ENABLED

#include <errno.h>
#include <malloc.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

extern "C" {
// glibc's allocator under names that cannot be interposed by the
// definitions below (exported by libc.so.6 since GLIBC_2.2.5).
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t n, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void* __libc_valloc(size_t size);
void* __libc_pvalloc(size_t size);
void __libc_free(void* p);
}

namespace {

// One counter per cache line: C++ and C allocations often happen on
// different threads at once (a natsgw handler and nats.c's reader).
struct alignas(64) Counter {
  std::atomic<int64_t> n{0};
  void Add() { n.fetch_add(1, std::memory_order_relaxed); }
};

// Constant-initialized, so counting works before any constructor ran.
constinit Counter cxx_allocs;
constinit Counter c_allocs;

// operator new's contract: never null; on failure call the new-handler and
// retry, or throw std::bad_alloc if there is none.
void* NewImpl(std::size_t size, std::size_t alignment) {
  cxx_allocs.Add();
  while (true) {
    void* p =
        alignment == 0 ? __libc_malloc(size) : __libc_memalign(alignment, size);
    if (p != nullptr) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* NewNothrowImpl(std::size_t size, std::size_t alignment) noexcept {
  try {
    return NewImpl(size, alignment);
  } catch (...) {
    return nullptr;
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// C++: the replaceable global allocation and deallocation functions.

void* operator new(std::size_t size) { return NewImpl(size, 0); }
void* operator new[](std::size_t size) { return NewImpl(size, 0); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return NewNothrowImpl(size, 0);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return NewNothrowImpl(size, 0);
}
void* operator new(std::size_t size, std::align_val_t al) {
  return NewImpl(size, static_cast<std::size_t>(al));
}
void* operator new[](std::size_t size, std::align_val_t al) {
  return NewImpl(size, static_cast<std::size_t>(al));
}
void* operator new(std::size_t size, std::align_val_t al,
                   const std::nothrow_t&) noexcept {
  return NewNothrowImpl(size, static_cast<std::size_t>(al));
}
void* operator new[](std::size_t size, std::align_val_t al,
                     const std::nothrow_t&) noexcept {
  return NewNothrowImpl(size, static_cast<std::size_t>(al));
}

void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::size_t) noexcept { __libc_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept {
  __libc_free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  __libc_free(p);
}
void operator delete(void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  __libc_free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  __libc_free(p);
}
void operator delete(void* p, std::align_val_t,
                     const std::nothrow_t&) noexcept {
  __libc_free(p);
}
void operator delete[](void* p, std::align_val_t,
                       const std::nothrow_t&) noexcept {
  __libc_free(p);
}

// ---------------------------------------------------------------------------
// C: interposed in the executable (exported to shared libraries because
// they reference these names).

extern "C" {

void* malloc(size_t size) noexcept {
  c_allocs.Add();
  return __libc_malloc(size);
}

void* calloc(size_t n, size_t size) noexcept {
  c_allocs.Add();
  return __libc_calloc(n, size);
}

void* realloc(void* p, size_t size) noexcept {
  c_allocs.Add();
  return __libc_realloc(p, size);
}

void free(void* p) noexcept { __libc_free(p); }

void* memalign(size_t alignment, size_t size) noexcept {
  c_allocs.Add();
  return __libc_memalign(alignment, size);
}

void* aligned_alloc(size_t alignment, size_t size) noexcept {
  c_allocs.Add();
  return __libc_memalign(alignment, size);
}

int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  c_allocs.Add();
  // POSIX: a power of two multiple of sizeof(void*), else EINVAL with
  // *out untouched.
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0 ||
      alignment == 0) {
    return EINVAL;
  }
  void* p = __libc_memalign(alignment, size);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

void* valloc(size_t size) noexcept {
  c_allocs.Add();
  return __libc_valloc(size);
}

void* pvalloc(size_t size) noexcept {
  c_allocs.Add();
  return __libc_pvalloc(size);
}

}  // extern "C"

namespace natsgw::bench {

std::optional<AllocCounts> ReadAllocCounts() {
  return AllocCounts{cxx_allocs.n.load(std::memory_order_relaxed),
                     c_allocs.n.load(std::memory_order_relaxed)};
}

}  // namespace natsgw::bench

#else  // !NATSGW_ALLOC_COUNTER_ENABLED

namespace natsgw::bench {

// The sanitizer's (or another C library's) allocator is left alone.
std::optional<AllocCounts> ReadAllocCounts() { return std::nullopt; }

}  // namespace natsgw::bench

#endif  // NATSGW_ALLOC_COUNTER_ENABLED
