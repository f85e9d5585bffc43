// Support code shared by the fuzz targets (tests/fuzz/*_fuzz.cc): a failure
// check that aborts (libFuzzer and the replay driver both report an abort as
// a crash, with the input that caused it), a reader that carves typed values
// out of the fuzzer's bytes, and a natsMsg made from raw wire bytes the way
// nats.c makes one from a received HMSG.
//
// Everything here tolerates any input: a reader past the end yields zeros and
// empty strings, never an error, so a target never rejects an input early
// and every byte can steer it.
#ifndef NATSGW_TESTS_FUZZ_FUZZ_SUPPORT_H_
#define NATSGW_TESTS_FUZZ_FUZZ_SUPPORT_H_

#include <nats/nats.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "natsgw/headers.h"

namespace natsgw::fuzz {

// Prints where and why, then aborts.
[[noreturn]] void Fail(const char* file, int line, const char* condition,
                       const std::string& detail);

// FUZZ_CHECK(cond, detail...): aborts with `detail` (absl::StrCat of the
// remaining arguments) unless `cond` holds. The detail is only built on
// failure.
#define FUZZ_CHECK(condition, ...)                                         \
  do {                                                                     \
    if (!(condition)) {                                                    \
      ::natsgw::fuzz::Fail(__FILE__, __LINE__, #condition,                 \
                           ::absl::StrCat("" __VA_OPT__(, ) __VA_ARGS__)); \
    }                                                                      \
  } while (0)

// Reads the fuzzer's input front to back.
class Input {
 public:
  Input(const uint8_t* data, size_t size)
      : data_(reinterpret_cast<const char*>(data)), size_(size) {}

  size_t remaining() const { return size_ - offset_; }
  bool empty() const { return remaining() == 0; }

  // The next byte, or 0 past the end.
  uint8_t Byte();
  // The next two bytes, little-endian (missing bytes read as 0).
  uint16_t U16();
  // The next eight bytes, little-endian (missing bytes read as 0).
  uint64_t U64();
  // Up to `n` bytes (fewer at the end).
  absl::string_view Bytes(size_t n);
  // A string whose length is the next byte (capped at what is left).
  absl::string_view ShortString() { return Bytes(Byte()); }
  // Everything not read yet.
  absl::string_view Rest() { return Bytes(remaining()); }

 private:
  const char* data_;
  size_t size_;
  size_t offset_ = 0;
};

// True if `text` holds a control byte (< 0x20 or 0x7f): what an error
// message must never carry raw, since messages end up in logs and headers.
bool HasControlByte(absl::string_view text);

// True if `status` is INVALID_ARGUMENT with a non-empty message of at most
// `max_message_bytes` and no raw control byte.
bool IsCleanInvalidArgument(const absl::Status& status,
                            size_t max_message_bytes);

// Initializes nats.c once (messages cannot be destroyed before); aborts if
// it cannot be.
void EnsureNats();

// Frees `msg` at once. natsMsg_Destroy hands a message to nats.c's
// collector thread, which frees it later: an input would then end with more
// allocations than frees, which sends libFuzzer into a full leak scan after
// every input. Only for messages that never went through a connection.
void FreeMsg(natsMsg* msg);

struct WireMsgDeleter {
  void operator()(natsMsg* msg) const { FreeMsg(msg); }
};
using WireMsgPtr = std::unique_ptr<natsMsg, WireMsgDeleter>;

// A natsMsg whose header block and payload are `header_block` and
// `payload`, created as nats.c creates a received message (header bytes
// kept raw, parsed lazily on first access). An empty header block makes a
// message without headers. Null if nats.c refuses the input.
WireMsgPtr WireMsg(absl::string_view subject, absl::string_view reply,
                   absl::string_view header_block, absl::string_view payload);

// "key:value" lines (split at the first ':'; a line without one is a key
// with an empty value): header fields straight from the input, which nats.c's
// parser has not seen yet.
Headers HeaderLines(absl::string_view text);

}  // namespace natsgw::fuzz

#endif  // NATSGW_TESTS_FUZZ_FUZZ_SUPPORT_H_
