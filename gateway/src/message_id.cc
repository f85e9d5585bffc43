#include "natsgw/message_id.h"

#include <algorithm>
#include <cstring>

#include "random.h"

namespace natsgw {

std::string NewMessageId() {
  MessageIdBuffer buffer;
  return std::string(WriteMessageId(buffer));
}

MessageId::MessageId(absl::string_view id) {
  size_ = static_cast<uint8_t>(std::min(id.size(), kMaxBytes));
  std::memcpy(data_.data(), id.data(), size_);
  data_[size_] = '\0';
}

MessageId MessageId::New() {
  MessageIdBuffer buffer;
  return MessageId(WriteMessageId(buffer));
}

absl::string_view WriteMessageId(MessageIdBuffer& out) {
  static constexpr char kAlphabet[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  static_assert(kMessageIdLength == 22);
  // Each 64-bit word is written as 11 base62 digits. 62^11 > 2^64, so the
  // mapping is injective and the ID carries all 128 random bits (the last
  // digit of each half is not uniform, which does not matter for uniqueness).
  for (int half = 0; half < 2; ++half) {
    uint64_t word = internal::RandomU64();
    for (int i = 0; i < 11; ++i) {
      out[half * 11 + i] = kAlphabet[word % 62];
      word /= 62;
    }
  }
  out[kMessageIdLength] = '\0';
  return absl::string_view(out.data(), kMessageIdLength);
}

}  // namespace natsgw
