// VerifyLimits for the FlatBuffers fuzz targets, chosen by one input byte.
#ifndef NATSGW_TESTS_FUZZ_VERIFY_LIMITS_H_
#define NATSGW_TESTS_FUZZ_VERIFY_LIMITS_H_

#include <cstddef>
#include <cstdint>

#include "natsgw/verified.h"

namespace natsgw::fuzz {

// Below 0x80 natsgw's defaults; otherwise tight limits that valid buffers of
// the schemas can break, so that every rule's rejection path is reached:
// depth 1-4 (bits 0-1), 1-8 tables (bits 2-4), 8, 32, 56 or 80 bytes
// (bits 5-6).
inline VerifyLimits LimitsFromByte(uint8_t b) {
  VerifyLimits limits;
  if ((b & 0x80) == 0) return limits;
  limits.max_depth = 1 + (b & 0x03);
  limits.max_tables = 1 + ((b >> 2) & 0x07);
  limits.max_size_bytes = 8 + size_t{24} * ((b >> 5) & 0x03);
  return limits;
}

// Limits no buffer built from a fuzz input reaches: for re-verifying what
// natsgw or the target itself built.
inline VerifyLimits LooseLimits() {
  VerifyLimits limits;
  limits.max_depth = 64;
  limits.max_tables = 1'000'000;
  limits.max_size_bytes = size_t{1} << 30;
  return limits;
}

}  // namespace natsgw::fuzz

#endif  // NATSGW_TESTS_FUZZ_VERIFY_LIMITS_H_
