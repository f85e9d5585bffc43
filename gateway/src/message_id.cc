#include "natsgw/message_id.h"

#include "random.h"

namespace natsgw {

std::string NewMessageId() {
  static constexpr char kAlphabet[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  // Each 64-bit word is written as 11 base62 digits. 62^11 > 2^64, so the
  // mapping is injective and the ID carries all 128 random bits (the last
  // digit of each half is not uniform, which does not matter for uniqueness).
  std::string id(kMessageIdLength, '0');
  for (int half = 0; half < 2; ++half) {
    uint64_t word = internal::RandomU64();
    for (int i = 0; i < 11; ++i) {
      id[half * 11 + i] = kAlphabet[word % 62];
      word /= 62;
    }
  }
  return id;
}

}  // namespace natsgw
