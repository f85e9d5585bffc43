#include "civetweb_start.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace natsgw::internal {

absl::StatusOr<StartedCivetweb> StartCivetweb(const char** config,
                                              const mg_callbacks& callbacks,
                                              void* user_data,
                                              absl::string_view what) {
  mg_init_data init{};
  init.callbacks = &callbacks;
  init.user_data = user_data;
  init.configuration_options = config;
  char text[256] = {0};
  unsigned code = 0;
  mg_error_data error{};
  error.code = &code;
  error.text = text;
  error.text_buffer_size = sizeof(text);
  mg_context* ctx = mg_start2(&init, &error);
  if (ctx == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot ", what, ": ", text));
  }
  mg_server_port ports[4] = {};
  const int n = mg_get_server_ports(ctx, 4, ports);
  if (n < 1 || ports[0].port <= 0) {
    mg_stop(ctx);
    return absl::UnavailableError(
        absl::StrCat("cannot ", what, ": no port bound"));
  }
  return StartedCivetweb{ctx, ports[0].port};
}

}  // namespace natsgw::internal
