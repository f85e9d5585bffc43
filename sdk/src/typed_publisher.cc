#include "natsgw/typed_publisher.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "failure_count.h"
#include "natsgw/validation.h"

namespace natsgw::internal {

absl::StatusOr<std::shared_ptr<const PublisherState>> NewPublisherState(
    Connection& connection, absl::string_view subject,
    absl::string_view file_identifier, absl::string_view type_name,
    PublisherOptions options) {
  if (absl::Status s = ValidateEventTopic(subject, file_identifier,
                                          connection.options().limits);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateVerifyLimits(options.verify); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("PublisherOptions.verify: ", s.message()));
  }
  return std::make_shared<const PublisherState>(PublisherState{
      &connection, std::string(subject), std::string(file_identifier),
      std::string(type_name.empty() ? subject : type_name),
      IsSubjectTemplate(subject), std::move(options)});
}

absl::Status Refused(const PublisherState& state, absl::Status status) {
  return CountFailure(*state.connection, "publish", std::move(status));
}

absl::StatusOr<absl::string_view> ResolveSubject(const PublisherState& state,
                                                 absl::string_view subject) {
  if (subject.empty()) {
    if (state.is_template) {
      return Refused(
          state,
          absl::InvalidArgumentError(absl::StrCat(
              "publishing ", state.what, ": the topic's subject '",
              state.subject,
              "' is a template; name the concrete subject (PublishTo)")));
    }
    return absl::string_view(state.subject);
  }
  if (absl::Status s =
          ValidatePublishSubject(subject, state.connection->options().limits);
      !s.ok()) {
    return Refused(state, std::move(s));
  }
  // Also for a topic without wildcards: its subject is the metric label, so
  // it must be the subject actually used.
  if (!SubjectMatches(state.subject, subject)) {
    return Refused(state, absl::InvalidArgumentError(absl::StrCat(
                              "publishing ", state.what, ": subject '", subject,
                              "' does not match the topic's subject '",
                              state.subject, "'")));
  }
  return subject;
}

absl::Status InvalidBuffer(const PublisherState& state,
                           absl::string_view subject,
                           const absl::Status& verify_status) {
  return Refused(state, absl::InvalidArgumentError(absl::StrCat(
                            "publishing to '", subject,
                            "': the buffer is not a valid ", state.what, ": ",
                            verify_status.message(), "; nothing was sent")));
}

absl::StatusOr<SendInfo> PublishFinished(const PublisherState& state,
                                         absl::string_view subject,
                                         absl::string_view bytes,
                                         const PublishOptions& options) {
  if (!options.metric_subject.empty()) {
    return state.connection->Publish(subject, bytes, options);
  }
  PublishOptions labelled = options;
  labelled.metric_subject = state.subject;
  return state.connection->Publish(subject, bytes, labelled);
}

}  // namespace natsgw::internal
