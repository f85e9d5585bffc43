// natsgw/message_id.h: unique message identifiers.
//
// Every message natsgw sends carries `Nats-Msg-Id`. Unless the caller supplies
// one (JetStream de-duplication needs a deterministic ID per logical message),
// natsgw generates 22 characters of base62 (0-9, A-Z, a-z) from 128 random
// bits, the same alphabet and length as a NATS NUID, so IDs are safe in
// subjects, headers and logs.
//
//   std::string id = natsgw::NewMessageId();  // e.g. "4ZKpNq1bC0mXxq9oTrW2dL"
//
// Thread-safety: NewMessageId() may be called from any thread concurrently
// (each thread draws from its own generator, seeded from the OS).
#ifndef NATSGW_MESSAGE_ID_H_
#define NATSGW_MESSAGE_ID_H_

#include <cstddef>
#include <string>

namespace natsgw {

inline constexpr size_t kMessageIdLength = 22;

// A fresh random message ID (kMessageIdLength base62 characters).
std::string NewMessageId();

}  // namespace natsgw

#endif  // NATSGW_MESSAGE_ID_H_
