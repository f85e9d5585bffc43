#include "raw_nats_client.h"

#include <chrono>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace natsgw::testing {
namespace {

absl::Status Check(natsStatus s, const std::string& what) {
  if (s == NATS_OK) return absl::OkStatus();
  return absl::UnknownError(absl::StrCat(what, ": ", natsStatus_GetText(s)));
}

absl::Status SetHeaders(
    natsMsg* msg, const std::multimap<std::string, std::string>& headers) {
  for (const auto& [k, v] : headers) {
    if (absl::Status s = Check(natsMsgHeader_Add(msg, k.c_str(), v.c_str()),
                               "adding header");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

RawMessage ToRawMessage(natsMsg* msg) {
  RawMessage m;
  m.subject = natsMsg_GetSubject(msg);
  if (const char* r = natsMsg_GetReply(msg)) m.reply = r;
  if (natsMsg_GetDataLength(msg) > 0) {
    m.data.assign(natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
  }
  const char** keys = nullptr;
  int count = 0;
  if (natsMsgHeader_Keys(msg, &keys, &count) == NATS_OK) {
    for (int i = 0; i < count; ++i) {
      const char** values = nullptr;
      int n = 0;
      if (natsMsgHeader_Values(msg, keys[i], &values, &n) == NATS_OK) {
        for (int j = 0; j < n; ++j) m.headers.emplace(keys[i], values[j]);
        std::free(values);
      }
    }
    std::free(keys);
  }
  return m;
}

absl::StatusOr<std::unique_ptr<RawNatsClient>> RawNatsClient::Connect(
    const std::string& url) {
  std::unique_ptr<RawNatsClient> client(new RawNatsClient);
  natsOptions* opts = nullptr;
  if (absl::Status s = Check(natsOptions_Create(&opts), "options"); !s.ok()) {
    return s;
  }
  natsOptions_SetURL(opts, url.c_str());
  natsOptions_SetSendAsap(opts, true);
  natsOptions_SetMaxReconnect(opts, -1);
  natsOptions_SetReconnectWait(opts, 100);
  natsStatus s = natsConnection_Connect(&client->nc_, opts);
  natsOptions_Destroy(opts);
  if (absl::Status st = Check(s, "connect " + url); !st.ok()) return st;
  return client;
}

RawNatsClient::~RawNatsClient() {
  for (natsSubscription* sub : subs_) natsSubscription_Unsubscribe(sub);
  {
    // Unsubscribe does not wait for a callback already running.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(10),
                 [this] { return live_subs_ == 0; });
  }
  for (natsSubscription* sub : subs_) natsSubscription_Destroy(sub);
  if (nc_ != nullptr) {
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
  }
}

void RawNatsClient::OnTap(natsConnection*, natsSubscription*, natsMsg* msg,
                          void* c) {
  auto* self = static_cast<RawNatsClient*>(c);
  RawMessage m = ToRawMessage(msg);
  natsMsg_Destroy(msg);
  {
    std::lock_guard<std::mutex> lock(self->mu_);
    self->received_.push_back(std::move(m));
  }
  self->cv_.notify_all();
}

void RawNatsClient::OnComplete(void* c) {
  auto* self = static_cast<RawNatsClient*>(c);
  std::lock_guard<std::mutex> lock(self->mu_);
  --self->live_subs_;
  self->cv_.notify_all();
}

absl::Status RawNatsClient::Track(natsSubscription* sub) {
  subs_.push_back(sub);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++live_subs_;
  }
  absl::Status s =
      Check(natsSubscription_SetOnCompleteCB(sub, &OnComplete, this),
            "set the completion callback");
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    --live_subs_;
  }
  return s;
}

void RawNatsClient::OnRequest(natsConnection* nc, natsSubscription*,
                              natsMsg* msg, void* c) {
  auto* self = static_cast<RawNatsClient*>(c);
  const char* reply = natsMsg_GetReply(msg);
  if (reply != nullptr) {
    natsMsg* out = nullptr;
    natsMsg_Create(&out, reply, nullptr, self->respond_data_.data(),
                   static_cast<int>(self->respond_data_.size()));
    SetHeaders(out, self->respond_headers_).IgnoreError();
    natsConnection_PublishMsg(nc, out);
    natsMsg_Destroy(out);
  }
  natsMsg_Destroy(msg);
}

absl::Status RawNatsClient::Tap(const std::string& subject) {
  natsSubscription* sub = nullptr;
  if (absl::Status s = Check(
          natsConnection_Subscribe(&sub, nc_, subject.c_str(), &OnTap, this),
          "subscribe");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Track(sub); !s.ok()) return s;
  return Flush();
}

absl::Status RawNatsClient::Respond(
    const std::string& subject, std::string data,
    std::multimap<std::string, std::string> headers) {
  respond_data_ = std::move(data);
  respond_headers_ = std::move(headers);
  natsSubscription* sub = nullptr;
  if (absl::Status s = Check(natsConnection_Subscribe(
                                 &sub, nc_, subject.c_str(), &OnRequest, this),
                             "subscribe");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Track(sub); !s.ok()) return s;
  return Flush();
}

absl::Status RawNatsClient::Publish(
    const std::string& subject, const std::string& data,
    const std::multimap<std::string, std::string>& headers,
    const std::string& reply) {
  natsMsg* msg = nullptr;
  if (absl::Status s =
          Check(natsMsg_Create(&msg, subject.c_str(),
                               reply.empty() ? nullptr : reply.c_str(),
                               data.data(), static_cast<int>(data.size())),
                "create");
      !s.ok()) {
    return s;
  }
  absl::Status s = SetHeaders(msg, headers);
  if (s.ok()) s = Check(natsConnection_PublishMsg(nc_, msg), "publish");
  natsMsg_Destroy(msg);
  return s;
}

absl::StatusOr<RawMessage> RawNatsClient::Request(
    const std::string& subject, const std::string& data,
    const std::multimap<std::string, std::string>& headers,
    absl::Duration timeout) {
  natsMsg* msg = nullptr;
  natsMsg_Create(&msg, subject.c_str(), nullptr, data.data(),
                 static_cast<int>(data.size()));
  absl::Status s = SetHeaders(msg, headers);
  natsMsg* reply = nullptr;
  if (s.ok()) {
    s = Check(natsConnection_RequestMsg(&reply, nc_, msg,
                                        absl::ToInt64Milliseconds(timeout)),
              "request");
  }
  natsMsg_Destroy(msg);
  if (!s.ok()) return s;
  RawMessage m = ToRawMessage(reply);
  natsMsg_Destroy(reply);
  return m;
}

absl::Status RawNatsClient::Flush() {
  return Check(natsConnection_FlushTimeout(nc_, 5000), "flush");
}

std::vector<RawMessage> RawNatsClient::received() const {
  std::lock_guard<std::mutex> lock(mu_);
  return received_;
}

bool RawNatsClient::WaitForCount(size_t n, absl::Duration timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                      [this, n] { return received_.size() >= n; });
}

}  // namespace natsgw::testing
