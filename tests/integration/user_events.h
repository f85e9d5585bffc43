// integration/user_events.h: the user service's side of the e-mail
// contract, for tests that drive the real email-service binary.
//
// Thread-compatible free function; header-only (the including test links
// natsgw::gateway and natsgw::schemas).
#ifndef NATSGW_TESTS_INTEGRATION_USER_EVENTS_H_
#define NATSGW_TESTS_INTEGRATION_USER_EVENTS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "flatbuffers/flatbuffers.h"
#include "natsgw/schemas/users_natsgw.h"
#include "natsgw/stream_publisher.h"

namespace natsgw::testing {

// Stores UserRegistered events for users "u-0" .. "u-<count - 1>" in stream
// USERS, each with the message ID the user service derives from the user
// ("user-registered-u-<i>"), as the email-service expects them. The first
// failed publish ends it.
inline absl::Status PublishUsersRegistered(StreamPublisher& publisher,
                                           int count) {
  for (int i = 0; i < count; ++i) {
    const std::string user_id = absl::StrCat("u-", i);
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(users::CreateUserRegisteredDirect(
                   fbb, user_id.c_str(),
                   absl::StrCat("user", i, "@example.com").c_str(), "User",
                   absl::ToUnixMillis(absl::Now())),
               users::RegisterUserRequestIdentifier());
    StreamPublishOptions o;
    o.message_id = absl::StrCat("user-registered-", user_id);
    absl::StatusOr<PublishAck> ack = publisher.Publish(
        "users.events.UserRegistered",
        absl::string_view(reinterpret_cast<const char*>(fbb.GetBufferPointer()),
                          fbb.GetSize()),
        o);
    if (!ack.ok()) {
      return absl::Status(ack.status().code(),
                          absl::StrCat(user_id, ": ", ack.status().message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace natsgw::testing

#endif  // NATSGW_TESTS_INTEGRATION_USER_EVENTS_H_
