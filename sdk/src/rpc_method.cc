#include "natsgw/rpc_method.h"

#include "absl/strings/str_cat.h"

namespace natsgw {

std::string MethodSubject(absl::string_view prefix, absl::string_view method) {
  return absl::StrCat(prefix, ".", method);
}

absl::string_view EffectivePrefix(absl::string_view default_prefix,
                                  absl::string_view override_prefix) {
  return override_prefix.empty() ? default_prefix : override_prefix;
}

}  // namespace natsgw
