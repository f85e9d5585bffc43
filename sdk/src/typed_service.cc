#include "natsgw/typed_service.h"

#include <exception>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "natsgw/builder_lease.h"

namespace natsgw {
namespace internal {
namespace {

// Runs `fn` and turns an exception from application code into INTERNAL: it
// must not unwind through natsgw's delivery or worker threads. `what(out)`
// appends the culprit's name; it runs only when something was thrown, so
// the hot path builds no string.
template <class T, class Fn, class What>
absl::StatusOr<T> CatchAll(What what, Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    std::string message;
    what(message);
    return absl::InternalError(absl::StrCat(message, " threw: ", e.what()));
  } catch (...) {
    std::string message;
    what(message);
    return absl::InternalError(absl::StrCat(message, " threw"));
  }
}

auto Named(absl::string_view name) {
  return [name](std::string& out) { out.append(name.data(), name.size()); };
}

}  // namespace

absl::Status InvalidRequest(const MethodDescriptor& method,
                            const absl::Status& verify_status) {
  return absl::InvalidArgumentError(absl::StrCat(
      "request of ", method.full_service_name, ".", method.method,
      " is not a valid ", method.request_type, ": ", verify_status.message()));
}

absl::StatusOr<Reply> HandleTypedRequest(const TypedEndpointState& state,
                                         const Message& request,
                                         TypedInvoke invoke) {
  const MethodDescriptor& method = *state.method;
  // Only interceptors are told how long the request took.
  const bool intercepted = !state.interceptors.empty();
  const absl::Time start = intercepted ? absl::Now() : absl::InfinitePast();
  BuilderLease lease;
  ServerContext ctx(method, request, lease.builder());

  absl::StatusOr<Reply> result;
  size_t started = 0;
  absl::Status status;
  for (const auto& interceptor : state.interceptors) {
    status = CatchAll<bool>(Named("server interceptor OnStart"),
                            [&]() -> absl::StatusOr<bool> {
                              absl::Status s = interceptor->OnStart(ctx);
                              if (!s.ok()) return s;
                              return true;
                            })
                 .status();
    if (!status.ok()) break;
    ++started;
  }

  if (status.ok()) {
    // FlatBuffers reads scalars through plain pointers: the payload must be
    // aligned. A std::string's heap buffer always is; anything else is
    // copied once.
    AlignedBytes copy;
    const uint8_t* data = reinterpret_cast<const uint8_t*>(request.data.data());
    if (!AlignedBytes::IsAligned(data)) {
      copy = AlignedBytes::Copy(request.data);
      data = copy.data();
    }
    absl::StatusOr<flatbuffers::uoffset_t> root =
        CatchAll<flatbuffers::uoffset_t>(
            [&method](std::string& out) {
              absl::StrAppend(&out, "handler of ", method.full_service_name,
                              ".", method.method);
            },
            [&] { return invoke(data, request.data.size(), ctx); });
    if (!root.ok()) {
      status = root.status();
    } else {
      flatbuffers::FlatBufferBuilder& fbb = ctx.builder();
      status = FinishWithIdentifier(fbb, *root, method.file_identifier,
                                    method.response_type);
      if (!status.ok()) {
        // The handler's bug, not the caller's.
        status = absl::InternalError(status.message());
      } else {
        // The headers are moved in after OnFinish, which may read them.
        result = Reply{std::string(lease.bytes()), Headers()};
      }
    }
  }
  if (!status.ok()) result = status;

  const absl::Duration duration =
      intercepted ? absl::Now() - start : absl::ZeroDuration();
  for (size_t i = started; i-- > 0;) {
    (void)CatchAll<bool>(Named("server interceptor OnFinish"), [&] {
      state.interceptors[i]->OnFinish(ctx, status, duration);
      return true;
    });
  }
  if (result.ok()) result->headers = std::move(ctx.reply_headers());
  return result;
}

EndpointConfig MakeEndpointShell(const MethodDescriptor& method,
                                 const TypedServiceOptions& options) {
  EndpointConfig endpoint;
  endpoint.name = std::string(method.method);
  endpoint.subject = MethodSubject(
      EffectivePrefix(method.default_prefix, options.subject_prefix),
      method.method);
  endpoint.metadata = {
      {"fbs.request_type", std::string(method.request_type)},
      {"fbs.response_type", std::string(method.response_type)},
      {"fbs.file_identifier", std::string(method.file_identifier)},
      {"fbs.schema", std::string(method.schema_file)},
  };
  // SERVER spans carry the name the typed client's CLIENT spans carry.
  endpoint.rpc_method =
      absl::StrCat(method.full_service_name, "/", method.method);
  return endpoint;
}

}  // namespace internal

absl::Status ValidateTypedServiceOptions(const TypedServiceOptions& options) {
  if (absl::Status s = ValidateVerifyLimits(options.verify); !s.ok()) return s;
  for (const auto& interceptor : options.interceptors) {
    if (interceptor == nullptr) {
      return absl::InvalidArgumentError(
          "TypedServiceOptions.interceptors holds a null interceptor");
    }
  }
  return absl::OkStatus();
}

namespace {

// Service metadata key of the base64 binary schema.
constexpr absl::string_view kBfbsKey = "fbs.bfbs";
// Keys plus values of service metadata, at most (ADR-33; natsgw::Service
// checks the same limit).
constexpr size_t kMaxServiceMetadataBytes = 128 * 1024;

}  // namespace

ServiceConfig MakeServiceConfig(const ServiceDescriptor& service,
                                const TypedServiceOptions& options) {
  ServiceConfig config;
  config.name =
      options.name.empty() ? std::string(service.default_prefix) : options.name;
  config.version = options.version;
  config.description =
      options.description.empty()
          ? absl::StrCat(service.full_name, " (", service.schema_file, ")")
          : options.description;
  config.metadata = options.metadata;
  config.metadata.emplace("fbs.service", std::string(service.full_name));
  config.metadata.emplace("fbs.schema", std::string(service.schema_file));
  if (!service.schema_bfbs.empty() &&
      config.metadata.count(std::string(kBfbsKey)) == 0) {
    std::string encoded = absl::Base64Escape(service.schema_bfbs);
    // Service::Start refuses metadata beyond the Services API's limit; a
    // schema too big to announce is left out rather than failing the
    // service: tools then need a local copy of it.
    size_t total = kBfbsKey.size() + encoded.size();
    for (const auto& [key, value] : config.metadata) {
      total += key.size() + value.size();
    }
    if (total <= kMaxServiceMetadataBytes) {
      config.metadata.emplace(std::string(kBfbsKey), std::move(encoded));
    }
  }
  config.queue_group = options.queue_group;
  config.serve = options.serve;
  return config;
}

}  // namespace natsgw
