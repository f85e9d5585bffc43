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
// What a send reports back (SendInfo::message_id) is a MessageId, which holds
// the ID inline so that sending a message allocates nothing for it; it reads
// as a string view:
//
//   absl::StatusOr<natsgw::SendInfo> sent = conn->Publish(subject, bytes);
//   std::string id(sent->message_id.view());
//
// Thread-safety: NewMessageId() and WriteMessageId() may be called from any
// thread concurrently (each thread draws from its own generator, seeded from
// the OS). MessageId is a value type.
#ifndef NATSGW_MESSAGE_ID_H_
#define NATSGW_MESSAGE_ID_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

#include "absl/strings/string_view.h"

namespace natsgw {

inline constexpr size_t kMessageIdLength = 22;

// A fresh random message ID (kMessageIdLength base62 characters).
std::string NewMessageId();

// NewMessageId() without an allocation: writes a fresh ID and a terminating
// NUL into `out`; returns a view of the ID (valid while `out` is).
using MessageIdBuffer = std::array<char, kMessageIdLength + 1>;
absl::string_view WriteMessageId(MessageIdBuffer& out);

// A message ID of up to kMaxBytes bytes (natsgw's limit on IDs,
// natsgw/validation.h ValidateMessageId), stored inline.
class MessageId {
 public:
  static constexpr size_t kMaxBytes = 128;

  MessageId() = default;
  // Copies `id`; an ID longer than kMaxBytes (which natsgw never sends) is
  // cut there.
  explicit MessageId(absl::string_view id);
  // A fresh random ID, as NewMessageId().
  static MessageId New();

  absl::string_view view() const { return {data_.data(), size_}; }
  operator absl::string_view() const { return view(); }
  std::string str() const { return std::string(view()); }
  // NUL-terminated.
  const char* c_str() const { return data_.data(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  friend bool operator==(const MessageId& a, const MessageId& b) {
    return a.view() == b.view();
  }
  friend bool operator==(const MessageId& a, absl::string_view b) {
    return a.view() == b;
  }
  friend std::ostream& operator<<(std::ostream& os, const MessageId& id) {
    return os << id.view();
  }

 private:
  std::array<char, kMaxBytes + 1> data_{};
  uint8_t size_ = 0;
};

}  // namespace natsgw

#endif  // NATSGW_MESSAGE_ID_H_
