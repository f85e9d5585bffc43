#include "fuzz_support.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_split.h"
#include "nats_status.h"

namespace natsgw::fuzz {

void Fail(const char* file, int line, const char* condition,
          const std::string& detail) {
  std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n", file, line,
               condition, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

uint8_t Input::Byte() {
  if (offset_ >= size_) return 0;
  return static_cast<uint8_t>(data_[offset_++]);
}

uint16_t Input::U16() {
  const uint16_t lo = Byte();
  const uint16_t hi = Byte();
  return static_cast<uint16_t>(lo | hi << 8);
}

uint64_t Input::U64() {
  uint64_t value = 0;
  for (int i = 0; i < 8; ++i) value |= uint64_t{Byte()} << (8 * i);
  return value;
}

absl::string_view Input::Bytes(size_t n) {
  n = std::min(n, remaining());
  absl::string_view out(data_ + offset_, n);
  offset_ += n;
  return out;
}

bool HasControlByte(absl::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b < 0x20 || b == 0x7f;
  });
}

bool IsCleanInvalidArgument(const absl::Status& status,
                            size_t max_message_bytes) {
  return status.code() == absl::StatusCode::kInvalidArgument &&
         !status.message().empty() &&
         status.message().size() <= max_message_bytes &&
         !HasControlByte(status.message());
}

void EnsureNats() {
  static const bool ok = internal::EnsureNatsLibrary().ok();
  FUZZ_CHECK(ok, "nats.c could not be initialized");
}

namespace {

// nats.c's constructor of received messages: exported by libnats but not
// declared in its public headers (gateway/src/nats_message.cc uses it the
// same way, for sending).
using NatsMsgCreateFn = natsStatus (*)(natsMsg** msg, const char* subject,
                                       int subject_len, const char* reply,
                                       int reply_len, const char* buf,
                                       int buf_len, int header_len);

NatsMsgCreateFn MsgCreate() {
  static const NatsMsgCreateFn create = [] {
    auto fn = reinterpret_cast<NatsMsgCreateFn>(
        dlsym(RTLD_DEFAULT, "natsMsg_create"));
    // Without it no header block can be fed raw; that is an environment
    // problem, and passing silently would test nothing.
    FUZZ_CHECK(fn != nullptr, "libnats exports no natsMsg_create");
    return fn;
  }();
  return create;
}

// nats.c's synchronous free of a message, exported like natsMsg_create.
using NatsMsgFreeFn = void (*)(void* msg);

NatsMsgFreeFn MsgFree() {
  static const NatsMsgFreeFn free_msg = [] {
    auto fn =
        reinterpret_cast<NatsMsgFreeFn>(dlsym(RTLD_DEFAULT, "natsMsg_free"));
    FUZZ_CHECK(fn != nullptr, "libnats exports no natsMsg_free");
    return fn;
  }();
  return free_msg;
}

}  // namespace

void FreeMsg(natsMsg* msg) {
  if (msg != nullptr) MsgFree()(msg);
}

WireMsgPtr WireMsg(absl::string_view subject, absl::string_view reply,
                   absl::string_view header_block, absl::string_view payload) {
  EnsureNats();
  std::string buffer;
  buffer.reserve(header_block.size() + payload.size());
  buffer.append(header_block.data(), header_block.size());
  buffer.append(payload.data(), payload.size());
  natsMsg* msg = nullptr;
  const natsStatus s = MsgCreate()(
      &msg, subject.data(), static_cast<int>(subject.size()),
      reply.empty() ? nullptr : reply.data(), static_cast<int>(reply.size()),
      buffer.data(), static_cast<int>(buffer.size()),
      static_cast<int>(header_block.size()));
  if (s != NATS_OK) return nullptr;
  return WireMsgPtr(msg);
}

Headers HeaderLines(absl::string_view text) {
  Headers headers;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      headers.Add(line, "");
    } else {
      headers.Add(line.substr(0, colon), line.substr(colon + 1));
    }
  }
  return headers;
}

}  // namespace natsgw::fuzz
