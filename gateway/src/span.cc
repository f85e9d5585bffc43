#include "span.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace natsgw {

absl::string_view SpanKindName(SpanKind kind) {
  switch (kind) {
    case SpanKind::kInternal:
      return "internal";
    case SpanKind::kClient:
      return "client";
    case SpanKind::kServer:
      return "server";
    case SpanKind::kProducer:
      return "producer";
    case SpanKind::kConsumer:
      return "consumer";
  }
  return "internal";
}

const SpanAttributeValue* SpanData::Attribute(absl::string_view key) const {
  for (const auto& [k, v] : attributes) {
    if (k == key) return &v;
  }
  return nullptr;
}

namespace internal {

namespace attr = span_attributes;

Span Span::Start(const std::shared_ptr<SpanSink>& sink, SpanKind kind,
                 std::string name, const TraceContext& context,
                 std::optional<TraceContext::SpanId> parent, absl::Time start) {
  Span span;
  if (!SpanWanted(sink.get(), context)) return span;
  span.sink_ = sink;
  span.data_ = std::make_unique<SpanData>();
  SpanData& d = *span.data_;
  d.name = std::move(name);
  d.kind = kind;
  d.context = context;
  d.parent_span_id = parent;
  d.start = start;
  d.attributes.reserve(12);
  return span;
}

Span& Span::operator=(Span&& other) noexcept {
  if (this != &other) {
    End();
    sink_ = std::move(other.sink_);
    data_ = std::move(other.data_);
  }
  return *this;
}

Span::~Span() { End(); }

Span Span::StartChild(SpanKind kind, std::string name,
                      const TraceContext& context, absl::Time start) const {
  if (data_ == nullptr) return Span();
  return Start(sink_, kind, std::move(name), context, data_->context.span_id(),
               start);
}

void Span::ReportStart() {
  if (data_ == nullptr) return;
  // A throwing sink must not unwind through a message path.
  try {
    sink_->OnStart(*data_);
  } catch (...) {
  }
}

void Span::SetString(absl::string_view key, absl::string_view value) {
  if (data_ == nullptr) return;
  data_->attributes.emplace_back(std::string(key),
                                 SpanAttributeValue(std::string(value)));
}

void Span::SetInt(absl::string_view key, int64_t value) {
  if (data_ == nullptr) return;
  data_->attributes.emplace_back(std::string(key), SpanAttributeValue(value));
}

void Span::SetBool(absl::string_view key, bool value) {
  if (data_ == nullptr) return;
  data_->attributes.emplace_back(std::string(key), SpanAttributeValue(value));
}

void Span::AddLink(const TraceContext& link) {
  if (data_ == nullptr) return;
  data_->links.push_back(link);
}

void Span::SetStatus(const absl::Status& status) {
  if (data_ == nullptr) return;
  data_->status_code = status.code();
  data_->status_message = std::string(status.message());
  if (!status.ok()) {
    SetString(attr::kErrorType, absl::StatusCodeToString(status.code()));
  }
}

void Span::End() {
  if (data_ == nullptr) return;
  End(absl::Now());
}

void Span::End(absl::Time end) {
  if (data_ == nullptr) return;
  std::unique_ptr<SpanData> data = std::move(data_);
  std::shared_ptr<SpanSink> sink = std::move(sink_);
  data->end = end;
  try {
    sink->OnEnd(*data);
  } catch (...) {
  }
}

bool IsInboxSubject(absl::string_view subject) {
  return absl::StartsWith(subject, "_INBOX.");
}

std::string MessagingSpanName(absl::string_view operation,
                              absl::string_view subject,
                              absl::string_view destination_template) {
  if (!destination_template.empty() && !IsInboxSubject(destination_template)) {
    return absl::StrCat(operation, " ", destination_template);
  }
  if (!subject.empty() && !IsInboxSubject(subject)) {
    return absl::StrCat(operation, " ", subject);
  }
  return std::string(operation);
}

void SetMessagingAttributes(Span& span, absl::string_view operation_type,
                            absl::string_view operation_name,
                            absl::string_view subject,
                            absl::string_view destination_template) {
  if (!span.recording()) return;
  span.SetString(attr::kMessagingSystem, attr::kMessagingSystemNats);
  span.SetString(attr::kMessagingOperationType, operation_type);
  span.SetString(attr::kMessagingOperationName, operation_name);
  if (IsInboxSubject(subject)) {
    span.SetBool(attr::kMessagingDestinationTemporary, true);
  } else {
    span.SetString(attr::kMessagingDestinationName, subject);
  }
  if (!destination_template.empty() && !IsInboxSubject(destination_template)) {
    span.SetString(attr::kMessagingDestinationTemplate, destination_template);
  }
}

void SetRpcAttributes(Span& span, absl::string_view method) {
  if (!span.recording()) return;
  span.SetString(attr::kRpcSystemName, attr::kMessagingSystemNats);
  span.SetString(attr::kRpcMethod, method);
}

void SetServerAttributes(Span& span, absl::string_view url) {
  if (!span.recording()) return;
  absl::string_view rest = url;
  if (size_t scheme = rest.find("://"); scheme != absl::string_view::npos) {
    rest.remove_prefix(scheme + 3);
  }
  // Credentials never reach a span.
  if (size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    rest.remove_prefix(at + 1);
  }
  const size_t colon = rest.rfind(':');
  if (colon == absl::string_view::npos) return;
  absl::string_view host = rest.substr(0, colon);
  int port = 0;
  if (host.empty() || !absl::SimpleAtoi(rest.substr(colon + 1), &port)) return;
  // An IPv6 literal is written "[::1]" in a URL, bare in server.address.
  if (absl::ConsumePrefix(&host, "[")) absl::ConsumeSuffix(&host, "]");
  span.SetString(attr::kServerAddress, host);
  span.SetInt(attr::kServerPort, port);
}

void SetOutcome(Span& span, const absl::Status& status, bool rpc) {
  if (!span.recording()) return;
  if (rpc) {
    span.SetString(attr::kRpcStatusCode,
                   absl::StatusCodeToString(status.code()));
  }
  span.SetStatus(status);
}

}  // namespace internal
}  // namespace natsgw
